"""The one auditor of a sale's invariants, used by reconcile, `flashsale verify` and the fault
tests alike.

It exists because the same audit had been written three times and the copies drifted: only one
checked the per-user limit, so a shopper with a limit of 1 who paid T1, cancelled it before the
webhook, joined again with T2 and paid it ended with 2 paid units unseen.

`read_sale_snapshot` reads what Redis, MongoDB and (optionally) Stripe hold about one sale into a
`SaleSnapshot`; every `check_*` function is pure and returns named `Violation`s, never asserts.
- I1 stock: available + reserved + sold == stock_total, nothing negative, never more units held
  or sold than stock, counters agree with the tickets and (once settled) with the paid orders.
- I2 outcomes: every ticket in the stream once, with one known status, final once settled, and
  every status counter and index equal to its tickets.
- I3 at most one reservation, one live PaymentIntent and one order per ticket.
- I4 every succeeded sale PaymentIntent has an order or a refund (never both), every order a
  succeeded PaymentIntent, and a `cancelled` ticket is never charged.
- Per-user limit: a user's units held (reserving, reserved, settling) plus units in paid orders
  never exceed the sale's `per_user_limit`.
- Final stays final: no ticket leaves a final status, except an `expired` ticket whose late
  payment is honoured (API v2, "Payments that race a reservation's end").
- Places (I2): no two tickets share a place (seq); once a lobby is closed its tickets hold
  places 1..lobby_size, each exactly once, and the tickets admitted after it the places behind.
- Cancelled sale (the operator cancelled it: config `closing` is sale_cancelled): no money kept,
  every sale order refunded, with Stripe read no sale payment left succeeded and unrefunded.
- One card (a sale whose `entry.one_card` is on): no card (its fingerprint, recorded on the paid
  order) paid for two accounts in the sale.
- Draw (a draw sale's holds, with Stripe read): the holds captured hold no more units than the
  stock; every captured hold has exactly one paid order and its ticket is paid; every hold of a
  `not_selected` or `cancelled` (withdrawn, no hold at the draw) entry is cancelled at Stripe
  once the walk is over; no entry's hold is captured twice.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from enum import StrEnum
from itertools import pairwise
from typing import Any

import redis
import stripe
from pymongo.database import Database

from common.billing.stripe_gateway import CANCELED, SUCCEEDED
from common.flash_sale import sale_keys
from common.flash_sale.sales import SaleCounters
from common.flash_sale.tickets import FINAL, HOLDING, TRANSITIONS, TicketStatus
from common.shop.orders import OrderStatus

# Units counted in `sold`: the payment moved them, the order may still be being written.
SELLING = frozenset({TicketStatus.SETTLING, TicketStatus.PAID})
# Units a user has: held by a reservation or taken by a payment.
HELD = HOLDING | {TicketStatus.SETTLING}
NOT_PAID_FINAL = frozenset(FINAL - {TicketStatus.PAID})
# Final statuses whose count is kept in the sale's counters hash, by counter name.
COUNTED_STATUSES = (TicketStatus.SOLD_OUT, TicketStatus.EXPIRED, TicketStatus.CANCELLED,
                    TicketStatus.PAYMENT_FAILED, TicketStatus.PAID, TicketStatus.ABANDONED,
                    TicketStatus.NOT_SELECTED)
PAGE = 1000
READ_ATTEMPTS = 4


class Invariant(StrEnum):
    STOCK = "I1"
    OUTCOMES = "I2"
    ONE_PER_TICKET = "I3"
    MONEY = "I4"
    PER_USER_LIMIT = "per-user limit"
    FINAL_STAYS_FINAL = "final stays final"
    CANCELLED_SALE = "cancelled sale"
    ONE_CARD = "one card"
    DRAW = "draw"


@dataclass(frozen=True)
class Violation:
    """One broken invariant: `code` is stable (snake_case), `subject` the id it is about."""

    invariant: Invariant
    code: str
    message: str
    subject: str = ""

    def __str__(self) -> str:
        return f"{self.invariant.value}: {self.message}"


@dataclass(frozen=True)
class SaleConfig:
    stock_total: int
    per_user_limit: int = 1
    ttl_ms: int = 0
    starts_at_ms: int = 0
    product_id: str = ""
    # One card pays for one account in this sale (entry.one_card).
    one_card: bool = False
    # The operator cancelled the sale (flash_sale/controls.py): no money may be kept.
    cancelled: bool = False


@dataclass(frozen=True)
class TicketRecord:
    """A ticket's hash, as read (`status` is the raw string: it may be unknown)."""

    id: str
    status: str
    quantity: int = 1
    user_id: str = ""
    payment_intent_id: str = ""
    order_id: str = ""
    expires_at_ms: int = 0
    created_at_ms: int = 0
    updated_at_ms: int = 0
    # The final status a late payment was honoured from (settle.lua), if any.
    honoured_after: str = ""
    refund_id: str = ""
    refund_due: bool = False
    fields: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_hash(cls, ticket_id: str, fields: Mapping[str, str]) -> TicketRecord:
        return cls(
            id=ticket_id, status=str(fields.get("status") or ""), quantity=_int(fields.get("quantity")),
            user_id=str(fields.get("user_id") or ""),
            payment_intent_id=str(fields.get("payment_intent_id") or ""),
            order_id=str(fields.get("order_id") or ""), expires_at_ms=_int(fields.get("expires_at_ms")),
            created_at_ms=_int(fields.get("created_at_ms")),
            updated_at_ms=_int(fields.get("updated_at_ms")),
            honoured_after=str(fields.get("honoured_after") or ""),
            refund_id=str(fields.get("refund_id") or ""), refund_due=bool(fields.get("refund_due")),
            fields=dict(fields))

    @property
    def known_status(self) -> TicketStatus | None:
        return _status(self.status)


