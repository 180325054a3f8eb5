"""Network faults between the app and Redis, and between the app and Stripe, through a TCP
proxy (tests/faults/proxy.py): refused, partitioned, slow and cut connections.

What must hold: a failure is a clean 503 with the contract's error body (never a 500 or a
stack trace) or a retry that succeeds; no request ever gets the answer meant for another;
nothing admitted before the fault is lost, and I1-I4 hold once the network is back.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from api.app import create_app
from common.billing.stripe_gateway import StripeGateway
from common.flash_sale import reservations, sale_keys, waiting_room
from common.platform.clients import Clients, make_redis
from common.platform.errors import ValidationFailed
from tests.faults.flows import (
    access_token,
    bearer,
    deliver,
    event_payload,
    pay_at_stripe,
    queued_tasks,
    reserve,
    stripe_state,
    work_delivery,
)
from tests.faults.invariants import assert_invariants
from tests.faults.proxy import FaultProxy, Mode
from tests.waiting_room_helpers import card_token, drain, open_sale, payment_context

# The app's Redis timeouts, shortened so that a partition is noticed in a test's time.
REDIS_TIMEOUT = 0.4


# Clients a test made for its proxies, closed when it ends (left to the garbage collector,
# their connections raised ResourceWarnings in whichever test ran then).
_made: list[Clients] = []


@pytest.fixture(autouse=True)
def _close_made_clients():
    yield
    while _made:
        _made.pop().close()


def _clients(settings) -> Clients:
    _made.append(Clients(settings))
    return _made[-1]


def _app_through(settings, **updates: Any):
    """The API with some of its services reached through proxies (and short Redis timeouts)."""
    proxied = settings.model_copy(update=updates)
    clients = _clients(proxied)
    clients.__dict__["redis"] = make_redis(proxied.redis_url, socket_timeout=REDIS_TIMEOUT,
                                           socket_connect_timeout=REDIS_TIMEOUT)
    app = create_app(proxied, clients)
    app.testing = True
    return app, clients


def _assert_clean_503(response, service: str | None = None) -> None:
    assert response.status_code == 503, (response.status_code, response.get_data(as_text=True))
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    assert "Traceback" not in response.get_data(as_text=True)
    if service:
        assert body["error"]["details"].get("service") == service, body


@pytest.fixture
def redis_proxy(redis_server):
    with FaultProxy("127.0.0.1", redis_server.port) as proxy:
        yield proxy


@pytest.fixture
def stripe_proxy(servers):
    with FaultProxy("127.0.0.1", int(servers.stripe.url.rsplit(":", 1)[1])) as proxy:
        yield proxy


# ------------------------------------------------------------------ app <-> Redis


def test_redis_refused_or_partitioned_is_503_and_nothing_admitted_is_lost(
        fault_settings, fault_clients, redis_proxy):
    sale_id = open_sale(fault_clients, stock=5)
    app, _ = _app_through(fault_settings, redis_url=redis_proxy.url("redis", "/0"),
                          celery_broker_url=fault_settings.redis_url)
    client = app.test_client()
    alice, bob = (bearer(access_token(fault_settings, f"usr_{name}")) for name in ("alice", "bob"))
    join = f"/api/sales/{sale_id}/tickets"
    first = client.post(join, json={"quantity": 1}, headers=alice)
    assert first.status_code == 202
    ticket_id = first.get_json()["id"]

    for mode in (Mode.DROP, Mode.BLACKHOLE):
        redis_proxy.set(mode)
        redis_proxy.cut()
        started = time.monotonic()
        _assert_clean_503(client.post(join, json={"quantity": 1}, headers=bob), "redis")
        _assert_clean_503(client.get(f"/api/tickets/{ticket_id}", headers=alice), "redis")
        _assert_clean_503(client.get(f"/api/sales/{sale_id}"), "redis")
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "redis" in ready.get_json()["down"]
        assert time.monotonic() - started < 20, f"{mode}: a partition must fail fast"

    redis_proxy.set(Mode.PASS)
    redis_proxy.cut()
    again = client.get(f"/api/tickets/{ticket_id}", headers=alice)
    assert again.status_code == 200 and again.get_json()["id"] == ticket_id
    second = client.post(join, json={"quantity": 1}, headers=bob)
    assert second.status_code == 202
    assert fault_clients.redis.xlen(sale_keys.stream_key(sale_id)) == 2
    drain(fault_clients, sale_id)
    assert_invariants(fault_clients.redis, fault_clients.db, sale_id, stripe_state(fault_clients, sale_id))


def test_late_redis_replies_never_answer_another_request(fault_settings, fault_clients, redis_proxy):
    """Replies slower than the client's timeout: the request fails cleanly, and the late reply
    is never read as the answer to the next command on that connection."""
    sale_id = open_sale(fault_clients, stock=50)
    app, _ = _app_through(fault_settings, redis_url=redis_proxy.url("redis", "/0"),
                          celery_broker_url=fault_settings.redis_url)
    users = [f"usr_late_{i}" for i in range(12)]
    tokens = {u: bearer(access_token(fault_settings, u)) for u in users}
    # A command's round trip takes 2 x (30..270) ms: some replies land before the client's
    # timeout (400 ms), some after it.
    redis_proxy.set(Mode.DELAY, 150, jitter_ms=120)
    answers: list[tuple[str, int, dict]] = []
    lock = threading.Lock()

    def shop(user: str) -> None:
        client = app.test_client()
        for round_no in range(3):
            if round_no == 1:
                response = client.get(f"/api/sales/{sale_id}/tickets/mine", headers=tokens[user])
            else:
                response = client.post(f"/api/sales/{sale_id}/tickets", json={"quantity": 1},
                                       headers=tokens[user])
            with lock:
                answers.append((user, response.status_code, response.get_json() or {}))

    with ThreadPoolExecutor(len(users)) as pool:
        list(pool.map(shop, users))
    redis_proxy.set(Mode.PASS)

    codes = Counter(code for _, code, _ in answers)
    print(f"\nreplies around the timeout: answers {dict(codes)}")
    assert set(codes) <= {200, 202, 404, 503}, codes
    latest = fault_clients.redis.hgetall(sale_keys.latest_tickets_key(sale_id))
    for user, code, body in answers:
        if code in (200, 202):
            # The ticket answered is the caller's own, never another shopper's.
            assert body["id"] == latest.get(user), (user, body["id"])
            owner = fault_clients.redis.hget(sale_keys.ticket_key(sale_id, body["id"]), "user_id")
            assert owner == user
        elif code == 503:
            assert body["error"]["code"] == "service_unavailable"
        else:
            assert body["error"]["code"] == "not_found"  # "mine" before the first ticket
    # Once the network is back, everybody reads their own ticket.
    client = app.test_client()
    for user in users:
        if user in latest:
            mine = client.get(f"/api/sales/{sale_id}/tickets/mine", headers=tokens[user])
            assert mine.status_code == 200 and mine.get_json()["id"] == latest[user]
    assert len(latest) == fault_clients.redis.xlen(sale_keys.stream_key(sale_id))
    drain(fault_clients, sale_id)
    assert_invariants(fault_clients.redis, fault_clients.db, sale_id, stripe_state(fault_clients, sale_id))


def test_connections_cut_under_traffic_give_503_or_the_right_answer(fault_settings, fault_clients,
                                                                    redis_proxy):
    sale_id = open_sale(fault_clients, stock=30)
    app, _ = _app_through(fault_settings, redis_url=redis_proxy.url("redis", "/0"),
                          celery_broker_url=fault_settings.redis_url)
    users = [f"usr_cut_{i}" for i in range(16)]
    tokens = {u: bearer(access_token(fault_settings, u)) for u in users}
    stop = threading.Event()
    answers: list[tuple[str, int, dict]] = []
    lock = threading.Lock()

    def shop(user: str) -> None:
        client = app.test_client()
        while not stop.is_set():
            response = client.post(f"/api/sales/{sale_id}/tickets", json={"quantity": 1},
                                   headers=tokens[user])
            with lock:
                answers.append((user, response.status_code, response.get_json() or {}))

    cuts = 0
    with ThreadPoolExecutor(len(users)) as pool:
        futures = [pool.submit(shop, u) for u in users]
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            time.sleep(0.05)
            cuts += redis_proxy.cut()
        stop.set()
        for future in futures:
            future.result()
    codes = Counter(code for _, code, _ in answers)
    print(f"\n{cuts} connections cut under {len(answers)} requests: {dict(codes)}")
    assert cuts > 0 and codes[503] > 0 and (codes[200] + codes[202]) > 0
    assert set(codes) <= {200, 202, 503}, codes
    latest = fault_clients.redis.hgetall(sale_keys.latest_tickets_key(sale_id))
    for user, code, body in answers:
        if code in (200, 202):
            assert body["id"] == latest[user], user
    # One ticket per shopper, whatever the cuts did to the answers.
    assert fault_clients.redis.xlen(sale_keys.stream_key(sale_id)) == len(latest) <= len(users)
    drain(fault_clients, sale_id)
    assert_invariants(fault_clients.redis, fault_clients.db, sale_id, stripe_state(fault_clients, sale_id))


def test_broker_unreachable_webhook_is_503_and_the_redelivery_is_applied(fault_settings, fault_clients,
                                                                         redis_proxy):
    """The event is recorded but cannot be queued: 503 (Stripe retries), never a 500."""
    sale_id = open_sale(fault_clients, stock=1, product_stock=1)
    ticket_id, intent_id = reserve(fault_clients, sale_id, "broker-down")
    assert pay_at_stripe(fault_clients, intent_id) == "succeeded"
    app, _ = _app_through(fault_settings, celery_broker_url=redis_proxy.url("redis", "/0"))
    client, secret = app.test_client(), fault_settings.stripe_webhook_secret
    payload = event_payload("payment_intent.succeeded", intent_id)
    redis_proxy.set(Mode.DROP)
    _assert_clean_503(deliver(client, payload, secret), "broker")
    assert queued_tasks(fault_clients) == 0
    redis_proxy.set(Mode.PASS)
    retry = deliver(client, payload, secret)
    assert retry.status_code == 200 and retry.get_json() == {"received": True}
    assert queued_tasks(fault_clients) == 1
    assert work_delivery(fault_clients, payload) == "paid"
    assert waiting_room.read_ticket(fault_clients.redis, ticket_id)["status"] == "paid"
    assert_invariants(fault_clients.redis, fault_clients.db, sale_id, stripe_state(fault_clients, sale_id))


def test_broker_unreachable_cancel_still_answers_the_truth(fault_settings, fault_clients, redis_proxy):
    """Cancelling needs no broker: the intent is cancelled at Stripe, then the ticket in Redis.
    With the broker down the shopper is told it is cancelled (not a 5xx that a retry turns into
    a 409), and the cancelled intent can no longer be paid: a cancelled ticket is never charged."""
    sale_id = open_sale(fault_clients, stock=1, product_stock=1)
    ticket_id, intent_id = reserve(fault_clients, sale_id, "usr_canceller")
    app, _ = _app_through(fault_settings, celery_broker_url=redis_proxy.url("redis", "/0"))
    client = app.test_client()
    redis_proxy.set(Mode.DROP)
    cancelled = client.post(f"/api/tickets/{ticket_id}/cancel",
                            headers=bearer(access_token(fault_settings, "usr_canceller")))
    assert cancelled.status_code == 200 and cancelled.get_json()["status"] == "cancelled"
    redis_proxy.set(Mode.PASS)
    assert payment_context(fault_clients).gateway.retrieve(intent_id).status == "canceled"
    with pytest.raises(ValidationFailed):
        pay_at_stripe(fault_clients, intent_id)
    assert_invariants(fault_clients.redis, fault_clients.db, sale_id, stripe_state(fault_clients, sale_id))


# ------------------------------------------------------------------ app <-> Stripe


def test_stripe_unreachable_pay_is_503_and_a_retry_pays_once(fault_settings, fault_clients, stripe_proxy):
    sale_id = open_sale(fault_clients, stock=1, product_stock=1)
    ticket_id, intent_id = reserve(fault_clients, sale_id, "usr_payer")
    app, _ = _app_through(fault_settings, stripe_api_base=stripe_proxy.url("http"),
                          stripe_timeout_seconds=1.0)
    client = app.test_client()
    headers = bearer(access_token(fault_settings, "usr_payer"))
    fault_clients.db.users.insert_one({"_id": "usr_payer", "email": "payer@example.com", "name": "P",
                                       "role": "customer", "password_hash": "x"})
    pay = f"/api/tickets/{ticket_id}/pay"
    api_base = str(fault_settings.stripe_api_base)
    for mode in (Mode.DROP, Mode.BLACKHOLE):
        stripe_proxy.set(mode)
        started = time.monotonic()
        _assert_clean_503(client.post(pay, json={"card_token": card_token(api_base)}, headers=headers))
        print(f"\nStripe {mode.value}: 503 after {time.monotonic() - started:.1f}s")
        assert waiting_room.read_ticket(fault_clients.redis, ticket_id)["status"] == "reserved"
    stripe_proxy.set(Mode.PASS)
    stripe_proxy.cut()
    paid = client.post(pay, json={"card_token": card_token(api_base)}, headers=headers)
    assert paid.status_code == 200 and paid.get_json()["status"] == "succeeded", paid.get_json()
    # A second click (or a retry whose first answer was lost) reports the payment, not an error.
    again = client.post(pay, json={"card_token": card_token(api_base)}, headers=headers)
    assert again.status_code == 200 and again.get_json()["status"] == "succeeded", again.get_json()
    assert work_delivery(fault_clients, event_payload("payment_intent.succeeded", intent_id)) == "paid"
    assert_invariants(fault_clients.redis, fault_clients.db, sale_id, stripe_state(fault_clients, sale_id))


def test_slow_stripe_while_deciding_keeps_every_reservation(fault_clients, stripe_proxy):
    """PaymentIntents slower than the claim idle time: the decider must not take its own
    in-flight tickets for abandoned ones and dead-letter them."""
    sale_id = open_sale(fault_clients, stock=12)
    for i in range(24):
        waiting_room.admit(fault_clients.redis, sale_id, f"slow-{i}", 1)
    stripe_proxy.set(Mode.DELAY, 150)
    slow = StripeGateway(_clients(fault_clients.settings.model_copy(
        update={"stripe_api_base": stripe_proxy.url("http")})).stripe, emulator=True)
    options = reservations.DrainOptions(idle_seconds=0.5, claim_idle_ms=200, max_deliveries=3)
    with ThreadPoolExecutor(2) as pool:
        report = reservations.drain_sale(fault_clients.redis, slow, sale_id, options, pool)
    print(f"\nslow Stripe drain: {report}")
    assert report.dead_lettered == 0 and report.reserved == 12 and report.sold_out == 12
    assert_invariants(fault_clients.redis, fault_clients.db, sale_id, stripe_state(fault_clients, sale_id))


def test_stripe_down_then_cut_while_deciding_every_ticket_gets_one_intent(fault_clients, stripe_proxy):
    sale_id = open_sale(fault_clients, stock=10)
    for i in range(15):
        waiting_room.admit(fault_clients.redis, sale_id, f"cut-{i}", 1)
    proxied = StripeGateway(_clients(fault_clients.settings.model_copy(
        update={"stripe_api_base": stripe_proxy.url("http"), "stripe_timeout_seconds": 1.0})).stripe,
        emulator=True)
    options = reservations.DrainOptions(idle_seconds=0.5, claim_idle_ms=200, max_deliveries=100)
    stripe_proxy.set(Mode.DROP)
    with ThreadPoolExecutor(4) as pool:
        down = reservations.drain_sale(fault_clients.redis, proxied, sale_id,
                                       reservations.DrainOptions(idle_seconds=0.5, claim_idle_ms=200,
                                                                 max_deliveries=100, max_seconds=3), pool)
    assert down.reserved == 10 and down.intent_failures > 0
    # Reserving tickets show as next in line until their PaymentIntent exists.
    statuses = Counter(t["status"] for t in (waiting_room.read_ticket(fault_clients.redis, data["ticket_id"])
                       for _, data in fault_clients.redis.xrange(sale_keys.stream_key(sale_id))))
    assert statuses == {"queued": 10, "sold_out": 5}

    stripe_proxy.set(Mode.DELAY, 30)
    stop = threading.Event()

    def cutter() -> None:
        while not stop.is_set():
            time.sleep(0.15)
            stripe_proxy.cut()

    threading.Thread(target=cutter, daemon=True).start()
    try:
        with ThreadPoolExecutor(4) as pool:
            reservations.drain_sale(fault_clients.redis, proxied, sale_id, options, pool)
    finally:
        stop.set()
    stripe_proxy.set(Mode.PASS)
    with ThreadPoolExecutor(4) as pool:
        reservations.drain_sale(fault_clients.redis, proxied, sale_id, options, pool)
    view = stripe_state(fault_clients, sale_id)
    # The emulator ignores idempotency keys: a create whose answer was cut and retried leaves
    # an orphan intent behind. It was never handed to anyone, so it can never be paid.
    stream = fault_clients.redis.xrange(sale_keys.stream_key(sale_id))
    attached = {fault_clients.redis.hget(sale_keys.ticket_key(sale_id, data["ticket_id"]),
                                         "payment_intent_id") for _, data in stream} - {None}
    orphans = [i for i in view.intents.values() if i.id not in attached and i.status != "canceled"]
    print(f"\n{len(view.intents)} intents for 10 reservations; {len(orphans)} orphans left by retries")
    assert len(attached) == 10 and all(i.status == "requires_payment_method" for i in orphans)
    assert_invariants(fault_clients.redis, fault_clients.db, sale_id, view, one_live_intent=False)
