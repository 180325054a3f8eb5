"""The admission fast path's ticket body is exactly what TicketSchema dumps, for every status."""

from __future__ import annotations

import pytest

from api import stream_tokens
from api.schemas import TicketSchema, ticket_body
from common.flash_sale.tickets import Chances, TicketStatus, public_ticket

BASE = {"id": "tkt_sal_00000000000000aa_1", "sale_id": "sal_00000000000000aa", "user_id": "usr_1",
        "quantity": "2", "seq": "7", "units_before": "9", "created_at_ms": "1764800000000",
        "updated_at_ms": "1764800001234", "expires_at_ms": "1764800300000",
        "payment_intent_id": "pi_1", "client_secret": "pi_1_secret", "amount_cents": "3998",
        "currency": "usd", "order_id": "ord_1"}
EXTRAS = [{}, {"refund_id": "re_1"}, {"refund_due": "late"}, {"reason": "per_user_limit"},
          {"payment_pending": "1"}]


@pytest.mark.parametrize("status", [status.value for status in TicketStatus])
@pytest.mark.parametrize("extra", range(len(EXTRAS)))
def test_ticket_body_equals_the_schema_dump(status, extra, monkeypatch):
    stream_tokens.configure("unit-test-secret-" + "x" * 32)
    # A token carries its expiry in seconds: both made in the same second, as in one answer.
    monkeypatch.setattr(stream_tokens.time, "time", lambda: 1_800_000_000.25)
    fields = {**BASE, "status": status, **EXTRAS[extra]}
    for chances in (None, Chances(available=5, reserved=1, served_units=3, lobby_units=4)):
        ticket = public_ticket(fields, served=3, rate=12.5, chances=chances)
        assert ticket_body(ticket) == TicketSchema().dump(ticket)
