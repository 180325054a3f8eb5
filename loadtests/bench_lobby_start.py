"""Benchmark of the lobby (common/flash_sale/lobby.py): admission latency into the lobby, and
the start step (close, draw, place in chunks, release) for lobbies of 10,000 and 100,000
tickets, on a Redis of its own. Prints figures; asserts nothing.

    .venv/bin/python -m loadtests.bench_lobby_start [--sizes 10000 100000]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time

import redis

from common.development.embedded import redis_server_binary
from common.development.ports import free_port, wait_for_port
from common.flash_sale import lobby, sale_keys, waiting_room
from common.platform.lua_scripts import scripts_for


def load_lobby_sale(client: redis.Redis, starts_in_ms: int) -> str:
    sale_id = sale_keys.new_sale_id()
    now = int(time.time() * 1000)
    scripts_for(client).load_sale(
        keys=[sale_keys.config_key(sale_id), sale_keys.counters_key(sale_id)],
        args=[sale_id, 1000, now + starts_in_ms, now + 3_600_000, 1, 300, 100, "USD", "prd_bench",
              int(time.time()) + 86_400, 0, now - 1000, lobby.new_seed().hex()])
    return sale_id


def fill_lobby(client: redis.Redis, sale_id: str, count: int) -> list[float]:
    """Admit `count` shoppers into the lobby one after another; each admission's latency (s)."""
    latencies = []
    for i in range(count):
        started = time.perf_counter()
        waiting_room.admit(client, sale_id, f"user-{i}", 1)
        latencies.append(time.perf_counter() - started)
    return latencies


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        server = subprocess.Popen([redis_server_binary(), "--port", str(port), "--save", "",
                                   "--appendonly", "no", "--dir", data],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port("127.0.0.1", port, timeout=10)
            client = redis.Redis(port=port, decode_responses=True)
            for size in args.sizes:
                sale_id = load_lobby_sale(client, starts_in_ms=3_600_000)
                latencies = fill_lobby(client, sale_id, size)
                print(f"lobby admission ({size:,} shoppers, one connection): "
                      f"p50 {statistics.median(latencies) * 1000:.3f} ms, "
                      f"p95 {percentile(latencies, 0.95) * 1000:.3f} ms, "
                      f"p99 {percentile(latencies, 0.99) * 1000:.3f} ms, "
                      f"{size / sum(latencies):,.0f}/s")
                # The start has come: move it to now (Redis's clock decides).
                client.hset(sale_keys.config_key(sale_id), "starts_at_ms", int(time.time() * 1000) - 1)
                started = time.perf_counter()
                report = lobby.start_lobby(client, sale_id)
                elapsed = time.perf_counter() - started
                assert report.done and report.placed_now == size
                print(f"start step, {size:,} lobby tickets: {elapsed:.3f} s "
                      f"({size / elapsed:,.0f} places/s)")
                again = time.perf_counter()
                lobby.start_lobby(client, sale_id)
                print(f"  run again (nothing to do): {(time.perf_counter() - again) * 1000:.1f} ms")
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
