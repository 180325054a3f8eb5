"""How many event streams may be open at once: per ticket and per client address, counted
across every API process.

Why: each open stream holds a connection, a greenlet and a follower walked on every move of the
line. A review opened 50 streams to one ticket from one account, all accepted. A browser needs
one stream per ticket (two tabs, a reconnect overlapping the old stream: three).

Each stream takes a slot in two sorted sets in Redis (the ticket's, the address's; stream id ->
when its lease ends) in one Lua step that checks the caps (lua/open_stream.lua). A slot is a
lease, not a count: the process holding the stream renews every slot it holds in a few calls
every RENEW_SECONDS (its ticket feed does it, lua/renew_streams.lua), and gives it back when the
stream ends. A process killed outright cannot give its slots back; they end with their lease,
within LEASE_SECONDS.
"""

from __future__ import annotations

import itertools
import os
import socket
from dataclasses import dataclass

import redis

from common.platform.errors import TooManyStreams
from common.platform.lua_scripts import scripts_for

LEASE_SECONDS = 60
# Three renewals per lease: a stream keeps its slot through two late or lost ones.
RENEW_SECONDS = 20.0
# Keys per renewal call: a large process renews in a few calls, none long enough to hold Redis.
RENEW_BATCH = 1_000
_KEY_PREFIX = "flashsale:streams:"


def ticket_streams_key(ticket_id: str) -> str:
    """Sorted set: stream id -> end of its lease (ms), the ticket's open event streams."""
    return f"{_KEY_PREFIX}ticket:{ticket_id}"


def address_streams_key(address: str) -> str:
    """Sorted set: stream id -> end of its lease (ms), the client address's open event streams."""
    return f"{_KEY_PREFIX}address:{address}"


@dataclass(frozen=True)
class StreamSlot:
    stream_id: str
    keys: tuple[str, ...]  # the sets it counts in (a set whose cap is 0 counts nothing)


class StreamSlots:
    """The caps on open event streams, one object per process (`per_address` 0: no cap)."""

    def __init__(self, redis_client: redis.Redis, per_ticket: int, per_address: int,
                 lease_seconds: int = LEASE_SECONDS) -> None:
        self.redis = redis_client
        self.per_ticket, self.per_address = per_ticket, per_address
        self.lease_ms = lease_seconds * 1000
        self._ids = itertools.count(1)
        self._host = socket.gethostname()

    def take(self, ticket_id: str, address: str) -> StreamSlot:
        """A slot for one more stream of this ticket from this address, in one atomic step.
        Raises TooManyStreams (429, with Retry-After) when either cap is reached."""
        stream_id = f"{self._host}:{os.getpid()}:{next(self._ids)}"  # unique in every worker
        keys = (ticket_streams_key(ticket_id), address_streams_key(address))
        result = scripts_for(self.redis).open_stream(
            keys=list(keys), args=[stream_id, self.lease_ms, self.per_ticket, self.per_address])
        if result[0] != "ok":
            per = str(result[0])
            retry_after = max(1, min(self.lease_ms // 1000, -(-int(result[1]) // 1000)))
            raise TooManyStreams(
                details={"per": per, "limit": self.per_ticket if per == "ticket" else self.per_address},
                headers={"Retry-After": str(retry_after)})
        counted = tuple(key for key, cap in zip(keys, (self.per_ticket, self.per_address), strict=True)
                        if cap > 0)
        return StreamSlot(stream_id, counted)

    def release(self, slot: StreamSlot) -> None:
        """Give the slot back (the stream ended). Idempotent."""
        if not slot.keys:
            return
        pipe = self.redis.pipeline(transaction=False)
        for key in slot.keys:
            pipe.zrem(key, slot.stream_id)
        pipe.execute()

    def renew(self, slots: list[StreamSlot]) -> int:
        """Extend the leases of streams still open, RENEW_BATCH keys a call. Returns how many."""
        pairs = [(key, slot.stream_id) for slot in slots for key in slot.keys]
        for start in range(0, len(pairs), RENEW_BATCH):
            batch = pairs[start:start + RENEW_BATCH]
            scripts_for(self.redis).renew_streams(
                keys=[key for key, _ in batch], args=[self.lease_ms, *(sid for _, sid in batch)])
        return len(pairs)
