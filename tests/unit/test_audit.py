"""The sale auditor on snapshots built by hand (no servers): a consistent sale passes, and each
check fires on the corruption it names."""

from __future__ import annotations

from dataclasses import replace

import pytest

from common.auditing.audit import (
    IntentRecord,
    Invariant,
    OrderRecord,
    SaleConfig,
    SaleSnapshot,
    TicketRecord,
    Violation,
    audit_sale,
    check_final_stays_final,
    check_money,
    check_outcomes,
    check_per_user_limit,
    check_status_history,
    check_stock,
    move_allowed,
)
from common.flash_sale.sales import SaleCounters
from common.flash_sale.tickets import FINAL, TicketStatus

SALE = "sal_00000000000000aa"


def tid(n: int) -> str:
    return f"tkt_00000000000000aa_{n:032x}"


def ticket(n: int, status: str, user: str, **extra: object) -> TicketRecord:
    fields: dict[str, object] = {"id": tid(n), "status": status, "quantity": 1, "user_id": user}
    if status != "queued" and status != "sold_out":
        fields |= {"payment_intent_id": f"pi_{n}", "expires_at_ms": 1_000}
    if status == "paid":
        fields["order_id"] = f"ord_{n}"
    fields |= extra
    return TicketRecord(**fields)  # type: ignore[arg-type]


def order(n: int, user: str) -> OrderRecord:
    return OrderRecord(id=f"ord_{n}", ticket_id=tid(n), payment_intent_id=f"pi_{n}", user_id=user,
                       status="paid", units=1, amount_cents=2500)


def intent(n: int, status: str = "succeeded", refunds: int = 0) -> IntentRecord:
    return IntentRecord(f"pi_{n}", status, 2500, {"kind": "sale", "sale_id": SALE, "ticket_id": tid(n)},
                        refunds)


def snapshot(tickets: list[TicketRecord], orders: list[OrderRecord], *, stock: int = 3,
             per_user_limit: int = 1, intents: list[IntentRecord] | None = None) -> SaleSnapshot:
    """A snapshot whose counters and indexes agree with the tickets given."""
    def count(*statuses: str) -> list[TicketRecord]:
        return [t for t in tickets if t.status in statuses]

    reserved = sum(t.quantity for t in count("reserving", "reserved"))
    sold = sum(t.quantity for t in count("settling", "paid"))
    held: dict[str, int] = {}
    for t in count("reserving", "reserved", "settling", "paid"):
        held[t.user_id] = held.get(t.user_id, 0) + t.quantity
    counters = SaleCounters(
        stock_total=stock, available=stock - reserved - sold, reserved=reserved, sold=sold,
        issued=len(tickets), served=len(tickets), queued=len(count("queued")),
        sold_out=len(count("sold_out")), expired=len(count("expired")), cancelled=len(count("cancelled")),
        payment_failed=len(count("payment_failed")), paid=len(count("paid")), rate=0.0)
    return SaleSnapshot(
        sale_id=SALE, config=SaleConfig(stock_total=stock, per_user_limit=per_user_limit),
        counters=counters, stream_ids=[t.id for t in tickets], tickets={t.id: t for t in tickets},
        orders=orders, intents=None if intents is None else {i.id: i for i in intents},
        live_tickets={t.user_id: t.id for t in count("queued", "reserving", "reserved")},
        held_by_user=held, expiring=frozenset(t.id for t in count("reserving", "reserved")),
        settled=frozenset(t.id for t in count("settling", "paid")))


def codes(violations: list[Violation]) -> set[tuple[Invariant, str]]:
    return {(v.invariant, v.code) for v in violations}


@pytest.fixture
def honest() -> SaleSnapshot:
    """Three units: two paid by two shoppers, one reserved, one sold out, one cancelled."""
    tickets = [ticket(1, "paid", "ann"), ticket(2, "paid", "bob"), ticket(3, "reserved", "cat"),
               ticket(4, "sold_out", "dan"), ticket(5, "cancelled", "eve")]
    return snapshot(tickets, [order(1, "ann"), order(2, "bob")],
                    intents=[intent(1), intent(2), intent(3, "requires_payment_method"),
                             intent(5, "canceled")])


def test_an_honest_sale_has_no_violation(honest):
    assert audit_sale(honest, settled=True) == []


def test_stock_equation_negative_and_oversold(honest):
    counters = honest.counters
    assert counters is not None
    broken = replace(honest, counters=replace(counters, available=-1))
    assert codes(check_stock(broken)) == {(Invariant.STOCK, "stock_equation"),
                                          (Invariant.STOCK, "negative_counter")}
    oversold = replace(honest, config=replace(honest.config, stock_total=2),
                       counters=replace(counters, stock_total=2, available=-1))
    assert (Invariant.STOCK, "oversold") in codes(check_stock(oversold))


