"""Which Celery queue each task goes to, shared by the API (which sends by name) and the
worker. Decisions get a queue of their own so that a `decider` process serves them even
while every thread of a general worker waits on Stripe."""

from __future__ import annotations

DEFAULT_QUEUE = "celery"
DECISIONS_QUEUE = "decisions"

TASK_ROUTES: dict[str, dict[str, str]] = {
    "worker.tasks.drain_sale": {"queue": DECISIONS_QUEUE},
    "worker.tasks.drain_open_sales": {"queue": DECISIONS_QUEUE},
    "worker.tasks.start_lobbies": {"queue": DECISIONS_QUEUE},
}
