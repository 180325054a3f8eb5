"""`flashsale run` keeps the shop open when one of its processes dies: a Celery worker, the
decider, beat, one API (gunicorn) worker and the API master are each killed with SIGKILL, as
the OOM killer would, one after another. After each kill new shoppers are admitted (202)
within a bound, the dead process comes back, no other process is touched, and every ticket
admitted before, between and after the kills gets its outcome. A client connecting all the
while is never refused, not even while the API master restarts (the supervisor keeps the
listening socket and hands it to each new master).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import psutil
import pymongo
import pytest
import redis
import requests

from loadtests.shop import mint_access_token
from loadtests.verify import verify_sale
from tests.conftest import RunningSystem, start_system, stop_system
from tests.e2e.shop import Shopper, admin, create_sale
from tests.faults.services import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# The longest a new shopper may wait for its 202 around each kill. Only the API master's
# death stops admissions: for as long as the supervisor takes to start gunicorn and its
# workers again (measured 2-4 s on two busy cores).
ADMISSION_BOUND = {"worker": 10.0, "decider": 10.0, "beat": 10.0, "api worker": 10.0,
                   "api master": 30.0}
ARRIVAL_INTERVAL = 0.2
JWT_SECRET = "restart-test-" + "x" * 32
# Statuses a ticket may end in while the sale runs (stock is ample: normally `reserved`).
OUTCOMES = {"reserved", "paid", "sold_out", "expired", "cancelled", "payment_failed"}


def _kind(proc: psutil.Process) -> str | None:
    """Which Procfile process (or gunicorn worker) a descendant of `flashsale run` is."""
    try:
        argv = proc.cmdline()
        parent = proc.parent()
        parent_argv = " ".join(parent.cmdline()) if parent else ""
    except psutil.Error:
        return None
    line = " ".join(argv)
    if "gunicorn" in line:
        return "api worker" if "gunicorn" in parent_argv else "api master"
    if "celery" in line and " beat" in line:
        return "beat"
    if "celery" in line and " worker" in line:
        queues = argv[argv.index("--queues") + 1]
        return "worker" if "," in queues else "decider"
    for name in ("redis-server", "nx-27017", "localstripe"):
        if name in line:
            return name
    return None


def _processes(root: psutil.Process) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for proc in root.children(recursive=True):
        kind = _kind(proc)
        if kind:
            found.setdefault(kind, []).append(proc.pid)
    return {kind: sorted(pids) for kind, pids in found.items()}


class Arrivals:
    """New shoppers pressing Buy one after another in a thread, each asking again until it is
    admitted: records how long each waited for its ticket."""

    def __init__(self, system: RunningSystem, sale_id: str, secret: str) -> None:
        self.system, self.sale_id, self.secret = system, sale_id, secret
        self.admitted: list[tuple[float, float, Shopper, dict[str, Any]]] = []  # asked, answered
        self.failures: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Arrivals:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        number = 0
        while not self._stop.is_set():
            number += 1
            shopper = Shopper(self.system.url, token=mint_access_token(
                self.secret, f"usr_arrival_{number}", ttl=3600))
            asked = time.monotonic()
            first_try = True
            while not self._stop.is_set():
                try:
                    answer = shopper.call("POST", f"/api/sales/{self.sale_id}/tickets",
                                          json={"quantity": 1}, timeout=5)
                except requests.RequestException as exc:
                    self.failures[type(exc).__name__] += 1
                else:
                    # 200 after a failed try: that try was admitted, its answer lost.
                    if answer.status_code == 202 or (answer.status_code == 200 and not first_try):
                        self.admitted.append((asked, time.monotonic(), shopper, answer.json()))
                        break
                    self.failures[str(answer.status_code)] += 1
                first_try = False
                self._stop.wait(0.2)
            self._stop.wait(ARRIVAL_INTERVAL)

    def admitted_after(self, moment: float) -> bool:
        """Whether a shopper who started asking after `moment` has been admitted."""
        return any(asked > moment for asked, _, _, _ in self.admitted)

    def longest_wait(self, since: float) -> float:
        """The longest a shopper admitted after `since` waited for its ticket from then."""
        return max(answered - max(asked, since) for asked, answered, _, _ in self.admitted
                   if answered >= since)


class Connections:
    """A client opening a TCP connection to the API every few milliseconds in a thread:
    counts those made and those refused (nobody listening)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.address = (parts.hostname, parts.port)
        self.made = 0
        self.refused: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Connections:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                socket.create_connection(self.address, timeout=5).close()
            except ConnectionRefusedError:
                self.refused.append(time.monotonic())
            except OSError:
                pass  # a timeout: a full listen queue is not a refusal
            else:
                self.made += 1
            self._stop.wait(0.01)


