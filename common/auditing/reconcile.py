"""Reconciliation: each sale's Redis counters against its tickets and MongoDB's orders.

It repairs only what it can prove: a ticket whose payment settled in Redis but whose order
never reached MongoDB gets that order written. Then it audits the sale with common.auditing.audit (the
auditor `flashsale verify` and the fault tests use too) on Redis and MongoDB, a live sale, so
without the checks that need every ticket final or Stripe read (statuses and indexes are
`flashsale verify`'s and the fault tests' job), and reports each violation in logs and metrics.

On a sale that is selling, a payment is for a moment between its Redis step and its order,
and the snapshot reads Redis before MongoDB: a single look can see a mismatch that is only
a payment in flight (the 10,000-shopper surge logged "sale drift" errors every minute while
every invariant held at the end). The periodic run therefore leaves settlements younger than
`settle_grace_ms` to their own task, and reports a violation as drift only when its next run
sees it again (`confirm`); `flashsale reconcile`, run on a quiet sale, reports at once.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from common.auditing import audit
from common.auditing.audit import Violation
from common.billing import sale_cancellation
from common.billing.payments import PaymentContext, settle_ticket_payment
from common.billing.stripe_gateway import SUCCEEDED
from common.flash_sale import sale_keys
from common.flash_sale.sales import all_sale_ids, read_counters
from common.flash_sale.tickets import HOLDING, TicketStatus
from common.platform import metrics
from common.platform.clock import now_ms
from common.platform.lua_scripts import scripts_for
from common.shop.orders import OrderStatus

log = logging.getLogger("common.auditing.reconcile")

# A settlement younger than this is its own task's to finish (the periodic run's grace).
SETTLE_GRACE_MS = 30_000
# Longer than a few reconcile intervals: a violation seen, then not for this long, is forgotten.
DRIFT_MEMORY_SECONDS = 600


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
    tickets_marked_paid: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def consistent(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"consistent": self.consistent}


def reconcile_sale(ctx: PaymentContext, sale_id: str, repair: bool = True, *,
                   settle_grace_ms: int = 0, confirm: bool = False) -> ReconcileReport:
    """Repair what is provable, then audit the sale: stock (I1, with every settled ticket's order
    written), one order per ticket (I3, without Stripe), the per-user limit and final stays
    final. Idempotent; `repair=False` only reads."""
    report = ReconcileReport(sale_id=sale_id)
    if read_counters(ctx.redis, sale_id) is None:
        report.problems.append("sale not loaded in Redis")
        return report

    sale = ctx.db.sales.find_one({"_id": sale_id}, {"closing": 1}) or {}
    if repair and sale.get("closing") == sale_cancellation.controls.Closing.CANCELLED:
        # A cancelled sale: release and refund what is left (a crash, an outage, a late payment).
        sale_cancellation.finish_cancellation(ctx, sale_id)

    # Every settled ticket has exactly one order (refunded when its sale was cancelled).
    ordered_tickets = {o["ticket_id"]: o["_id"] for o in ctx.db.orders.find(
        {"sale_id": sale_id, "status": {"$in": [str(OrderStatus.PAID), str(OrderStatus.REFUNDED)]}},
        {"ticket_id": 1})}
    settled = [str(t) for t in ctx.redis.smembers(sale_keys.settled_key(sale_id))]
    pipe = ctx.redis.pipeline(transaction=False)
    for ticket_id in settled:
        pipe.hmget(sale_keys.ticket_key(sale_id, ticket_id), "status", "updated_at_ms")
    recent = now_ms() - settle_grace_ms
    for ticket_id, (status, updated) in zip(settled, pipe.execute() if settled else [], strict=True):
        if settle_grace_ms and status == TicketStatus.SETTLING.value and int(updated or 0) > recent:
            continue  # its own task is writing the order and marking it paid right now
        if ticket_id in ordered_tickets:
            # The order is stored but a worker died before its last step, leaving the ticket
            # `settling` (shown as reserved): finish that step.
            if repair and status == TicketStatus.SETTLING.value and _finish_paid_ticket(
                    ctx, sale_id, ticket_id, ordered_tickets[ticket_id]):
                report.tickets_marked_paid.append(ticket_id)
            continue
        report.orders_missing.append(ticket_id)
        if repair and _repair_missing_order(ctx, sale_id, ticket_id):
            report.orders_repaired.append(ticket_id)

    snapshot = audit.read_sale_snapshot(ctx.redis, ctx.db, sale_id)
    if snapshot.counters is not None:
        counters = snapshot.counters
        report.stock_total, report.available = counters.stock_total, counters.available
        report.reserved, report.sold = counters.reserved, counters.sold
    report.reserved_in_tickets = snapshot.units(HOLDING)
    report.order_units = sum(o.units for o in snapshot.paid_orders())
    violations = [*audit.check_stock(snapshot, orders_complete=True),
                  *audit.check_one_per_ticket(snapshot),
                  *audit.check_per_user_limit(snapshot),
                  *audit.check_final_stays_final(snapshot), *audit.check_cancelled_sale(snapshot)]
    if confirm:
        violations = _seen_twice(ctx, sale_id, violations)
    for violation in violations:
        report.problems.append(str(violation))
        metrics.RECONCILE_DRIFT.labels(violation.code).inc()
        log.error("sale drift", extra={"sale_id": sale_id, "problem": str(violation),
                                       "invariant": violation.invariant.value, "code": violation.code,
                                       "subject": violation.subject})
    return report


def _seen_twice(ctx: PaymentContext, sale_id: str, violations: list[Violation]) -> list[Violation]:
    """The violations the previous run saw too; this run's are kept for the next one."""
    key = sale_keys.drift_key(sale_id)
    names = {f"{v.code}|{v.subject}": v for v in violations}
    pipe = ctx.redis.pipeline(transaction=True)
    pipe.smembers(key)
    pipe.delete(key)
    if names:
        pipe.sadd(key, *names)
        pipe.expire(key, DRIFT_MEMORY_SECONDS)
    before = {str(name) for name in pipe.execute()[0]}
    for name, violation in names.items():
        if name not in before:
            log.info("possible drift, checked again next run",
                     extra={"sale_id": sale_id, "problem": str(violation)})
    return [v for name, v in names.items() if name in before]


