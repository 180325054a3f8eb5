"""The sale's invariants, checked from Redis and MongoDB alone (no HTTP, no Stripe).

`verify_sale(redis, db, sale_id)` walks the sale's stream to enumerate every ticket ever
issued, reads each ticket's hash, the sale's counters and its orders, and returns one `Check`
per invariant. It is meant for a sale that has settled (no payment half-way through its two
steps); on a live sale "orders = sold" may fail for the instant between them.
`flashsale verify --sale <id>` prints the checks and exits non-zero when one fails.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from pymongo.database import Database

from common import sale_keys
from common.sales import SaleCounters, read_counters
from common.tickets import HOLDING, TicketStatus

TICKET_FIELDS = ("id", "status", "quantity", "user_id", "payment_intent_id", "order_id",
                 "expires_at_ms", "created_at_ms", "updated_at_ms")
PAGE = 1000
SOLD = frozenset({TicketStatus.SETTLING, TicketStatus.PAID})


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
    # When a worker decided it (reserved or sold out); 0 while it waits or if never decided.
    decided_at_ms: int


@dataclass
class SaleAudit:
    """What Redis and MongoDB hold about one sale, gathered in one pass."""

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
    stream = sale_keys.stream_key(sale_id)
    start = "-"
    while True:
        entries = redis_client.xrange(stream, min=start, max="+", count=page)
        for _entry_id, data in entries:
            yield str(data.get("ticket_id", ""))
        if len(entries) < page:
            return
        start = "(" + str(entries[-1][0])


def _int(value: Any) -> int:
    return int(value) if value not in (None, "") else 0


def _read_tickets(redis_client: redis.Redis, sale_id: str, ids: list[str],
                  ttl_ms: int) -> tuple[list[Ticket], list[str]]:
    pipe = redis_client.pipeline(transaction=False)
    for ticket_id in ids:
        pipe.hmget(sale_keys.ticket_key(sale_id, ticket_id), *TICKET_FIELDS)
    tickets, missing = [], []
    for ticket_id, values in zip(ids, pipe.execute() if ids else [], strict=True):
        row = dict(zip(TICKET_FIELDS, values, strict=True))
        if row["id"] is None:
            missing.append(ticket_id)
            continue
        status = str(row["status"])
        if row["expires_at_ms"]:
            # reserve_batch sets expires_at = decision time + the sale's reservation TTL.
            decided = _int(row["expires_at_ms"]) - ttl_ms
        elif status == TicketStatus.SOLD_OUT:
            decided = _int(row["updated_at_ms"])
        else:
            decided = 0
        tickets.append(Ticket(
            id=ticket_id, status=status, quantity=_int(row["quantity"]),
            user_id=str(row["user_id"] or ""), payment_intent_id=str(row["payment_intent_id"] or ""),
            order_id=str(row["order_id"] or ""), created_at_ms=_int(row["created_at_ms"]),
            decided_at_ms=decided))
    return tickets, missing


def audit_sale(redis_client: redis.Redis, db: Database, sale_id: str) -> SaleAudit:
    """Gather the sale's counters, every ticket in its stream, its orders and its product."""
    audit = SaleAudit(sale_id=sale_id, counters=read_counters(redis_client, sale_id))
    config = redis_client.hgetall(sale_keys.config_key(sale_id))
    audit.per_user_limit = _int(config.get("per_user_limit")) or 1
    audit.ttl_ms = _int(config.get("ttl_s")) * 1000
    audit.starts_at_ms = _int(config.get("starts_at_ms"))
    audit.product_id = str(config.get("product_id") or "")

    seen: set[str] = set()
    batch: list[str] = []
    for ticket_id in stream_ticket_ids(redis_client, sale_id):
        audit.stream_entries += 1
        if ticket_id in seen:
            audit.duplicate_entries.append(ticket_id)
            continue
        seen.add(ticket_id)
        batch.append(ticket_id)
        if len(batch) >= PAGE:
            tickets, missing = _read_tickets(redis_client, sale_id, batch, audit.ttl_ms)
            audit.tickets += tickets
            audit.missing += missing
            batch = []
    tickets, missing = _read_tickets(redis_client, sale_id, batch, audit.ttl_ms)
    audit.tickets += tickets
    audit.missing += missing

    audit.held_by_user = {str(user): _int(units) for user, units in
                          redis_client.hgetall(sale_keys.held_units_key(sale_id)).items()}
    audit.orders = list(db.orders.find(
        {"sale_id": sale_id},
        {"_id": 1, "ticket_id": 1, "payment_intent_id": 1, "status": 1, "items": 1}))
    if audit.product_id:
        product = db.products.find_one({"_id": audit.product_id}, {"stock": 1})
        audit.product_stock = int(product["stock"]) if product else None
    return audit


