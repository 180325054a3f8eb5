"""The verifier against a real sale in Redis and MongoDB: it passes on a sale that was sold
honestly, and fails on each kind of corruption it promises to catch."""

from __future__ import annotations

import pytest

from common.billing.payments import apply_intent
from common.flash_sale import sale_keys, waiting_room
from loadtests.verify import verify_sale
from tests.waiting_room_helpers import card_token, drain, open_sale, payment_context

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _failed(report) -> list[str]:
    return [check.name for check in report.checks if not check.passed]


@pytest.fixture
def sold_sale(clients):
    """Two units, four shoppers: both reservations paid, two tickets sold out."""
    sale_id = open_sale(clients, stock=2, product_stock=2)
    tickets = [waiting_room.admit(clients.redis, sale_id, f"shopper-{i}", 1).ticket["id"]
               for i in range(4)]
    drain(clients, sale_id)
    ctx = payment_context(clients)
    for ticket_id in tickets[:2]:
        intent_id = waiting_room.read_ticket(clients.redis, ticket_id)["reservation"]["payment_intent_id"]
        ctx.gateway.confirm_with_card_token(intent_id, card_token(clients.settings.stripe_api_base),
                                            email="shopper@example.com")
        assert apply_intent(ctx, intent_id) == "paid"
    return sale_id, tickets


def test_an_honest_sold_out_sale_passes_every_check(clients, sold_sale):
    sale_id, _ = sold_sale
    report = verify_sale(clients.redis, clients.db, sale_id, expect_sold_out=True)
    assert report.passed, report.lines()
    assert len(report.audit.tickets) == 4
    assert sorted(t.status for t in report.audit.tickets) == ["paid", "paid", "sold_out", "sold_out"]


def test_extra_available_stock_fails_the_stock_invariant(clients, sold_sale):
    sale_id, _ = sold_sale
    clients.redis.hincrby(sale_keys.counters_key(sale_id), "available", 1)
    report = verify_sale(clients.redis, clients.db, sale_id)
    assert not report.passed
    assert _failed(report) == ["available + reserved + sold == stock_total"]


def test_negative_stock_and_an_oversold_sale_fail(clients, sold_sale):
    sale_id, tickets = sold_sale
    counters = sale_keys.counters_key(sale_id)
    clients.redis.hset(counters, "available", -1)
    clients.redis.hincrby(counters, "reserved", 1)
    # A sold-out ticket that was reserved anyway: one reservation too many.
    clients.redis.hset(sale_keys.ticket_key(sale_id, tickets[3]), "status", "reserved")
    clients.redis.hincrby(counters, "sold_out", -1)
    failed = _failed(verify_sale(clients.redis, clients.db, sale_id))
    assert "stock never negative" in failed
    assert "successful reservations <= stock" in failed


def test_a_second_order_for_one_payment_fails(clients, sold_sale):
    sale_id, _ = sold_sale
    order = clients.db.orders.find_one({"sale_id": sale_id})
    clients.db.orders.insert_one(order | {"_id": "ord_copy", "payment_intent_id": "pi_other"})
    failed = _failed(verify_sale(clients.redis, clients.db, sale_id, expect_sold_out=True))
    assert "one reservation and PaymentIntent per ticket, one order per payment" in failed
    assert "orders = sold" in failed


def test_a_lost_ticket_and_a_wrong_status_count_fail(clients, sold_sale):
    sale_id, tickets = sold_sale
    clients.redis.delete(sale_keys.ticket_key(sale_id, tickets[2]))
    failed = _failed(verify_sale(clients.redis, clients.db, sale_id))
    assert failed == ["every issued ticket in exactly one status"]


def test_a_sale_not_sold_out_fails_the_paid_run_check(clients):
    sale_id = open_sale(clients, stock=3, product_stock=3)
    waiting_room.admit(clients.redis, sale_id, "only-one", 1)
    drain(clients, sale_id)
    report = verify_sale(clients.redis, clients.db, sale_id, expect_sold_out=True)
    assert _failed(report) == ["after a paid run: orders = initial stock, product stock 0"]
    assert verify_sale(clients.redis, clients.db, sale_id).passed
