"""Orders: what a user bought, for how much, and where its payment stands.

The document shape is shared with common/billing/payments.py, which marks orders paid or refunded
from Stripe webhooks:

    {_id: "ord_<32 hex>", user_id, kind: "cart"|"sale",
     items: [{product_id, quantity, unit_price_cents}], amount_cents, currency,
     status: "pending_payment"|"paid"|"refunded"|"cancelled", payment_intent_id,
     sale_id, ticket_id, created_at, updated_at}

This module creates cart orders (checkout) and lets their owner pay them; it never marks an
order paid itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pymongo.database import Database

from common.billing import card_payments
from common.billing.stripe_gateway import REQUIRES_ACTION, StripeGateway
from common.platform.clock import iso_utc, utc_now
from common.platform.errors import Conflict, EmptyCart, InsufficientStock, NotFound, OrderNotPayable
from common.platform.ids import new_order_id
from common.platform.pagination import Page, newest_first
from common.shop import carts

log = logging.getLogger("common.shop.orders")


class OrderStatus(StrEnum):
    PENDING_PAYMENT = "pending_payment"
    PAID = "paid"
    REFUNDED = "refunded"
    CANCELLED = "cancelled"


class OrderKind(StrEnum):
    CART = "cart"
    SALE = "sale"


def order_to_public(doc: dict[str, Any]) -> dict[str, Any]:
    """The contract's order: no internal fields, times in ISO 8601 UTC."""
    return {
        "id": doc["_id"],
        "user_id": doc["user_id"],
        "items": [{"product_id": item["product_id"], "quantity": int(item["quantity"]),
                   "unit_price_cents": int(item["unit_price_cents"])} for item in doc["items"]],
        "amount_cents": int(doc["amount_cents"]),
        "currency": doc["currency"],
        "status": doc["status"],
        "payment_intent_id": doc.get("payment_intent_id"),
        "sale_id": doc.get("sale_id"),
        "ticket_id": doc.get("ticket_id"),
        "created_at": iso_utc(doc["created_at"]),
    }


def list_orders(db: Database, user_id: str, limit: int, cursor: str | None = None) -> Page:
    """The user's own orders, newest first."""
    return newest_first(db.orders, {"user_id": user_id}, limit=limit, cursor=cursor)


def get_order(db: Database, user_id: str, order_id: str) -> dict[str, Any]:
    """The user's order; NotFound for a missing one and for anyone else's alike."""
    doc = db.orders.find_one({"_id": order_id, "user_id": user_id})
    if doc is None:
        raise NotFound("No such order.")
    return doc


@dataclass(frozen=True)
class Checkout:
    order_id: str
    payment_intent_id: str
    client_secret: str
    amount_cents: int
    currency: str


def checkout_cart(db: Database, gateway: StripeGateway, user_id: str) -> Checkout:
    """Turn the user's cart into a `pending_payment` order with a Stripe PaymentIntent.

    Prices are today's; stock is checked, not taken (paying takes it). The cart is emptied
    atomically before anything is created, so a double submit makes one order (the other gets
    EmptyCart or Conflict); if the PaymentIntent cannot be made, the order is cancelled and
    the items go back into the cart.
    """
    cart = carts.priced_cart(db, user_id)
    if not cart.lines:
        raise EmptyCart()
    currency = cart.single_currency()
    for line in cart.lines:
        if line.quantity > line.product["stock"]:
            raise InsufficientStock(details={"product_id": line.product["_id"],
                                             "available": line.product["stock"],
                                             "requested": line.quantity})
    if not carts.take(db, user_id, cart):
        raise Conflict("The cart changed during checkout; review it and try again.")

    cart_items = [{"product_id": line.product["_id"], "quantity": line.quantity}
                  for line in cart.lines]
    now = utc_now()
    order_id, amount_cents = new_order_id(), cart.total_cents
    order: dict[str, Any] = {
        "_id": order_id, "user_id": user_id, "kind": str(OrderKind.CART),
        "items": [{"product_id": line.product["_id"], "quantity": line.quantity,
                   "unit_price_cents": int(line.product["price_cents"])} for line in cart.lines],
        "amount_cents": amount_cents, "currency": currency,
        "status": str(OrderStatus.PENDING_PAYMENT), "payment_intent_id": None,
        "sale_id": None, "ticket_id": None, "created_at": now, "updated_at": now,
    }
    try:
        db.orders.insert_one(order)
        intent = gateway.create_intent(
            amount_cents=amount_cents, currency=currency,
            metadata={"kind": str(OrderKind.CART), "order_id": order_id, "user_id": user_id},
            idempotency_key=f"order-{order_id}")
        db.orders.update_one({"_id": order_id, "payment_intent_id": None},
                             {"$set": {"payment_intent_id": intent.id, "updated_at": utc_now()}})
    except Exception:
        log.warning("checkout failed; cart restored", extra={"order_id": order_id})
        db.orders.update_one({"_id": order_id, "status": str(OrderStatus.PENDING_PAYMENT)},
                             {"$set": {"status": str(OrderStatus.CANCELLED),
                                       "updated_at": utc_now()}})
        carts.put_back(db, user_id, cart_items)
        raise
    return Checkout(order_id=order_id, payment_intent_id=intent.id,
                    client_secret=intent.client_secret, amount_cents=amount_cents,
                    currency=currency)


@dataclass(frozen=True)
class PaymentAttempt:
    status: str
    client_secret: str
    requires_action: bool
    payment_intent_id: str


def pay_order(db: Database, gateway: StripeGateway, *, user_id: str, order_id: str,
              card_token: str) -> PaymentAttempt:
    """Confirm a pending cart order's PaymentIntent with a card token.

    The order itself turns `paid` when Stripe's webhook says so (common/billing/payments.py). When
    the bank wants 3-D Secure, `requires_action` is true and the browser finishes with the
    client secret. PaymentDeclined for a refused card. The card goes on the account's one
    Stripe Customer (common/billing/card_payments.py).
    """
    order = get_order(db, user_id, order_id)
    if (order["kind"] != OrderKind.CART or order["status"] != OrderStatus.PENDING_PAYMENT
            or not order.get("payment_intent_id")):
        raise OrderNotPayable(details={"status": order["status"]})
    intent = card_payments.pay_with_card_token(db, gateway, user_id=user_id,
                                               intent_id=order["payment_intent_id"],
                                               card_token=card_token)
    return PaymentAttempt(status=intent.status, client_secret=intent.client_secret,
                          requires_action=intent.status == REQUIRES_ACTION,
                          payment_intent_id=intent.id)
