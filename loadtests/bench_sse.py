"""Event streams against polling (`make bench-sse`): prints figures, asserts nothing.

For each N (default 10,000) on a throw-away system (`flashsale run`, gunicorn + gevent):
1. streams: N shoppers hold their ticket's event stream open (`?stream_token=`), from one
   gevent process of this benchmark;
2. polls: the same N shoppers on another sale poll `GET /api/tickets/<id>` honouring
   `poll_after_ms` (over a pool of keep-alive connections);
and in both the queue moves at a steady pace: this benchmark is the decider (reserve_batch
in batches, PaymentIntents from a stand-in, so nothing but the API is measured), the system's
Celery processes held still. Figures: the gunicorn processes' RSS (psutil) with everyone
connected, API CPU per connected shopper per second while the queue moves, and the time from
a decision (the ticket's `updated_at`, Redis's clock on this same machine) to the shopper
learning it (p50/p95).
3. the first burst of a surge: C connections opened within 0.5 s, each sending one request
   and staying open: time to connect (a SYN the listen queue dropped is retried after 1 s)
   and to the answer; how many took over 1 s.

`--idle` measures what holding streams costs instead: for each N, N lobby tickets of a sale
that starts in two hours (a queue that does not move: pings and presence only) open their
streams, and the figures are the API's CPU per stream opened and per open stream per second
(`python -m loadtests.bench_sse --idle --shoppers 2000,10000`).

The load generator shares the machine's two cores with what it measures; the figures say how
busy the machine was (load average) and how much CPU the generator itself used.
"""

from __future__ import annotations

if __name__ == "__main__":
    from gevent import monkey

    monkey.patch_all()

import argparse
import contextlib
import os
import resource
import secrets
import socket
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import gevent
import psutil
import redis
from gevent.event import Event

from common.flash_sale import reservations, sale_keys, waiting_room
from common.flash_sale.ticket_events import stream_token, stream_token_key
from common.platform.clients import make_redis
from loadtests.bench_admission import InstantGateway
from loadtests.charts import percentile
from loadtests.gevent_http import JsonClient
from loadtests.shop import Operator, mint_access_token
from loadtests.system import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    api_processes,
    celery_held,
    cpu_seconds,
    running_system,
)
from loadtests.ticket_stream import FINAL, StreamFailed, TicketStream

WAITING = ("lobby", "queued")


