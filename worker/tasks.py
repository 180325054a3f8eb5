"""Celery tasks: thin edges that decode arguments, call common/, and decide retry or
dead-letter. Every task is idempotent: a redelivery after a crash does no harm."""

from __future__ import annotations

import logging
import random
import time
from typing import Any

from celery import Task

from common.accounts import email_verification
from common.auditing import reconcile
from common.billing import draw_mail, draw_walk, payments
from common.billing.payments import apply_intent, mark_event_processed
from common.flash_sale import beacon_draw, draw, lobby, reservations, sale_keys, sales
from common.platform import metrics
from common.platform.clock import utc_now
from common.platform.errors import PaymentProviderBusy
from common.platform.locks import RedisLock
from common.platform.task_routes import TaskName
from worker.app import celery_app, settings
from worker.runtime import intent_pool, payment_context, runtime_clients, stripe_gateway, with_lock

log = logging.getLogger("worker.tasks")

# Stripe throttling the shop (429) or not answering is Stripe's trouble, not the task's: such
# retries are counted apart and never spend the task's own max_retries; up to this many
# (about an hour at the 60 s cap) before the task is given up.
MAX_THROTTLED_RETRIES = 60


class RetriedTask(Task):
    """The policy of every task that reacts to an event (a nudge, a webhook), declared once:
    any exception is retried with jittered exponential backoff capped at a minute, up to
    TASK_MAX_RETRIES times; a task that still fails is dead-lettered (the `dead_letters`
    collection, a metric and an error line), never dropped silently."""

    autoretry_for = (Exception,)
    retry_backoff = True
    retry_backoff_max = 60
    retry_jitter = True
    max_retries = settings.task_max_retries

    def on_failure(self, exc: BaseException, _task_id: str, args: Any, _kwargs: Any,
                   _einfo: Any) -> None:
        _dead_letter_task(self.name, list(args), exc)


class PeriodicTask(Task):
    """Beat's sweeps: never retried (beat runs them again on its next tick, under a lock), a
    failure is logged once."""

    def on_failure(self, exc: BaseException, _task_id: str, _args: Any, _kwargs: Any,
                   _einfo: Any) -> None:
        log.error("periodic task failed; beat runs it again",
                  extra={"task": self.name, "error": f"{type(exc).__name__}: {exc}"})


def backoff_seconds(retries: int) -> float:
    """Exponential backoff capped at a minute, jittered so that tasks throttled together do
    not all come back in the same second."""
    return random.uniform(0.5, 1.0) * min(2 ** retries, 60)


def _drain_options() -> reservations.DrainOptions:
    return reservations.DrainOptions(
        batch_size=settings.decision_batch_size, claim_idle_ms=settings.claim_idle_ms,
        max_deliveries=settings.max_deliveries, idle_seconds=settings.drain_idle_seconds,
        health=reservations.HealthThresholds(
            enabled=settings.stripe_health_pacing,
            window_seconds=settings.stripe_health_window_seconds,
            min_calls=settings.stripe_health_min_calls,
            max_error_rate=settings.stripe_health_max_error_rate,
            slow_call_ms=settings.stripe_health_slow_call_ms,
            max_slow_rate=settings.stripe_health_max_slow_rate,
            step_seconds=settings.stripe_health_step_seconds))


@celery_app.task(name=TaskName.PING)
def ping() -> str:
    log.info("pong")
    return "pong"


@celery_app.task(name=TaskName.DRAIN_SALE, base=RetriedTask, ignore_result=True)
def drain_sale(sale_id: str) -> dict[str, Any]:
    """Decide a sale's waiting tickets in arrival order (no-op if another worker is on it)."""
    report = reservations.drain_sale(runtime_clients().sales_redis, stripe_gateway(), sale_id,
                                     _drain_options(), intent_pool())
    if report.decided or report.reclaimed or report.dead_lettered:
        log.info("sale drained", extra={"sale_id": sale_id, "decided": report.decided,
                                        "reserved": report.reserved, "sold_out": report.sold_out,
                                        "reclaimed": report.reclaimed,
                                        "dead_lettered": report.dead_lettered})
    return {"decided": report.decided, "locked_out": report.locked_out}


