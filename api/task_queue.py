"""Sending Celery tasks from the API by name, over the app's own broker connection, so the
API does not import the worker and tests can point it at their own Redis."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from flask import current_app
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from common.billing.stripe_gateway import SUCCEEDED
from common.platform.errors import ServiceUnavailable
from common.platform.logs import request_id_var
from common.platform.task_routes import TASK_ROUTES, TaskName

log = logging.getLogger("api.tasks")


class TaskQueue:
    def __init__(self, broker_url: str) -> None:
        self.celery = Celery("flashsale-api", broker=broker_url)
        self.celery.conf.update(task_serializer="json", task_routes=TASK_ROUTES,
                                broker_connection_retry=False,
                                broker_transport_options={"max_retries": 1})

    def send(self, name: str, *args: Any) -> None:
        """Queue a task; an unreachable broker is ServiceUnavailable (503), not a 500."""
        # The request id travels as a message header, so the task's log lines carry it too.
        request_id = request_id_var.get()
        try:
            self.celery.send_task(name, args=list(args),
                                  headers={"request_id": request_id} if request_id else None)
        except (KombuError, RedisError, OSError) as exc:
            log.error("task not queued, the broker is unreachable",
                      extra={"task": name, "error": f"{type(exc).__name__}: {exc}"})
            raise ServiceUnavailable("The task queue is unavailable; try again shortly.",
                                     details={"service": "broker"},
                                     headers={"Retry-After": "2"}) from exc


def task_queue() -> TaskQueue:
    return current_app.extensions["flashsale.tasks"]  # type: ignore[no-any-return]


def send_task(name: str, *args: Any) -> None:
    task_queue().send(name, *args)


def apply_succeeded_payment(intent_id: str, status: str) -> None:
    """A payment the API has just seen succeed (its own confirm) is applied now, by the same
    idempotent task a webhook queues, not only when the webhook arrives: one webhook lost
    while the API was saturated (the emulator never retries; Stripe retries over hours) left a
    paying shopper waiting until the reservation expired. The webhook then finds it done."""
    if status != SUCCEEDED:
        return
    try:
        send_task(TaskName.APPLY_PAYMENT, intent_id)
    except ServiceUnavailable:
        pass  # logged by send(); the webhook and the expiry sweep still apply it
