"""The four invariants every fault test ends with, read from Redis, MongoDB and Stripe.

I1 stock: available + reserved + sold == stock_total with nothing negative, and the sale's
   reconciliation (common.reconcile) finds no drift.
I2 outcomes: every ticket in the sale's stream has exactly one status, a final one once the
   system has settled (`reserved` counts as settled when `allow_reserved`), and every status
   counter equals the number of tickets in that status.
I3 at most one reservation, one live PaymentIntent and one order per ticket.
I4 every succeeded sale PaymentIntent has an order or a refund (never both), every order a
   succeeded PaymentIntent.

Tickets are enumerated from the sale's stream (XRANGE), PaymentIntents from Stripe (listed
through the SDK, filtered on metadata) or from a test double with the same shape.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import redis
import stripe
from pymongo.database import Database

from common import sale_keys
from common.payments import PaymentContext
from common.reconcile import reconcile_sale
from common.sales import read_counters
from common.tickets import FINAL, HOLDING, TicketStatus

COUNTED_STATUSES = ("sold_out", "expired", "cancelled", "payment_failed", "paid")
NOT_PAID_FINAL = frozenset(FINAL - {TicketStatus.PAID})


@dataclass(frozen=True)
class IntentView:
    id: str
    status: str
    amount: int
    metadata: dict[str, str]
    refunds: int = 0


@dataclass
class StripeView:
    """The sale's PaymentIntents as Stripe knows them."""

    intents: dict[str, IntentView] = field(default_factory=dict)

    def for_ticket(self, ticket_id: str) -> list[IntentView]:
        return [i for i in self.intents.values() if i.metadata.get("ticket_id") == ticket_id]


def stripe_view(client: stripe.StripeClient, sale_id: str) -> StripeView:
    """Every PaymentIntent whose metadata names this sale, with its refund count."""
    view = StripeView()
    for resource in client.v1.payment_intents.list(params={"limit": 100}).auto_paging_iter():
        obj = resource.to_dict()
        metadata = dict(obj.get("metadata") or {})
        if metadata.get("sale_id") != sale_id:
            continue
        refunds = 0
        if obj["status"] == "succeeded":
            refunds = len(client.v1.refunds.list(params={"payment_intent": obj["id"]}).data)
        view.intents[obj["id"]] = IntentView(obj["id"], obj["status"], int(obj["amount"]), metadata,
                                             refunds)
    return view


@dataclass
class SaleSnapshot:
    tickets: dict[str, dict[str, str]]
    orders: list[dict[str, Any]]
    problems: list[str]

    def statuses(self) -> Counter[str]:
        return Counter(t.get("status", "missing") for t in self.tickets.values())


def snapshot_tickets(redis_client: redis.Redis, sale_id: str) -> tuple[list[str], dict[str, dict[str, str]]]:
    ids = [data.get("ticket_id", "") for _, data in redis_client.xrange(sale_keys.stream_key(sale_id))]
    pipe = redis_client.pipeline(transaction=False)
    for ticket_id in ids:
        pipe.hgetall(sale_keys.ticket_key(sale_id, ticket_id))
    return ids, dict(zip(ids, pipe.execute() if ids else [], strict=True))


