"""Prometheus metrics. Counters are incremented where things happen; the per-sale gauges are
read from Redis at scrape time so every API process reports the same numbers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

if TYPE_CHECKING:
    from common.platform.clients import Clients

HTTP_REQUESTS = Counter("flashsale_http_requests_total", "HTTP requests", ["method", "endpoint", "status"])
HTTP_LATENCY = Histogram(
    "flashsale_http_request_seconds", "HTTP request latency", ["endpoint"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 1, 2.5, 5),
)
ADMISSIONS = Counter("flashsale_admissions_total", "Waiting-room admissions", ["result"])
DECISIONS = Counter("flashsale_ticket_decisions_total", "Tickets decided by workers", ["outcome"])
WEBHOOKS = Counter("flashsale_webhook_events_total", "Stripe webhook deliveries", ["type", "result"])
EXPIRED = Counter("flashsale_reservations_expired_total", "Reservations expired by beat")
RECONCILE_DRIFT = Counter("flashsale_reconcile_drift_total", "Sales found inconsistent", ["kind"])
UNMATCHED_REFUNDS = Counter("flashsale_unmatched_payment_refunds_total",
                            "Succeeded payments that matched no live ticket, refunded", ["reason"])
INTENT_CANCELLATIONS = Counter("flashsale_intent_cancellations_total",
                               "Outbox sweeps of released tickets' PaymentIntents", ["outcome"])
DEAD_LETTERS = Counter("flashsale_dead_letters_total", "Tickets or tasks sent to dead letter", ["kind"])
# Live ticket streams (api/ticket_events.py): open now, summed over the live API processes,
# and how they ended (final status, client gone, error).
TICKET_STREAMS = Gauge("flashsale_ticket_streams_open", "Open ticket event streams",
                       multiprocess_mode="livesum")
TICKET_STREAM_ENDS = Counter("flashsale_ticket_stream_ends_total", "Ticket event streams ended",
                             ["reason"])

_live_sources: list[Any] = []


class SaleGauges:
    """Collects per-sale stock and queue gauges from Redis when scraped."""

    def __init__(self, clients: Clients) -> None:
        self.clients = clients

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from common.flash_sale.sales import all_sale_ids, read_counters

        family = GaugeMetricFamily("flashsale_sale_units", "Units per sale and state",
                                   labels=["sale_id", "state"])
        queued = GaugeMetricFamily("flashsale_sale_queue_length", "Queued tickets per sale",
                                   labels=["sale_id"])
        try:
            for sale_id in all_sale_ids(self.clients.sales_redis):
                counters = read_counters(self.clients.sales_redis, sale_id)
                if counters is None:
                    continue
                for state in ("available", "reserved", "sold"):
                    family.add_metric([sale_id, state], getattr(counters, state))
                queued.add_metric([sale_id], counters.queued)
        except Exception:  # a scrape must not fail because Redis is down
            pass
        yield family
        yield queued


def refresh_sale_gauges(clients: Clients) -> None:
    """Register the Redis-backed collector once per process."""
    if not _live_sources:
        collector = SaleGauges(clients)
        _live_sources.append(collector)
        REGISTRY.register(collector)  # type: ignore[arg-type]


def register_live_collectors(registry: CollectorRegistry) -> None:
    for collector in _live_sources:
        registry.register(collector)
