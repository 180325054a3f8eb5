"""Tickets: the waiting room's state machine and what a shopper sees of a ticket.

(lobby ->) queued -> reserved -> paid is the happy path; every other public status is final.
A `lobby` ticket joined before the start and becomes `queued` with its drawn place at the start.
Two internal steps are shown as their public neighbour: `reserving` (stock held, the
PaymentIntent being created) shows as `queued` at position 1, because the contract promises
the PaymentIntent exists before a ticket shows `reserved`; `settling` (payment taken, order
being written) shows as `reserved` until the order exists.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar


class TicketStatus(StrEnum):
    LOBBY = "lobby"  # joined before the start; gets its drawn place at starts_at (lobby.py)
    QUEUED = "queued"
    RESERVING = "reserving"  # internal: stock held, PaymentIntent being created
    RESERVED = "reserved"
    SETTLING = "settling"  # internal: payment succeeded, order being stored
    PAID = "paid"
    SOLD_OUT = "sold_out"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    PAYMENT_FAILED = "payment_failed"
    # Its turn came while its owner had been away (no open stream, no poll) for longer than
    # the sale's presence_timeout_seconds: the units went to the next in line.
    ABANDONED = "abandoned"
    # A draw sale's entry drawn after the last unit went: its hold is released (draw.py).
    NOT_SELECTED = "not_selected"


# The only moves a ticket can make. The Lua scripts enforce them atomically; this table is
# their specification and is checked against the scripts' behaviour by the tests.
TRANSITIONS: dict[TicketStatus, frozenset[TicketStatus]] = {
    # A draw sale's entry (draw.py) never queues: drawn while units remain it is reserved for
    # its hold's capture, else not_selected; withdrawn, or without a hold at the draw, cancelled.
    TicketStatus.LOBBY: frozenset({TicketStatus.QUEUED, TicketStatus.RESERVING,
                                   TicketStatus.CANCELLED, TicketStatus.NOT_SELECTED}),
    TicketStatus.QUEUED: frozenset({TicketStatus.RESERVING, TicketStatus.SOLD_OUT,
                                    TicketStatus.CANCELLED, TicketStatus.ABANDONED}),
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
    TicketStatus.ABANDONED: frozenset(),
    TicketStatus.NOT_SELECTED: frozenset(),
}

HOLDING = frozenset({TicketStatus.RESERVING, TicketStatus.RESERVED})
FINAL = frozenset({TicketStatus.PAID, TicketStatus.SOLD_OUT, TicketStatus.EXPIRED,
                   TicketStatus.CANCELLED, TicketStatus.PAYMENT_FAILED, TicketStatus.ABANDONED,
                   TicketStatus.NOT_SELECTED})
PUBLIC_STATUS = {
    TicketStatus.RESERVING: TicketStatus.QUEUED,
    TicketStatus.SETTLING: TicketStatus.RESERVED,
}

# Set by the reader of a ticket (ticket_events.read_ticket_state), never stored: an `expired`
# ticket whose payment may still have gone through. Its intent waits in the sale's cancellation
# outbox, or its refund is decided but not made: the ticket may yet become `paid` (a late payment
# honoured), or stay `expired` with `refunded: true`.
PAYMENT_PENDING = "payment_pending"

MIN_POLL_MS = 500
# A lobby ticket changes only at the start: its page asks again then, and rarely before.
LOBBY_POLL_MS = 5_000
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


def sale_paused(rate: float) -> bool:
    """The sale's shown rate is negative while the operator has paused it (sale_controls.lua):
    no ticket is decided, so none has an ETA."""
    return rate < 0


def poll_after_ms(position: int) -> int:
    """Far from the front, poll rarely: a long queue must not flood the API with polls."""
    return int(min(MAX_POLL_MS, MIN_POLL_MS + 250 * math.sqrt(max(0, position - 1))))


class Outlook(StrEnum):
    LIKELY = "likely"  # the units ahead and this ticket's fit in the units still free
    POSSIBLE = "possible"  # they fit only if outstanding reservations come back
    UNLIKELY = "unlikely"


@dataclass(frozen=True)
class Chances:
    """The sale's counters behind units_ahead and outlook, read with the served counter."""

    available: int = 0
    reserved: int = 0
    # Units of every ticket decided so far (reserve_batch.lua) and of every lobby ticket.
    served_units: int = 0
    lobby_units: int = 0

    FIELDS: ClassVar[tuple[str, ...]] = ("available", "reserved", "served_units", "lobby_units")

    @classmethod
    def from_values(cls, values: list[Any]) -> Chances:
        """From an HMGET of FIELDS (missing fields count as 0)."""
        return cls(*(int(v or 0) for v in values))


