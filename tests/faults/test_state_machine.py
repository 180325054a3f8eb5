"""A property-based state machine over the waiting room: shoppers join, workers decide batches
(or die halfway, leaving entries read but unacknowledged), reservations expire on a clock we
control, owners cancel, cards pay or are declined, webhooks arrive late, twice or out of
order, a worker dies between settling and writing the order, reconcile runs. After every step
the Redis and MongoDB sides of I1-I3 hold; at the end, once everything is delivered and
decided, all of I1-I4 hold.

Redis and MongoDB are the real servers (the Lua scripts and transactions are the thing under
test); Stripe is an in-memory double with real Stripe's idempotency, so that the machine can
take thousands of steps in a couple of minutes.
"""

from __future__ import annotations

import contextlib
import itertools
import secrets
import time
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from common.auditing import audit
from common.auditing.reconcile import reconcile_sale
from common.billing import payments
from common.billing.payments import PaymentContext, _ticket_keys, apply_intent, new_order_id
from common.billing.stripe_gateway import CANCELED, PROCESSING, SUCCEEDED, Intent
from common.flash_sale import reservations, sale_keys, waiting_room
from common.flash_sale.tickets import HOLDING, TicketStatus
from common.platform.clients import Clients
from common.platform.errors import DomainError
from common.platform.lua_scripts import scripts_for
from tests.faults.invariants import IntentView, StripeView, check_invariants
from tests.waiting_room_helpers import open_sale

pytestmark = [pytest.mark.slow]

USERS = [f"shopper-{i}" for i in range(3)]


@dataclass
class FakeIntent:
    id: str
    amount: int
    currency: str
    metadata: dict[str, str]
    status: str = "requires_payment_method"
    last_error: str | None = None
    refunds: set[str] = field(default_factory=set)

    def view(self) -> Intent:
        return Intent(id=self.id, status=self.status, client_secret=self.id + "_secret", amount=self.amount,
                      currency=self.currency, metadata=dict(self.metadata), last_error=self.last_error)


class FakeStripe:
    """What StripeGateway offers, in memory, with real Stripe's idempotency keys."""

    emulator = False

    def __init__(self) -> None:
        self.intents: dict[str, FakeIntent] = {}
        self._by_key: dict[str, str] = {}
        self._ids = itertools.count(1)
        self.lose_next_refund_answer = False

    def create_intent(self, *, amount_cents: int, currency: str, metadata: dict[str, str],
                      idempotency_key: str) -> Intent:
        if idempotency_key in self._by_key:
            return self.intents[self._by_key[idempotency_key]].view()
        # Unique across examples: they share one database, whose orders are unique per intent.
        intent = FakeIntent(f"pi_fake{next(self._ids)}_{secrets.token_hex(6)}", amount_cents, currency,
                            dict(metadata))
        self.intents[intent.id] = intent
        self._by_key[idempotency_key] = intent.id
        return intent.view()

    def retrieve(self, intent_id: str) -> Intent:
        return self.intents[intent_id].view()

    def cancel(self, intent_id: str, reason: str = "abandoned") -> Intent:
        intent = self.intents[intent_id]
        if intent.status not in (SUCCEEDED, CANCELED, PROCESSING):
            intent.status, intent.last_error = CANCELED, None
        return intent.view()

    def refund(self, intent_id: str, idempotency_key: str) -> str:
        self.intents[intent_id].refunds.add(idempotency_key)
        if self.lose_next_refund_answer:
            self.lose_next_refund_answer = False
            raise ConnectionError("the refund was made but its answer was lost")
        return "re_" + idempotency_key

    # -- what shoppers and banks do
    def pay(self, intent_id: str) -> bool:
        intent = self.intents[intent_id]
        if intent.status != "requires_payment_method":
            return False
        intent.status, intent.last_error = SUCCEEDED, None
        return True

    def decline(self, intent_id: str) -> bool:
        intent = self.intents[intent_id]
        if intent.status != "requires_payment_method":
            return False
        intent.last_error = "card_declined"
        return True

    def view(self) -> StripeView:
        return StripeView({i.id: IntentView(i.id, i.status, i.amount, dict(i.metadata), len(i.refunds))
                           for i in self.intents.values()})


