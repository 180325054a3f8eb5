"""Per-sale stock and queue gauges, read from Redis when Prometheus scrapes, so every API
process reports the same numbers.

A scrape used to read every sale the index had ever held (sales stay in it for their keys'
week after the end), each scrape, in every API process. Now it reads the live sales only
(not ended, or ended less than LIVE_AFTER_END ago, while their last payments settle) and
reuses the answer for CACHE_SECONDS: scrapers and dashboards polling at once cost one read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import redis
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from common.flash_sale import beacon_draw, sale_keys
from common.flash_sale.sales import all_sale_ids, read_counters
from common.platform.clock import now_ms

log = logging.getLogger(__name__)

CACHE_SECONDS = 5.0
LIVE_AFTER_END = timedelta(hours=1)
_GONE = 0  # the end of a sale whose keys have expired: never live again


class SaleGauges(Collector):
    """A Prometheus collector: `flashsale_sale_units` and `flashsale_sale_queue_length` of the
    live sales, read at most once per CACHE_SECONDS; a sale's end, which never changes, is read
    once per process."""

    def __init__(self, redis_client: redis.Redis, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.redis = redis_client
        self._monotonic = monotonic
        self._ends_ms: dict[str, int] = {}
        self._lock = threading.Lock()  # gevent's under gunicorn (monkey-patched before import)
        self._families: list[GaugeMetricFamily] = []
        self._at: float | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            if self._at is None or self._monotonic() - self._at >= CACHE_SECONDS:
                self._families = self._read()
                self._at = self._monotonic()
            families = self._families
        yield from families

    def live_sale_ids(self) -> list[str]:
        sale_ids = all_sale_ids(self.redis)
        unknown = [sale_id for sale_id in sale_ids if sale_id not in self._ends_ms]
        if unknown:
            pipe = self.redis.pipeline(transaction=False)
            for sale_id in unknown:
                pipe.hget(sale_keys.config_key(sale_id), "ends_at_ms")
            for sale_id, ends in zip(unknown, pipe.execute(), strict=True):
                self._ends_ms[sale_id] = int(ends or _GONE)
        since = now_ms() - int(LIVE_AFTER_END.total_seconds() * 1000)
        return [sale_id for sale_id in sale_ids if self._ends_ms[sale_id] > since]

    def _read(self) -> list[GaugeMetricFamily]:
        units = GaugeMetricFamily("flashsale_sale_units", "Units per sale and state",
                                  labels=["sale_id", "state"])
        queued = GaugeMetricFamily("flashsale_sale_queue_length", "Queued tickets per sale",
                                   labels=["sale_id"])
        overdue = GaugeMetricFamily(
            "flashsale_beacon_overdue_seconds",
            "Seconds since a beacon draw's round was due while the sale still waits for it",
            labels=["sale_id"])
        failures = GaugeMetricFamily("flashsale_beacon_fetch_failures",
                                     "Failed fetches of the round a sale waits for", labels=["sale_id"])
        try:
            for sale_id in self.live_sale_ids():
                counters = read_counters(self.redis, sale_id)
                if counters is None:
                    continue
                for state in ("available", "reserved", "sold"):
                    units.add_metric([sale_id, state], getattr(counters, state))
                queued.add_metric([sale_id], counters.queued)
                waiting = beacon_draw.overdue_seconds(self.redis, sale_id)
                if waiting is not None:
                    overdue.add_metric([sale_id], waiting[0])
                    failures.add_metric([sale_id], waiting[1])
        except redis.RedisError:  # a scrape must not fail because Redis is down
            log.warning("sale gauges not read: Redis did not answer", exc_info=True)
        return [units, queued, overdue, failures]
