"""Tickets: the waiting room's state machine and what a shopper sees of a ticket.

queued -> reserved -> paid is the happy path; every other public status is final.
Two internal steps are shown as their public neighbour: `reserving` (stock held, the
PaymentIntent being created) shows as `queued` at position 1, because the contract promises
the PaymentIntent exists before a ticket shows `reserved`; `settling` (payment taken, order
being written) shows as `reserved` until the order exists.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class TicketStatus(StrEnum):
    QUEUED = "queued"
    RESERVING = "reserving"  # internal: stock held, PaymentIntent being created
    RESERVED = "reserved"
    SETTLING = "settling"  # internal: payment succeeded, order being stored
    PAID = "paid"
    SOLD_OUT = "sold_out"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    PAYMENT_FAILED = "payment_failed"


# The only moves a ticket can make. The Lua scripts enforce them atomically; this table is
# their specification and is checked against the scripts' behaviour by the tests.
TRANSITIONS: dict[TicketStatus, frozenset[TicketStatus]] = {
    TicketStatus.QUEUED: frozenset({TicketStatus.RESERVING, TicketStatus.SOLD_OUT,
                                    TicketStatus.CANCELLED}),
    TicketStatus.RESERVING: frozenset({TicketStatus.RESERVED, TicketStatus.SETTLING,
                                       TicketStatus.EXPIRED, TicketStatus.CANCELLED,
                                       TicketStatus.PAYMENT_FAILED}),
    TicketStatus.RESERVED: frozenset({TicketStatus.SETTLING, TicketStatus.EXPIRED,
                                      TicketStatus.CANCELLED, TicketStatus.PAYMENT_FAILED}),
    TicketStatus.SETTLING: frozenset({TicketStatus.PAID}),
    TicketStatus.PAID: frozenset(),
    TicketStatus.SOLD_OUT: frozenset(),
    # A payment that lands after the reservation expired is honoured when a unit is free and
    # the owner's per-user limit allows it (else refunded). A cancelled or declined ticket is
    # never charged: money that reaches one anyway is refunded.
    TicketStatus.EXPIRED: frozenset({TicketStatus.SETTLING}),
    TicketStatus.CANCELLED: frozenset(),
    TicketStatus.PAYMENT_FAILED: frozenset(),
}

HOLDING = frozenset({TicketStatus.RESERVING, TicketStatus.RESERVED})
FINAL = frozenset({TicketStatus.PAID, TicketStatus.SOLD_OUT, TicketStatus.EXPIRED,
                   TicketStatus.CANCELLED, TicketStatus.PAYMENT_FAILED})
PUBLIC_STATUS = {
    TicketStatus.RESERVING: TicketStatus.QUEUED,
    TicketStatus.SETTLING: TicketStatus.RESERVED,
}

MIN_POLL_MS = 500
MAX_POLL_MS = 10_000
# Before any rate is measured, assume a worker decides this many tickets a second.
DEFAULT_SERVICE_RATE = 1_000.0


def iso_from_ms(value: str | int | None) -> str | None:
    if value is None or value == "":
        return None
    return datetime.fromtimestamp(int(value) / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


def queue_position(seq: int, served: int) -> int:
    """Tickets ahead of this one, plus one (1 = next). O(1): two counters."""
    return max(1, seq - served)


def eta_seconds(position: int, rate: float) -> int:
    return math.ceil(position / (rate if rate > 0 else DEFAULT_SERVICE_RATE))


def poll_after_ms(position: int) -> int:
    """Far from the front, poll rarely: a long queue must not flood the API with polls."""
    return int(min(MAX_POLL_MS, MIN_POLL_MS + 250 * math.sqrt(max(0, position - 1))))


def public_ticket(fields: dict[str, str], served: int, rate: float) -> dict[str, Any]:
    """The contract's ticket from its Redis hash and the sale's served counter."""
    status = TicketStatus(fields["status"])
    shown = PUBLIC_STATUS.get(status, status)
    position = eta = poll = None
    if shown is TicketStatus.QUEUED:
        position = 1 if status is TicketStatus.RESERVING else queue_position(int(fields["seq"]), served)
        eta = 0 if status is TicketStatus.RESERVING else eta_seconds(position, rate)
        poll = MIN_POLL_MS if status is TicketStatus.RESERVING else poll_after_ms(position)
    elif shown is TicketStatus.RESERVED:
        poll = 2_000
    reservation = None
    if shown is TicketStatus.RESERVED:
        reservation = {
            "expires_at": iso_from_ms(fields.get("expires_at_ms")),
            "payment_intent_id": fields.get("payment_intent_id"),
            "client_secret": fields.get("client_secret"),
            "amount_cents": int(fields.get("amount_cents") or 0),
            "currency": fields.get("currency"),
        }
    ticket: dict[str, Any] = {
        "id": fields["id"],
        "sale_id": fields["sale_id"],
        "quantity": int(fields["quantity"]),
        "status": shown.value,
        "position": position,
        "eta_seconds": eta,
        "poll_after_ms": poll,
        "reservation": reservation,
        "order_id": fields.get("order_id") if status is TicketStatus.PAID else None,
        "created_at": iso_from_ms(fields.get("created_at_ms")),
        "updated_at": iso_from_ms(fields.get("updated_at_ms")),
    }
    if fields.get("refund_id") or fields.get("refund_due"):
        ticket["refunded"] = bool(fields.get("refund_id"))
    if fields.get("reason"):
        ticket["reason"] = fields["reason"]
    return ticket
