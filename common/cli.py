"""`flashsale`: the one command line of the project.

`flashsale run` starts the whole system (the Procfile's processes through honcho);
`flashsale serve NAME` is what each Procfile line runs. Operators' commands (create-admin,
reconcile, verify, loadtest) live here too.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import requests

from common.settings import PROJECT_ROOT, settings_or_exit

PROCFILE = PROJECT_ROOT / "Procfile"
EMBEDDED_NAMES = ("redis", "mongodb", "stripe")


def read_procfile(path: Path = PROCFILE) -> dict[str, str]:
    """Procfile lines as {name: command}, in file order."""
    processes: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, _, command = line.partition(":")
        processes[name.strip()] = command.strip()
    return processes


@click.group()
def main() -> None:
    """Flash-sale waiting room: API, workers, beat and their embedded servers."""


# --------------------------------------------------------------------------- run


def _wait_ready(api_url: str, timeout: float, stop: threading.Event) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stop.is_set():
        try:
            if requests.get(f"{api_url}/readyz", timeout=2).status_code == 200:
                return True
        except requests.RequestException:
            pass
        stop.wait(0.3)
    return False


def services_file(var_dir: Path) -> Path:
    return var_dir / "run" / "services.json"


def write_private(path: Path, text: str) -> None:
    """Replace `path` atomically with a file only its owner can read (it holds a secret).

    The mode is given to open(): a file created world-readable and chmod-ed after could be
    opened by another user in between, and would keep being readable through that handle.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)  # O_EXCL below: never write through a file or link left there
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    tmp.replace(path)


@main.command()
@click.option("--ready-timeout", default=120.0, show_default=True, help="Seconds to wait for /readyz.")
@click.option("--demo", is_flag=True, help="Create a demo sale (opening in a minute) if none exists.")
def run(ready_timeout: float, demo: bool) -> None:
    """Start the whole system in the foreground; a process that dies is restarted; Ctrl-C
    stops every process."""
    from common.demo import DEV_ADMIN_EMAIL, dev_admin_password, seed_demo_sale
    from common.embedded import plan_services
    from common.supervisor import ProcfileSupervisor

    settings = settings_or_exit()
    plan = plan_services(dict(os.environ), host=settings.host)
    env = plan.env
    if not env.get("ADMIN_EMAIL") and not settings.is_production:
        # Development: an operator account to open the admin view with, shown when ready.
        env["ADMIN_EMAIL"] = DEV_ADMIN_EMAIL
        env["ADMIN_PASSWORD"] = dev_admin_password(settings.var_dir)
    env["PORT"] = str(settings.port)
    env["VAR_DIR"] = str(settings.var_dir)
    api_url = settings.public_url or f"http://{settings.host}:{settings.port}"
    env.setdefault("PUBLIC_URL", api_url)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"

    supervisor = ProcfileSupervisor()
    for name, command in read_procfile().items():
        if name in EMBEDDED_NAMES and name not in plan.embedded:
            continue
        supervisor.add_process(name, command, env=env, cwd=str(PROJECT_ROOT))

    services_path = services_file(settings.var_dir)
    stop = threading.Event()

    def announce_when_ready() -> None:
        if not _wait_ready(api_url, ready_timeout, stop):
            if not stop.is_set():
                click.echo(f"flashsale: {api_url}/readyz did not turn green in {ready_timeout:.0f}s",
                           err=True)
            return
        services_path.parent.mkdir(parents=True, exist_ok=True)
        services: dict[str, Any] = {
            "api": api_url,
            "redis": env["REDIS_URL"],
            "mongodb": env["MONGODB_URI"],
            "stripe_api_base": env.get("STRIPE_API_BASE") or "https://api.stripe.com",
            "stripe_secret_key": env["STRIPE_SECRET_KEY"],
            "stripe_publishable_key": env.get("STRIPE_PUBLISHABLE_KEY", ""),
            # Local development only: lets tests and load tests sign webhook deliveries.
            "stripe_webhook_secret": (
                env.get("STRIPE_WEBHOOK_SECRET", "") if "stripe" in plan.embedded else ""),
            "embedded": plan.embedded,
            "pid": os.getpid(),
        }
        write_private(services_path, json.dumps(services, indent=2))
        click.echo(f"flashsale: ready at {api_url}  (services in {services_path})", err=True)
        if env.get("ADMIN_EMAIL") == DEV_ADMIN_EMAIL:
            click.echo(f"flashsale: operator login {DEV_ADMIN_EMAIL} / {env['ADMIN_PASSWORD']}", err=True)
        if demo:
            try:
                sale_id = seed_demo_sale(api_url, env["ADMIN_EMAIL"], env.get("ADMIN_PASSWORD", ""))
            except requests.RequestException as exc:
                click.echo(f"flashsale: demo sale not created: {exc}", err=True)
            else:
                if sale_id:
                    click.echo(f"flashsale: demo sale opening in a minute at {api_url}/sales/{sale_id}",
                               err=True)

    watcher = threading.Thread(target=announce_when_ready, daemon=True)
    click.echo(f"flashsale: starting at {api_url} (embedded: {', '.join(plan.embedded) or 'none'})",
               err=True)
    watcher.start()
    try:
        code = supervisor.loop()
    finally:
        stop.set()
        services_path.unlink(missing_ok=True)
    sys.exit(code)


