"""Reconciliation: each sale's Redis counters against its tickets and MongoDB's orders.

It reports drift in logs and metrics, and repairs only what it can prove: a ticket whose
payment settled in Redis but whose order never reached MongoDB gets that order written.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from common import metrics, sale_keys
from common.payments import PaymentContext, settle_ticket_payment
from common.sales import all_sale_ids, read_counters
from common.tickets import TicketStatus

log = logging.getLogger("common.reconcile")


@dataclass
class ReconcileReport:
    sale_id: str
    stock_total: int = 0
    available: int = 0
    reserved: int = 0
    sold: int = 0
    reserved_in_tickets: int = 0
    order_units: int = 0
    orders_missing: list[str] = field(default_factory=list)
    orders_repaired: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def consistent(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"consistent": self.consistent}


def reconcile_sale(ctx: PaymentContext, sale_id: str, repair: bool = True) -> ReconcileReport:
    report = ReconcileReport(sale_id=sale_id)
    counters = read_counters(ctx.redis, sale_id)
    if counters is None:
        report.problems.append("sale not loaded in Redis")
        return report
    report.stock_total, report.available = counters.stock_total, counters.available
    report.reserved, report.sold = counters.reserved, counters.sold
    if counters.available + counters.reserved + counters.sold != counters.stock_total:
        report.problems.append("available + reserved + sold != stock_total")
    if min(counters.available, counters.reserved, counters.sold) < 0:
        report.problems.append("a counter is negative")

    # Every unit counted as reserved belongs to a holding ticket in the expiry index.
    holding = ctx.redis.zrange(sale_keys.expiry_key(sale_id), 0, -1)
    pipe = ctx.redis.pipeline(transaction=False)
    for ticket_id in holding:
        pipe.hmget(sale_keys.ticket_key(sale_id, str(ticket_id)), "status", "quantity")
    for status, quantity in pipe.execute() if holding else []:
        if status in (TicketStatus.RESERVING.value, TicketStatus.RESERVED.value):
            report.reserved_in_tickets += int(quantity or 0)
    if report.reserved_in_tickets != counters.reserved:
        report.problems.append("reserved != units held by reserved tickets")

    # Every settled ticket has exactly one order; the orders' units equal `sold`.
    orders = list(ctx.db.orders.find({"sale_id": sale_id, "status": "paid"},
                                     {"ticket_id": 1, "items": 1}))
    ordered_tickets = {o["ticket_id"] for o in orders}
    report.order_units = sum(item["quantity"] for o in orders for item in o["items"])
    for ticket_id in ctx.redis.smembers(sale_keys.settled_key(sale_id)):
        if str(ticket_id) in ordered_tickets:
            continue
        report.orders_missing.append(str(ticket_id))
        if repair and _repair_missing_order(ctx, sale_id, str(ticket_id)):
            report.orders_repaired.append(str(ticket_id))
    if report.orders_repaired:
        report.order_units = sum(
            item["quantity"] for o in ctx.db.orders.find({"sale_id": sale_id, "status": "paid"})
            for item in o["items"])
    if report.order_units != counters.sold:
        report.problems.append("units in paid orders != sold")

    for problem in report.problems:
        metrics.RECONCILE_DRIFT.labels(problem.split(" ")[0]).inc()
        log.error("sale drift", extra={"sale_id": sale_id, "problem": problem})
    return report


def _repair_missing_order(ctx: PaymentContext, sale_id: str, ticket_id: str) -> bool:
    intent_id = ctx.redis.hget(sale_keys.ticket_key(sale_id, ticket_id), "payment_intent_id")
    if not intent_id:
        return False
    intent = ctx.gateway.retrieve(str(intent_id))
    if intent.status != "succeeded":
        return False
    outcome = settle_ticket_payment(ctx, sale_id, ticket_id, intent)
    log.warning("missing order repaired", extra={"ticket_id": ticket_id, "outcome": outcome})
    return outcome in ("paid", "honoured", "already_paid")


def reconcile_all(ctx: PaymentContext, repair: bool = True) -> list[ReconcileReport]:
    return [reconcile_sale(ctx, sale_id, repair) for sale_id in all_sale_ids(ctx.redis)]
