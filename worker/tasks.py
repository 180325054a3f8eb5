"""Celery tasks: thin edges that decode arguments, call common/, and decide retry."""

from __future__ import annotations

import logging

from worker.app import celery_app

log = logging.getLogger("worker.tasks")


@celery_app.task(name="worker.tasks.ping")
def ping() -> str:
    return "pong"
