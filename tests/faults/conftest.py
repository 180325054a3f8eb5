"""Fixtures of the fault tests: a Redis of the test's own (processes, broker, locks and the
sales index stay private, and it can be killed and restarted), settings and clients on it,
and `flashsale serve` processes that are always stopped afterwards."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from common.platform.clients import Clients
from common.platform.settings import Settings
from tests.conftest import settings_env
from tests.faults.services import Flashsale, RedisServer


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
def fault_settings(settings: Settings, redis_server: RedisServer) -> Settings:
    return settings.model_copy(update={"redis_url": redis_server.url})


@pytest.fixture
def fault_clients(fault_settings: Settings) -> Iterator[Clients]:
    made = Clients(fault_settings)
    yield made
    with contextlib.suppress(Exception):
        made.mongo.drop_database(made.db.name)
    made.close()


# Short intervals: a fault scenario must settle in seconds, not minutes.
FAST = {"EXPIRY_INTERVAL_SECONDS": "1", "CLAIM_IDLE_MS": "1000", "DRAIN_IDLE_SECONDS": "1",
        "RECONCILE_INTERVAL_SECONDS": "2"}


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Flashsale]]:
    """spawn(kind, settings, label=None, **env) starts `flashsale serve kind` and waits for it."""
    started: list[Flashsale] = []

    def start(kind: str, settings: Settings, label: str | None = None, wait: bool = True,
              **extra: str) -> Flashsale:
        env = settings_env(settings, **(FAST | extra))
        process = Flashsale(kind, env, tmp_path, label=label or f"{kind}-{len(started)}")
        started.append(process.start())
        return process.wait_ready() if wait else process

    yield start
    for process in reversed(started):
        process.stop()


@pytest.fixture
def fault_app(fault_settings: Settings, fault_clients: Clients):
    """The API in-process on the test's own Redis: tasks it sends stay in that Redis."""
    from api.app import create_app

    application = create_app(fault_settings, fault_clients)
    application.testing = True
    return application


@pytest.fixture
def fault_client(fault_app):
    return fault_app.test_client()
