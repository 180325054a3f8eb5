"""`flashsale run` puts everything on one machine: the work that can wait a moment (the
decider, the worker, beat, and the Stripe emulator, which lowers its own) runs at a lower CPU
priority than the API and Redis, so that a burst of shoppers pressing Buy is answered first
(`make bench`, part 6)."""

from __future__ import annotations

import contextlib

import psutil

from common.development.cli import BACKGROUND_NICENESS


def _niceness_by_kind(system_pid: int) -> dict[str, set[int]]:
    found: dict[str, set[int]] = {}
    for child in psutil.Process(system_pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            command = " ".join(child.cmdline())
            if command.startswith("/bin/sh -c"):
                continue  # the Procfile line's shell, waiting for its command
            kind = ("api" if "gunicorn" in command else
                    "decider" if "decider" in command else
                    "beat" if "worker.app beat" in command else
                    "worker" if "worker.app" in command else
                    "stripe" if "localstripe" in command else
                    "redis" if "redis-server" in command else None)
            if kind:
                found.setdefault(kind, set()).add(child.nice())
    return found


def test_the_api_and_redis_come_before_the_background_work(system):
    niceness = _niceness_by_kind(system.services["pid"])
    assert set(niceness) == {"api", "redis", "decider", "worker", "beat", "stripe"}, niceness
    base = min(niceness["api"])
    assert niceness["api"] == niceness["redis"] == {base}
    lowered = {min(19, base + BACKGROUND_NICENESS)}
    for kind in ("decider", "worker", "beat", "stripe"):
        assert niceness[kind] == lowered, (kind, niceness)
