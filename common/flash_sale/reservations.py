"""Deciding tickets in arrival order, and ending reservations that were not paid.

A sale's stream is consumed through one consumer group. One decider holds a sale's drain
lock at a time, so tickets are decided in stream order, in batches, by one Lua call each.
Entries are acknowledged only after their decision is stored; entries left pending by a dead
worker are claimed (XAUTOCLAIM) and decided again, which changes nothing for a ticket that
was already decided. PaymentIntents are created concurrently, off the decision loop.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import redis

from common.flash_sale import health_pacing, lobby, sale_keys
from common.flash_sale.health_pacing import HealthThresholds
from common.flash_sale.intent_outbox import PaymentIntents, cancel_released_intent
from common.flash_sale.tickets import TicketStatus
from common.flash_sale.waiting_room import release_ticket
from common.platform import ids, metrics
from common.platform.clock import now_ms
from common.platform.errors import PaymentProviderBusy, PaymentProviderError
from common.platform.locks import RedisLock
from common.platform.lua_scripts import scripts_for

log = logging.getLogger("common.flash_sale.reservations")

# reserve_batch.lua's answers for a ticket left undecided by the operator's pause or pace.
HELD_BACK = frozenset({"paused", "deferred"})
# Short: a decider that dies frees its sale within seconds; a live one renews every loop.
LOCK_TTL_MS = 5_000
BLOCK_MS = 100


@dataclass
class DrainOptions:
    batch_size: int = 500
    claim_idle_ms: int = 15_000
    max_deliveries: int = 5
    idle_seconds: float = 2.0
    max_seconds: float = 300.0
    # How long one delivery keeps retrying a PaymentIntent that Stripe throttles (429) or does
    # not answer, with backoff, before leaving it to the next pass (which does not count it).
    intent_retry_seconds: float = 8.0
    # When Stripe's errors or slowness lower the sale's pace (health_pacing.py).
    health: HealthThresholds = field(default_factory=HealthThresholds)


@dataclass
class DrainReport:
    decided: int = 0
    reserved: int = 0
    sold_out: int = 0
    reclaimed: int = 0
    dead_lettered: int = 0
    intent_failures: int = 0
    batches: int = 0
    acked: int = 0
    locked_out: bool = False
    errors: list[str] = field(default_factory=list)

    def add(self, other: DrainReport) -> DrainReport:
        for name in ("decided", "reserved", "sold_out", "reclaimed", "dead_lettered",
                     "intent_failures", "batches", "acked"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors.extend(other.errors)
        return self


def ensure_group(redis_client: redis.Redis, sale_id: str) -> None:
    try:
        redis_client.xgroup_create(sale_keys.stream_key(sale_id), sale_keys.CONSUMER_GROUP,
                                   id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def decide_batch(redis_client: redis.Redis, sale_id: str, ticket_ids: list[str],
                 rate_sample: float = 0.0) -> list[tuple[str, str]]:
    """Reserve or sell out each ticket, in the given (arrival) order, atomically; a ticket
    whose owner is absent past the sale's presence timeout ends abandoned. Published once on
    the sale's events channel."""
    keys = [sale_keys.config_key(sale_id), sale_keys.counters_key(sale_id),
            sale_keys.live_tickets_key(sale_id), sale_keys.held_units_key(sale_id),
            sale_keys.expiry_key(sale_id), sale_keys.presence_key(sale_id),
            sale_keys.report_key(sale_id)]
    keys += [sale_keys.ticket_key(sale_id, tid) for tid in ticket_ids]
    flat = scripts_for(redis_client).reserve_batch(keys=keys, args=[rate_sample])
    return list(zip(flat[0::2], flat[1::2], strict=True))


