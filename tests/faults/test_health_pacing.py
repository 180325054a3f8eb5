"""Pacing by Stripe's health: Stripe slowed through a TCP proxy (2 s per chunk) in the middle of
a sale lowers the sale's pace within the window (then pauses decisions), no reservation expires
because of it, and the pace recovers step by step once the proxy is removed.

The decider runs in this process with the real servers (Redis, MongoDB, the Stripe emulator
behind the proxy); shoppers keep arriving throughout. Figures are printed (run with -s)."""

from __future__ import annotations

import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from common.auditing import audit
from common.billing.stripe_gateway import StripeGateway
from common.flash_sale import reservations, sale_keys, sales, waiting_room
from common.flash_sale.health_pacing import HealthThresholds
from common.platform.clients import make_stripe
from tests.faults.proxy import FaultProxy, Mode
from tests.waiting_room_helpers import open_sale

pytestmark = pytest.mark.slow

LIMITS = HealthThresholds(window_seconds=4, min_calls=3, slow_call_ms=1_500, max_slow_rate=0.2,
                          step_seconds=1.0, start_per_second=20.0, floor_per_second=0.5)


def test_a_slow_stripe_lowers_the_pace_and_it_recovers(settings, clients, servers):
    with FaultProxy("127.0.0.1", int(servers.stripe.url.rsplit(":", 1)[1])) as proxy:
        gateway = StripeGateway(make_stripe(settings.model_copy(update={"stripe_api_base": proxy.url("http"),
                                                    "stripe_timeout_seconds": 30.0})), emulator=True)
        sale_id = open_sale(clients, stock=2_000, ttl=300)
        done = threading.Event()
        samples: list[tuple[float, float | None]] = []
        started = time.monotonic()

        def shoppers() -> None:  # 20 a second, the whole time
            while not done.is_set():
                for _ in range(4):
                    waiting_room.admit(clients.sales_redis, sale_id, f"usr_{secrets.token_hex(6)}", 1)
                time.sleep(0.2)

        def watch() -> None:
            while not done.is_set():
                counters = sales.read_counters(clients.sales_redis, sale_id)
                samples.append((time.monotonic() - started, counters.auto_pace if counters else None))
                time.sleep(0.25)

        options = reservations.DrainOptions(idle_seconds=5.0, max_seconds=120.0, health=LIMITS,
                                            intent_retry_seconds=30.0)
        threads = [threading.Thread(target=shoppers), threading.Thread(target=watch)]
        for thread in threads:
            thread.start()
        with ThreadPoolExecutor(16) as pool:
            decider = threading.Thread(target=reservations.drain_sale, args=(
                clients.sales_redis, gateway, sale_id, options, pool))
            decider.start()
            time.sleep(3)
            proxy.set(Mode.DELAY, delay_ms=2_000)
            slowed_at = time.monotonic() - started
            time.sleep(10)
            proxy.set(Mode.PASS)
            healed_at = time.monotonic() - started
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline:
                counters = sales.read_counters(clients.sales_redis, sale_id)
                if counters and counters.auto_pace is None and time.monotonic() - started > healed_at + 2:
                    break
                time.sleep(0.25)
            recovered_at = time.monotonic() - started
            done.set()
            for thread in threads:
                thread.join()
            decider.join(timeout=90)

        lowered = [(t, pace) for t, pace in samples if pace is not None]
        assert lowered, "the pace never dropped"
        first_drop = lowered[0][0]
        lowest = min(pace for _, pace in lowered)
        print(f"\nStripe slowed at {slowed_at:.1f}s: pace {lowered[0][1]}/s at {first_drop:.1f}s, "
              f"lowest {lowest}/s; proxy removed at {healed_at:.1f}s, no automatic pace from "
              f"{recovered_at:.1f}s; samples {[(round(t, 1), p) for t, p in lowered][::4]}")
        # Within the window (and a step) of the first slow answers (each takes 2 s or more).
        assert slowed_at < first_drop <= slowed_at + 2 * 2 + LIMITS.window_seconds + 2 * LIMITS.step_seconds
        assert lowest <= 2.5
        counters = sales.read_counters(clients.sales_redis, sale_id)
        assert counters is not None and counters.auto_pace is None, "the pace did not recover"
        assert recovered_at - healed_at < 30

        # Every shopper is decided in the end, and no reservation expired because of Stripe.
        reservations.drain_sale(clients.sales_redis, gateway, sale_id,
                                reservations.DrainOptions(idle_seconds=1.0, health=LIMITS),
                                ThreadPoolExecutor(8))
        statuses = [clients.sales_redis.hget(sale_keys.ticket_key(sale_id, t), "status")
                    for t in audit.stream_ticket_ids(clients.sales_redis, sale_id)]
        print(f"tickets: {len(statuses)}, by status: "
              f"{ {s: statuses.count(s) for s in set(statuses)} }")
        assert "expired" not in statuses and "queued" not in statuses
        snapshot = audit.read_sale_snapshot(clients.sales_redis, clients.db, sale_id)
        assert audit.audit_sale(snapshot, settled=False) == []