def check_invariants(redis_client: redis.Redis, db: Database, sale_id: str,
                     stripe_state: StripeView | None = None, *, settled: bool = True,
                     allow_reserved: bool = True, intents_closed: bool = True,
                     one_live_intent: bool = True) -> SaleSnapshot:
    """Check I1-I4 for one sale and return what was read, with every problem found.

    `settled`: nothing is in flight any more (no queued, reserving or settling ticket).
    `intents_closed`: the PaymentIntents of released tickets have been cancelled by now.
    `one_live_intent`: at most one PaymentIntent per ticket is not cancelled (the Stripe
    emulator ignores idempotency keys, so a create whose answer was cut leaves an orphan).
    """
    problems: list[str] = []
    ids, tickets = snapshot_tickets(redis_client, sale_id)
    orders = list(db.orders.find({"sale_id": sale_id}))

    # ---- I1: stock
    counters = read_counters(redis_client, sale_id)
    if counters is None:
        return SaleSnapshot(tickets, orders, ["I1: the sale is not loaded in Redis"])
    if counters.available + counters.reserved + counters.sold != counters.stock_total:
        problems.append(f"I1: available {counters.available} + reserved {counters.reserved} + sold "
                        f"{counters.sold} != stock_total {counters.stock_total}")
    for name in ("available", "reserved", "sold", "queued"):
        if getattr(counters, name) < 0:
            problems.append(f"I1: {name} is negative ({getattr(counters, name)})")
    if settled:
        ctx = PaymentContext(mongo=None, db=db, redis=redis_client, gateway=None)  # type: ignore[arg-type]
        report = reconcile_sale(ctx, sale_id, repair=False)
        problems += [f"I1 (reconcile): {p}" for p in report.problems]

    # ---- I2: one status per ticket, final once settled, counters agree
    if len(ids) != len(set(ids)):
        twice = [t for t, n in Counter(ids).items() if n > 1]
        problems.append(f"I2: tickets appear twice in the stream: {twice}")
    by_status: dict[str, list[str]] = defaultdict(list)
    for ticket_id, fields in tickets.items():
        status = fields.get("status")
        if not fields or status not in TicketStatus.__members__.values():
            problems.append(f"I2: ticket {ticket_id} has no valid status ({status!r})")
            continue
        by_status[status].append(ticket_id)
    if settled:
        allowed = {s.value for s in FINAL} | ({TicketStatus.RESERVED.value} if allow_reserved else set())
        for status, members in by_status.items():
            if status not in allowed:
                problems.append(f"I2: {len(members)} ticket(s) still {status} after settling: {members[:3]}")
    if counters.issued != len(ids):
        problems.append(f"I2: issued counter {counters.issued} != {len(ids)} tickets in the stream")
    if counters.queued != len(by_status[TicketStatus.QUEUED.value]):
        problems.append(f"I2: queued counter {counters.queued} != "
                        f"{len(by_status[TicketStatus.QUEUED.value])} queued tickets")
    for status in COUNTED_STATUSES:
        if getattr(counters, status) != len(by_status[status]):
            problems.append(f"I2: counter {status}={getattr(counters, status)} but "
                            f"{len(by_status[status])} tickets are {status}")

    def units(statuses: set[str]) -> int:
        return sum(int(t["quantity"]) for t in tickets.values() if t.get("status") in statuses)

    holding = {s.value for s in HOLDING}
    selling = {TicketStatus.SETTLING.value, TicketStatus.PAID.value}
    if counters.reserved != units(holding):
        problems.append(f"I2: reserved counter {counters.reserved} != {units(holding)} units held by tickets")
    if counters.sold != units(selling):
        problems.append(f"I2: sold counter {counters.sold} != {units(selling)} units of settled tickets")
    live = redis_client.hgetall(sale_keys.live_tickets_key(sale_id))
    live_statuses = {TicketStatus.QUEUED.value} | holding
    expected_live = {t for t, f in tickets.items() if f.get("status") in live_statuses}
    if set(live.values()) != expected_live:
        problems.append(f"I2: live tickets {sorted(set(live.values()) ^ expected_live)[:3]} disagree")
    held = {user: int(n) for user, n in redis_client.hgetall(sale_keys.held_units_key(sale_id)).items()}
    expected_held: Counter[str] = Counter()
    for fields in tickets.values():
        if fields.get("status") in holding | selling:
            expected_held[fields["user_id"]] += int(fields["quantity"])
    if {u: n for u, n in held.items() if n} != dict(expected_held):
        problems.append("I2: per-user held units disagree with the tickets")
    expiring = set(redis_client.zrange(sale_keys.expiry_key(sale_id), 0, -1))
    if expiring != {t for t, f in tickets.items() if f.get("status") in holding}:
        problems.append("I2: the expiry index disagrees with the holding tickets")
    settled_set = set(redis_client.smembers(sale_keys.settled_key(sale_id)))
    if settled_set != {t for t, f in tickets.items() if f.get("status") in selling}:
        problems.append("I2: the settled set disagrees with the paid tickets")

    # ---- I3: one reservation (above), one PaymentIntent, one order per ticket
    attached = Counter(f["payment_intent_id"] for f in tickets.values() if f.get("payment_intent_id"))
    if [i for i, n in attached.items() if n > 1]:
        problems.append("I3: a PaymentIntent is attached to two tickets")
    per_ticket = Counter(o.get("ticket_id") for o in orders)
    per_intent = Counter(o.get("payment_intent_id") for o in orders)
    if [t for t, n in per_ticket.items() if n > 1]:
        problems.append(f"I3: tickets with two orders: {[t for t, n in per_ticket.items() if n > 1]}")
    if [i for i, n in per_intent.items() if n > 1]:
        problems.append("I3: a PaymentIntent has two orders")
    for order in orders:
        ticket = tickets.get(order.get("ticket_id", ""))
        if ticket is None:
            problems.append(f"I3: order {order['_id']} names no ticket of this sale")
            continue
        if ticket.get("payment_intent_id") != order.get("payment_intent_id"):
            problems.append(f"I3: order {order['_id']} was paid by an intent its ticket does not hold")
        if ticket.get("status") == TicketStatus.PAID.value and ticket.get("order_id") != order["_id"]:
            problems.append(f"I3: ticket {ticket['id']} shows order {ticket.get('order_id')}, "
                            f"not {order['_id']}")
    for ticket_id, fields in tickets.items():
        if fields.get("status") == TicketStatus.PAID.value and not per_ticket.get(ticket_id):
            problems.append(f"I3/I4: ticket {ticket_id} is paid but has no order")

    if stripe_state is not None:
        for ticket_id, fields in tickets.items():
            intents = stripe_state.for_ticket(ticket_id)
            status = fields.get("status")
            if sum(i.status == "succeeded" for i in intents) > 1:
                problems.append(f"I3: ticket {ticket_id} was paid twice at Stripe")
            live_intents = [i for i in intents if i.status != "canceled"]
            if one_live_intent and len(live_intents) > 1:
                problems.append(f"I3: ticket {ticket_id} has {len(live_intents)} live PaymentIntents")
            if fields.get("payment_intent_id") and fields["payment_intent_id"] not in stripe_state.intents:
                problems.append(f"I3: ticket {ticket_id} holds an intent Stripe does not know")
            if status == TicketStatus.SOLD_OUT.value and intents:
                problems.append(f"I3: sold-out ticket {ticket_id} has a PaymentIntent")
            if intents_closed and status in NOT_PAID_FINAL:
                payable = [i.id for i in intents
                           if i.status != "canceled" and not (i.status == "succeeded" and i.refunds)]
                if payable:
                    problems.append(f"I3: {status} ticket {ticket_id} still has payable intents {payable}")
        unknown = [i.id for i in stripe_state.intents.values() if i.metadata.get("ticket_id") not in tickets]
        if unknown:
            problems.append(f"I3: PaymentIntents for tickets that do not exist: {unknown[:3]}")

        # ---- I4: money and goods
        ordered = {o.get("payment_intent_id"): o for o in orders}
        for intent in stripe_state.intents.values():
            if intent.status != "succeeded" or intent.metadata.get("kind") != "sale":
                continue
            has_order, refunded = intent.id in ordered, intent.refunds > 0
            if not has_order and not refunded:
                problems.append(f"I4: succeeded {intent.id} has neither an order nor a refund")
            if has_order and refunded:
                problems.append(f"I4: succeeded {intent.id} has an order and a refund")
            if intent.refunds > 1:
                problems.append(f"I4: {intent.id} was refunded {intent.refunds} times")
        for order in orders:
            intent = stripe_state.intents.get(order.get("payment_intent_id", ""))
            if intent is None or intent.status != "succeeded":
                problems.append(f"I4: order {order['_id']} has no succeeded PaymentIntent "
                                f"({intent.status if intent else 'unknown'})")
            elif intent.amount != order.get("amount_cents"):
                problems.append(f"I4: order {order['_id']} amount differs from its payment")
    return SaleSnapshot(tickets, orders, problems)


def assert_invariants(redis_client: redis.Redis, db: Database, sale_id: str,
                      stripe_state: StripeView | None = None, **options: Any) -> SaleSnapshot:
    """check_invariants, failing with every problem found listed."""
    snapshot = check_invariants(redis_client, db, sale_id, stripe_state, **options)
    assert not snapshot.problems, "invariants broken:\n  " + "\n  ".join(snapshot.problems)
    return snapshot