# --------------------------------------------------------------------------- serve


def _exec(argv: list[str]) -> None:
    sys.stdout.flush()
    os.execvp(argv[0], argv)


def _supervise(name: str, argv: list[str], port: int,
               after_start: Callable[[], None] | None = None, quiet: bool = False) -> None:
    """Run an embedded server as a child and restart it if it dies on its own.

    A killed embedded Redis comes back (with its AOF data) while the API keeps running and
    reports 503 meanwhile; Ctrl-C or SIGTERM stops the child and this wrapper for good.
    """
    from common.ports import wait_for_port
    from common.supervisor import describe_exit, restart_delay

    stopping = threading.Event()
    child: subprocess.Popen | None = None

    def forward(signum: int, _frame: object) -> None:
        stopping.set()
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    backoff = 0.5  # so a first quick death waits 1 s
    while not stopping.is_set():
        # quiet: the server logs every command to its own log file already.
        child = subprocess.Popen(argv, stdout=subprocess.DEVNULL if quiet else None,
                                 stderr=subprocess.DEVNULL if quiet else None)
        if wait_for_port("127.0.0.1", port, timeout=30) and after_start and not stopping.is_set():
            after_start()
        started = time.monotonic()
        code = child.wait()
        if stopping.is_set():
            sys.exit(0)
        backoff = restart_delay(backoff, time.monotonic() - started)
        click.echo(f"{name}: exited with {describe_exit(code)}; restarting in {backoff:.1f}s", err=True)
        stopping.wait(backoff)
    sys.exit(0)


@main.command()
@click.argument("name", type=click.Choice(["api", "worker", "decider", "beat", *EMBEDDED_NAMES]))
def serve(name: str) -> None:
    """Run one process of the system (what each Procfile line calls)."""
    from common import embedded

    settings = settings_or_exit()
    var = settings.var_dir
    if name == "redis":
        url = settings.require("redis_url")
        _supervise(name, embedded.redis_command(url, var / "redis"), embedded.port_of(url))
    elif name == "mongodb":
        uri = settings.require("mongodb_uri")
        _supervise(name, embedded.mongodb_command(uri, var / "mongodb", var / "run"),
                   embedded.port_of(uri), quiet=True)
    elif name == "stripe":
        api_base = settings.require("stripe_api_base")
        public = settings.public_url or f"http://{settings.host}:{settings.port}"
        webhook_url = f"{public}/api/webhooks/stripe"
        secret = settings.require("stripe_webhook_secret")
        # The emulator forgets its webhooks when it restarts: register after every start.
        _supervise(name, embedded.stripe_command(api_base), embedded.port_of(api_base),
                   after_start=lambda: embedded.register_stripe_webhook(api_base, webhook_url, secret))
    elif name == "api":
        # gunicorn runs several processes: prometheus_client aggregates them through files.
        # Wiped at start, as prometheus_client asks: old processes' files would be counted.
        metrics_dir = var / "run" / "prometheus"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True, exist_ok=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        _exec([
            embedded._venv_script("gunicorn"), "--worker-class", "gevent",
            "--workers", str(settings.web_concurrency), "--worker-connections", "2000",
            "--bind", f"{settings.host}:{settings.port}", "--graceful-timeout", "10",
            "--timeout", "30",
            # Longer than the usual load balancer idle timeout (60 s): otherwise a request sent on
            # a connection the server is just closing is reset.
            "--keep-alive", "75", "--access-logfile", "-",
            "--access-logformat", '%(h)s "%(r)s" %(s)s %(b)s %(M)sms rid=%({x-request-id}o)s',
            "api.app:create_app()",
        ])
    elif name in ("worker", "decider"):
        from common.task_routes import DECISIONS_QUEUE, DEFAULT_QUEUE

        # A worker serves every queue (it is enough alone); a decider only decisions, so
        # tickets are decided even while every worker thread waits on Stripe.
        queues, threads = ((f"{DEFAULT_QUEUE},{DECISIONS_QUEUE}", 8) if name == "worker"
                           else (DECISIONS_QUEUE, 4))
        # Threads pool: one process, so a kill by PID takes the whole worker down at once
        # and leaves its stream entries pending for another worker to claim.
        _exec([
            embedded._venv_script("celery"), "-A", "worker.app", "worker", "--pool", "threads",
            "--queues", queues, "--concurrency", str(threads), "--loglevel", settings.log_level,
            "--without-gossip", "--without-mingle", "-n", f"{name}-{os.getpid()}@%h",
        ])
    elif name == "beat":
        schedule = var / "run" / f"celerybeat-{os.getpid()}"
        schedule.parent.mkdir(parents=True, exist_ok=True)
        _exec([
            embedded._venv_script("celery"), "-A", "worker.app", "beat", "--loglevel",
            settings.log_level, "--schedule", str(schedule),
        ])


