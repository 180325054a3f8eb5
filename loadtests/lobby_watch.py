"""What the lobby costs a surge (issue 14): how long after `starts_at` every lobby ticket has
its place, read from the sale's counters in Redis (`lobby_closed`, `lobby_size`,
`lobby_placed`, written by close_lobby.lua and place_lobby.lua) every 20 ms from the opening,
and the admission latency of the shoppers who joined the lobby before it. The load test's
clock and the server's are the same machine's, or NTP-close."""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from common.flash_sale import sale_keys


def lobby_placed(fields: list[Any]) -> tuple[bool, int]:
    """(every lobby ticket has its place, the lobby's size) from an HMGET of lobby_closed,
    lobby_size, lobby_placed."""
    closed, size, placed = (None if v is None else str(v.decode() if isinstance(v, bytes) else v)
                            for v in fields)
    size_n, placed_n = int(size or 0), int(placed or 0)
    return closed == "1" and placed_n >= size_n, size_n


class LobbyWatch(threading.Thread):
    """From the opening on, polls the sale's lobby counters until the lobby is placed;
    `placed_after_s` is then the time from `starts_at` (NaN until then, or when it never was)."""

    def __init__(self, redis_client: Any, sale_id: str, starts_at: float, *,
                 interval: float = 0.02, timeout: float = 300.0) -> None:
        super().__init__(name=f"lobby-watch-{sale_id}", daemon=True)
        self.redis = redis_client
        self.key = sale_keys.counters_key(sale_id)
        self.starts_at = starts_at
        self.interval = interval
        self.timeout = timeout
        self.placed_after_s = math.nan
        self.lobby_size = 0
        self._stopping = threading.Event()

    def run(self) -> None:
        if self._stopping.wait(max(0.0, self.starts_at - time.time())):
            return
        deadline = time.monotonic() + self.timeout
        while not self._stopping.is_set() and time.monotonic() < deadline:
            done, size = lobby_placed(self.redis.hmget(self.key, "lobby_closed", "lobby_size",
                                                       "lobby_placed"))
            if done:
                self.placed_after_s, self.lobby_size = time.time() - self.starts_at, size
                return
            self._stopping.wait(self.interval)

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=5)


def lobby_admissions(admissions: list[tuple[float, float, int]], opened_at: float) -> list[float]:
    """Response times (ms) of the admissions sent before the opening: the lobby's."""
    return [ms for started, ms, _status in admissions if started < opened_at]
