"""The operator steers a live sale over HTTP against `flashsale run`: every control holds at once
in every process (gunicorn's API processes, the Celery workers deciding, beat)."""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest

from tests.e2e.shop import Shopper, admin, create_sale

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TTL = 300


def test_pause_pace_cap_and_end_hold_across_the_running_system(system):
    operator = admin(system.url)
    sale_id = create_sale(operator, stock=50, product_stock=50, ttl=TTL, lobby_opens_in=None)["id"]
    path = f"/api/sales/{sale_id}"
    with ThreadPoolExecutor(8) as pool:
        shoppers = list(pool.map(lambda _: Shopper(system.url).register(), range(9)))

    assert operator.call("PATCH", path, json={"paused": True}).status_code == 200
    tickets = [shopper.join(sale_id).json()["id"] for shopper in shoppers[:6]]
    time.sleep(3)  # beat drains every second and the join nudges a worker: nothing is decided
    seen = [shopper.ticket(ticket) for shopper, ticket in zip(shoppers, tickets, strict=False)]
    assert {ticket["status"] for ticket in seen} == {"queued"}
    assert all(ticket["paused"] is True and ticket["eta_seconds"] is None for ticket in seen)

    resumed = operator.call("PATCH", path, json={"paused": False, "outflow_per_second": 2})
    assert resumed.status_code == 200 and resumed.json()["pacing"]["per_second"] == 2
    decided = [shopper.wait_for(ticket, {"reserved"}, timeout=30)
               for shopper, ticket in zip(shoppers, tickets, strict=False)]
    assert {ticket["status"] for ticket in decided} == {"reserved"}
    moments = [datetime.fromisoformat(ticket["reservation"]["expires_at"].replace("Z", "+00:00"))
               .timestamp() - TTL for ticket in decided]
    per_second = Counter(int(moment) for moment in moments)
    print(f"\n6 tickets decided at 2/s over {max(moments) - min(moments):.2f}s: {dict(per_second)}")
    assert max(per_second.values()) <= 2 and max(moments) - min(moments) >= 2.0

    assert operator.call("PATCH", path, json={"queue_cap": 7}).status_code == 200
    assert shoppers[6].join(sale_id).status_code == 202
    full = shoppers[7].join(sale_id)
    assert full.status_code == 409 and full.json()["error"]["code"] == "queue_full"

    assert operator.call("POST", f"{path}/end").status_code == 200
    late = shoppers[8].join(sale_id)
    assert late.status_code == 409 and late.json()["error"]["code"] == "sale_not_open"
    seventh = shoppers[6].call("GET", f"/api/sales/{sale_id}/tickets/mine").json()
    ended = shoppers[6].wait_for(seventh["id"], {"sold_out", "reserved"}, timeout=30)
    assert ended["status"] == "sold_out" and ended["reason"] == "sale_ended"
    # Reservations keep their time to pay.
    assert all(shopper.ticket(ticket)["status"] == "reserved"
               for shopper, ticket in zip(shoppers, tickets, strict=False))
