"""The Redis client's pool hands out connections after a cheap readiness check (issue: an
admission's CPU); a connection closed by the server or holding a stray reply still gets
redis-py's full check and a fresh connection, under gevent as without it."""

from __future__ import annotations

import select

import pytest

from common.platform import clients as clients_module
from common.platform.clients import make_redis


@pytest.fixture
def client(settings):
    made = make_redis(settings.redis_url, max_connections=1)
    yield made
    made.close()


def test_a_connection_killed_by_the_server_is_replaced(client):
    assert client.ping()
    own_id = client.client_id()
    other = make_redis(_url(client))
    other.client_kill_filter(_id=own_id)
    other.close()
    # The next command gets a new connection instead of failing on the dead one.
    assert client.set("quick-check:killed", "1") and client.client_id() != own_id


def test_a_connection_with_a_reply_left_unread_is_not_reused_as_is(client):
    connection = client.connection_pool.get_connection()
    connection.send_command("ECHO", "left over")  # its reply is never read
    # Once the reply has arrived (a connection is only ever released after its reply came or
    # it was dropped; redis-py's own check could not see a reply still on its way either):
    select.select([connection._sock], [], [], 5)
    client.connection_pool.release(connection)
    assert not clients_module._idle_and_open(connection)
    # Without the full check this command would read "left over" as its own reply.
    assert client.echo("mine") == "mine"


def test_an_idle_open_connection_passes_the_quick_check(client):
    client.ping()
    connection = client.connection_pool.get_connection()
    try:
        assert clients_module._idle_and_open(connection)
    finally:
        client.connection_pool.release(connection)


def _url(client) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs.get('db', 0)}"
