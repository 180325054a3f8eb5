"""Live ticket updates: the events a shopper's stream carries, the one Redis subscription per
API process that feeds every stream, and presence.

Why: a waiting shopper who polls costs a full authenticated request per poll (token check,
Redis read, JSON, access log); at the surge polls and admissions share the cores. A stream
costs a socket and a few kilobytes while nothing changes.

Fan-out costs per sale, not per shopper. The Lua scripts that change tickets publish once per
batch or change on the sale's channel (platform/lua/library.lua `publish_ticket_events`):
`"<served> <served_at_ms> <rate> <ticket_id>..."`. Each API process subscribes to the pattern
once (`TicketFeed`, one thread, a greenlet under gevent) and works out every follower's position
itself from the ticket's `seq` and the served counter in the message: no Redis call per shopper
per update, only a re-read of a ticket whose own status changed.

Presence: each feed writes the ids of the waiting tickets it streams into the sale's presence
hash every PRESENCE_REFRESH_SECONDS (one HSET per sale, not a write per ping); a poll writes
its own ticket's entry. reserve_batch.lua reads the hash when the ticket's turn comes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import redis

from common.flash_sale import sale_keys
from common.flash_sale.stream_slots import RENEW_SECONDS, StreamSlot, StreamSlots
from common.flash_sale.tickets import (
    FINAL,
    PAYMENT_PENDING,
    PUBLIC_STATUS,
    Chances,
    TicketStatus,
    public_ticket,
)
from common.platform.errors import NotFound
from common.platform.lua_scripts import scripts_for
from common.platform.subscriptions import Subscription

log = logging.getLogger("common.flash_sale.ticket_events")

PING_SECONDS = 15.0
# Position and ETA change with every batch; a shopper is told at most this often, and far
# from the front only as often as a poll would ask (the ticket's poll_after_ms, up to 10 s):
# 10,000 streams told once a second cost more than two cores (loadtests/bench_sse.py).
POSITION_EVERY_SECONDS = 1.0
PRESENCE_REFRESH_SECONDS = 5.0
# Three refreshes: a stream is never taken for absent because one write was late.
MIN_PRESENCE_TIMEOUT_SECONDS = 15
# The presence hash outlives its last write by this long (a sale's keys live 7 days after it).
PRESENCE_KEEP_SECONDS = 8 * 24 * 3600
# Every open stream's ticket is checked this often even if no message named it: a change by a
# script that does not publish shows within it. The feed checks them all at once, a pipelined
# HMGET each, and wakes only a stream whose ticket changed: a read per stream per minute was a
# round trip each, about a fifth of a still lobby stream's cost (bench_sse --idle).
REREAD_SECONDS = 60.0
# Tickets checked per round trip.
CHECK_BATCH = 1_000
# An expired ticket whose payment may still have gone through is read this often until the
# decision: an intent that Stripe confirms cancelled leaves the outbox without a message.
PENDING_REREAD_SECONDS = 2.0

_TOKEN_CONTEXT = b"flashsale ticket event stream v1"
# Statuses in the order a ticket can pass through them (TRANSITIONS): with the time of the
# change, they make an event id that grows with every change.
_STATUS_ORDER = ("lobby", "queued", "reserving", "reserved", "expired", "settling", "paid",
                 "sold_out", "cancelled", "payment_failed", "abandoned")
WAITING = frozenset({"lobby", TicketStatus.QUEUED.value, TicketStatus.RESERVING.value})


# ------------------------------------------------------------------ stream tokens


def stream_token_key(secret: str) -> bytes:
    """The key of stream tokens, derived from the JWT secret (so nothing is stored)."""
    return hmac.new(secret.encode(), _TOKEN_CONTEXT, hashlib.sha256).digest()


def stream_token(key: bytes, ticket_id: str, expires_at: int) -> str:
    """The ticket's `stream_token`: opens this ticket's event stream, and nothing else, until
    `expires_at` (Unix seconds): `<expires_at>.<HMAC of ticket id and expiry>`."""
    digest = hmac.new(key, f"{ticket_id}|{expires_at}".encode(), hashlib.sha256).digest()[:24]
    return f"{expires_at}.{base64.urlsafe_b64encode(digest).decode()}"


def stream_token_valid(key: bytes, ticket_id: str, token: str, now: float, ttl_seconds: int) -> bool:
    """True for a token of this ticket that has not expired, and whose expiry is no further
    than `ttl_seconds` away (what this API issues). A token of the first format (no expiry)
    opens nothing: it would open its stream for ever."""
    expires_text, dot, _ = token.partition(".")
    if not dot or not (expires_text.isascii() and expires_text.isdigit()) or len(expires_text) > 12:
        return False
    expires_at = int(expires_text)
    if not now < expires_at <= now + ttl_seconds:
        return False
    # Compared as bytes: compare_digest refuses str with non-ASCII characters, and a token
    # is whatever a client put in the query string.
    return hmac.compare_digest(stream_token(key, ticket_id, expires_at).encode(),
                               token.encode("utf-8", "replace"))


# ------------------------------------------------------------------ what a stream sends


def event_version(fields: dict[str, str], served_at_ms: int) -> int:
    """The event id: grows with every change the shopper can see. A waiting ticket changes
    when it moves up (the served counter moved at `served_at_ms`) or changes status; an expired
    ticket when its late payment is decided (which may change nothing else)."""
    changed = int(fields.get("updated_at_ms") or 0)
    status = fields.get("status", "")
    if status == TicketStatus.QUEUED.value:
        changed = max(changed, served_at_ms)
    rank = _STATUS_ORDER.index(status) + 1 if status in _STATUS_ORDER else 0
    return changed * 100 + rank * 2 + (0 if fields.get(PAYMENT_PENDING) else 1)


def is_final(fields: dict[str, str]) -> bool:
    """Nothing will change any more: a final status, and for an expired ticket no payment that
    may still make it `paid` or refunded (a stream stays open until that decision)."""
    try:
        status = TicketStatus(fields.get("status", ""))
    except ValueError:
        return False
    return PUBLIC_STATUS.get(status, status) in FINAL and not fields.get(PAYMENT_PENDING)


# How stale a sale's outlook counters may get between moves of its line (one read per sale).
CHANCES_REFRESH_SECONDS = 0.5


@dataclass
class SaleProgress:
    """What a sale's messages carry: the served counter, when it moved, the service rate; and
    the counters behind units_ahead and outlook, read once per message for the whole sale."""

    served: int = 0
    served_at_ms: int = 0
    rate: float = 0.0
    chances: Chances = field(default_factory=Chances)

    def advance(self, served: int, served_at_ms: int, rate: float) -> bool:
        if served < self.served or (served == self.served and served_at_ms <= self.served_at_ms):
            return False
        self.served, self.served_at_ms, self.rate = served, served_at_ms, rate
        return True


@dataclass
class SaleMessage:
    sale_id: str
    progress: SaleProgress | None
    ticket_ids: list[str]


def parse_message(channel: str, data: str) -> SaleMessage | None:
    sale_id = sale_keys.sale_of_events_channel(channel)
    parts = data.split(" ")
    if sale_id is None or len(parts) < 3:
        return None
    progress = None
    if parts[0] != "-":
        progress = SaleProgress(int(parts[0]), int(parts[1]), float(parts[2]))
    return SaleMessage(sale_id, progress, parts[3:])


def read_ticket_state(redis_client: redis.Redis, ticket_id: str) -> tuple[dict[str, str], SaleProgress]:
    """A ticket's hash and its sale's progress and chances, in one round trip: what the poll
    and the stream both build their ticket from (`ticket_of`). NotFound when there is none."""
    sale_id = sale_keys.sale_of_ticket(ticket_id)
    if sale_id is None:
        raise NotFound("No such ticket.")
    pipe = redis_client.pipeline(transaction=False)
    pipe.hgetall(sale_keys.ticket_key(sale_id, ticket_id))
    pipe.hmget(sale_keys.counters_key(sale_id), "served", "served_at_ms", "rate", *Chances.FIELDS)
    fields, (served, served_at, rate, *chances) = pipe.execute()
    if not fields:
        raise NotFound("No such ticket.")
    if fields.get("status") == TicketStatus.EXPIRED.value and not fields.get("refund_id"):
        # Rare, and one more round trip: was money taken that is not decided on yet?
        intent_id = fields.get("payment_intent_id")
        if fields.get("refund_due") or (intent_id and redis_client.zscore(
                sale_keys.intent_cancels_key(sale_id), intent_id) is not None):
            fields[PAYMENT_PENDING] = "1"
    return fields, SaleProgress(int(served or 0), int(served_at or 0), float(rate or 0.0),
                                Chances.from_values(chances))


def ticket_of(fields: dict[str, str], progress: SaleProgress) -> dict[str, Any]:
    """The contract's ticket, as the join, the poll and every stream event show it."""
    return public_ticket(fields, progress.served, progress.rate, progress.chances)


