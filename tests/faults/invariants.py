"""The invariants every fault test ends with, read from Redis, MongoDB and Stripe.

The checks themselves are common.auditing.audit's (the one auditor, shared with reconcile and
`flashsale verify`): I1 stock, I2 outcomes, I3 one reservation, live PaymentIntent and order
per ticket, I4 money and goods (a `cancelled` ticket is never charged), the per-user limit,
and final stays final. This module keeps the fault tests' own names for them.

Tickets are enumerated from the sale's stream (XRANGE), PaymentIntents from Stripe (listed
through the SDK, filtered on metadata) or from a test double with the same shape.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
import stripe
from pymongo.database import Database

from common.auditing import audit as auditor
from common.flash_sale import sale_keys

# A PaymentIntent as the checks see it: (id, status, amount, metadata, refunds).
IntentView = auditor.IntentRecord


@dataclass
class StripeView:
    """The sale's PaymentIntents as Stripe knows them."""

    intents: dict[str, IntentView] = field(default_factory=dict)

    def for_ticket(self, ticket_id: str) -> list[IntentView]:
        return [i for i in self.intents.values() if i.metadata.get("ticket_id") == ticket_id]


def stripe_view(client: stripe.StripeClient, sale_id: str) -> StripeView:
    """Every PaymentIntent whose metadata names this sale, with its refund count."""
    return StripeView(auditor.read_stripe_intents(client, sale_id))


@dataclass
class SaleSnapshot:
    tickets: dict[str, dict[str, str]]
    orders: list[dict[str, Any]]
    problems: list[str]
    # What the auditor read: pass it as `earlier` to a later check_invariants call.
    audit: auditor.SaleSnapshot | None = None
    violations: list[auditor.Violation] = field(default_factory=list)

    def statuses(self) -> Counter[str]:
        return Counter(t.get("status", "missing") for t in self.tickets.values())


def snapshot_tickets(redis_client: redis.Redis, sale_id: str) -> tuple[list[str], dict[str, dict[str, str]]]:
    ids = auditor.stream_ticket_ids(redis_client, sale_id)
    pipe = redis_client.pipeline(transaction=False)
    for ticket_id in ids:
        pipe.hgetall(sale_keys.ticket_key(sale_id, ticket_id))
    return ids, dict(zip(ids, pipe.execute() if ids else [], strict=True))


def check_invariants(redis_client: redis.Redis, db: Database, sale_id: str,
                     stripe_state: StripeView | None = None, *, settled: bool = True,
                     allow_reserved: bool = True, intents_closed: bool = True,
                     one_live_intent: bool = True,
                     earlier: Sequence[SaleSnapshot] | SaleSnapshot = ()) -> SaleSnapshot:
    """Check every invariant for one sale and return what was read, with every problem found.

    `settled`: nothing is in flight any more (no queued, reserving or settling ticket).
    `intents_closed`: the PaymentIntents of released tickets have been cancelled by now.
    `one_live_intent`: at most one PaymentIntent per ticket is not cancelled (the Stripe
    emulator ignores idempotency keys, so a create whose answer was cut leaves an orphan).
    `earlier`: snapshots returned by earlier calls, so that no ticket may have left a final
    status since (besides what the tickets themselves record).
    """
    read = auditor.read_sale_snapshot(
        redis_client, db, sale_id,
        stripe_intents=stripe_state.intents if stripe_state is not None else None)
    before = [earlier] if isinstance(earlier, SaleSnapshot) else list(earlier)
    violations = auditor.audit_sale(
        read, settled=settled, allow_reserved=allow_reserved, intents_closed=intents_closed,
        one_live_intent=one_live_intent, earlier=[s.audit for s in before if s.audit is not None])
    tickets = {t: dict(read.tickets[t].fields) if t in read.tickets else {}
               for t in dict.fromkeys(read.stream_ids)}
    return SaleSnapshot(tickets, [dict(o.document) for o in read.orders],
                        [str(v) for v in violations], read, violations)


def assert_invariants(redis_client: redis.Redis, db: Database, sale_id: str,
                      stripe_state: StripeView | None = None, **options: Any) -> SaleSnapshot:
    """check_invariants, failing with every problem found listed."""
    snapshot = check_invariants(redis_client, db, sale_id, stripe_state, **options)
    assert not snapshot.problems, "invariants broken:\n  " + "\n  ".join(snapshot.problems)
    return snapshot
