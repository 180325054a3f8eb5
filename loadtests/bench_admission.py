"""Admission benchmark (`make bench`): prints figures, asserts nothing.

1. Admission through the real API (gunicorn + gevent, JWT, rate limit, admit.lua) next to a
   bare Flask endpoint doing one XADD under the same gunicorn settings on the same machine:
   throughput, p50/p95/p99 and the ratio. Every admission issues a new ticket: 10,000
   shoppers (tokens minted with the system's key) join one sale, from one geventhttpclient
   pool of keep-alive connections.
2. Worker decisions per second: `decide_batch` over a pre-filled stream (default 50,000
   tickets for 10,000 units), then the whole `drain_sale` loop on another such stream with a
   PaymentIntent stand-in (this measures deciding, not the Stripe emulator).
   Also: API CPU per admission and per status read (the gunicorn processes' CPU time over
   the requests, psutil; the read by id and "mine" through the fast path, and by id through
   Flask, which a query string sends it to) and Redis per admission (admit.lua's
   cmdstat_evalsha usec_per_call, and redis-server's own CPU time).
1b. Capacity on a local Redis Cluster (`flashsale run --redis-cluster`): 1 sale on 1 shard
   against 3 sales on 3 shards, side by side; what one API core and one shard sustain.
3. Status polls at 1,000 and at 1,000,000 queued tickets: `read_ticket` directly and
   `GET /api/tickets/<id>` through the API; queues are filled with admit.lua in pipelines.
4. The development run's log relay: `flashsale run`'s own CPU per admission with every access
   line logged and with its default 5% sample.
5. A sign-in storm beside the admission, on the same system: 1,000 shoppers sign in within a
   minute (`POST /api/auth/login`, arrivals spread evenly, open loop), then the same accounts
   as fast as 32 connections go (closed loop): sign-ins a second, p50/p95, API CPU per sign-in
   and so sign-ins a second per API core, the capacity model's figure for the minutes before
   a drop (argon2id with the system's PASSWORD_HASH_* settings; `--password-hash M,T,P`).
6. What users get from `flashsale run` (`make run`) as it starts by default (every process
   running, the access log sampled, the log relay): bursts of 200 shoppers each pressing Buy
   once on a fresh connection (a gevent client opening one TCP connection per request,
   `Connection: close`; wrk cannot send one request per connection), against a sale that is
   selling (its tickets decided and given PaymentIntents meanwhile). p50/p90/p95/p99 from
   the connect to the last byte, and from the request's send (what wrk reports), and each
   process's CPU over the bursts.

A throw-away system (`flashsale run`) and a throw-away Redis are started and stopped here.
The load generator shares the machine's cores with what it measures.
"""

from __future__ import annotations

if __name__ == "__main__":
    from gevent import monkey

    monkey.patch_all()

import argparse
import contextlib
import os
import random
import secrets
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import gevent
import psutil
import pymongo
import redis
from gevent.pool import Pool
from redis.cluster import ClusterNode, RedisCluster

from common.accounts import users
from common.billing.stripe_gateway import Intent
from common.flash_sale import reservations, sale_keys, sales, waiting_room
from common.platform.clients import make_redis, mongo_database_name
from common.platform.lua_scripts import scripts_for
from common.platform.settings import Settings
from loadtests.charts import percentile
from loadtests.gevent_http import Answer, JsonClient
from loadtests.shop import PASSWORD, AccountPool, Operator, mint_access_token
from loadtests.system import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    api_processes,
    celery_held,
    cpu_seconds,
    running_gunicorn,
    running_redis,
    running_system,
)

Request = tuple[str, str, Any, str]  # method, path, JSON body, bearer token


@dataclass
class Figures:
    label: str
    requests: int
    seconds: float
    latencies_ms: list[float]
    errors: Counter[str]

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def p(self, fraction: float) -> float:
        return percentile(self.latencies_ms, fraction)

    def line(self) -> str:
        errors = f", errors {dict(self.errors)}" if self.errors else ""
        return (f"{self.label:<34} {self.throughput:8.0f} req/s   p50 {self.p(0.5):6.1f} ms   "
                f"p95 {self.p(0.95):6.1f} ms   p99 {self.p(0.99):6.1f} ms   ({self.requests} requests"
                f"{errors})")


def hammer(client: JsonClient, requests: Iterable[Request], concurrency: int, label: str,
           expected: tuple[int, ...], bodies: list[tuple[Any, str]] | None = None) -> Figures:
    """Send every request, `concurrency` at a time (closed loop); time each one. With
    `bodies`, each expected answer's body is kept there with the request's token."""
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    unanswered = 0
    work = iter(requests)

    def one_connection() -> None:
        nonlocal unanswered
        for method, path, body, token in work:
            try:
                answer: Answer = client.request(method, path, body, token)
            except Exception as exc:
                errors[type(exc).__name__] += 1
                unanswered += 1
                continue
            latencies.append(answer.ms)
            if answer.status not in expected:
                errors[f"{answer.status} {answer.error_code()}"] += 1
            elif bodies is not None:
                bodies.append((answer.body, token))

    started = time.perf_counter()
    pool = Pool(concurrency)
    for _ in range(concurrency):
        pool.spawn(one_connection)
    pool.join()
    return Figures(label, len(latencies) + unanswered, time.perf_counter() - started, latencies, errors)