@celery_app.task(name=TaskName.DRAIN_OPEN_SALES, base=PeriodicTask, ignore_result=True)
def drain_open_sales() -> int:
    """Beat's safety net: load sales Redis lacks and nudge every sale with waiting tickets."""
    clients = runtime_clients()
    sales.load_pending_sales(clients.db, clients.sales_redis)
    needing = reservations.sales_needing_drain(clients.sales_redis, sales.all_sale_ids(clients.sales_redis))
    for sale_id in needing:
        drain_sale.delay(sale_id)
    return len(needing)


@celery_app.task(name=TaskName.START_LOBBIES, base=PeriodicTask, ignore_result=True)
def start_lobbies() -> int:
    """At a sale's start: give every lobby ticket its drawn place (idempotent, crash-safe),
    then drain the sale."""
    clients = runtime_clients()
    redis_client = clients.sales_redis
    started = lobby.start_due_lobbies(redis_client, sales.all_sale_ids(redis_client))
    for sale_id in started:
        drain_sale.delay(sale_id)
    # A beacon draw: its close is published at once, its round fetched once its time has come.
    for sale_id in beacon_draw.awaiting_beacon(redis_client, sales.all_sale_ids(redis_client)):
        close = beacon_draw.record_close(clients.db, redis_client, sale_id)
        if close.state == "recorded":
            # At the round's time to the millisecond, not at beat's next tick; beat below
            # stays the safety net (and the retries' clock).
            fetch_beacon_round.apply_async((sale_id, False), eta=beacon_draw.round_eta(redis_client, sale_id))
        elif beacon_draw.fetch_due(redis_client, sale_id):
            fetch_beacon_round.delay(sale_id)
    # A draw sale's start is its draw: walked by one task at a time (under the sale's draw
    # lock), resumed by the next tick's task if a worker dies in it.
    for sale_id in draw.due_draws(redis_client, sales.all_sale_ids(redis_client)):
        walk_draw.delay(sale_id)
    return len(started)


@celery_app.task(name=TaskName.FETCH_BEACON_ROUND, base=PeriodicTask, ignore_result=True)
def fetch_beacon_round(sale_id: str, claimed: bool = True) -> str:
    """Fetch and verify a beacon draw's round, then place its lobby (or walk its draw) at once.
    A round only just due that the relays lack yet is asked for again every quarter second;
    after that a beacon that cannot be reached leaves the sale `drawing`, and beat claims the
    next try after a backoff (beacon_draw.fetch_due). `claimed`: beat claimed the fetch for
    this task; the task scheduled at the close claims it itself."""
    clients = runtime_clients()
    if not claimed and not beacon_draw.fetch_due(clients.sales_redis, sale_id):
        return "not_due"
    try:
        while True:
            resolution = beacon_draw.resolve_round(clients.db, clients.sales_redis, sale_id,
                                                   settings.drand_urls,
                                                   timeout_seconds=settings.drand_timeout_seconds)
            if not resolution.fresh:
                break
            time.sleep(resolution.wait_ms / 1000)
    finally:
        beacon_draw.release_fetch(clients.sales_redis, sale_id)
    if resolution.state in ("resolved", "already"):
        if draw.is_draw_sale(clients.sales_redis, sale_id):
            walk_draw.delay(sale_id)
        else:
            report = lobby.start_due_lobby(clients.sales_redis, sale_id)
            if report is not None and report.state == "placed":
                log.info("lobby placed", extra={"sale_id": sale_id, "lobby_size": report.lobby_size})
            drain_sale.delay(sale_id)
    return resolution.state


# A killed walker frees its draw within this long; a live one renews after every entry.
DRAW_LOCK_MS = 10_000


