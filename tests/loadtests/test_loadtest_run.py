"""`flashsale loadtest` end to end against a whole system started for this test: a small paid
run must pass every invariant and exit 0, and leave its results (CSV, chart, summary)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import clean_environ, start_system, stop_system
from tests.e2e.shop import ADMIN_EMAIL, ADMIN_PASSWORD

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_small_paid_loadtest_passes_every_invariant(tmp_path):
    system = start_system(tmp_path)
    try:
        results = tmp_path / "results"
        run = subprocess.run(
            [str(Path(sys.executable).parent / "flashsale"), "loadtest", "--users", "20", "--stock", "10",
             "--duration", "15s", "--pay", "--services", str(system.var_dir / "run" / "services.json"),
             "--admin-email", ADMIN_EMAIL, "--admin-password", ADMIN_PASSWORD,
             "--results-dir", str(results)],
            capture_output=True, text=True, timeout=400, env=clean_environ())
    finally:
        stop_system(system.process)
    summary = run.stdout
    assert run.returncode == 0, summary + run.stderr[-3000:]
    invariants = re.findall(r"^\s+(PASS|FAIL)  (.+?):", summary, flags=re.MULTILINE)
    assert len(invariants) >= 8 and all(verdict == "PASS" for verdict, _ in invariants), summary
    issued = int(re.search(r"tickets issued\s+(\d+)", summary).group(1))
    sold_out, at_door = map(int, re.search(
        r"sold out\s+(\d+) tickets decided sold_out, (\d+) admissions", summary).groups())
    # 20 shoppers, 10 units: 10 pay, the other 10 are told sold out (as a ticket or at the door).
    assert re.search(r"paid\s+10\b", summary), summary
    assert issued + at_door == 20 and sold_out + at_door == 10, summary
    assert re.search(r"failed requests\s+0 of", summary), summary
    run_dir = next(results.glob("*-shoppers"))
    for name in ("locust_stats.csv", "report.html", "chart.png", "admissions.csv", "summary.txt"):
        assert (run_dir / name).stat().st_size > 0, name


def test_leavers_give_their_units_to_those_who_stayed(tmp_path):
    system = start_system(tmp_path)
    try:
        run = subprocess.run(
            [str(Path(sys.executable).parent / "flashsale"), "loadtest", "--users", "60", "--stock", "20",
             "--leavers", str(1 / 3), "--duration", "60s",
             "--services", str(system.var_dir / "run" / "services.json"),
             "--admin-email", ADMIN_EMAIL, "--admin-password", ADMIN_PASSWORD,
             "--results-dir", str(tmp_path / "results")],
            capture_output=True, text=True, timeout=400, env=clean_environ())
    finally:
        stop_system(system.process)
    summary = run.stdout
    assert run.returncode == 0, summary + run.stderr[-3000:]
    assert "updates over sse" in summary, summary
    # 20 leavers, all abandoned; the 20 units went to 20 of the 40 who stayed.
    assert re.search(r"PASS  no leaver got a unit: 20 leavers' tickets: abandoned 20", summary), summary
    assert re.search(r"PASS  every unit to a stayer while stayers remain: 20 units to 40 stayers",
                     summary), summary
    assert re.search(r"failed requests\s+0 of", summary), summary
    invariants = re.findall(r"^\s+(PASS|FAIL)  (.+?):", summary, flags=re.MULTILINE)
    assert all(verdict == "PASS" for verdict, _ in invariants), summary


def test_a_lobby_surge_reports_when_the_lobby_was_placed(tmp_path):
    """40 shoppers arrive over a 6 s lobby for 10 units: every one is in the lobby, gets a
    place after the start and a result over its stream; the invariants hold."""
    system = start_system(tmp_path)
    try:
        run = subprocess.run(
            [str(Path(sys.executable).parent / "flashsale"), "loadtest", "--scenario", "surge",
             "--users", "40", "--stock", "10", "--lobby-window", "6", "--duration", "60s",
             "--services", str(system.var_dir / "run" / "services.json"),
             "--admin-email", ADMIN_EMAIL, "--admin-password", ADMIN_PASSWORD,
             "--results-dir", str(tmp_path / "results")],
            capture_output=True, text=True, timeout=400, env=clean_environ())
    finally:
        stop_system(system.process)
    summary = run.stdout
    assert run.returncode == 0, summary + run.stderr[-3000:]
    assert "arriving over the 6 s lobby" in summary, summary
    # flashsale run draws the lobby from its embedded beacon: places come once the round is out.
    placed = re.search(r"lobby\s+40 tickets joined; every lobby ticket had its place ([\d.]+) s "
                       r"after starts_at \(its beacon round was due ([\d.]+) s after starts_at\)", summary)
    assert placed, summary
    placed_after, round_due = float(placed.group(1)), float(placed.group(2))
    assert 10 <= round_due <= placed_after < round_due + 10, summary
    lobby_latency = re.search(r"lobby admission latency\s+p50 (\d+) ms, p95 (\d+) ms.*\((\d+) requests\)",
                              summary)
    assert lobby_latency and int(lobby_latency.group(3)) == 40, summary
    assert re.search(r"tickets issued\s+40\b", summary), summary
    assert re.search(r"reserved\s+10 tickets", summary), summary
    assert re.search(r"failed requests\s+0 of", summary), summary
    assert "PASS  every lobby ticket got its place: 40 lobby tickets placed" in summary, summary
    invariants = re.findall(r"^\s+(PASS|FAIL)  (.+?):", summary, flags=re.MULTILINE)
    assert len(invariants) >= 8 and all(verdict == "PASS" for verdict, _ in invariants), summary