# ------------------------------------------------------------------ filling queues fast


def fill_queue(redis_client: redis.Redis, sale_id: str, count: int, user_prefix: str,
               chunk: int = 2000) -> list[str]:
    """Issue `count` queued tickets with admit.lua (what the API runs), in pipelines."""
    admit = scripts_for(redis_client).admit
    ids: list[str] = []
    for start in range(0, count, chunk):
        pipe = redis_client.pipeline(transaction=False)
        for i in range(start, min(count, start + chunk)):
            ticket_id = sale_keys.new_ticket_id(sale_id)
            ids.append(ticket_id)
            keys, args = waiting_room.admit_script_call(sale_id, ticket_id, f"{user_prefix}-{i}", 1)
            admit(keys=keys, args=args, client=pipe)
        pipe.execute()
    return ids


def load_bare_sale(redis_client: redis.Redis, stock: int) -> str:
    """A sale in Redis only (the decisions run on a Redis of their own, with no MongoDB)."""
    now = datetime.now(UTC)
    sale = {"_id": sale_keys.new_sale_id(), "stock_total": stock, "starts_at": now - timedelta(minutes=1),
            "ends_at": now + timedelta(hours=2), "per_user_limit": 1, "reservation_ttl_seconds": 300,
            "price_cents": 1999, "currency": "USD", "product_id": "prd_bench",
            "loaded": True}  # already "stored": load_sale then only writes Redis
    sales.load_sale(None, redis_client, sale)  # type: ignore[arg-type]
    return str(sale["_id"])


def delete_sale_keys(redis_client: redis.Redis, sale_id: str) -> None:
    pattern = "{sale:" + sale_id + "}:*"
    batch: list[str] = []
    for key in redis_client.scan_iter(match=pattern, count=5000):
        batch.append(str(key))
        if len(batch) >= 5000:
            redis_client.unlink(*batch)
            batch = []
    if batch:
        redis_client.unlink(*batch)
    redis_client.srem(sale_keys.SALES_INDEX_KEY, sale_id)


# ------------------------------------------------------------------ 1. admission


def bench_admission(services: dict[str, Any], root: Path, args: argparse.Namespace) -> None:
    base = services["api"]
    operator = Operator(base, ADMIN_EMAIL, ADMIN_PASSWORD).sign_in()
    # One sale, as in a flash sale: every shopper joins it once. Tokens are minted with the
    # system's key (accounts are not what is measured, and argon2 sign-ups take minutes).
    warmup_sale = operator.create_sale(stock=1)["id"]
    sale_id = operator.create_sale(stock=args.stock)["id"]
    started = time.monotonic()
    tokens = [mint_access_token(args.jwt_secret, f"usr_bench_{i}") for i in range(args.shoppers)]
    warmup_tokens = [mint_access_token(args.jwt_secret, f"usr_warmup_{i}") for i in range(1000)]
    print(f"  {len(tokens):,} shoppers for one sale of {args.stock} units "
          f"(tokens minted in {time.monotonic() - started:.1f}s)")
    admissions: list[Request] = [("POST", f"/api/sales/{sale_id}/tickets", {"quantity": 1}, token)
                                 for token in tokens]
    api = JsonClient(base, args.concurrency)
    hammer(api, [("POST", f"/api/sales/{warmup_sale}/tickets", {"quantity": 1}, t) for t in warmup_tokens],
           args.concurrency, "warm-up", (200, 202))
    # The endpoints are compared on the same machine: the bare one has no workers beside it,
    # so the system's Celery processes are held still through both runs (decisions: part 2).
    with contextlib.nullcontext(0) if args.workers_running else celery_held(services["system_pid"]) as held:
        gunicorns = api_processes(services["system_pid"])
        system_redis = make_redis(services["redis"])
        system_redis.config_resetstat()
        redis_cpu, api_cpu = _redis_cpu(system_redis), cpu_seconds(gunicorns)
        issued: list[tuple[Any, str]] = []
        real = hammer(api, admissions, args.concurrency, "POST /api/sales/<id>/tickets", (202,),
                      bodies=issued)
        api_us = (cpu_seconds(gunicorns) - api_cpu) * 1e6 / max(1, real.requests)
        redis_us = (_redis_cpu(system_redis) - redis_cpu) * 1e6 / max(1, real.requests)
        script_us = _evalsha_usec(system_redis)
        # Status reads: each shopper polls their own ticket, through the fast path (both
        # routes) and through Flask (a query string sends a read there; Flask ignores it).
        reads = {
            "GET /api/tickets/<id>": [("GET", f"/api/tickets/{body['id']}", None, token)
                                      for body, token in issued[: args.status_reads]],
            "GET /api/sales/<id>/tickets/mine": [("GET", f"/api/sales/{sale_id}/tickets/mine", None, token)
                                                 for _body, token in issued[: args.status_reads]],
            "GET /api/tickets/<id> via Flask": [("GET", f"/api/tickets/{body['id']}?via=flask", None, token)
                                                for body, token in issued[: args.status_reads]],
        }
        # A shopper near the front polls every second or two: a poll within 5 s of the last one
        # notes no presence (ticket_events.PollPresence). Tickets no pass above read, polled once
        # (not measured), then again at once.
        again = [("GET", f"/api/tickets/{body['id']}", None, token)
                 for body, token in issued[-min(1000, len(issued)):]]
        reads[REPEAT_POLL] = again
        read_figures: list[tuple[Figures, float]] = []
        for label, requests in reads.items():
            if label == REPEAT_POLL:
                hammer(api, requests, args.concurrency, "first poll", (200,))
            api_cpu = cpu_seconds(gunicorns)
            read = hammer(api, requests, args.concurrency, label, (200,))
            read_figures.append((read, (cpu_seconds(gunicorns) - api_cpu) * 1e6 / max(1, read.requests)))
        system_redis.close()
        with running_gunicorn(f"loadtests.bare_app:create_app({services['redis']!r})", root,
                              args.web_concurrency) as (bare_url, bare_pid):
            bare = JsonClient(bare_url, args.concurrency)
            hammer(bare, [("POST", "/xadd", None, "")] * 1000, args.concurrency, "warm-up", (202,))
            bare_processes = [psutil.Process(bare_pid), *psutil.Process(bare_pid).children()]
            bare_cpu = cpu_seconds(bare_processes)
            baseline = hammer(bare, [("POST", "/xadd", None, "")] * len(admissions), args.concurrency,
                              "bare Flask + one XADD", (202,))
            bare_us = (cpu_seconds(bare_processes) - bare_cpu) * 1e6 / max(1, baseline.requests)
            bare.close()
    if held:
        print(f"  ({held} Celery processes held still meanwhile; --workers-running keeps them deciding)")
    print(f"  {real.line()}")
    print(f"  {baseline.line()}")
    print(f"  ratio: admission throughput is {real.throughput / baseline.throughput:.2f}x the bare "
          f"endpoint's; p50 {real.p(0.5) / baseline.p(0.5):.1f}x, p99 {real.p(0.99) / baseline.p(0.99):.1f}x "
          f"(concurrency {args.concurrency}, {args.web_concurrency} gunicorn workers)")
    for read, _us in read_figures:
        print(f"  {read.line()}")
    read_us = ", ".join(f"{us:.0f}" for _read, us in read_figures)
    print(f"  API CPU per admission {api_us:6.0f} us   per status read {read_us} us (by id, mine, "
          f"by id via Flask, by id polled again within 5 s)   bare endpoint per request {bare_us:6.0f} us   "
          f"(gunicorn processes' "
          f"CPU time over the requests; the bare one is the floor gunicorn, gevent and Flask set)")
    print(f"  Redis per admission: admit.lua {script_us:5.1f} us (cmdstat_evalsha usec_per_call), "
          f"{redis_us:5.1f} us of redis-server CPU in all (used_cpu_user + used_cpu_sys)")
    api.close()