@celery_app.task(name=TaskName.WALK_DRAW, base=PeriodicTask, ignore_result=True)
def walk_draw(sale_id: str) -> dict[str, int] | None:
    """Run or resume a draw sale's walk (no-op while another worker walks it)."""
    lock = RedisLock(runtime_clients().sales_redis, sale_keys.draw_lock_key(sale_id), DRAW_LOCK_MS)
    with lock as acquired:
        if not acquired:
            return None
        report = draw_walk.walk_draw(payment_context(), sale_id,
                                     calls_per_second=settings.draw_stripe_calls_per_second,
                                     keep_alive=lock.renew)
    log.info("draw walked", extra={"sale_id": sale_id, "state": report.state,
                                   "captured": report.captured, "failed": report.failed,
                                   "released": report.released, "no_hold": report.no_hold,
                                   "stripe_calls": report.stripe_calls})
    if report.state == "done":
        mail_draw_results.delay(sale_id)
    return {"captured": report.captured, "failed": report.failed, "released": report.released}


@celery_app.task(name=TaskName.MAIL_DRAW_RESULTS, base=RetriedTask, ignore_result=True)
def mail_draw_results(sale_id: str) -> int:
    """Mail each entrant of a finished draw its result, a batch per task (each entrant mailed
    is recorded, so a retry goes on where the last one stopped); the next batch is its own task."""
    sent = draw_mail.send_results(
        runtime_clients().sales_redis, runtime_clients().db, sale_id, smtp_url=settings.smtp_url,
        sender=settings.mail_from, public_url=settings.public_url or f"http://{settings.host}:{settings.port}")
    if sent:
        mail_draw_results.delay(sale_id)
    return sent


@celery_app.task(name=TaskName.EXPIRE_RESERVATIONS, base=PeriodicTask, ignore_result=True)
def expire_reservations() -> int:
    """Expire unpaid reservations and give their stock back; their PaymentIntents are queued
    in the cancellation outbox by the same step, and swept at once."""
    clients = runtime_clients()
    with with_lock("flashsale:lock:expire", ttl_seconds=60) as acquired:
        if not acquired:
            return 0
        count = 0
        for sale_id in sales.all_sale_ids(clients.sales_redis):
            expired = reservations.expire_due_reservations(clients.sales_redis, sale_id)
            for ticket_id, _intent_id in expired:
                log.info("reservation expired", extra={"ticket_id": ticket_id})
            if any(intent_id for _, intent_id in expired):
                sweep_intent_cancellations.delay(sale_id)
            count += len(expired)
        return count


@celery_app.task(name=TaskName.SWEEP_INTENT_CANCELLATIONS, base=PeriodicTask, ignore_result=True)
def sweep_intent_cancellations(sale_id: str | None = None) -> dict[str, int]:
    """Cancel released tickets' PaymentIntents until Stripe confirms (the outbox); settle or
    refund any that were paid first. Beat runs it for every sale."""
    clients = runtime_clients()
    sale_ids = [sale_id] if sale_id else sales.all_sale_ids(clients.sales_redis)
    totals: dict[str, int] = {}
    for one in sale_ids:
        with with_lock(f"flashsale:lock:intent-cancels:{one}", ttl_seconds=120) as acquired:
            if not acquired:
                continue
            for outcome, n in payments.sweep_intent_cancellations(payment_context(), one).items():
                totals[outcome] = totals.get(outcome, 0) + n
    if totals:
        log.info("intent cancellations swept", extra={"sale_id": sale_id, **totals})
    return totals