@dataclass(frozen=True)
class OrderRecord:
    id: str
    ticket_id: str
    payment_intent_id: str
    user_id: str
    status: str
    units: int
    amount_cents: int | None = None
    document: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> OrderRecord:
        amount = doc.get("amount_cents")
        return cls(
            id=str(doc["_id"]), ticket_id=str(doc.get("ticket_id") or ""),
            payment_intent_id=str(doc.get("payment_intent_id") or ""),
            user_id=str(doc.get("user_id") or ""), status=str(doc.get("status") or ""),
            units=sum(int(item.get("quantity") or 0) for item in doc.get("items") or []),
            amount_cents=int(amount) if amount is not None else None, document=doc)


@dataclass(frozen=True)
class IntentRecord:
    """A sale PaymentIntent as Stripe knows it, with how many refunds it has."""

    id: str
    status: str
    amount: int
    metadata: dict[str, str]
    refunds: int = 0

    @property
    def charged(self) -> bool:
        """Money taken and kept: succeeded and not refunded."""
        return self.status == SUCCEEDED and self.refunds == 0


@dataclass
class SaleSnapshot:
    """Everything the checks look at, read once. `intents` is None when Stripe was not read
    (the Stripe checks are then skipped); `counters`/`config` are None when the sale is not
    loaded in Redis."""

    sale_id: str
    config: SaleConfig | None
    counters: SaleCounters | None
    stream_ids: list[str] = field(default_factory=list)
    tickets: dict[str, TicketRecord] = field(default_factory=dict)
    orders: list[OrderRecord] = field(default_factory=list)
    intents: dict[str, IntentRecord] | None = None
    live_tickets: dict[str, str] = field(default_factory=dict)
    held_by_user: dict[str, int] = field(default_factory=dict)
    expiring: frozenset[str] = frozenset()
    settled: frozenset[str] = frozenset()
    product_stock: int | None = None
    # The lobby's tickets (placed or not) and those waiting behind it outside the stream.
    lobby_ids: list[str] = field(default_factory=list)
    after_lobby_ids: list[str] = field(default_factory=list)
    lobby_closed: bool = False

    @property
    def missing(self) -> list[str]:
        """Ticket ids in the stream without a hash."""
        return [t for t in dict.fromkeys(self.stream_ids) if t not in self.tickets]

    def units(self, statuses: Iterable[TicketStatus]) -> int:
        wanted = {s.value for s in statuses}
        return sum(t.quantity for t in self.tickets.values() if t.status in wanted)

    def paid_orders(self) -> list[OrderRecord]:
        return [o for o in self.orders if o.status == OrderStatus.PAID]

    def sold_orders(self) -> list[OrderRecord]:
        """Orders whose units the sale sold: paid, or refunded because the sale was cancelled."""
        return [o for o in self.orders if o.status == OrderStatus.PAID
                or (o.status == OrderStatus.REFUNDED and o.document.get("refund_reason") == "sale_cancelled")]

    def intents_for(self, ticket: TicketRecord) -> list[IntentRecord]:
        if self.intents is None:
            return []
        return [i for i in self.intents.values()
                if i.metadata.get("ticket_id") == ticket.id or i.id == ticket.payment_intent_id]

    def statuses(self) -> dict[str, str]:
        return {t.id: t.status for t in self.tickets.values()}


def _int(value: Any) -> int:
    return int(value) if value not in (None, "") else 0


def _status(value: str) -> TicketStatus | None:
    try:
        return TicketStatus(value)
    except ValueError:
        return None


def _sample(items: Sequence[str], limit: int = 3) -> str:
    return ", ".join(items[:limit]) + (" ..." if len(items) > limit else "")