class WaitingRoomMachine(RuleBasedStateMachine):
    def __init__(self, clients: Clients) -> None:
        super().__init__()
        self.clients = clients
        self.redis = clients.redis
        self.stripe = FakeStripe()
        self.ctx = PaymentContext(mongo=clients.mongo, db=clients.db, redis=clients.redis,
                                  gateway=self.stripe, serialize_transactions=True)  # type: ignore[arg-type]
        self.sale_id = ""
        self.tickets: list[str] = []
        self.deliveries: list[str] = []  # PaymentIntent ids of webhook events sent, not yet dropped
        self.abandoned = 0  # entries read by a worker that died

    # ------------------------------------------------------------------ helpers

    def _ticket(self, index: int, statuses: set[str] | None = None) -> tuple[str, dict[str, str]]:
        """The index-th ticket (of those in `statuses`, when there are any)."""
        pipe = self.redis.pipeline(transaction=False)
        for ticket_id in self.tickets:
            pipe.hgetall(sale_keys.ticket_key(self.sale_id, ticket_id))
        tickets = list(zip(self.tickets, pipe.execute(), strict=True))
        chosen = [t for t in tickets if statuses is None or t[1].get("status") in statuses] or tickets
        return chosen[index % len(chosen)]

    def _stream(self) -> str:
        return sale_keys.stream_key(self.sale_id)

    def _decide(self, entries: list[tuple[str, dict[str, str]]], attach: bool = True,
                ack: bool = True) -> None:
        if not entries:
            return
        decisions = reservations.decide_batch(self.redis, self.sale_id, [d["ticket_id"] for _, d in entries])
        if attach:
            for ticket_id, outcome in decisions:
                if outcome in ("reserving", "already:reserving"):
                    reservations.attach_payment_intent(self.redis, self.stripe, self.sale_id,  # type: ignore[arg-type]
                                                       ticket_id)
        if ack:
            self.redis.xack(self._stream(), sale_keys.CONSUMER_GROUP, *[e for e, _ in entries])

    def _outbox(self) -> str:
        return sale_keys.intent_cancels_key(self.sale_id)

    def _sweep_outbox(self) -> None:
        """worker.tasks.sweep_intent_cancellations: cancel, or settle a payment that won the
        race; an entry that failed waits for its backoff."""
        payments.sweep_intent_cancellations(self.ctx, self.sale_id)

    def _deliver(self, intent_id: str) -> bool:
        """worker.tasks.apply_payment_event; False when it failed (Celery retries it)."""
        try:
            apply_intent(self.ctx, intent_id)
        except ConnectionError:
            return False
        return True

    # ------------------------------------------------------------------ rules

    @initialize(stock=st.integers(1, 6), per_user_limit=st.sampled_from([1, 2]))
    def open_the_sale(self, stock: int, per_user_limit: int) -> None:
        self.sale_id = open_sale(self.clients, stock=stock, per_user_limit=per_user_limit, ttl=300)
        reservations.ensure_group(self.redis, self.sale_id)

    @rule(shoppers=st.lists(st.tuples(st.sampled_from(USERS), st.integers(1, 2)), min_size=1, max_size=4))
    def shoppers_join(self, shoppers: list[tuple[str, int]]) -> None:
        for user, quantity in shoppers:
            try:
                admission = waiting_room.admit(self.redis, self.sale_id, user, quantity)
            except DomainError:
                continue
            if admission.created:
                self.tickets.append(admission.ticket["id"])

    @rule(count=st.integers(1, 4))
    def worker_decides_a_batch(self, count: int) -> None:
        reply = self.redis.xreadgroup(sale_keys.CONSUMER_GROUP, "worker", {self._stream(): ">"}, count=count)
        self._decide(reply[0][1] if reply else [])

    @rule(count=st.integers(1, 4), decided=st.booleans())
    def worker_dies_halfway(self, count: int, decided: bool) -> None:
        """Read entries (and maybe decide them), then die before creating intents or acking."""
        reply = self.redis.xreadgroup(sale_keys.CONSUMER_GROUP, "doomed", {self._stream(): ">"}, count=count)
        self.abandoned += len(reply[0][1]) if reply else 0
        if decided:
            self._decide(reply[0][1] if reply else [], attach=False, ack=False)

    @precondition(lambda self: self.abandoned)
    @rule()
    def another_worker_claims_what_was_abandoned(self) -> None:
        self.abandoned = 0
        _next, entries, *_ = self.redis.xautoclaim(self._stream(), sale_keys.CONSUMER_GROUP, "worker",
                                                   min_idle_time=0, start_id="0-0", count=100)
        self._decide([(e, d) for e, d in entries if d])

    @precondition(lambda self: self.tickets)
    @rule(index=st.integers(0, 50))
    def reservation_runs_out(self, index: int) -> None:
        ticket_id, fields = self._ticket(index, {s.value for s in HOLDING})
        if fields.get("status") not in {s.value for s in HOLDING}:
            return
        past = int(time.time() * 1000) - 1
        self.redis.hset(sale_keys.ticket_key(self.sale_id, ticket_id), "expires_at_ms", past)
        self.redis.zadd(sale_keys.expiry_key(self.sale_id), {ticket_id: past})
        reservations.expire_due_reservations(self.redis, self.sale_id)

    @precondition(lambda self: self.tickets)
    @rule(index=st.integers(0, 50), rejoin=st.booleans())
    def hostile_shopper_pays_then_cancels(self, index: int, rejoin: bool) -> None:
        """Pay a reservation, then give the ticket up before the webhook is applied (and join
        again at once): the moves a shopper would use to get past the per-user limit."""
        ticket_id, fields = self._ticket(index, {"reserved"})
        intent_id = fields.get("payment_intent_id")
        if fields.get("status") != "reserved" or not intent_id:
            return
        if self.stripe.pay(intent_id):
            self.deliveries.append(intent_id)
        if self.stripe.intents[intent_id].status != SUCCEEDED:
            return
        with contextlib.suppress(DomainError):
            payments.cancel_ticket(self.redis, self.stripe, ticket_id, fields["user_id"])  # type: ignore[arg-type]
        if rejoin:
            self.shoppers_join([(fields["user_id"], int(fields["quantity"]))])

    @precondition(lambda self: self.tickets)
    @rule(index=st.integers(0, 50))
    def owner_cancels(self, index: int) -> None:
        ticket_id, fields = self._ticket(index, {"queued", "reserving", "reserved"})
        try:
            payments.cancel_ticket(self.redis, self.stripe, ticket_id, fields["user_id"])  # type: ignore[arg-type]
        except DomainError:
            return

    @rule(due_now=st.booleans())
    def beat_sweeps_the_cancellation_outbox(self, due_now: bool) -> None:
        if due_now:  # as if the backoff of failed attempts had passed
            entries = self.redis.zrange(self._outbox(), 0, -1)
            if entries:
                self.redis.zadd(self._outbox(), dict.fromkeys(entries, 0))
        self._sweep_outbox()

    @precondition(lambda self: self.tickets)
    @rule(cards=st.lists(st.tuples(st.integers(0, 50), st.booleans()), min_size=1, max_size=3))
    def shoppers_pay(self, cards: list[tuple[int, bool]]) -> None:
        """Cards go through (or are declined) at Stripe, which sends a webhook event each; a late
        payment is possible: an intent is payable until the outbox sweep cancelled it."""
        for index, declined in cards:
            # Mostly reserved tickets; sometimes one whose reservation already ended.
            _, fields = self._ticket(index, {"reserved"} if index % 4 else None)
            intent_id = fields.get("payment_intent_id")
            if intent_id and (self.stripe.decline(intent_id) if declined else self.stripe.pay(intent_id)):
                self.deliveries.append(intent_id)

    @precondition(lambda self: self.deliveries)
    @rule(events=st.lists(st.tuples(st.integers(0, 50), st.booleans()), min_size=1, max_size=3))
    def webhooks_arrive(self, events: list[tuple[int, bool]]) -> None:
        """Queued events, in any order; `again` keeps one queued to be delivered once more."""
        for index, again in events:
            if not self.deliveries:
                return
            position = index % len(self.deliveries)
            intent_id = self.deliveries[position] if again else self.deliveries.pop(position)
            if not self._deliver(intent_id) and not again:
                self.deliveries.append(intent_id)

    @rule()
    def stripe_loses_the_next_refund_answer(self) -> None:
        self.stripe.lose_next_refund_answer = True

    @precondition(lambda self: self.deliveries)
    @rule(index=st.integers(0, 50))
    def worker_dies_after_settling(self, index: int) -> None:
        """The first step of a payment (Redis) runs, then the worker dies before the order."""
        intent = self.stripe.intents[self.deliveries[index % len(self.deliveries)]]
        if intent.status == SUCCEEDED:
            ticket_id = intent.metadata["ticket_id"]
            scripts_for(self.redis).settle(keys=_ticket_keys(self.sale_id, ticket_id),
                                           args=[intent.id, new_order_id()])

    @rule()
    def reconcile_runs(self) -> None:
        reconcile_sale(self.ctx, self.sale_id)

    # ------------------------------------------------------------------ invariants

    @invariant()
    def stock_tickets_and_orders_agree(self) -> None:
        if not self.sale_id:
            return
        snapshot = check_invariants(self.redis, self.clients.db, self.sale_id, settled=False)
        assert not snapshot.problems, snapshot.problems
        # The Stripe side so far: no order without a succeeded payment, nothing paid twice.
        view = self.stripe.view()
        for order in snapshot.orders:
            assert view.intents[order["payment_intent_id"]].status == SUCCEEDED
            assert not view.intents[order["payment_intent_id"]].refunds
        succeeded = [i.metadata["ticket_id"] for i in view.intents.values() if i.status == SUCCEEDED]
        assert len(succeeded) == len(set(succeeded))
        # A cancelled ticket is never charged, not even for a moment: its intent is cancelled
        # at Stripe before the ticket is.
        assert snapshot.audit is not None
        charged = [v for v in audit.check_money(replace(snapshot.audit, intents=view.intents))
                   if v.code == "cancelled_charged"]
        assert not charged, charged

    def teardown(self) -> None:
        """Let the system settle: every entry decided, every task run, every event delivered."""
        if not self.sale_id:
            return
        self.another_worker_claims_what_was_abandoned()
        while True:
            reply = self.redis.xreadgroup(sale_keys.CONSUMER_GROUP, "worker", {self._stream(): ">"}, count=50)
            if not reply or not reply[0][1]:
                break
            self._decide(reply[0][1])
        self.stripe.lose_next_refund_answer = False
        for _ in range(3):
            self.beat_sweeps_the_cancellation_outbox(due_now=True)
        assert self.redis.zcard(self._outbox()) == 0, "an intent's cancellation was never confirmed"
        for intent in list(self.stripe.intents.values()):
            if intent.status == SUCCEEDED or intent.last_error:
                assert self._deliver(intent.id)
        reconcile_sale(self.ctx, self.sale_id)
        snapshot = check_invariants(self.redis, self.clients.db, self.sale_id, self.stripe.view(),
                                    settled=True, allow_reserved=True)
        assert not snapshot.problems, snapshot.problems
        statuses = {t["status"] for t in snapshot.tickets.values()}
        assert statuses <= {s.value for s in TicketStatus} - {"queued", "reserving", "settling"}


def test_waiting_room_state_machine(fault_clients) -> None:
    run_state_machine_as_test(
        lambda: WaitingRoomMachine(fault_clients),
        settings=settings(max_examples=100, stateful_step_count=50, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))


def test_the_stripe_double_behaves_like_stripe_where_it_matters() -> None:
    fake = FakeStripe()
    first = fake.create_intent(amount_cents=100, currency="usd", metadata={}, idempotency_key="k")
    again = fake.create_intent(amount_cents=100, currency="usd", metadata={}, idempotency_key="k")
    assert again.id == first.id
    assert fake.decline(first.id) and fake.retrieve(first.id).last_error
    assert fake.pay(first.id) and fake.retrieve(first.id).status == SUCCEEDED
    assert fake.cancel(first.id).status == SUCCEEDED  # a paid intent cannot be cancelled
    second = fake.create_intent(amount_cents=100, currency="usd", metadata={}, idempotency_key="k2")
    assert fake.cancel(second.id).status == CANCELED and not fake.pay(second.id)
    assert fake.refund(first.id, "r") == fake.refund(first.id, "r")
    assert len(fake.intents[first.id].refunds) == 1
