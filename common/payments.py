"""Payments: Stripe webhook events applied exactly once in effect.

Deliveries can repeat, arrive concurrently or out of order, so an event is only a hint: the
PaymentIntent's current state is read from Stripe and a ticket or order only moves forward.
A succeeded payment for a ticket settles in two steps, each idempotent:
1. Redis (settle.lua): the units move into `sold`, or, if the reservation already ended and
   nothing is free, the ticket is marked for refund;
2. MongoDB (one transaction): the order is inserted (unique on the PaymentIntent id) and the
   product's stock decremented; then the ticket shows `paid`.
A crash between the steps is repaired by the next delivery, the task's retry, or reconcile.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from common import metrics, sale_keys
from common.lua_scripts import scripts_for
from common.mongo_tx import run_transaction
from common.stripe_gateway import CANCELED, SUCCEEDED, Intent, StripeGateway
from common.tickets import TicketStatus
from common.waiting_room import release_ticket

log = logging.getLogger("common.payments")

HANDLED_EVENTS = frozenset({
    "payment_intent.succeeded", "payment_intent.payment_failed", "payment_intent.canceled"})


@dataclass
class PaymentContext:
    mongo: MongoClient
    db: Database
    redis: redis.Redis
    gateway: StripeGateway
    # True for the embedded MongoDB server (see common/mongo_tx.py).
    serialize_transactions: bool = False

    def transaction(self, body: Any) -> Any:
        return run_transaction(self.mongo, body, redis_client=self.redis,
                               serialize=self.serialize_transactions)


def new_order_id() -> str:
    return "ord_" + secrets.token_hex(16)


# ------------------------------------------------------------------ webhook deliveries


def record_webhook_event(db: Database, event: dict[str, Any]) -> bool:
    """Remember a delivery by event id. Returns True when it should be processed: the first
    delivery, or a repeat of one whose processing never finished."""
    obj = (event.get("data") or {}).get("object") or {}
    try:
        db.webhook_events.insert_one({
            "_id": event["id"], "type": event.get("type"), "intent_id": obj.get("id"),
            "received_at": datetime.now(UTC), "processed": False,
        })
        return True
    except DuplicateKeyError:
        seen = db.webhook_events.find_one({"_id": event["id"]}, {"processed": 1})
        return not (seen or {}).get("processed", False)


def mark_event_processed(db: Database, event_id: str, outcome: str) -> None:
    db.webhook_events.update_one(
        {"_id": event_id},
        {"$set": {"processed": True, "outcome": outcome, "processed_at": datetime.now(UTC)}})


def apply_intent(ctx: PaymentContext, intent_id: str) -> str:
    """Bring our records in line with the PaymentIntent's current state at Stripe."""
    intent = ctx.gateway.retrieve(intent_id)
    kind = intent.metadata.get("kind")
    if kind == "sale":
        return _apply_sale_intent(ctx, intent)
    if kind == "cart":
        return _apply_cart_intent(ctx, intent)
    return "ignored"


# ------------------------------------------------------------------ flash-sale tickets


def _ticket_keys(sale_id: str, ticket_id: str) -> list[str]:
    return [sale_keys.ticket_key(sale_id, ticket_id), sale_keys.counters_key(sale_id),
            sale_keys.live_tickets_key(sale_id), sale_keys.held_units_key(sale_id),
            sale_keys.expiry_key(sale_id), sale_keys.settled_key(sale_id)]


def _apply_sale_intent(ctx: PaymentContext, intent: Intent) -> str:
    sale_id, ticket_id = intent.metadata.get("sale_id", ""), intent.metadata.get("ticket_id", "")
    if sale_keys.sale_of_ticket(ticket_id) != sale_id:
        log.warning("payment intent names no ticket of ours", extra={"intent_id": intent.id})
        return "ignored"
    if intent.status == SUCCEEDED:
        return settle_ticket_payment(ctx, sale_id, ticket_id, intent)
    if intent.status in ("requires_payment_method", CANCELED) and (
            intent.last_error or intent.status == CANCELED):
        released, _ = release_ticket(
            ctx.redis, ticket_id, TicketStatus.PAYMENT_FAILED,
            (TicketStatus.RESERVING, TicketStatus.RESERVED), payment_intent_id=intent.id)
        if released and intent.status != CANCELED:
            # A declined intent could be retried with another card: close it for good.
            ctx.gateway.cancel(intent.id)
        return "payment_failed" if released else "unchanged"
    return "unchanged"