@main.command("create-admin")
@click.option("--email", required=True, help="The admin's email.")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              help="Used only when the account is created; prompted for when omitted.")
@click.option("--name", default="Admin", show_default=True)
@click.option("--promote-existing", is_flag=True,
              help="Make an existing customer account with this email an admin (its password "
                   "stays as its owner set it).")
def create_admin(email: str, password: str, name: str, promote_existing: bool) -> None:
    """Create an admin account (idempotent); an existing customer account is promoted only
    with --promote-existing."""
    from common.clients import Clients
    from common.errors import AccountNotAdmin, DomainError
    from common.schema import ensure_schema
    from common.users import Role, ensure_admin, find_by_email, normalise_email

    clients = Clients(settings_or_exit())
    try:
        ensure_schema(clients.db)
        was = find_by_email(clients.db, email)
        user, created = ensure_admin(clients.db, email=email, password=password, name=name,
                                     promote_existing=promote_existing)
    except AccountNotAdmin:
        raise click.ClickException(
            f"{normalise_email(email)} belongs to an existing customer account, which was not "
            "changed. Whoever registered that address would get the admin's rights: if it is "
            "yours, run again with --promote-existing.") from None
    except DomainError as exc:
        fields = exc.details.get("fields", {})
        raise click.ClickException(" ".join([exc.message, *(f"{k}: {' '.join(v)}"
                                                            for k, v in fields.items())])) from None
    finally:
        clients.close()
    if created:
        outcome = "created"
    elif was and was.get("role") != Role.ADMIN:
        outcome = "promoted an existing customer account to admin (its password is unchanged)"
    else:
        outcome = "already an admin"
    click.echo(f"{outcome}: {user['email']} ({user['_id']})")


@main.command()
@click.option("--users", default=200, show_default=True, type=click.IntRange(1),
              help="Shoppers (the surge defaults to 10,000).")
@click.option("--stock", type=click.IntRange(1),
              help="Units on sale [default: 100; surge 500; soak users x 100].")
@click.option("--spawn-rate", type=click.FloatRange(min=0.1),
              help="Shoppers started per second [default: all within a second].")
@click.option("--duration", help="Longest the shoppers may take (30s, 10m, 1h30m); a soak runs "
              "this long [default: 2m; surge 5m; soak 10m].")
@click.option("--arrival-window", type=click.FloatRange(min=0),
              help="Shoppers waiting for the opening press Buy within this many seconds of it "
                   "[default: 1; surge 5].")
@click.option("--pay", is_flag=True, help="Pay every reservation with a test card.")
@click.option("--card-entry", default="3,8", show_default=True, metavar="MIN,MAX",
              help="Seconds a paying shopper takes to type a card (0,0: at once).")
@click.option("--scenario", type=click.Choice(["shoppers", "surge"]), default="shoppers",
              show_default=True, help="surge: 10,000 shoppers within 5 s for 500 units.")
@click.option("--soak", is_flag=True, help="Shoppers start journey after journey; records the "
              "API's and worker's memory every 10 s.")
