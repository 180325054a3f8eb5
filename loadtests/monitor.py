"""Samplers that run beside a load test: the sale's admin stats (for the plot and for the
lowest `available` ever seen) and the memory of the system's processes (for the soak)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import psutil

from loadtests.shop import Operator, ShopError


class StatsSampler(threading.Thread):
    """GET /api/admin/sales/<id>/stats every `interval` seconds until stopped."""

    def __init__(self, operator: Operator, sale_id: str, interval: float = 0.5) -> None:
        super().__init__(name="stats-sampler", daemon=True)
        self.operator = operator
        self.sale_id = sale_id
        self.interval = interval
        self.samples: list[tuple[float, dict[str, Any]]] = []
        self.errors = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            started = time.time()
            try:
                self.samples.append((started, self.operator.stats(self.sale_id)))
            except (ShopError, OSError, ValueError):
                self.errors += 1
            except Exception:
                self.errors += 1
            self._stop_event.wait(max(0.0, self.interval - (time.time() - started)))

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)

    def lowest(self, name: str) -> int | None:
        values = [int(s[name]) for _, s in self.samples if name in s]
        return min(values) if values else None

    def latest(self) -> dict[str, Any]:
        return self.samples[-1][1] if self.samples else {}


# ------------------------------------------------------------------ process memory

PROCESS_GROUPS = ("api", "worker", "beat", "redis", "mongodb", "stripe")


def process_group(cmdline: list[str]) -> str | None:
    """Which process of the Procfile a command line belongs to (children included)."""
    line = " ".join(cmdline)
    if "gunicorn" in line:
        return "api"
    if "celery" in line:
        # `celery -A worker.app worker ...` and `celery -A worker.app beat ...`
        return "beat" if "beat" in cmdline else "worker" if "worker" in cmdline else None
    if "redis-server" in line:
        return "redis"
    if "nx-27017" in line:
        return "mongodb"
    if "localstripe" in line:
        return "stripe"
    return None


def rss_by_group(root_pid: int) -> dict[str, int]:
    """Resident memory (bytes) of each process group under `flashsale run`."""
    totals = dict.fromkeys(PROCESS_GROUPS, 0)
    for child in psutil.Process(root_pid).children(recursive=True):
        try:
            group = process_group(child.cmdline())
            if group:
                totals[group] += child.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return totals


@dataclass
class MemoryGrowth:
    group: str
    first_mb: float
    baseline_mb: float
    last_mb: float
    peak_mb: float

    @property
    def growth_percent(self) -> float:
        return 100.0 * (self.last_mb - self.baseline_mb) / self.baseline_mb if self.baseline_mb else 0.0

    @property
    def stable(self) -> bool:
        return self.growth_percent < 10.0


class RssSampler(threading.Thread):
    """psutil RSS of the API and worker (and the rest) every `interval` seconds."""

    def __init__(self, root_pid: int, interval: float = 10.0, warmup: float = 60.0) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.root_pid = root_pid
        self.interval = interval
        # Growth is measured from the first sample after this warm-up (imports, pools, caches).
        self.warmup = warmup
        self.samples: list[tuple[float, dict[str, int]]] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.samples.append((time.time(), rss_by_group(self.root_pid)))
            except psutil.Error:
                pass
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=30)
        try:
            self.samples.append((time.time(), rss_by_group(self.root_pid)))
        except psutil.Error:
            pass

    def growth(self, group: str) -> MemoryGrowth | None:
        if len(self.samples) < 2:
            return None
        first_at = self.samples[0][0]
        after_warmup = [s for t, s in self.samples if t - first_at >= self.warmup]
        baseline = after_warmup[0] if len(after_warmup) >= 2 else self.samples[0][1]
        mb = 1024 * 1024
        return MemoryGrowth(group, self.samples[0][1][group] / mb, baseline[group] / mb,
                            self.samples[-1][1][group] / mb,
                            max(s[group] for _, s in self.samples) / mb)
