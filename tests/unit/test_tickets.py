"""What a shopper sees of a ticket (common/flash_sale/tickets.py), from hand-built ticket hashes:
place in the queue, ETA, when to poll again, and how internal steps are shown."""

from __future__ import annotations

import pytest

from common.flash_sale.tickets import (
    DEFAULT_SERVICE_RATE,
    MAX_POLL_MS,
    MIN_POLL_MS,
    eta_seconds,
    iso_from_ms,
    poll_after_ms,
    public_ticket,
    queue_position,
)

TICKET = {"id": "tkt_1", "sale_id": "sal_1", "quantity": "2", "seq": "10",
          "created_at_ms": "1767225600000", "updated_at_ms": "1767225601500"}


def fields(status: str, **extra: str) -> dict[str, str]:
    return {**TICKET, "status": status, **extra}


@pytest.mark.parametrize(("seq", "served", "position"), [(10, 0, 10), (10, 9, 1), (10, 10, 1),
                                                          (10, 50, 1), (1_000_000, 1, 999_999)])
def test_position_counts_the_tickets_ahead_plus_one_and_never_drops_below_one(
        seq: int, served: int, position: int) -> None:
    assert queue_position(seq, served) == position


def test_eta_rounds_up_and_assumes_a_rate_before_one_is_measured() -> None:
    assert eta_seconds(1, 100.0) == 1
    assert eta_seconds(250, 100.0) == 3
    assert eta_seconds(int(DEFAULT_SERVICE_RATE) * 2, 0.0) == 2


def test_polling_slows_down_far_from_the_front_and_stays_within_bounds() -> None:
    assert poll_after_ms(1) == MIN_POLL_MS
    intervals = [poll_after_ms(p) for p in (1, 2, 10, 100, 1_000, 10_000_000)]
    assert intervals == sorted(intervals)
    assert poll_after_ms(10_000_000) == MAX_POLL_MS
    assert all(MIN_POLL_MS <= ms <= MAX_POLL_MS for ms in intervals)


def test_times_are_iso_utc_and_missing_times_are_null() -> None:
    assert iso_from_ms("1767225600000") == "2026-01-01T00:00:00Z"
    assert iso_from_ms(1767225600250) == "2026-01-01T00:00:00.250000Z"
    assert iso_from_ms(None) is None and iso_from_ms("") is None


def test_a_queued_ticket_shows_its_place_eta_and_poll_interval() -> None:
    ticket = public_ticket(fields("queued"), served=4, rate=2.0)
    assert ticket["status"] == "queued" and ticket["quantity"] == 2
    assert (ticket["position"], ticket["eta_seconds"]) == (6, 3)
    assert ticket["poll_after_ms"] == poll_after_ms(6)
    assert ticket["reservation"] is None and ticket["order_id"] is None
    assert ticket["created_at"] == "2026-01-01T00:00:00Z"
    assert ticket["updated_at"] == "2026-01-01T00:00:01.500000Z"


def test_a_ticket_being_reserved_shows_as_next_in_line() -> None:
    ticket = public_ticket(fields("reserving"), served=0, rate=1.0)
    assert ticket["status"] == "queued"
    assert (ticket["position"], ticket["eta_seconds"], ticket["poll_after_ms"]) == (1, 0, MIN_POLL_MS)
    assert ticket["reservation"] is None


@pytest.mark.parametrize("status", ["reserved", "settling"])
def test_a_reservation_shows_its_payment_details_until_the_order_exists(status: str) -> None:
    ticket = public_ticket(fields(status, expires_at_ms="1767225900000", payment_intent_id="pi_1",
                                  client_secret="pi_1_secret", amount_cents="3000",
                                  currency="usd"), served=0, rate=1.0)
    assert ticket["status"] == "reserved" and ticket["position"] is None
    assert ticket["reservation"] == {"expires_at": "2026-01-01T00:05:00Z", "payment_intent_id": "pi_1",
                                     "client_secret": "pi_1_secret", "amount_cents": 3000,
                                     "currency": "usd"}


def test_only_a_paid_ticket_names_its_order() -> None:
    assert public_ticket(fields("paid", order_id="ord_1"), 0, 1.0)["order_id"] == "ord_1"
    assert public_ticket(fields("expired", order_id="ord_1"), 0, 1.0)["order_id"] is None


@pytest.mark.parametrize("status", ["paid", "sold_out", "expired", "cancelled", "payment_failed"])
def test_a_final_ticket_has_no_place_and_no_reason_to_poll(status: str) -> None:
    ticket = public_ticket(fields(status), served=0, rate=1.0)
    assert ticket["status"] == status
    assert (ticket["position"], ticket["eta_seconds"], ticket["poll_after_ms"]) == (None, None, None)


def test_a_late_payment_refunded_and_a_limit_reason_are_shown() -> None:
    refunded = public_ticket(fields("expired", refund_id="re_1"), 0, 1.0)
    assert refunded["refunded"] is True
    pending = public_ticket(fields("expired", refund_due="1"), 0, 1.0)
    assert pending["refunded"] is False
    assert "refunded" not in public_ticket(fields("expired"), 0, 1.0)
    limited = public_ticket(fields("sold_out", reason="per_user_limit"), 0, 1.0)
    assert limited["reason"] == "per_user_limit"