def attach_payment_intent(redis_client: redis.Redis, gateway: PaymentIntents, sale_id: str,
                          ticket_id: str) -> str:
    """Create the reservation's PaymentIntent and show the ticket as reserved.

    Idempotent: a ticket that already has an intent keeps it; an intent that loses a race
    (the emulator ignores idempotency keys) or arrives after the reservation ended is
    cancelled. Returns the attach outcome.
    """
    key = sale_keys.ticket_key(sale_id, ticket_id)
    ticket = redis_client.hmget(key, "status", "payment_intent_id", "quantity", "user_id")
    status, existing, quantity, user_id = ticket
    if status is None:
        return "missing"
    if existing or status != TicketStatus.RESERVING.value:
        return "attached" if existing else "gone"
    price, currency = redis_client.hmget(sale_keys.config_key(sale_id), "price_cents", "currency")
    amount = int(price) * int(quantity)
    intent = gateway.create_intent(
        amount_cents=amount, currency=str(currency),
        metadata={"kind": "sale", "sale_id": sale_id, "ticket_id": ticket_id, "user_id": str(user_id)},
        idempotency_key=f"ticket-{ticket_id}",
    )
    outcome = scripts_for(redis_client).attach_intent(
        keys=[key, sale_keys.intent_cancels_key(sale_id)],
        args=[intent.id, intent.client_secret, amount, str(currency)])
    if outcome != "attached":
        # attach_intent.lua queued the losing intent in the outbox: cancel it now if Stripe
        # answers, else beat's sweep does.
        try:
            cancel_released_intent(redis_client, gateway, sale_id, intent.id)
        except PaymentProviderError:
            log.warning("losing intent not cancelled yet; the outbox keeps it",
                        extra={"intent_id": intent.id, "ticket_id": ticket_id})
    return str(outcome)


