"""What a scrape costs and what it can grow: made-up HTTP methods mint no metric series, and
the per-sale gauges read the live sales only, once per cache window."""

from __future__ import annotations

import itertools
import string

import redis

from common.flash_sale import sale_gauges
from common.flash_sale.sale_gauges import SaleGauges
from common.platform import metrics
from common.platform.clients import Clients
from tests.waiting_room_helpers import open_sale


def _request_methods() -> set[str]:
    return {sample.labels["method"] for family in metrics.HTTP_REQUESTS.collect()
            for sample in family.samples}


def test_made_up_methods_make_no_series(client) -> None:
    made_up = ["".join(letters) for letters in itertools.product(string.ascii_uppercase, repeat=4)][:300]
    for method in made_up:
        client.open("/api/sales", method=method)
        client.open("/api/sales/sal_0000000000000000/tickets", method=method)  # the fast path's
    client.get("/api/sales")
    methods = _request_methods()
    assert methods <= metrics.HTTP_METHODS | {"other"}
    assert {"other", "GET"} <= methods


def _reads(redis_client: redis.Redis) -> dict[str, int]:
    """Calls so far of the commands that read a sale (the server is this session's own)."""
    stats = redis_client.info("commandstats")
    return {name: stats.get(f"cmdstat_{name}", {}).get("calls", 0)
            for name in ("hget", "hgetall", "smembers")}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _gauged_sales(collector: SaleGauges) -> set[str]:
    return {sample.labels["sale_id"] for family in collector.collect() for sample in family.samples}


def test_scrapes_read_live_sales_once_per_window(clients: Clients) -> None:
    live = open_sale(clients, 3)
    ended = open_sale(clients, 2, starts_in=-3 * 3600, lasts=3600)  # ended two hours ago
    clock = Clock()
    collector = SaleGauges(clients.sales_redis, monotonic=clock)

    before = _reads(clients.sales_redis)
    gauged = _gauged_sales(collector)
    after = _reads(clients.sales_redis)
    assert live in gauged and ended not in gauged
    # Counters read for the live sales only (other tests' ended sales share the index).
    live_ids = collector.live_sale_ids()
    assert after["hgetall"] - before["hgetall"] == len(live_ids)
    assert live in live_ids and ended not in live_ids
    after = _reads(clients.sales_redis)

    clock.now += sale_gauges.CACHE_SECONDS / 2
    assert _gauged_sales(collector) == gauged
    assert _reads(clients.sales_redis) == after  # within the window: no Redis read at all

    clock.now += sale_gauges.CACHE_SECONDS
    assert live in _gauged_sales(collector)
    again = _reads(clients.sales_redis)
    assert again["hgetall"] > after["hgetall"]
    assert again["hget"] - after["hget"] == again["hgetall"] - after["hgetall"]  # ends read once


def test_metrics_endpoint_shows_a_live_sale(client, clients: Clients) -> None:
    sale_id = open_sale(clients, 3)
    for collector in metrics._live_sources.values():
        collector._at = None  # a collector made by an earlier test's app may hold its answer
    body = client.get("/metrics").get_data(as_text=True)
    assert f'flashsale_sale_units{{sale_id="{sale_id}",state="available"}} 3.0' in body


def test_a_scrape_reads_the_sales_of_the_app_that_serves_it(settings, clients: Clients, make_clients) -> None:
    """Tests make many apps in one process: an app made and closed earlier must not leave its
    (closed) clients to the gauges of the app scraped now."""
    from api.app import create_app

    earlier_clients = make_clients(settings)
    create_app(settings, earlier_clients).test_client().get("/metrics")
    earlier_clients.close()
    sale_id = open_sale(clients, 2)
    body = create_app(settings, clients).test_client().get("/metrics").get_data(as_text=True)
    assert f'flashsale_sale_units{{sale_id="{sale_id}",state="available"}} 2.0' in body
