"""Celery tasks: thin edges that decode arguments, call common/, and decide retry or
dead-letter. Every task is idempotent: a redelivery after a crash does no harm."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from celery import Task

from common import metrics, reconcile, reservations, sales
from common.payments import apply_intent, mark_event_processed
from worker.app import celery_app, settings
from worker.runtime import intent_pool, payment_context, runtime_clients, stripe_gateway, with_lock

log = logging.getLogger("worker.tasks")


def _drain_options() -> reservations.DrainOptions:
    return reservations.DrainOptions(
        batch_size=settings.decision_batch_size, claim_idle_ms=settings.claim_idle_ms,
        max_deliveries=settings.max_deliveries, idle_seconds=settings.drain_idle_seconds)


@celery_app.task(name="worker.tasks.ping")
def ping() -> str:
    log.info("pong")
    return "pong"


@celery_app.task(name="worker.tasks.drain_sale", ignore_result=True)
def drain_sale(sale_id: str) -> dict[str, Any]:
    """Decide a sale's waiting tickets in arrival order (no-op if another worker is on it)."""
    report = reservations.drain_sale(runtime_clients().redis, stripe_gateway(), sale_id,
                                     _drain_options(), intent_pool())
    if report.decided or report.reclaimed or report.dead_lettered:
        log.info("sale drained", extra={"sale_id": sale_id, "decided": report.decided,
                                        "reserved": report.reserved, "sold_out": report.sold_out,
                                        "reclaimed": report.reclaimed,
                                        "dead_lettered": report.dead_lettered})
    return {"decided": report.decided, "locked_out": report.locked_out}


@celery_app.task(name="worker.tasks.drain_open_sales", ignore_result=True)
def drain_open_sales() -> int:
    """Beat's safety net: load sales Redis lacks and nudge every sale with waiting tickets."""
    clients = runtime_clients()
    sales.load_pending_sales(clients.db, clients.redis)
    needing = reservations.sales_needing_drain(clients.redis, sales.all_sale_ids(clients.redis))
    for sale_id in needing:
        drain_sale.delay(sale_id)
    return len(needing)


@celery_app.task(name="worker.tasks.expire_reservations", ignore_result=True)
def expire_reservations() -> int:
    """Expire unpaid reservations, give their stock back and cancel their PaymentIntents."""
    clients = runtime_clients()
    with with_lock("flashsale:lock:expire", ttl_seconds=60) as acquired:
        if not acquired:
            return 0
        count = 0
        for sale_id in sales.all_sale_ids(clients.redis):
            for ticket_id, intent_id in reservations.expire_due_reservations(clients.redis, sale_id):
                count += 1
                if intent_id:
                    cancel_payment_intent.delay(intent_id)
                log.info("reservation expired", extra={"ticket_id": ticket_id})
        return count


@celery_app.task(name="worker.tasks.cancel_payment_intent", bind=True, ignore_result=True,
                 max_retries=settings.task_max_retries)
def cancel_payment_intent(self: Task, intent_id: str) -> str:
    """Cancel a released reservation's intent; if it was paid meanwhile, settle or refund."""
    try:
        final = stripe_gateway().cancel(intent_id)
        if final.status == "succeeded":
            return apply_intent(payment_context(), intent_id)
        return final.status
    except Exception as exc:
        raise self.retry(exc=exc, countdown=min(2 ** self.request.retries, 60)) from exc


@celery_app.task(name="worker.tasks.apply_payment_event", bind=True, ignore_result=True,
                 max_retries=settings.task_max_retries)
def apply_payment_event(self: Task, event_id: str, intent_id: str, event_type: str) -> str:
    """Apply a Stripe webhook: read the intent's current state, move things forward once."""
    try:
        outcome = apply_intent(payment_context(), intent_id)
    except Exception as exc:
        if self.request.retries >= self.max_retries:
            _dead_letter_task("apply_payment_event", [event_id, intent_id, event_type], exc)
            raise
        raise self.retry(exc=exc, countdown=min(2 ** self.request.retries, 60)) from exc
    mark_event_processed(runtime_clients().db, event_id, outcome)
    metrics.WEBHOOKS.labels(event_type, outcome).inc()
    log.info("payment event applied", extra={"event_id": event_id, "intent_id": intent_id,
                                             "outcome": outcome})
    return outcome


@celery_app.task(name="worker.tasks.reconcile_sales", ignore_result=True)
def reconcile_sales() -> list[dict[str, Any]]:
    """Check available + reserved + sold == stock_total per sale; repair what is provable."""
    with with_lock("flashsale:lock:reconcile", ttl_seconds=120) as acquired:
        if not acquired:
            return []
        reports = reconcile.reconcile_all(payment_context())
        return [r.as_dict() for r in reports]


def _dead_letter_task(name: str, args: list[Any], exc: Exception) -> None:
    runtime_clients().db.dead_letters.insert_one({
        "task": name, "args": args, "error": f"{type(exc).__name__}: {exc}",
        "created_at": datetime.now(UTC)})
    metrics.DEAD_LETTERS.labels("task").inc()
    log.error("task dead-lettered", extra={"task": name, "args": args})
