"""`flashsale loadtest`: one load test against a running system, end to end.

As the admin it creates a product and a sale; it gets the shoppers' accounts (kept from
earlier runs or registered through the API); it runs the shoppers (locust headless, or the
compact gevent driver of the surge) as a subprocess; it waits until every ticket is decided
(and paid, in pay mode); then it runs the verifier and prints one summary. Everything of a run
is kept under loadtests/results/<timestamp>-<scenario>/: locust's CSV and HTML, the admissions
log, the chart, the summary. The exit status is non-zero when an invariant fails.

Shoppers arrive one of two ways (`--arrival`). `lobby` (the surge's default): the sale's lobby
is open from its creation and it starts `--lobby-window` seconds later; shoppers arrive spread
over that window, join the lobby, and wait for their drawn place and the result, as people do
when a drop is announced; the summary adds how long after `starts_at` every lobby ticket had its
place and the lobby's admission latency. `opening`: a sale without a lobby that opens a few
seconds ahead, every shopper pressing Buy within `--arrival-window` of the opening (the
millisecond race the lobby replaces).
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common.platform.settings import PROJECT_ROOT
from loadtests import charts
from loadtests.lobby_watch import LobbyWatch, lobby_admissions
from loadtests.monitor import MemoryGrowth, RssSampler, StatsSampler
from loadtests.shop import AccountPool, Operator, pool_path, write_accounts
from loadtests.ticket_stream import is_leaver
from loadtests.verify import Check, Ticket, VerifyReport, clients_for, load_services, verify_sale

RESULTS_DIR = PROJECT_ROOT / "loadtests" / "results"
LOCUSTFILE = Path(__file__).with_name("locustfile.py")
ADMISSION = "admission"
DECISION_TARGET_MS = 2000
SOAK_PER_USER_LIMIT = 100
LOBBY_WINDOW_S = 60.0
# Lobby arrivals end this long before the start, so that every one of them is in the lobby.
LOBBY_LAST_ARRIVAL_S = 1.0
# The leavers scenario: presence on at its shortest, and lobby arrivals that end this long
# before the opening, so a leaver has been away longer than the timeout when its turn comes.
LEAVERS_PRESENCE_TIMEOUT_S = 15
LEAVERS_JOIN_EARLY_S = LEAVERS_PRESENCE_TIMEOUT_S + 10
LEAVERS_LOBBY_WINDOW_S = LEAVERS_JOIN_EARLY_S + 5.0
GOT_A_UNIT = frozenset({"reserving", "reserved", "settling", "paid", "expired"})


def parse_duration(text: str) -> float:
    """'30s', '10m', '1h30m', '90' (seconds) -> seconds."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 10m, 1h30m)")
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