@celery_app.task(name=TaskName.RETURN_UNSOLD_UNITS, base=PeriodicTask, ignore_result=True)
def return_unsold_units() -> int:
    """Give the unsold units of ended sales back to their products' catalogue stock."""
    clients = runtime_clients()
    with with_lock("flashsale:lock:return-unsold", ttl_seconds=120) as acquired:
        if not acquired:
            return 0
        returned = 0
        for sale_id in sales.all_sale_ids(clients.sales_redis):
            units = sales.return_unsold_units(clients.db, clients.sales_redis, sale_id)
            if units:
                log.info("unsold units returned to the catalogue",
                         extra={"sale_id": sale_id, "units": units})
            returned += units
        return returned


# RetriedTask's policy, with one refinement it cannot express: Stripe's throttling does not
# spend the task's own retries (so autoretry is off and the retry is asked for here).
@celery_app.task(name=TaskName.APPLY_PAYMENT_EVENT, base=RetriedTask, bind=True,
                 ignore_result=True, autoretry_for=())
def apply_payment_event(self: Task, event_id: str, intent_id: str, event_type: str,
                        throttled: int = 0) -> str:
    """Apply a Stripe webhook: read the intent's current state, move things forward once.
    `throttled` counts the retries Stripe's 429s or unreachable moments caused."""
    try:
        outcome = apply_intent(payment_context(), intent_id)
    except Exception as exc:
        busy = isinstance(exc, PaymentProviderBusy) and throttled < MAX_THROTTLED_RETRIES
        throttled += int(busy)
        if not busy and self.request.retries - throttled >= self.max_retries:
            raise  # RetriedTask.on_failure dead-letters it
        raise self.retry(exc=exc, countdown=backoff_seconds(self.request.retries),
                         kwargs={"throttled": throttled},
                         max_retries=self.max_retries + throttled) from exc
    mark_event_processed(runtime_clients().db, event_id, outcome)
    metrics.WEBHOOKS.labels(event_type, outcome).inc()
    log.info("payment event applied", extra={"event_id": event_id, "intent_id": intent_id,
                                             "outcome": outcome})
    return outcome


@celery_app.task(name=TaskName.APPLY_PAYMENT, base=RetriedTask, ignore_result=True)
def apply_payment(intent_id: str) -> str:
    """Apply a PaymentIntent the API saw succeed, without waiting for its webhook (which may
    be lost or late); the same idempotent step, so whichever comes second changes nothing."""
    outcome = apply_intent(payment_context(), intent_id)
    log.info("confirmed payment applied", extra={"intent_id": intent_id, "outcome": outcome})
    return outcome


@celery_app.task(name=TaskName.SEND_VERIFICATION_MAIL, base=RetriedTask, ignore_result=True)
def send_verification_mail(user_id: str) -> bool:
    """Mail the account a new one-time verification link (SMTP down: retried, then
    dead-lettered like any task)."""
    sent = email_verification.send_verification(
        runtime_clients().db, user_id,
        public_url=settings.public_url or f"http://{settings.host}:{settings.port}",
        smtp_url=settings.smtp_url, sender=settings.mail_from)
    log.info("verification mail sent" if sent else "verification mail not needed",
             extra={"user_id": user_id})
    return sent


@celery_app.task(name=TaskName.RECONCILE_SALES, base=PeriodicTask, ignore_result=True)
def reconcile_sales() -> list[dict[str, Any]]:
    """Check available + reserved + sold == stock_total per sale; repair what is provable."""
    with with_lock("flashsale:lock:reconcile", ttl_seconds=120) as acquired:
        if not acquired:
            return []
        # On sales that are selling: a mismatch counts once the next run sees it again.
        reports = reconcile.reconcile_all(payment_context(), settle_grace_ms=reconcile.SETTLE_GRACE_MS,
                                          confirm=True)
        return [r.as_dict() for r in reports]


def _dead_letter_task(name: str, args: list[Any], exc: BaseException) -> None:
    runtime_clients().db.dead_letters.insert_one({
        "task": name, "args": args, "error": f"{type(exc).__name__}: {exc}",
        "created_at": utc_now()})
    metrics.DEAD_LETTERS.labels("task").inc()
    log.error("task dead-lettered", extra={"task": name, "args": args})
