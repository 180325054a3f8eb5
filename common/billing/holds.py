"""Card holds for a draw sale's entries: the card is authorised at entry (a manual-capture
PaymentIntent, `requires_capture`) and charged only if the entry is drawn
(flash_sale/draw.py); everyone else's hold is released.

Only committed buyers enter, and nobody races a payment clock after the draw: a winner is
charged the moment their turn in the drawn order comes. A hold lasts 7 days at the major card
networks, so a draw's lobby lasts at most 6 (flash_sale/sales.py).

A decline leaves the entry out (`hold.status: failed`) until another card is held: each
attempt gets an intent of its own (a declined intent cannot be confirmed again), and the
replaced one goes into the sale's cancellation outbox in the same step that attaches the new
one (attach_hold.lua). The card is claimed for the sale before the hold is confirmed (one card
per sale, card_claims.py), as a payment's is.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from pymongo.database import Database

from common.billing import card_claims, card_payments, payments
from common.billing.stripe_gateway import (
    CANCELED,
    REQUIRES_CAPTURE,
    REQUIRES_PAYMENT_METHOD,
    Intent,
    StripeGateway,
)
from common.flash_sale import sale_keys, waiting_room
from common.flash_sale.intent_outbox import cancel_released_intent
from common.flash_sale.tickets import HoldStatus, TicketStatus
from common.platform.errors import NotFound, PaymentDeclined, TicketNotActive
from common.platform.lua_scripts import scripts_for
from common.shop.orders import OrderKind

log = logging.getLogger("common.billing.holds")


def _sale_of(ticket_id: str) -> str:
    sale_id = sale_keys.sale_of_ticket(ticket_id)
    if sale_id is None:
        raise NotFound("No such ticket.")
    return sale_id


def is_draw_entry(fields: dict[str, str]) -> bool:
    return fields.get("status") == TicketStatus.LOBBY and bool(fields.get("hold_status"))


def mark_hold(redis_client: redis.Redis, ticket_id: str, intent_id: str, status: HoldStatus, *,
              by_draw: bool = False) -> bool:
    """Record Stripe's answer on the entry (only for its current intent, while in the lobby;
    `held` only before the lobby closes unless `by_draw`). True when recorded."""
    sale_id = _sale_of(ticket_id)
    outcome = scripts_for(redis_client).mark_hold(
        keys=[sale_keys.ticket_key(sale_id, ticket_id), sale_keys.counters_key(sale_id)],
        args=[intent_id, status.value, "draw" if by_draw else ""])
    return bool(outcome[0] == "marked")


def _hold_intent(redis_client: redis.Redis, gateway: StripeGateway, sale_id: str,
                 ticket_id: str, fields: dict[str, str]) -> str:
    """The intent this attempt confirms: the entry's own while it can still take a card, else
    a new one attached in its place (the old one queued for cancellation)."""
    current = fields.get("hold_intent_id") or ""
    if current:
        intent = gateway.retrieve(current)
        if intent.status == REQUIRES_PAYMENT_METHOD and not intent.last_error:
            return current
    attempt = int(fields.get("hold_attempts") or 0) + 1
    redis_client.hincrby(sale_keys.ticket_key(sale_id, ticket_id), "hold_attempts", 1)
    created = gateway.create_hold(
        amount_cents=int(fields["hold_amount_cents"]), currency=fields["hold_currency"],
        metadata={"kind": str(OrderKind.SALE), "sale_id": sale_id, "ticket_id": ticket_id,
                  "hold": "1"},
        idempotency_key=f"hold-{ticket_id}-{attempt}")
    outcome = scripts_for(redis_client).attach_hold(
        keys=[sale_keys.ticket_key(sale_id, ticket_id), sale_keys.counters_key(sale_id),
              sale_keys.intent_cancels_key(sale_id)],
        args=[created.id, created.client_secret, current])
    if outcome[0] != "attached":
        gateway.cancel_hold(created.id, idempotency_key=f"cancel-{created.id}")
        if outcome[0] == "ended":
            raise TicketNotActive(details={"status": outcome[1]})
        raise TicketNotActive("Another attempt to hold a card for this entry is under way.",
                              details={"status": TicketStatus.LOBBY.value})
    if current:
        cancel_released_intent(redis_client, gateway, sale_id, current)
    return created.id


def place_hold(redis_client: redis.Redis, db: Database, gateway: StripeGateway, *,
               ticket_id: str, user_id: str, card_token: str) -> Intent:
    """Authorise price x quantity on the card for the owner's draw entry.

    Returns the intent: `requires_capture` (the entry shows `hold.status: held`), or
    `requires_action` (3-D Secure: the browser finishes with `stripe.confirmCardPayment`; the
    draw checks such holds at Stripe as it starts). A held entry answers its hold again.
    PaymentDeclined (the entry shows `failed`; another card may be tried), CardAlreadyUsed
    (another account holds or paid with this card in the sale; nothing held),
    TicketNotActive (not a draw entry, or the draw has started), NotFound (not the caller's).
    """
    sale_id = _sale_of(ticket_id)
    fields, _, _ = waiting_room.read_ticket_fields(redis_client, ticket_id)
    if fields.get("user_id") != user_id:
        raise NotFound("No such ticket.")
    if not is_draw_entry(fields):
        raise TicketNotActive(details={"status": waiting_room.public_status(fields.get("status", ""))})
    if fields.get("hold_status") == HoldStatus.HELD:
        return gateway.retrieve(fields["hold_intent_id"])
    intent_id = _hold_intent(redis_client, gateway, sale_id, ticket_id, fields)
    try:
        intent = card_payments.pay_with_card_token(
            db, gateway, user_id=user_id, intent_id=intent_id, card_token=card_token,
            claim_card=lambda fingerprint: card_claims.claim_card(redis_client, ticket_id, user_id,
                                                                  fingerprint))
    except PaymentDeclined:
        mark_hold(redis_client, ticket_id, intent_id, HoldStatus.FAILED)
        raise
    if intent.status == REQUIRES_CAPTURE and not mark_hold(redis_client, ticket_id, intent_id,
                                                           HoldStatus.HELD):
        # Withdrawn, or the draw started, while Stripe was authorising: never keep a hold
        # for an entry that is not in the draw.
        gateway.cancel_hold(intent_id, idempotency_key=f"cancel-{intent_id}")
        raise TicketNotActive(details={"status": "drawing"})
    return intent


def withdraw_entry(redis_client: redis.Redis, gateway: StripeGateway, ticket_id: str,
                   owner_id: str) -> dict[str, Any]:
    """Withdraw the owner's draw entry before the draw and release its hold. The entry leaves
    the lobby and its hold intent enters the cancellation outbox in one step (withdraw_entry.lua),
    then is cancelled at once (beat's sweep retries if Stripe does not confirm). Returns the
    ticket (`cancelled`, reason `withdrawn`); TicketNotActive once the draw has started."""
    sale_id = _sale_of(ticket_id)
    outcome = scripts_for(redis_client).withdraw_entry(
        keys=[sale_keys.ticket_key(sale_id, ticket_id), sale_keys.counters_key(sale_id),
              sale_keys.live_tickets_key(sale_id), sale_keys.lobby_key(sale_id),
              sale_keys.intent_cancels_key(sale_id), sale_keys.card_claims_key(sale_id)],
        args=[owner_id])
    if outcome[0] != "withdrawn":
        if outcome[1] == "missing":
            raise NotFound("No such ticket.")
        raise TicketNotActive(details={"status": waiting_room.public_status(str(outcome[1]))})
    if outcome[1]:
        try:
            status = cancel_released_intent(redis_client, gateway, sale_id, str(outcome[1]))
            if status != CANCELED:
                log.warning("withdrawn entry's hold not cancelled yet; the sweep retries",
                            extra={"ticket_id": ticket_id, "intent_id": outcome[1], "status": status})
        except Exception:
            log.exception("withdrawn entry's hold not cancelled yet; the sweep retries",
                          extra={"ticket_id": ticket_id, "intent_id": outcome[1]})
    return waiting_room.read_ticket(redis_client, ticket_id)


def cancel_entry_or_ticket(redis_client: redis.Redis, gateway: StripeGateway, ticket_id: str,
                           owner_id: str) -> dict[str, Any]:
    """`POST /api/tickets/<id>/cancel`: a draw entry before the draw is withdrawn (its hold
    released); any other ticket is given up as payments.cancel_ticket says."""
    fields, _, _ = waiting_room.read_ticket_fields(redis_client, ticket_id)
    if fields.get("user_id") == owner_id and is_draw_entry(fields):
        return withdraw_entry(redis_client, gateway, ticket_id, owner_id)
    return payments.cancel_ticket(redis_client, gateway, ticket_id, owner_id)
