"""What a hostile shopper or a lost message could once take from the shop: a second unit past
the per-user limit, a cancelled ticket that still gets charged, money kept for no goods, an
intent left confirmable after its ticket was released, and the catalogue selling a sale's
units. Each test here replays one such hole against the real Redis, MongoDB and Stripe
emulator."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from common.billing import payments
from common.billing.payments import apply_intent
from common.billing.stripe_gateway import StripeGateway
from common.flash_sale import reservations, sale_keys, sales, waiting_room
from common.platform.errors import InsufficientStock, PaymentInProgress, PaymentProviderError
from tests.faults.flows import pay_at_stripe, reserve, stripe_state
from tests.faults.invariants import assert_invariants
from tests.waiting_room_helpers import drain, gateway_for, make_product, open_sale, payment_context


def _status(clients, ticket_id: str) -> str:
    return waiting_room.read_ticket(clients.redis, ticket_id)["status"]


def _held(clients, sale_id: str, user: str) -> int:
    return int(clients.redis.hget(sale_keys.held_units_key(sale_id), user) or 0)


def _expire_now(clients, sale_id: str, ticket_id: str) -> None:
    """The reservation's time runs out and beat's expiry pass runs; its intent's cancellation
    has not reached Stripe yet (the sweep is later)."""
    past = int(time.time() * 1000) - 1
    clients.redis.hset(sale_keys.ticket_key(sale_id, ticket_id), "expires_at_ms", past)
    clients.redis.zadd(sale_keys.expiry_key(sale_id), {ticket_id: past})
    assert [t for t, _ in reservations.expire_due_reservations(clients.redis, sale_id)] == [ticket_id]


def _refunds(clients, intent_id: str) -> int:
    return len(clients.stripe.v1.refunds.list(params={"payment_intent": intent_id}).data)


# ------------------------------------------------------------------ hole 1: limit and cancel


def test_cancel_answers_payment_in_progress_once_the_payment_succeeded(clients):
    """Pay T1, cancel T1 before the webhook: the cancel must refuse and change nothing."""
    sale_id = open_sale(clients, stock=3, per_user_limit=1)
    first, intent_id = reserve(clients, sale_id, "hostile")
    assert pay_at_stripe(clients, intent_id) == "succeeded"
    with pytest.raises(PaymentInProgress) as refused:
        payments.cancel_ticket(clients.redis, gateway_for(clients), first, "hostile")
    assert refused.value.status == 409 and refused.value.code == "payment_in_progress"
    assert _status(clients, first) == "reserved" and _held(clients, sale_id, "hostile") == 1
    # Still holding their share: joining again gives the same ticket, not a second one.
    again = waiting_room.admit(clients.redis, sale_id, "hostile", 1)
    assert not again.created and again.ticket["id"] == first
    assert apply_intent(payment_context(clients), intent_id) == "paid"
    assert_invariants(clients.redis, clients.db, sale_id, stripe_state(clients, sale_id))


def test_cancel_over_http_with_the_payment_made_is_409_and_the_shopper_gets_one_unit(client, clients):
    from tests.accounts import bearer, register
    from tests.waiting_room_helpers import card_token

    sale_id = open_sale(clients, stock=3, per_user_limit=1)
    session = register(client)
    headers = bearer(session["access_token"])
    joined = client.post(f"/api/sales/{sale_id}/tickets", json={}, headers=headers).get_json()
    drain(clients, sale_id)
    token = card_token(str(clients.settings.stripe_api_base))
    paid = client.post(f"/api/tickets/{joined['id']}/pay", json={"card_token": token}, headers=headers)
    assert paid.status_code == 200 and paid.get_json()["status"] == "succeeded"
    cancel = client.post(f"/api/tickets/{joined['id']}/cancel", headers=headers)
    assert cancel.status_code == 409, cancel.get_json()
    assert cancel.get_json()["error"]["code"] == "payment_in_progress"
    # Join again: the live ticket comes back, not a second one.
    again = client.post(f"/api/sales/{sale_id}/tickets", json={}, headers=headers)
    assert again.status_code == 200 and again.get_json()["id"] == joined["id"]


def test_cancel_before_paying_cancels_the_intent_at_stripe_first(clients):
    sale_id = open_sale(clients, stock=1)
    ticket_id, intent_id = reserve(clients, sale_id, "quitter")
    ticket = payments.cancel_ticket(clients.redis, gateway_for(clients), ticket_id, "quitter")
    assert ticket["status"] == "cancelled"
    assert gateway_for(clients).retrieve(intent_id).status == "canceled"
    with pytest.raises(Exception):  # noqa: B017 - Stripe refuses to confirm a cancelled intent
        pay_at_stripe(clients, intent_id)
    assert gateway_for(clients).retrieve(intent_id).status == "canceled"


def test_cancel_with_stripe_unreachable_changes_nothing(clients):
    class Down(StripeGateway):
        def cancel(self, intent_id: str, reason: str = "abandoned"):
            raise PaymentProviderError()

    sale_id = open_sale(clients, stock=1)
    ticket_id, _ = reserve(clients, sale_id, "unlucky")
    with pytest.raises(PaymentProviderError):
        payments.cancel_ticket(clients.redis, Down(clients.stripe, emulator=True), ticket_id, "unlucky")
    assert _status(clients, ticket_id) == "reserved"


def test_late_payment_for_an_expired_ticket_is_refunded_once_the_owner_bought_their_share(clients):
    """Expire T1, buy T2, then T1's payment lands: honouring it would give a second unit."""
    sale_id = open_sale(clients, stock=3, per_user_limit=1)
    first, first_intent = reserve(clients, sale_id, "twice")
    _expire_now(clients, sale_id, first)
    second, second_intent = reserve(clients, sale_id, "twice")
    assert pay_at_stripe(clients, second_intent) == "succeeded"
    ctx = payment_context(clients)
    assert apply_intent(ctx, second_intent) == "paid"
    # T1's payment reaches Stripe before the outbox cancels its intent.
    assert pay_at_stripe(clients, first_intent) == "succeeded"
    assert apply_intent(ctx, first_intent) == "refunded"
    assert _status(clients, first) == "expired" and _refunds(clients, first_intent) == 1
    assert waiting_room.read_ticket(clients.redis, first)["refunded"] is True
    assert clients.db.orders.count_documents({"sale_id": sale_id, "user_id": "twice"}) == 1
    assert _held(clients, sale_id, "twice") == 1
    assert _status(clients, second) == "paid"
    assert_invariants(clients.redis, clients.db, sale_id, stripe_state(clients, sale_id))


