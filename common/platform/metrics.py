"""Prometheus metrics. Counters are incremented where things happen; a domain's gauges read at
scrape time (flash_sale/sale_gauges.py) are served with `serve_live_collector`."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.registry import Collector

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
# The operator's controls (flash_sale/controls.py) and what they did: sale changes, ends,
# cancels, the refunds of a cancelled sale, and the pace set by Stripe's health.
OPERATOR_ACTIONS = Counter("flashsale_operator_actions_total", "Operator controls applied", ["action"])
DEAD_LETTERS = Counter("flashsale_dead_letters_total", "Tickets or tasks sent to dead letter", ["kind"])
# Live ticket streams (api/ticket_events.py): open now, summed over the live API processes,
# and how they ended (final status, client gone, error).
TICKET_STREAMS = Gauge("flashsale_ticket_streams_open", "Open ticket event streams",
                       multiprocess_mode="livesum")
TICKET_STREAM_ENDS = Counter("flashsale_ticket_stream_ends_total", "Ticket event streams ended",
                             ["reason"])

# Collectors read at scrape time (a domain's gauges), one of each per process.
_live_sources: dict[str, Collector] = {}

# Methods named in metric labels; any other becomes `other`, so made-up methods cannot mint
# series (300 requests with methods AAAA, AAAB... made 301 of them).
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    return method if method in HTTP_METHODS else "other"


def serve_live_collector(name: str, collector: Collector) -> None:
    """Read `collector` at scrape time, one per name in a process. When tests make many apps in
    one process, each scrape serves the collector of the app answering it (an earlier app's may
    hold clients that are closed by now)."""
    earlier = _live_sources.get(name)
    if earlier is collector:
        return
    if earlier is not None:
        REGISTRY.unregister(earlier)
    _live_sources[name] = collector
    REGISTRY.register(collector)


def register_live_collectors(registry: CollectorRegistry) -> None:
    for collector in _live_sources.values():
        registry.register(collector)
