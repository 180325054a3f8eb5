"""Benchmark of a beacon draw (`hmac-sha256-drand-v2`, common/flash_sale/beacon_draw.py): the
time from the lobby's close to every lobby ticket placed, for lobbies of 10,000 and 100,000
tickets, split into the wait for the beacon's round and the shop's own work (close and digest,
fetch and verify the round, place every ticket). On a Redis, MongoDB and drand beacon of its
own (the embedded beacon, 3 s rounds like quicknet). Prints figures; asserts nothing.

    .venv/bin/python -m loadtests.bench_beacon_draw [--sizes 10000 100000]

The steps are the worker's (worker/tasks.py start_lobbies and fetch_beacon_round), called
back to back here, without beat's one-second tick in between.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common.beacon.drand import Chain
from common.development import embedded
from common.development.drand_beacon import beacon_command, ensure_beacon_key
from common.development.ports import free_port, wait_for_port
from common.flash_sale import beacon_draw, lobby, sale_keys, sales, waiting_room
from common.platform.clients import Clients
from common.platform.settings import load_settings


def fill(clients: Clients, sale_id: str, size: int) -> float:
    started = time.perf_counter()
    for i in range(size):
        waiting_room.admit(clients.redis, sale_id, f"usr_{i:07d}", 1)
    return time.perf_counter() - started


def measure(clients: Clients, chain: Chain, beacon_url: str, size: int) -> None:
    now = datetime.now(UTC)
    product_id = f"prd_bench{size}"
    clients.db.products.insert_one({"_id": product_id, "name": "Bench", "description": "",
                                    "price_cents": 100, "currency": "USD", "stock": size,
                                    "image_url": "", "created_at": now, "updated_at": now})
    sale = sales.create_sale(clients.db, clients.redis, product_id=product_id, stock=size,
                             price_cents=100, starts_at=now + timedelta(hours=1),
                             ends_at=now + timedelta(hours=2), lobby_opens_at=now, beacon=chain)
    sale_id = sale["_id"]
    filled = fill(clients, sale_id, size)
    print(f"{size:,} lobby tickets admitted in {filled:.1f} s")
    # The start has come: move it (and its round, the first 10 s after it) to now.
    start = time.time()
    round_ = chain.first_round_at_or_after(start + 10)
    clients.redis.hset(sale_keys.config_key(sale_id), mapping={
        "starts_at_ms": int(start * 1000) - 1, "beacon_round": round_})
    clients.db.sales.update_one({"_id": sale_id}, {"$set": {"fairness.beacon.round": round_}})

    t0 = time.perf_counter()
    assert lobby.start_lobby(clients.redis, sale_id).state == "drawing"
    close = beacon_draw.record_close(clients.db, clients.redis, sale_id)
    closed_s = time.perf_counter() - t0
    wait = max(0.0, chain.round_time(close.round) - time.time())
    time.sleep(wait)
    t1 = time.perf_counter()
    state = ""
    while state not in ("resolved", "already"):
        state = beacon_draw.resolve_round(clients.db, clients.redis, sale_id, [beacon_url]).state
        if state == "unavailable":  # the beacon signs the round a moment after its time
            clients.redis.hdel(sale_keys.config_key(sale_id), "beacon_next_try_ms")
            time.sleep(0.05)  # the beacon signs the round a moment after its time
    resolved_s = time.perf_counter() - t1
    t2 = time.perf_counter()
    report = lobby.start_lobby(clients.redis, sale_id)
    placed_s = time.perf_counter() - t2
    total = time.perf_counter() - t0
    assert report.done and report.placed_now == size, report
    own = closed_s + resolved_s + placed_s
    print(f"  close to every lobby ticket placed: {total:.2f} s = round's wait {total - own:.2f} s "
          f"+ own work {own:.3f} s (close and digest {closed_s:.3f} s, fetch and verify "
          f"{resolved_s:.3f} s ({state}), place {placed_s:.3f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        redis_url = f"redis://127.0.0.1:{free_port()}/0"
        mongo_uri = f"mongodb://127.0.0.1:{free_port()}/"
        beacon_url = f"http://127.0.0.1:{free_port()}"
        chain = ensure_beacon_key(Path(root) / "drand", period_seconds=3)
        servers = [subprocess.Popen(embedded.redis_command(redis_url, Path(root) / "redis"),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
                   subprocess.Popen(embedded.mongodb_command(mongo_uri, Path(root) / "mongo",
                                                             Path(root) / "run"),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
                   subprocess.Popen(beacon_command(beacon_url, Path(root) / "drand"),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
        try:
            for url in (redis_url, mongo_uri, beacon_url):
                wait_for_port("127.0.0.1", embedded.port_of(url), timeout=30)
            settings = load_settings(
                app_env="test", redis_url=redis_url, mongodb_uri=mongo_uri + "bench_beacon",
                jwt_secret_key="bench-secret-" + "x" * 32, var_dir=Path(root) / "var",
                log_format="text", stripe_secret_key="sk_test_bench", stripe_webhook_secret="whsec_bench",
                stripe_api_base="http://127.0.0.1:9", stripe_emulator=True,
                mongodb_serialize_transactions=True)
            clients = Clients(settings)
            try:
                for size in args.sizes:
                    measure(clients, chain, beacon_url, size)
            finally:
                clients.close()
        finally:
            for server in servers:
                server.terminate()
                server.wait(10)


if __name__ == "__main__":
    main()
