"""One PNG per run: admissions per second, admission p95 latency, and the waiting room over
time (queue length, reserved, sold out, sold), seconds counted from the sale's opening."""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after matplotlib.use: the backend must be chosen first

Admission = tuple[float, float, int]  # started_at (epoch s), response time (ms), HTTP status


def read_admissions(path: Path) -> list[Admission]:
    if not path.exists():
        return []
    with path.open() as source:
        return [(float(row["started_at"]), float(row["response_time_ms"]), int(row["status"] or 0))
                for row in csv.DictReader(source)]


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (what locust reports too)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def per_second(admissions: list[Admission], origin: float) -> tuple[list[int], list[int], list[float]]:
    buckets: dict[int, list[float]] = defaultdict(list)
    for started, ms, _status in admissions:
        buckets[math.floor(started - origin)].append(ms)
    seconds = sorted(buckets)
    return seconds, [len(buckets[s]) for s in seconds], [percentile(buckets[s], 0.95) for s in seconds]


def plot_run(out: Path, *, title: str, opened_at: float, admissions: list[Admission],
             samples: list[tuple[float, dict[str, Any]]]) -> Path:
    """Write the run's chart to `out` and return it."""
    fig, (rate_ax, latency_ax, room_ax) = plt.subplots(3, 1, figsize=(10, 10), sharex=True)
    fig.suptitle(title)
    seconds, counts, p95 = per_second(admissions, opened_at)
    rate_ax.bar(seconds, counts, width=0.9, align="edge", color="#4c72b0", label="admission requests")
    if len(samples) > 1:
        times = [t - opened_at for t, _ in samples]
        issued = [float(s.get("tickets_issued", 0)) for _, s in samples]
        rates = [0.0] + [(issued[i] - issued[i - 1]) / max(times[i] - times[i - 1], 1e-3)
                         for i in range(1, len(issued))]
        rate_ax.plot(times, rates, color="#dd8452", label="tickets issued / s (stats)")
    rate_ax.set_ylabel("per second")
    rate_ax.legend(loc="upper right")
    rate_ax.set_title("Admissions per second")

    latency_ax.plot([s + 0.5 for s in seconds], p95, marker="o", color="#c44e52", label="p95")
    latency_ax.axhline(100, color="grey", linestyle="--", linewidth=0.8, label="100 ms target")
    latency_ax.set_ylim(bottom=0)
    latency_ax.set_ylabel("ms")
    latency_ax.legend(loc="upper right")
    latency_ax.set_title("Admission latency, p95 per second")

    if samples:
        times = [t - opened_at for t, _ in samples]
        for name, label, color in (("queued", "queue length", "#4c72b0"),
                                   ("reserved", "reserved (units)", "#55a868"),
                                   ("sold_out", "sold out (tickets)", "#c44e52"),
                                   ("sold", "sold (units)", "#8172b3")):
            room_ax.plot(times, [s.get(name, 0) for _, s in samples], label=label, color=color)
        room_ax.legend(loc="upper left")
    room_ax.set_ylabel("count")
    room_ax.set_xlabel("seconds since the sale opened")
    room_ax.set_title("Waiting room")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