def test_a_queued_ticket_is_not_reserved_when_a_late_payment_used_the_owners_share(clients):
    sale_id = open_sale(clients, stock=3, per_user_limit=1)
    first, first_intent = reserve(clients, sale_id, "patient")
    _expire_now(clients, sale_id, first)
    second = waiting_room.admit(clients.redis, sale_id, "patient", 1).ticket["id"]
    assert pay_at_stripe(clients, first_intent) == "succeeded"
    assert apply_intent(payment_context(clients), first_intent) == "honoured"
    drain(clients, sale_id)
    ticket = waiting_room.read_ticket(clients.redis, second)
    assert ticket["status"] == "sold_out" and ticket["reason"] == "per_user_limit"
    assert _held(clients, sale_id, "patient") == 1
    counters = sales.read_counters(clients.redis, sale_id)
    assert (counters.available, counters.reserved, counters.sold) == (2, 0, 1)
    assert_invariants(clients.redis, clients.db, sale_id, stripe_state(clients, sale_id))


@pytest.mark.parametrize("ended_as", ["cancelled", "payment_failed"])
def test_money_reaching_a_cancelled_or_declined_ticket_is_refunded_never_honoured(clients, ended_as):
    sale_id = open_sale(clients, stock=2)
    ticket_id, intent_id = reserve(clients, sale_id, "ended")
    # The ticket ends in Redis while its intent is still confirmable at Stripe.
    from common.flash_sale.tickets import TicketStatus
    released, _ = waiting_room.release_ticket(
        clients.redis, ticket_id, TicketStatus(ended_as),
        (TicketStatus.RESERVING, TicketStatus.RESERVED))
    assert released
    assert pay_at_stripe(clients, intent_id) == "succeeded"
    assert apply_intent(payment_context(clients), intent_id) == "refunded"
    assert _status(clients, ticket_id) == ended_as and _refunds(clients, intent_id) == 1
    assert clients.db.orders.count_documents({"ticket_id": ticket_id}) == 0
    assert sales.read_counters(clients.redis, sale_id).available == 2


