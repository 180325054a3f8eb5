"""Celery beat's whole schedule, in one dict. Every task here is idempotent and takes a
Redis lock, so two beats started by mistake do no harm."""

from __future__ import annotations

from typing import Any

from common.platform.settings import Settings
from common.platform.task_routes import TaskName


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    return {
        "drain-open-sales": {"task": TaskName.DRAIN_OPEN_SALES, "schedule": 1.0},
        # A lobby gets its places at its sale's start (the first admission after it too).
        "start-lobbies": {"task": TaskName.START_LOBBIES, "schedule": 1.0},
        "expire-reservations": {
            "task": TaskName.EXPIRE_RESERVATIONS,
            "schedule": settings.expiry_interval_seconds,
        },
        "sweep-intent-cancellations": {
            "task": TaskName.SWEEP_INTENT_CANCELLATIONS,
            "schedule": settings.expiry_interval_seconds,
        },
        "return-unsold-units": {
            "task": TaskName.RETURN_UNSOLD_UNITS,
            "schedule": settings.reconcile_interval_seconds,
        },
        "reconcile-sales": {
            "task": TaskName.RECONCILE_SALES,
            "schedule": settings.reconcile_interval_seconds,
        },
    }
