"""Benchmark of a draw sale's walk (common/billing/draw_walk.py) against the embedded Stripe
emulator, Redis and MongoDB of its own: N entries with their cards held, U units; the time from
the draw's start to the last winner charged and to the last hold released, and the Stripe calls
per second during the walk (paced at --rate, DRAW_STRIPE_CALLS_PER_SECOND). Prints figures;
asserts nothing.

    .venv/bin/python -m loadtests.bench_draw [--entries 2000] [--units 100] [--rate 25]
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

from common.billing import draw_walk, holds
from common.billing.payments import PaymentContext
from common.billing.stripe_gateway import StripeGateway
from common.development import embedded
from common.development.ports import free_port, wait_for_port
from common.flash_sale import sale_keys, sales, waiting_room
from common.platform.clients import Clients
from common.platform.settings import load_settings


def card_token(api_base: str) -> str:
    response = requests.post(f"{api_base}/v1/tokens", data={
        "key": "pk_test_bench", "card[number]": "4242424242424242", "card[exp_month]": "12",
        "card[exp_year]": "2034", "card[cvc]": "123"}, timeout=10)
    response.raise_for_status()
    return str(response.json()["id"])


def run(args: argparse.Namespace, clients: Clients, api_base: str) -> None:
    now = datetime.now(UTC)
    product_id = "prd_benchdraw"
    clients.db.products.insert_one({"_id": product_id, "name": "Draw", "description": "",
                                    "price_cents": 1999, "currency": "USD", "stock": args.units,
                                    "image_url": "", "created_at": now, "updated_at": now})
    sale = sales.create_sale(clients.db, clients.redis, product_id=product_id, stock=args.units,
                             price_cents=1999, starts_at=now + timedelta(hours=1),
                             ends_at=now + timedelta(hours=2), lobby_opens_at=now,
                             mode=sales.SaleMode.DRAW)
    sale_id = sale["_id"]
    gateway = StripeGateway(clients.stripe, emulator=True)
    users = [f"usr_bench{i:06d}" for i in range(args.entries)]
    clients.db.users.insert_many([{"_id": u, "email": f"{u}@example.com", "created_at": now}
                                  for u in users])

    def enter(user_id: str) -> None:
        ticket = waiting_room.admit(clients.redis, sale_id, user_id, 1).ticket
        holds.place_hold(clients.redis, clients.db, gateway, ticket_id=ticket["id"], user_id=user_id,
                         card_token=card_token(api_base))

    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(enter, users))
    print(f"{args.entries:,} entries held in {time.perf_counter() - started:.1f} s (8 threads)")

    # The start has come: move it to now (Redis's clock decides).
    clients.redis.hset(sale_keys.config_key(sale_id), "starts_at_ms", int(time.time() * 1000) - 1)
    ctx = PaymentContext(mongo=clients.mongo, db=clients.db, redis=clients.redis, gateway=gateway,
                         serialize_transactions=True)
    moments: dict[str, float] = {}
    walk_started = time.perf_counter()

    def progress() -> None:
        sold = int(clients.redis.hget(sale_keys.counters_key(sale_id), "sold") or 0)
        if sold >= args.units and "winners" not in moments:
            moments["winners"] = time.perf_counter() - walk_started

    pace = draw_walk.Pace(args.rate)
    report = draw_walk.walk_draw(ctx, sale_id, calls_per_second=args.rate, keep_alive=progress,
                                 pace=pace)
    walked = time.perf_counter() - walk_started
    print(f"walk: {report.captured} captured, {report.failed} failed, {report.released} released, "
          f"{report.no_hold} without a hold; {report.stripe_calls} Stripe calls")
    for line in walk_figures(entries=args.entries, winners_s=moments.get("winners", walked),
                             walked_s=walked, stripe_calls=report.stripe_calls, rate=args.rate):
        print(line)


def walk_figures(*, entries: int, winners_s: float, walked_s: float, stripe_calls: int,
                 rate: float, walk_s: float | None = None) -> list[str]:
    """The walk's figures, from the draw's start: here and in `flashsale loadtest --scenario
    draw` (loadtests/draw_entries.py), which measures the same walk in a running system.
    `walk_s`: how long the Stripe calls took, when the start came before the walk began
    (a running system's draw waits for its beacon round) [default: walked_s]."""
    per_entry = stripe_calls / max(1, entries)
    live = 100_000 * per_entry / 100
    per_second = stripe_calls / max(walked_s if walk_s is None else walk_s, 1e-9)
    return [f"time from the start to the last winner charged: {winners_s:.1f} s",
            f"time from the start to the last hold released: {walked_s:.1f} s",
            f"Stripe calls per second during the walk: {per_second:.1f} (limit {rate:g})",
            f"the same walk for 100,000 entries at Stripe's live limit (100 calls/s): "
            f"{live:,.0f} s ({live / 60:.0f} min)"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=2_000)
    parser.add_argument("--units", type=int, default=100)
    parser.add_argument("--rate", type=float, default=25.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        redis_url = f"redis://127.0.0.1:{free_port()}/0"
        mongo_uri = f"mongodb://127.0.0.1:{free_port()}/"
        api_base = f"http://127.0.0.1:{free_port()}"
        servers = [subprocess.Popen(embedded.redis_command(redis_url, Path(root) / "redis"),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
                   subprocess.Popen(embedded.mongodb_command(mongo_uri, Path(root) / "mongo",
                                                             Path(root) / "run"),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
                   subprocess.Popen(embedded.stripe_command(api_base),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
        try:
            for url in (redis_url, mongo_uri, api_base):
                wait_for_port("127.0.0.1", embedded.port_of(url), timeout=30)
            settings = load_settings(app_env="test", redis_url=redis_url,
                                     mongodb_uri=mongo_uri + "bench_draw",
                                     jwt_secret_key="bench-secret-" + "x" * 32, var_dir=Path(root) / "var",
                                     log_format="text", stripe_secret_key="sk_test_bench",
                                     stripe_webhook_secret="whsec_bench", stripe_api_base=api_base,
                                     stripe_emulator=True)
            clients = Clients(settings)
            try:
                run(args, clients, api_base)
            finally:
                clients.close()
        finally:
            for server in servers:
                server.terminate()
                server.wait(10)


if __name__ == "__main__":
    main()
