"""Payments: Stripe webhook events applied exactly once in effect.

Deliveries can repeat, arrive concurrently or out of order, so an event is only a hint: the
PaymentIntent's current state is read from Stripe and a ticket or order only moves forward.
A succeeded payment for a ticket settles in two steps, each idempotent:
1. Redis (settle.lua): the units move into `sold`, or, if the reservation already ended and
   nothing is free, the ticket is marked for refund;
2. MongoDB (one transaction): the order is inserted (unique on the PaymentIntent id) and the
   product's stock decremented; then the ticket shows `paid`.
A crash between the steps is repaired by the next delivery, the task's retry, or reconcile.

Money is never kept without goods: a succeeded payment that matches no live ticket (its
ticket is gone, another intent won the ticket, the ticket was cancelled or declined, or the
owner's per-user limit is used up) is refunded. Every released ticket's PaymentIntent goes
into its sale's cancellation outbox atomically with the release (release.lua), and beat
sweeps the outbox until Stripe confirms the cancellation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import redis
from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from common.billing.stripe_gateway import (
    CANCELED,
    PROCESSING,
    REQUIRES_PAYMENT_METHOD,
    SUCCEEDED,
    Intent,
    StripeGateway,
)
from common.flash_sale import sale_keys
from common.flash_sale.intent_outbox import cancel_released_intent, forget_cancellation
from common.flash_sale.tickets import HOLDING, TicketStatus
from common.flash_sale.waiting_room import public_status, read_ticket, read_ticket_fields, release_ticket
from common.platform import metrics
from common.platform.clock import now_ms, utc_now
from common.platform.errors import PaymentInProgress, PaymentProviderError, TicketNotActive
from common.platform.ids import new_order_id
from common.platform.lua_scripts import scripts_for
from common.platform.mongo_tx import run_transaction
from common.shop.orders import OrderKind, OrderStatus

log = logging.getLogger("common.billing.payments")

HANDLED_EVENTS = frozenset({
    "payment_intent.succeeded", "payment_intent.payment_failed", "payment_intent.canceled"})


@dataclass
class PaymentContext:
    mongo: MongoClient
    db: Database
    redis: redis.Redis
    gateway: StripeGateway
    # True for the embedded MongoDB server (see common/platform/mongo_tx.py).
    serialize_transactions: bool = False

    def transaction(self, body: Any) -> Any:
        return run_transaction(self.mongo, body, redis_client=self.redis,
                               serialize=self.serialize_transactions)


# ------------------------------------------------------------------ webhook deliveries


def record_webhook_event(db: Database, event: dict[str, Any]) -> bool:
    """Remember a delivery by event id. Returns True when it should be processed: the first
    delivery, or a repeat of one whose processing never finished."""
    obj = (event.get("data") or {}).get("object") or {}
    try:
        db.webhook_events.insert_one({
            "_id": event["id"], "type": event.get("type"), "intent_id": obj.get("id"),
            "received_at": utc_now(), "processed": False,
        })
        return True
    except DuplicateKeyError:
        seen = db.webhook_events.find_one({"_id": event["id"]}, {"processed": 1})
        return not (seen or {}).get("processed", False)


def mark_event_processed(db: Database, event_id: str, outcome: str) -> None:
    db.webhook_events.update_one(
        {"_id": event_id},
        {"$set": {"processed": True, "outcome": outcome, "processed_at": utc_now()}})


def apply_intent(ctx: PaymentContext, intent_id: str) -> str:
    """Bring our records in line with the PaymentIntent's current state at Stripe."""
    intent = ctx.gateway.retrieve(intent_id)
    kind = intent.metadata.get("kind")
    if kind == OrderKind.SALE:
        return _apply_sale_intent(ctx, intent)
    if kind == OrderKind.CART:
        return _apply_cart_intent(ctx, intent)
    return "ignored"


# ------------------------------------------------------------------ flash-sale tickets


def _ticket_keys(sale_id: str, ticket_id: str) -> list[str]:
    return [sale_keys.ticket_key(sale_id, ticket_id), sale_keys.counters_key(sale_id),
            sale_keys.live_tickets_key(sale_id), sale_keys.held_units_key(sale_id),
            sale_keys.expiry_key(sale_id), sale_keys.settled_key(sale_id),
            sale_keys.config_key(sale_id), sale_keys.card_claims_key(sale_id)]


