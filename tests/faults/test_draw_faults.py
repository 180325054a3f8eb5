"""A draw sale's walk under a process fault, with real `flashsale serve` processes on a Redis
of the test's own: the worker walking the draw is SIGKILLed in the middle, another worker takes
over (beat sends the walk every second; the killed walker's draw lock lapses), and the walk
resumes at its cursor: nothing captured twice, every loser released, the auditor clean."""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime, timedelta

import pytest

from common.auditing.audit import audit_sale, read_sale_snapshot
from common.billing import holds
from common.flash_sale import sale_keys, sales, waiting_room
from tests.faults.services import wait_until
from tests.waiting_room_helpers import card_token, gateway_for, make_product

pytestmark = [pytest.mark.slow]


def test_worker_killed_in_the_middle_of_the_walk_resumes_without_capturing_twice(
        fault_settings, fault_clients, spawn):
    clients = fault_clients
    stock, entrants = 5, 24
    now = datetime.now(UTC)
    sale = sales.create_sale(
        clients.db, clients.redis, product_id=make_product(clients, stock), stock=stock,
        price_cents=1999, starts_at=now + timedelta(seconds=25), ends_at=now + timedelta(hours=1),
        lobby_opens_at=now - timedelta(seconds=1), mode=sales.SaleMode.DRAW)
    sale_id = sale["_id"]
    gateway = gateway_for(clients)
    user_ids = [f"usr_walk{time.time_ns()}{i}" for i in range(entrants)]
    clients.db.users.insert_many([{"_id": u, "email": f"{u}@example.com", "created_at": now}
                                  for u in user_ids])
    holds_by_ticket = {}
    for user_id in user_ids:
        ticket = waiting_room.admit(clients.redis, sale_id, user_id, 1).ticket
        intent = holds.place_hold(clients.redis, clients.db, gateway, ticket_id=ticket["id"],
                                  user_id=user_id,
                                  card_token=card_token(str(fault_settings.stripe_api_base)))
        assert intent.status == "requires_capture"
        holds_by_ticket[ticket["id"]] = intent.id
    assert datetime.now(UTC) < sale["starts_at"], "the entries took longer than the lobby"

    # A slow walk (3 Stripe calls a second), so that the kill lands in the middle of it.
    slow = {"DRAW_STRIPE_CALLS_PER_SECOND": "3"}
    victim = spawn("worker", fault_settings, label="walker-killed", **slow)
    spawn("beat", fault_settings, label="beat")
    draw_key = sale_keys.draw_key(sale_id)
    wait_until(lambda: int(clients.redis.hget(draw_key, "walked") or 0) >= 2, 90, interval=0.05,
               message="the walk to get going")
    os.kill(victim.pid, signal.SIGKILL)
    victim.popen.wait(10)  # type: ignore[union-attr]
    at_kill = int(clients.redis.hget(draw_key, "walked") or 0)
    print(f"\nwalker killed at entry {at_kill} of {entrants}")
    assert at_kill < entrants

    spawn("worker", fault_settings, label="walker-after", **slow)
    wait_until(lambda: clients.redis.hget(sale_keys.counters_key(sale_id), "lobby_done") == "1", 120,
               message="the resumed walk to finish")

    tickets = {t: waiting_room.read_ticket(clients.redis, t) for t in holds_by_ticket}
    statuses = sorted(t["status"] for t in tickets.values())
    assert statuses == ["not_selected"] * (entrants - stock) + ["paid"] * stock
    for ticket_id, intent_id in holds_by_ticket.items():
        at_stripe = clients.stripe.v1.payment_intents.retrieve(intent_id).to_dict()["status"]
        expected = "succeeded" if tickets[ticket_id]["status"] == "paid" else "canceled"
        assert at_stripe == expected, (ticket_id, at_stripe)
    assert clients.db.orders.count_documents({"sale_id": sale_id, "status": "paid"}) == stock
    snapshot = read_sale_snapshot(clients.redis, clients.db, sale_id, stripe_client=clients.stripe)
    assert audit_sale(snapshot, settled=True, allow_reserved=False) == []