# ------------------------------------------------------------------ checks (pure)


def check_stock(s: SaleSnapshot, *, orders_complete: bool = True) -> list[Violation]:
    """I1. `orders_complete`: no payment is between its Redis step and its order, so the paid
    orders' units equal `sold` (otherwise they may only be fewer)."""
    c = s.counters
    if c is None:
        return [Violation(Invariant.STOCK, "sale_not_loaded", "the sale is not loaded in Redis", s.sale_id)]
    out: list[Violation] = []
    # Units returned to the catalogue after the end are taken out of stock_total as well.
    if c.available + c.reserved + c.sold != c.stock_total:
        out.append(Violation(Invariant.STOCK, "stock_equation",
                             f"available {c.available} + reserved {c.reserved} + sold {c.sold} "
                             f"!= stock_total {c.stock_total}"))
    for name in ("available", "reserved", "sold", "queued", "returned"):
        if getattr(c, name) < 0:
            out.append(Violation(Invariant.STOCK, "negative_counter",
                                 f"{name} is negative ({getattr(c, name)})", name))
    held, sold = s.units(HOLDING), s.units(SELLING)
    order_units = sum(o.units for o in s.sold_orders())
    if held + sold > c.stock_total or order_units > c.stock_total:
        out.append(Violation(Invariant.STOCK, "oversold",
                             f"{held} units held + {sold} sold ({order_units} in paid orders) "
                             f"> stock {c.stock_total}"))
    if c.reserved != held:
        out.append(Violation(Invariant.STOCK, "reserved_mismatch",
                             f"reserved counter {c.reserved} != {held} units held by tickets"))
    if c.sold != sold:
        out.append(Violation(Invariant.STOCK, "sold_mismatch",
                             f"sold counter {c.sold} != {sold} units of settling or paid tickets"))
    if order_units > c.sold or (orders_complete and order_units != c.sold):
        out.append(Violation(Invariant.STOCK, "orders_mismatch",
                             f"{order_units} units in paid orders != sold {c.sold}"))
    return out


def check_outcomes(s: SaleSnapshot, *, settled: bool = False, allow_reserved: bool = True) -> list[Violation]:
    """I2. `settled`: nothing is in flight, so every ticket is final (or reserved, when
    `allow_reserved`)."""
    c = s.counters
    out: list[Violation] = []
    twice = sorted(t for t, n in Counter(s.stream_ids).items() if n > 1)
    if twice:
        out.append(Violation(Invariant.OUTCOMES, "duplicate_entry",
                             f"tickets appear twice in the stream: {_sample(twice)}", twice[0]))
    missing = s.missing
    if missing:
        out.append(Violation(Invariant.OUTCOMES, "missing_ticket",
                             f"{len(missing)} tickets without a hash: {_sample(missing)}", missing[0]))
    by_status: dict[TicketStatus, list[str]] = defaultdict(list)
    for ticket in s.tickets.values():
        status = ticket.known_status
        if status is None:
            out.append(Violation(Invariant.OUTCOMES, "unknown_status",
                                 f"ticket {ticket.id} has no valid status ({ticket.status!r})", ticket.id))
            continue
        by_status[status].append(ticket.id)
    if settled:
        allowed = FINAL | ({TicketStatus.RESERVED} if allow_reserved else set())
        for status, members in by_status.items():
            if status not in allowed:
                out.append(Violation(Invariant.OUTCOMES, "not_final",
                                     f"{len(members)} ticket(s) still {status} after settling: "
                                     f"{_sample(members)}", members[0]))
    if c is None:
        return out
    # A closed lobby's places are issued at once, before its tickets reach the stream.
    in_stream = set(s.stream_ids)
    unplaced = [t for t in s.lobby_ids if t not in in_stream] if s.lobby_closed else []
    with_place = len(s.stream_ids) + len(s.after_lobby_ids) + len(unplaced)
    if c.issued != with_place:
        out.append(Violation(Invariant.OUTCOMES, "issued_mismatch",
                             f"issued counter {c.issued} != {with_place} tickets with a place "
                             "(stream entries, tickets behind the lobby, unplaced lobby tickets)"))
    for status in (TicketStatus.LOBBY, TicketStatus.QUEUED, *COUNTED_STATUSES):
        counted, actual = getattr(c, status.value), len(by_status[status])
        if counted != actual:
            out.append(Violation(Invariant.OUTCOMES, "counter_mismatch",
                                 f"counter {status}={counted} but {actual} tickets are {status}", status))

    def having(statuses: frozenset[TicketStatus]) -> set[str]:
        return {t for status in statuses for t in by_status[status]}

    expected_live = having(HOLDING | {TicketStatus.QUEUED, TicketStatus.LOBBY})
    if set(s.live_tickets.values()) != expected_live:
        odd = sorted(set(s.live_tickets.values()) ^ expected_live)
        out.append(Violation(Invariant.OUTCOMES, "live_index",
                             f"live tickets disagree with the tickets: {_sample(odd)}", odd[0]))
    expected_held: Counter[str] = Counter()
    for ticket in s.tickets.values():
        if ticket.known_status in HOLDING | SELLING:
            expected_held[ticket.user_id] += ticket.quantity
    if {u: n for u, n in s.held_by_user.items() if n} != dict(expected_held):
        out.append(Violation(Invariant.OUTCOMES, "held_index",
                             "per-user held units disagree with the tickets"))
    if set(s.expiring) != having(HOLDING):
        out.append(Violation(Invariant.OUTCOMES, "expiry_index",
                             "the expiry index disagrees with the holding tickets"))
    if set(s.settled) != having(SELLING):
        out.append(Violation(Invariant.OUTCOMES, "settled_index",
                             "the settled set disagrees with the settling and paid tickets"))
    return out


