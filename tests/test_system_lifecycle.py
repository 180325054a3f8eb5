"""`flashsale run`: ready, services.json, readiness follows Redis, no orphans on Ctrl-C."""

from __future__ import annotations

import json
import signal
import stat
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
        services_path = system.var_dir / "run" / "services.json"
        assert stat.S_IMODE(services_path.stat().st_mode) == 0o600  # it holds the Stripe secret
        services = json.loads(services_path.read_text())
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


def test_demo_run_seeds_an_operator_and_a_sale_once(tmp_path):
    system = start_system(tmp_path, args=("--demo",), drop_env=("ADMIN_EMAIL", "ADMIN_PASSWORD"))
    try:
        password = (system.var_dir / "secrets" / "admin_password").read_text().strip()
        login = system.post("/api/auth/login", json={"email": "admin@example.com", "password": password})
        assert login.status_code == 200 and login.json()["user"]["role"] == "admin"
        deadline = time.monotonic() + 30
        sales = []
        while not sales and time.monotonic() < deadline:
            sales = system.get("/api/sales").json()["items"]
            time.sleep(0.3)
        # The demo's sale opens a minute later, with its lobby open already (API v2's default).
        assert len(sales) == 1 and sales[0]["status"] == "lobby"
        assert sales[0]["stock_total"] == sales[0]["stock_available"] == 100
        assert "operator login admin@example.com" in system.log_path.read_text()
    finally:
        stop_system(system.process)
    # A second run on the same data keeps the one sale and the same password.
    again = start_system(tmp_path, args=("--demo",), drop_env=("ADMIN_EMAIL", "ADMIN_PASSWORD"))
    try:
        time.sleep(2)
        assert len(again.get("/api/sales").json()["items"]) == 1
        assert (again.var_dir / "secrets" / "admin_password").read_text().strip() == password
    finally:
        stop_system(again.process)