def settle_ticket_payment(ctx: PaymentContext, sale_id: str, ticket_id: str, intent: Intent) -> str:
    """Turn a succeeded payment into exactly one order, or one refund. Idempotent."""
    scripts = scripts_for(ctx.redis)
    keys = _ticket_keys(sale_id, ticket_id)
    result = scripts.settle(keys=keys, args=[intent.id, new_order_id()])
    outcome = result[0]
    if outcome == "refund":
        refund_id = ctx.gateway.refund(intent.id, idempotency_key=f"refund-{intent.id}")
        scripts.mark_refunded(keys=keys[:1], args=[refund_id])
        log.info("late payment refunded", extra={"ticket_id": ticket_id, "intent_id": intent.id})
        return "refunded"
    if outcome not in ("settle", "paid"):
        return {"refunded": "already_refunded"}.get(outcome, outcome)
    # "paid" too: writing the order again is a no-op, and heals a lost write.
    order_id = result[1]
    ticket = ctx.redis.hgetall(keys[0])
    config = ctx.redis.hgetall(sale_keys.config_key(sale_id))
    write_sale_order(ctx, order_id=order_id, ticket=ticket, config=config, intent=intent)
    if outcome == "paid":
        return "already_paid"
    if not scripts.mark_paid(keys=keys[:2], args=[order_id]):
        return "already_paid"  # a concurrent delivery finished first
    return "honoured" if ticket.get("honoured_after") else "paid"


def write_sale_order(ctx: PaymentContext, *, order_id: str, ticket: dict[str, str],
                     config: dict[str, str], intent: Intent) -> None:
    """Insert the order and take the product's stock in one transaction (idempotent)."""
    quantity = int(ticket["quantity"])
    now = datetime.now(UTC)
    order = {
        "_id": order_id, "user_id": ticket["user_id"], "kind": "sale",
        "items": [{"product_id": config["product_id"], "quantity": quantity,
                   "unit_price_cents": int(config["price_cents"])}],
        "amount_cents": intent.amount, "currency": config["currency"], "status": "paid",
        "payment_intent_id": intent.id, "sale_id": ticket["sale_id"], "ticket_id": ticket["id"],
        "created_at": now, "updated_at": now,
    }

    def insert(session: Any) -> None:
        ctx.db.orders.insert_one(order, session=session)
        taken = ctx.db.products.update_one(
            {"_id": config["product_id"], "stock": {"$gte": quantity}},
            {"$inc": {"stock": -quantity}, "$set": {"updated_at": now}}, session=session)
        if taken.matched_count == 0:
            # The sale's own stock (Redis) is the gate; report the catalogue's drift.
            metrics.RECONCILE_DRIFT.labels("product_stock").inc()
            log.error("product stock lower than sale stock",
                      extra={"product_id": config["product_id"], "order_id": order_id})

    if ctx.db.orders.find_one({"payment_intent_id": intent.id}, {"_id": 1}):
        return  # this payment's order exists already: an earlier delivery did the work
    try:
        ctx.transaction(insert)
    except DuplicateKeyError:
        pass  # this payment's order exists already: the earlier delivery did the work


# ------------------------------------------------------------------ cart orders


def _apply_cart_intent(ctx: PaymentContext, intent: Intent) -> str:
    order = ctx.db.orders.find_one({"payment_intent_id": intent.id, "kind": "cart"})
    if not order:
        return "ignored"
    if intent.status == CANCELED and order["status"] == "pending_payment":
        ctx.db.orders.update_one({"_id": order["_id"], "status": "pending_payment"},
                                 {"$set": {"status": "cancelled", "updated_at": datetime.now(UTC)}})
        return "cancelled"
    if intent.status != SUCCEEDED or order["status"] != "pending_payment":
        return "unchanged"
    return _pay_cart_order(ctx, order, intent)


class _OutOfStock(Exception):
    pass


def _pay_cart_order(ctx: PaymentContext, order: dict[str, Any], intent: Intent) -> str:
    now = datetime.now(UTC)

    def pay(session: Any) -> None:
        moved = ctx.db.orders.update_one(
            {"_id": order["_id"], "status": "pending_payment"},
            {"$set": {"status": "paid", "updated_at": now}}, session=session)
        if moved.matched_count == 0:
            return
        for item in order["items"]:
            taken = ctx.db.products.update_one(
                {"_id": item["product_id"], "stock": {"$gte": item["quantity"]}},
                {"$inc": {"stock": -item["quantity"]}, "$set": {"updated_at": now}}, session=session)
            if taken.matched_count == 0:
                raise _OutOfStock(item["product_id"])

    try:
        ctx.transaction(pay)
    except _OutOfStock:
        # Stock ran out between checkout and payment: never keep money without goods.
        refund_id = ctx.gateway.refund(intent.id, idempotency_key=f"refund-{intent.id}")
        ctx.db.orders.update_one({"_id": order["_id"], "status": "pending_payment"},
                                 {"$set": {"status": "refunded", "refund_id": refund_id,
                                           "updated_at": now}})
        return "refunded"
    return "paid"