def check_places(s: SaleSnapshot) -> list[Violation]:
    """I2, places: no place given twice; a closed and placed lobby holds places 1..N."""
    out: list[Violation] = []
    by_place: dict[int, list[str]] = defaultdict(list)
    for ticket in s.tickets.values():
        if ticket.fields.get("seq"):
            by_place[int(ticket.fields["seq"])].append(ticket.id)
    shared = sorted(p for p, ids in by_place.items() if len(ids) > 1)
    if shared:
        out.append(Violation(Invariant.OUTCOMES, "duplicate_place",
                             f"places given to two tickets: {_sample([str(p) for p in shared])}",
                             by_place[shared[0]][0]))
    if s.lobby_closed:
        size = len(s.lobby_ids)
        for ticket_id in s.lobby_ids:
            found = s.tickets.get(ticket_id)
            if found is None or found.status == TicketStatus.LOBBY.value:
                continue
            seq = _int(found.fields.get("seq"))
            if not 1 <= seq <= size:
                out.append(Violation(Invariant.OUTCOMES, "lobby_place",
                                     f"lobby ticket {ticket_id} has place {seq}, not in 1..{size}",
                                     ticket_id))
        lobby = set(s.lobby_ids)
        for ticket in s.tickets.values():
            if ticket.id not in lobby and ticket.fields.get("seq") and _int(ticket.fields["seq"]) <= size:
                out.append(Violation(Invariant.OUTCOMES, "ahead_of_lobby",
                                     f"ticket {ticket.id} admitted after the start has lobby place "
                                     f"{ticket.fields['seq']}", ticket.id))
    return out


def check_one_per_ticket(s: SaleSnapshot, *, intents_closed: bool = True,
                         one_live_intent: bool = True) -> list[Violation]:
    """I3. With Stripe read: `intents_closed` (the intents of released tickets are cancelled by
    now), `one_live_intent` (at most one intent per ticket is not cancelled)."""
    out: list[Violation] = []

    def add(code: str, message: str, subject: str = "") -> None:
        out.append(Violation(Invariant.ONE_PER_TICKET, code, message, subject))

    attached = Counter(t.payment_intent_id for t in s.tickets.values() if t.payment_intent_id)
    for intent_id in sorted(i for i, n in attached.items() if n > 1):
        add("shared_intent", f"PaymentIntent {intent_id} is attached to two tickets", intent_id)
    for ticket in s.tickets.values():
        # A draw's winner pays with its hold, reserved by the draw for the capture only.
        drawn = ticket.payment_intent_id == ticket.fields.get("hold_intent_id")
        if ticket.payment_intent_id and not ticket.expires_at_ms and not drawn:
            add("intent_without_reservation", f"ticket {ticket.id} has a PaymentIntent but was "
                "never reserved", ticket.id)
    per_ticket = Counter(o.ticket_id for o in s.orders)
    per_intent = Counter(o.payment_intent_id for o in s.orders)
    for ticket_id in sorted(t for t, n in per_ticket.items() if n > 1):
        add("two_orders", f"ticket {ticket_id} has {per_ticket[ticket_id]} orders", ticket_id)
    for intent_id in sorted(i for i, n in per_intent.items() if n > 1):
        add("intent_two_orders", f"PaymentIntent {intent_id} has two orders", intent_id)
    for order in s.orders:
        owner = s.tickets.get(order.ticket_id)
        if owner is None:
            add("order_without_ticket", f"order {order.id} names no ticket of this sale", order.id)
            continue
        if owner.payment_intent_id != order.payment_intent_id:
            add("foreign_order", f"order {order.id} was paid by an intent its ticket does not hold", order.id)
        if owner.known_status is TicketStatus.PAID and owner.order_id != order.id:
            add("order_id_mismatch", f"ticket {owner.id} shows order {owner.order_id}, not {order.id}",
                owner.id)
        if owner.known_status not in SELLING:
            add("order_for_unsold_ticket", f"order {order.id} is for a {owner.status} ticket", order.id)
    for ticket in s.tickets.values():
        if ticket.known_status is TicketStatus.PAID and not per_ticket.get(ticket.id):
            add("paid_without_order", f"ticket {ticket.id} is paid but has no order", ticket.id)

    if s.intents is None:
        return out
    for ticket in s.tickets.values():
        intents = s.intents_for(ticket)
        if sum(i.status == SUCCEEDED for i in intents) > 1:
            add("paid_twice", f"ticket {ticket.id} was paid twice at Stripe", ticket.id)
        live = [i for i in intents if i.status != CANCELED]
        if one_live_intent and len(live) > 1:
            add("live_intents", f"ticket {ticket.id} has {len(live)} live PaymentIntents", ticket.id)
        if ticket.payment_intent_id and ticket.payment_intent_id not in s.intents:
            add("unknown_intent", f"ticket {ticket.id} holds an intent Stripe does not know", ticket.id)
        status = ticket.known_status
        if status is TicketStatus.SOLD_OUT and intents:
            add("sold_out_with_intent", f"sold-out ticket {ticket.id} has a PaymentIntent", ticket.id)
        if intents_closed and status in NOT_PAID_FINAL:
            payable = [i.id for i in intents
                       if i.status != CANCELED and not (i.status == SUCCEEDED and i.refunds)]
            if payable:
                add("payable_intent", f"{ticket.status} ticket {ticket.id} still has payable intents "
                    f"{payable}", ticket.id)
    unknown = sorted(i.id for i in s.intents.values() if i.metadata.get("ticket_id") not in s.tickets)
    if unknown:
        add("intent_without_ticket", f"PaymentIntents for tickets that do not exist: {_sample(unknown)}",
            unknown[0])
    return out


