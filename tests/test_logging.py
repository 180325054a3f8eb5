"""Logs are JSON lines whose `request_id` follows a request into the tasks it causes.

The lines are read as operators see them: formatted by the handler that
`common.platform.logs.configure_logging` installs, then parsed back from JSON.
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
from celery import Celery
from celery.contrib.testing.app import setup_default_app
from celery.contrib.testing.worker import start_worker
from flask import Flask, request

from common.platform.logs import configure_logging, request_id_var
from common.platform.settings import get_settings

GENERATED_ID = re.compile(r"[0-9a-f]{32}")

LogLines = Callable[[], list[dict[str, Any]]]


@pytest.fixture(autouse=True)
def _restore_root_logging() -> Iterator[None]:
    # configure_logging (and a Celery worker's set-up) replace the root handlers.
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@contextmanager
def json_log_lines(process: str = "test", this_thread_only: bool = False) -> Iterator[LogLines]:
    """Route every log record through the production JSON handler into memory (with
    this_thread_only, not those of background threads such as the denylist copy)."""
    configure_logging("INFO", "json", process=process)
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    stream = io.StringIO()
    handler.setStream(stream)
    caller = threading.get_ident()
    if this_thread_only:
        handler.addFilter(lambda record: record.thread == caller)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]


# ----------------------------------------------------------------------------- the API


@pytest.fixture
def logging_app(app: Flask) -> Flask:
    """The real app plus routes that log the way handlers do, and fail the way they can."""
    log = logging.getLogger("api.test")

    @app.get("/_test/log")
    def log_lines():
        log.info("handling %s", request.args.get("tag"))
        time.sleep(0.02)  # let concurrent requests interleave their lines
        logging.getLogger("common.test").warning("domain says %s", request.args.get("tag"))
        return {"ok": True}

    @app.get("/_test/boom")
    def boom():
        log.info("about to fail")
        raise RuntimeError("boom")

    return app


def test_every_line_of_a_request_carries_the_adopted_id(logging_app):
    client = logging_app.test_client()
    with json_log_lines("api") as lines:
        response = client.get("/_test/boom", headers={"X-Request-ID": "shop-42.Ab_c"})
        logging.getLogger("api.test").info("between requests")
    *during, after = lines()

    assert response.status_code == 500
    assert response.headers["X-Request-ID"] == "shop-42.Ab_c"
    # The view, the error handler and the after-request hook each logged a line.
    assert {line["logger"] for line in during} >= {"api.test", "api.errors", "api"}
    assert all(line["request_id"] == "shop-42.Ab_c" for line in during), during
    assert all(line["process"] == "api" and line["level"] for line in during)
    assert after["message"] == "between requests" and after["request_id"] is None


@pytest.mark.parametrize("incoming", [
    None, "", "has space", "x" * 65, "<script>alert(1)</script>", "a;b", "../../etc/passwd",
])
def test_a_missing_or_bad_request_id_is_replaced(logging_app, incoming):
    client = logging_app.test_client()
    headers = {} if incoming is None else {"X-Request-ID": incoming}
    with json_log_lines("api", this_thread_only=True) as lines:  # the test client runs here
        first = client.get("/_test/log?tag=one", headers=headers)
        second = client.get("/_test/log?tag=two", headers=headers)

    ids = [first.headers["X-Request-ID"], second.headers["X-Request-ID"]]
    assert all(GENERATED_ID.fullmatch(rid) for rid in ids) and ids[0] != ids[1]
    logged = lines()
    # In order: every line of the first request, then every line of the second.
    assert [line["request_id"] for line in logged] == sorted(
        (line["request_id"] for line in logged), key=ids.index)
    by_tag = {"one": ids[0], "two": ids[1]}
    view_lines = [line for line in logged if line["logger"].endswith(".test")]
    assert len(view_lines) == 4
    for line in view_lines:
        assert line["request_id"] == by_tag[line["message"].split()[-1]], line


def test_concurrent_requests_keep_their_own_ids(logging_app):
    tags = [f"t{n}" for n in range(8)]
    responses: dict[str, Any] = {}

    def shopper(tag: str) -> None:
        responses[tag] = logging_app.test_client().get(
            f"/_test/log?tag={tag}", headers={"X-Request-ID": f"req-{tag}"})

    with json_log_lines("api") as lines:
        threads = [threading.Thread(target=shopper, args=(tag,)) for tag in tags]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)

    assert all(responses[tag].headers["X-Request-ID"] == f"req-{tag}" for tag in tags)
    logged = lines()
    assert {line["request_id"] for line in logged} == {f"req-{tag}" for tag in tags}
    view_lines = [line for line in logged if line["logger"].endswith(".test")]
    assert len(view_lines) == 2 * len(tags)
    for line in view_lines:
        assert line["request_id"] == f"req-{line['message'].split()[-1]}", line


# ---------------------------------------------------------------------- into Celery tasks


@pytest.fixture
def worker_signals(servers, monkeypatch):
    """worker/app.py imported, so its publish and prerun signal handlers are connected."""
    monkeypatch.setenv("REDIS_URL", servers.redis.url)
    get_settings.cache_clear()
    try:
        yield importlib.import_module("worker.app")
    finally:
        get_settings.cache_clear()


@pytest.fixture
def task_redis(servers) -> Iterator[redis.Redis]:
    made = redis.Redis.from_url(servers.redis.url, decode_responses=True)
    yield made
    made.close()


@pytest.fixture
def celery_worker(servers, worker_signals, task_redis):
    """A real Celery app and worker (threads pool) on the session's Redis, in its own key space.

    Its one task logs a line and writes the request id it runs under to a Redis key; given
    `then`, it publishes itself again to show that the id also reaches child tasks.
    """
    prefix = f"t_{uuid.uuid4().hex[:12]}:"
    app = Celery("request-id-test", broker=servers.redis.url, set_as_current=False)
    app.conf.update(
        broker_transport_options={"global_keyprefix": prefix},
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        worker_hijack_root_logger=False,
        worker_enable_remote_control=False,
    )

    # Not shared: the task must not leak into other Celery apps of the test session.
    @app.task(name="tests.record_request_id", bind=True, shared=False)
    def record_request_id(self, key: str, then: str | None = None) -> None:
        logging.getLogger("worker.test").info("recording %s", key)
        task_redis.set(key, json.dumps({"request_id": request_id_var.get(),
                                        "task_id": self.request.id}), ex=300)
        if then:
            record_request_id.delay(then)

    with setup_default_app(app), start_worker(app, pool="threads", concurrency=2,
                                              perform_ping_check=False, shutdown_timeout=30):
        yield record_request_id, prefix
    for key in task_redis.scan_iter(f"{prefix}*"):
        task_redis.delete(key)


def recorded(task_redis: redis.Redis, key: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = task_redis.get(key)
        if value:
            return json.loads(value)
        time.sleep(0.05)
    raise AssertionError(f"the task did not write {key} within {timeout}s")


def test_the_request_id_follows_an_api_request_into_its_task(app, celery_worker, task_redis):
    record_request_id, prefix = celery_worker
    key = f"{prefix}from-request"

    @app.post("/_test/publish")
    def publish():
        logging.getLogger("api.test").info("publishing")
        record_request_id.delay(key)
        return {"ok": True}

    with json_log_lines() as lines:
        response = app.test_client().post("/_test/publish", headers={"X-Request-ID": "checkout-7"})
        assert response.status_code == 200
        seen = recorded(task_redis, key)

    assert seen["request_id"] == "checkout-7" != seen["task_id"]
    by_logger = {line["logger"]: line for line in lines() if line["logger"].endswith(".test")}
    assert by_logger["api.test"]["request_id"] == "checkout-7"
    assert by_logger["worker.test"]["message"] == f"recording {key}"
    assert by_logger["worker.test"]["request_id"] == "checkout-7"


def test_the_request_id_reaches_the_tasks_a_task_publishes(celery_worker, task_redis):
    record_request_id, prefix = celery_worker
    parent, child = f"{prefix}parent", f"{prefix}child"
    token = request_id_var.set("import-batch-3")
    try:
        record_request_id.delay(parent, then=child)
    finally:
        request_id_var.reset(token)

    assert recorded(task_redis, parent)["request_id"] == "import-batch-3"
    assert recorded(task_redis, child)["request_id"] == "import-batch-3"


def test_a_task_published_outside_a_request_is_traced_by_its_own_id(celery_worker, task_redis):
    record_request_id, prefix = celery_worker
    assert request_id_var.get() is None
    first, second = f"{prefix}first", f"{prefix}second"
    record_request_id.delay(first)
    record_request_id.delay(second)

    for key in (first, second):
        seen = recorded(task_redis, key)
        assert seen["request_id"] == seen["task_id"]
