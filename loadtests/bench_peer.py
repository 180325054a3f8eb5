"""Our admission against a public peer's purchase, side by side (`make bench-peer`): prints
figures, asserts nothing.

The peer is khrsman/bookipi-flash-sale-technical-test (Node 20, Express, Redis, MongoDB through
mongoose), its `server/` at PEER_COMMIT, in one node process as its Dockerfile runs it.
Its `POST /api/flash-sale/purchase {"userIdentifier"}` reads the sale from MongoDB, runs a Lua
script on Redis (stock, buyers), then decrements the stock and inserts the purchase in MongoDB
before answering 200. Ours, `POST /api/sales/<id>/tickets {"quantity":1}` with a bearer token,
checks the token and the rate limit, issues a queue ticket with admit.lua and answers 202; the
worker decides later. Each is what a shopper's press of Buy costs the system that answers it.

One load generator, wrk (`bench_peer.lua`), 64 connections, 20 s floods, a new shopper in
every request (ours: one pre-minted token each, signed with the system's key; the peer: a new
user id); two rounds, the order turning each round, medians of the two. Ours runs twice, as
one system with 1 gunicorn worker (one event loop, as the peer's one node process) and one
with 2 (both cores): with wrk on the same two cores, two busy workers and wrk want about three
cores, and the time slices the OS hands out become our tail latency (measured: p95 1.6x the p50
with 1 worker, 3.5-4.5x with 2).
CPU per request is each process's user + system time over the flood (psutil): our gunicorn
master and workers against the node process, and each system's own redis-server and nx-27017.

Both systems, and wrk, share this machine's cores. Both use the nx-27017 MongoDB wire server
(SQLite underneath, one Python process), not mongod: the peer writes MongoDB twice and reads it
once per purchase, so its figures here are bounded by that server, not by what it does on
MongoDB. Our Celery processes are held still through every flood (both systems'): the floods
measure answering, and neither side should share the cores with our idle workers. Not counted:
`flashsale run`'s own process, which relays every access-log line of ours.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import requests

from common.development import embedded
from common.development.ports import free_port
from loadtests.runner import RESULTS_DIR
from loadtests.shop import Operator, mint_access_token
from loadtests.system import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    api_processes,
    celery_held,
    cpu_seconds,
    running_server,
    running_system,
)

PEER_REPOSITORY = "https://github.com/khrsman/bookipi-flash-sale-technical-test"
PEER_COMMIT = "3c787408dd6df6db4dc4b41154b96d01229aa4a5"
WRK_SCRIPT = Path(__file__).with_name("bench_peer.lua")
# The peer's stock: as in a flash sale (and in the comparison the peer was first measured in),
# a few units, so nearly every attempt is its cheap "sold out" (a MongoDB read and the Lua
# gate). --peer-stock 10000000 makes every attempt a purchase (two MongoDB writes more).
PEER_STOCK = 100
SETTLE_SECONDS = 3  # between floods: the last one's writes (AOF, SQLite's WAL) land first


@dataclass
class Contender:
    name: str
    url: str
    processes: dict[str, list[psutil.Process]]  # "app", "redis", "mongodb"
    shoppers: Callable[[str], list[str]]  # flood label -> bench_peer.lua's arguments


@dataclass
class Flood:
    requests: int
    seconds: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    answers: dict[str, int]  # "202", "409 already_queued", "200 Item sold out", ...
    socket_errors: int
    shoppers_again: int  # requests that reused a token: a wrk thread had used up its share
    cpu_us: dict[str, float]  # process group -> CPU microseconds per request
    # Times the OS took the CPU from a runnable process: the app's, and wrk's own (whose
    # latencies include its waits for a core). Per second of flood.
    preempted: dict[str, float]

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    @property
    def non_2xx(self) -> int:
        return sum(count for answer, count in self.answers.items() if not answer.startswith("2"))

    def line(self, label: str) -> str:
        cpu = "  ".join(f"{group} {us:5.0f}" for group, us in self.cpu_us.items())
        socket = f", {self.socket_errors} socket errors" if self.socket_errors else ""
        again = f", {self.shoppers_again} shoppers came again (too few tokens)" if self.shoppers_again else ""
        preempted = "  ".join(f"{group} {count:,.0f}" for group, count in self.preempted.items())
        return (f"  {label:<14} {self.throughput:7.0f} req/s  p50 {self.p50_ms:6.1f}  "
                f"p95 {self.p95_ms:6.1f}  p99 {self.p99_ms:6.1f} ms  non-2xx {self.non_2xx}  "
                f"CPU us/request: {cpu}  preempted/s: {preempted}  answers {self.answers}{socket}{again}")


def flood(contender: Contender, label: str, seconds: int, args: argparse.Namespace) -> Flood:
    processes = contender.processes
    before = {group: cpu_seconds(found) for group, found in processes.items()}
    app_preempted = _preemptions(processes["app"])
    wrk_preempted = resource.getrusage(resource.RUSAGE_CHILDREN).ru_nivcsw  # wrk, once waited for
    # A long timeout: a slow answer counts in the latencies instead of vanishing as a timeout.
    run = subprocess.run(["wrk", "-t", str(args.threads), "-c", str(args.connections), "-d", f"{seconds}s",
                          "--timeout", "30s", "-s", str(WRK_SCRIPT), contender.url, "--",
                          *contender.shoppers(label)], capture_output=True, text=True)
    used = {group: cpu_seconds(found) - before[group] for group, found in processes.items()}
    preempted = {"app": _preemptions(processes["app"]) - app_preempted,
                 "wrk": resource.getrusage(resource.RUSAGE_CHILDREN).ru_nivcsw - wrk_preempted}
    report = next((line for line in run.stdout.splitlines() if line.startswith("bench-peer ")), "")
    if run.returncode or not report:
        raise RuntimeError(f"wrk against {contender.name} failed: {run.stderr or run.stdout}")
    figures: dict[str, Any] = json.loads(report.removeprefix("bench-peer "))
    used["all"] = sum(used.values())
    done = max(1, figures["requests"])
    return Flood(figures["requests"], figures["seconds"], figures["p50_us"] / 1000, figures["p95_us"] / 1000,
                 figures["p99_us"] / 1000, figures["answers"], sum(figures["socket_errors"].values()),
                 figures["shoppers_again"], {group: cpu * 1e6 / done for group, cpu in used.items()},
                 {group: count / figures["seconds"] for group, count in preempted.items()})


def _preemptions(processes: list[psutil.Process]) -> int:
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            total += process.num_ctx_switches().involuntary
    return total


# ------------------------------------------------------------------ the peer


def peer_server(source: str) -> Path:
    """The peer's server/ at PEER_COMMIT with its production dependencies (`npm ci`), kept under
    loadtests/results/peer/ for later runs. `source`: its repository's URL or a local copy."""
    home = RESULTS_DIR / "peer" / PEER_COMMIT[:12]
    server = home / "server"
    installed = server / "node_modules" / ".installed"
    if installed.exists():
        return server
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    subprocess.run(["git", "clone", "--quiet", "--bare", source, str(home / "repo.git")], check=True)
    archive = subprocess.run(["git", "-C", str(home / "repo.git"), "archive", PEER_COMMIT, "server"],
                             check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(home, filter="data")
    subprocess.run(["npm", "ci", "--omit=dev", "--no-audit", "--no-fund", "--loglevel=error"],
                   cwd=server, check=True)
    installed.touch()
    return server


@contextmanager
def running_peer(server: Path, root: Path, stock: int) -> Iterator[Contender]:
    """The peer's node process on a Redis and an nx-27017 of its own, with one flash sale
    started (the peer holds one at a time); yields it as a contender."""
    redis_url = f"redis://127.0.0.1:{free_port()}/0"
    mongo_uri = f"mongodb://127.0.0.1:{free_port()}/flash_sale_db"
    port = free_port()
    # Every setting its server/.env names (dotenv leaves set ones alone), so that file changes
    # nothing. No credentials in the URI: nx-27017 has no users, and the driver's SCRAM
    # handshake with the .env's `khrsman:...@...?authSource=admin` fails against it.
    env = {**os.environ, "PORT": str(port), "MONGODB_URI": mongo_uri, "REDIS_HOST": "127.0.0.1",
           "REDIS_PORT": str(embedded.port_of(redis_url)), "NODE_ENV": "production"}
    with running_server(embedded.redis_command(redis_url, root / "redis"), embedded.port_of(redis_url),
                        root / "redis.log") as redis_server, \
            running_server(embedded.mongodb_command(mongo_uri, root / "mongodb", root / "run"),
                           embedded.port_of(mongo_uri), root / "nx-27017.log") as mongo_server, \
            running_server(["node", "./bin/www"], port, root / "node.log", cwd=server, env=env) as node:
        base = f"http://127.0.0.1:{port}"
        now = datetime.now(UTC)
        requests.post(f"{base}/api/admin/reset-all", timeout=30).raise_for_status()
        requests.post(f"{base}/api/flash-sale/create", timeout=30, json={
            "productName": "Benchmark drop", "totalStock": stock,
            "startTime": (now - timedelta(minutes=1)).isoformat(),
            "endTime": (now + timedelta(hours=2)).isoformat()}).raise_for_status()
        yield Contender("peer", f"{base}/api/flash-sale/purchase",
                        {"app": [node], "redis": [redis_server], "mongodb": [mongo_server]},
                        lambda label: ["users", label.replace(" ", "")])
        print(f"  peer: {_peer_records(base, stock)}")


def _peer_records(base: str, stock: int) -> str:
    sale = requests.get(f"{base}/api/admin/flash-sales", timeout=60).json()["data"]
    left = sale["flashSales"][0]["stockRemaining"]
    return f"{sale['totalPurchases']:,} purchases in MongoDB, {stock - left:,} units taken in Redis"


# ------------------------------------------------------------------ ours


def write_tokens(path: Path, secret: str, prefix: str, count: int) -> Path:
    """`count` access tokens of new shoppers, one a line, valid for an hour."""
    with path.open("w") as out:
        for i in range(count):
            out.write(mint_access_token(secret, f"usr_{prefix}_{i}", ttl=3600) + "\n")
    return path


def _embedded_server(system_pid: int, program: str) -> list[psutil.Process]:
    found = []
    for child in psutil.Process(system_pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if any(program in part for part in child.cmdline()[:2]):
                found.append(child)
    return found


@contextmanager
def our_admission(services: dict[str, Any], labels: list[str], root: Path,
                  args: argparse.Namespace, name: str = "ours") -> Iterator[Contender]:
    """One sale of the running system, and a file of new shoppers' tokens per flood label;
    yields it as a contender."""
    operator = Operator(services["api"], ADMIN_EMAIL, ADMIN_PASSWORD).sign_in()
    sale_id = operator.create_sale(stock=args.stock)["id"]
    started = time.monotonic()
    files = {label: write_tokens(root / f"tokens-{i}.txt", args.jwt_secret, f"bench{i}", args.tokens)
             for i, label in enumerate(labels)}
    print(f"  {name}: {len(labels)} x {args.tokens:,} tokens minted in {time.monotonic() - started:.0f}s")
    system_pid = services["system_pid"]
    yield Contender(name, f"{services['api']}/api/sales/{sale_id}/tickets",
                    {"app": api_processes(system_pid), "redis": _embedded_server(system_pid, "redis-server"),
                     "mongodb": _embedded_server(system_pid, "nx-27017")},
                    lambda label: ["tokens", str(files[label]), str(args.threads)])
    print(f"  {name}: {operator.sign_in().stats(sale_id)['tickets_issued']:,} tickets issued")


# ------------------------------------------------------------------ the table


def table(floods: dict[str, list[Flood]]) -> None:
    """The medians of every contender's rounds, each of ours with its ratio to the peer's."""
    def median(name: str, figure: Callable[[Flood], float]) -> float:
        return statistics.median(figure(f) for f in floods[name])

    rows: list[tuple[str, Callable[[Flood], float], str]] = [
        ("requests/s", lambda f: f.throughput, "{:,.0f}"),
        ("p50 ms", lambda f: f.p50_ms, "{:.1f}"),
        ("p95 ms", lambda f: f.p95_ms, "{:.1f}"),
        ("p99 ms", lambda f: f.p99_ms, "{:.1f}"),
        ("non-2xx", lambda f: f.non_2xx, "{:.0f}"),
        *((f"CPU us/request {group}", lambda f, g=group: f.cpu_us[g], "{:.0f}")
          for group in ("app", "redis", "mongodb", "all")),
    ]
    ours = [name for name in floods if name != "peer"]
    title = f"medians of {len(floods['peer'])} rounds"
    print(f"  {title:<24} {'peer':>10}" + "".join(f" {name:>12} {'/peer':>6}" for name in ours))
    for label, figure, shape in rows:
        peer = median("peer", figure)
        cells = []
        for name in ours:
            mine = median(name, figure)
            ratio = f"{mine / peer:.2f}x" if peer else "-"
            cells.append(f" {shape.format(mine):>12} {ratio:>6}")
        print(f"  {label:<24} {shape.format(peer):>10}" + "".join(cells))


def race(contenders: list[Contender], labels: list[str],
         args: argparse.Namespace) -> dict[str, list[Flood]]:
    """A warm-up flood each (the first label), then a round per label, the order turning by one
    each round so that none always follows another."""
    for contender in contenders:
        flood(contender, labels[0], args.warm_up, args)
    floods: dict[str, list[Flood]] = {contender.name: [] for contender in contenders}
    for i, label in enumerate(labels[1:]):
        for contender in contenders[i % len(contenders):] + contenders[:i % len(contenders)]:
            time.sleep(SETTLE_SECONDS)
            figures = flood(contender, label, args.duration, args)
            floods[contender.name].append(figures)
            print(figures.line(f"{label} {contender.name}"), flush=True)
    return floods


def main() -> None:
    parser = argparse.ArgumentParser(description="Our admission against the peer's purchase, under wrk.")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=int, default=20, help="seconds of each flood")
    parser.add_argument("--warm-up", type=int, default=5, help="seconds of one unmeasured flood each")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--tokens", type=int, default=150_000, help="our shoppers' tokens per flood")
    parser.add_argument("--stock", type=int, default=1_000_000, help="units of our sale")
    parser.add_argument("--web-concurrency", type=lambda text: [int(n) for n in text.split(",")],
                        default=[1, 2], help="our gunicorn workers, one system per count (1: one "
                        "event loop, as the peer's one node process; 2: both cores)")
    parser.add_argument("--peer-stock", type=int, default=PEER_STOCK,
                        help="units of the peer's sale (past them it answers sold out)")
    parser.add_argument("--peer-git", default=PEER_REPOSITORY,
                        help="the peer's repository: its URL or a local clone (bare or not)")
    args = parser.parse_args()
    if not shutil.which("wrk") or not shutil.which("node"):
        sys.exit("bench-peer needs wrk and node (e.g. apt-get install wrk nodejs npm)")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"our admission against the peer's purchase: {os.cpu_count()} CPUs, load average {load} "
          "at the start")
    server = peer_server(args.peer_git)
    labels = ["warm-up", *(f"round {i}" for i in range(1, args.rounds + 1))]
    with tempfile.TemporaryDirectory(prefix="flashsale-bench-peer-") as tmp, contextlib.ExitStack() as stack:
        root = Path(tmp)
        (root / "peer").mkdir()
        args.jwt_secret = secrets.token_hex(32)
        contenders = [stack.enter_context(running_peer(server, root / "peer", args.peer_stock))]
        held = 0
        for workers in args.web_concurrency:
            home = root / f"ours-{workers}"
            home.mkdir()
            # As `make bench` runs it: every request logged, as in production.
            env = {"WEB_CONCURRENCY": str(workers), "JWT_SECRET_KEY": args.jwt_secret,
                   "ACCESS_LOG_SAMPLE_RATE": "1.0"}
            services = stack.enter_context(running_system(home, env))
            contenders.append(stack.enter_context(
                our_admission(services, labels, home, args, f"ours {workers}w")))
            held += stack.enter_context(celery_held(services["system_pid"]))
        print(f"  ({held} Celery processes held still; wrk -t {args.threads} -c {args.connections}; "
              f"ours with {' and '.join(map(str, args.web_concurrency))} gunicorn workers, "
              "the peer in 1 node process)")
        floods = race(contenders, labels, args)
    table(floods)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average {load} at the end")


if __name__ == "__main__":
    main()