@dataclass
class LoadTestOptions:
    users: int = 200
    stock: int | None = None
    spawn_rate: float | None = None
    duration: str | None = None
    pay: bool = False
    scenario: str = "shoppers"
    soak: bool = False
    services: Path = PROJECT_ROOT / "var" / "run" / "services.json"
    admin_email: str = "admin@example.com"
    admin_password: str = ""
    results_dir: Path = RESULTS_DIR
    arrival_window: float | None = None
    # Seconds a shopper takes to type a card before paying (MIN,MAX): a person, not a script.
    card_entry: str = "3,8"
    open_in: float = 5.0
    reservation_ttl: int = 300
    settle_timeout: float | None = None
    register_concurrency: int = 8
    connections: int = 1000
    # How shoppers follow their ticket: its event stream ("sse") or polling ("poll").
    updates: str = "sse"
    # Fraction of shoppers who leave once queued, for good (presence on; see resolved()).
    leavers: float = 0.0
    # "lobby" (shoppers arrive over the lobby window) or "opening" (no lobby, all at the opening).
    arrival: str | None = None
    lobby_window: float | None = None
    # Seconds before the opening the first arrival may come (the driver's --join-early).
    join_early: float = 0.0

    @property
    def run_time(self) -> str:
        return self.duration or "2m"

    def resolved(self) -> LoadTestOptions:
        """Scenario defaults: the surge is 10,000 shoppers for 500 units, arriving over a 60 s
        lobby (or, with arrival "opening", within 5 s of the opening). Leavers need the lobby."""
        made = LoadTestOptions(**asdict(self))
        made.arrival = made.arrival or ("lobby" if made.scenario == "surge" or made.leavers > 0
                                        else "opening")
        if made.scenario == "surge":
            made.users = made.users if made.users != 200 else 10_000
            made.stock = made.stock or 500
            if made.arrival == "opening":
                made.arrival_window = made.arrival_window if made.arrival_window is not None else 5.0
        made.stock = made.stock or (made.users * SOAK_PER_USER_LIMIT if made.soak else 100)
        if made.arrival == "lobby":
            last = LEAVERS_JOIN_EARLY_S if made.leavers > 0 else LOBBY_LAST_ARRIVAL_S
            window = made.lobby_window or (LEAVERS_LOBBY_WINDOW_S if made.leavers > 0 else LOBBY_WINDOW_S)
            made.lobby_window = max(window, last + 1.0)
            # Arrivals spread over the window, from its start until `last` seconds before the start.
            made.open_in = made.join_early = made.lobby_window
            made.arrival_window = made.lobby_window - last
        else:
            made.lobby_window = None
        made.arrival_window = made.arrival_window if made.arrival_window is not None else 1.0
        # The surge's backlog takes minutes to drain on a small machine; a soak is a soak.
        made.duration = made.duration or ("10m" if made.soak else "5m" if made.scenario == "surge"
                                          else "2m")
        made.spawn_rate = made.spawn_rate or float(made.users)
        return made


@dataclass
class Latency:
    requests: int = 0
    p50: float = math.nan
    p95: float = math.nan
    p99: float = math.nan
    max: float = math.nan

    def describe(self) -> str:
        return (f"p50 {self.p50:.0f} ms, p95 {self.p95:.0f} ms, p99 {self.p99:.0f} ms, "
                f"max {self.max:.0f} ms ({self.requests} requests)")


