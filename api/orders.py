"""The signed-in user's orders (their own only: anyone else's is a 404) and paying a cart
order with a card token."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask_smorest import Blueprint

from api.auth import BEARER, current_user_id, login_required
from api.extensions import clients, settings
from api.payment_limit import payment_rate_limited
from api.schemas import PageQuerySchema, RequestSchema
from api.task_queue import apply_succeeded_payment
from common.billing.stripe_gateway import StripeGateway
from common.shop import orders

blp = Blueprint("orders", __name__, url_prefix="/api/orders", description="Orders")


class OrderItemSchema(ma.Schema):
    product_id = ma.fields.String(required=True)
    quantity = ma.fields.Integer(required=True)
    unit_price_cents = ma.fields.Integer(required=True)


class OrderSchema(ma.Schema):
    id = ma.fields.String(required=True)
    user_id = ma.fields.String(required=True)
    items = ma.fields.List(ma.fields.Nested(OrderItemSchema), required=True)
    amount_cents = ma.fields.Integer(required=True)
    currency = ma.fields.String(required=True)
    status = ma.fields.String(required=True, validate=ma.validate.OneOf(
        [status.value for status in orders.OrderStatus]))
    payment_intent_id = ma.fields.String(required=True, allow_none=True)
    sale_id = ma.fields.String(required=True, allow_none=True)
    ticket_id = ma.fields.String(required=True, allow_none=True)
    created_at = ma.fields.String(required=True, metadata={"format": "date-time"})


class OrderPageSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(OrderSchema), required=True)
    next_cursor = ma.fields.String(required=True, allow_none=True)


class CardPaymentSchema(RequestSchema):
    card_token = ma.fields.String(required=True, validate=ma.validate.Length(min=4, max=255),
                                  metadata={"description": "a Stripe.js card token (tok_...)"})


class PaymentAttemptSchema(ma.Schema):
    status = ma.fields.String(required=True, metadata={"description": "the PaymentIntent's status"})
    client_secret = ma.fields.String(required=True)
    requires_action = ma.fields.Boolean(required=True)
    payment_intent_id = ma.fields.String(required=True)


@blp.route("")
@blp.doc(security=BEARER)
@login_required
@blp.arguments(PageQuerySchema, location="query")
@blp.response(200, OrderPageSchema)
def list_orders(query: dict[str, Any]) -> dict[str, Any]:
    """The caller's own orders, newest first."""
    page = orders.list_orders(clients().db, current_user_id(), query["limit"], query["cursor"])
    return {"items": [orders.order_to_public(doc) for doc in page.items],
            "next_cursor": page.next_cursor}


@blp.route("/<order_id>")
@blp.doc(security=BEARER)
@login_required
@blp.response(200, OrderSchema)
def get_order(order_id: str) -> dict[str, Any]:
    """One of the caller's orders."""
    return orders.order_to_public(orders.get_order(clients().db, current_user_id(), order_id))


@blp.route("/<order_id>/pay", methods=["POST"])
@blp.doc(security=BEARER)
@login_required
@payment_rate_limited
@blp.arguments(CardPaymentSchema)
@blp.response(200, PaymentAttemptSchema)
@blp.alt_response(402, description="`payment_declined`")
@blp.alt_response(409, description="`order_not_payable`: not a pending cart order")
@blp.alt_response(429, description="`rate_limited` (PAYMENT_RATE_LIMIT), with Retry-After")
def pay_order(body: dict[str, Any], order_id: str) -> dict[str, Any]:
    """Pay a pending cart order with a card token; it turns paid once the payment is applied
    (at once when this confirm succeeded, else by Stripe's webhook)."""
    gateway = StripeGateway(clients().stripe, emulator=settings().stripe_emulator)
    attempt = orders.pay_order(clients().db, gateway, user_id=current_user_id(),
                               order_id=order_id, card_token=body["card_token"])
    apply_succeeded_payment(attempt.payment_intent_id, attempt.status)
    return {"status": attempt.status, "client_secret": attempt.client_secret,
            "requires_action": attempt.requires_action,
            "payment_intent_id": attempt.payment_intent_id}