# ------------------------------------------------------------------ hole 4: money without goods


def test_a_paid_intent_that_lost_the_race_for_its_ticket_is_refunded(clients):
    """The emulator ignores idempotency keys: a second intent for one ticket can exist."""
    sale_id = open_sale(clients, stock=1)
    ticket_id, _intent_id = reserve(clients, sale_id, "racer")
    gateway = gateway_for(clients)
    loser = gateway.create_intent(amount_cents=1999, currency="usd", idempotency_key="other",
                                  metadata={"kind": "sale", "sale_id": sale_id, "ticket_id": ticket_id,
                                            "user_id": "racer"})
    assert pay_at_stripe(clients, loser.id) == "succeeded"
    assert apply_intent(payment_context(clients), loser.id) == "refunded_unmatched"
    assert _refunds(clients, loser.id) == 1
    # Applied again (a repeated webhook): still one refund.
    assert apply_intent(payment_context(clients), loser.id) == "refunded_unmatched"
    assert _refunds(clients, loser.id) == 1
    assert _status(clients, ticket_id) == "reserved"


def test_a_paid_intent_whose_ticket_is_gone_is_refunded(clients):
    sale_id = open_sale(clients, stock=1)
    ticket_id, intent_id = reserve(clients, sale_id, "vanished")
    assert pay_at_stripe(clients, intent_id) == "succeeded"
    clients.redis.delete(sale_keys.ticket_key(sale_id, ticket_id))  # kept 7 days, then gone
    assert apply_intent(payment_context(clients), intent_id) == "refunded_unmatched"
    assert _refunds(clients, intent_id) == 1


def test_every_released_intent_is_in_the_outbox_until_stripe_confirms(clients):
    """Expiry cut right after the release (no cancel sent): the outbox still has the intent,
    a failing Stripe keeps it with backoff, and the next sweep cancels it."""
    sale_id = open_sale(clients, stock=2)
    ticket_id, intent_id = reserve(clients, sale_id, "slow")
    _expire_now(clients, sale_id, ticket_id)
    outbox = sale_keys.intent_cancels_key(sale_id)
    assert clients.redis.zrange(outbox, 0, -1) == [intent_id]

    class Down(StripeGateway):
        def cancel(self, intent_id: str, reason: str = "abandoned"):
            raise PaymentProviderError()

    down = payment_context(clients)
    down.gateway = Down(clients.stripe, emulator=True)
    assert payments.sweep_intent_cancellations(down, sale_id) == {"retry": 1}
    assert clients.redis.zscore(outbox, intent_id) > time.time() * 1000  # pushed back
    assert gateway_for(clients).retrieve(intent_id).status != "canceled"
    assert payments.sweep_intent_cancellations(payment_context(clients), sale_id) == {}  # not due
    clients.redis.zadd(outbox, {intent_id: 0})
    assert payments.sweep_intent_cancellations(payment_context(clients), sale_id) == {"canceled": 1}
    assert gateway_for(clients).retrieve(intent_id).status == "canceled"
    assert clients.redis.zcard(outbox) == 0


def test_the_sweep_settles_or_refunds_an_intent_paid_before_its_cancellation(clients):
    sale_id = open_sale(clients, stock=1)
    ticket_id, intent_id = reserve(clients, sale_id, "just-in-time")
    _expire_now(clients, sale_id, ticket_id)
    assert pay_at_stripe(clients, intent_id) == "succeeded"
    assert payments.sweep_intent_cancellations(payment_context(clients), sale_id) == {"succeeded": 1}
    assert _status(clients, ticket_id) == "paid"  # a unit was free and the limit allowed it
    assert clients.redis.zcard(sale_keys.intent_cancels_key(sale_id)) == 0
    assert_invariants(clients.redis, clients.db, sale_id, stripe_state(clients, sale_id))


