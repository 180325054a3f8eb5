"""Processes the fault tests start, signal and restart by PID: their own Redis and MongoDB
servers (so a restart disturbs no other test) and `flashsale serve api|worker|beat`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import requests

from common.development import embedded
from common.development.ports import free_port, wait_for_port

FLASHSALE = str(Path(sys.executable).parent / "flashsale")


def wait_until(predicate: Callable[[], Any], timeout: float = 60, interval: float = 0.2,
               message: str = "condition") -> Any:
    """Poll until `predicate()` is truthy and return its value; fail with `message` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {message}")
        time.sleep(interval)


class Process:
    """One subprocess in its own session, so a signal by PID reaches exactly what we mean."""

    # How to ask the process to stop before SIGKILL.
    stop_signal = signal.SIGTERM

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.name, self.argv, self.log_path, self.env = name, argv, log_path, env
        self.popen: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def start(self) -> Process:
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        log.close()
        return self

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: int) -> None:
        assert self.popen is not None
        self.popen.send_signal(sig)

    def children(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.pid).children()
        except psutil.NoSuchProcess:
            return []

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 15) -> None:
        """Signal the process group (stop_signal), then SIGKILL what is left of it."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGCONT)  # a stopped process cannot handle SIGTERM
                os.killpg(self.pid, self.stop_signal)
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
            except ProcessLookupError:
                pass
        try:
            os.killpg(self.pid, signal.SIGKILL)  # children left behind by a killed parent
        except (ProcessLookupError, PermissionError):
            pass
        if self.popen.poll() is None:
            self.popen.wait(5)


class RedisServer(Process):
    """A Redis of our own with AOF on, started the way `flashsale embedded redis` starts one."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.data_dir = root / "redis-data"
        super().__init__("redis", embedded.redis_command(self.url, self.data_dir), root / "redis.log")

    def start(self) -> RedisServer:
        super().start()
        if not wait_for_port("127.0.0.1", self.port, timeout=20):
            raise RuntimeError(f"redis did not start:\n{self.log()}")
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        self.signal(sig)
        assert self.popen is not None
        self.popen.wait(20)


class MongoServer(Process):
    """The embedded MongoDB wire server (nx-27017) on its own port and SQLite directory."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.uri = f"mongodb://127.0.0.1:{self.port}/"
        super().__init__("mongodb", embedded.mongodb_command(self.uri, root / "mongo-data", root / "run"),
                         root / "mongodb.log")

    def start(self) -> MongoServer:
        super().start()
        if not wait_for_port("127.0.0.1", self.port, timeout=30):
            raise RuntimeError(f"mongodb did not start:\n{self.log()}")
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        self.signal(sig)
        assert self.popen is not None
        self.popen.wait(20)


class Flashsale(Process):
    """`flashsale serve NAME` (api, worker or beat)."""

    def __init__(self, kind: str, env: dict[str, str], log_dir: Path, label: str | None = None) -> None:
        self.kind = kind
        if kind == "api":
            self.stop_signal = signal.SIGQUIT  # gunicorn's quick shutdown: no wait for idle keep-alives
        super().__init__(label or kind, [FLASHSALE, "serve", kind], log_dir / f"{label or kind}.log", env)

    def wait_ready(self, timeout: float = 60) -> Flashsale:
        if self.kind == "api":
            url = f"http://127.0.0.1:{self.env['PORT']}/healthz"  # type: ignore[index]

            def up() -> bool:
                try:
                    return requests.get(url, timeout=1).status_code == 200
                except requests.RequestException:
                    return False

            wait_until(lambda: up() or self._died(), timeout, message=f"{self.name} to answer")
        else:
            marker = " ready." if self.kind == "worker" else "beat v"
            wait_until(lambda: marker in self.log() or self._died(), timeout,
                       message=f"{self.name} to start")
        if not self.alive():
            raise RuntimeError(f"{self.name} exited:\n{self.log()[-3000:]}")
        return self

    def _died(self) -> bool:
        return not self.alive()

    def log_records(self) -> list[dict[str, Any]]:
        records = []
        for line in self.log().splitlines():
            if line.startswith("{"):
                try:
                    records.append(json.loads(line))
                except ValueError:
                    continue
        return records