@dataclass
class RunSummary:
    scenario: str
    sale_id: str
    results: Path
    options: dict[str, Any]
    accounts: str = ""
    issued: int = 0
    reserved: int = 0
    sold_out: int = 0
    sold_out_at_door: int = 0
    paid: int = 0
    requests: int = 0
    failed_requests: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    admission: Latency = field(default_factory=Latency)
    open_to_last_decision_s: float = math.nan
    decision: Latency = field(default_factory=Latency)
    undecided: int = 0
    checks: list[Check] = field(default_factory=list)
    memory: list[MemoryGrowth] = field(default_factory=list)
    chart: str = ""
    driver_exit: int = 0
    # The lobby (arrival "lobby"): its size, when every ticket of it had its place, counted
    # from starts_at (NaN when never seen), and the latency of the admissions sent before it.
    lobby_size: int = 0
    lobby_placed_after_s: float = math.nan
    lobby_admission: Latency = field(default_factory=Latency)
    # A beacon draw: its round's time after starts_at (NaN for the committed seed alone).
    draw_after_s: float = math.nan
    load_before: str = ""
    load_after: str = ""

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def targets(self) -> list[tuple[str, bool]]:
        found = [
            ("no failed requests", self.failed_requests == 0),
            ("admission p95 < 100 ms", self.admission.p95 < 100),
            ("admission p99 < 200 ms", self.admission.p99 < 200),
            ("every ticket decided within 2 s of admission (or the start, or a beacon draw's round)",
             self.undecided == 0 and self.decision.max <= DECISION_TARGET_MS),
        ]
        found += [(f"{m.group} memory growth < 10%", m.stable) for m in self.memory
                  if m.group in ("api", "worker")]
        return found

    def lobby_rows(self) -> list[tuple[str, str]]:
        if self.options["arrival"] != "lobby":
            return []
        placed = (f"every lobby ticket had its place {self.lobby_placed_after_s:.2f} s after starts_at"
                  if not math.isnan(self.lobby_placed_after_s) else "not seen placed")
        if not math.isnan(self.draw_after_s):
            placed += f" (its beacon round was due {self.draw_after_s:.2f} s after starts_at)"
        return [("lobby", f"{self.lobby_size} tickets joined; {placed}"),
                ("lobby admission latency", self.lobby_admission.describe())]

    def render(self) -> str:
        opts = self.options
        mode = ("pay" if opts["pay"] else "reserve only") + f", updates over {opts['updates']}"
        if opts["leavers"]:
            mode += f", {opts['leavers']:.2f} of them leave once queued (presence on)"
        if opts["arrival"] == "lobby":
            mode += (f", arriving over the {opts['lobby_window']:g} s lobby (until "
                     f"{opts['lobby_window'] - opts['arrival_window']:g} s before the opening)")
        else:
            mode += f", pressing Buy within {opts['arrival_window']:g} s of the opening (no lobby)"
        head = (f"{self.scenario}: {opts['users']} shoppers for {opts['stock']} units, {mode}"
                f"{', soak ' + opts['duration'] if opts['soak'] else ''}; sale {self.sale_id}")
        rows = [
            ("shopper accounts", self.accounts),
            ("tickets issued", f"{self.issued}"),
            ("reserved", f"{self.reserved} tickets got a reservation"),
            ("sold out", f"{self.sold_out} tickets decided sold_out, {self.sold_out_at_door} "
                         "admissions answered 410 sold_out"),
            ("paid", f"{self.paid}"),
            ("failed requests", f"{self.failed_requests} of {self.requests} (expected sold-out "
                                f"answers are not failures)" +
             ("" if not self.failures else "  " + "; ".join(
                 f"{k}: {v}" for k, v in sorted(self.failures.items(), key=lambda kv: -kv[1])[:5]))),
            ("admission latency", self.admission.describe()),
            *self.lobby_rows(),
            ("sale open -> last decision", f"{self.open_to_last_decision_s:.2f} s"),
            ("admission -> decision", self.decision.describe().replace("requests", "tickets")
             + (f", {self.undecided} never decided" if self.undecided else "")
             + ((", a lobby ticket's from the beacon round's time" if not math.isnan(self.draw_after_s)
                 else ", a lobby ticket's from starts_at") if opts["arrival"] == "lobby" else "")),
        ]
        width = max(len(name) for name, _ in rows)
        lines = [f"flashsale loadtest: {head}", f"  results: {self.results}",
                 f"  machine: {os.cpu_count()} CPUs, load average {self.load_before} before the "
                 f"shoppers, {self.load_after} after"]
        lines += [f"  {name.ljust(width)}  {value}" for name, value in rows]
        for growth in self.memory:
            lines.append(f"  {('RSS ' + growth.group).ljust(width)}  {growth.baseline_mb:.1f} MB after "
                         f"warm-up -> {growth.last_mb:.1f} MB ({growth.growth_percent:+.1f}%, peak "
                         f"{growth.peak_mb:.1f} MB, first {growth.first_mb:.1f} MB)")
        lines.append("  invariants and run checks")
        lines += [f"    {check.line()}" for check in self.checks]
        lines.append("  targets (reported, not part of the exit status)")
        lines += [f"    {'MET   ' if ok else 'MISSED'}  {name}" for name, ok in self.targets()]
        if self.chart:
            lines.append(f"  chart: {self.chart}")
        lines.append(f"  RESULT: {'PASS' if self.passed else 'FAIL'}")
        return "\n".join(lines)


# ------------------------------------------------------------------ locust results


