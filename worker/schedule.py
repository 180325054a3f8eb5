"""Celery beat's whole schedule, in one dict. Every task here is idempotent and takes a
Redis lock, so two beats started by mistake do no harm."""

from __future__ import annotations

from typing import Any

from common.platform.settings import Settings


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    return {
        "drain-open-sales": {"task": "worker.tasks.drain_open_sales", "schedule": 1.0},
        # A lobby gets its places at its sale's start (the first admission after it too).
        "start-lobbies": {"task": "worker.tasks.start_lobbies", "schedule": 1.0},
        "expire-reservations": {
            "task": "worker.tasks.expire_reservations",
            "schedule": settings.expiry_interval_seconds,
        },
        "sweep-intent-cancellations": {
            "task": "worker.tasks.sweep_intent_cancellations",
            "schedule": settings.expiry_interval_seconds,
        },
        "return-unsold-units": {
            "task": "worker.tasks.return_unsold_units",
            "schedule": settings.reconcile_interval_seconds,
        },
        "reconcile-sales": {
            "task": "worker.tasks.reconcile_sales",
            "schedule": settings.reconcile_interval_seconds,
        },
    }
