"""A shopper's ticket: status polling, giving up, paying the reservation."""

from __future__ import annotations

import marshmallow as ma
from flask_smorest import Blueprint

from api.auth import BEARER, current_user_id, login_required
from api.extensions import clients, settings
from api.payment_limit import payment_rate_limited
from api.schemas import RequestSchema, TicketSchema
from api.task_queue import apply_succeeded_payment
from common.billing import card_payments, holds
from common.billing.stripe_gateway import REQUIRES_ACTION, StripeGateway
from common.flash_sale import waiting_room

blp = Blueprint("tickets", __name__, url_prefix="/api/tickets", description="Waiting-room tickets")


class PaySchema(RequestSchema):
    card_token = ma.fields.String(required=True, validate=ma.validate.Length(min=4, max=255))


class PaymentResultSchema(ma.Schema):
    status = ma.fields.String(required=True)
    requires_action = ma.fields.Boolean(required=True)
    client_secret = ma.fields.String(required=True)
    payment_intent_id = ma.fields.String(required=True)


@blp.route("/<ticket_id>", methods=["GET"])
@blp.doc(security=BEARER)
@login_required
@blp.response(200, TicketSchema)
def get_ticket(ticket_id: str):
    """The caller's own ticket: position and ETA while queued, then the outcome."""
    return waiting_room.read_ticket(clients().sales_redis, ticket_id, owner_id=current_user_id())


@blp.route("/<ticket_id>/cancel", methods=["POST"])
@blp.doc(security=BEARER)
@login_required
@blp.response(200, TicketSchema)
@blp.alt_response(409, description="`ticket_not_active`, or `payment_in_progress` while a payment "
                                   "is processing or has succeeded (nothing changes)")
def cancel_ticket(ticket_id: str):
    """Give up a queued or reserved ticket; a reservation's stock returns at once. A draw
    sale's entry, before the draw, is withdrawn and its card hold released.

    A reservation's PaymentIntent is cancelled at Stripe before the ticket is, so a cancelled
    ticket is never charged.
    """
    gateway = StripeGateway(clients().stripe, emulator=settings().stripe_emulator)
    return holds.cancel_entry_or_ticket(clients().sales_redis, gateway, ticket_id, current_user_id())


@blp.route("/<ticket_id>/pay", methods=["POST"])
@blp.doc(security=BEARER)
@login_required
@payment_rate_limited
@blp.arguments(PaySchema)
@blp.response(200, PaymentResultSchema)
@blp.alt_response(429, description="`rate_limited` (PAYMENT_RATE_LIMIT), with Retry-After")
def pay_ticket(body: dict, ticket_id: str):
    """Confirm the reservation's payment with a Stripe.js card token.

    When the bank asks for 3-D Secure the answer says `requires_action` and the browser
    finishes with `stripe.confirmCardPayment(client_secret)`. The order appears once the
    payment is applied (at once when this confirm succeeded, else by Stripe's webhook); follow
    the ticket until it is `paid`.
    """
    gateway = StripeGateway(clients().stripe, emulator=settings().stripe_emulator)
    intent = card_payments.pay_reservation(clients().sales_redis, clients().db, gateway,
                                           ticket_id=ticket_id, user_id=current_user_id(),
                                           card_token=body["card_token"])
    apply_succeeded_payment(intent.id, intent.status)
    return {"status": intent.status, "requires_action": intent.status == REQUIRES_ACTION,
            "client_secret": intent.client_secret, "payment_intent_id": intent.id}


@blp.route("/<ticket_id>/hold", methods=["POST"])
@blp.doc(security=BEARER)
@login_required
@payment_rate_limited
@blp.arguments(PaySchema)
@blp.response(200, PaymentResultSchema)
@blp.alt_response(402, description="`payment_declined`: the entry's hold is `failed`; try another card")
@blp.alt_response(409, description="`ticket_not_active` (not a draw entry, or the draw has started), "
                                   "`card_already_used`")
def hold_entry(body: dict, ticket_id: str):
    """Hold price x quantity on a card for a draw sale's entry (a manual-capture payment):
    charged only if the entry is drawn, released otherwise. `requires_capture` means held;
    `requires_action` means 3-D Secure: finish with `stripe.confirmCardPayment(client_secret)`.
    """
    gateway = StripeGateway(clients().stripe, emulator=settings().stripe_emulator)
    intent = holds.place_hold(clients().sales_redis, clients().db, gateway, ticket_id=ticket_id,
                              user_id=current_user_id(), card_token=body["card_token"])
    return {"status": intent.status, "requires_action": intent.status == REQUIRES_ACTION,
            "client_secret": intent.client_secret, "payment_intent_id": intent.id}