REPEAT_POLL = "GET /api/tickets/<id> again"


def bench_relay(root: Path, args: argparse.Namespace) -> None:
    """`flashsale run` relays every process's output through its own process (the supervisor):
    its CPU per admission with the development run's sampled access log (5%, the default) and
    with every line logged, side by side."""
    for label, rate in (("every line (1.0)", "1.0"), ("sampled (flashsale run's 0.05)", "")):
        env = {k: v for k, v in args.system_env.items() if k != "ACCESS_LOG_SAMPLE_RATE"}
        if rate:
            env["ACCESS_LOG_SAMPLE_RATE"] = rate
        where = root / f"relay-{rate or 'default'}"
        where.mkdir()
        with running_system(where, env) as services:
            operator = Operator(services["api"], ADMIN_EMAIL, ADMIN_PASSWORD).sign_in()
            sale_id = operator.create_sale(stock=args.stock)["id"]
            tokens = [mint_access_token(args.jwt_secret, f"usr_relay_{rate}_{i}")
                      for i in range(args.relay_shoppers)]
            api = JsonClient(services["api"], args.concurrency)
            with celery_held(services["system_pid"]):
                supervisor = psutil.Process(services["system_pid"])
                before = cpu_seconds([supervisor])
                flood = hammer(api, [("POST", f"/api/sales/{sale_id}/tickets", {"quantity": 1}, t)
                                     for t in tokens], args.concurrency, "admissions", (202,))
                relay_us = (cpu_seconds([supervisor]) - before) * 1e6 / max(1, flood.requests)
            api.close()
        print(f"  access log {label:<31} supervisor CPU per admission {relay_us:6.1f} us "
              f"({flood.requests:,} admissions, {flood.throughput:,.0f}/s)")


# ------------------------------------------------------------------ 5. sign-in storm


def password_hash_parameters(args: argparse.Namespace) -> tuple[int, int, int]:
    """(memory KiB, passes, lanes): `--password-hash`, else the settings' defaults."""
    if args.password_hash:
        memory, passes, lanes = (int(x) for x in args.password_hash.split(","))
        return memory, passes, lanes
    fields = Settings.model_fields
    return (fields["password_hash_memory_kib"].default, fields["password_hash_time_cost"].default,
            fields["password_hash_parallelism"].default)


