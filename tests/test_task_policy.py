"""Celery's task policy is declared once: every task is either retried then dead-lettered
(RetriedTask) or left to beat's next tick (PeriodicTask), and task names are constants."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from common.platform.task_routes import TASK_ROUTES, TaskName


@pytest.fixture
def tasks(settings, monkeypatch):
    for name in ("redis_url", "mongodb_uri", "stripe_secret_key", "stripe_webhook_secret",
                 "stripe_api_base", "jwt_secret_key"):
        monkeypatch.setenv(name.upper(), str(getattr(settings, name)))
    monkeypatch.setenv("APP_ENV", "test")
    from worker import tasks as module

    return module


def test_every_task_has_a_declared_policy_and_a_named_constant(tasks):
    from worker.app import celery_app

    ours = {name: task for name, task in celery_app.tasks.items() if name.startswith("worker.")}
    assert set(ours) == {str(name) for name in TaskName}
    for name, task in ours.items():
        if name == TaskName.PING:
            continue
        assert isinstance(task, tasks.RetriedTask | tasks.PeriodicTask), name
    assert set(TASK_ROUTES) <= set(TaskName)


def test_a_task_that_keeps_failing_is_retried_then_dead_lettered(tasks, monkeypatch):
    dead: list[tuple[str, list]] = []
    monkeypatch.setattr(tasks, "_dead_letter_task", lambda name, args, _exc: dead.append((name, args)))
    # Nothing of the worker's runtime is reached: its settings may be another test's.
    monkeypatch.setattr(tasks, "runtime_clients", lambda: SimpleNamespace(sales_redis=None))
    monkeypatch.setattr(tasks, "stripe_gateway", lambda: None)
    monkeypatch.setattr(tasks, "intent_pool", lambda: None)

    calls = []

    def broken(*_args, **_kwargs):
        calls.append(1)
        raise RuntimeError("redis is gone")

    monkeypatch.setattr(tasks.reservations, "drain_sale", broken)
    monkeypatch.setattr(tasks.drain_sale, "retry_backoff", False)  # eager retries at once
    result = tasks.drain_sale.apply(args=["sal_0123456789abcdef"])
    # Eagerly, each retry runs at once: the first try, TASK_MAX_RETRIES retries, one dead letter.
    assert result.state == "FAILURE"
    assert len(calls) == tasks.drain_sale.max_retries + 1
    assert dead == [(TaskName.DRAIN_SALE, ["sal_0123456789abcdef"])]