def _apply_sale_intent(ctx: PaymentContext, intent: Intent) -> str:
    sale_id, ticket_id = intent.metadata.get("sale_id", ""), intent.metadata.get("ticket_id", "")
    if sale_keys.sale_of_ticket(ticket_id) != sale_id:
        if intent.status == SUCCEEDED:
            return refund_unmatched_payment(ctx.gateway, intent, "no_ticket")
        log.warning("payment intent names no ticket of ours", extra={"intent_id": intent.id})
        return "ignored"
    if intent.status == SUCCEEDED:
        return settle_ticket_payment(ctx, sale_id, ticket_id, intent)
    if intent.status in (REQUIRES_PAYMENT_METHOD, CANCELED) and (
            intent.last_error or intent.status == CANCELED):
        released, _ = release_ticket(
            ctx.redis, ticket_id, TicketStatus.PAYMENT_FAILED,
            (TicketStatus.RESERVING, TicketStatus.RESERVED), payment_intent_id=intent.id)
        if released and intent.status != CANCELED:
            # A declined intent could be retried with another card: close it for good (the
            # release queued it in the outbox, so a failure here is retried by beat).
            cancel_released_intent(ctx.redis, ctx.gateway, sale_id, intent.id)
        return TicketStatus.PAYMENT_FAILED.value if released else "unchanged"
    return "unchanged"


def refund_unmatched_payment(gateway: StripeGateway, intent: Intent, reason: str) -> str:
    """Refund a succeeded sale payment that no live ticket can be matched with. Idempotent:
    the gateway refunds an intent at most once."""
    gateway.refund(intent.id, idempotency_key=f"refund-{intent.id}")
    metrics.UNMATCHED_REFUNDS.labels(reason).inc()
    log.warning("payment matched no live ticket and was refunded",
                extra={"intent_id": intent.id, "ticket_id": intent.metadata.get("ticket_id"),
                       "reason": reason, "amount_cents": intent.amount})
    return "refunded_unmatched"


def settle_ticket_payment(ctx: PaymentContext, sale_id: str, ticket_id: str, intent: Intent) -> str:
    """Turn a succeeded payment into exactly one order, or one refund. Idempotent."""
    scripts = scripts_for(ctx.redis)
    keys = _ticket_keys(sale_id, ticket_id)
    result = scripts.settle(keys=keys, args=[intent.id, new_order_id()])
    outcome = result[0]
    if outcome == "refund":
        refund_id = ctx.gateway.refund(intent.id, idempotency_key=f"refund-{intent.id}")
        scripts.mark_refunded(keys=keys[:1], args=[refund_id])
        log.info("late payment refunded", extra={"ticket_id": ticket_id, "intent_id": intent.id,
                                                 "reason": result[1]})
        return "refunded"
    if outcome in ("missing", "foreign"):
        # The ticket is gone, or another intent won it: this money matches no goods.
        return refund_unmatched_payment(ctx.gateway, intent, outcome)
    if outcome not in ("settle", TicketStatus.PAID):
        return {"refunded": "already_refunded"}.get(outcome, outcome)
    # "paid" too: writing the order again is a no-op, and heals a lost write.
    order_id = result[1]
    ticket = ctx.redis.hgetall(keys[0])
    config = ctx.redis.hgetall(sale_keys.config_key(sale_id))
    write_sale_order(ctx, order_id=order_id, ticket=ticket, config=config, intent=intent)
    if outcome == TicketStatus.PAID:
        return "already_paid"
    if not scripts.mark_paid(keys=keys[:2], args=[order_id]):
        return "already_paid"  # a concurrent delivery finished first
    return "honoured" if ticket.get("honoured_after") else TicketStatus.PAID.value


def write_sale_order(ctx: PaymentContext, *, order_id: str, ticket: dict[str, str],
                     config: dict[str, str], intent: Intent) -> None:
    """Insert the order (idempotent: unique on the PaymentIntent id). The product's stock is
    not touched: the sale's units left the catalogue when the sale was created."""
    quantity = int(ticket["quantity"])
    now = utc_now()
    order = {
        "_id": order_id, "user_id": ticket["user_id"], "kind": str(OrderKind.SALE),
        "items": [{"product_id": config["product_id"], "quantity": quantity,
                   "unit_price_cents": int(config["price_cents"])}],
        "amount_cents": intent.amount, "currency": config["currency"],
        "status": str(OrderStatus.PAID),
        "payment_intent_id": intent.id, "sale_id": ticket["sale_id"], "ticket_id": ticket["id"],
        # The card that paid (one_card: the auditor checks it paid for this account alone).
        "card_fingerprint": ticket.get("card_fingerprint") or None,
        "created_at": now, "updated_at": now,
    }

    if ctx.db.orders.find_one({"payment_intent_id": intent.id}, {"_id": 1}):
        return  # this payment's order exists already: an earlier delivery did the work
    try:
        ctx.db.orders.insert_one(order)
    except DuplicateKeyError:
        pass  # this payment's order exists already: the earlier delivery did the work


# ------------------------------------------------------------------ giving a ticket up