def note_presence(redis_client: redis.Redis, sale_id: str, ticket_ids: list[str]) -> None:
    """Record the tickets' owners as present now (a poll, or streams that are open), stamped
    with Redis's clock, the one reserve_batch.lua compares with (one round trip)."""
    if ticket_ids:
        scripts_for(redis_client).note_presence(keys=[sale_keys.presence_key(sale_id)],
                                                args=[PRESENCE_KEEP_SECONDS, *ticket_ids])


class PollPresence:
    """Which polls note their owner as present: at most one write per ticket every
    PRESENCE_REFRESH_SECONDS in this process, the pace open streams are noted at. The shortest
    presence timeout (MIN_PRESENCE_TIMEOUT_SECONDS) is three of those, so a shopper who keeps
    polling is never taken for absent. A write per poll was a second round trip and about half
    of a status read's API CPU (make bench, the read part)."""

    def __init__(self, every_seconds: float = PRESENCE_REFRESH_SECONDS, capacity: int = 200_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.every_seconds = every_seconds
        self.capacity = capacity
        self._clock = clock
        self._noted_at: dict[str, float] = {}

    def due(self, ticket_id: str) -> bool:
        """True (and remembered) when this ticket's owner should be noted now."""
        now = self._clock()
        last = self._noted_at.get(ticket_id)
        if last is not None and now - last < self.every_seconds:
            return False
        if len(self._noted_at) >= self.capacity:
            # Forget what is too old to hold a write back; a bounded memory whatever the traffic.
            recent = {t: at for t, at in self._noted_at.items() if now - at < self.every_seconds}
            self._noted_at = recent if len(recent) < self.capacity else {}
        self._noted_at[ticket_id] = now
        return True


POLL_PRESENCE = PollPresence()


# ------------------------------------------------------------------ the feed


@dataclass(eq=False)
class Follower:
    """One open stream: woken by the feed when its ticket or its sale's progress changed."""

    ticket_id: str
    sale_id: str
    wake: threading.Event = field(default_factory=threading.Event)
    status_changed: bool = False  # its own ticket was named: read it again
    moved: bool = False  # the sale's served counter moved: the position may have changed
    closed: bool = False  # the client went away (set by the HTTP edge)
    waiting: bool = True  # queued or in the lobby: counts for presence, cares about progress
    # No position is sent before this (time.monotonic()): a move meanwhile does not wake the
    # stream, which wakes by itself then. Without it every batch woke every stream of the sale
    # (10,000 streams x 10 batches a second) only to find the position paced.
    quiet_until: float = 0.0
    slot: StreamSlot | None = None  # its place under the caps on open streams, renewed by the feed
    seen: tuple[str, str] = ("", "")  # its ticket's status and updated_at_ms as last read

    def close(self) -> None:
        self.closed = True
        self.wake.set()


class TicketFeed(Subscription):
    """This process's one subscription to every sale's events, and its open streams."""

    thread_name = "ticket-feed"
    outage_message = "ticket feed interrupted; streams re-read their tickets when it is back"

    def __init__(self, redis_client: redis.Redis, retry_seconds: float = 1.0,
                 presence_refresh_seconds: float = PRESENCE_REFRESH_SECONDS,
                 subscriber: redis.Redis | None = None, slots: StreamSlots | None = None,
                 reread_seconds: float = REREAD_SECONDS) -> None:
        super().__init__(retry_seconds)
        self.redis = redis_client
        self.slots = slots
        self.reread_seconds = reread_seconds
        # Pub/sub needs a plain connection: with a cluster, one of its nodes.
        self.subscriber = subscriber or redis_client
        self.presence_refresh_seconds = presence_refresh_seconds
        self._followers: dict[str, set[Follower]] = {}
        # The same followers by ticket: a message naming one ticket (a payment, an intent
        # attached) wakes its streams without walking every stream of the sale.
        self._by_ticket: dict[str, list[Follower]] = {}
        self._progress: dict[str, SaleProgress] = {}
        self._chances_read_at: dict[str, float] = {}
        self._lock = threading.Lock()
        self.subscribed = threading.Event()

    # -- followers ----------------------------------------------------------------------

    @property
    def open_streams(self) -> int:
        with self._lock:
            return sum(len(group) for group in self._followers.values())

    def follow(self, ticket_id: str, sale_id: str, progress: SaleProgress | None,
               slot: StreamSlot | None = None) -> Follower:
        """A stream's follower, woken from now on by its ticket's and its sale's changes;
        `progress`: the sale's as just read (None: not read yet, `observe` it once read)."""
        follower = Follower(ticket_id, sale_id, slot=slot)
        with self._lock:
            self._followers.setdefault(sale_id, set()).add(follower)
            self._by_ticket.setdefault(ticket_id, []).append(follower)
            self._progress.setdefault(sale_id, SaleProgress())
        if progress is not None:
            self.observe(sale_id, progress)
        return follower

    def observe(self, sale_id: str, progress: SaleProgress) -> None:
        """Take a sale's progress read just now: its served counter if newer than the one
        known, and its chances always (none are fresher). Before, the chances were taken only
        with a move of the line, and a sale whose line had not moved yet (a lobby, an open sale
        before its first batch) showed every stream the empty default: `unlikely` where the
        join and the poll said `likely`."""
        with self._lock:
            known = self._progress.get(sale_id)
            if known is None:
                return  # nobody follows the sale (any more)
            known.advance(progress.served, progress.served_at_ms, progress.rate)
            known.chances = progress.chances
            self._chances_read_at[sale_id] = time.monotonic()

    def forget(self, follower: Follower) -> None:
        with self._lock:
            same_ticket = self._by_ticket.get(follower.ticket_id, [])
            if follower in same_ticket:
                same_ticket.remove(follower)
                if not same_ticket:
                    del self._by_ticket[follower.ticket_id]
            group = self._followers.get(follower.sale_id)
            if group is not None:
                group.discard(follower)
                if not group:
                    del self._followers[follower.sale_id]
                    self._progress.pop(follower.sale_id, None)
                    self._chances_read_at.pop(follower.sale_id, None)

    def progress(self, sale_id: str) -> SaleProgress:
        with self._lock:
            known = self._progress.get(sale_id) or SaleProgress()
            return SaleProgress(known.served, known.served_at_ms, known.rate, known.chances)

    # -- the subscription ---------------------------------------------------------------

    def dispatch(self, message: SaleMessage) -> None:
        """Wake the followers a message concerns (called by the subscription's thread)."""
        named = set(message.ticket_ids)
        with self._lock:
            followed = message.sale_id in self._followers
        # A change of a sale may move its units (a decision, a release, a payment): its counters
        # are read for all its followers at once, at most every CHANCES_REFRESH_SECONDS (a drain
        # publishes once per reserved ticket's intent), and on every move of the line.
        now = time.monotonic()
        due = now - self._chances_read_at.get(message.sale_id, 0.0) >= CHANCES_REFRESH_SECONDS
        chances = None
        if followed and (due or message.progress is not None):
            self._chances_read_at[message.sale_id] = now
            chances = Chances.from_values(self.redis.hmget(
                sale_keys.counters_key(message.sale_id), *Chances.FIELDS))
        with self._lock:
            moved = False
            if message.progress is not None:
                known = self._progress.setdefault(message.sale_id, SaleProgress())
                moved = known.advance(message.progress.served, message.progress.served_at_ms,
                                      message.progress.rate)
            if chances is not None and message.sale_id in self._progress:
                self._progress[message.sale_id].chances = chances
            own = [f for ticket_id in named for f in self._by_ticket.get(ticket_id, ())
                   if f.sale_id == message.sale_id]
            group = list(self._followers.get(message.sale_id, ())) if moved else []
        for follower in own:
            follower.status_changed = True
            follower.wake.set()
        now = time.monotonic()
        for follower in group:
            if follower.status_changed:
                continue
            if follower.waiting:
                follower.moved = True
                if now >= follower.quiet_until:
                    follower.wake.set()

    def _wake_all_to_reread(self) -> None:
        with self._lock:
            everyone = [f for group in self._followers.values() for f in group]
        for follower in everyone:
            follower.status_changed = True
            follower.wake.set()

    def _refresh_presence(self) -> None:
        with self._lock:
            waiting = {sale_id: [f.ticket_id for f in group if f.waiting and not f.closed]
                       for sale_id, group in self._followers.items()}
        for sale_id, ticket_ids in waiting.items():
            note_presence(self.redis, sale_id, ticket_ids)

    def _renew_slots(self) -> None:
        if self.slots is None:
            return
        with self._lock:
            held = [f.slot for group in self._followers.values() for f in group
                    if f.slot is not None and not f.closed]
        if held:
            self.slots.renew(held)

    def _check_tickets(self) -> None:
        """Wake the streams whose ticket changed since they last read it (no message said so)."""
        with self._lock:
            followers = [f for group in self._followers.values() for f in group if not f.closed]
        for start in range(0, len(followers), CHECK_BATCH):
            batch = followers[start:start + CHECK_BATCH]
            pipe = self.redis.pipeline(transaction=False)
            for follower in batch:
                pipe.hmget(sale_keys.ticket_key(follower.sale_id, follower.ticket_id),
                           "status", "updated_at_ms")
            for follower, (status, updated_at_ms) in zip(batch, pipe.execute(), strict=True):
                if (status or "", updated_at_ms or "") != follower.seen:
                    follower.status_changed = True
                    follower.wake.set()

    def _interrupted(self) -> None:
        self.subscribed.clear()

    def _follow(self) -> None:
        pubsub = self.subscriber.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.psubscribe(sale_keys.EVENTS_PATTERN)
            # Messages published while the subscription was down are lost: every stream reads
            # its ticket again (once per reconnect, not per message).
            if self._failing:
                log.info("ticket feed current again")
                self._failing = False
                self._wake_all_to_reread()
            self.subscribed.set()
            last_presence = last_renewal = last_check = time.monotonic()
            while not self._stop.is_set():
                wait = last_presence + self.presence_refresh_seconds - time.monotonic()
                message = pubsub.get_message(timeout=max(0.0, min(1.0, wait)))
                if message is not None and message["type"] == "pmessage":
                    parsed = parse_message(str(message["channel"]), str(message["data"]))
                    if parsed is not None:
                        self.dispatch(parsed)
                if time.monotonic() - last_presence >= self.presence_refresh_seconds:
                    last_presence = time.monotonic()
                    self._refresh_presence()
                if time.monotonic() - last_renewal >= RENEW_SECONDS:
                    last_renewal = time.monotonic()
                    self._renew_slots()
                if time.monotonic() - last_check >= self.reread_seconds:
                    last_check = time.monotonic()
                    self._check_tickets()
        finally:
            pubsub.close()


# ------------------------------------------------------------------ one stream


def follow_and_read(feed: TicketFeed, redis_client: redis.Redis, ticket_id: str,
                    slot: StreamSlot | None = None) -> tuple[Follower, dict[str, str], SaleProgress]:
    """Register a stream's follower, then read its ticket: a change published from then on
    wakes it, so one read is enough (reading first would need a second read after following,
    for a change published in between). NotFound, with nothing left registered, when there is
    no such ticket. The caller forgets the follower if it does not go on to `follow_ticket`."""
    sale_id = sale_keys.sale_of_ticket(ticket_id)
    if sale_id is None:
        raise NotFound("No such ticket.")
    follower = feed.follow(ticket_id, sale_id, None, slot)
    try:
        fields, progress = read_ticket_state(redis_client, ticket_id)
    except BaseException:
        feed.forget(follower)
        raise
    feed.observe(sale_id, progress)
    return follower, fields, progress


@dataclass
class TicketEvent:
    version: int
    ticket: dict[str, Any]


def follow_ticket(feed: TicketFeed, redis_client: redis.Redis, fields: dict[str, str],
                  progress: SaleProgress, last_event_id: int | None = None,
                  on_follow: Callable[[Follower], None] | None = None,
                  ping_seconds: float = PING_SECONDS,
                  position_every: float = POSITION_EVERY_SECONDS,
                  slot: StreamSlot | None = None, follower: Follower | None = None,
                  ) -> Generator[TicketEvent | None, None, None]:
    """What one stream sends: the current ticket at once (unless `last_event_id` is as new),
    then every change (status at once, position and ETA at most every `position_every`
    seconds, and no more often than the ticket's poll_after_ms asks a poller to come back),
    and None when a ping is due; it ends after a final status, or when the follower
    is closed. Closing the iterator forgets the follower at once. With `follower` (from
    `follow_and_read`, which read `fields` after following), nothing is read again."""
    ticket_id, sale_id = fields["id"], fields["sale_id"]
    read_after_following = follower is not None
    if follower is None:
        follower = feed.follow(ticket_id, sale_id, progress, slot)
    if on_follow is not None:
        on_follow(follower)
    try:
        if not read_after_following:
            # A change published between the caller's read and follow() reached no follower
            # (the load test's shoppers, opening their stream as the decider took them, waited
            # for the 60 s re-read): read the ticket once more now that the stream is followed.
            try:
                fields, fresh = read_ticket_state(redis_client, ticket_id)
            except NotFound:
                return
            feed.observe(sale_id, fresh)
        follower.seen = (fields.get("status", ""), fields.get("updated_at_ms", ""))
        sent_version = last_event_id or 0
        sent_ticket: dict[str, Any] | None = None
        last_read = ping_at = time.monotonic()
        # What the ticket was last built from: a stream woken for a ping, or a move that does
        # not concern it, builds nothing (most wakes of a still line are pings).
        built_from: tuple[Any, ...] = ()
        version, ticket = 0, {}
        while True:
            follower.waiting = fields.get("status") in WAITING
            progress = feed.progress(sale_id)
            inputs = (fields, progress.served, progress.served_at_ms, progress.rate, progress.chances)
            if inputs != built_from:
                built_from = inputs
                version = event_version(fields, progress.served_at_ms)
                ticket = ticket_of(fields, progress)
            now = time.monotonic()
            if version > sent_version and ticket != sent_ticket:
                # Only a waiting ticket's moves are paced; any other change is news (a late
                # payment decided a moment after `expired` must not be held back, nor lost when
                # the stream ends right after it).
                status_news = sent_ticket is None or ticket["status"] != sent_ticket["status"]
                if status_news or not follower.waiting or now >= follower.quiet_until:
                    yield TicketEvent(version, ticket)
                    sent_version, sent_ticket, ping_at = version, ticket, now
                    follower.quiet_until = now + max(position_every,
                                                     (ticket.get("poll_after_ms") or 0) / 1000)
            if is_final(fields):
                return
            pending = bool(fields.get(PAYMENT_PENDING))
            timeout = ping_at + ping_seconds - now
            if pending:
                timeout = min(timeout, last_read + PENDING_REREAD_SECONDS - now)
            if follower.waiting and now < follower.quiet_until:
                # Moves now wake nobody (dispatch): look again when the pause is over.
                timeout = min(timeout, follower.quiet_until - now)
            follower.wake.wait(max(0.0, timeout))
            follower.wake.clear()
            if follower.closed:
                return
            if time.monotonic() - ping_at >= ping_seconds:
                yield None
                ping_at = time.monotonic()
            reread = follower.status_changed or (
                pending and time.monotonic() - last_read >= PENDING_REREAD_SECONDS)
            follower.status_changed = follower.moved = False
            if reread:
                try:
                    fields, fresh = read_ticket_state(redis_client, ticket_id)
                except NotFound:
                    return
                feed.observe(sale_id, fresh)
                follower.seen = (fields.get("status", ""), fields.get("updated_at_ms", ""))
                last_read = time.monotonic()
    finally:
        feed.forget(follower)



def presence_timeout_allowed(seconds: int) -> bool:
    """A sale's presence_timeout_seconds: 0 (off) or long enough that an owner whose stream
    is open is never taken for absent between two presence refreshes."""
    return seconds == 0 or seconds >= MIN_PRESENCE_TIMEOUT_SECONDS
