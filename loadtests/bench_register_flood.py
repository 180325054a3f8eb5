"""Sign-up flood benchmark (`make bench-register`): prints figures, asserts nothing.

Each sign-up costs an argon2 hash (about 0.1-0.25 s of a core). The question is what a flood of
them does to the shoppers joining a sale on the same API (gunicorn + gevent workers, the real
`flashsale run` system):

1. Admissions alone: distinct signed-in shoppers (tokens minted with the system's key) join
   one sale at a steady rate (open loop, `--rate` per second for `--seconds`); p50/p95/p99.
2. The same admissions while `--flooders` loops register accounts back to back, with the
   register limits raised so that every hash really happens; then admissions alone again, so
   that a change in the machine's load shows. The ratio compares step 2 with both quiet runs.
3. The same flood against a second API process with the default register limits: how many
   sign-ups those limits refuse (all the flood comes from one address here).

The system's Celery processes are held still meanwhile (the decisions are not measured here),
and the load generator shares the machine's cores with what it measures.
"""

from __future__ import annotations

if __name__ == "__main__":
    from gevent import monkey

    monkey.patch_all()

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gevent
import requests
from gevent.event import Event
from gevent.pool import Pool

from common.development.ports import free_port, wait_for_port
from common.platform.settings import PROJECT_ROOT, Settings
from loadtests.charts import percentile
from loadtests.gevent_http import JsonClient
from loadtests.shop import PASSWORD, Operator, mint_access_token
from loadtests.system import ADMIN_EMAIL, ADMIN_PASSWORD, celery_held, running_system


class Timings:
    def __init__(self, label: str) -> None:
        self.label = label
        self.ms: list[float] = []
        self.statuses: Counter[str] = Counter()
        self.seconds = 0.0

    def p(self, fraction: float) -> float:
        return percentile(self.ms, fraction) if self.ms else float("nan")

    def line(self) -> str:
        rate = len(self.ms) / self.seconds if self.seconds else 0.0
        return (f"{self.label:<44} {rate:7.1f}/s   p50 {self.p(0.5):7.1f} ms   p95 {self.p(0.95):7.1f} ms"
                f"   p99 {self.p(0.99):7.1f} ms   answers {dict(self.statuses)}")


def paced_admissions(client: JsonClient, sale_id: str, tokens: Iterator[str], rate: float,
                     seconds: float, label: str) -> Timings:
    """One admission by a new shopper every 1/rate s for `seconds` (open loop: a slow answer
    does not slow the arrivals down, as in a real surge)."""
    timings = Timings(label)
    pool = Pool(2000)

    def join(token: str) -> None:
        try:
            answer = client.request("POST", f"/api/sales/{sale_id}/tickets", {"quantity": 1}, token)
        except Exception as exc:
            timings.statuses[type(exc).__name__] += 1
            return
        timings.ms.append(answer.ms)
        timings.statuses[str(answer.status)] += 1

    started = time.perf_counter()
    count = int(rate * seconds)
    for i in range(count):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            gevent.sleep(delay)
        pool.spawn(join, next(tokens))
    pool.join()
    timings.seconds = time.perf_counter() - started
    return timings


@contextmanager
def register_flood(base: str, flooders: int, label: str) -> Iterator[Timings]:
    """`flooders` loops registering new accounts back to back until the block ends."""
    timings = Timings(label)
    client = JsonClient(base, flooders, timeout=120)
    stop = Event()

    def loop() -> None:
        while not stop.is_set():
            body = {"email": f"flood-{secrets.token_hex(8)}@bench.example.com",
                    "password": PASSWORD, "name": "Flood"}
            try:
                answer = client.request("POST", "/api/auth/register", body)
            except Exception as exc:
                timings.statuses[type(exc).__name__] += 1
                continue
            timings.statuses[str(answer.status)] += 1
            if answer.status == 201:  # a flood does not honour Retry-After
                timings.ms.append(answer.ms)

    started = time.perf_counter()
    loops = [gevent.spawn(loop) for _ in range(flooders)]
    try:
        yield timings
    finally:
        stop.set()
        gevent.joinall(loops)
        timings.seconds = time.perf_counter() - started
        client.close()


def _healthy(base: str) -> bool:
    try:
        return requests.get(f"{base}/healthz", timeout=5).status_code == 200
    except requests.RequestException:
        return False


