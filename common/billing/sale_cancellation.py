"""Cancelling a sale (`POST /api/sales/<id>/cancel`): every live ticket ends `cancelled` with
reason `sale_cancelled`, every hold is released and every paid order of the sale is refunded.

Crash-safe and resumable: the sale's document records the cancellation first (controls.py
close_sale), and every step after it is idempotent and driven by what is still left to do:
reservations still held are released (their PaymentIntents enter the cancellation outbox in
the same step, release.lua; lobby holds likewise, end_lobby_tickets.lua), and paid orders still
`paid` are refunded (the gateway refunds an intent at most once, and looks before it refunds).
Reconcile (beat) calls `finish_cancellation` for every cancelled sale until nothing is left,
so a crash, a Stripe outage or a payment that lands after the cancel is finished there. The
auditor (auditing/audit.py check_cancelled_sale) checks the result: no money kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from common.auditing import operator_log
from common.billing.payments import PaymentContext
from common.flash_sale import controls, sale_keys
from common.flash_sale.intent_outbox import cancel_released_intent
from common.flash_sale.sales import get_sale_doc
from common.platform import metrics
from common.platform.errors import PaymentProviderError, ValidationFailed
from common.platform.lua_scripts import scripts_for
from common.shop.orders import OrderStatus

log = logging.getLogger("common.billing.sale_cancellation")


@dataclass
class CancellationProgress:
    reservations_released: int = 0
    orders_refunded: int = 0
    orders_left: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"reservations_released": self.reservations_released,
                "orders_refunded": self.orders_refunded, "orders_left": self.orders_left}


def cancel_sale(ctx: PaymentContext, sale_id: str, *, confirm: str, actor: str) -> dict[str, Any]:
    """Cancel the sale, final. `confirm` must be the sale's id (ValidationFailed otherwise).
    Idempotent: a second call finishes what the first left. Returns the sale's document."""
    if confirm != sale_id:
        raise ValidationFailed(details={"fields": {"confirm": ["Type the sale's id to cancel it."]}})
    before = get_sale_doc(ctx.db, sale_id)
    sale = controls.close_sale(ctx.db, ctx.redis, sale_id, controls.Closing.CANCELLED)
    progress = finish_cancellation(ctx, sale_id)
    if before.get("closing") != controls.Closing.CANCELLED:
        operator_log.record(ctx.db, actor=actor, action=operator_log.OperatorAction.SALE_CANCELLED,
                            sale_id=sale_id, changes={
                                "closing": {"before": before.get("closing"), "after": sale["closing"]},
                                **{name: {"before": None, "after": value}
                                   for name, value in progress.as_dict().items()}})
    return sale


def finish_cancellation(ctx: PaymentContext, sale_id: str) -> CancellationProgress:
    """Release what a cancelled sale still holds and refund what it still has paid. Safe to run
    any number of times; reconcile runs it for every cancelled sale."""
    progress = CancellationProgress()
    intents = controls.cancel_waiting_and_reserved(ctx.redis, sale_id)
    progress.reservations_released = len(intents)
    for intent_id in intents:
        try:
            cancel_released_intent(ctx.redis, ctx.gateway, sale_id, intent_id)
        except PaymentProviderError:
            pass  # the outbox keeps it: beat's sweep cancels it
    for order in list(ctx.db.orders.find({"sale_id": sale_id, "status": str(OrderStatus.PAID)})):
        try:
            refund_order(ctx, order)
            progress.orders_refunded += 1
        except PaymentProviderError as exc:
            progress.orders_left += 1
            progress.errors.append(f"{order['_id']}: {exc}")
            log.warning("refund of a cancelled sale's order not made yet; reconcile retries",
                        extra={"sale_id": sale_id, "order_id": order["_id"], "error": str(exc)})
    return progress


def refund_order(ctx: PaymentContext, order: dict[str, Any]) -> str:
    """Refund a paid sale order in full, once: Stripe first (at most one refund per intent),
    then the order (only while it is `paid`) and its ticket (`refunded: true`)."""
    intent_id = str(order["payment_intent_id"])
    refund_id = ctx.gateway.refund(intent_id, idempotency_key=f"refund-{intent_id}")
    ctx.db.orders.update_one({"_id": order["_id"], "status": str(OrderStatus.PAID)},
                             {"$set": {"status": str(OrderStatus.REFUNDED), "refund_id": refund_id,
                                       "refund_reason": controls.Closing.CANCELLED.value}})
    if order.get("ticket_id"):
        scripts_for(ctx.redis).mark_refunded(
            keys=[sale_keys.ticket_key(order["sale_id"], str(order["ticket_id"]))], args=[refund_id])
    metrics.OPERATOR_ACTIONS.labels("order_refunded").inc()
    log.info("order of a cancelled sale refunded", extra={"order_id": order["_id"], "refund_id": refund_id})
    return refund_id
