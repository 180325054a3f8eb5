"""Stripe deliveries as they really arrive: repeated, concurrent, out of order, late, forged.

Deliveries go through the webhook endpoint (signed with the configured secret), then the
worker's share runs through common.billing.payments.apply_intent. Whatever the order, a ticket's
outcome follows the PaymentIntent's state at Stripe, and I1-I4 hold afterwards.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from common.auditing.reconcile import reconcile_sale
from common.billing import payments
from common.billing.payments import apply_intent
from common.billing.stripe_gateway import StripeGateway
from common.flash_sale import reservations, sale_keys, waiting_room
from tests.faults.flows import (
    DECLINED_CARD,
    deliver,
    event_payload,
    pay_at_stripe,
    queued_tasks,
    reserve,
    signature_header,
    stripe_state,
    work_delivery,
)
from tests.faults.invariants import assert_invariants, check_invariants
from tests.waiting_room_helpers import drain, open_sale, payment_context


def _status(clients, ticket_id: str) -> str:
    return waiting_room.read_ticket(clients.redis, ticket_id)["status"]


def test_five_concurrent_deliveries_make_one_order(fault_app, fault_clients, fault_settings):
    clients, secret = fault_clients, fault_settings.stripe_webhook_secret
    sale_id = open_sale(clients, stock=2, product_stock=2)
    ticket_id, intent_id = reserve(clients, sale_id, "dup-payer")
    assert pay_at_stripe(clients, intent_id) == "succeeded"
    payload = event_payload("payment_intent.succeeded", intent_id)

    with ThreadPoolExecutor(5) as pool:
        answers = list(pool.map(lambda _: deliver(fault_app.test_client(), payload, secret), range(5)))
    assert [a.status_code for a in answers] == [200] * 5
    queued = queued_tasks(clients)
    assert 1 <= queued <= 5
    assert clients.db.webhook_events.count_documents({}) == 1
    # Every queued task runs, concurrently, as several workers would.
    with ThreadPoolExecutor(queued) as pool:
        outcomes = list(pool.map(lambda _: work_delivery(clients, payload), range(queued)))
    assert outcomes.count("paid") == 1, outcomes
    # A repeat after processing is acknowledged and not queued again.
    again = deliver(fault_app.test_client(), payload, secret)
    assert again.status_code == 200 and again.get_json() == {"received": True, "duplicate": True}
    assert queued_tasks(clients) == queued

    assert _status(clients, ticket_id) == "paid"
    assert clients.db.orders.count_documents({"payment_intent_id": intent_id}) == 1
    assert_invariants(clients.redis, clients.db, sale_id, stripe_state(clients, sale_id))


@pytest.mark.parametrize("first", ["succeeded", "failure"])
def test_reordered_failure_and_cancel_events_never_undo_a_paid_order(fault_client, fault_clients,
                                                                      fault_settings, first):
    """payment_failed and canceled events (stale, or for an attempt that failed before the one
    that succeeded) delivered before or after `succeeded`: the order stays paid."""
    clients, secret = fault_clients, fault_settings.stripe_webhook_secret
    sale_id = open_sale(clients, stock=1, product_stock=1)
    ticket_id, intent_id = reserve(clients, sale_id, "reorder")
    assert pay_at_stripe(clients, intent_id) == "succeeded"
    succeeded = event_payload("payment_intent.succeeded", intent_id)
    failures = [event_payload("payment_intent.payment_failed", intent_id),
                event_payload("payment_intent.canceled", intent_id)]
    order = [succeeded, *failures] if first == "succeeded" else [*failures, succeeded]

    outcomes = []
    for payload in order:
        assert deliver(fault_client, payload, secret).status_code == 200
        outcomes.append(work_delivery(clients, payload))
    assert outcomes.count("paid") == 1 and set(outcomes) <= {"paid", "already_paid"}, outcomes

    ticket = waiting_room.read_ticket(clients.redis, ticket_id)
    order_doc = clients.db.orders.find_one({"ticket_id": ticket_id})
    assert ticket["status"] == "paid" and order_doc["status"] == "paid"
    assert ticket["order_id"] == order_doc["_id"]
    assert_invariants(clients.redis, clients.db, sale_id, stripe_state(clients, sale_id))


def test_canceled_event_for_a_cancelled_reservation_then_a_stale_succeeded_replay(
        fault_client, fault_clients, fault_settings):
    """A cancel that wins at Stripe, then an old `succeeded` event replayed: nothing sells."""
    clients, secret = fault_clients, fault_settings.stripe_webhook_secret
    sale_id = open_sale(clients, stock=1, product_stock=1)
    ticket_id, intent_id = reserve(clients, sale_id, "canceller")
    gateway = payment_context(clients).gateway
    assert payments.cancel_ticket(clients.redis, gateway, ticket_id, "canceller")["status"] == "cancelled"
    assert gateway.retrieve(intent_id).status == "canceled"
    for event_type in ("payment_intent.canceled", "payment_intent.succeeded"):
        payload = event_payload(event_type, intent_id)
        assert deliver(fault_client, payload, secret).status_code == 200
        assert work_delivery(clients, payload) in ("unchanged", "payment_failed")
    assert _status(clients, ticket_id) == "cancelled"
    assert clients.db.orders.count_documents({"ticket_id": ticket_id}) == 0
    assert_invariants(clients.redis, clients.db, sale_id, stripe_state(clients, sale_id))


@pytest.mark.parametrize("stock_left", [True, False], ids=["honoured", "refunded"])
def test_late_delivery_after_expiry_is_honoured_or_refunded(fault_client, fault_clients, fault_settings,
                                                            stock_left):
    clients, secret = fault_clients, fault_settings.stripe_webhook_secret
    sale_id = open_sale(clients, stock=1, ttl=1, product_stock=1)
    late_ticket, intent_id = reserve(clients, sale_id, "late")
    # The shopper pays just before the hold runs out; the webhook arrives after expiry.
    assert pay_at_stripe(clients, intent_id) == "succeeded"
    time.sleep(1.1)
    expired = reservations.expire_due_reservations(clients.redis, sale_id)
    assert expired == [(late_ticket, intent_id)]
    if not stock_left:
        taker, _ = reserve(clients, sale_id, "taker")
        assert _status(clients, taker) == "reserved"
    # The expiry's cancel task finds the intent paid and settles it; so does the webhook.
    payload = event_payload("payment_intent.succeeded", intent_id)
    assert deliver(fault_client, payload, secret).status_code == 200
    first = work_delivery(clients, payload)
    assert payment_context(clients).gateway.cancel(intent_id).status == "succeeded"
    second = apply_intent(payment_context(clients), intent_id)
    if stock_left:
        assert (first, second) == ("honoured", "already_paid")
        assert _status(clients, late_ticket) == "paid"
    else:
        assert (first, second) == ("refunded", "already_refunded")
        assert _status(clients, late_ticket) == "expired"
    assert_invariants(clients.redis, clients.db, sale_id, stripe_state(clients, sale_id))


def test_forged_and_malformed_deliveries_get_400_and_change_nothing(fault_client, fault_clients,
                                                                    fault_settings):
    clients, secret = fault_clients, fault_settings.stripe_webhook_secret
    sale_id = open_sale(clients, stock=1, product_stock=1)
    ticket_id, intent_id = reserve(clients, sale_id, "target")
    payload = event_payload("payment_intent.succeeded", intent_id)
    now = int(time.time())
    good = signature_header(payload, secret)
    timestamp, v1 = good.split(",")
    cases = {
        "no header": (payload, None),
        "wrong secret": (payload, signature_header(payload, "whsec_forged")),
        "tampered body": (payload.replace(b"succeeded", b"canceled"), good),
        "stale": (payload, signature_header(payload, secret, now - 3600)),
        "signature of another body": (payload, signature_header(b"{}", secret)),
        "v0 scheme only": (payload, f"{timestamp},v0={v1[3:]}"),
        "no timestamp": (payload, v1),
        "garbage header": (payload, "t=abc,v1=zzz"),
        "empty header": (payload, " "),
    }
    # Signed correctly, but not an event: a sender with the secret must not crash us either.
    for name, body in {"list": b"[1]", "string": b'"x"', "null": b"null", "not json": b"{",
                       "data not an object": json.dumps({"id": "evt_x", "type": "payment_intent.succeeded",
                                                         "data": "x"}).encode(),
                       "no id": json.dumps({"type": "payment_intent.succeeded",
                                            "data": {"object": {"id": intent_id}}}).encode()}.items():
        cases[f"signed {name}"] = (body, signature_header(body, secret))
    for name, (body, header) in cases.items():
        headers = {"Stripe-Signature": header} if header is not None else {}
        response = fault_client.post("/api/webhooks/stripe", data=body, content_type="application/json",
                                     headers=headers)
        assert response.status_code == 400, (name, response.status_code, response.get_data(as_text=True))
        error = response.get_json()["error"]
        assert error["code"] == "invalid_signature" and set(error) == {"code", "message", "details"}, name
    assert clients.db.webhook_events.count_documents({}) == 0
    assert queued_tasks(clients) == 0
    assert _status(clients, ticket_id) == "reserved"
    # Someone who pays at Stripe still gets the order once the genuine event arrives.
    assert pay_at_stripe(clients, intent_id) == "succeeded"
    assert deliver(fault_client, payload, secret).status_code == 200
    assert work_delivery(clients, payload) == "paid"
    assert_invariants(clients.redis, clients.db, sale_id, stripe_state(clients, sale_id))


def test_webhook_body_over_the_limit_is_413(fault_client, fault_settings):
    body = b'{"id": "evt_big", "pad": "' + b"x" * fault_settings.max_content_length + b'"}'
    response = fault_client.post("/api/webhooks/stripe", data=body, content_type="application/json",
                                 headers={"Stripe-Signature": signature_header(body, "whsec_x")})
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "payload_too_large"


# ------------------------------------------------------------------ crash points of a payment


def test_crash_between_settling_and_the_order_write_is_repaired(fault_clients):
    """The worker dies after settle.lua: the next delivery, or reconcile, writes the order."""
    clients = fault_clients
    sale_id = open_sale(clients, stock=2, product_stock=2)
    by_redelivery, intent_a = reserve(clients, sale_id, "crash-a")
    by_reconcile, intent_b = reserve(clients, sale_id, "crash-b")
    ctx = payment_context(clients)
    for ticket_id, intent_id in ((by_redelivery, intent_a), (by_reconcile, intent_b)):
        assert pay_at_stripe(clients, intent_id) == "succeeded"
        from common.billing.payments import _ticket_keys, new_order_id
        from common.platform.lua_scripts import scripts_for

        outcome = scripts_for(clients.redis).settle(keys=_ticket_keys(sale_id, ticket_id),
                                                    args=[intent_id, new_order_id()])
        assert outcome[0] == "settle"
        assert _status(clients, ticket_id) == "reserved"  # settling shows as reserved
    assert apply_intent(ctx, intent_a) == "paid"
    report = reconcile_sale(ctx, sale_id)
    assert report.orders_repaired == [by_reconcile] and report.consistent
    assert _status(clients, by_redelivery) == _status(clients, by_reconcile) == "paid"
    assert_invariants(clients.redis, clients.db, sale_id, stripe_state(clients, sale_id))


def test_crash_between_the_order_write_and_marking_paid_is_repaired_by_reconcile(fault_clients):
    """The order reached MongoDB but the ticket still says settling: reconcile finishes it."""
    clients = fault_clients
    sale_id = open_sale(clients, stock=1, product_stock=1)
    ticket_id, intent_id = reserve(clients, sale_id, "crash-c")
    assert pay_at_stripe(clients, intent_id) == "succeeded"
    ctx = payment_context(clients)
    from common.billing import payments
    from common.platform.lua_scripts import scripts_for

    keys = payments._ticket_keys(sale_id, ticket_id)
    _, order_id = scripts_for(clients.redis).settle(keys=keys, args=[intent_id, payments.new_order_id()])
    payments.write_sale_order(ctx, order_id=order_id, ticket=clients.redis.hgetall(keys[0]),
                              config=clients.redis.hgetall(sale_keys.config_key(sale_id)),
                              intent=ctx.gateway.retrieve(intent_id))
    # ...and the worker dies here, its task lost with it (acks_late on Redis: unacked for an hour).
    reconcile_sale(ctx, sale_id)
    assert _status(clients, ticket_id) == "paid"
    assert_invariants(clients.redis, clients.db, sale_id, stripe_state(clients, sale_id))


def test_a_refund_whose_answer_was_lost_is_never_followed_by_an_order(fault_clients):
    """Late payment, no stock: the refund reaches Stripe but its answer is lost. Stock frees up
    before the retry: the retry must finish the refund, not also sell the unit."""
    clients = fault_clients
    sale_id = open_sale(clients, stock=1, ttl=1, product_stock=1)
    late_ticket, intent_id = reserve(clients, sale_id, "refund-late")
    assert pay_at_stripe(clients, intent_id) == "succeeded"
    time.sleep(1.1)
    assert reservations.expire_due_reservations(clients.redis, sale_id)[0][0] == late_ticket
    taker, _ = reserve(clients, sale_id, "refund-taker")

    class AnswerLost(StripeGateway):
        def refund(self, intent_id: str, idempotency_key: str) -> str:
            super().refund(intent_id, idempotency_key)
            raise ConnectionError("the refund's answer was lost")

    lossy = payment_context(clients)
    lossy.gateway = AnswerLost(clients.stripe, emulator=True)
    with pytest.raises(ConnectionError):
        apply_intent(lossy, intent_id)
    # The taker gives up: a unit is free again when the delivery is retried.
    payments.cancel_ticket(clients.redis, payment_context(clients).gateway, taker, "refund-taker")
    assert apply_intent(payment_context(clients), intent_id) == "refunded"
    assert _status(clients, late_ticket) == "expired"
    assert clients.db.orders.count_documents({"ticket_id": late_ticket}) == 0
    # The emulator ignores idempotency keys, so the retry's refund is a second one there;
    # real Stripe answers the retry with the first. What matters: no order, money returned.
    view = stripe_state(clients, sale_id)
    assert view.intents[intent_id].refunds >= 1
    problems = check_invariants(clients.redis, clients.db, sale_id, view).problems
    assert [p for p in problems if "refunded 2 times" not in p] == []


def test_declined_then_expired_reservation_frees_stock_once(fault_clients):
    clients = fault_clients
    sale_id = open_sale(clients, stock=1, ttl=1, product_stock=1)
    ticket_id, intent_id = reserve(clients, sale_id, "declined")
    with pytest.raises(Exception, match="declined"):
        pay_at_stripe(clients, intent_id, DECLINED_CARD)
    assert apply_intent(payment_context(clients), intent_id) == "payment_failed"
    time.sleep(1.1)
    assert reservations.expire_due_reservations(clients.redis, sale_id) == []
    assert _status(clients, ticket_id) == "payment_failed"
    drain(clients, sale_id)
    assert_invariants(clients.redis, clients.db, sale_id, stripe_state(clients, sale_id))
