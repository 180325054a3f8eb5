"""The signed-in user's cart and its checkout."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask_smorest import Blueprint

from api.auth import BEARER, current_user_id, login_required
from api.extensions import clients, settings
from api.payment_limit import payment_rate_limited
from api.schemas import RequestSchema
from common.billing.stripe_gateway import StripeGateway
from common.shop import carts, orders

blp = Blueprint("cart", __name__, url_prefix="/api/cart", description="Cart and checkout")

MAX_QUANTITY = 1000


class CartLineSchema(ma.Schema):
    product_id = ma.fields.String(required=True)
    name = ma.fields.String(required=True)
    quantity = ma.fields.Integer(required=True)
    unit_price_cents = ma.fields.Integer(required=True)
    line_total_cents = ma.fields.Integer(required=True)
    currency = ma.fields.String(required=True)
    stock = ma.fields.Integer(required=True)
    image_url = ma.fields.String(required=True, allow_none=True)


class CartSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(CartLineSchema), required=True)
    total_cents = ma.fields.Integer(required=True)
    currency = ma.fields.String(required=True, allow_none=True,
                                metadata={"description": "null while the cart is empty, or when it "
                                                     "mixes currencies (checkout refuses that)"})


class QuantitySchema(RequestSchema):
    quantity = ma.fields.Integer(required=True, strict=True,
                                 validate=ma.validate.Range(min=1, max=MAX_QUANTITY))


class CheckoutSchema(ma.Schema):
    order_id = ma.fields.String(required=True)
    payment_intent_id = ma.fields.String(required=True)
    client_secret = ma.fields.String(required=True)
    amount_cents = ma.fields.Integer(required=True)
    currency = ma.fields.String(required=True)


def _cart_to_public(cart: carts.PricedCart) -> dict[str, Any]:
    return {
        "items": [{
            "product_id": line.product["_id"], "name": line.product["name"],
            "quantity": line.quantity, "unit_price_cents": line.product["price_cents"],
            "line_total_cents": line.line_total_cents, "currency": line.product["currency"],
            "stock": line.product["stock"], "image_url": line.product.get("image_url"),
        } for line in cart.lines],
        "total_cents": cart.total_cents,
        "currency": next(iter(cart.currencies)) if len(cart.currencies) == 1 else None,
    }


@blp.route("")
@blp.doc(security=BEARER)
@login_required
@blp.response(200, CartSchema)
def get_cart() -> dict[str, Any]:
    """The cart with today's prices and its total."""
    return _cart_to_public(carts.priced_cart(clients().db, current_user_id()))


@blp.route("/items/<product_id>", methods=["PUT"])
@blp.doc(security=BEARER)
@login_required
@blp.arguments(QuantitySchema)
@blp.response(200, CartSchema)
@blp.alt_response(404, description="`not_found`: no such product")
@blp.alt_response(409, description="`insufficient_stock`")
@blp.alt_response(422, description="`mixed_currencies` or an invalid quantity")
def put_item(body: dict[str, Any], product_id: str) -> dict[str, Any]:
    """Set how many of a product the cart holds."""
    cart = carts.set_quantity(clients().db, current_user_id(), product_id, body["quantity"])
    return _cart_to_public(cart)


@blp.route("/items/<product_id>", methods=["DELETE"])
@blp.doc(security=BEARER)
@login_required
@blp.response(200, CartSchema)
def delete_item(product_id: str) -> dict[str, Any]:
    """Take a product out of the cart (idempotent)."""
    return _cart_to_public(carts.remove_item(clients().db, current_user_id(), product_id))


@blp.route("/checkout", methods=["POST"])
@blp.doc(security=BEARER)
@login_required
@payment_rate_limited
@blp.response(201, CheckoutSchema)
@blp.alt_response(409, description="`empty_cart`, `insufficient_stock` or `conflict`")
@blp.alt_response(422, description="`mixed_currencies`")
@blp.alt_response(429, description="`rate_limited` (PAYMENT_RATE_LIMIT), with Retry-After")
def checkout() -> dict[str, Any]:
    """Turn the cart into a `pending_payment` order with a Stripe PaymentIntent."""
    gateway = StripeGateway(clients().stripe, emulator=settings().stripe_emulator)
    placed = orders.checkout_cart(clients().db, gateway, current_user_id())
    return {"order_id": placed.order_id, "payment_intent_id": placed.payment_intent_id,
            "client_secret": placed.client_secret, "amount_cents": placed.amount_cents,
            "currency": placed.currency}