def locust_figures(csv_prefix: Path) -> tuple[Latency, int, int, dict[str, int]]:
    """Admission latency, total requests, failed requests and failures by kind."""
    latency = Latency()
    requests = failed = 0
    stats_path = csv_prefix.with_name(csv_prefix.name + "_stats.csv")
    if stats_path.exists():
        with stats_path.open() as source:
            for row in csv.DictReader(source):
                if row["Name"] == ADMISSION:
                    latency = Latency(int(row["Request Count"]), float(row["50%"]), float(row["95%"]),
                                      float(row["99%"]), float(row["Max Response Time"]))
                if row["Name"] == "Aggregated":
                    requests, failed = int(row["Request Count"]), int(row["Failure Count"])
    failures: dict[str, int] = {}
    exceptions_path = csv_prefix.with_name(csv_prefix.name + "_exceptions.csv")
    if exceptions_path.exists():
        with exceptions_path.open() as source:
            for row in csv.DictReader(source):
                failed += int(row["Count"])
                requests += int(row["Count"])
                key = f"exception: {row['Message'][:120]}"
                failures[key] = failures.get(key, 0) + int(row["Count"])
    failures_path = csv_prefix.with_name(csv_prefix.name + "_failures.csv")
    if failures_path.exists():
        with failures_path.open() as source:
            for row in csv.DictReader(source):
                key = f"{row['Method']} {row['Name']}: {row['Error'][:120]}"
                failures[key] = failures.get(key, 0) + int(row["Occurrences"])
    return latency, requests, failed, failures


def latency_of(values: list[float]) -> Latency:
    if not values:
        return Latency()
    return Latency(len(values), charts.percentile(values, 0.50), charts.percentile(values, 0.95),
                   charts.percentile(values, 0.99), max(values))


# ------------------------------------------------------------------ the run


def _drivers_env(options: LoadTestOptions, services: dict[str, Any], sale: dict[str, Any],
                 accounts_file: Path, out: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "LOADTEST_SALE_ID": sale["id"],
        "LOADTEST_ACCOUNTS": str(accounts_file),
        "LOADTEST_STRIPE_API_BASE": services.get("stripe_api_base", ""),
        "LOADTEST_ARRIVAL_WINDOW": str(options.arrival_window),
        "LOADTEST_CARD_ENTRY": options.card_entry,
        "LOADTEST_ADMISSIONS_LOG": str(out / "admissions.csv"),
        "LOADTEST_OUTCOMES": str(out / "outcomes.json"),
        "LOADTEST_QUIT_WHEN_DONE": "false" if options.soak else "true",
        "LOADTEST_PAY": "true" if options.pay else "false",
        "LOADTEST_LOOP": "true" if options.soak else "false",
        "LOADTEST_UPDATES": options.updates,
        "LOADTEST_LEAVERS": str(options.leavers),
        "LOADTEST_LEAVERS_FILE": str(out / "leavers.json"),
        "LOADTEST_JOIN_EARLY": str(options.join_early),
        "PYTHONUNBUFFERED": "1",
    })
    return env


def _locust_command(options: LoadTestOptions, base: str, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
        "--users", str(options.users), "--spawn-rate", str(options.spawn_rate),
        # locust's clock starts now; the shoppers' --duration counts from the opening.
        "--run-time", f"{parse_duration(options.run_time) + options.open_in:.0f}s",
        "--host", base, "--csv", str(out / "locust"),
        "--csv-full-history", "--html", str(out / "report.html"), "--only-summary",
        "--stop-timeout", "10", "--loglevel", "WARNING",
    ]


def _surge_command(options: LoadTestOptions, services: dict[str, Any], sale: dict[str, Any],
                   accounts_file: Path, out: Path) -> list[str]:
    command = [sys.executable, "-m", "loadtests.surge", "--host", str(services["api"]),
               "--out", str(out), "--sale-id", sale["id"], "--accounts", str(accounts_file),
               "--arrival-window", str(options.arrival_window),
               "--connections", str(options.connections),
               "--run-time", str(parse_duration(options.run_time)),
               "--updates", options.updates, "--leavers", str(options.leavers),
               "--join-early", str(options.join_early)]
    if options.pay:
        command += ["--pay", "--stripe-api-base", str(services.get("stripe_api_base", ""))]
    return command


