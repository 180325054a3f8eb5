"""The `stream_token` every ticket answer carries: opens that ticket's event stream (for
browsers' EventSource, which cannot send an Authorization header) and nothing else.

An HMAC of the ticket id under a key derived from the JWT secret (common/flash_sale/
ticket_events.py), so nothing is stored. The key is set once per process by the app factory;
TicketSchema reads it here because the admission fast path answers tickets outside Flask.
"""

from __future__ import annotations

from common.flash_sale import ticket_events

_key: list[bytes] = []


def configure(jwt_secret: str) -> None:
    _key[:] = [ticket_events.stream_token_key(jwt_secret)]


def key() -> bytes:
    if not _key:
        raise RuntimeError("stream tokens are not configured (api.app.create_app does it)")
    return _key[0]


def token_for(ticket_id: str) -> str:
    return ticket_events.stream_token(key(), ticket_id)


def valid(ticket_id: str, token: str) -> bool:
    return ticket_events.stream_token_valid(key(), ticket_id, token)