def cancel_ticket(redis_client: redis.Redis, gateway: StripeGateway, ticket_id: str,
                  owner_id: str) -> dict[str, Any]:
    """Give up the owner's queued or reserved ticket; its stock returns at once.

    A reservation's PaymentIntent is cancelled at Stripe first, so a cancelled ticket can
    never be charged: when Stripe says the payment is processing or has succeeded, nothing
    changes and PaymentInProgress (409) is raised. Raises TicketNotActive for an ended ticket,
    PaymentProviderError (503) when Stripe cannot confirm the cancellation.
    """
    for _attempt in range(3):
        fields, _, _ = read_ticket_fields(redis_client, ticket_id)
        if fields.get("user_id") != owner_id:
            read_ticket(redis_client, ticket_id, owner_id=owner_id)  # raises NotFound
        status = TicketStatus(fields["status"])
        if status is TicketStatus.SETTLING:
            raise PaymentInProgress(details={"status": public_status(status)})
        intent_id = fields.get("payment_intent_id") or ""
        intent_state = ""
        if intent_id and status in HOLDING:
            final = gateway.cancel(intent_id)
            if final.status in (SUCCEEDED, PROCESSING):
                raise PaymentInProgress(details={"status": public_status(status),
                                                 "payment_status": final.status})
            if final.status != CANCELED:
                raise PaymentProviderError("The payment could not be cancelled; try again.")
            intent_state = "cancelled"
        released, detail = release_ticket(
            redis_client, ticket_id, TicketStatus.CANCELLED,
            (TicketStatus.QUEUED, TicketStatus.RESERVING, TicketStatus.RESERVED),
            payment_intent_id=intent_id or "none", intent_state=intent_state)
        if released:
            return read_ticket(redis_client, ticket_id)
        if detail != "other_intent":
            raise TicketNotActive(details={"status": public_status(detail)})
        # The reservation got its PaymentIntent meanwhile: cancel that one first.
    raise PaymentProviderError("The ticket kept changing; try again.")


# ------------------------------------------------------------------ the cancellation outbox

# Beat retries a cancellation Stripe did not confirm after this long, doubling up to the cap.
CANCEL_RETRY_MS = 5_000
CANCEL_RETRY_CAP_MS = 300_000


def sweep_intent_cancellations(ctx: PaymentContext, sale_id: str, limit: int = 200) -> dict[str, int]:
    """Beat's pass over one sale's outbox: cancel each due intent until Stripe confirms.

    An intent that succeeded before its cancellation is applied like a webhook (settled,
    honoured or refunded), then forgotten. A Stripe error pushes the entry back with backoff.
    """
    key = sale_keys.intent_cancels_key(sale_id)
    due_by = now_ms()
    due = ctx.redis.zrangebyscore(key, "-inf", due_by, start=0, num=limit)
    outcomes: dict[str, int] = {}
    for intent_id in due:
        try:
            status = cancel_released_intent(ctx.redis, ctx.gateway, sale_id, intent_id)
            if status == SUCCEEDED:
                apply_intent(ctx, intent_id)
                forget_cancellation(ctx.redis, sale_id, intent_id)
            elif status != CANCELED:
                raise PaymentProviderError(f"intent still {status}")
        except Exception as exc:
            status = "retry"
            attempts = int(ctx.redis.hincrby(sale_keys.intent_cancel_attempts_key(sale_id), intent_id, 1))
            delay = min(CANCEL_RETRY_MS * 2 ** min(attempts - 1, 16), CANCEL_RETRY_CAP_MS)
            ctx.redis.zadd(key, {intent_id: due_by + delay}, xx=True)
            log.warning("intent cancellation not confirmed; will retry",
                        extra={"intent_id": intent_id, "sale_id": sale_id, "error": str(exc)})
        outcomes[status] = outcomes.get(status, 0) + 1
        metrics.INTENT_CANCELLATIONS.labels(status).inc()
    return outcomes


# ------------------------------------------------------------------ cart orders


def _apply_cart_intent(ctx: PaymentContext, intent: Intent) -> str:
    order = ctx.db.orders.find_one({"payment_intent_id": intent.id, "kind": str(OrderKind.CART)})
    if not order:
        return "ignored"
    if intent.status == CANCELED and order["status"] == OrderStatus.PENDING_PAYMENT:
        ctx.db.orders.update_one({"_id": order["_id"], "status": str(OrderStatus.PENDING_PAYMENT)},
                                 {"$set": {"status": str(OrderStatus.CANCELLED),
                                           "updated_at": utc_now()}})
        return str(OrderStatus.CANCELLED)
    if intent.status != SUCCEEDED or order["status"] != OrderStatus.PENDING_PAYMENT:
        return "unchanged"
    return _pay_cart_order(ctx, order, intent)


class _OutOfStock(Exception):
    pass


def _pay_cart_order(ctx: PaymentContext, order: dict[str, Any], intent: Intent) -> str:
    now = utc_now()

    def pay(session: Any) -> None:
        moved = ctx.db.orders.update_one(
            {"_id": order["_id"], "status": str(OrderStatus.PENDING_PAYMENT)},
            {"$set": {"status": str(OrderStatus.PAID), "updated_at": now}}, session=session)
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
        ctx.db.orders.update_one({"_id": order["_id"], "status": str(OrderStatus.PENDING_PAYMENT)},
                                 {"$set": {"status": str(OrderStatus.REFUNDED), "refund_id": refund_id,
                                           "updated_at": now}})
        return str(OrderStatus.REFUNDED)
    return str(OrderStatus.PAID)
