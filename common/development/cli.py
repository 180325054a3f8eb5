"""`flashsale run` and `flashsale embedded NAME`: the development commands, installed with the
`dev` extra and registered with the `flashsale` command line through the `flashsale.commands`
entry points (common/cli.py never imports this package).

`flashsale run` starts the whole system on the embedded servers (the Procfile's processes,
supervised by common/development/supervisor.py); `flashsale embedded NAME` is what the
Procfile's lines for the embedded servers run; `flashsale mail` prints the newest message the
embedded SMTP sink kept.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import requests

# At import, so that without the development extra (honcho) these commands say what is
# missing instead of failing half-way.
from common.development.supervisor import ProcfileSupervisor, describe_exit, restart_delay
from common.platform.files import write_private
from common.platform.settings import PROJECT_ROOT, settings_or_exit

PROCFILE = PROJECT_ROOT / "Procfile"
EMBEDDED_NAMES = ("redis", "mongodb", "stripe", "smtp", "drand")
# The API's listen queue, as api/gunicorn.conf.py's `backlog` (gunicorn does not listen() again
# on a socket it inherits already listening).
API_BACKLOG = 8192


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


def api_listener(host: str, port: int) -> socket.socket:
    """The API's listening socket, made once by `flashsale run` and handed to every gunicorn
    master it starts (LISTEN_FD): while a killed master is restarted, the kernel queues new
    connections on it instead of refusing them (4-5 s of refusals before)."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    try:
        return socket.create_server((host, port), family=family, backlog=API_BACKLOG)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from exc


def services_file(var_dir: Path) -> Path:
    return var_dir / "run" / "services.json"


@click.command()
@click.option("--ready-timeout", default=120.0, show_default=True, help="Seconds to wait for /readyz.")
@click.option("--demo", is_flag=True, help="Create a demo sale (opening in a minute) if none exists.")
@click.option("--redis-cluster", is_flag=True,
              help="Put sale data on a local three-node Redis Cluster (unless REDIS_CLUSTER_NODES is set).")
def run(ready_timeout: float, demo: bool, redis_cluster: bool) -> None:
    """Start the whole system in the foreground; a process that dies is restarted; Ctrl-C
    stops every process."""
    from common.development.demo import DEV_ADMIN_EMAIL, dev_admin_password, seed_demo_sale
    from common.development.embedded import plan_services

    settings = settings_or_exit()
    plan = plan_services(dict(os.environ), host=settings.host, var_dir=settings.var_dir,
                         production=settings.is_production)
    env = plan.env
    if not env.get("ADMIN_EMAIL") and not settings.is_production:
        # Development: an operator account to open the admin view with, shown when ready.
        env["ADMIN_EMAIL"] = DEV_ADMIN_EMAIL
        env["ADMIN_PASSWORD"] = dev_admin_password(settings.var_dir)
    if "smtp" in plan.embedded and not settings.is_production:
        # The shop's mailbox page shows the sink's messages: verifying takes one click.
        env.setdefault("DEV_MAILBOX", "true")
    env["PORT"] = str(settings.port)
    # Every access log line crosses this process's relay: one in twenty is plenty locally.
    env.setdefault("ACCESS_LOG_SAMPLE_RATE", "0.05")
    env["VAR_DIR"] = str(settings.var_dir)
    api_url = settings.public_url or f"http://{settings.host}:{settings.port}"
    env.setdefault("PUBLIC_URL", api_url)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"

    listener = api_listener(settings.host, settings.port)  # before anything that needs stopping
    cluster = None
    if redis_cluster and not env.get("REDIS_CLUSTER_NODES"):
        from common.development.cluster import LocalCluster

        # Started here, stopped when the run ends; a shard that dies is not restarted.
        cluster = LocalCluster(settings.var_dir / "redis-cluster").start()
        env["REDIS_CLUSTER_NODES"] = cluster.nodes_setting
        plan.embedded.append("redis-cluster")

    supervisor = ProcfileSupervisor()
    for name, command in read_procfile().items():
        if name in EMBEDDED_NAMES and name not in plan.embedded:
            continue
        if name == "api":
            supervisor.add_process(name, command, env={**env, "LISTEN_FD": str(listener.fileno())},
                                   cwd=str(PROJECT_ROOT), pass_fds=(listener.fileno(),))
        else:
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
            "redis_cluster_nodes": env.get("REDIS_CLUSTER_NODES", ""),
            "mongodb": env["MONGODB_URI"],
            "stripe_api_base": env.get("STRIPE_API_BASE") or "https://api.stripe.com",
            "stripe_secret_key": env["STRIPE_SECRET_KEY"],
            "stripe_publishable_key": env.get("STRIPE_PUBLISHABLE_KEY", ""),
            "smtp": env["SMTP_URL"],
            "mail_dir": str(settings.var_dir / "mail") if "smtp" in plan.embedded else "",
            "drand": env.get("DRAND_URLS", ""),
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
        listener.close()
        if cluster is not None:
            cluster.stop()
    sys.exit(code)