def raise_fd_limit() -> int:
    """As many file descriptors as the hard limit allows (one per stream)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def epoch_of(iso: str | None) -> float:
    return datetime.fromisoformat(str(iso).replace("Z", "+00:00")).timestamp() if iso else 0.0


@dataclass
class Shopper:
    ticket_id: str
    user_id: str
    token: str = ""
    connected_at: float = 0.0
    ended_at: float = 0.0
    decided_after_ms: float | None = None  # decision -> the shopper knows it
    events: int = 0
    error: str = ""


@dataclass
class Round:
    mode: str
    shoppers: list[Shopper]
    rss_mb: float = 0.0
    rss_before_mb: float = 0.0
    idle_cpu_seconds: float = 0.0
    idle_seconds: float = 0.0
    connect_seconds: float = 0.0
    window_seconds: float = 0.0
    api_cpu_seconds: float = 0.0
    shopper_seconds: float = 0.0
    client_cpu_seconds: float = 0.0
    requests: int = 0
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        decided = [s.decided_after_ms for s in self.shoppers if s.decided_after_ms is not None]
        errors = sum(1 for s in self.shoppers if s.error)
        per_us = self.api_cpu_seconds * 1e6 / self.shopper_seconds if self.shopper_seconds else 0.0
        idle_us = self.idle_cpu_seconds * 1e6 / (len(self.shoppers) * self.idle_seconds or 1)
        grown = self.rss_mb - self.rss_before_mb
        out = [
            f"  {self.mode:<7} {len(self.shoppers):>6,} shoppers: API RSS {self.rss_mb:7.1f} MB with all "
            f"connected (in {self.connect_seconds:.1f} s), {grown:+.1f} MB over the "
            f"{self.rss_before_mb:.1f} MB before = {grown * 1024 / len(self.shoppers):5.1f} kB per shopper",
            f"          queue still: API CPU {idle_us:6.1f} us per shopper per second "
            f"(over {self.idle_seconds:.0f} s)",
            f"          API CPU {self.api_cpu_seconds:6.2f} s over {self.window_seconds:5.1f} s of "
            f"moving queue = {per_us:6.1f} us per connected shopper per second "
            f"({self.shopper_seconds:,.0f} shopper-seconds"
            + (f", {self.requests:,} polls" if self.mode == "polls" else "") + ")",
            f"          decision -> shopper knows: p50 {percentile(decided, 0.5):7.0f} ms, p95 "
            f"{percentile(decided, 0.95):7.0f} ms, max {max(decided, default=float('nan')):7.0f} ms "
            f"({len(decided):,} of {len(self.shoppers):,} measured, {errors} errors); "
            f"generator CPU {self.client_cpu_seconds:.1f} s",
        ]
        if errors:
            kinds: dict[str, int] = {}
            for s in self.shoppers:
                if s.error:
                    kinds[s.error[:60]] = kinds.get(s.error[:60], 0) + 1
            out.append(f"          errors: {dict(sorted(kinds.items(), key=lambda kv: -kv[1])[:3])}")
        out += [f"          {note}" for note in self.notes]
        return out


def rss_mb(processes: list[psutil.Process]) -> float:
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            total += process.memory_info().rss
    return total / 2**20


def admit_all(client: redis.Redis, sale_id: str, count: int, secret: str, prefix: str) -> list[Shopper]:
    """N tickets straight through admit.lua (admission is `make bench`'s subject, not this)."""
    shoppers = []
    for i in range(count):
        user_id = f"usr_{prefix}_{i}"
        ticket = waiting_room.admit(client, sale_id, user_id, 1).ticket
        shoppers.append(Shopper(ticket["id"], user_id))
    for shopper in shoppers:
        shopper.token = mint_access_token(secret, shopper.user_id, ttl=3600)
    return shoppers


def decide_at_pace(client: redis.Redis, sale_id: str, per_second: float, batch: int) -> int:
    """The decider: the stream's tickets in order, `batch` at a time, `per_second` on average;
    each reservation gets its PaymentIntent from a stand-in at once. Returns tickets decided."""
    gateway = InstantGateway()
    entries = client.xrange(sale_keys.stream_key(sale_id), "-", "+")
    ids = [fields["ticket_id"] for _entry, fields in entries]
    started = time.monotonic()
    for first in range(0, len(ids), batch):
        chunk = ids[first:first + batch]
        gevent.sleep(max(0.0, started + first / per_second - time.monotonic()))
        outcomes = reservations.decide_batch(client, sale_id, chunk, rate_sample=per_second)
        for ticket_id, outcome in outcomes:
            if outcome == "reserving":
                reservations.attach_payment_intent(client, gateway, sale_id,  # type: ignore[arg-type]
                                                   ticket_id)
    return len(ids)


def follow_stream(base: str, key: bytes, shopper: Shopper, connected: Any) -> None:
    token = stream_token(key, shopper.ticket_id, int(time.time()) + 3600)
    stream = TicketStream(base, shopper.ticket_id, stream_token=token)
    try:
        stream.open()
        for event in stream:
            shopper.events += 1
            if not shopper.connected_at:
                shopper.connected_at = time.time()
                connected()
            ticket = event.ticket
            if ticket["status"] not in WAITING and shopper.decided_after_ms is None:
                shopper.decided_after_ms = (event.received_at - epoch_of(ticket["updated_at"])) * 1000
            if ticket["status"] in FINAL or ticket["status"] == "reserved":
                break
    except (OSError, StreamFailed, ValueError) as exc:
        shopper.error = f"{type(exc).__name__}: {exc}"
    finally:
        stream.close()
        shopper.ended_at = time.time()
        if not shopper.connected_at:
            connected()


def poll_ticket(api: JsonClient, shopper: Shopper, connected: Any, counter: list[int]) -> None:
    first = True
    while True:
        try:
            answer = api.request("GET", f"/api/tickets/{shopper.ticket_id}", token=shopper.token)
        except Exception as exc:
            shopper.error = f"{type(exc).__name__}: {exc}"
            break
        counter[0] += 1
        if answer.status != 200:
            shopper.error = f"HTTP {answer.status} {answer.error_code()}"
            break
        ticket = answer.body
        if first:
            first = False
            shopper.connected_at = time.time()
            connected()
        if ticket["status"] not in WAITING:
            shopper.decided_after_ms = (time.time() - epoch_of(ticket["updated_at"])) * 1000
            break
        gevent.sleep((ticket.get("poll_after_ms") or 1000) / 1000)
    shopper.ended_at = time.time()
    if first:
        connected()


def run_round(mode: str, services: dict[str, Any], client: redis.Redis, operator: Operator,
              count: int, args: argparse.Namespace) -> Round:
    sale_id = operator.create_sale(stock=max(1, count // 2))["id"]
    shoppers = admit_all(client, sale_id, count, args.jwt_secret, f"{mode}{secrets.token_hex(3)}")
    gunicorns = api_processes(services["system_pid"])
    me = psutil.Process()
    result = Round(mode, shoppers, rss_before_mb=rss_mb(gunicorns))
    ready = Event()
    pending = [count]

    def connected() -> None:
        pending[0] -= 1
        if pending[0] <= 0:
            ready.set()

    polls = [0]
    started = time.monotonic()
    api: JsonClient | None = None
    group: list[gevent.Greenlet] = []
    if mode == "streams":
        key = stream_token_key(args.jwt_secret)
        for i, shopper in enumerate(shoppers):
            # Opened at args.open_rate a second: the arrival of a crowd, not one SYN flood.
            group.append(gevent.spawn_later(i / args.open_rate, follow_stream, services["api"], key, shopper,
                                                connected))
    else:
        api = JsonClient(services["api"], args.poll_connections, timeout=120)
        for i, shopper in enumerate(shoppers):
            group.append(gevent.spawn_later(i / args.open_rate, poll_ticket, api, shopper, connected,
                                            polls))
    ready.wait(timeout=count / args.open_rate + 120)
    result.connect_seconds = time.monotonic() - started
    gevent.sleep(2.0)  # settled: the last greenlets are in their loops
    result.rss_mb = rss_mb(gunicorns)
    idle_before = cpu_seconds(gunicorns)
    gevent.sleep(args.idle_seconds)
    result.idle_cpu_seconds, result.idle_seconds = cpu_seconds(gunicorns) - idle_before, args.idle_seconds
    window_start = time.time()
    api_before, me_before, polls_before = cpu_seconds(gunicorns), cpu_seconds([me]), polls[0]
    decided = decide_at_pace(client, sale_id, args.decisions_per_second, args.batch)
    gevent.joinall(group, timeout=120)
    window_end = time.time()
    result.api_cpu_seconds = cpu_seconds(gunicorns) - api_before
    result.client_cpu_seconds = cpu_seconds([me]) - me_before
    result.requests = polls[0] - polls_before
    result.window_seconds = window_end - window_start
    result.shopper_seconds = sum(max(0.0, min(s.ended_at or window_end, window_end) - window_start)
                                 for s in shoppers if s.connected_at)
    result.notes.append(f"{decided:,} tickets decided at {args.decisions_per_second:,.0f}/s in "
                        f"batches of {args.batch}, {count // 2:,} units")
    gevent.killall(group, block=True, timeout=10)
    if api is not None:
        api.close()
    return result


# ------------------------------------------------------------------ --idle: holding streams


def hold_streams(base: str, key: bytes, shopper: Shopper, connected: Any) -> None:
    """Open the ticket's stream and read it until killed (pings only, in a still lobby)."""
    token = stream_token(key, shopper.ticket_id, int(time.time()) + 3600)
    stream = TicketStream(base, shopper.ticket_id, stream_token=token)
    try:
        stream.open()
        for _event in stream:
            shopper.events += 1
            if not shopper.connected_at:
                shopper.connected_at = time.time()
                connected()
    except (OSError, StreamFailed, ValueError) as exc:
        shopper.error = f"{type(exc).__name__}: {exc}"
    finally:
        stream.close()
        if not shopper.connected_at:
            connected()


def idle_round(services: dict[str, Any], client: redis.Redis, operator: Operator, count: int,
               args: argparse.Namespace) -> list[str]:
    """API CPU per stream opened and per open lobby stream per second."""
    starts_at = datetime.now(UTC) + timedelta(hours=2)
    sale_id = operator.create_sale(stock=max(1, count // 2), starts_at=starts_at)["id"]
    shoppers = admit_all(client, sale_id, count, args.jwt_secret, f"idle{secrets.token_hex(3)}")
    assert all(s.ticket_id for s in shoppers)
    gunicorns = api_processes(services["system_pid"])
    me = psutil.Process()
    ready = Event()
    pending = [count]

    def connected() -> None:
        pending[0] -= 1
        if pending[0] <= 0:
            ready.set()

    key = stream_token_key(args.jwt_secret)
    gevent.sleep(2.0)
    quiet_before = cpu_seconds(gunicorns)
    gevent.sleep(args.idle_seconds / 3)  # the API with no stream at all, for comparison
    quiet_rate = (cpu_seconds(gunicorns) - quiet_before) / (args.idle_seconds / 3)
    rss_before = rss_mb(gunicorns)
    opened_before, started = cpu_seconds(gunicorns), time.monotonic()
    group = [gevent.spawn_later(i / args.open_rate, hold_streams, services["api"], key, shopper,
                                connected) for i, shopper in enumerate(shoppers)]
    ready.wait(timeout=count / args.open_rate + 120)
    open_seconds = time.monotonic() - started
    open_cpu = cpu_seconds(gunicorns) - opened_before - quiet_rate * open_seconds
    gevent.sleep(2.0)  # settled: every greenlet in its loop
    rss_after = rss_mb(gunicorns)
    held_before, me_before = cpu_seconds(gunicorns), cpu_seconds([me])
    gevent.sleep(args.idle_seconds)
    held_cpu = cpu_seconds(gunicorns) - held_before - quiet_rate * args.idle_seconds
    me_cpu = cpu_seconds([me]) - me_before
    errors = sum(1 for s in shoppers if s.error)
    held = sum(1 for s in shoppers if s.connected_at and not s.error)  # open all through
    gevent.killall(group, block=True, timeout=10)
    first_error = next((s.error for s in shoppers if s.error), "")
    opened = max(1, count - errors)
    return [
        f"  idle {held:>6,} of {count:,} lobby streams open: opened in {open_seconds:.1f} s "
        f"({args.open_rate:,.0f}/s asked), API CPU {open_cpu * 1e6 / opened:7.1f} us per stream opened; "
        f"held {args.idle_seconds:.0f} s: API CPU {held_cpu * 1e6 / (max(1, held) * args.idle_seconds):6.1f} "
        f"us per open stream per second (the API alone, no stream: {quiet_rate * 100:.1f}% of a "
        f"core, subtracted)",
        f"          API RSS {rss_after:7.1f} MB, {(rss_after - rss_before) * 1024 / opened:5.1f} kB per "
        f"stream; {errors} errors{(' (' + first_error[:80] + ')') if errors else ''}; "
        f"generator CPU {me_cpu / args.idle_seconds * 100:.0f}% of a core while held",
    ]


# ------------------------------------------------------------------ 3. the first burst


def connect_burst(base: str, count: int, within: float) -> list[str]:
    host, port = base.split("//")[1].split(":")
    connects: list[float] = []
    answers: list[float] = []
    failures: dict[str, int] = {}
    sockets: list[socket.socket] = []
    request = f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()

    def one() -> None:
        began = time.monotonic()
        try:
            sock = socket.create_connection((host, int(port)), timeout=60)
            connects.append(time.monotonic() - began)
            sockets.append(sock)  # stays open, like a shopper's stream or keep-alive
            sock.sendall(request)
            if not sock.recv(64).startswith(b"HTTP/1.1 200"):
                failures["not 200"] = failures.get("not 200", 0) + 1
            answers.append(time.monotonic() - began)
        except OSError as exc:
            failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1

    group = [gevent.spawn_later(within * i / count, one) for i in range(count)]
    gevent.joinall(group, timeout=120)
    for sock in sockets:
        sock.close()

    def describe(values: list[float]) -> str:
        over = sum(1 for v in values if v > 1.0)
        return (f"p50 {percentile(values, 0.5) * 1000:6.0f} ms, "
                f"p95 {percentile(values, 0.95) * 1000:6.0f} ms, "
                f"max {max(values, default=float('nan')) * 1000:6.0f} ms, {over} over 1 s")

    return [f"  {count:,} connections opened within {within} s, all kept open:",
            f"    connect (SYN to accepted by the kernel): {describe(connects)}",
            f"    connect + answer to GET /healthz:        {describe(answers)}",
            f"    failures: {failures or 'none'}"]


def main() -> None:
    parser = argparse.ArgumentParser(description="Event streams against polling.")
    parser.add_argument("--shoppers", default="10000", help="comma list of N, e.g. 2000,5000,10000")
    parser.add_argument("--modes", default="streams,polls")
    parser.add_argument("--decisions-per-second", type=float, default=500.0)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--open-rate", type=float, default=2000.0, help="streams/pollers started per second")
    parser.add_argument("--poll-connections", type=int, default=2000,
                        help="keep-alive connections the pollers share")
    parser.add_argument("--burst", type=int, default=5000, help="connections of the first burst (0: skip)")
    parser.add_argument("--burst-within", type=float, default=0.5)
    parser.add_argument("--idle-seconds", type=float, default=10.0,
                        help="CPU measured this long with everyone connected, the queue still")
    parser.add_argument("--web-concurrency", type=int, default=2)
    parser.add_argument("--idle", action="store_true",
                        help="only the cost of holding streams: N lobby streams of a sale that "
                             "starts later, API CPU per stream opened and per stream per second")
    args = parser.parse_args()
    fds = raise_fd_limit()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    somaxconn = Path("/proc/sys/net/core/somaxconn")
    print(f"flashsale SSE benchmark: {os.cpu_count()} CPUs, load average {load} at the start; "
          f"this process may open {fds:,} files; somaxconn "
          f"{somaxconn.read_text().strip() if somaxconn.exists() else '?'}")
    with tempfile.TemporaryDirectory(prefix="flashsale-bench-sse-") as tmp:
        args.jwt_secret = secrets.token_hex(32)
        env = {"WEB_CONCURRENCY": str(args.web_concurrency), "JWT_SECRET_KEY": args.jwt_secret,
               "ACCESS_LOG_SAMPLE_RATE": os.environ.get("ACCESS_LOG_SAMPLE_RATE", "1")}
        with running_system(Path(tmp), env) as services:
            operator = Operator(services["api"], ADMIN_EMAIL, ADMIN_PASSWORD).sign_in()
            client = make_redis(services["redis"], socket_timeout=60)
            with celery_held(services["system_pid"]):
                for count in (int(n) for n in args.shoppers.split(",") if args.idle):
                    print("\n".join(idle_round(services, client, operator, count, args)), flush=True)
                for count in (int(n) for n in args.shoppers.split(",") if not args.idle):
                    for mode in args.modes.split(","):
                        figures = run_round(mode, services, client, operator, count, args)
                        print("\n".join(figures.lines()), flush=True)
                if args.burst and not args.idle:
                    print("\n".join(connect_burst(services["api"], args.burst, args.burst_within)))
            client.close()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average {load} at the end")


if __name__ == "__main__":
    main()
