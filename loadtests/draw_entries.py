"""The draw scenario (`flashsale loadtest --scenario draw`): N shoppers (`--users`) enter one
draw sale of U units (`--stock`) through the real API, each authorising its hold with a test
card (POST /api/tickets/<id>/hold), and the run measures the draw's walk in the running system:
the time from `starts_at` to every winner charged and to every hold captured or released, and
the Stripe calls per second during the walk (one capture or cancel per held entry, counted from
the counters: an estimate to a call or so), printed by
the same code as loadtests/bench_draw.py. The sale's invariants are checked afterwards
(loadtests/verify.py).

The walk's progress is read from the sale's counters in Redis (paid, payment_failed,
not_selected) every 20 ms from `starts_at`; the load test's clock and the server's are the same
machine's, or NTP-close. The time from the start includes the lobby's close and the drawing of
the order (with a beacon, the wait for its round); the Stripe calls per second count from the
first entry settled to the last.

Run against `flashsale run` (its services.json), like the other scenarios.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common.flash_sale import sales
from loadtests.bench_draw import walk_figures
from loadtests.shop import AccountPool, Operator, card_token, pool_path, session
from loadtests.verify import clients_for, verify_sale

# DRAW_STRIPE_CALLS_PER_SECOND's default (common/platform/settings.py), shown beside the rate.
DEFAULT_DRAW_RATE = 25.0


@dataclass
class WalkProgress:
    """Moments (seconds after starts_at) read from the sale's counters."""
    held: int
    first_settled_s: float = math.nan
    winners_s: float = math.nan
    settled_s: float = math.nan
    captured: int = 0
    failed: int = 0
    released: int = 0


class WalkWatch(threading.Thread):
    """From `starts_at` on, polls the sale's counters until every held entry is settled."""

    def __init__(self, redis_client: Any, sale_id: str, starts_at: float, held: int, units: int,
                 *, interval: float = 0.02, timeout: float = 600.0) -> None:
        super().__init__(name=f"walk-watch-{sale_id}", daemon=True)
        self.redis, self.sale_id, self.starts_at = redis_client, sale_id, starts_at
        self.units, self.interval, self.timeout = units, interval, timeout
        self.progress = WalkProgress(held)
        self._stopping = threading.Event()

    def run(self) -> None:
        if self._stopping.wait(max(0.0, self.starts_at - time.time())):
            return
        deadline = time.monotonic() + self.timeout
        progress = self.progress
        while not self._stopping.is_set() and time.monotonic() < deadline:
            counters = sales.read_counters(self.redis, self.sale_id)
            now = time.time() - self.starts_at
            if counters is not None:
                progress.captured, progress.failed = counters.paid, counters.payment_failed
                progress.released = counters.not_selected
                settled = progress.captured + progress.failed + progress.released
                if settled and math.isnan(progress.first_settled_s):
                    progress.first_settled_s = now
                if progress.captured >= min(self.units, progress.held) and math.isnan(progress.winners_s):
                    progress.winners_s = now
                if settled >= progress.held:
                    progress.settled_s = now
                    return
            self._stopping.wait(self.interval)

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=5)