def check_money(s: SaleSnapshot) -> list[Violation]:
    """I4 (needs Stripe; nothing to check when it was not read)."""
    if s.intents is None:
        return []
    out: list[Violation] = []

    def add(code: str, message: str, subject: str) -> None:
        out.append(Violation(Invariant.MONEY, code, message, subject))

    # An order refunded (its sale cancelled) has its refund in place of its goods.
    ordered = {o.payment_intent_id for o in s.orders if o.status != OrderStatus.REFUNDED}
    for order in s.orders:
        found = s.intents.get(order.payment_intent_id)
        if order.status == OrderStatus.REFUNDED and found is not None and found.refunds == 0:
            add("refund_not_made", f"order {order.id} is refunded but its payment is not", order.id)
    for intent in s.intents.values():
        if intent.status != SUCCEEDED or intent.metadata.get("kind") != "sale":
            continue
        has_order, refunded = intent.id in ordered, intent.refunds > 0
        if not has_order and not refunded:
            add("money_without_goods", f"succeeded {intent.id} has neither an order nor a refund", intent.id)
        if has_order and refunded:
            add("order_and_refund", f"succeeded {intent.id} has an order and a refund", intent.id)
        if intent.refunds > 1:
            add("refunded_twice", f"{intent.id} was refunded {intent.refunds} times", intent.id)
    for order in s.orders:
        found = s.intents.get(order.payment_intent_id)
        if found is None or found.status != SUCCEEDED:
            add("goods_without_money", f"order {order.id} has no succeeded PaymentIntent "
                f"({found.status if found else 'unknown'})", order.id)
        elif order.amount_cents is not None and found.amount != order.amount_cents:
            add("amount_mismatch", f"order {order.id} amount differs from its payment", order.id)
    for ticket in s.tickets.values():
        if ticket.known_status is TicketStatus.CANCELLED:
            charged = [i.id for i in s.intents_for(ticket) if i.charged]
            if charged:
                add("cancelled_charged", f"cancelled ticket {ticket.id} was charged ({_sample(charged)}) "
                    "and not refunded", ticket.id)
    return out


def units_by_user(s: SaleSnapshot) -> dict[str, int]:
    """Units each user holds (reserving, reserved, settling tickets) plus units in their paid
    orders; a settling ticket whose order is already written counts once."""
    units: Counter[str] = Counter()
    ordered: set[str] = set()
    for order in s.paid_orders():
        owner = s.tickets.get(order.ticket_id)
        units[order.user_id or (owner.user_id if owner else "")] += order.units
        ordered.add(order.ticket_id)
    for ticket in s.tickets.values():
        if ticket.known_status in HELD and ticket.id not in ordered:
            units[ticket.user_id] += ticket.quantity
    return dict(units)


