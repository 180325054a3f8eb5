"""`Scripts.call_hot`, the admission's lean EVALSHA, against a real Redis: the same reply and the
same errors as redis-py's ordinary script call, and the same recovery when the server lost the
script or the connection."""

from __future__ import annotations

import uuid

import pytest
from redis.exceptions import ConnectionError, ResponseError, TimeoutError

from common.platform import lua_scripts
from common.platform.clients import make_redis
from common.platform.lua_scripts import Scripts

# A script that echoes what it was given (KEYS, typed ARGV) or fails on demand.
ECHO = """
if ARGV[1] == 'fail' then return redis.error_reply('ERR refused on purpose') end
redis.call('INCR', KEYS[1])
return {KEYS[1], KEYS[#KEYS], ARGV[1], tonumber(ARGV[2]) + 1, #KEYS, #ARGV, redis.call('GET', KEYS[1])}
"""


@pytest.fixture
def client(settings, monkeypatch: pytest.MonkeyPatch):
    original = lua_scripts._source
    monkeypatch.setattr(lua_scripts, "_source", lambda name: ECHO if name == "echo" else original(name))
    made = make_redis(settings.redis_url, max_connections=2)
    yield made
    made.close()


def _call(client, *args: object) -> tuple[list[str], list[object]]:
    prefix = f"{{hot:{uuid.uuid4().hex[:8]}}}"
    return [f"{prefix}:count", *(f"{prefix}:k{i}" for i in range(11))], list(args)


def test_the_reply_is_the_ordinary_calls(client) -> None:
    keys, args = _call(client, "ünïcode ticket", 41, 1.5, b"raw", "usr_1", 0, -3)
    hot = Scripts(client).call_hot("echo", keys, args)
    ordinary = Scripts(client).echo(keys=keys, args=args)
    assert hot == [keys[0], keys[-1], "ünïcode ticket", 42, 12, 7, "1"]
    assert ordinary == [*hot[:-1], "2"]  # the same reply, the counter one further


def test_a_script_the_server_has_lost_is_loaded_again(client) -> None:
    scripts = Scripts(client)
    keys, args = _call(client, "first", 1)
    assert scripts.call_hot("echo", keys, args)[2] == "first"
    client.script_flush()
    assert scripts.call_hot("echo", keys, args)[2:4] == ["first", 2]
    assert client.script_exists(scripts.echo.sha) == [True]


def test_an_error_reply_is_raised_as_the_ordinary_call_raises_it(client) -> None:
    keys, args = _call(client, "fail", 1)
    with pytest.raises(ResponseError) as hot:
        Scripts(client).call_hot("echo", keys, args)
    with pytest.raises(ResponseError) as ordinary:
        Scripts(client).echo(keys=keys, args=args)
    assert type(hot.value) is type(ordinary.value) and "refused on purpose" in str(hot.value)
    assert str(hot.value) == str(ordinary.value)
    assert Scripts(client).call_hot("echo", *_call(client, "after", 1))[2] == "after"  # still usable


def _fail_next_read(client, monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    """The pooled connection's next reply fails with `error` (after the server ran the command),
    as when the connection drops mid-call."""
    pool = client.connection_pool
    connection = pool.get_connection()
    pool.release(connection)
    real_read = connection.read_response
    failed: list[bool] = []

    def read_response(*args, **kwargs):
        if not failed:
            failed.append(True)
            connection.disconnect()
            raise error
        return real_read(*args, **kwargs)

    monkeypatch.setattr(connection, "read_response", read_response)


def test_a_dropped_connection_is_replaced_and_the_call_made_again(client, monkeypatch) -> None:
    keys, args = _call(client, "dropped", 1)
    _fail_next_read(client, monkeypatch, ConnectionError("Connection closed by server."))
    # The script ran once before the drop and once after: call_hot is only for scripts
    # idempotent on their arguments (admit.lua: tests/test_admission_replay.py).
    assert Scripts(client).call_hot("echo", keys, args)[2:] == ["dropped", 2, 12, 2, "2"]


def test_a_timeout_is_raised_without_a_second_call(client, monkeypatch) -> None:
    keys, args = _call(client, "slow", 1)
    _fail_next_read(client, monkeypatch, TimeoutError("Timeout reading from socket"))
    with pytest.raises(TimeoutError):
        Scripts(client).call_hot("echo", keys, args)
    assert client.get(keys[0]) == "1"