def _supervise(name: str, argv: list[str], port: int,
               after_start: Callable[[], None] | None = None, quiet: bool = False) -> None:
    """Run an embedded server as a child and restart it if it dies on its own.

    A killed embedded Redis comes back (with its AOF data) while the API keeps running and
    reports 503 meanwhile; Ctrl-C or SIGTERM stops the child and this wrapper for good.
    """
    from common.development.ports import wait_for_port

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


@click.command()
@click.argument("name", type=click.Choice(EMBEDDED_NAMES))
def embedded(name: str) -> None:
    """Run one embedded server, restarted when it dies (what the Procfile's lines call)."""
    from common.development import embedded as servers

    settings = settings_or_exit()
    var = settings.var_dir
    if name == "redis":
        url = settings.require("redis_url")
        _supervise(name, servers.redis_command(url, var / "redis"), servers.port_of(url))
    elif name == "smtp":
        from common.development.smtp_sink import smtp_command

        url = settings.require("smtp_url")
        _supervise(name, smtp_command(url, var / "mail"), servers.port_of(url))
    elif name == "drand":
        from common.development.drand_beacon import beacon_command

        if len(settings.drand_urls) != 1:
            raise click.ClickException("the embedded beacon serves one DRAND_URLS address")
        url = settings.drand_urls[0]
        _supervise(name, beacon_command(url, var / "drand"), servers.port_of(url))
    elif name == "mongodb":
        uri = settings.require("mongodb_uri")
        _supervise(name, servers.mongodb_command(uri, var / "mongodb", var / "run"),
                   servers.port_of(uri), quiet=True)
    else:
        api_base = settings.require("stripe_api_base")
        public = settings.public_url or f"http://{settings.host}:{settings.port}"
        webhook_url = f"{public}/api/webhooks/stripe"
        secret = settings.require("stripe_webhook_secret")
        # The emulator forgets its webhooks when it restarts: register after every start.
        _supervise(name, servers.stripe_command(api_base), servers.port_of(api_base),
                   after_start=lambda: servers.register_stripe_webhook(api_base, webhook_url, secret))


@click.command()
@click.option("--list", "list_all", is_flag=True, help="List every kept message instead, oldest first.")
def mail(list_all: bool) -> None:
    """Print the newest message the embedded SMTP sink kept (var/mail/)."""
    from common.development.smtp_sink import message_paths, read_message

    directory = settings_or_exit().var_dir / "mail"
    paths = message_paths(directory)
    if not paths:
        raise click.ClickException(f"no mail in {directory} yet")
    if list_all:
        for path in paths:
            message = read_message(path)
            click.echo(f"{path.name}  {message['To']}  {message['Subject']}")
        return
    click.echo(paths[-1].read_bytes().decode("utf-8", errors="replace"), nl=False)