def check_per_user_limit(s: SaleSnapshot) -> list[Violation]:
    """No user holds and has bought more units than the sale's per-user limit."""
    if s.config is None:
        return []
    limit = s.config.per_user_limit
    return [Violation(Invariant.PER_USER_LIMIT, "over_limit",
                      f"user {user} has {units} units (held + paid), limit {limit}", user)
            for user, units in sorted(units_by_user(s).items()) if units > limit]


def check_one_card(s: SaleSnapshot) -> list[Violation]:
    """No card paid for two accounts, in a sale that keeps one card per account. The card is
    the fingerprint on the paid order (else on its ticket, while the order is being written)."""
    if s.config is None or not s.config.one_card:
        return []
    accounts: defaultdict[str, set[str]] = defaultdict(set)
    for order in s.paid_orders():
        ticket = s.tickets.get(order.ticket_id)
        card = order.document.get("card_fingerprint") or (
            ticket.fields.get("card_fingerprint") if ticket else None)
        if card:
            accounts[str(card)].add(order.user_id or (ticket.user_id if ticket else ""))
    return [Violation(Invariant.ONE_CARD, "card_paid_for_two_accounts",
                      f"card {card} paid for {len(users)} accounts: {_sample(sorted(users))}", card)
            for card, users in sorted(accounts.items()) if len(users) > 1]


def _is_hold(intent: IntentRecord) -> bool:
    return intent.metadata.get("hold") == "1"


def check_draw(s: SaleSnapshot, *, holds_closed: bool = True) -> list[Violation]:
    """A draw sale's holds against Stripe (nothing to check without Stripe or holds).
    `holds_closed`: the walk is over, so every losing or withdrawn entry's hold is cancelled."""
    if s.intents is None:
        return []
    out: list[Violation] = []

    def add(code: str, message: str, subject: str) -> None:
        out.append(Violation(Invariant.DRAW, code, message, subject))

    captured = [i for i in s.intents.values() if _is_hold(i) and i.status == SUCCEEDED]
    units = 0
    paid_by_intent = Counter(o.payment_intent_id for o in s.paid_orders())
    per_ticket: Counter[str] = Counter()
    for intent in captured:
        ticket = s.tickets.get(intent.metadata.get("ticket_id", ""))
        per_ticket[intent.metadata.get("ticket_id", "")] += 1
        units += ticket.quantity if ticket else 0
        if paid_by_intent[intent.id] != 1 and not intent.refunds:
            add("capture_orders", f"captured hold {intent.id} has {paid_by_intent[intent.id]} paid "
                "orders", intent.id)
        if ticket is None or ticket.known_status not in SELLING:
            add("capture_ticket", f"captured hold {intent.id} belongs to a "
                f"{ticket.status if ticket else 'missing'} ticket", intent.id)
    if s.config is not None and units > s.config.stock_total:
        add("captures_over_stock", f"holds captured for {units} units > stock {s.config.stock_total}",
            s.sale_id)
    for ticket_id in sorted(t for t, n in per_ticket.items() if n > 1):
        add("captured_twice", f"entry {ticket_id} had {per_ticket[ticket_id]} holds captured", ticket_id)
    if holds_closed:
        for ticket in s.tickets.values():
            if ticket.known_status not in (TicketStatus.NOT_SELECTED, TicketStatus.CANCELLED):
                continue
            open_holds = [i.id for i in s.intents_for(ticket) if _is_hold(i) and i.status != CANCELED]
            if open_holds:
                add("hold_not_released", f"{ticket.status} entry {ticket.id} still holds "
                    f"{_sample(open_holds)}", ticket.id)
    return out


def reachable(source: TicketStatus) -> frozenset[TicketStatus]:
    """Every status a ticket can reach from `source` through TRANSITIONS (one step or more)."""
    seen: set[TicketStatus] = set()
    frontier = [source]
    while frontier:
        for target in TRANSITIONS[frontier.pop()]:
            if target not in seen:
                seen.add(target)
                frontier.append(target)
    return frozenset(seen)


def move_allowed(before: TicketStatus, after: TicketStatus) -> bool:
    """Whether a ticket seen `before` may later be seen `after` (any steps in between), by the
    state machine alone: its only exit from a final status is an expired ticket's late payment
    being honoured (API v2, "Payments that race a reservation's end")."""
    return before is after or after in reachable(before)


def check_status_history(history: Mapping[str, Sequence[str]]) -> list[Violation]:
    """Final stays final, over each ticket's statuses in the order they were observed."""
    out: list[Violation] = []
    for ticket_id, observed in history.items():
        known = [s for s in (_status(v) for v in observed) if s is not None]
        for before, after in pairwise(known):
            if not move_allowed(before, after):
                code = "left_final" if before in FINAL else "impossible_move"
                out.append(Violation(Invariant.FINAL_STAYS_FINAL, code,
                                     f"ticket {ticket_id} moved {before} -> {after}", ticket_id))
    return out


