"""The one Redis lock (common/platform/locks.py) on a real Redis: renewing is atomic, so a
holder whose lock expired and was taken by another can neither extend nor free it."""

from __future__ import annotations

import time
import uuid

from common.platform.locks import RedisLock


def test_a_renew_by_a_holder_who_lost_the_lock_fails(clients):
    key = f"test:lock:{uuid.uuid4().hex}"
    first = RedisLock(clients.redis, key, ttl_ms=50, holder="first")
    assert first.acquire()
    assert first.renew()  # still held: extended
    time.sleep(0.12)  # expired...
    second = RedisLock(clients.redis, key, ttl_ms=5_000, holder="second")
    assert second.acquire()  # ...and taken by another holder
    assert not first.renew()
    first.release()
    assert clients.redis.get(key) == second.token
    assert 0 < clients.redis.pttl(key) <= 5_000  # the newcomer's time to live, not extended by first
    assert second.renew()
    second.release()
    assert clients.redis.get(key) is None


def test_the_context_manager_frees_the_lock_and_leaves_a_busy_one_alone(clients):
    key = f"test:lock:{uuid.uuid4().hex}"
    with RedisLock(clients.redis, key, ttl_ms=5_000) as acquired:
        assert acquired
        with RedisLock(clients.redis, key, ttl_ms=5_000) as again:
            assert not again
        assert clients.redis.exists(key)
    assert not clients.redis.exists(key)
