"""`flashsale verify`: the sale's invariants, from Redis and MongoDB (and Stripe when given).

`verify_sale(redis, db, sale_id)` reads the sale with common.auditing.audit (the one auditor, shared
with reconcile and the fault tests: it walks the sale's stream to enumerate every ticket ever
issued, reads each ticket's hash, the sale's counters and its orders) and returns one `Check`
per invariant, each made of the auditor's violations. It is meant for a sale that has settled
(no payment half-way through its two steps); on a live sale "orders = sold" may fail for the
instant between them. `flashsale verify --sale <id>` prints the checks and exits non-zero when
one fails.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import stripe
from pymongo.database import Database

from common.auditing import audit as auditor
from common.auditing.audit import Invariant, Violation
from common.flash_sale.sales import SaleCounters
from common.flash_sale.tickets import HOLDING, TicketStatus

PAGE = auditor.PAGE
SOLD = auditor.SELLING


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str

    def line(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}  {self.name}: {self.detail}"


@dataclass(frozen=True)
class Ticket:
    id: str
    status: str
    quantity: int
    user_id: str
    payment_intent_id: str
    order_id: str
    created_at_ms: int
    # When a worker decided it (reserved, sold out or abandoned); 0 while it waits or if never
    # decided.
    decided_at_ms: int


@dataclass
class SaleAudit:
    """What Redis and MongoDB hold about one sale, gathered in one pass (`snapshot` is what
    the auditor read; the other fields are the load test's view of it)."""

    sale_id: str
    counters: SaleCounters | None
    per_user_limit: int = 1
    ttl_ms: int = 0
    starts_at_ms: int = 0
    product_id: str = ""
    stream_entries: int = 0
    duplicate_entries: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    tickets: list[Ticket] = field(default_factory=list)
    held_by_user: dict[str, int] = field(default_factory=dict)
    orders: list[dict[str, Any]] = field(default_factory=list)
    product_stock: int | None = None
    snapshot: auditor.SaleSnapshot | None = None

    def by_status(self) -> Counter[str]:
        return Counter(t.status for t in self.tickets)

    def units(self, statuses: frozenset[TicketStatus]) -> int:
        return sum(t.quantity for t in self.tickets if t.status in statuses)


@dataclass
class VerifyReport:
    sale_id: str
    checks: list[Check]
    audit: SaleAudit

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    def lines(self) -> list[str]:
        return [check.line() for check in self.checks]


# ------------------------------------------------------------------ reading


def stream_ticket_ids(redis_client: redis.Redis, sale_id: str, page: int = PAGE) -> Iterator[str]:
    """Every ticket id in the sale's stream, in arrival order (XRANGE, one page at a time)."""
    yield from auditor.stream_ticket_ids(redis_client, sale_id, page)


def _ticket(record: auditor.TicketRecord, ttl_ms: int) -> Ticket:
    if record.expires_at_ms:
        # reserve_batch sets expires_at = decision time + the sale's reservation TTL.
        decided = record.expires_at_ms - ttl_ms
    elif record.status in (TicketStatus.SOLD_OUT, TicketStatus.ABANDONED):
        decided = record.updated_at_ms
    else:
        decided = 0
    return Ticket(id=record.id, status=record.status, quantity=record.quantity, user_id=record.user_id,
                  payment_intent_id=record.payment_intent_id, order_id=record.order_id,
                  created_at_ms=record.created_at_ms, decided_at_ms=decided)


def audit_from_snapshot(snapshot: auditor.SaleSnapshot) -> SaleAudit:
    config = snapshot.config or auditor.SaleConfig(stock_total=0)
    seen: set[str] = set()
    duplicates = []
    for ticket_id in snapshot.stream_ids:
        if ticket_id in seen:
            duplicates.append(ticket_id)
        seen.add(ticket_id)
    return SaleAudit(
        sale_id=snapshot.sale_id, counters=snapshot.counters, per_user_limit=config.per_user_limit,
        ttl_ms=config.ttl_ms, starts_at_ms=config.starts_at_ms, product_id=config.product_id,
        stream_entries=len(snapshot.stream_ids), duplicate_entries=duplicates, missing=snapshot.missing,
        tickets=[_ticket(snapshot.tickets[t], config.ttl_ms)
                 for t in dict.fromkeys(snapshot.stream_ids) if t in snapshot.tickets],
        held_by_user=dict(snapshot.held_by_user), orders=[dict(o.document) for o in snapshot.orders],
        product_stock=snapshot.product_stock, snapshot=snapshot)


def audit_sale(redis_client: redis.Redis, db: Database, sale_id: str, *,
               stripe_client: stripe.StripeClient | None = None) -> SaleAudit:
    """Gather the sale's counters, every ticket in its stream, its orders and its product
    (and its PaymentIntents when a Stripe client is given)."""
    return audit_from_snapshot(auditor.read_sale_snapshot(
        redis_client, db, sale_id, stripe_client=stripe_client, with_product=True))


# ------------------------------------------------------------------ checking


def _sample(items: list[str], limit: int = 3) -> str:
    return ", ".join(items[:limit]) + (" ..." if len(items) > limit else "")


# The check each violation counts against, by the auditor's code or invariant.
CHECK_OF_CODE = {
    "oversold": "successful reservations <= stock",
    "negative_counter": "stock never negative",
    "orders_mismatch": "orders = sold",
    "sold_mismatch": "orders = sold",
    "stock_equation": "available + reserved + sold == stock_total",
    "reserved_mismatch": "every issued ticket in exactly one status",
}
CHECK_OF_INVARIANT = {
    Invariant.ONE_PER_TICKET: "one reservation and PaymentIntent per ticket, one order per payment",
    Invariant.OUTCOMES: "every issued ticket in exactly one status",
    Invariant.PER_USER_LIMIT: "per-user limit respected",
    Invariant.FINAL_STAYS_FINAL: "final stays final",
    Invariant.MONEY: "every payment has an order or a refund; no cancelled ticket charged",
}


def _check_name(violation: Violation) -> str:
    return CHECK_OF_CODE.get(violation.code) or CHECK_OF_INVARIANT[violation.invariant]


def check_sale(audit: SaleAudit, *, expect_sold_out: bool = False,
               lowest_available_seen: int | None = None) -> list[Check]:
    """One Check per invariant. `expect_sold_out`: every unit was paid for (a paid run with at
    least as many shoppers as units), so orders = stock and the product's stock is 0."""
    counters = audit.counters
    snapshot = audit.snapshot
    if counters is None or snapshot is None:
        return [Check("sale loaded in Redis", False, f"no counters for {audit.sale_id}")]
    failed: dict[str, list[str]] = {}
    for violation in auditor.audit_sale(snapshot, settled=False, orders_complete=True):
        failed.setdefault(_check_name(violation), []).append(violation.message)

    statuses = audit.by_status()
    holding_units = audit.units(HOLDING)
    sold_units = audit.units(SOLD)
    paid_orders = [o for o in audit.orders if o.get("status") == "paid"]
    order_units = sum(int(item["quantity"]) for o in paid_orders for item in o.get("items", []))
    negative = "" if lowest_available_seen is None or lowest_available_seen >= 0 else \
        f"available (lowest seen during the run) = {lowest_available_seen}"
    if negative:
        failed.setdefault("stock never negative", []).append(negative)
    units = auditor.units_by_user(snapshot)
    summary = ", ".join(f"{status} {count}" for status, count in sorted(statuses.items()))
    seen = "" if lowest_available_seen is None else f", lowest available seen {lowest_available_seen}"
    passing = {
        "successful reservations <= stock":
            f"{holding_units} units held + {sold_units} sold <= stock {counters.stock_total}",
        "one reservation and PaymentIntent per ticket, one order per payment":
            f"{sum(1 for t in audit.tickets if t.payment_intent_id)} PaymentIntents on "
            f"{len(audit.tickets)} tickets, {len(audit.orders)} orders, no ticket or intent twice",
        "stock never negative":
            f"available {counters.available}, reserved {counters.reserved}, sold {counters.sold}{seen}",
        "orders = sold":
            f"{len(paid_orders)} paid orders for {order_units} units, sold counter {counters.sold}, "
            f"{sold_units} units in paid tickets",
        "available + reserved + sold == stock_total":
            f"{counters.available} + {counters.reserved} + {counters.sold} = "
            f"{counters.available + counters.reserved + counters.sold}, stock_total {counters.stock_total}",
        "every issued ticket in exactly one status": f"{len(audit.tickets)} tickets: {summary or 'none'}",
        "per-user limit respected":
            f"{len(units)} users, at most {max(units.values(), default=0)} units each "
            f"(limit {audit.per_user_limit})",
        "final stays final": "no ticket left a final status (a late payment honours only an expired one)",
    }
    if snapshot.intents is not None:
        passing[CHECK_OF_INVARIANT[Invariant.MONEY]] = f"{len(snapshot.intents)} PaymentIntents agree"
    checks = [Check(name, name not in failed, "; ".join(failed.get(name, [])) or detail)
              for name, detail in passing.items()]
    checks += [Check(name, False, "; ".join(messages)) for name, messages in failed.items()
               if name not in passing]

    if expect_sold_out:
        product_ok = audit.product_stock == 0
        checks.append(Check(
            "after a paid run: orders = initial stock, product stock 0",
            order_units == counters.stock_total and product_ok,
            f"{order_units} units ordered of {counters.stock_total}, product stock "
            f"{audit.product_stock}"))
    return checks


def verify_sale(redis_client: redis.Redis, db: Database, sale_id: str, *,
                expect_sold_out: bool = False, lowest_available_seen: int | None = None,
                stripe_client: stripe.StripeClient | None = None) -> VerifyReport:
    """Audit a sale and check every invariant (reads only; Stripe's side when a client is given)."""
    audit = audit_sale(redis_client, db, sale_id, stripe_client=stripe_client)
    return VerifyReport(sale_id, check_sale(audit, expect_sold_out=expect_sold_out,
                                            lowest_available_seen=lowest_available_seen), audit)


# ------------------------------------------------------------------ command line


def load_services(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: start the system with `flashsale run` "
                                "or pass --services")
    return dict(json.loads(path.read_text()))


def clients_for(services: dict[str, Any]) -> tuple[redis.Redis, Any]:
    """Redis and MongoDB clients for the system described by services.json."""
    from common.platform.clients import make_mongo, make_redis

    mongo = make_mongo(services["mongodb"])
    return make_redis(services["redis"], socket_timeout=30), mongo


def run_verify(sale_id: str, services_path: Path, expect_sold_out: bool = False) -> int:
    """`flashsale verify`: print PASS/FAIL per invariant; 0 when all pass, 1 otherwise."""
    from common.platform.clients import mongo_database_name

    services = load_services(services_path)
    redis_client, mongo = clients_for(services)
    try:
        db = mongo[mongo_database_name(services["mongodb"], "flashsale")]
        report = verify_sale(redis_client, db, sale_id, expect_sold_out=expect_sold_out)
    finally:
        redis_client.close()
        mongo.close()
    print(f"sale {sale_id}: {len(report.audit.tickets)} tickets, {len(report.audit.orders)} orders")
    for line in report.lines():
        print(line)
    return 0 if report.passed else 1
