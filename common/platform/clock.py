"""The shop's idea of "now" and how times leave it: UTC, millisecond precision (what MongoDB
stores), ISO 8601 with a `Z`. Every wall-clock reading goes through here; durations are
measured with `time.monotonic`/`perf_counter` instead, which a clock change cannot bend."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def utc_now() -> datetime:
    """Now in UTC, truncated to milliseconds so a stored time compares equal to itself."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def now_ms() -> int:
    """Now as milliseconds since the epoch: what Redis scores and ticket fields hold (the Lua
    scripts read the same clock from the Redis server)."""
    return int(time.time() * 1000)


def now_seconds() -> float:
    """Now as seconds since the epoch: JWT `exp` claims and rate-limit windows count in these."""
    return time.time()


def iso_utc(value: datetime | str | None) -> str | None:
    """ISO 8601 in UTC. Naive datetimes and strings (some servers hand back `$set` times as
    text) are read as UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