def test_orders_may_lag_sold_only_while_unsettled(honest):
    lagging = replace(honest, orders=honest.orders[:1])
    assert (Invariant.STOCK, "orders_mismatch") in codes(check_stock(lagging, orders_complete=True))
    assert check_stock(lagging, orders_complete=False) == []


def test_a_status_counter_that_disagrees_and_an_unsettled_ticket(honest):
    counters = honest.counters
    assert counters is not None
    wrong = replace(honest, counters=replace(counters, cancelled=0))
    assert codes(check_outcomes(wrong)) == {(Invariant.OUTCOMES, "counter_mismatch")}
    assert (Invariant.OUTCOMES, "not_final") in codes(
        check_outcomes(honest, settled=True, allow_reserved=False))


def test_two_orders_for_one_ticket_break_one_per_ticket(honest):
    copy = replace(honest.orders[0], id="ord_copy")
    found = codes(audit_sale(replace(honest, orders=[*honest.orders, copy])))
    assert (Invariant.ONE_PER_TICKET, "two_orders") in found
    assert (Invariant.ONE_PER_TICKET, "intent_two_orders") in found


def test_per_user_limit_over_by_one():
    """The bug this auditor was written for: limit 1, T1 honoured late after T2 was paid."""
    tickets = [ticket(1, "paid", "ann", honoured_after="cancelled"), ticket(2, "paid", "ann")]
    sale = snapshot(tickets, [order(1, "ann"), order(2, "ann")])
    assert check_per_user_limit(sale) == [
        Violation(Invariant.PER_USER_LIMIT, "over_limit", "user ann has 2 units (held + paid), limit 1",
                  "ann")]
    assert check_per_user_limit(replace(sale, config=replace(sale.config, per_user_limit=2))) == []


def test_per_user_limit_counts_held_and_paid_units_once_each():
    # A settling ticket whose order is already written counts once, with a held reservation: 2.
    tickets = [ticket(1, "settling", "ann"), ticket(2, "reserved", "ann")]
    sale = snapshot(tickets, [order(1, "ann")], per_user_limit=2)
    assert check_per_user_limit(sale) == []
    assert codes(check_per_user_limit(replace(sale, config=replace(sale.config, per_user_limit=1)))) == {
        (Invariant.PER_USER_LIMIT, "over_limit")}


def test_a_cancelled_ticket_with_a_succeeded_unrefunded_intent_is_charged(honest):
    assert honest.intents is not None
    charged = replace(honest, intents=honest.intents | {"pi_5": intent(5, "succeeded")})
    assert (Invariant.MONEY, "cancelled_charged") in codes(check_money(charged))
    refunded = replace(honest, intents=honest.intents | {"pi_5": intent(5, "succeeded", refunds=1)})
    assert "cancelled_charged" not in {v.code for v in check_money(refunded)}


def test_money_without_goods_and_goods_without_money(honest):
    assert honest.intents is not None
    no_order = replace(honest, orders=honest.orders[:1])
    assert (Invariant.MONEY, "money_without_goods") in codes(check_money(no_order))
    unpaid = replace(honest, intents=honest.intents | {"pi_2": intent(2, "requires_payment_method")})
    assert (Invariant.MONEY, "goods_without_money") in codes(check_money(unpaid))


def test_paid_then_cancelled_breaks_final_stays_final(honest):
    later = replace(honest, tickets=honest.tickets | {tid(1): ticket(1, "cancelled", "ann")})
    assert codes(check_final_stays_final(later, [honest])) == {
        (Invariant.FINAL_STAYS_FINAL, "left_final")}


def test_expired_then_paid_is_the_one_allowed_exit_from_a_final_status():
    assert check_status_history({tid(1): ["queued", "reserving", "reserved", "expired", "settling",
                                          "paid"]}) == []
    honoured = snapshot([ticket(1, "paid", "ann", honoured_after="expired")], [order(1, "ann")])
    assert check_final_stays_final(honoured) == []


def test_cancelled_then_paid_recorded_on_the_ticket_is_caught():
    sale = snapshot([ticket(1, "paid", "ann", honoured_after="cancelled")], [order(1, "ann")])
    assert codes(check_final_stays_final(sale)) == {(Invariant.FINAL_STAYS_FINAL, "left_final")}


def test_a_ticket_never_goes_back():
    assert codes(check_status_history({tid(1): ["reserved", "queued"]})) == {
        (Invariant.FINAL_STAYS_FINAL, "impossible_move")}


@pytest.mark.parametrize("final", sorted(FINAL - {TicketStatus.EXPIRED}))
def test_no_other_final_status_is_left(final):
    assert not any(move_allowed(final, other) for other in TicketStatus if other is not final)