# ------------------------------------------------------------------ checking


def _duplicates(values: list[str]) -> list[str]:
    return sorted(value for value, count in Counter(v for v in values if v).items() if count > 1)


def _sample(items: list[str], limit: int = 3) -> str:
    return ", ".join(items[:limit]) + (" ..." if len(items) > limit else "")


def check_sale(audit: SaleAudit, *, expect_sold_out: bool = False,
               lowest_available_seen: int | None = None) -> list[Check]:
    """One Check per invariant. `expect_sold_out`: every unit was paid for (a paid run with at
    least as many shoppers as units), so orders = stock and the product's stock is 0."""
    counters = audit.counters
    if counters is None:
        return [Check("sale loaded in Redis", False, f"no counters for {audit.sale_id}")]
    checks: list[Check] = []
    statuses = audit.by_status()
    holding_units = audit.units(HOLDING)
    sold_units = audit.units(SOLD)
    paid_orders = [o for o in audit.orders if o.get("status") == "paid"]
    order_units = sum(int(item["quantity"]) for o in paid_orders for item in o.get("items", []))

    checks.append(Check(
        "successful reservations <= stock",
        holding_units + sold_units <= counters.stock_total,
        f"{holding_units} units held + {sold_units} sold <= stock {counters.stock_total}"))

    # One reservation, one PaymentIntent, at most one order per ticket.
    intents = [t.payment_intent_id for t in audit.tickets]
    shared_intents = _duplicates(intents)
    intent_without_reservation = [t.id for t in audit.tickets
                                  if t.payment_intent_id and not t.decided_at_ms]
    order_tickets = _duplicates([str(o.get("ticket_id") or "") for o in audit.orders])
    order_intents = _duplicates([str(o.get("payment_intent_id") or "") for o in audit.orders])
    intent_of = {t.id: t.payment_intent_id for t in audit.tickets}
    foreign = [str(o["_id"]) for o in audit.orders
               if intent_of.get(str(o.get("ticket_id"))) != o.get("payment_intent_id")]
    problems = []
    if shared_intents:
        problems.append(f"tickets sharing a PaymentIntent: {_sample(shared_intents)}")
    if intent_without_reservation:
        problems.append(f"PaymentIntent without a reservation: {_sample(intent_without_reservation)}")
    if order_tickets:
        problems.append(f"orders sharing a ticket: {_sample(order_tickets)}")
    if order_intents:
        problems.append(f"orders sharing a PaymentIntent: {_sample(order_intents)}")
    if foreign:
        problems.append(f"orders whose PaymentIntent is not their ticket's: {_sample(foreign)}")
    checks.append(Check(
        "one reservation and PaymentIntent per ticket, one order per payment", not problems,
        "; ".join(problems) or f"{sum(1 for i in intents if i)} PaymentIntents on "
        f"{len(audit.tickets)} tickets, {len(audit.orders)} orders, no ticket or intent twice"))

    negative = {name: value for name, value in
                (("available", counters.available), ("reserved", counters.reserved),
                 ("sold", counters.sold)) if value < 0}
    if lowest_available_seen is not None and lowest_available_seen < 0:
        negative["available (lowest seen during the run)"] = lowest_available_seen
    seen = "" if lowest_available_seen is None else f", lowest available seen {lowest_available_seen}"
    checks.append(Check(
        "stock never negative", not negative,
        ", ".join(f"{k} = {v}" for k, v in negative.items()) or
        f"available {counters.available}, reserved {counters.reserved}, sold {counters.sold}{seen}"))

    checks.append(Check(
        "orders = sold", order_units == counters.sold == sold_units,
        f"{len(paid_orders)} paid orders for {order_units} units, sold counter {counters.sold}, "
        f"{sold_units} units in paid tickets"))

    total = counters.available + counters.reserved + counters.sold
    checks.append(Check(
        "available + reserved + sold == stock_total", total == counters.stock_total,
        f"{counters.available} + {counters.reserved} + {counters.sold} = {total}, "
        f"stock_total {counters.stock_total}"))

    # Every issued ticket is in the stream once, has a hash and one known status, and the
    # counters agree with the tickets' statuses.
    known = {s.value for s in TicketStatus}
    unknown = sorted({t.status for t in audit.tickets} - known)
    expected = {
        "queued": (counters.queued, statuses[TicketStatus.QUEUED]),
        "sold_out": (counters.sold_out, statuses[TicketStatus.SOLD_OUT]),
        "expired": (counters.expired, statuses[TicketStatus.EXPIRED]),
        "cancelled": (counters.cancelled, statuses[TicketStatus.CANCELLED]),
        "payment_failed": (counters.payment_failed, statuses[TicketStatus.PAYMENT_FAILED]),
        "paid": (counters.paid, statuses[TicketStatus.PAID]),
        "reserved units": (counters.reserved, holding_units),
    }
    mismatched = [f"{name} counter {want} vs {got} tickets" for name, (want, got) in expected.items()
                  if want != got]
    problems = []
    if audit.stream_entries != counters.issued or len(audit.tickets) + len(audit.missing) != counters.issued:
        problems.append(f"{audit.stream_entries} stream entries for {counters.issued} issued")
    if audit.duplicate_entries:
        problems.append(f"in the stream twice: {_sample(audit.duplicate_entries)}")
    if audit.missing:
        problems.append(f"{len(audit.missing)} tickets without a hash: {_sample(audit.missing)}")
    if unknown:
        problems.append(f"unknown statuses {unknown}")
    problems += mismatched
    summary = ", ".join(f"{status} {count}" for status, count in sorted(statuses.items()))
    checks.append(Check(
        "every issued ticket in exactly one status", not problems,
        "; ".join(problems) or f"{len(audit.tickets)} tickets: {summary or 'none'}"))

    over = sorted(user for user, units in audit.held_by_user.items() if units > audit.per_user_limit)
    held = sum(audit.held_by_user.values())
    checks.append(Check(
        "per-user limit respected", not over and held == holding_units + sold_units,
        f"users over {audit.per_user_limit}: {_sample(over)}" if over else
        f"{held} units held by users, {holding_units + sold_units} in tickets"))

    if expect_sold_out:
        product_ok = audit.product_stock == 0
        checks.append(Check(
            "after a paid run: orders = initial stock, product stock 0",
            order_units == counters.stock_total and product_ok,
            f"{order_units} units ordered of {counters.stock_total}, product stock "
            f"{audit.product_stock}"))
    return checks


def verify_sale(redis_client: redis.Redis, db: Database, sale_id: str, *,
                expect_sold_out: bool = False, lowest_available_seen: int | None = None) -> VerifyReport:
    """Audit a sale and check every invariant (reads only)."""
    audit = audit_sale(redis_client, db, sale_id)
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
    from common.clients import make_mongo, make_redis

    mongo = make_mongo(services["mongodb"])
    return make_redis(services["redis"], socket_timeout=30), mongo


def run_verify(sale_id: str, services_path: Path, expect_sold_out: bool = False) -> int:
    """`flashsale verify`: print PASS/FAIL per invariant; 0 when all pass, 1 otherwise."""
    from common.clients import mongo_database_name

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