class Decider:
    """Drains one sale's waiting room until it stays empty for `idle_seconds`."""

    def __init__(self, redis_client: redis.Redis, gateway: PaymentIntents, sale_id: str,
                 options: DrainOptions, intent_pool: ThreadPoolExecutor,
                 consumer: str | None = None) -> None:
        self.redis = redis_client
        self.gateway = gateway
        self.sale_id = sale_id
        self.options = options
        self.pool = intent_pool
        # The pid in the name tells an operator (and the crash tests) who holds a sale.
        self.consumer = consumer or ids.new_decider_name()
        self.stream = sale_keys.stream_key(sale_id)
        self.lock = RedisLock(redis_client, sale_keys.drain_lock_key(sale_id), LOCK_TTL_MS,
                              holder=self.consumer)
        self.report = DrainReport()
        self._pending_intents: list[Future[None]] = []
        self._report_lock = threading.Lock()
        self._last_rate = 0.0
        # Entries whose PaymentIntent this decider is creating (guarded by _report_lock).
        self._in_flight: set[str] = set()
        self._last_touch = 0.0
        self._last_health_check = 0.0
        # Entries read but held back by the pause or the pace, decided first next time, in order.
        self._held: list[tuple[str, dict[str, str]]] = []

    def _keep_in_flight_fresh(self) -> None:
        """Reset the idle time of the entries whose PaymentIntents this decider is still
        creating, so a slow Stripe does not make them look abandoned: otherwise they are
        claimed again, their delivery count grows and they end dead-lettered while their
        intents are on the way. Only a decider that stops (dies, stalls) lets them go stale."""
        now = time.monotonic()
        if now - self._last_touch < self.options.claim_idle_ms / 3000:
            return
        self._last_touch = now
        with self._report_lock:
            in_flight = list(self._in_flight)
        if in_flight:
            # JUSTID: the entries' delivery counts stay as they are.
            self.redis.xclaim(self.stream, sale_keys.CONSUMER_GROUP, self.consumer, min_idle_time=0,
                              message_ids=in_flight, justid=True)

    # -- reading ------------------------------------------------------------------------

    def _claim_stale(self) -> list[tuple[str, dict[str, str]]]:
        """Entries another decider read but never acknowledged (it died or stalled)."""
        _next, entries, *_ = self.redis.xautoclaim(
            self.stream, sale_keys.CONSUMER_GROUP, self.consumer,
            min_idle_time=self.options.claim_idle_ms, start_id="0-0", count=self.options.batch_size)
        entries = [(eid, data) for eid, data in entries if data]
        if not entries:
            return []
        self.report.reclaimed += len(entries)
        return self._without_poison(entries)

    def _without_poison(self, entries: list[tuple[str, dict[str, str]]]) -> list[tuple[str, dict[str, str]]]:
        """Dead-letter entries delivered too often, so the line keeps moving. Deliveries that
        ended because Stripe throttled the shop or was unreachable do not count: an outage
        must not turn waiting shoppers into `payment_failed`."""
        details = self.redis.xpending_range(self.stream, sale_keys.CONSUMER_GROUP,
                                            min=entries[0][0], max=entries[-1][0], count=len(entries))
        deliveries = {d["message_id"]: d["times_delivered"] for d in details}
        throttled = self.redis.hmget(sale_keys.intent_throttled_key(self.sale_id),
                                     [entry_id for entry_id, _ in entries])
        keep = []
        for (entry_id, data), excused in zip(entries, throttled, strict=True):
            if deliveries.get(entry_id, 0) - int(excused or 0) > self.options.max_deliveries:
                self._dead_letter(entry_id, data, "too many deliveries")
            else:
                keep.append((entry_id, data))
        return keep

    def _dead_letter(self, entry_id: str, data: dict[str, str], reason: str) -> None:
        ticket_id = data.get("ticket_id", "")
        self.redis.xadd(sale_keys.dead_letter_key(self.sale_id),
                        {"entry_id": entry_id, "ticket_id": ticket_id, "error": reason,
                         "at": str(now_ms())})
        # The ticket still gets exactly one outcome: its hold (if any) is released.
        released, intent_id = release_ticket(
            self.redis, ticket_id, TicketStatus.PAYMENT_FAILED,
            (TicketStatus.QUEUED, TicketStatus.RESERVING, TicketStatus.RESERVED))
        if released and intent_id:
            try:
                cancel_released_intent(self.redis, self.gateway, self.sale_id, intent_id)
            except PaymentProviderError:
                pass  # queued in the outbox by the release: beat's sweep cancels it
        self._ack(entry_id)
        self.report.dead_lettered += 1
        metrics.DEAD_LETTERS.labels("ticket").inc()
        log.error("ticket dead-lettered", extra={"sale_id": self.sale_id, "ticket_id": ticket_id,
                                                 "reason": reason})

    def _read_new(self, pace: float | None = None) -> list[tuple[str, dict[str, str]]]:
        # A paced sale reads about what its pace lets through, so little waits held back.
        count = self.options.batch_size if pace is None else \
            max(1, min(self.options.batch_size, math.floor(pace / 10)))
        reply = self.redis.xreadgroup(sale_keys.CONSUMER_GROUP, self.consumer, {self.stream: ">"},
                                      count=count, block=BLOCK_MS)
        if not reply:
            return []
        return [(eid, data) for eid, data in reply[0][1] if data]

    # -- deciding -----------------------------------------------------------------------

    def _controls(self) -> tuple[bool, float | None]:
        """The operator's pause and pace, read from the sale's config every loop (controls.py):
        reserve_batch.lua enforces both atomically; this only sizes what is read."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hmget(sale_keys.config_key(self.sale_id), "paused", "outflow_per_second", "closing")
        pipe.hget(sale_keys.counters_key(self.sale_id), "auto_pace")
        (paused, pace, closing), auto = pipe.execute()
        if closing:  # ended or cancelled: every waiting ticket is ended at once
            return False, None
        operator_pace = float(pace) if pace else None
        now = time.monotonic()
        if now - self._last_health_check >= 1.0:
            self._last_health_check = now
            changed = health_pacing.adjust_pace(self.redis, self.sale_id, self.options.health,
                                                operator_pace)
            if changed is not False:
                auto = None if changed is None else repr(changed)
        paces = [p for p in (operator_pace, float(auto) if auto not in (None, "") else None)
                 if p is not None]
        return paused == "1", min(paces) if paces else None

    def _decide(self, entries: list[tuple[str, dict[str, str]]], rate_sample: float) -> None:
        ids = [data["ticket_id"] for _, data in entries]
        decisions = decide_batch(self.redis, self.sale_id, ids, rate_sample)
        done_now: list[str] = []
        for (entry_id, data), (ticket_id, outcome) in zip(entries, decisions, strict=True):
            if outcome in HELD_BACK:
                # Paused or beyond the pace: unchanged and unacknowledged, decided next time.
                self._held.append((entry_id, data))
                continue
            if outcome in (TicketStatus.RESERVING, f"already:{TicketStatus.RESERVING.value}"):
                if outcome == TicketStatus.RESERVING:
                    self.report.reserved += 1
                    metrics.DECISIONS.labels(TicketStatus.RESERVED.value).inc()
                with self._report_lock:
                    if entry_id in self._in_flight:
                        continue
                    self._in_flight.add(entry_id)
                self._pending_intents.append(
                    self.pool.submit(self._attach_then_ack, entry_id, ticket_id))
            else:
                if outcome in (TicketStatus.SOLD_OUT, "limit_reached"):
                    self.report.sold_out += 1
                    metrics.DECISIONS.labels(outcome).inc()
                elif outcome == TicketStatus.ABANDONED.value:
                    metrics.DECISIONS.labels(outcome).inc()
                done_now.append(entry_id)
        self.report.decided += sum(1 for _, o in decisions
                                   if not o.startswith("already:") and o not in HELD_BACK)
        if done_now:
            self.redis.xack(self.stream, sale_keys.CONSUMER_GROUP, *done_now)
            with self._report_lock:
                self.report.acked += len(done_now)

    def _ack(self, entry_id: str) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.xack(self.stream, sale_keys.CONSUMER_GROUP, entry_id)
        pipe.hdel(sale_keys.intent_throttled_key(self.sale_id), entry_id)
        pipe.execute()

    def _attach_with_backoff(self, ticket_id: str) -> None:
        """attach_payment_intent, repeated with jittered exponential backoff while Stripe
        throttles or cannot be reached, for up to intent_retry_seconds. Meanwhile the entry is
        in flight, so its idle time is kept fresh and its delivery count does not grow."""
        deadline = time.monotonic() + self.options.intent_retry_seconds
        delay = 0.25
        while True:
            started = time.monotonic()
            try:
                attach_payment_intent(self.redis, self.gateway, self.sale_id, ticket_id)
                self._record_stripe(started, ok=True)
                return
            except PaymentProviderBusy:
                self._record_stripe(started, ok=False)
                pause = random.uniform(delay / 2, delay)
                if time.monotonic() + pause > deadline:
                    raise
                time.sleep(pause)
                delay = min(delay * 2, 4.0)
            except PaymentProviderError:
                self._record_stripe(started, ok=False)
                raise

    def _record_stripe(self, started: float, *, ok: bool) -> None:
        """Stripe's answer to this PaymentIntent, for the health window every decider reads."""
        try:
            health_pacing.record_call(self.redis, time.monotonic() - started, ok, self.options.health)
        except redis.RedisError:
            log.warning("Stripe's health not recorded", exc_info=True)

    def _attach_then_ack(self, entry_id: str, ticket_id: str) -> None:
        try:
            self._attach_with_backoff(ticket_id)
        except PaymentProviderBusy as exc:
            # Stripe's trouble, not the ticket's: recorded apart from the entry's deliveries, so
            # the pass that claims it again does not bring it closer to the dead letters.
            key = sale_keys.intent_throttled_key(self.sale_id)
            pipe = self.redis.pipeline(transaction=False)
            pipe.hincrby(key, entry_id, 1)
            pipe.expire(key, 7 * 24 * 3600)
            pipe.execute()
            with self._report_lock:
                self._in_flight.discard(entry_id)
                self.report.intent_failures += 1
                self.report.errors.append(f"{ticket_id}: {type(exc).__name__}")
            log.warning("Stripe busy or unreachable: payment intent not created yet; will retry",
                        extra={"ticket_id": ticket_id, "error": str(exc.__cause__ or exc)})
            return
        except Exception as exc:
            # Left pending: another pass claims it after claim_idle_ms and tries again.
            with self._report_lock:
                self._in_flight.discard(entry_id)
                self.report.intent_failures += 1
                self.report.errors.append(f"{ticket_id}: {type(exc).__name__}")
            log.warning("payment intent not created; will retry",
                        extra={"ticket_id": ticket_id, "error": str(exc)})
            return
        try:
            self._ack(entry_id)
        finally:
            with self._report_lock:
                self._in_flight.discard(entry_id)
        with self._report_lock:
            self.report.acked += 1

    def run(self, should_stop: Callable[[], bool] = lambda: False) -> DrainReport:
        if not self.lock.acquire():
            self.report.locked_out = True
            return self.report
        try:
            ensure_group(self.redis, self.sale_id)
            started = last_work = time.monotonic()
            while not should_stop():
                now = time.monotonic()
                if now - last_work > self.options.idle_seconds or now - started > self.options.max_seconds:
                    break
                # Still ours? Extended; a decider that lost its lock stops deciding.
                if not self.lock.renew():
                    log.warning("drain lock lost", extra={"sale_id": self.sale_id})
                    break
                self._keep_in_flight_fresh()
                paused, pace = self._controls()
                if paused:
                    # Nothing is decided: let go (beat looks every second). Entries held back
                    # stay pending and are claimed again after claim_idle_ms.
                    break
                held, self._held = self._held, []
                entries = held or self._claim_stale() or self._read_new(pace)
                if not entries:
                    continue
                batch_started = time.perf_counter()
                self._decide(entries, rate_sample=self._last_rate)
                elapsed = time.perf_counter() - batch_started
                # The measured service rate feeds the ETAs shown to shoppers.
                if elapsed > 0 and len(entries) >= 10:
                    self._last_rate = len(entries) / elapsed
                self.report.batches += 1
                last_work = time.monotonic()
                if self._held:
                    # Beyond the pace: wait about one token's time.
                    time.sleep(min(0.5, max(0.01, 1 / pace)) if pace else BLOCK_MS / 1000)
            for future in self._pending_intents:
                while not future.done():
                    if self.lock.renew():
                        self._keep_in_flight_fresh()
                    time.sleep(0.05)
        finally:
            self._give_back_held()
            self.lock.release()
        return self.report

    def _give_back_held(self) -> None:
        """Entries held back when this decider stops (paused meanwhile) are made claimable at
        once, ahead of newer ones, and that delivery is not counted towards the dead letters."""
        if not self._held:
            return
        held = [entry_id for entry_id, _ in self._held]
        self._held = []
        key = sale_keys.intent_throttled_key(self.sale_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.xclaim(self.stream, sale_keys.CONSUMER_GROUP, self.consumer, min_idle_time=0,
                    message_ids=held, idle=self.options.claim_idle_ms, justid=True)
        for entry_id in held:
            pipe.hincrby(key, entry_id, 1)
        pipe.expire(key, 7 * 24 * 3600)
        pipe.execute()


def drain_sale(redis_client: redis.Redis, gateway: PaymentIntents, sale_id: str,
               options: DrainOptions, intent_pool: ThreadPoolExecutor,
               consumer: str | None = None) -> DrainReport:
    """Decide every waiting ticket of a sale; returns at once if another decider holds it.
    A lobby still waiting for its places at the start gets them first (lobby.py)."""
    if lobby.lobby_pending(redis_client, sale_id):
        lobby.start_due_lobby(redis_client, sale_id)
    report = Decider(redis_client, gateway, sale_id, options, intent_pool, consumer).run()
    # admit.lua does not nudge workers while a decider holds the lock, so a ticket admitted
    # just as this one let go would wait for beat's next pass: look once more.
    if not report.locked_out and has_undecided_tickets(redis_client, sale_id):
        report.add(Decider(redis_client, gateway, sale_id, options, intent_pool, consumer).run())
    return report


def has_undecided_tickets(redis_client: redis.Redis, sale_id: str) -> bool:
    issued, served = redis_client.hmget(sale_keys.counters_key(sale_id), "issued", "served")
    return int(issued or 0) > int(served or 0)


def sales_needing_drain(redis_client: redis.Redis, sale_ids: list[str]) -> list[str]:
    """Sales with undecided or unacknowledged tickets (a cheap check per sale)."""
    needing = []
    for sale_id in sale_ids:
        queued = redis_client.hget(sale_keys.counters_key(sale_id), "queued")
        if has_undecided_tickets(redis_client, sale_id) or int(queued or 0) > 0:
            needing.append(sale_id)
            continue
        try:
            pending = redis_client.xpending(sale_keys.stream_key(sale_id), sale_keys.CONSUMER_GROUP)
        except redis.ResponseError:
            continue
        if pending and pending.get("pending"):
            needing.append(sale_id)
    return needing


# What release_ticket reports for a ticket in the expiry set that no longer holds stock.
ENDED_OR_SETTLING = frozenset({TicketStatus.PAID, TicketStatus.SETTLING, TicketStatus.CANCELLED,
                               TicketStatus.PAYMENT_FAILED, TicketStatus.EXPIRED, "missing"})


def expire_due_reservations(redis_client: redis.Redis, sale_id: str,
                            limit: int = 500) -> list[tuple[str, str]]:
    """Mark reservations past expires_at `expired`, returning their stock to the sale.

    Atomic per ticket and safe to run twice: a ticket that was paid, cancelled or already
    expired meanwhile is skipped. Returns (ticket_id, payment_intent_id) of those expired,
    whose PaymentIntents the caller cancels.
    """
    due = redis_client.zrangebyscore(sale_keys.expiry_key(sale_id), "-inf", now_ms(), start=0, num=limit)
    expired = []
    for ticket_id in due:
        released, intent_id = release_ticket(
            redis_client, str(ticket_id), TicketStatus.EXPIRED,
            (TicketStatus.RESERVING, TicketStatus.RESERVED), only_if_due=True)
        if released:
            expired.append((str(ticket_id), intent_id))
            metrics.EXPIRED.inc()
        elif intent_id in ENDED_OR_SETTLING:
            redis_client.zrem(sale_keys.expiry_key(sale_id), ticket_id)
    return expired