@contextmanager
def second_api(services: dict[str, Any], root: Path, jwt_secret: str,
               web_concurrency: int) -> Iterator[str]:
    """`flashsale serve api` on the system's services with the default register limits."""
    port = free_port()
    defaults = Settings.model_fields
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REGISTER_", "ADMIN_"))}
    env.update({"PORT": str(port), "VAR_DIR": str(root / "var-defaults"), "REDIS_URL": services["redis"],
                "MONGODB_URI": services["mongodb"], "MONGODB_SERIALIZE_TRANSACTIONS": "true",
                "STRIPE_SECRET_KEY": services["stripe_secret_key"],
                "STRIPE_API_BASE": services["stripe_api_base"], "STRIPE_EMULATOR": "true",
                "STRIPE_WEBHOOK_SECRET": services["stripe_webhook_secret"] or "whsec_bench",
                "JWT_SECRET_KEY": jwt_secret, "WEB_CONCURRENCY": str(web_concurrency),
                "LOG_LEVEL": "WARNING"})
    log = (root / "api-defaults.log").open("wb")
    process = subprocess.Popen([str(Path(sys.executable).parent / "flashsale"), "serve", "api"],
                               cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        # Every worker up: a flood sent while they import the app would time their start-up.
        ready = wait_for_port("127.0.0.1", port, timeout=60)
        deadline = time.monotonic() + 60
        while ready and sum(_healthy(base) for _ in range(4 * web_concurrency)) < 4 * web_concurrency:
            if time.monotonic() > deadline:
                ready = False
            gevent.sleep(0.5)
        if not ready:
            raise RuntimeError(f"the second API did not start: see {root / 'api-defaults.log'}")
        print(f"  (register limits: {defaults['register_rate_limit'].default} per address, "
              f"{defaults['register_total_rate_limit'].default} in total)")
        yield base
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="Admission latency under a sign-up flood.")
    parser.add_argument("--rate", type=float, default=100, help="admissions per second")
    parser.add_argument("--seconds", type=float, default=10, help="length of each measurement")
    parser.add_argument("--flooders", type=int, default=16, help="concurrent register loops")
    parser.add_argument("--web-concurrency", type=int, default=2, help="gunicorn workers")
    args = parser.parse_args()
    print(f"sign-up flood benchmark: {os.cpu_count()} CPUs, load average "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())} at the start")
    jwt_secret = secrets.token_hex(32)
    env = {"WEB_CONCURRENCY": str(args.web_concurrency), "JWT_SECRET_KEY": jwt_secret}
    with tempfile.TemporaryDirectory(prefix="flashsale-bench-") as tmp:
        root = Path(tmp)
        # running_system raises the register limits: every sign-up of the flood is hashed.
        with running_system(root, env) as services:
            base = services["api"]
            operator = Operator(base, ADMIN_EMAIL, ADMIN_PASSWORD).sign_in()
            needed = int(args.rate * args.seconds)
            sale_id = operator.create_sale(stock=3 * needed + 1000)["id"]
            tokens = iter([mint_access_token(jwt_secret, f"usr_flood_bench_{i}", ttl=3600)
                           for i in range(3 * needed + 500)])
            api = JsonClient(base, 256)
            with celery_held(services["system_pid"]):
                paced_admissions(api, sale_id, tokens, args.rate, min(3.0, args.seconds), "warm-up")
                with register_flood(base, 2, "warm-up"):
                    gevent.sleep(2)
                before = paced_admissions(api, sale_id, tokens, args.rate, args.seconds,
                                          "admissions alone (before)")
                with register_flood(base, args.flooders,
                                    f"sign-ups ({args.flooders} loops, limits raised)") as flood:
                    flooded = paced_admissions(api, sale_id, tokens, args.rate, args.seconds,
                                               f"admissions with {args.flooders} sign-up loops")
                gevent.sleep(2)  # let the flood's last sign-ups finish
                after = paced_admissions(api, sale_id, tokens, args.rate, args.seconds,
                                         "admissions alone (after)")
            alone = Timings("admissions alone (both)")
            alone.ms, alone.seconds = before.ms + after.ms, before.seconds + after.seconds
            api.close()
            print(f"admission, {args.rate:.0f} new shoppers/s for {args.seconds:.0f} s, "
                  f"{args.web_concurrency} gunicorn gevent workers:")
            for timings in (before, flooded, after):
                print(f"  {timings.line()}")
            print(f"  {flood.line()}")
            print(f"  ratio: admission p95 with the flood is {flooded.p(0.95) / alone.p(0.95):.2f}x "
                  f"the p95 of both quiet runs, {alone.p(0.95):.1f} ms (p50 "
                  f"{flooded.p(0.5) / alone.p(0.5):.2f}x, p99 {flooded.p(0.99) / alone.p(0.99):.2f}x); "
                  f"{len(flood.ms) / flood.seconds:.1f} accounts created per second meanwhile")
            print("the same flood with the default register limits (one address):")
            with second_api(services, root, jwt_secret, args.web_concurrency) as defaults_base, \
                    register_flood(defaults_base, args.flooders, "sign-ups") as limited:
                gevent.sleep(args.seconds)
            tried = sum(limited.statuses.values())
            print(f"  {tried} sign-ups tried in {limited.seconds:.0f} s: {limited.statuses['201']} "
                  f"created, {limited.statuses['429']} throttled (429), "
                  f"others {dict((k, v) for k, v in limited.statuses.items() if k not in ('201', '429'))}")
    print(f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())} at the end")


if __name__ == "__main__":
    main()