def status_history(*snapshots: SaleSnapshot) -> dict[str, list[str]]:
    """Each ticket's statuses across snapshots (oldest first), with the final status a late
    payment was honoured from (recorded on the ticket) placed before its current status."""
    history: dict[str, list[str]] = defaultdict(list)
    for snapshot in snapshots:
        for ticket in snapshot.tickets.values():
            seen = history[ticket.id]
            for status in (ticket.honoured_after, ticket.status):
                if status and (not seen or seen[-1] != status):
                    seen.append(status)
    return dict(history)


def check_final_stays_final(s: SaleSnapshot, earlier: Sequence[SaleSnapshot] = ()) -> list[Violation]:
    """No ticket left a final status between the `earlier` snapshots and this one, nor (as its
    `honoured_after` field records) within this one."""
    return check_status_history(status_history(*earlier, s))


def check_cancelled_sale(s: SaleSnapshot) -> list[Violation]:
    """No money kept for a cancelled sale: no paid order, and (Stripe read) no sale payment
    succeeded and unrefunded."""
    if s.config is None or not s.config.cancelled:
        return []
    out = [Violation(Invariant.CANCELLED_SALE, "money_kept_after_cancel",
                     f"order {o.id} of a cancelled sale is still paid", o.id) for o in s.paid_orders()]
    for intent in (s.intents or {}).values():
        if intent.metadata.get("kind") == "sale" and intent.charged:
            out.append(Violation(Invariant.CANCELLED_SALE, "money_kept_after_cancel",
                                 f"{intent.id} of a cancelled sale is charged and not refunded", intent.id))
    return out


def audit_sale(s: SaleSnapshot, *, settled: bool = False, allow_reserved: bool = True,
               orders_complete: bool | None = None, intents_closed: bool = True,
               one_live_intent: bool = True, earlier: Sequence[SaleSnapshot] = ()) -> list[Violation]:
    """Every check on one snapshot. `orders_complete` defaults to `settled`."""
    if s.counters is None:
        return check_stock(s)
    complete = settled if orders_complete is None else orders_complete
    return [*check_stock(s, orders_complete=complete),
            *check_outcomes(s, settled=settled, allow_reserved=allow_reserved), *check_places(s),
            *check_one_per_ticket(s, intents_closed=intents_closed, one_live_intent=one_live_intent),
            *check_cancelled_sale(s),
            *check_money(s), *check_per_user_limit(s), *check_one_card(s),
            *check_draw(s, holds_closed=intents_closed), *check_final_stays_final(s, earlier)]


# ------------------------------------------------------------------ reading (I/O)


def _stream_entries(redis_client: redis.Redis, sale_id: str, start: str = "-",
                    page: int = PAGE) -> tuple[list[str], str]:
    """Ticket ids in the stream after entry `start` (exclusive unless "-"), and the last entry id."""
    stream = sale_keys.stream_key(sale_id)
    ids: list[str] = []
    last = start
    while True:
        entries = redis_client.xrange(stream, min="-" if last == "-" else "(" + last, max="+", count=page)
        ids += [str(data.get("ticket_id", "")) for _entry_id, data in entries]
        if entries:
            last = str(entries[-1][0])
        if len(entries) < page:
            return ids, last


def stream_ticket_ids(redis_client: redis.Redis, sale_id: str, page: int = PAGE) -> list[str]:
    """Every ticket id in the sale's stream, in arrival order (XRANGE, one page at a time)."""
    return _stream_entries(redis_client, sale_id, page=page)[0]


def read_stripe_intents(client: stripe.StripeClient, sale_id: str) -> dict[str, IntentRecord]:
    """Every PaymentIntent whose metadata names this sale, with its refund count."""
    intents: dict[str, IntentRecord] = {}
    for resource in client.v1.payment_intents.list(params={"limit": 100}).auto_paging_iter():
        obj = resource.to_dict()
        metadata = {str(k): str(v) for k, v in (obj.get("metadata") or {}).items()}
        if metadata.get("sale_id") != sale_id:
            continue
        refunds = 0
        if obj["status"] == SUCCEEDED:
            refunds = len(client.v1.refunds.list(params={"payment_intent": obj["id"]}).data)
        intents[obj["id"]] = IntentRecord(obj["id"], obj["status"], int(obj["amount"]), metadata, refunds)
    return intents


