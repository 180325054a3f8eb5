"""The shop's one Redis lock: a decider's hold on a sale, beat's sweeps, the embedded server's
transaction guard.

Taken with SET NX PX under a random token, so only its holder can extend or free it; renewed
and released by Lua (`lua/renew_lock.lua`, `lua/release_lock.lua`), because a GET followed by
a PEXPIRE or DEL could act on a lock that expired and was taken by someone else in between.
A lock is never held forever: a holder that dies frees it when its time to live runs out.
"""

from __future__ import annotations

import time

import redis

from common.platform import ids
from common.platform.lua_scripts import scripts_for


class RedisLock:
    """`with RedisLock(redis, key, ttl_ms) as acquired:` runs the block whether or not the
    lock was taken (`acquired` says which) and frees it afterwards if it was.

    `holder` starts the token, so that an operator reading the key sees who holds it;
    `wait_seconds` is how long `acquire` keeps trying before it gives up.
    """

    def __init__(self, client: redis.Redis, key: str, ttl_ms: int, *, holder: str | None = None,
                 wait_seconds: float = 0.0, poll_seconds: float = 0.002) -> None:
        self.client = client
        self.key = key
        self.ttl_ms = ttl_ms
        self.token = ids.new_lock_token(holder)
        self.wait_seconds = wait_seconds
        self.poll_seconds = poll_seconds
        self.held = False

    def acquire(self) -> bool:
        """Take the lock if it is free, trying for up to `wait_seconds`. True when taken."""
        deadline = time.monotonic() + self.wait_seconds
        while not self.client.set(self.key, self.token, nx=True, px=self.ttl_ms):
            if time.monotonic() >= deadline:
                return False
            time.sleep(self.poll_seconds)
        self.held = True
        return True

    def renew(self) -> bool:
        """Give the lock a full time to live again, atomically, if this holder still has it.
        False when it was lost (expired, perhaps taken by another): the holder must stop."""
        renewed = scripts_for(self.client).renew_lock(keys=[self.key],
                                                      args=[self.token, self.ttl_ms])
        self.held = bool(renewed)
        return self.held

    def release(self) -> None:
        """Free the lock if this holder still has it; someone else's lock is left alone."""
        if self.held:
            self.held = False
            scripts_for(self.client).release_lock(keys=[self.key], args=[self.token])

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *_exc_info: object) -> None:
        self.release()