def _load_average() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def lobby_redis(services: dict[str, Any]) -> Any:
    """A Redis client of its own for the lobby watch (it polls every 20 ms from the opening)."""
    from common.platform.clients import make_redis

    return make_redis(services["redis"], socket_timeout=30)


def _settled(stats: dict[str, Any], pay: bool) -> bool:
    decided = stats.get("queued", 1) == 0
    if not pay:
        return bool(decided)
    return bool(decided and stats.get("reserved", 1) == 0 and stats.get("sold") == stats.get("orders"))


def run_loadtest(options: LoadTestOptions, echo: Callable[[str], None] = print) -> RunSummary:
    options = options.resolved()
    duration_s = parse_duration(options.run_time)
    services = load_services(options.services)
    base = str(services["api"]).rstrip("/")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = options.results_dir / f"{stamp}-{options.scenario}{'-soak' if options.soak else ''}"
    out.mkdir(parents=True, exist_ok=True)

    operator = Operator(base, options.admin_email, options.admin_password).sign_in()
    echo(f"loadtest: getting {options.users} shopper accounts (kept ones are refreshed, the rest "
         "registered through the API)")
    pool = AccountPool(base, pool_path(options.results_dir, base), options.register_concurrency)
    accounts, pool_report = pool.take(options.users, progress=lambda m: echo(f"loadtest: {m}"),
                                      valid_for=duration_s + options.open_in + 120)
    if len(accounts) < options.users:
        raise RuntimeError(f"only {len(accounts)} of {options.users} shopper accounts: "
                           f"{pool_report.describe()}")
    accounts_file = out / "accounts.jsonl"
    write_accounts(accounts_file, accounts)
    echo(f"loadtest: accounts ready: {pool_report.describe()}")

    opens = datetime.now(UTC) + timedelta(seconds=options.open_in)
    sale = operator.create_sale(
        stock=options.stock or 100, starts_at=opens,
        lasts=timedelta(seconds=max(3600.0, duration_s * 2 + 600)),
        per_user_limit=SOAK_PER_USER_LIMIT if options.soak else 1,
        reservation_ttl_seconds=options.reservation_ttl,
        presence_timeout_seconds=LEAVERS_PRESENCE_TIMEOUT_S if options.leavers > 0 else 0,
        lobby=options.arrival == "lobby")
    sale_id = sale["id"]
    opened_at = opens.timestamp()
    echo(f"loadtest: sale {sale_id} ({options.stock} units) opens at {opens.isoformat()}; "
         f"results in {out}")

    load_before = _load_average()
    sampler = StatsSampler(operator, sale_id)
    sampler.start()
    watch = LobbyWatch(lobby_redis(services), sale_id, opened_at) if options.arrival == "lobby" else None
    if watch:
        watch.start()
    rss = RssSampler(int(services["pid"])) if options.soak and services.get("pid") else None
    if rss:
        rss.start()
    command = (_surge_command(options, services, sale, accounts_file, out)
               if options.scenario == "surge" else _locust_command(options, base, out))
    env = _drivers_env(options, services, sale, accounts_file, out)
    with (out / "driver.log").open("wb") as log:
        driver = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=log,
                                  stderr=subprocess.STDOUT)
        try:
            driver_exit = driver.wait(timeout=duration_s + options.open_in + 120)
        except subprocess.TimeoutExpired:
            driver.terminate()
            driver_exit = driver.wait(30)
    load_after = _load_average()
    echo(f"loadtest: shoppers finished (driver exit {driver_exit}); waiting for every ticket to settle")

    settle_timeout = options.settle_timeout or 60.0
    deadline = time.monotonic() + settle_timeout
    while time.monotonic() < deadline and not _settled(sampler.latest(), options.pay):
        time.sleep(0.5)
    time.sleep(1.0)  # one more stats sample after the last change
    sampler.stop()
    if watch:
        watch.stop()
        watch.redis.close()
    if rss:
        rss.stop()

    redis_client, mongo = clients_for(services)
    try:
        from common.platform.clients import mongo_database_name

        db = mongo[mongo_database_name(services["mongodb"], "flashsale")]
        stayers = options.users - sum(is_leaver(i, options.leavers) for i in range(options.users))
        expect_sold_out = options.pay and not options.soak and stayers >= (options.stock or 0)
        report = verify_sale(redis_client, db, sale_id, expect_sold_out=expect_sold_out,
                             lowest_available_seen=sampler.lowest("available"))
    finally:
        redis_client.close()
        mongo.close()

    summary = summarise(options, sale_id, out, report, pool_report.describe(), driver_exit,
                        draw_at_ms=beacon_round_ms(base, sale_id))
    summary.load_before, summary.load_after = load_before, load_after
    if rss:
        summary.memory = [g for g in (rss.growth("api"), rss.growth("worker")) if g]
        (out / "rss.json").write_text(json.dumps(rss.samples))
    admissions = charts.read_admissions(out / "admissions.csv")
    if watch:
        summary.lobby_size, summary.lobby_placed_after_s = watch.lobby_size, watch.placed_after_s
        summary.lobby_admission = latency_of(lobby_admissions(admissions, opened_at))
        summary.checks.append(lobby_check(watch))
    try:
        chart = charts.plot_run(
            out / "chart.png", opened_at=opened_at, admissions=admissions, samples=sampler.samples,
            title=f"{options.scenario}: {options.users} shoppers, {options.stock} units, sale {sale_id}")
        summary.chart = str(chart)
    except Exception as exc:  # a chart is a by-product: the summary still stands
        echo(f"loadtest: no chart: {type(exc).__name__}: {exc}")
    (out / "stats.json").write_text(json.dumps(sampler.samples))
    (out / "summary.txt").write_text(summary.render() + "\n")
    return summary