def read_sale_snapshot(redis_client: redis.Redis, db: Database, sale_id: str, *,
                       stripe_client: stripe.StripeClient | None = None,
                       stripe_intents: Mapping[str, IntentRecord] | None = None,
                       with_product: bool = False) -> SaleSnapshot:
    """Read one sale: Redis first (stream, then one MULTI/EXEC for the config, counters,
    indexes and every ticket hash, so they agree with each other), then MongoDB's orders, then
    Stripe (from `stripe_client`, or `stripe_intents` already read). Orders are read after
    Redis so an order never shows up for a payment Redis has not yet seen."""
    ids, last = _stream_entries(redis_client, sale_id)
    for attempt in range(READ_ATTEMPTS):
        # The lobby's and the after-lobby tickets are read first: a ticket moves from them
        # into the stream (never back), so none is missed between the reads.
        lobby_ids = [str(t) for t in redis_client.zrange(sale_keys.lobby_key(sale_id), 0, -1)]
        after_ids = [str(t) for t in redis_client.lrange(sale_keys.after_lobby_key(sale_id), 0, -1)]
        unique = list(dict.fromkeys([*ids, *lobby_ids, *after_ids]))
        pipe = redis_client.pipeline(transaction=True)
        # Entries added since the paged XRANGE: if any, read again with them (their hashes
        # must be part of the same transaction as the counters that count them).
        pipe.xrange(sale_keys.stream_key(sale_id), min="-" if last == "-" else "(" + last, max="+")
        pipe.hgetall(sale_keys.config_key(sale_id))
        pipe.hgetall(sale_keys.counters_key(sale_id))
        pipe.hgetall(sale_keys.live_tickets_key(sale_id))
        pipe.hgetall(sale_keys.held_units_key(sale_id))
        pipe.zrange(sale_keys.expiry_key(sale_id), 0, -1)
        pipe.smembers(sale_keys.settled_key(sale_id))
        pipe.lrange(sale_keys.after_lobby_key(sale_id), 0, -1)
        for ticket_id in unique:
            pipe.hgetall(sale_keys.ticket_key(sale_id, ticket_id))
        tail, config_raw, counters_raw, live, held, expiring, settled, after_now, *hashes = pipe.execute()
        if not tail and [str(t) for t in after_now] == after_ids:
            break
        if not tail:
            continue
        ids += [str(data.get("ticket_id", "")) for _entry_id, data in tail]
        last = str(tail[-1][0])
        if attempt == READ_ATTEMPTS - 1:
            # Admissions keep coming: take the newest tickets as they are now.
            known = set(unique)
            newest = list(dict.fromkeys(t for t in ids if t not in known))
            pipe = redis_client.pipeline(transaction=False)
            for ticket_id in newest:
                pipe.hgetall(sale_keys.ticket_key(sale_id, ticket_id))
            unique, hashes = unique + newest, hashes + pipe.execute()

    config = counters = None
    if config_raw.get("stock_total") is not None:
        config = SaleConfig(stock_total=_int(config_raw.get("stock_total")),
                            per_user_limit=_int(config_raw.get("per_user_limit")) or 1,
                            ttl_ms=_int(config_raw.get("ttl_s")) * 1000,
                            starts_at_ms=_int(config_raw.get("starts_at_ms")),
                            product_id=str(config_raw.get("product_id") or ""),
                            one_card=config_raw.get("one_card") == "1",
                            cancelled=config_raw.get("closing") == "sale_cancelled")
        if counters_raw:
            # Every counter the hash holds, by SaleCounters' own field names.
            counts: dict[str, Any] = {f.name: _int(counters_raw.get(f.name)) for f in fields(SaleCounters)
                                      if f.name not in ("stock_total", "rate", "auto_pace", "auto_reason")}
            counters = SaleCounters(
                stock_total=config.stock_total, rate=float(counters_raw.get("rate") or 0.0), **counts)
    snapshot = SaleSnapshot(
        sale_id=sale_id, config=config, counters=counters, stream_ids=ids,
        tickets={t: TicketRecord.from_hash(t, h) for t, h in zip(unique, hashes, strict=True) if h},
        live_tickets={str(u): str(t) for u, t in live.items()},
        held_by_user={str(u): _int(n) for u, n in held.items()},
        expiring=frozenset(str(t) for t in expiring), settled=frozenset(str(t) for t in settled),
        lobby_ids=lobby_ids, after_lobby_ids=after_ids,
        lobby_closed=counters_raw.get("lobby_closed") == "1")
    snapshot.orders = [OrderRecord.from_document(doc) for doc in db.orders.find({"sale_id": sale_id})]
    if with_product and config is not None and config.product_id:
        product = db.products.find_one({"_id": config.product_id}, {"stock": 1})
        snapshot.product_stock = int(product["stock"]) if product else None
    if stripe_intents is not None:
        snapshot.intents = dict(stripe_intents)
    elif stripe_client is not None:
        snapshot.intents = read_stripe_intents(stripe_client, sale_id)
    return snapshot
