"""What a sale's proof-of-work costs the API (`python -m loadtests.bench_challenge`): prints
figures, asserts nothing.

1. Checking one ALTCHA solution: the altcha library's verify_solution_v1 alone, and
   entry_challenge.verify (the library's check plus the sale and expiry of the salt), CPU us.
2. One admission in the API's own process (the WSGI app in-process, a throw-away Redis and
   MongoDB; the test client's own overhead is in every figure alike), CPU us per request:
   `{"quantity": 1}` to a sale without a challenge, and `{"quantity": 1, "altcha": ...}` to a
   sale with one, each through the admission fast path and through Flask.
3. A browser's share: how long this machine's Python takes to solve a challenge of the
   configured size (the widget's Web Crypto workers differ; see the docs' figures).

Every admission is a new shopper (tokens minted with the API's key), so each issues a ticket.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import altcha
from werkzeug.test import Client

from common.development import embedded
from common.development.ports import free_port, wait_for_port
from common.flash_sale import entry_challenge, lobby, sale_keys
from common.platform.clients import Clients
from common.platform.lua_scripts import scripts_for
from common.platform.settings import load_settings
from loadtests.shop import mint_access_token


def cpu_us_per_call(calls: list[Callable[[], Any]]) -> float:
    started = time.process_time()
    for call in calls:
        call()
    return (time.process_time() - started) / len(calls) * 1e6


def solved_payload(challenge: dict[str, Any]) -> str:
    solution = altcha.solve_challenge_v1(challenge["challenge"], challenge["salt"],
                                         challenge["algorithm"], challenge["maxnumber"])
    assert solution is not None
    return altcha.PayloadV1(challenge["algorithm"], challenge["challenge"], solution.number,
                            challenge["salt"], challenge["signature"]).to_base64()


def load_sale(clients: Clients, *, challenge: bool, stock: int) -> str:
    sale_id = sale_keys.new_sale_id()
    now = int(time.time() * 1000)
    scripts_for(clients.sales_redis).load_sale(
        keys=[sale_keys.config_key(sale_id), sale_keys.counters_key(sale_id)],
        args=[sale_id, stock, now - 1000, now + 3_600_000, 1, 300, 100, "USD", "prd_bench",
              int(time.time()) + 86_400, 0, "", lobby.new_seed().hex(), "0",
              "1" if challenge else "0", "0"])
    return sale_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--verifications", type=int, default=20_000)
    parser.add_argument("--admissions", type=int, default=2_000)
    parser.add_argument("--solves", type=int, default=20)
    args = parser.parse_args()

    key = "bench-" + "k" * 32
    sale = "sal_0123456789abcdef"
    settings_max = load_settings(app_env="development").altcha_max_number
    payloads = [solved_payload(entry_challenge.new_challenge(sale, key, max_number=2_000, ttl_seconds=600))
                for _ in range(200)]
    rounds = [payloads[i % len(payloads)] for i in range(args.verifications)]
    library = cpu_us_per_call([partial(altcha.verify_solution_v1, p, key) for p in rounds])
    ours = cpu_us_per_call([partial(entry_challenge.verify, p, sale, key) for p in rounds])
    print(f"1. one solution checked: altcha.verify_solution_v1 {library:.1f} us CPU, "
          f"entry_challenge.verify {ours:.1f} us CPU (budget 50 us)")

    with tempfile.TemporaryDirectory() as root:
        redis_url = f"redis://127.0.0.1:{free_port()}/0"
        mongo_uri = f"mongodb://127.0.0.1:{free_port()}/"
        servers = [subprocess.Popen(embedded.redis_command(redis_url, Path(root) / "redis"),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
                   subprocess.Popen(embedded.mongodb_command(mongo_uri, Path(root) / "mongo",
                                                             Path(root) / "run"),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
        try:
            for url in (redis_url, mongo_uri):
                wait_for_port("127.0.0.1", embedded.port_of(url), timeout=30)
            measure_admissions(args, redis_url, mongo_uri + "bench_challenge", Path(root))
        finally:
            for server in servers:
                server.terminate()
                server.wait(10)

    times = []
    for _ in range(args.solves):
        made = entry_challenge.new_challenge(sale, key, max_number=settings_max, ttl_seconds=600)
        started = time.perf_counter()
        solved_payload(made)
        times.append(time.perf_counter() - started)
    print(f"3. solving a challenge of ALTCHA_MAX_NUMBER={settings_max:,} in this Python: "
          f"median {statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms "
          f"over {args.solves}")


def measure_admissions(args: argparse.Namespace, redis_url: str, mongo_uri: str, root: Path) -> None:
    from api.app import create_app

    settings = load_settings(app_env="test", redis_url=redis_url, mongodb_uri=mongo_uri,
                             jwt_secret_key="bench-secret-" + "x" * 32, var_dir=root / "var",
                             log_format="text", admission_rate_limit="1000000 per second",
                             stripe_secret_key="sk_test_bench", stripe_webhook_secret="whsec_bench",
                             stripe_emulator=True)
    clients = Clients(settings)
    app = create_app(settings, clients)
    key = entry_challenge.hmac_key(settings)
    through = {"fast path": Client(app), "Flask": Client(app.wsgi_app.app)}  # type: ignore[attr-defined]
    count = args.admissions
    figures: dict[str, float] = {}
    for label, client in through.items():
        for challenge in (False, True):
            sale_id = load_sale(clients, challenge=challenge, stock=count * 2)
            tokens = [mint_access_token(settings.jwt_secret(), f"usr_bench{i:08d}", ttl=3600)
                      for i in range(count)]
            bodies: list[dict[str, Any]] = [{"quantity": 1}] * count
            if challenge:
                bodies = [{"quantity": 1, "altcha": solved_payload(entry_challenge.new_challenge(
                    sale_id, key, max_number=2_000, ttl_seconds=600))} for _ in range(count)]

            def call(token: str, body: dict[str, Any], sale_id: str = sale_id,
                     client: Client = client) -> None:
                answer = client.post(f"/api/sales/{sale_id}/tickets", json=body,
                                     headers={"Authorization": f"Bearer {token}"})
                assert answer.status_code == 202, answer.get_data(as_text=True)

            warm = count // 10
            for token, body in zip(tokens[:warm], bodies[:warm], strict=True):
                call(token, body)
            name = f"{'with' if challenge else 'without'} a challenge, {label}"
            figures[name] = cpu_us_per_call([partial(call, t, b) for t, b in
                                             zip(tokens[warm:], bodies[warm:], strict=True)])
    print(f"2. one admission, API CPU in-process ({count - count // 10:,} each):")
    for name, value in figures.items():
        print(f"   {name}: {value:.0f} us")
    clients.close()


if __name__ == "__main__":
    main()
