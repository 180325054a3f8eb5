"""Draws the charts of docs/benchmarks.md from the figures measured there (the tables of that
page are the source; a new run's figures go into both). Run: `.venv/bin/python docs/benchmarks/charts.py`."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

HERE = Path(__file__).resolve().parent

# make bench-peer, medians of 2 rounds, December 4 (docs/benchmarks.md, "Against a public peer").
PEER = {"peer (Node/Express)": (1581, 39, 66, 123), "ours, 1 worker": (1994, 31, 52, 75),
        "ours, 2 workers": (2788, 21, 85, 150)}
# API CPU per admission (µs) through the rounds of a leaner admission (make bench).
ROUNDS = [("before", 900), ("first round", 634), ("second round", 426)]
# 10,000 shoppers within 5 s, 500 units, paid: admission latency (s), streams against polling.
SURGE = {"event streams": (3.7, 12.9, 19.5, 20.2), "polling": (6.5, 37.7, 39.8, 40.5)}


def peer_chart() -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    names = list(PEER)
    left.bar(names, [PEER[n][0] for n in names], color=["#999", "#3b7", "#285"])
    left.set_title("requests a second (wrk, 64 connections)")
    for i, name in enumerate(names):
        left.text(i, PEER[name][0], f"{PEER[name][0]:,}", ha="center", va="bottom")
    width = 0.25
    for j, (label, index) in enumerate((("p50", 1), ("p95", 2), ("p99", 3))):
        right.bar([i + (j - 1) * width for i in range(len(names))], [PEER[n][index] for n in names],
                  width, label=label)
    right.set_xticks(range(len(names)), names)
    right.set_title("latency, ms")
    right.legend()
    fig.tight_layout()
    fig.savefig(HERE / "peer.png", dpi=110)


def rounds_chart() -> None:
    fig, axis = plt.subplots(figsize=(6, 3.2))
    axis.bar([r[0] for r in ROUNDS], [r[1] for r in ROUNDS], color="#37b")
    for i, (_, value) in enumerate(ROUNDS):
        axis.text(i, value, f"{value} µs", ha="center", va="bottom")
    axis.set_title("API CPU per admission (make bench)")
    fig.tight_layout()
    fig.savefig(HERE / "admission-cpu.png", dpi=110)


def surge_chart() -> None:
    fig, axis = plt.subplots(figsize=(6, 3.2))
    labels = ["p50", "p95", "p99", "max"]
    width = 0.38
    for j, (name, values) in enumerate(SURGE.items()):
        axis.bar([i + (j - 0.5) * width for i in range(4)], values, width, label=name)
    axis.set_xticks(range(4), labels)
    axis.set_ylabel("seconds")
    axis.set_title("admission latency, 10,000 shoppers in 5 s")
    axis.legend()
    fig.tight_layout()
    fig.savefig(HERE / "surge.png", dpi=110)


if __name__ == "__main__":
    peer_chart()
    rounds_chart()
    surge_chart()