def percentile(values: list[float], share: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


class DrawRun:
    def __init__(self, base: str, stripe_base: str, publishable_key: str, operator: Operator,
                 accounts: list[dict[str, str]], units: int, lobby_seconds: float,
                 echo: Callable[[str], None]) -> None:
        self.base, self.stripe_base, self.publishable_key = base, stripe_base, publishable_key
        self.operator, self.accounts, self.units = operator, accounts, units
        self.lobby_seconds, self.echo = lobby_seconds, echo
        self.http = session(64)
        self.hold_ms: list[float] = []
        self.refused: dict[str, int] = {}
        self.lock = threading.Lock()

    def _create_sale(self, starts_at: datetime) -> str:
        """A draw sale, its lobby open from now; `verified_email` off (the pool's accounts are
        registered in bulk and never verify) and `one_card` off (one test card for everyone)."""
        product = self.operator.call("POST", "/api/products", json={
            "name": f"Drawn drop {secrets.token_hex(3)}", "description": "Limited run",
            "price_cents": 9998, "currency": "USD", "stock": self.units,
            "image_url": "https://example.com/drop.png"}).json()
        made = self.operator.call("POST", "/api/sales", json={
            "product_id": product["id"], "stock": self.units, "price_cents": 4999, "mode": "draw",
            "starts_at": starts_at.isoformat(), "ends_at": (starts_at + timedelta(hours=2)).isoformat(),
            "lobby_opens_at": (datetime.now(UTC) - timedelta(seconds=1)).isoformat(),
            "per_user_limit": 1, "entry": {"verified_email": False, "one_card": False}})
        if made.status_code != 201:
            raise RuntimeError(f"create sale: HTTP {made.status_code} {made.text[:300]}")
        return str(made.json()["id"])

    def _refuse(self, code: str) -> None:
        with self.lock:
            self.refused[code] = self.refused.get(code, 0) + 1

    def _enter(self, account: dict[str, str]) -> bool:
        """Join the draw and hold the card; True when the hold is held."""
        headers = {"Authorization": f"Bearer {account['access_token']}"}
        joined = self.http.post(f"{self.base}/api/sales/{self.sale_id}/tickets", json={"quantity": 1},
                                headers=headers, timeout=60)
        if joined.status_code not in (200, 202):
            self._refuse(f"join {joined.status_code}")
            return False
        token = card_token(self.stripe_base, self.publishable_key, self.http)
        began = time.perf_counter()
        held = self.http.post(f"{self.base}/api/tickets/{joined.json()['id']}/hold",
                              json={"card_token": token}, headers=headers, timeout=60)
        elapsed_ms = (time.perf_counter() - began) * 1000
        if held.status_code != 200 or held.json().get("status") != "requires_capture":
            self._refuse(f"hold {held.status_code} {held.json().get('status', '')}".strip())
            return False
        with self.lock:
            self.hold_ms.append(elapsed_ms)
        return True

    def run(self, services: dict[str, Any], rate: float) -> list[str]:
        starts_at = datetime.now(UTC) + timedelta(seconds=self.lobby_seconds)
        self.sale_id = self._create_sale(starts_at)
        self.echo(f"draw: sale {self.sale_id}, {len(self.accounts)} entrants, {self.units} units, "
                  f"draw in {self.lobby_seconds:.0f} s")
        entering = time.perf_counter()
        with ThreadPoolExecutor(32) as pool:
            held = sum(pool.map(self._enter, self.accounts))
        entered_s = time.perf_counter() - entering
        if time.time() >= starts_at.timestamp():
            raise RuntimeError(f"the entries took {entered_s:.1f} s, past the draw: raise the lobby window")
        self.echo(f"draw: {held} entries held in {entered_s:.1f} s; waiting for the draw")
        redis_client, mongo = clients_for(services)
        try:
            watch = WalkWatch(redis_client, self.sale_id, starts_at.timestamp(), held, self.units)
            watch.start()
            watch.join(timeout=watch.timeout + max(0.0, starts_at.timestamp() - time.time()) + 5)
            watch.stop()
            from common.platform.clients import mongo_database_name

            db = mongo[mongo_database_name(services["mongodb"], "flashsale")]
            report = verify_sale(redis_client, db, self.sale_id)
        finally:
            redis_client.close()
            mongo.close()
        progress = watch.progress
        settled = progress.captured + progress.failed + progress.released
        lines = [f"Draw scenario: {len(self.accounts)} shoppers, {self.units} units, sale {self.sale_id}",
                 f"entries held: {held} of {len(self.accounts)} in {entered_s:.1f} s (32 threads); "
                 f"hold p50 {percentile(self.hold_ms, 0.5):.0f} ms, "
                 f"p95 {percentile(self.hold_ms, 0.95):.0f} ms"
                 + (f"; refused {self.refused}" if self.refused else ""),
                 f"walk: {progress.captured} captured, {progress.failed} failed, {progress.released} "
                 f"released; first entry settled {progress.first_settled_s:.1f} s after the start "
                 "(the lobby closed, the order drawn once the beacon round is out)"]
        if math.isnan(progress.settled_s):
            lines.append(f"NOT SETTLED: {settled} of {held} entries settled within {watch.timeout:.0f} s")
        else:
            walk_s = progress.settled_s - progress.first_settled_s
            # The first settled entry's call ended at first_settled_s: the rest fill the walk.
            lines += walk_figures(entries=held, winners_s=progress.winners_s,
                                  walked_s=progress.settled_s, stripe_calls=max(0, settled - 1),
                                  rate=rate, walk_s=walk_s)
        lines += report.lines()
        self.passed = report.passed and not math.isnan(progress.settled_s) and settled == held
        return lines


def run_draw(services: dict[str, Any], *, admin_email: str, admin_password: str, shoppers: int,
             units: int, results_dir: Path, rate: float = DEFAULT_DRAW_RATE,
             lobby_seconds: float | None = None,
             echo: Callable[[str], None] = print) -> tuple[str, bool]:
    """Run the scenario; returns the summary and whether every check passed."""
    base = str(services["api"]).rstrip("/")
    operator = Operator(base, admin_email, admin_password).sign_in()
    pool = AccountPool(base, pool_path(results_dir, base))
    accounts, pool_report = pool.take(shoppers, progress=echo, valid_for=3600)
    echo(f"draw: accounts ready: {pool_report.describe()}")
    # Long enough for every entry and its hold (two calls and a card token each).
    window = lobby_seconds or 10.0 + 0.05 * shoppers
    run = DrawRun(base, str(services.get("stripe_api_base", "")).rstrip("/"),
                  str(services.get("stripe_publishable_key") or "pk_test_embedded"), operator,
                  accounts, units, window, echo)
    lines = run.run(services, rate)
    return "\n".join(lines), run.passed