def units_ahead(fields: dict[str, str], chances: Chances) -> int | None:
    """Units asked for by the tickets ahead that are not decided yet; O(1): the ticket's
    running total at placement minus the sale's served units. A lobby ticket has no place
    yet: it gets the expected value under a uniformly random draw, half the others' units."""
    status = fields["status"]
    if status == TicketStatus.LOBBY:
        return max(0, chances.lobby_units - int(fields["quantity"])) // 2
    if status == TicketStatus.RESERVING:
        return 0
    if status != TicketStatus.QUEUED or fields.get("units_before") in (None, ""):
        return None
    return max(0, int(fields["units_before"]) - chances.served_units)


def outlook(ahead: int, quantity: int, chances: Chances) -> Outlook:
    wanted = ahead + quantity
    if wanted <= chances.available:
        return Outlook.LIKELY
    if wanted <= chances.available + chances.reserved:
        return Outlook.POSSIBLE
    return Outlook.UNLIKELY


class HoldStatus(StrEnum):
    """A draw entry's card hold (draw.py, billing/holds.py)."""

    REQUIRED = "required"  # no authorised card yet: the entry is not in the draw
    HELD = "held"  # Stripe said requires_capture
    FAILED = "failed"  # declined: the shopper may try another card
    RELEASED = "released"  # cancelled at Stripe (withdrawn, no hold at the draw, not selected)
    CAPTURED = "captured"  # charged: the entry won


def public_hold(fields: dict[str, str]) -> dict[str, Any] | None:
    """A draw entry's `hold`, or None for a ticket of a queue sale. A final ticket's hold
    status follows from the ticket's (paid: captured; not_selected or cancelled with an
    intent: released; a failed capture: failed), so no second write can lag behind it."""
    stored = fields.get("hold_status")
    if not stored:
        return None
    status, has_intent = fields["status"], bool(fields.get("hold_intent_id"))
    shown = HoldStatus(stored)
    if status in (TicketStatus.PAID, TicketStatus.SETTLING) and has_intent:
        shown = HoldStatus.CAPTURED
    elif status == TicketStatus.NOT_SELECTED or (status == TicketStatus.CANCELLED and has_intent):
        shown = HoldStatus.RELEASED
    elif status == TicketStatus.PAYMENT_FAILED:
        shown = HoldStatus.FAILED
    return {"status": shown.value, "payment_intent_id": fields.get("hold_intent_id") or None,
            "client_secret": fields.get("hold_client_secret") or None,
            "amount_cents": int(fields.get("hold_amount_cents") or 0),
            "currency": fields.get("hold_currency") or None}


def public_ticket(fields: dict[str, str], served: int, rate: float,
                  chances: Chances | None = None) -> dict[str, Any]:
    """The contract's ticket from its Redis hash and the sale's served counter; with
    `chances`, a lobby or queued ticket also shows units_ahead and outlook."""
    status = TicketStatus(fields["status"])
    shown = PUBLIC_STATUS.get(status, status)
    position = eta = poll = None
    if shown is TicketStatus.LOBBY:
        poll = LOBBY_POLL_MS
    elif shown is TicketStatus.QUEUED:
        position = 1 if status is TicketStatus.RESERVING else queue_position(int(fields["seq"]), served)
        eta = 0 if status is TicketStatus.RESERVING else eta_seconds(position, rate)
        if sale_paused(rate) and status is not TicketStatus.RESERVING:
            eta = None
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
    if chances is not None and shown in (TicketStatus.LOBBY, TicketStatus.QUEUED):
        ahead = units_ahead(fields, chances)
        if ahead is not None:
            ticket["units_ahead"] = ahead
            ticket["outlook"] = outlook(ahead, int(fields["quantity"]), chances).value
    if fields.get("refund_id") or fields.get("refund_due"):
        ticket["refunded"] = bool(fields.get("refund_id"))
    if fields.get(PAYMENT_PENDING):
        ticket["payment_pending"] = True
    if sale_paused(rate) and shown in (TicketStatus.LOBBY, TicketStatus.QUEUED) \
            and status is not TicketStatus.RESERVING:
        ticket["paused"] = True
    if fields.get("reason"):
        ticket["reason"] = fields["reason"]
    hold = public_hold(fields)
    if hold is not None:
        ticket["hold"] = hold
    return ticket