def _ready(system: RunningSystem) -> bool:
    try:
        return system.get("/readyz", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def _wait_back(system: RunningSystem, kind: str, before: list[int], victim: int) -> dict[str, list[int]]:
    root = psutil.Process(system.process.pid)

    def back() -> dict[str, list[int]] | None:
        assert system.process.poll() is None, f"flashsale run exited after {kind} died"
        now = _processes(root)
        pids = now.get(kind, [])
        return now if len(pids) == len(before) and victim not in pids else None

    return wait_until(back, 30, interval=0.3, message=f"{kind} to be restarted")  # type: ignore[no-any-return]


def test_each_process_killed_under_run_is_restarted_and_the_shop_stays_open(tmp_path):
    started = time.monotonic()
    system = start_system(tmp_path, extra_env={"WEB_CONCURRENCY": "2", "JWT_SECRET_KEY": JWT_SECRET})
    root = psutil.Process(system.process.pid)
    figures: dict[str, float] = {"ready": time.monotonic() - started}
    try:
        sale_id = create_sale(admin(system.url), stock=2000)["id"]
        with Arrivals(system, sale_id, JWT_SECRET) as arrivals, Connections(system.url) as connections:
            wait_until(lambda: len(arrivals.admitted) >= 10, 30, message="the first shoppers")
            for kind in ("worker", "decider", "beat", "api worker", "api master"):
                before = _processes(root)
                assert kind in before, f"no {kind} under flashsale run: {before}"
                victim = before[kind][0]
                os.kill(victim, signal.SIGKILL)
                killed_at = time.monotonic()
                after = _wait_back(system, kind, before[kind], victim)
                back_at = time.monotonic()
                figures[f"{kind} back"] = back_at - killed_at
                # Nothing else was stopped (an API master takes its own workers with it).
                untouched = {k: v for k, v in before.items()
                             if k != kind and not (kind == "api master" and k == "api worker")}
                assert {k: after.get(k) for k in untouched} == untouched, (kind, before, after)
                wait_until(partial(arrivals.admitted_after, back_at), ADMISSION_BOUND[kind] + 30,
                           interval=0.1, message=f"a shopper admitted after {kind} came back")
                figures[f"{kind} longest wait"] = wait = arrivals.longest_wait(killed_at)
                assert wait <= ADMISSION_BOUND[kind], (kind, wait)
        assert not connections.refused, f"{len(connections.refused)} of {connections.made} refused"
        figures["connections"] = connections.made
        figures["admitted"] = len(arrivals.admitted)
        figures["failed tries"] = sum(arrivals.failures.values())

        log = system.log_path.read_text(errors="replace")
        for name in ("worker", "decider", "beat", "api"):
            assert re.search(rf"system\s*\| {name} \(pid \d+\) exited with status (-9|137) "
                             rf"\(SIGKILL\); restarting in \d+\.\ds", log), f"no restart line for {name}"

        # Every ticket admitted before, between and after the kills gets its outcome.
        def outcome(entry: tuple[float, float, Shopper, dict[str, Any]]) -> str:
            shopper, ticket = entry[2], entry[3]
            return str(shopper.wait_for(ticket["id"], OUTCOMES, timeout=120)["status"])

        with ThreadPoolExecutor(8) as pool:
            statuses = Counter(pool.map(outcome, arrivals.admitted))
        assert set(statuses) <= OUTCOMES, statuses
        assert len({entry[3]["id"] for entry in arrivals.admitted}) == len(arrivals.admitted)
        mongo: pymongo.MongoClient = pymongo.MongoClient(system.services["mongodb"])
        store = redis.Redis.from_url(system.services["redis"], decode_responses=True)
        try:
            report = verify_sale(store, mongo.get_default_database(), sale_id)
        finally:
            store.close()
            mongo.close()
        assert report.passed, "\n".join(report.lines())
    finally:
        descendants = root.children(recursive=True)
        code = stop_system(system.process)
        _gone, alive = psutil.wait_procs(descendants, timeout=15)
        print("figures (s):", {k: round(v, 1) for k, v in figures.items()},
              "total", round(time.monotonic() - started, 1))
    assert not alive, f"left behind: {[p.pid for p in alive]}"
    assert code in (0, 130, -signal.SIGINT), code


def test_a_killed_api_master_refuses_no_connection(tmp_path):
    """The API master alone, killed while a client connects continuously: the connections
    made while gunicorn restarts wait in the listen queue and none is refused."""
    system = start_system(tmp_path, extra_env={"WEB_CONCURRENCY": "1"})
    root = psutil.Process(system.process.pid)
    try:
        with Connections(system.url) as connections:
            wait_until(lambda: connections.made >= 20, 30, message="the first connections")
            before = _processes(root)
            victim = before["api master"][0]
            os.kill(victim, signal.SIGKILL)
            killed_at = time.monotonic()
            _wait_back(system, "api master", before["api master"], victim)
            wait_until(partial(_ready, system), 60, interval=0.2, message="the API ready again")
            back_at = time.monotonic()
            made_before_back = connections.made
            wait_until(lambda: connections.made >= made_before_back + 20, 30,
                       message="connections after the restart")
        print(f"restart {back_at - killed_at:.1f}s, {connections.made} connections, "
              f"{len(connections.refused)} refused")
        assert not connections.refused, (
            f"{len(connections.refused)} of {connections.made + len(connections.refused)} refused, "
            f"from {connections.refused[0] - killed_at:.1f}s to {connections.refused[-1] - killed_at:.1f}s "
            "after the kill")
    finally:
        descendants = root.children(recursive=True)
        stop_system(system.process)
        psutil.wait_procs(descendants, timeout=15)