def _storm_accounts(services: dict[str, Any], count: int, parameters: tuple[int, int, int]) -> list[str]:
    """`count` customer accounts made by the domain's own `create_user` straight into the
    system's MongoDB (through the API each would cost a hash, which is not what is measured
    here): made with a throw-away cheap hash, then all given one real hash made with the
    system's parameters (a check costs what the stored hash's parameters say)."""
    memory, passes, lanes = parameters
    password_hash = users.password_hasher(memory, passes, lanes).hash(PASSWORD)
    emails = [f"storm-{secrets.token_hex(6)}@bench.example.com" for _ in range(count)]
    mongo: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(services["mongodb"])
    real_hasher, users._hasher = users._hasher, users.password_hasher(1024, 1, 1)
    try:
        db = mongo[mongo_database_name(services["mongodb"], "flashsale")]
        for email in emails:
            users.create_user(db, email=email, password=PASSWORD, name="Storm")
        db.users.update_many({"email": {"$in": emails}}, {"$set": {"password_hash": password_hash}})
    finally:
        users._hasher = real_hasher
        mongo.close()
    return emails


def bench_signin(services: dict[str, Any], args: argparse.Namespace) -> None:
    """1,000 sign-ins spread over a minute (open loop), then as fast as they go (closed loop)."""
    parameters = password_hash_parameters(args)
    emails = _storm_accounts(services, args.signin_shoppers, parameters)
    memory, passes, lanes = parameters
    print(f"  argon2id m={memory} KiB, t={passes}, p={lanes}; {len(emails):,} accounts")
    api = JsonClient(services["api"], 200)
    gunicorns = api_processes(services["system_pid"])
    signins = [("POST", "/api/auth/login", {"email": email, "password": PASSWORD}, "") for email in emails]
    hammer(api, signins[:20], 4, "warm-up", (200,))

    latencies: list[float] = []
    errors: Counter[str] = Counter()

    def sign_in(request: Request) -> None:
        method, path, body, token = request
        try:
            answer = api.request(method, path, body, token)
        except Exception as exc:
            errors[type(exc).__name__] += 1
            return
        latencies.append(answer.ms)
        if answer.status != 200:
            errors[f"{answer.status} {answer.error_code()}"] += 1

    interval = args.signin_seconds / len(signins)
    before, started = cpu_seconds(gunicorns), time.perf_counter()
    arrivals = []
    for i, request in enumerate(signins):
        wait = started + i * interval - time.perf_counter()
        if wait > 0:
            gevent.sleep(wait)
        arrivals.append(gevent.spawn(sign_in, request))
    gevent.joinall(arrivals)
    storm = Figures(f"storm: {len(signins):,} within {args.signin_seconds:.0f} s", len(signins),
                    time.perf_counter() - started, latencies, errors)
    storm_us = (cpu_seconds(gunicorns) - before) * 1e6 / max(1, storm.requests)

    before = cpu_seconds(gunicorns)
    flood = hammer(api, signins, args.signin_concurrency,
                   f"flood: {args.signin_concurrency} at a time", (200,))
    flood_us = (cpu_seconds(gunicorns) - before) * 1e6 / max(1, flood.requests)
    api.close()
    print(f"  {storm.line()}")
    print(f"  {flood.line()}")
    print(f"  API CPU per sign-in {storm_us:6.0f} us in the storm, {flood_us:6.0f} us in the flood: "
          f"one API core signs in about {1e6 / flood_us:,.0f} shoppers/s "
          f"({args.web_concurrency} gunicorn workers, one hashing thread each)")


# ------------------------------------------------------------------ 6. fresh connections, flashsale run


def _fresh_connection_request(host: str, port: int, request: bytes) -> tuple[float, float, int]:
    """One request on a connection of its own: (ms from the connect, ms from the send, status)."""
    started = time.perf_counter()
    sock = gevent.socket.create_connection((host, port), timeout=60)
    try:
        sent = time.perf_counter()
        sock.sendall(request)
        received = bytearray()
        while chunk := sock.recv(65536):
            received += chunk
    finally:
        sock.close()
    done = time.perf_counter()
    return (done - started) * 1000, (done - sent) * 1000, int(received[9:12] or 0)