def _finish_paid_ticket(ctx: PaymentContext, sale_id: str, ticket_id: str, order_id: str) -> bool:
    """Mark a settling ticket whose order exists paid (a no-op for any other ticket)."""
    marked = bool(scripts_for(ctx.redis).mark_paid(
        keys=[sale_keys.ticket_key(sale_id, ticket_id), sale_keys.counters_key(sale_id)],
        args=[order_id]))
    if marked:
        log.warning("settling ticket with an order marked paid",
                    extra={"ticket_id": ticket_id, "order_id": order_id})
    return marked


def _repair_missing_order(ctx: PaymentContext, sale_id: str, ticket_id: str) -> bool:
    intent_id = ctx.redis.hget(sale_keys.ticket_key(sale_id, ticket_id), "payment_intent_id")
    if not intent_id:
        return False
    intent = ctx.gateway.retrieve(str(intent_id))
    if intent.status != SUCCEEDED:
        return False
    outcome = settle_ticket_payment(ctx, sale_id, ticket_id, intent)
    log.warning("missing order repaired", extra={"ticket_id": ticket_id, "outcome": outcome})
    return outcome in (TicketStatus.PAID, "honoured", "already_paid")


def reconcile_all(ctx: PaymentContext, repair: bool = True, *, settle_grace_ms: int = 0,
                  confirm: bool = False) -> list[ReconcileReport]:
    return [reconcile_sale(ctx, sale_id, repair, settle_grace_ms=settle_grace_ms, confirm=confirm)
            for sale_id in all_sale_ids(ctx.redis)]
