"""RedisLock's bookkeeping on an in-memory stand-in for Redis (no servers): who holds the key,
what the token says, that a lock never taken is never released, and giving up after waiting.
The Lua itself runs against a real Redis in tests/test_locks.py."""

from __future__ import annotations

from typing import Any

from common.platform.locks import RedisLock


class MemoryRedis:
    """SET NX and the two lock scripts, recognised by what they call (time does not pass)."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.sets = 0

    def set(self, key: str, value: str, nx: bool = False, px: int | None = None) -> bool:
        self.sets += 1
        if nx and key in self.values:
            return False
        self.values[key] = value
        return True

    def register_script(self, source: str) -> Any:
        def run(keys: list[str], args: list[Any]) -> int:
            if self.values.get(keys[0]) != args[0]:
                return 0
            if "PEXPIRE" in source:
                return 1
            del self.values[keys[0]]
            return 1
        return run


def test_the_token_names_its_holder_and_differs_between_holders():
    redis = MemoryRedis()
    first = RedisLock(redis, "lock", 1000, holder="decider-42-ab")  # type: ignore[arg-type]
    second = RedisLock(redis, "lock", 1000, holder="decider-42-ab")  # type: ignore[arg-type]
    assert first.token.startswith("decider-42-ab:") and first.token != second.token


def test_one_holder_at_a_time_and_release_frees_the_key():
    redis = MemoryRedis()
    first = RedisLock(redis, "lock", 1000)  # type: ignore[arg-type]
    second = RedisLock(redis, "lock", 1000)  # type: ignore[arg-type]
    with first as acquired:
        assert acquired and first.held
        with second as also:
            assert not also and not second.held
        assert redis.values["lock"] == first.token  # the loser's exit freed nothing
        assert first.renew()
    assert "lock" not in redis.values and not first.held
    assert second.acquire()


def test_a_holder_whose_lock_was_taken_over_cannot_renew_or_release_it():
    redis = MemoryRedis()
    first = RedisLock(redis, "lock", 1000)  # type: ignore[arg-type]
    assert first.acquire()
    redis.values["lock"] = "someone-else"  # as if it expired and another holder took it
    assert not first.renew() and not first.held
    first.release()
    assert redis.values["lock"] == "someone-else"


def test_acquire_keeps_trying_for_wait_seconds_then_gives_up():
    redis = MemoryRedis()
    redis.values["lock"] = "someone-else"
    waiting = RedisLock(redis, "lock", 1000, wait_seconds=0.05, poll_seconds=0.01)  # type: ignore[arg-type]
    assert not waiting.acquire()
    assert redis.sets > 1
