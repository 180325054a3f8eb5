"""Celery task names and the queue each task goes to, shared by the API (which sends by name,
without importing the worker) and the worker. Decisions get a queue of their own so that a
`decider` process serves them even while every thread of a general worker waits on Stripe."""

from __future__ import annotations

from enum import StrEnum


class TaskName(StrEnum):
    PING = "worker.tasks.ping"
    DRAIN_SALE = "worker.tasks.drain_sale"
    DRAIN_OPEN_SALES = "worker.tasks.drain_open_sales"
    START_LOBBIES = "worker.tasks.start_lobbies"
    WALK_DRAW = "worker.tasks.walk_draw"
    FETCH_BEACON_ROUND = "worker.tasks.fetch_beacon_round"
    MAIL_DRAW_RESULTS = "worker.tasks.mail_draw_results"
    EXPIRE_RESERVATIONS = "worker.tasks.expire_reservations"
    SWEEP_INTENT_CANCELLATIONS = "worker.tasks.sweep_intent_cancellations"
    RETURN_UNSOLD_UNITS = "worker.tasks.return_unsold_units"
    APPLY_PAYMENT_EVENT = "worker.tasks.apply_payment_event"
    APPLY_PAYMENT = "worker.tasks.apply_payment"
    RECONCILE_SALES = "worker.tasks.reconcile_sales"
    SEND_VERIFICATION_MAIL = "worker.tasks.send_verification_mail"


DEFAULT_QUEUE = "celery"
DECISIONS_QUEUE = "decisions"

TASK_ROUTES: dict[str, dict[str, str]] = {
    TaskName.DRAIN_SALE: {"queue": DECISIONS_QUEUE},
    TaskName.DRAIN_OPEN_SALES: {"queue": DECISIONS_QUEUE},
    TaskName.START_LOBBIES: {"queue": DECISIONS_QUEUE},
}
