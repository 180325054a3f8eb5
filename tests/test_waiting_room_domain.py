"""Waiting-room rules through common/, against the real Redis, MongoDB and Stripe emulator."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from common.auditing.reconcile import reconcile_sale
from common.billing import payments
from common.billing.payments import apply_intent
from common.flash_sale import reservations, sale_keys, sales, waiting_room
from common.flash_sale.tickets import TRANSITIONS, TicketStatus, poll_after_ms
from common.platform.errors import PurchaseLimitReached, QuantityTooLarge, RateLimited, SaleNotOpen, SoldOut
from tests.waiting_room_helpers import card_token, drain, gateway_for, open_sale, payment_context


def _statuses(clients, ticket_ids):
    return [waiting_room.read_ticket(clients.sales_redis, t)["status"] for t in ticket_ids]


def test_stock_100_and_200_shoppers_gives_100_reserved_and_100_sold_out(clients):
    sale_id = open_sale(clients, stock=100)
    with ThreadPoolExecutor(32) as pool:
        admissions = list(pool.map(
            lambda i: waiting_room.admit(clients.sales_redis, sale_id, f"user-{i}", 1), range(200)))
    assert all(a.created for a in admissions)
    report = drain(clients, sale_id)
    assert report.decided == 200 and report.reserved == 100 and report.sold_out == 100
    tickets = [waiting_room.read_ticket(clients.sales_redis, a.ticket["id"]) for a in admissions]
    reserved = [t for t in tickets if t["status"] == "reserved"]
    assert len(reserved) == 100
    assert sum(t["status"] == "sold_out" for t in tickets) == 100
    # Reserved means a PaymentIntent exists for it, one per ticket.
    intents = {t["reservation"]["payment_intent_id"] for t in reserved}
    assert len(intents) == 100 and all(i.startswith("pi_") for i in intents)
    # First come, first served: the reserved ones are the first 100 in arrival order.
    by_seq = sorted(tickets, key=lambda t: clients.sales_redis.hget(
        sale_keys.ticket_key(sale_id, t["id"]), "seq") and int(clients.sales_redis.hget(
            sale_keys.ticket_key(sale_id, t["id"]), "seq")))
    assert [t["status"] for t in by_seq[:100]] == ["reserved"] * 100
    counters = sales.read_counters(clients.sales_redis, sale_id)
    assert counters.available == 0 and counters.reserved == 100 and counters.consistent
    assert counters.queued == 0
    # Nothing left to reserve but reservations outstanding: still admitted (they may expire).
    late = waiting_room.admit(clients.sales_redis, sale_id, "late-user", 1)
    assert late.created


def test_admission_rate_parses_the_settings_text():
    rate = waiting_room.AdmissionRate.parse("20 per second")
    assert (rate.interval_ms, rate.allowance_ms) == (50, 950)
    rate = waiting_room.AdmissionRate.parse("10/minute")
    assert (rate.interval_ms, rate.allowance_ms) == (6000, 54_000)


def test_admission_rate_limit_is_per_shopper_inside_the_admission_round_trip(clients):
    sale_id = open_sale(clients, stock=5)
    rate = waiting_room.AdmissionRate.parse("3 per 10 seconds")
    outcomes = [waiting_room.admit(clients.sales_redis, sale_id, "hammer", 1, rate).created for _ in range(3)]
    assert outcomes == [True, False, False]  # one ticket, then the same ticket again
    with pytest.raises(RateLimited) as refused:
        waiting_room.admit(clients.sales_redis, sale_id, "hammer", 1, rate)
    # The next slot opens one interval (10 s / 3) after the burst: Retry-After rounds up.
    assert refused.value.status == 429 and refused.value.headers["Retry-After"] == "4"
    assert refused.value.details == {"limit": "3 per 10 seconds"}
    # Refused attempts do not push the window further, and another shopper is not slowed.
    assert waiting_room.admit(clients.sales_redis, sale_id, "other", 1, rate).created
    counters = sales.read_counters(clients.sales_redis, sale_id)
    assert counters.issued == 2
    assert clients.sales_redis.xlen(sale_keys.stream_key(sale_id)) == 2


def test_admission_nudges_workers_only_when_no_decider_holds_the_sale(clients):
    sale_id = open_sale(clients, stock=5)
    clients.sales_redis.set(sale_keys.drain_lock_key(sale_id), "a-live-decider", px=5000)
    held = waiting_room.admit(clients.sales_redis, sale_id, "while-held", 1)
    assert held.created and not held.kick
    assert reservations.has_undecided_tickets(clients.sales_redis, sale_id)
    clients.sales_redis.delete(sale_keys.drain_lock_key(sale_id))
    free = waiting_room.admit(clients.sales_redis, sale_id, "while-free", 1)
    assert free.created and free.kick
    drain(clients, sale_id)
    assert not reservations.has_undecided_tickets(clients.sales_redis, sale_id)


def _pay(clients, ticket_id, number="4242424242424242"):
    intent_id = waiting_room.read_ticket(clients.sales_redis, ticket_id)["reservation"]["payment_intent_id"]
    ctx = payment_context(clients)
    ctx.gateway.confirm_with_card_token(intent_id, card_token(clients.settings.stripe_api_base, number),
                                        email="shopper@example.com")
    return apply_intent(ctx, intent_id)


def test_admission_is_idempotent_per_user_and_checks_limits(clients):
    sale_id = open_sale(clients, stock=5, per_user_limit=2)
    first = waiting_room.admit(clients.sales_redis, sale_id, "alice", 1)
    again = waiting_room.admit(clients.sales_redis, sale_id, "alice", 1)
    assert first.created and not again.created and again.ticket["id"] == first.ticket["id"]
    with pytest.raises(QuantityTooLarge):
        waiting_room.admit(clients.sales_redis, sale_id, "bob", 3)
    drain(clients, sale_id)
    assert _pay(clients, first.ticket["id"]) == "paid"
    # Alice bought 1 of her 2: another ticket for 2 would exceed the limit, for 1 it does not.
    with pytest.raises(PurchaseLimitReached):
        waiting_room.admit(clients.sales_redis, sale_id, "alice", 2)
    assert waiting_room.admit(clients.sales_redis, sale_id, "alice", 1).created


def test_sale_window_and_sold_out_answers(clients):
    scheduled = open_sale(clients, stock=1, starts_in=3600)
    with pytest.raises(SaleNotOpen) as err:
        waiting_room.admit(clients.sales_redis, scheduled, "u", 1)
    assert err.value.details == {"sale_status": "scheduled"}
    ended = open_sale(clients, stock=1, starts_in=-10, lasts=5)
    with pytest.raises(SaleNotOpen):
        waiting_room.admit(clients.sales_redis, ended, "u", 1)

    sale_id = open_sale(clients, stock=1)
    ticket = waiting_room.admit(clients.sales_redis, sale_id, "buyer", 1).ticket
    drain(clients, sale_id)
    reservation = waiting_room.read_ticket(clients.sales_redis, ticket["id"])["reservation"]
    intent_id = reservation["payment_intent_id"]
    ctx = payment_context(clients)
    ctx.gateway.confirm_with_card_token(intent_id, card_token(clients.settings.stripe_api_base),
                                        email="buyer@example.com")
    assert apply_intent(ctx, intent_id) == "paid"
    length_before = clients.sales_redis.xlen(sale_keys.stream_key(sale_id))
    with pytest.raises(SoldOut):
        waiting_room.admit(clients.sales_redis, sale_id, "someone-else", 1)
    assert clients.sales_redis.xlen(sale_keys.stream_key(sale_id)) == length_before


def test_position_and_eta_come_from_counters_and_poll_interval_grows(clients):
    sale_id = open_sale(clients, stock=10)
    tickets = [waiting_room.admit(clients.sales_redis, sale_id, f"p{i}", 1).ticket for i in range(5)]
    assert [t["position"] for t in tickets] == [1, 2, 3, 4, 5]
    assert all(t["status"] == "queued" and t["eta_seconds"] >= 1 for t in tickets)
    # The served counter moves the line without touching the stream.
    clients.sales_redis.hset(sale_keys.counters_key(sale_id), "served", 3)
    assert waiting_room.read_ticket(clients.sales_redis, tickets[4]["id"])["position"] == 2
    assert poll_after_ms(1) == 500 and poll_after_ms(10_000) > poll_after_ms(100) > poll_after_ms(1)
    assert poll_after_ms(10**7) == 10_000


def test_decisions_are_idempotent_and_never_oversell(clients):
    sale_id = open_sale(clients, stock=3)
    ids = [waiting_room.admit(clients.sales_redis, sale_id, f"q{i}", 1).ticket["id"] for i in range(5)]
    first = reservations.decide_batch(clients.sales_redis, sale_id, ids)
    again = reservations.decide_batch(clients.sales_redis, sale_id, ids)
    assert [o for _, o in first] == ["reserving"] * 3 + ["sold_out"] * 2
    assert [o for _, o in again] == ["already:reserving"] * 3 + ["already:sold_out"] * 2
    counters = sales.read_counters(clients.sales_redis, sale_id)
    assert (counters.available, counters.reserved) == (0, 3)


def test_a_ticket_never_gets_two_payment_intents(clients):
    sale_id = open_sale(clients, stock=1)
    ticket_id = waiting_room.admit(clients.sales_redis, sale_id, "racer", 1).ticket["id"]
    reservations.decide_batch(clients.sales_redis, sale_id, [ticket_id])
    gateway = gateway_for(clients)
    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(
            lambda _: reservations.attach_payment_intent(clients.sales_redis, gateway, sale_id, ticket_id),
            range(4)))
    assert "attached" in outcomes
    intent = clients.sales_redis.hget(sale_keys.ticket_key(sale_id, ticket_id), "payment_intent_id")
    assert intent and waiting_room.read_ticket(clients.sales_redis, ticket_id)["status"] == "reserved"


def test_expiry_returns_stock_to_the_next_in_line(clients):
    sale_id = open_sale(clients, stock=1, ttl=1)
    first = waiting_room.admit(clients.sales_redis, sale_id, "slow", 1).ticket["id"]
    drain(clients, sale_id)
    second = waiting_room.admit(clients.sales_redis, sale_id, "next", 1).ticket["id"]
    drain(clients, sale_id)
    assert _statuses(clients, [first, second]) == ["reserved", "sold_out"]
    time.sleep(1.1)
    expired = reservations.expire_due_reservations(clients.sales_redis, sale_id)
    assert [t for t, _ in expired] == [first]
    assert reservations.expire_due_reservations(clients.sales_redis, sale_id) == []  # once only
    intent_id = expired[0][1]
    assert gateway_for(clients).cancel(intent_id).status == "canceled"
    third = waiting_room.admit(clients.sales_redis, sale_id, "third", 1).ticket["id"]
    drain(clients, sale_id)
    assert _statuses(clients, [first, third]) == ["expired", "reserved"]
    assert sales.read_counters(clients.sales_redis, sale_id).consistent


def test_cancel_gives_stock_back_at_once_and_is_owner_only(clients):
    from common.platform.errors import NotFound, TicketNotActive

    sale_id = open_sale(clients, stock=1)
    ticket_id = waiting_room.admit(clients.sales_redis, sale_id, "owner", 1).ticket["id"]
    drain(clients, sale_id)
    gateway = gateway_for(clients)
    intent_id = waiting_room.read_ticket(clients.sales_redis, ticket_id)["reservation"]["payment_intent_id"]
    with pytest.raises(NotFound):
        payments.cancel_ticket(clients.sales_redis, gateway, ticket_id, "intruder")
    ticket = payments.cancel_ticket(clients.sales_redis, gateway, ticket_id, "owner")
    assert ticket["status"] == "cancelled"
    # Cancelled at Stripe before the ticket was: it can never be charged.
    assert gateway.retrieve(intent_id).status == "canceled"
    assert clients.sales_redis.zcard(sale_keys.intent_cancels_key(sale_id)) == 0
    counters = sales.read_counters(clients.sales_redis, sale_id)
    assert (counters.available, counters.reserved, counters.cancelled) == (1, 0, 1)
    with pytest.raises(TicketNotActive):
        payments.cancel_ticket(clients.sales_redis, gateway, ticket_id, "owner")


def test_payment_succeeds_once_even_when_applied_five_times_concurrently(clients):
    sale_id = open_sale(clients, stock=2, product_stock=2)
    ticket_id = waiting_room.admit(clients.sales_redis, sale_id, "payer", 1).ticket["id"]
    drain(clients, sale_id)
    intent_id = waiting_room.read_ticket(clients.sales_redis, ticket_id)["reservation"]["payment_intent_id"]
    ctx = payment_context(clients)
    ctx.gateway.confirm_with_card_token(intent_id, card_token(clients.settings.stripe_api_base),
                                        email="p@example.com")
    with ThreadPoolExecutor(5) as pool:
        outcomes = list(pool.map(lambda _: apply_intent(payment_context(clients), intent_id), range(5)))
    assert outcomes.count("paid") == 1, outcomes
    assert clients.db.orders.count_documents({"ticket_id": ticket_id}) == 1
    ticket = waiting_room.read_ticket(clients.sales_redis, ticket_id)
    order = clients.db.orders.find_one({"ticket_id": ticket_id})
    assert ticket["status"] == "paid" and ticket["order_id"] == order["_id"]
    assert order["status"] == "paid" and order["payment_intent_id"] == intent_id
    product = clients.db.products.find_one({"_id": order["items"][0]["product_id"]})
    assert product["stock"] == 0  # both units left the catalogue when the sale was created
    counters = sales.read_counters(clients.sales_redis, sale_id)
    assert (counters.available, counters.reserved, counters.sold) == (1, 0, 1)
    assert reconcile_sale(ctx, sale_id).consistent


@pytest.mark.parametrize("stock_left", [True, False], ids=["honoured", "refunded"])
def test_payment_after_expiry_is_honoured_or_refunded(clients, stock_left):
    sale_id = open_sale(clients, stock=1, ttl=1)
    late = waiting_room.admit(clients.sales_redis, sale_id, "late-payer", 1).ticket["id"]
    drain(clients, sale_id)
    intent_id = waiting_room.read_ticket(clients.sales_redis, late)["reservation"]["payment_intent_id"]
    time.sleep(1.1)
    assert reservations.expire_due_reservations(clients.sales_redis, sale_id)[0][0] == late
    if not stock_left:
        taker = waiting_room.admit(clients.sales_redis, sale_id, "taker", 1).ticket["id"]
        drain(clients, sale_id)
        assert waiting_room.read_ticket(clients.sales_redis, taker)["status"] == "reserved"
    # The shopper's payment lands at Stripe before our cancellation does.
    ctx = payment_context(clients)
    ctx.gateway.confirm_with_card_token(intent_id, card_token(clients.settings.stripe_api_base),
                                        email="late@example.com")
    outcome = apply_intent(ctx, intent_id)
    ticket = waiting_room.read_ticket(clients.sales_redis, late)
    counters = sales.read_counters(clients.sales_redis, sale_id)
    if stock_left:
        assert outcome == "honoured" and ticket["status"] == "paid"
        assert clients.db.orders.count_documents({"ticket_id": late}) == 1
        assert (counters.available, counters.sold, counters.expired) == (0, 1, 0)
    else:
        assert outcome == "refunded" and ticket["status"] == "expired" and ticket["refunded"] is True
        assert clients.db.orders.count_documents({"ticket_id": late}) == 0
        assert (counters.available, counters.reserved, counters.sold) == (0, 1, 0)
    assert counters.consistent
    assert apply_intent(ctx, intent_id) in ("already_paid", "already_refunded")


def test_declined_payment_releases_the_reservation(clients):
    from common.platform.errors import PaymentDeclined

    sale_id = open_sale(clients, stock=1)
    ticket_id = waiting_room.admit(clients.sales_redis, sale_id, "declined", 1).ticket["id"]
    drain(clients, sale_id)
    intent_id = waiting_room.read_ticket(clients.sales_redis, ticket_id)["reservation"]["payment_intent_id"]
    ctx = payment_context(clients)
    api_base = clients.settings.stripe_api_base
    # A card refused when attached: the shopper may try another card while the hold lasts.
    with pytest.raises(PaymentDeclined):
        ctx.gateway.confirm_with_card_token(intent_id, card_token(api_base, "4000000000000002"),
                                            email="d@example.com")
    assert apply_intent(ctx, intent_id) == "unchanged"
    assert waiting_room.read_ticket(clients.sales_redis, ticket_id)["status"] == "reserved"
    # A charge declined by the bank: the reservation is released at once.
    with pytest.raises(PaymentDeclined):
        ctx.gateway.confirm_with_card_token(intent_id, card_token(api_base, "4000000000000341"),
                                            email="d@example.com")
    assert apply_intent(ctx, intent_id) == "payment_failed"
    assert waiting_room.read_ticket(clients.sales_redis, ticket_id)["status"] == "payment_failed"
    counters = sales.read_counters(clients.sales_redis, sale_id)
    assert (counters.available, counters.reserved, counters.payment_failed) == (1, 0, 1)
    assert ctx.gateway.retrieve(intent_id).status == "canceled"


def test_reconcile_repairs_an_order_lost_between_redis_and_mongodb(clients):
    sale_id = open_sale(clients, stock=1)
    ticket_id = waiting_room.admit(clients.sales_redis, sale_id, "lost", 1).ticket["id"]
    drain(clients, sale_id)
    intent_id = waiting_room.read_ticket(clients.sales_redis, ticket_id)["reservation"]["payment_intent_id"]
    ctx = payment_context(clients)
    ctx.gateway.confirm_with_card_token(intent_id, card_token(clients.settings.stripe_api_base),
                                        email="l@example.com")
    apply_intent(ctx, intent_id)
    clients.db.orders.delete_many({"ticket_id": ticket_id})  # as if the write was lost
    report = reconcile_sale(ctx, sale_id)
    assert report.orders_missing == [ticket_id] and report.orders_repaired == [ticket_id]
    assert report.consistent
    assert clients.db.orders.count_documents({"ticket_id": ticket_id}) == 1


def test_the_periodic_reconcile_reports_drift_only_when_its_next_run_sees_it_again(clients):
    """A payment in flight looks like a mismatch for a moment: the periodic run (confirm) names
    it drift only on a second sighting; a lasting one is reported on the next run."""
    sale_id = open_sale(clients, stock=3)
    ctx = payment_context(clients)
    counters = sale_keys.counters_key(sale_id)
    clients.sales_redis.hincrby(counters, "sold", 1)  # as if a payment were half way
    assert reconcile_sale(ctx, sale_id, confirm=True).consistent
    clients.sales_redis.hincrby(counters, "sold", -1)  # ...and it finished
    assert reconcile_sale(ctx, sale_id, confirm=True).consistent
    clients.sales_redis.hincrby(counters, "available", -1)  # a unit really lost
    assert reconcile_sale(ctx, sale_id, confirm=True).consistent
    lasting = reconcile_sale(ctx, sale_id, confirm=True)
    assert not lasting.consistent and any("stock_total" in p for p in lasting.problems)
    assert not reconcile_sale(ctx, sale_id).consistent  # without confirm: at once


def test_the_periodic_reconcile_leaves_a_fresh_settlement_to_its_own_task(clients):
    sale_id = open_sale(clients, stock=1)
    ticket_id = waiting_room.admit(clients.sales_redis, sale_id, "fresh", 1).ticket["id"]
    drain(clients, sale_id)
    intent_id = waiting_room.read_ticket(clients.sales_redis, ticket_id)["reservation"]["payment_intent_id"]
    ctx = payment_context(clients)
    ctx.gateway.confirm_with_card_token(intent_id, card_token(clients.settings.stripe_api_base),
                                        email="f@example.com")
    apply_intent(ctx, intent_id)
    # The order being written right now (its task between the Redis step and MongoDB):
    clients.db.orders.delete_many({"ticket_id": ticket_id})
    clients.sales_redis.hset(sale_keys.ticket_key(sale_id, ticket_id), "status", "settling")
    report = reconcile_sale(ctx, sale_id, settle_grace_ms=30_000, confirm=True)
    assert report.orders_missing == [] and clients.db.orders.count_documents({"ticket_id": ticket_id}) == 0
    # Past the grace it is repaired, as before.
    assert reconcile_sale(ctx, sale_id, settle_grace_ms=0).orders_repaired == [ticket_id]


def test_final_statuses_never_move_except_a_late_payment_for_an_expired_ticket():
    for status in (TicketStatus.PAID, TicketStatus.SOLD_OUT, TicketStatus.CANCELLED,
                   TicketStatus.PAYMENT_FAILED):
        assert TRANSITIONS[status] == frozenset()
    assert TRANSITIONS[TicketStatus.EXPIRED] == frozenset({TicketStatus.SETTLING})


def test_flashsale_reconcile_reports_drift_with_exit_status(settings, clients):
    import subprocess
    import sys
    from pathlib import Path

    from tests.conftest import settings_env

    sale_id = open_sale(clients, stock=3)
    command = [str(Path(sys.executable).parent / "flashsale"), "reconcile", "--sale", sale_id]
    ok = subprocess.run(command, env=settings_env(settings), capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and f"OK    {sale_id}" in ok.stdout, ok.stderr
    clients.sales_redis.hincrby(sale_keys.counters_key(sale_id), "available", 1)  # a unit from nowhere
    drift = subprocess.run(command, env=settings_env(settings), capture_output=True, text=True, timeout=60)
    assert drift.returncode == 1 and "DRIFT" in drift.stdout and "stock_total" in drift.stdout
