"""A live worker's hold on the tasks it has taken, renewed while it lives.

Celery's Redis broker redelivers a task that was taken but not acknowledged once the
visibility timeout has passed since it was taken (kombu keeps the time in the `unacked_index`
sorted set). That timeout is one per broker connection, not per queue or task: with the hour
it used to be, a task held by a SIGKILLed worker (a webhook's payment, a sale's drain) waited
an hour for another worker. Short, it would also redeliver what a live worker still holds:
a drain that runs minutes, a reconcile over many sales, a retry waiting out its countdown
(kombu holds those unacknowledged too). All tasks are idempotent and the long ones take a
lock, so a copy would do no harm, but retried copies could multiply under a Stripe outage.

So the timeout is short (CELERY_VISIBILITY_TIMEOUT_SECONDS, 30 s) and each worker renews the
time of every task it holds every third of it, as a lease: a live worker's tasks never come
due, a dead worker's come due within the timeout and are handed out by the next sweep of any
worker (every SWEEP_SECONDS), or by a worker starting up.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import bootsteps

log = logging.getLogger("worker.lease")


def sweep_seconds(visibility_timeout: float) -> float:
    """How often each worker looks for tasks come due (kombu's default: every 100 s)."""
    return max(1.0, min(5.0, visibility_timeout / 3))


def broker_transport_options(visibility_timeout: int) -> dict[str, Any]:
    return {
        "visibility_timeout": visibility_timeout,
        "unacked_restore_interval": sweep_seconds(visibility_timeout),
        "unacked_restore_throttle": 1,  # every interval scans (kombu: every tenth)
        # A worker killed during a sweep leaves its mutex this long (kombu: 5 minutes).
        "unacked_mutex_expire": max(10, visibility_timeout // 2),
    }


def held_tags(qos: Any) -> list[str]:
    """Delivery tags the channel holds unacknowledged (kombu's virtual QoS bookkeeping)."""
    dirty = set(qos._dirty)
    return [tag for tag in list(qos._delivered) if tag not in dirty]


def renew(channel: Any) -> int:
    """Mark every task this channel holds as taken now; returns how many. `XX`: a task
    already acknowledged or handed out again is left alone."""
    try:
        tags = held_tags(channel.qos)
    except RuntimeError:  # changed while read (a task arrived or finished): the next tick
        return 0
    if tags:
        now = time.time()
        with channel.conn_or_acquire() as client:
            client.zadd(channel.unacked_index_key, dict.fromkeys(tags, now), xx=True)
    return len(tags)


class UnackedLease(bootsteps.StartStopStep):
    """Consumer step: renews the held tasks' lease every third of the visibility timeout."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._entry: Any = None

    def start(self, parent: Any) -> None:
        timeout = parent.app.conf.broker_transport_options["visibility_timeout"]
        self._entry = parent.timer.call_repeatedly(timeout / 3, self._renew, (parent,), priority=10)

    def stop(self, parent: Any) -> None:
        if self._entry is not None:
            self._entry.cancel()
            self._entry = None

    shutdown = stop

    @staticmethod
    def _renew(parent: Any) -> None:
        consumer = parent.task_consumer
        if consumer is None:
            return
        try:
            renew(consumer.channel)
        except Exception as exc:  # a broker outage: the next tick tries again
            log.warning("task lease not renewed: %s: %s", type(exc).__name__, exc)
