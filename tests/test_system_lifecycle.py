"""`flashsale run`: ready, services.json, readiness follows Redis, no orphans on Ctrl-C."""

from __future__ import annotations

import json
import signal
import time

import psutil
import pytest
import requests

from tests.conftest import start_system, stop_system

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _wait_status(url: str, status: int, timeout: float = 30) -> requests.Response:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = requests.get(url, timeout=3)
            if last.status_code == status:
                return last
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} never answered {status}; last: {last and last.text}")


def test_run_is_ready_writes_services_and_leaves_no_process_behind(tmp_path):
    system = start_system(tmp_path)
    root = psutil.Process(system.process.pid)
    try:
        services = json.loads((system.var_dir / "run" / "services.json").read_text())
        for key in ("api", "redis", "mongodb", "stripe_api_base", "stripe_secret_key",
                    "stripe_publishable_key"):
            assert services[key], key
        assert services["mongodb"].rstrip("/").rsplit("/", 1)[1] == "flashsale"
        ready = system.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["down"] == []
        assert system.get("/healthz").json() == {"status": "ok"}
        assert "flashsale_http_requests_total" in system.get("/metrics").text
        spec = system.get("/api/openapi.json").json()
        assert "/readyz" in spec["paths"]
        descendants = root.children(recursive=True)
        names = " ".join(" ".join(p.cmdline()) for p in descendants)
        for expected in ("redis-server", "nx-27017", "localstripe", "gunicorn", "celery"):
            assert expected in names, f"{expected} not running under flashsale run"

        # Kill the embedded Redis: readiness names it; its supervisor brings it back.
        redis_proc = next(p for p in descendants if "redis-server" in " ".join(p.cmdline()))
        redis_proc.kill()
        down = _wait_status(system.url + "/readyz", 503, timeout=10)
        assert "redis" in down.json()["down"]
        _wait_status(system.url + "/readyz", 200, timeout=30)
    finally:
        descendants = [p for p in root.children(recursive=True)]
        code = stop_system(system.process)
    _gone, alive = psutil.wait_procs(descendants, timeout=15)
    assert not alive, f"orphans left: {[p.pid for p in alive]}"
    assert code in (0, 130, -signal.SIGINT), code
    assert not (system.var_dir / "run" / "services.json").exists()
