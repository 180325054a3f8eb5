"""The access-token denylist, and a copy of it in each API process.

Every authenticated request asks "is this token revoked?". Asked of Redis, that is a round
trip per request, as costly as the admission it guards. The denylist is small (revocations
of the last access-token lifetime: logouts and stolen refresh families), so each API process
keeps a copy, kept current by Redis pub/sub, and answers from memory.

The denylist is one sorted set, `auth:revocations` (member `jti:<jti>` or `fam:<family>`,
score: when the entry may be forgotten, epoch ms); a revocation adds its entry and publishes
it in one MULTI, so the set and the message never disagree. A copy subscribes first and
loads the set second, so nothing published in between is missed. Until it has loaded, and
from the moment its subscription fails or goes quiet past the health check, it does not
answer and callers ask Redis (`ZMSCORE`, one round trip) as before.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import redis
from redis.exceptions import RedisError

from common.platform.clients import Clients
from common.platform.clock import now_ms
from common.platform.subscriptions import Subscription

log = logging.getLogger("common.accounts.revocations")

DENYLIST_KEY = "auth:revocations"
CHANNEL = "auth:revocations"
# The copy PINGs Redis over its subscription every few seconds; one that has heard nothing
# (no message, no PONG) for QUIET_LIMIT_SECONDS no longer answers: its link may be dead.
PING_SECONDS = 3.0
PING_MESSAGE = "denylist-copy"
QUIET_LIMIT_SECONDS = 10.0


def access_member(jti: str) -> str:
    return f"jti:{jti}"


def family_member(family: str) -> str:
    return f"fam:{family}"


def members_of(jti: str, family: str | None) -> list[str]:
    return [access_member(jti)] + ([family_member(family)] if family else [])


def revoke(redis_client: redis.Redis, member: str, until_epoch_s: float,
           copy: DenylistCopy | None = None) -> None:
    """Deny `member` until `until_epoch_s`, and tell every copy (this process's `copy` at
    once, so its next request already sees it); forget expired entries."""
    until_ms = int(until_epoch_s * 1000)
    if copy is not None:
        copy.note(member, until_ms)
    with redis_client.pipeline(transaction=True) as pipe:
        pipe.zadd(DENYLIST_KEY, {member: until_ms}, gt=True)
        pipe.zremrangebyscore(DENYLIST_KEY, "-inf", now_ms())
        pipe.publish(CHANNEL, f"{member} {until_ms}")
        pipe.execute()


def is_denied(redis_client: redis.Redis, members: Sequence[str]) -> bool:
    """The denylist in Redis itself: one round trip."""
    now = now_ms()
    return any(score is not None and score > now
               for score in redis_client.zmscore(DENYLIST_KEY, list(members)))


class DenylistCopy(Subscription):
    """This process's copy of the denylist, kept by a background thread (a greenlet under
    gevent). `is_denied` answers True/False from memory, or None when the copy cannot vouch
    for being current."""

    thread_name = "denylist-copy"
    outage_message = "denylist copy interrupted; asking Redis until it is back"

    def __init__(self, redis_client: redis.Redis, retry_seconds: float = 1.0) -> None:
        super().__init__(retry_seconds)
        self.redis = redis_client
        self._until_ms: dict[str, int] = {}
        self._current_since: float | None = None  # monotonic time the copy was last known current
        self._pubsub: redis.client.PubSub | None = None  # the live subscription, for tests

    @property
    def current(self) -> bool:
        heard = self._current_since
        return heard is not None and time.monotonic() - heard < QUIET_LIMIT_SECONDS

    def is_denied(self, members: Sequence[str]) -> bool | None:
        if not self.current:
            return None
        now = now_ms()
        return any(self._until_ms.get(member, 0) > now for member in members)

    def note(self, member: str, until_ms: int) -> None:
        self._until_ms[member] = max(until_ms, self._until_ms.get(member, 0))

    def _interrupted(self) -> None:
        self._current_since = None

    def _follow(self) -> None:
        pubsub = self._pubsub = self.redis.pubsub()
        try:
            pubsub.subscribe(CHANNEL)
            deadline = time.monotonic() + 5
            while (message := pubsub.get_message(timeout=1.0)) is None or message["type"] != "subscribe":
                if time.monotonic() > deadline:
                    raise RedisError("no subscription confirmation")
            # Subscribed first, loaded second: a revocation published meanwhile is waiting.
            loaded = self.redis.zrangebyscore(DENYLIST_KEY, now_ms(), "+inf", withscores=True)
            self._until_ms = {member: int(score) for member, score in loaded}
            self._current_since = time.monotonic()
            if self._failing:
                log.info("denylist copy current again")
                self._failing = False
            last_ping = last_prune = time.monotonic()
            while not self._stop.is_set():
                if time.monotonic() - last_ping > PING_SECONDS:
                    pubsub.ping(PING_MESSAGE)  # a link that died silently stops answering these
                    last_ping = time.monotonic()
                message = pubsub.get_message(timeout=1.0)
                if message is None:
                    continue
                self._current_since = time.monotonic()  # Redis spoke: what we hold is current
                if message["type"] == "message":
                    member, _, until_ms = str(message["data"]).rpartition(" ")
                    self.note(member, int(until_ms))
                if time.monotonic() - last_prune > 60:
                    cutoff = now_ms()
                    self._until_ms = {m: u for m, u in self._until_ms.items() if u > cutoff}
                    last_prune = time.monotonic()
        finally:
            pubsub.close()


def denylist_copy(clients: Clients) -> DenylistCopy:
    """This process's copy of the denylist on `clients.redis`, followed from first use (after
    a fork) until `clients.close()`."""
    return clients.follower("denylist", lambda: DenylistCopy(clients.redis).start())
