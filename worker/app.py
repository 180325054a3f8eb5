"""The Celery application: broker settings that do not lose tasks, request-id propagation."""

from __future__ import annotations

from typing import Any

from celery import Celery, signals
from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError

from common.platform.logs import configure_logging, request_id_var
from common.platform.settings import settings_or_exit
from common.platform.task_routes import TASK_ROUTES
from worker.schedule import beat_schedule
from worker.unacked_lease import UnackedLease, broker_transport_options

settings = settings_or_exit()


def _survive_broker_restarts() -> None:
    """Keep a worker alive when its Redis broker restarts while it holds unacknowledged tasks.

    Celery 5.7 collects a lost broker connection (which drops the transport's client) and
    then closes it; closing a Redis channel restores its unacknowledged messages through that
    transport, and the AttributeError this raises stops the worker ("Unrecoverable error")
    instead of reconnecting. Raised as a connection error, it is ignored like the others and
    the worker reconnects; the messages stay in Redis's unacked index for redelivery.
    """
    original = kombu_redis.Channel._connparams

    def connparams(self: Any, asynchronous: bool = False) -> Any:
        if self.connection.client is None:
            raise RedisConnectionError("the broker connection was already collected")
        return original(self, asynchronous=asynchronous)

    kombu_redis.Channel._connparams = connparams  # type: ignore[method-assign]


_survive_broker_restarts()

celery_app = Celery("flashsale", broker=settings.broker_url, include=["worker.tasks"])
celery_app.conf.update(
    # At-least-once: a task is acknowledged after it ran, and re-queued if its worker dies.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_routes=TASK_ROUTES,
    # A dead worker's task comes back within the timeout; a live worker renews its own
    # (worker/unacked_lease.py), so a long or waiting task is never handed out twice.
    broker_transport_options=broker_transport_options(settings.celery_visibility_timeout_seconds),
    broker_connection_retry_on_startup=True,
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    task_time_limit=600,
    task_soft_time_limit=540,
    worker_hijack_root_logger=False,
    beat_schedule=beat_schedule(settings),
    timezone="UTC",
)
app = celery_app
celery_app.steps["consumer"].add(UnackedLease)



@signals.setup_logging.connect
def _setup_logging(**_: Any) -> None:
    configure_logging(settings.log_level, settings.log_format, process="worker")


@signals.before_task_publish.connect
def _propagate_request_id(headers: dict[str, Any] | None = None, **_: Any) -> None:
    request_id = request_id_var.get()
    if headers is not None and request_id:
        headers.setdefault("request_id", request_id)


@signals.task_prerun.connect
def _adopt_request_id(task: Any = None, **_: Any) -> None:
    request_id = getattr(task.request, "request_id", None) if task else None
    request_id_var.set(request_id or (task.request.id if task else None))