def _system_cpu(system_pid: int) -> dict[str, float]:
    """CPU seconds used so far by each kind of process of a `flashsale run` system."""
    used: Counter[str] = Counter()
    supervisor = psutil.Process(system_pid)
    for process in [supervisor, *supervisor.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            command = " ".join(process.cmdline())
            times = process.cpu_times()
            kind = ("supervisor (log relay)" if process.pid == system_pid else
                    "api (gunicorn)" if "gunicorn" in command else
                    "decider" if "decider" in command else
                    "beat" if " beat" in command else
                    "worker" if "worker.app" in command else
                    next((name for name in ("redis", "mongodb", "stripe") if name in command), "other"))
            used[kind] += times.user + times.system
    return dict(used)


def _background_processes(system_pid: int) -> list[psutil.Process]:
    """The Celery processes (worker, decider, beat): their work can wait a moment."""
    found = []
    for child in psutil.Process(system_pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "worker.app" in child.cmdline():
                found.append(child)
    return found


def _burst(host: str, port: int, requests: list[bytes]) -> list[tuple[float, float, int]]:
    burst = [gevent.spawn(_fresh_connection_request, host, port, r) for r in requests]
    gevent.joinall(burst)
    return [g.value for g in burst if g.successful()]


def bench_fresh_connections(root: Path, args: argparse.Namespace) -> None:
    """Bursts of `--burst` shoppers, one request per new connection, against `flashsale run`
    as users start it (only the benchmark's key, admin and port set; Celery running). Rounds
    alternate with one where the Celery processes run at a lower priority (nice 10), so that
    both are measured on the same machine at once: does the API answer a burst sooner when
    the decisions and PaymentIntents it sets off yield the cores?"""
    where = root / "fresh-connections"
    where.mkdir()
    env = {"JWT_SECRET_KEY": args.jwt_secret, "LOG_LEVEL": "INFO", "ADMISSION_RATE_LIMIT": "20 per second"}
    as_started, lowered = "as flashsale run starts it", "Celery at nice 10"
    with running_system(where, env) as services:
        host, _, port = services["api"].rpartition("//")[2].partition(":")
        operator = Operator(services["api"], ADMIN_EMAIL, ADMIN_PASSWORD).sign_in()
        background = _background_processes(services["system_pid"])
        started_nice = {process.pid: process.nice() for process in background}
        api_nice = api_processes(services["system_pid"])[0].nice()
        results: dict[str, list[tuple[float, float, int]]] = {as_started: [], lowered: []}
        cpu: dict[str, float] = {}
        seconds = 0.0
        load_generator = psutil.Process()
        for round_ in range(2 * args.burst_rounds + 1):  # the first warms the workers up, unreported
            label = lowered if round_ % 2 == 0 and args.burst_compare else as_started
            try:
                for process in background:
                    process.nice(api_nice + 10 if label == lowered else started_nice[process.pid])
            except psutil.AccessDenied:  # raising a priority back needs root: measure as started only
                label = as_started
            sale_id = operator.create_sale(stock=100)["id"]  # the demo sale's size, selling at once
            body = b'{"quantity":1}'
            tokens = [mint_access_token(args.jwt_secret, f"usr_burst_{round_}_{i}")
                      for i in range(args.burst)]
            requests = [f"POST /api/sales/{sale_id}/tickets HTTP/1.1\r\nHost: {host}:{port}\r\n"
                        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
                        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
                        for token in tokens]
            cpu_before, started = _system_cpu(services["system_pid"]), time.perf_counter()
            cpu_before["load generator (this process)"] = sum(load_generator.cpu_times()[:2])
            answers = _burst(host, int(port), requests)
            gevent.sleep(args.burst_pause)
            if round_ == 0:
                continue
            results[label] += answers
            if label == as_started:
                seconds += time.perf_counter() - started
                used_now = _system_cpu(services["system_pid"])
                used_now["load generator (this process)"] = sum(load_generator.cpu_times()[:2])
                for kind, used in used_now.items():
                    cpu[kind] = cpu.get(kind, 0.0) + used - cpu_before.get(kind, 0.0)
            whole = [a[0] for a in answers]
            print(f"  burst {round_:2} ({label}): {len(answers)}/{args.burst} answered "
                  f"{dict(Counter(a[2] for a in answers))}; from the connect "
                  f"p50 {percentile(whole, .5):4.0f} ms"
                  f"  p90 {percentile(whole, .9):4.0f}  p95 {percentile(whole, .95):4.0f}  "
                  f"p99 {percentile(whole, .99):4.0f}")
    for label, answers in results.items():
        for what, index in (("from the connect", 0), ("from the send (as wrk)", 1)):
            ms = [a[index] for a in answers]
            if ms:
                print(f"  {label}, {len(ms)} shoppers, {what:<22} p50 {percentile(ms, .5):4.0f} ms  "
                      f"p90 {percentile(ms, .9):4.0f}  p95 {percentile(ms, .95):4.0f}  "
                      f"p99 {percentile(ms, .99):4.0f}  max {max(ms):4.0f}")
    shoppers = max(1, len(results[as_started]))
    print(f"  CPU per admission as started, over its bursts and pauses ({seconds:.1f} s): " +
          ", ".join(f"{kind} {used * 1e6 / shoppers:,.0f} us"
                    for kind, used in sorted(cpu.items(), key=lambda item: -item[1])))


def _redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _evalsha_usec(client: redis.Redis) -> float:
    stats = client.info("commandstats").get("cmdstat_evalsha") or {}
    return float(stats.get("usec_per_call", 0.0))


# ------------------------------------------------------------------ 1b. capacity on a cluster


@dataclass
class CapacityRow:
    label: str
    figures: Figures
    api_us: float
    shard_us: dict[int, float]  # port -> redis-server CPU per admission it served (us)
    script_us: dict[int, float]  # port -> admit.lua usec_per_call
    busiest_shard_percent: float


def _cluster_nodes(setting: str) -> dict[int, redis.Redis]:
    nodes = {}
    for node in setting.split(","):
        host, _, port = node.rpartition(":")
        nodes[int(port)] = redis.Redis(host=host, port=int(port), decode_responses=True)
    return nodes


def _sales_on_distinct_shards(operator: Operator, cluster: RedisCluster, stock: int,
                              shards: int) -> list[tuple[str, int]]:
    """Sales created until `shards` of them sit on different masters: (sale_id, port)."""
    found: dict[int, str] = {}
    for _ in range(60):
        sale_id = operator.create_sale(stock=stock)["id"]
        port = int(cluster.get_node_from_key(sale_keys.counters_key(sale_id)).port)
        found.setdefault(port, sale_id)
        if len(found) == shards:
            break
    return [(sale_id, port) for port, sale_id in found.items()]


def _capacity_run(label: str, services: dict[str, Any], nodes: dict[int, redis.Redis],
                  sales_on: list[tuple[str, int]], shoppers: int, args: argparse.Namespace) -> CapacityRow:
    tokens = [mint_access_token(args.jwt_secret, f"usr_cap_{secrets.token_hex(4)}_{i}")
              for i in range(shoppers)]
    requests = [("POST", f"/api/sales/{sales_on[i % len(sales_on)][0]}/tickets", {"quantity": 1}, token)
                for i, token in enumerate(tokens)]
    api = JsonClient(services["api"], args.concurrency)
    gunicorns = api_processes(services["system_pid"])
    for node in nodes.values():
        node.config_resetstat()
    served = Counter(port for _sale, port in sales_on for _ in range(shoppers // len(sales_on)))
    before = {port: _redis_cpu(node) for port, node in nodes.items()}
    api_before, started = cpu_seconds(gunicorns), time.perf_counter()
    figures = hammer(api, requests, args.concurrency, label, (202,))
    wall = time.perf_counter() - started
    api_us = (cpu_seconds(gunicorns) - api_before) * 1e6 / max(1, figures.requests)
    used = {port: _redis_cpu(node) - before[port] for port, node in nodes.items()}
    api.close()
    return CapacityRow(
        label, figures, api_us,
        shard_us={port: used[port] * 1e6 / served[port] for port in served},
        script_us={port: _evalsha_usec(nodes[port]) for port in served},
        busiest_shard_percent=100 * max(used.values()) / wall)


def bench_capacity(root: Path, args: argparse.Namespace) -> list[CapacityRow]:
    """1 sale on 1 shard against 3 sales on 3 shards, side by side, on a local Redis Cluster."""
    (root / "cluster-run").mkdir(exist_ok=True)
    with running_system(root / "cluster-run", args.system_env, args=("--redis-cluster",)) as services:
        nodes = _cluster_nodes(services["redis_cluster_nodes"])
        cluster = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", port) for port in nodes],
                               decode_responses=True)
        operator = Operator(services["api"], ADMIN_EMAIL, ADMIN_PASSWORD).sign_in()
        spread = _sales_on_distinct_shards(operator, cluster, args.stock, 3)
        print(f"  sales on shards: {', '.join(f'{sale} -> :{port}' for sale, port in spread)}")
        rows = []
        with celery_held(services["system_pid"]):
            _capacity_run("warm-up", services, nodes, spread, 1500, args)
            for _round in range(args.capacity_rounds):
                rows.append(_capacity_run("1 sale, 1 shard", services, nodes, spread[:1],
                                          args.capacity_shoppers, args))
                rows.append(_capacity_run(f"{len(spread)} sales, {len(spread)} shards", services, nodes,
                                          spread, args.capacity_shoppers, args))
        cluster.close()
        for node in nodes.values():
            node.close()
    print(f"  {'':<20} {'adm/s':>7} {'p95 ms':>7} {'API us/adm':>11} {'shard us/adm':>13} "
          f"{'admit.lua us':>13} {'busiest shard CPU':>18}")
    for row in rows:
        shard = max(row.shard_us.values())
        script = max(row.script_us.values())
        print(f"  {row.label:<20} {row.figures.throughput:7.0f} {row.figures.p(0.95):7.1f} "
              f"{row.api_us:11.0f} {shard:13.1f} {script:13.1f} {row.busiest_shard_percent:17.0f}%"
              f"{'  errors ' + str(dict(row.figures.errors)) if row.figures.errors else ''}")
    api_us = sorted(r.api_us for r in rows)[len(rows) // 2]
    shard_us = sorted(max(r.shard_us.values()) for r in rows)[len(rows) // 2]
    print(f"  one API core sustains about {1e6 / api_us:,.0f} admissions/s ({api_us:.0f} us each); "
          f"one Redis shard about {1e6 / shard_us:,.0f} admissions/s ({shard_us:.0f} us of its CPU "
          f"each), and one sale lives on one shard: that is one sale's ceiling")
    return rows


# ------------------------------------------------------------------ 2. decisions


class InstantGateway:
    """Stands in for Stripe: the drain then measures deciding, not the emulator."""

    def create_intent(self, *, amount_cents: int, currency: str, metadata: dict[str, str],
                      idempotency_key: str) -> Intent:
        intent_id = "pi_bench_" + secrets.token_hex(8)
        return Intent(id=intent_id, status="requires_payment_method",
                      client_secret=intent_id + "_secret", amount=amount_cents, currency=currency,
                      metadata=metadata)

    def cancel(self, intent_id: str, reason: str = "abandoned") -> None:
        return None


def bench_decisions(redis_url: str, args: argparse.Namespace) -> None:
    client = make_redis(redis_url, socket_timeout=120)
    tickets, stock = args.decision_tickets, args.decision_stock

    sale_id = load_bare_sale(client, stock)
    started = time.perf_counter()
    fill_queue(client, sale_id, tickets, "decide")
    fill_seconds = time.perf_counter() - started
    in_lua = 0.0
    started = time.perf_counter()
    start = "-"
    while True:
        entries = client.xrange(sale_keys.stream_key(sale_id), min=start, max="+", count=args.batch)
        if not entries:
            break
        ids = [data["ticket_id"] for _, data in entries]
        batch_started = time.perf_counter()
        reservations.decide_batch(client, sale_id, ids)
        in_lua += time.perf_counter() - batch_started
        start = "(" + entries[-1][0]
    total = time.perf_counter() - started
    counters = sales.read_counters(client, sale_id)
    assert counters is not None
    print(f"  filled {tickets} queued tickets with admit.lua in {fill_seconds:.1f}s "
          f"({tickets / fill_seconds:.0f}/s)")
    print(f"  decide_batch (batches of {args.batch}): {tickets / total:,.0f} decisions/s "
          f"({tickets / in_lua:,.0f}/s inside the calls); reserved {counters.reserved}, "
          f"sold out {counters.sold_out}, available {counters.available}")
    delete_sale_keys(client, sale_id)

    sale_id = load_bare_sale(client, stock)
    fill_queue(client, sale_id, tickets, "drain")
    options = reservations.DrainOptions(batch_size=args.batch, idle_seconds=0.5)
    with ThreadPoolExecutor(16) as pool:
        started = time.perf_counter()
        drain = gevent.spawn(reservations.drain_sale, client, InstantGateway(),  # type: ignore[arg-type]
                             sale_id, options, pool)
        while int(client.hget(sale_keys.counters_key(sale_id), "queued") or 0) > 0:
            gevent.sleep(0.01)
        decided_seconds = time.perf_counter() - started
        drain.join()
        done_seconds = time.perf_counter() - started - options.idle_seconds
    result = drain.value
    print(f"  drain_sale (XREADGROUP, decide, XACK; PaymentIntents attached for {result.reserved}): "
          f"all {result.decided} decided in {decided_seconds:.2f}s = {result.decided / decided_seconds:,.0f} "
          f"decisions/s; acked and attached in {done_seconds:.2f}s")
    delete_sale_keys(client, sale_id)
    client.close()


# ------------------------------------------------------------------ 3. status polls


def _time_calls(call: Callable[[str], object], items: list[str]) -> list[float]:
    """Microseconds per call, one call per item."""
    latencies = []
    for item in items:
        started = time.perf_counter()
        call(item)
        latencies.append((time.perf_counter() - started) * 1_000_000)
    return latencies


def bench_polls(services: dict[str, Any], redis_url: str, root: Path, args: argparse.Namespace) -> None:
    """Polls at each queue size, measured in alternation so that both see the same machine."""
    # Direct: read_ticket on a Redis of our own, one sale per queue size.
    client = make_redis(redis_url, socket_timeout=120)
    queues: list[tuple[int, list[str]]] = []
    for size in args.poll_sizes:
        sale_id = load_bare_sale(client, 10)
        started = time.perf_counter()
        ids = fill_queue(client, sale_id, size, f"poll{size}")
        print(f"  filled {size:,} queued tickets in {time.perf_counter() - started:.1f}s "
              f"(Redis now {client.info('memory')['used_memory_human']})")
        queues.append((size, random.sample(ids[-1000:], min(size, 200))))
    direct: dict[int, list[float]] = {size: [] for size, _ in queues}
    for _round in range(args.polls):
        for size, sample in queues:
            direct[size] += _time_calls(lambda tid: waiting_room.read_ticket(client, tid),
                                        [random.choice(sample)])
    for size, us in direct.items():
        print(f"  read_ticket at {size:>9,} queued: p50 {percentile(us, .5):5.0f} us, "
              f"p95 {percentile(us, .95):5.0f} us, p99 {percentile(us, .99):5.0f} us")
    client.flushall()
    client.close()

    # Through the API: each shopper's own ticket at the back of a queue of each size.
    base = services["api"]
    operator = Operator(base, ADMIN_EMAIL, ADMIN_PASSWORD).sign_in()
    accounts, _ = AccountPool(base, root / "accounts.jsonl", concurrency=8).take(args.poll_shoppers)
    system_redis = make_redis(services["redis"], socket_timeout=120)
    api = JsonClient(base, 16)
    sales_made: list[str] = []
    try:
        polls: list[tuple[int, Request]] = []
        for size in args.poll_sizes:
            sale = operator.create_sale(stock=10)["id"]
            sales_made.append(sale)
            # Hold the sale's drain lock: the worker must not decide the queue away meanwhile.
            system_redis.set(sale_keys.drain_lock_key(sale), "benchmark", px=3_600_000)
            fill_queue(system_redis, sale, size, "api-poll")
            tickets = [(api.request("POST", f"/api/sales/{sale}/tickets", {"quantity": 1},
                                    a["access_token"]).body, a["access_token"]) for a in accounts]
            print(f"  a shopper's position in the {size:,} queue: {tickets[0][0]['position']:,}")
            polls += [(size, ("GET", f"/api/tickets/{t['id']}", None, token)) for t, token in tickets]
        # Interleaved: every size is polled throughout the same stretch of time.
        mixed = [random.choice(polls) for _ in range(args.polls * len(args.poll_sizes))]
        latencies: dict[int, list[float]] = {size: [] for size in args.poll_sizes}
        errors: Counter[str] = Counter()

        def poller(work: list[tuple[int, Request]]) -> None:
            for size, (method, path, body, token) in work:
                answer = api.request(method, path, body, token)
                latencies[size].append(answer.ms)
                if answer.status != 200:
                    errors[f"{answer.status} {answer.error_code()}"] += 1

        started = time.perf_counter()
        pool = Pool(16)
        for i in range(16):
            pool.spawn(poller, mixed[i::16])
        pool.join()
        rate = len(mixed) / (time.perf_counter() - started)
        for size, ms in latencies.items():
            print(f"  GET /api/tickets/<id> at {size:>9,} queued: p50 {percentile(ms, .5):5.1f} ms, "
                  f"p95 {percentile(ms, .95):5.1f} ms, p99 {percentile(ms, .99):5.1f} ms")
        print(f"  ({len(mixed)} polls, 16 at a time, {rate:.0f}/s overall"
              f"{', errors ' + str(dict(errors)) if errors else ''})")
    finally:
        for sale in sales_made:
            system_redis.delete(sale_keys.drain_lock_key(sale))
            delete_sale_keys(system_redis, sale)
        system_redis.close()
        api.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="Admission, decision and polling benchmark.")
    parser.add_argument("--shoppers", type=int, default=10_000, help="admissions (one per shopper)")
    parser.add_argument("--stock", type=int, default=500, help="units of the benchmarked sale")
    parser.add_argument("--workers-running", action="store_true",
                        help="keep deciding tickets while admission is measured")
    parser.add_argument("--concurrency", type=int, default=64, help="connections in flight")
    parser.add_argument("--web-concurrency", type=int, default=2, help="gunicorn workers (both apps)")
    parser.add_argument("--decision-tickets", type=int, default=50_000)
    parser.add_argument("--decision-stock", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=500, help="decision batch size")
    parser.add_argument("--poll-sizes", type=lambda s: [int(x) for x in s.split(",")],
                        default=[1_000, 1_000_000])
    parser.add_argument("--polls", type=int, default=3000)
    parser.add_argument("--poll-shoppers", type=int, default=20)
    parser.add_argument("--status-reads", type=int, default=5000, help="GET /api/tickets/<id> measured")
    parser.add_argument("--capacity-shoppers", type=int, default=4000,
                        help="admissions per capacity scenario (on the cluster)")
    parser.add_argument("--capacity-rounds", type=int, default=2)
    parser.add_argument("--relay-shoppers", type=int, default=10_000,
                        help="admissions per relay measurement (flashsale run's log relay)")
    parser.add_argument("--signin-shoppers", type=int, default=1000, help="accounts in the sign-in storm")
    parser.add_argument("--signin-seconds", type=float, default=60.0,
                        help="the storm's sign-ins arrive evenly over this many seconds")
    parser.add_argument("--signin-concurrency", type=int, default=32,
                        help="connections of the closed-loop sign-in flood")
    parser.add_argument("--password-hash", default="",
                        help="argon2id 'memory_kib,passes,lanes' for the system (default: its settings')")
    parser.add_argument("--burst", type=int, default=200,
                        help="shoppers per burst of fresh connections (flashsale run as users start it)")
    parser.add_argument("--burst-rounds", type=int, default=5, help="bursts measured (of each kind)")
    parser.add_argument("--burst-compare", action=argparse.BooleanOptionalAction, default=True,
                        help="alternate with bursts where Celery runs at nice 10")
    parser.add_argument("--burst-pause", type=float, default=3.0, help="seconds between bursts")
    parser.add_argument("--skip", default="", help="comma list of parts to skip: "
                        "admission,signin,capacity,decisions,polls,relay,fresh")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"flashsale benchmark: {os.cpu_count()} CPUs, load average {load} at the start")
    with tempfile.TemporaryDirectory(prefix="flashsale-bench-") as tmp:
        root = Path(tmp)
        args.jwt_secret = secrets.token_hex(32)
        # Every request logged, as in production (flashsale run samples 5% by default).
        env = {"WEB_CONCURRENCY": str(args.web_concurrency), "JWT_SECRET_KEY": args.jwt_secret,
               "ACCESS_LOG_SAMPLE_RATE": "1.0"}
        if args.password_hash:
            memory, passes, lanes = password_hash_parameters(args)
            env.update({"PASSWORD_HASH_MEMORY_KIB": str(memory), "PASSWORD_HASH_TIME_COST": str(passes),
                        "PASSWORD_HASH_PARALLELISM": str(lanes)})
        args.system_env = env
        with running_system(root, env) as services, \
                running_redis(root) as redis_url:
            if "admission" not in skip:
                print("admission (one new ticket per request):")
                bench_admission(services, root, args)
            if "signin" not in skip:
                print("sign-in storm (argon2id check, two tokens, the refresh token recorded):")
                bench_signin(services, args)
            if "decisions" not in skip:
                print(f"worker decisions ({args.decision_tickets:,} tickets, {args.decision_stock:,} units):")
                bench_decisions(redis_url, args)
            if "polls" not in skip:
                print("status polls (O(1): the position comes from two counters):")
                bench_polls(services, redis_url, root, args)
        if "fresh" not in skip:
            # After the first system has stopped: users' `flashsale run`, alone on the machine.
            print(f"flashsale run as users start it: bursts of {args.burst} shoppers pressing Buy once, "
                  "each on a fresh connection:")
            bench_fresh_connections(root, args)
        if "relay" not in skip:
            # After the first system has stopped, like the capacity part.
            print("development run (flashsale run): its supervisor relays every line the processes write:")
            bench_relay(root, args)
        if "capacity" not in skip:
            # After the first system has stopped: one system at a time on the machine.
            print("capacity: sale data on a local 3-shard Redis Cluster (flashsale run --redis-cluster), "
                  "Celery held still:")
            bench_capacity(root, args)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average {load} at the end")


if __name__ == "__main__":
    main()