@click.option("--services", type=click.Path(dir_okay=False, path_type=Path),
              help="services.json of the running system [default: var/run/services.json].")
@click.option("--admin-email", help="[default: ADMIN_EMAIL]")
@click.option("--admin-password", help="[default: ADMIN_PASSWORD]")
@click.option("--results-dir", type=click.Path(file_okay=False, path_type=Path),
              help="[default: loadtests/results]")
def loadtest(users: int, stock: int | None, spawn_rate: float | None, duration: str | None,
             arrival_window: float | None, pay: bool, card_entry: str, scenario: str, soak: bool,
             services: Path | None, admin_email: str | None, admin_password: str | None,
             results_dir: Path | None) -> None:
    """Load-test the running system, verify the sale's invariants, print one summary.

    Exits non-zero when an invariant fails.
    """
    from loadtests.runner import RESULTS_DIR, LoadTestOptions, parse_duration, run_loadtest

    settings = settings_or_exit()
    try:
        parse_duration(duration or "0")
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--duration") from None
    try:
        low, high = (float(part) for part in card_entry.split(","))
        if not 0 <= low <= high:
            raise ValueError
    except ValueError:
        raise click.BadParameter("MIN,MAX seconds, 0 <= MIN <= MAX", param_hint="--card-entry") from None
    options = LoadTestOptions(
        users=users, stock=stock, spawn_rate=spawn_rate, duration=duration,
        arrival_window=arrival_window, pay=pay, card_entry=card_entry, scenario=scenario, soak=soak,
        services=services or services_file(settings.var_dir),
        admin_email=admin_email or settings.admin_email or "",
        admin_password=admin_password or settings.admin_password or "",
        results_dir=results_dir or RESULTS_DIR)
    if not options.admin_email or not options.admin_password:
        raise click.UsageError("the load test signs in as an admin: set ADMIN_EMAIL and "
                               "ADMIN_PASSWORD (or pass --admin-email/--admin-password)")
    try:
        summary = run_loadtest(options, echo=lambda message: click.echo(message, err=True))
    except (FileNotFoundError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(summary.render())
    sys.exit(summary.exit_code)


@main.command()
@click.option("--sale", "sale_id", required=True, help="The sale's id (sal_...).")
@click.option("--services", type=click.Path(dir_okay=False, path_type=Path),
              help="services.json of the running system [default: var/run/services.json].")
@click.option("--sold-out", is_flag=True,
              help="Also require every unit paid for: orders = stock, product stock 0.")
def verify(sale_id: str, services: Path | None, sold_out: bool) -> None:
    """Check a sale's invariants from Redis and MongoDB; exits non-zero on a FAIL."""
    from loadtests.verify import run_verify

    path = services or services_file(settings_or_exit().var_dir)
    try:
        sys.exit(run_verify(sale_id, path, expect_sold_out=sold_out))
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.option("--sale", "sale_id", help="One sale; every sale when omitted.")
@click.option("--no-repair", is_flag=True, help="Report only; change nothing.")
def reconcile(sale_id: str | None, no_repair: bool) -> None:
    """Check available + reserved + sold == stock_total against tickets and orders; repair
    what is provable (a paid ticket whose order is missing). Exit 1 on any drift."""
    from common.clients import Clients
    from common.payments import PaymentContext
    from common.reconcile import reconcile_all, reconcile_sale
    from common.stripe_gateway import StripeGateway

    settings = settings_or_exit()
    clients = Clients(settings)
    ctx = PaymentContext(mongo=clients.mongo, db=clients.db, redis=clients.redis,
                         gateway=StripeGateway(clients.stripe, emulator=settings.stripe_emulator),
                         serialize_transactions=settings.mongodb_serialize_transactions)
    reports = ([reconcile_sale(ctx, sale_id, not no_repair)] if sale_id
               else reconcile_all(ctx, not no_repair))
    for report in reports:
        state = "OK   " if report.consistent else "DRIFT"
        click.echo(f"{state} {report.sale_id}: total={report.stock_total} available={report.available} "
                   f"reserved={report.reserved} sold={report.sold} order_units={report.order_units}"
                   + (f" repaired={len(report.orders_repaired)}" if report.orders_repaired else "")
                   + (f" problems={'; '.join(report.problems)}" if report.problems else ""))
    sys.exit(0 if all(r.consistent for r in reports) else 1)


def shell_join(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


if __name__ == "__main__":
    main()
