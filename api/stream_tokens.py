"""The `stream_token` every ticket answer carries: opens that ticket's event stream (for
browsers' EventSource, which cannot send an Authorization header) and nothing else, for at most
STREAM_TOKEN_TTL_SECONDS (an hour).

An HMAC of the ticket id and the expiry under a key derived from the JWT secret (common/
flash_sale/ticket_events.py), so nothing is stored. EventSource sends it in the URL, where
logs keep it (ours redact it: api/access_log.py; a proxy's may not): every ticket answer (the
join, a poll, each stream event) carries a fresh one, and an old one soon opens nothing. The key
is set once per process by the app factory; TicketSchema and the fast paths' `ticket_body` read
it here because the fast paths answer tickets outside Flask.
"""

from __future__ import annotations

import time

from common.flash_sale import ticket_events

DEFAULT_TTL_SECONDS = 3600
_config: list[tuple[bytes, int]] = []


def configure(jwt_secret: str, ttl_seconds: int = DEFAULT_TTL_SECONDS) -> None:
    _config[:] = [(ticket_events.stream_token_key(jwt_secret), ttl_seconds)]


def _key_and_ttl() -> tuple[bytes, int]:
    if not _config:
        raise RuntimeError("stream tokens are not configured (api.app.create_app does it)")
    return _config[0]


def token_for(ticket_id: str) -> str:
    """A fresh token for the ticket, valid for the configured time from now."""
    key, ttl = _key_and_ttl()
    return ticket_events.stream_token(key, ticket_id, int(time.time()) + ttl)


def valid(ticket_id: str, token: str) -> bool:
    key, ttl = _key_and_ttl()
    return ticket_events.stream_token_valid(key, ticket_id, token, time.time(), ttl)
