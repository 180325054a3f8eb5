"""A throw-away system for the benchmark: `flashsale run` in its own var dir on free ports,
and a throw-away Redis; both stopped (with every child) when done."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

from common.cli import gunicorn_config
from common.development import embedded
from common.development.ports import free_port, wait_for_port
from common.platform.settings import PROJECT_ROOT

# Service settings of the machine's environment that must not leak into the throw-away system.
SERVICE_ENV = ("REDIS_URL", "MONGODB_URI", "STRIPE_SECRET_KEY", "STRIPE_PUBLISHABLE_KEY",
               "STRIPE_WEBHOOK_SECRET", "STRIPE_API_BASE", "STRIPE_JS_URL", "STRIPE_EMULATOR",
               "CELERY_BROKER_URL", "PORT", "VAR_DIR", "PUBLIC_URL", "JWT_SECRET_KEY")
ADMIN_EMAIL = "bench-admin@example.com"
ADMIN_PASSWORD = "bench-admin-password-1"


def stop_system(process: subprocess.Popen, timeout: float = 30) -> int:
    """Stop `flashsale run` as Ctrl-C does; what is still there after `timeout` is killed.
    Returns its exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
    return process.returncode


@contextmanager
def running_system(root: Path, extra_env: dict[str, str] | None = None,
                   timeout: float = 120, args: tuple[str, ...] = ()) -> Iterator[dict[str, Any]]:
    """Start `flashsale run [args]` under `root`; yields its services.json."""
    var_dir = root / "var"
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_ENV}
    env.update({"PORT": str(free_port()), "VAR_DIR": str(var_dir), "LOG_FORMAT": "json",
                "ADMIN_EMAIL": ADMIN_EMAIL, "ADMIN_PASSWORD": ADMIN_PASSWORD,
                "ADMISSION_RATE_LIMIT": "100000 per second",
                "LOGIN_RATE_LIMIT": "100000 per minute", "REGISTER_RATE_LIMIT": "100000 per minute",
                "REGISTER_TOTAL_RATE_LIMIT": "100000 per second", "LOG_LEVEL": "WARNING",
                # Every shopper of a benchmark streams from this one address.
                "STREAM_MAX_PER_ADDRESS": "0"})
    env.update(extra_env or {})
    log = (root / "system.log").open("wb")
    process = subprocess.Popen([str(Path(sys.executable).parent / "flashsale"), "run", *args],
                               cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    services_path = var_dir / "run" / "services.json"
    try:
        deadline = time.monotonic() + timeout
        while not services_path.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"flashsale run did not become ready: see {root / 'system.log'}")
            time.sleep(0.3)
        yield {**json.loads(services_path.read_text()), "system_pid": process.pid}
    finally:
        stop_system(process)
        log.close()


def api_processes(system_pid: int) -> list[psutil.Process]:
    """The system's gunicorn processes (master and workers)."""
    found = []
    for child in psutil.Process(system_pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if any("gunicorn" in part for part in child.cmdline()[:2]):
                found.append(child)
    return found


def cpu_seconds(processes: list[psutil.Process]) -> float:
    """User plus system CPU time the processes have used so far (their own, not children's)."""
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


@contextmanager
def celery_held(system_pid: int) -> Iterator[int]:
    """Hold the system's Celery processes (worker, decider, beat) still with SIGSTOP, and let
    them go on afterwards; yields how many were held. Queued tasks wait, nothing is lost."""
    held = []
    for child in psutil.Process(system_pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "worker.app" in child.cmdline():
                child.send_signal(signal.SIGSTOP)
                held.append(child)
    try:
        yield len(held)
    finally:
        for child in held:
            with contextlib.suppress(psutil.Error):
                child.send_signal(signal.SIGCONT)


@contextmanager
def running_server(command: list[str], port: int, log: Path, cwd: Path | None = None,
                   env: dict[str, str] | None = None) -> Iterator[psutil.Process]:
    """`command` in a session of its own until it listens on `port`; yields its process and
    stops it as Ctrl-C does when done. Its output goes to `log`."""
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            if not wait_for_port("127.0.0.1", port, timeout=30):
                raise RuntimeError(f"{command[0]} did not start: see {log}")
            yield psutil.Process(process.pid)
        finally:
            stop_system(process, timeout=10)


@contextmanager
def running_redis(root: Path) -> Iterator[str]:
    """A Redis of our own (same settings as the embedded one: AOF every second)."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    with running_server(embedded.redis_command(url, root / "redis"), embedded.port_of(url),
                        root / "redis.log"):
        yield url


@contextmanager
def running_gunicorn(app_spec: str, root: Path, workers: int) -> Iterator[tuple[str, int]]:
    """gunicorn with the settings of `flashsale serve api` (its config file; the bind and the
    number of workers given here override it), serving `app_spec`; yields its URL and the
    master's pid."""
    port = free_port()
    log = (root / "bare.log").open("wb")
    process = subprocess.Popen([
        str(Path(sys.executable).parent / "gunicorn"), "-c", gunicorn_config(),
        "--workers", str(workers), "--bind", f"127.0.0.1:{port}", app_spec,
    ], cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        if not wait_for_port("127.0.0.1", port, timeout=30):
            raise RuntimeError(f"gunicorn did not start: see {root / 'bare.log'}")
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
        log.close()