def beacon_round_ms(base: str, sale_id: str) -> int | None:
    """When a beacon draw's round was due (ms), from the sale's public answer; None for a sale
    ordered by its committed seed alone (hmac-sha256-v1)."""
    import requests

    try:
        beacon = requests.get(f"{base}/api/sales/{sale_id}", timeout=10).json()["fairness"].get("beacon")
    except (requests.RequestException, ValueError, KeyError, TypeError, AttributeError):
        return None
    if not beacon:
        return None
    return int((beacon["genesis_time"] + (beacon["round"] - 1) * beacon["period_seconds"]) * 1000)


def summarise(options: LoadTestOptions, sale_id: str, out: Path, report: VerifyReport,
              accounts: str, driver_exit: int, draw_at_ms: int | None = None) -> RunSummary:
    """`draw_at_ms`: a beacon draw's round time; no ticket can be decided before it."""
    audit = report.audit
    counters = audit.counters
    summary = RunSummary(scenario=options.scenario, sale_id=sale_id, results=out,
                         options=asdict(options) | {"services": str(options.services),
                                                    "results_dir": str(options.results_dir)},
                         accounts=accounts, driver_exit=driver_exit)
    summary.checks = list(report.checks)
    if counters:
        summary.issued, summary.sold_out, summary.paid = counters.issued, counters.sold_out, counters.paid
    summary.reserved = sum(1 for t in audit.tickets if t.status in GOT_A_UNIT)
    outcomes_path = out / "outcomes.json"
    outcomes = json.loads(outcomes_path.read_text()) if outcomes_path.exists() else {}
    summary.sold_out_at_door = int(outcomes.get("sold_out_at_door", 0))

    if options.scenario == "surge":
        driver = json.loads((out / "driver.json").read_text()) if (out / "driver.json").exists() else {}
        summary.requests = int(driver.get("requests", 0))
        summary.failed_requests = int(driver.get("failed", 0))
        summary.failures = dict(driver.get("failures", {}))
        summary.admission = latency_of([ms for _, ms, _ in charts.read_admissions(out / "admissions.csv")])
    else:
        summary.admission, summary.requests, summary.failed_requests, summary.failures = \
            locust_figures(out / "locust")

    decided = [t for t in audit.tickets if t.decided_at_ms]
    # Tickets cancelled by their owner while still queued were never decided, rightly.
    summary.undecided = sum(1 for t in audit.tickets if not t.decided_at_ms and t.status != "cancelled")
    if decided:
        summary.open_to_last_decision_s = (max(t.decided_at_ms for t in decided) - audit.starts_at_ms) / 1000
        # A lobby ticket cannot be decided before the start (with a beacon draw, before its
        # round's time): its wait counts from then.
        decisions_from = max(audit.starts_at_ms, draw_at_ms or 0)
        summary.draw_after_s = (decisions_from - audit.starts_at_ms) / 1000 if draw_at_ms else math.nan
        summary.decision = latency_of([float(t.decided_at_ms - max(t.created_at_ms, decisions_from))
                                       for t in decided])
    final_check = Check(
        "every ticket decided" + (" and every reservation paid" if options.pay else ""),
        summary.undecided == 0 and (not options.pay or options.soak or all(
            t.status in ("paid", "sold_out", "abandoned") for t in audit.tickets)),
        f"{summary.undecided} tickets never decided" + (
            f", {sum(1 for t in audit.tickets if t.status not in ('paid', 'sold_out'))} tickets "
            "neither paid nor sold out" if options.pay else ""))
    summary.checks.append(final_check)
    if not options.soak:
        finished = sum(int(n) for n in outcomes.values())
        driver = json.loads((out / "driver.json").read_text()) if (out / "driver.json").exists() else {}
        where = ", ".join(f"{n} {step}" for step, n in driver.get("unfinished", {}).items())
        summary.checks.append(Check(
            "every shopper finished its journey", finished >= options.users,
            f"{finished} of {options.users} journeys finished" + (
                "" if finished >= options.users else
                f" (unfinished: {where or 'unknown'}; --duration {options.duration} ran out, or "
                f"see {out / 'driver.json'})")))
    if options.leavers > 0:
        leavers_path = out / "leavers.json"
        leavers = set(json.loads(leavers_path.read_text())) if leavers_path.exists() else set()
        summary.checks += leaver_checks(audit.tickets, leavers, counters.stock_total if counters else 0)
    if driver_exit not in (0, 1):
        # locust exits 1 when some request failed (reported above); anything else is a crash.
        summary.checks.append(Check("the shoppers' driver ran to the end", False,
                                    f"exit status {driver_exit}: see {out / 'driver.log'}"))
    return summary


