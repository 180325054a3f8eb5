"""What more than one blueprint's schemas share; each blueprint holds its own schemas at its top.

Request schemas refuse unknown fields (422), so that nobody can set a price, an owner or a
status by adding a field; lists take `limit` and `cursor`; a ticket is answered alike by the
sales blueprint (joining the waiting room) and the tickets blueprint (polling, cancelling)."""

from __future__ import annotations

from typing import Any

import marshmallow as ma

from api import stream_tokens
from common.flash_sale.tickets import PUBLIC_STATUS, TicketStatus
from common.platform.pagination import MAX_PAGE_SIZE


class RequestSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE


class PageQuerySchema(ma.Schema):
    limit = ma.fields.Integer(load_default=20, validate=ma.validate.Range(min=1, max=MAX_PAGE_SIZE))
    cursor = ma.fields.String(load_default=None, validate=ma.validate.Length(max=512),
                              metadata={"description": "next_cursor of the previous page"})


class ReservationSchema(ma.Schema):
    expires_at = ma.fields.String(allow_none=True)
    payment_intent_id = ma.fields.String(allow_none=True)
    client_secret = ma.fields.String(allow_none=True)
    amount_cents = ma.fields.Integer()
    currency = ma.fields.String(allow_none=True)


class HoldSchema(ma.Schema):
    status = ma.fields.String(required=True, validate=ma.validate.OneOf(
        ["required", "held", "failed", "released", "captured"]))
    payment_intent_id = ma.fields.String(allow_none=True)
    client_secret = ma.fields.String(allow_none=True)
    amount_cents = ma.fields.Integer()
    currency = ma.fields.String(allow_none=True)


class TicketSchema(ma.Schema):
    id = ma.fields.String(required=True)
    sale_id = ma.fields.String(required=True)
    quantity = ma.fields.Integer(required=True)
    status = ma.fields.String(required=True, validate=ma.validate.OneOf(
        # What a shopper may see: every status but the internal steps shown as a neighbour.
        [status.value for status in TicketStatus if status not in PUBLIC_STATUS]))
    position = ma.fields.Integer(allow_none=True)
    units_ahead = ma.fields.Integer(metadata={
        "description": "lobby and queued tickets: units asked for by live tickets ahead (in the "
                       "lobby, the expected value under the random draw: half the others' units)"})
    outlook = ma.fields.String(validate=ma.validate.OneOf(["likely", "possible", "unlikely"]), metadata={
        "description": "lobby and queued tickets: `likely` when units_ahead + quantity fit in the "
                       "units still free, `possible` when they fit only if outstanding "
                       "reservations come back, `unlikely` otherwise"})
    eta_seconds = ma.fields.Integer(allow_none=True)
    poll_after_ms = ma.fields.Integer(allow_none=True)
    reservation = ma.fields.Nested(ReservationSchema, allow_none=True)
    order_id = ma.fields.String(allow_none=True)
    hold = ma.fields.Nested(HoldSchema, metadata={
        "description": "a draw sale's entry: its card hold (`POST /api/tickets/<id>/hold`)"})
    refunded = ma.fields.Boolean(metadata={"description": "present when a late payment was refunded"})
    payment_pending = ma.fields.Boolean(metadata={
        "description": "present (true) on an `expired` ticket whose payment may still have gone "
                       "through: it becomes `paid` (honoured) or stays `expired` with "
                       "`refunded: true`; its event stream stays open until then"})
    paused = ma.fields.Boolean(metadata={
        "description": "present (true) on a lobby or queued ticket while the operator has paused "
                       "the sale: admission goes on, no ticket is decided, `eta_seconds` is null"})
    reason = ma.fields.String(metadata={
        "description": "present on a `sold_out` ticket whose owner already held or bought their "
                       "share (`per_user_limit`)"})
    created_at = ma.fields.String(allow_none=True)
    updated_at = ma.fields.String(allow_none=True)
    stream_token = ma.fields.Function(lambda ticket: stream_tokens.token_for(ticket["id"]), metadata={
        "description": "read-only: opens this ticket's event stream "
                       "(`GET /api/tickets/<id>/events?stream_token=`), and nothing else"})


def ticket_body(ticket: dict[str, Any]) -> dict[str, Any]:
    """`TicketSchema().dump(ticket)` for a ticket built by `public_ticket` (the same keys and
    values, checked by tests/unit/test_ticket_body.py), without marshmallow's walk over every
    field: the admission fast path answers tens of thousands of these a second."""
    return {**ticket, "stream_token": stream_tokens.token_for(ticket["id"])}
