"""Paying with a Stripe.js card token, for a reservation or a cart order.

Every shopper pays through the shop's one Stripe account, whose rate limit all of them share.
So a payment attempt is made cheap to refuse: a token that is not one is refused before any
Stripe call, and each account has one Stripe Customer, made on its first payment and kept on
its `users` document (`stripe_customer_id`), so repeated attempts do not make a customer
each. (The API also limits attempts per shopper: PAYMENT_RATE_LIMIT.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis
from pymongo.database import Database

from common.billing import card_claims
from common.billing.stripe_gateway import Intent, StripeGateway, check_card_token
from common.flash_sale import waiting_room
from common.flash_sale.tickets import TicketStatus
from common.platform.errors import DomainError, TicketNotActive, Unauthorized

log = logging.getLogger("common.billing.card_payments")


def stripe_customer_for(db: Database, gateway: StripeGateway, user_id: str,
                        gone: str | None = None) -> str:
    """The id of the account's Stripe Customer, made on first use; with `gone`, the stored id
    Stripe no longer knows, which is forgotten first (unless another payment replaced it
    already) so that a new one is made.

    At most one is ever stored per account: the id is set only where none is yet, so of two
    concurrent first payments one stores its customer and the other uses that one and
    deletes its own.
    """
    if gone is not None:
        log.warning("stored Stripe customer unknown to Stripe, replaced",
                    extra={"user_id": user_id, "customer_id": gone})
        db.users.update_one({"_id": user_id, "stripe_customer_id": gone},
                            {"$set": {"stripe_customer_id": None}})
    user: dict[str, Any] | None = db.users.find_one(
        {"_id": user_id}, {"email": 1, "stripe_customer_id": 1})
    if user is None:
        raise Unauthorized("This account no longer exists.")
    if user.get("stripe_customer_id"):
        return str(user["stripe_customer_id"])
    created = gateway.create_customer(email=user["email"], user_id=user_id)
    stored = db.users.update_one({"_id": user_id, "stripe_customer_id": None},
                                 {"$set": {"stripe_customer_id": created}})
    if stored.modified_count == 1:
        return created
    winner = db.users.find_one({"_id": user_id}, {"stripe_customer_id": 1})
    if winner is None or not winner.get("stripe_customer_id"):
        raise Unauthorized("This account no longer exists.")
    if winner["stripe_customer_id"] != created:
        try:
            gateway.delete_customer(created)
        except DomainError:
            # Real Stripe answered the same customer to the same idempotency key; the
            # emulator made a spare one, which is unused either way.
            log.warning("spare Stripe customer not deleted",
                        extra={"user_id": user_id, "customer_id": created})
    return str(winner["stripe_customer_id"])


def pay_with_card_token(db: Database, gateway: StripeGateway, *, user_id: str, intent_id: str,
                        card_token: str, claim_card: Callable[[str], object] | None = None) -> Intent:
    """Confirm `intent_id` with a card token, on the account's one Stripe Customer.

    ValidationFailed for a malformed token (before any Stripe call), PaymentDeclined for a
    refused card. An intent already paid is reported as it is, nothing attached again.
    `claim_card` gets the card's fingerprint before the intent is confirmed (one card per sale).
    """
    check_card_token(card_token)
    return gateway.confirm_with_card_token(
        intent_id, card_token, customer=lambda gone: stripe_customer_for(db, gateway, user_id, gone),
        claim_card=claim_card)


def pay_reservation(redis_client: redis.Redis, db: Database, gateway: StripeGateway, *,
                    ticket_id: str, user_id: str, card_token: str) -> Intent:
    """Pay the owner's reserved ticket with a card token; the order appears once Stripe's
    webhook is applied. NotFound for anyone else's ticket, TicketNotActive unless reserved.
    The card is claimed for the sale before the payment is confirmed: CardAlreadyUsed (409),
    nothing charged, when it paid or is paying for another account in this sale."""
    ticket = waiting_room.read_ticket(redis_client, ticket_id, owner_id=user_id)
    reservation = ticket.get("reservation")
    if ticket["status"] != TicketStatus.RESERVED.value or not reservation:
        raise TicketNotActive(details={"status": ticket["status"]})
    return pay_with_card_token(
        db, gateway, user_id=user_id, intent_id=reservation["payment_intent_id"],
        card_token=card_token,
        claim_card=lambda fingerprint: card_claims.claim_card(redis_client, ticket_id, user_id,
                                                              fingerprint))