def test_a_dead_lettered_reservations_intent_is_cancelled(clients):
    sale_id = open_sale(clients, stock=1)
    ticket_id, intent_id = reserve(clients, sale_id, "poison")
    decider = reservations.Decider(clients.redis, gateway_for(clients), sale_id,
                                   reservations.DrainOptions(), intent_pool=None)  # type: ignore[arg-type]
    decider._dead_letter("0-1", {"ticket_id": ticket_id}, "test")
    assert _status(clients, ticket_id) == "payment_failed"
    assert gateway_for(clients).retrieve(intent_id).status == "canceled"
    assert clients.redis.zcard(sale_keys.intent_cancels_key(sale_id)) == 0


# ------------------------------------------------------------------ hole 5: catalogue and sale


def _new_sale(clients, product_id: str, stock: int, *, ends_in: float = 3600) -> dict:
    now = datetime.now(UTC)
    return sales.create_sale(clients.db, clients.redis, product_id=product_id, stock=stock,
                             price_cents=999, starts_at=now - timedelta(seconds=1),
                             ends_at=now + timedelta(seconds=ends_in))


def _product_stock(clients, product_id: str) -> int:
    return int(clients.db.products.find_one({"_id": product_id})["stock"])


def test_a_sale_takes_its_units_out_of_the_catalogue(clients):
    product_id = make_product(clients, stock=10)
    _new_sale(clients, product_id, 4)
    assert _product_stock(clients, product_id) == 6
    with pytest.raises(InsufficientStock) as refused:
        _new_sale(clients, product_id, 7)
    assert refused.value.status == 409 and refused.value.details == {"product_stock": 6, "requested": 7}
    assert _product_stock(clients, product_id) == 6
    assert clients.db.sales.count_documents({"product_id": product_id}) == 1


def test_cart_and_sale_together_never_sell_more_than_exists(client, clients):
    from tests.accounts import bearer, register

    product_id = make_product(clients, stock=1)
    sale_id = str(_new_sale(clients, product_id, 1)["_id"])
    # The catalogue has nothing left to sell: checkout of the product is refused.
    session = register(client)
    headers = bearer(session["access_token"])
    put = client.put(f"/api/cart/items/{product_id}", json={"quantity": 1}, headers=headers)
    assert put.status_code == 409 and put.get_json()["error"]["code"] == "insufficient_stock"
    # The sale sells its one unit; the product's stock stays at 0, never below.
    _ticket_id, intent_id = reserve(clients, sale_id, "sale-buyer")
    assert pay_at_stripe(clients, intent_id) == "succeeded"
    assert apply_intent(payment_context(clients), intent_id) == "paid"
    assert _product_stock(clients, product_id) == 0


def test_units_of_an_ended_sale_go_back_to_the_catalogue_once(clients):
    product_id = make_product(clients, stock=5)
    sale_id = str(_new_sale(clients, product_id, 5, ends_in=2)["_id"])
    _ticket_id, intent_id = reserve(clients, sale_id, "buyer")
    assert pay_at_stripe(clients, intent_id) == "succeeded"
    assert apply_intent(payment_context(clients), intent_id) == "paid"
    assert sales.return_unsold_units(clients.db, clients.redis, sale_id) == 0  # not ended yet
    time.sleep(2.1)
    assert sales.return_unsold_units(clients.db, clients.redis, sale_id) == 4
    assert sales.return_unsold_units(clients.db, clients.redis, sale_id) == 0
    assert _product_stock(clients, product_id) == 4
    counters = sales.read_counters(clients.redis, sale_id)
    assert (counters.available, counters.sold, counters.returned) == (0, 1, 4) and counters.consistent
    assert counters.stock_total == 1  # what the sale still owns: the unit it sold