def lobby_check(watch: LobbyWatch) -> Check:
    """Every lobby ticket got its place (the lobby closed and lobby_placed reached its size)."""
    placed = not math.isnan(watch.placed_after_s)
    return Check("every lobby ticket got its place", placed,
                 f"{watch.lobby_size} lobby tickets placed {watch.placed_after_s:.2f} s after starts_at"
                 if placed else "the lobby was not seen placed before the run ended")


def leaver_checks(tickets: list[Ticket], leavers: set[str], stock: int) -> list[Check]:
    """The leavers scenario: every leaver's ticket ended `abandoned` (none got a unit), and
    the units went to those who stayed, as long as stayers remained."""
    left = [t for t in tickets if t.id in leavers]
    stayed = [t for t in tickets if t.id not in leavers]
    left_statuses = Counter(t.status for t in left)
    to_stayers = sum(t.quantity for t in stayed if t.status in GOT_A_UNIT)
    wanted = sum(t.quantity for t in stayed)
    abandoned_stayers = sum(1 for t in stayed if t.status == "abandoned")
    return [
        Check("no leaver got a unit", bool(left) and left_statuses == Counter({"abandoned": len(left)}),
              f"{len(left)} leavers' tickets: " + (", ".join(
                  f"{status} {n}" for status, n in sorted(left_statuses.items())) or "none")),
        Check("every unit to a stayer while stayers remain",
              to_stayers == min(stock, wanted) and abandoned_stayers == 0,
              f"{to_stayers} units to {len(stayed)} stayers (wanting {wanted}) of stock {stock}; "
              f"{abandoned_stayers} stayers abandoned"),
    ]
