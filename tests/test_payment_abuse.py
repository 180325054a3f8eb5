"""One shopper must not be able to spend the shop's Stripe account: pay attempts and checkouts
are limited per shopper, each account has one Stripe Customer however often it tries, and a
throttled Stripe never turns waiting shoppers' tickets into `payment_failed`."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import pytest
import stripe

from api.app import create_app
from common.accounts import users
from common.billing import card_payments
from common.billing.stripe_gateway import StripeGateway
from common.flash_sale import reservations, sale_keys, waiting_room
from common.platform.clients import Clients
from tests.accounts import bearer, create_product, register, register_admin
from tests.waiting_room_helpers import card_token, drain, open_sale


@pytest.fixture
def limited_client(settings, clients):
    application = create_app(settings.model_copy(update={"payment_rate_limit": "3 per minute"}),
                             clients)
    application.testing = True
    return application.test_client()


def shopper(client) -> dict[str, Any]:
    session = register(client)
    return {"id": session["user"]["id"], "email": session["user"]["email"],
            "headers": bearer(session["access_token"])}


def stripe_customers(clients: Clients, email: str) -> list[str]:
    listed = clients.stripe.v1.customers.list(params={"email": email, "limit": 100})
    return [c["id"] for c in listed.data]


# --------------------------------------------------------------------------- rate limit


def test_pay_and_checkout_answer_429_past_the_per_shopper_limit(limited_client):
    client = limited_client
    payer, buyer, other = shopper(client), shopper(client), shopper(client)
    ticket_pay = "/api/tickets/tkt_0123456789abcdef_0123456789abcdef0123456789abcdef/pay"

    # Every attempt counts, whatever it answers (here: no such ticket).
    for _ in range(3):
        answer = client.post(ticket_pay, json={"card_token": "tok_bogus"}, headers=payer["headers"])
        assert answer.status_code == 404
    refused = client.post(ticket_pay, json={"card_token": "tok_bogus"}, headers=payer["headers"])
    assert refused.status_code == 429
    assert refused.get_json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    # One budget for everything that costs Stripe calls.
    assert client.post("/api/cart/checkout", headers=payer["headers"]).status_code == 429
    assert client.post("/api/orders/ord_missing/pay", json={"card_token": "tok_bogus"},
                       headers=payer["headers"]).status_code == 429

    for _ in range(3):
        assert client.post("/api/cart/checkout", headers=buyer["headers"]).status_code == 409
    refused = client.post("/api/cart/checkout", headers=buyer["headers"])
    assert refused.status_code == 429 and refused.headers["Retry-After"]

    # Per shopper: someone else is not slowed down.
    assert client.post("/api/cart/checkout", headers=other["headers"]).status_code == 409
    # And no token is a 401 before anything else.
    anonymous = client.post(ticket_pay, json={"card_token": "tok_bogus"})
    assert anonymous.status_code == 401
    assert client.post("/api/cart/checkout").status_code == 401


# --------------------------------------------------------------------------- one customer


def test_repeated_pay_attempts_make_one_stripe_customer_per_shopper(client, clients):
    admin = register_admin(client, clients)["access_token"]
    buyer = shopper(client)
    lamp = create_product(client, admin, stock=5)
    assert client.put(f"/api/cart/items/{lamp['id']}", json={"quantity": 1},
                      headers=buyer["headers"]).status_code == 200
    placed = client.post("/api/cart/checkout", headers=buyer["headers"]).get_json()
    pay = f"/api/orders/{placed['order_id']}/pay"

    not_a_token = client.post(pay, json={"card_token": "card_1234"}, headers=buyer["headers"])
    assert not_a_token.status_code == 422
    assert stripe_customers(clients, buyer["email"]) == []  # refused before any Stripe call
    for attempt in range(3):
        bogus = client.post(pay, json={"card_token": f"tok_bogus{attempt}"},
                            headers=buyer["headers"])
        assert bogus.status_code in (402, 404, 422), bogus.get_json()

    # A reservation in a flash sale is paid on the same customer.
    sale_id = open_sale(clients, stock=1)
    ticket = waiting_room.admit(clients.redis, sale_id, buyer["id"], 1).ticket
    drain(clients, sale_id)
    base = str(clients.settings.stripe_api_base)
    paid = client.post(f"/api/tickets/{ticket['id']}/pay", json={"card_token": card_token(base)},
                       headers=buyer["headers"])
    assert paid.status_code == 200 and paid.get_json()["status"] == "succeeded"
    paid = client.post(pay, json={"card_token": card_token(base)}, headers=buyer["headers"])
    assert paid.status_code == 200 and paid.get_json()["status"] == "succeeded"

    customers = stripe_customers(clients, buyer["email"])
    assert len(customers) == 1
    assert clients.db.users.find_one({"_id": buyer["id"]})["stripe_customer_id"] == customers[0]
    intent = clients.stripe.v1.payment_intents.retrieve(placed["payment_intent_id"])
    assert intent["customer"] == customers[0]


def test_a_stored_customer_stripe_no_longer_knows_is_replaced_and_the_payment_goes_through(client, clients):
    # Deleted at Stripe, or made by an emulator that has restarted since: before, every payment
    # of this shopper was refused (422, Stripe's "No such customer") for good.
    buyer = shopper(client)
    clients.db.users.update_one({"_id": buyer["id"]}, {"$set": {"stripe_customer_id": "cus_gone0000000"}})
    sale_id = open_sale(clients, stock=1)
    ticket = waiting_room.admit(clients.redis, sale_id, buyer["id"], 1).ticket
    drain(clients, sale_id)
    paid = client.post(f"/api/tickets/{ticket['id']}/pay",
                       json={"card_token": card_token(str(clients.settings.stripe_api_base))},
                       headers=buyer["headers"])
    assert paid.status_code == 200 and paid.get_json()["status"] == "succeeded", paid.get_json()
    customers = stripe_customers(clients, buyer["email"])
    assert len(customers) == 1
    assert clients.db.users.find_one({"_id": buyer["id"]})["stripe_customer_id"] == customers[0]


def test_concurrent_first_payments_store_one_customer_and_use_only_it(clients):
    user = users.create_user(clients.db, email=f"race-{time.time_ns()}@example.com",
                             password="correct-horse-battery", name="Racer")
    gateway = StripeGateway(clients.stripe, emulator=True)
    start = threading.Barrier(6)

    def first_payment(_: int) -> str:
        start.wait()
        return card_payments.stripe_customer_for(clients.db, gateway, user["_id"])

    with ThreadPoolExecutor(6) as pool:
        used = set(pool.map(first_payment, range(6)))
    stored = clients.db.users.find_one({"_id": user["_id"]})["stripe_customer_id"]
    assert used == {stored}
    # The emulator ignores idempotency keys: the losers' spare customers were deleted.
    assert stripe_customers(clients, user["email"]) == [stored]


# --------------------------------------------------------------------------- Stripe throttled


class _Intents:
    """The real client's PaymentIntents, except that creating one fails `failures` times per
    ticket first, with `error`."""

    def __init__(self, real: Any, failures: int, error: type[stripe.StripeError]) -> None:
        self.real, self.failures, self.error = real, failures, error
        self.attempts: Counter[str] = Counter()
        self.lock = threading.Lock()

    def create(self, params: dict[str, Any], options: dict[str, Any] | None = None) -> Any:
        with self.lock:
            self.attempts[params["metadata"]["ticket_id"]] += 1
            failing = self.attempts[params["metadata"]["ticket_id"]] <= self.failures
        if failing:
            raise self.error("Stripe is unhappy right now.", http_status=429)
        return self.real.create(params=params, options=options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class _V1:
    def __init__(self, real: Any, intents: _Intents) -> None:
        self.real, self.payment_intents = real, intents

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class _Client:
    def __init__(self, real: stripe.StripeClient, intents: _Intents) -> None:
        self.v1 = _V1(real.v1, intents)


def _flaky_stripe(clients: Clients, failures: int,
                  error: type[stripe.StripeError]) -> tuple[StripeGateway, _Intents]:
    intents = _Intents(clients.stripe.v1.payment_intents, failures, error)
    return StripeGateway(_Client(clients.stripe, intents), emulator=True), intents  # type: ignore[arg-type]


def _drain_like_beat(clients: Clients, gateway: StripeGateway, sale_id: str,
                     options: reservations.DrainOptions, until: Any, seconds: float = 40) -> None:
    deadline = time.monotonic() + seconds
    with ThreadPoolExecutor(4) as pool:
        while not until() and time.monotonic() < deadline:
            reservations.drain_sale(clients.redis, gateway, sale_id, options, pool)
            time.sleep(options.claim_idle_ms / 1000)


def test_throttled_stripe_never_dead_letters_and_intents_come_once_it_recovers(clients):
    sale_id = open_sale(clients, stock=3)
    tickets = [waiting_room.admit(clients.redis, sale_id, f"user-{i}", 1).ticket["id"]
               for i in range(3)]
    options = reservations.DrainOptions(max_deliveries=2, claim_idle_ms=200, idle_seconds=0.3,
                                        intent_retry_seconds=0)  # one attempt per delivery
    failures = options.max_deliveries + 3
    gateway, intents = _flaky_stripe(clients, failures, stripe.RateLimitError)

    def statuses() -> list[str]:
        return [waiting_room.read_ticket(clients.redis, t)["status"] for t in tickets]

    _drain_like_beat(clients, gateway, sale_id, options,
                     until=lambda: not {"queued", "reserving"} & set(statuses()))

    assert statuses() == ["reserved"] * 3
    assert clients.redis.xlen(sale_keys.dead_letter_key(sale_id)) == 0
    # Each ticket was delivered more often than max_deliveries, and got one intent at last.
    assert all(intents.attempts[t] == failures + 1 for t in tickets)
    intent_ids = {waiting_room.read_ticket(clients.redis, t)["reservation"]["payment_intent_id"]
                  for t in tickets}
    assert len(intent_ids) == 3
    assert clients.redis.hlen(sale_keys.intent_throttled_key(sale_id)) == 0  # cleaned up on ack


def test_a_short_throttle_is_ridden_out_within_one_delivery(clients):
    sale_id = open_sale(clients, stock=1)
    ticket = waiting_room.admit(clients.redis, sale_id, "user-0", 1).ticket["id"]
    gateway, intents = _flaky_stripe(clients, 3, stripe.APIConnectionError)
    options = reservations.DrainOptions(claim_idle_ms=60_000, idle_seconds=0.3)
    with ThreadPoolExecutor(2) as pool:
        report = reservations.drain_sale(clients.redis, gateway, sale_id, options, pool)
    assert waiting_room.read_ticket(clients.redis, ticket)["status"] == "reserved"
    assert intents.attempts[ticket] == 4 and report.reclaimed == 0


def test_a_genuine_stripe_failure_still_ends_dead_lettered(clients):
    sale_id = open_sale(clients, stock=1)
    ticket = waiting_room.admit(clients.redis, sale_id, "user-0", 1).ticket["id"]
    gateway, _intents = _flaky_stripe(clients, 10_000, stripe.APIError)
    options = reservations.DrainOptions(max_deliveries=2, claim_idle_ms=200, idle_seconds=0.3)
    _drain_like_beat(clients, gateway, sale_id, options, seconds=20, until=lambda: (
        waiting_room.read_ticket(clients.redis, ticket)["status"] not in ("queued", "reserving")))
    assert waiting_room.read_ticket(clients.redis, ticket)["status"] == "payment_failed"
    assert clients.redis.xlen(sale_keys.dead_letter_key(sale_id)) == 1


# --------------------------------------------------------------------------- Celery tasks


def test_a_webhook_task_outlasts_a_stripe_throttle_without_spending_its_retries(settings,
                                                                                 monkeypatch):
    for name in ("redis_url", "mongodb_uri", "stripe_secret_key", "stripe_webhook_secret",
                 "stripe_api_base", "jwt_secret_key"):
        monkeypatch.setenv(name.upper(), str(getattr(settings, name)))
    monkeypatch.setenv("APP_ENV", "test")
    from common.platform.errors import PaymentProviderBusy
    from worker import tasks

    throttled_calls = tasks.settings.task_max_retries + 3
    calls = Counter[str]()

    def apply_intent(_context: Any, intent_id: str) -> str:
        calls[intent_id] += 1
        if calls[intent_id] <= throttled_calls:
            raise PaymentProviderBusy()
        return "paid"

    dead: list[str] = []
    monkeypatch.setattr(tasks, "apply_intent", apply_intent)
    monkeypatch.setattr(tasks, "payment_context", lambda: None)
    monkeypatch.setattr(tasks, "mark_event_processed", lambda *_args: None)
    monkeypatch.setattr(tasks, "runtime_clients", lambda: SimpleNamespace(db=None))
    monkeypatch.setattr(tasks, "_dead_letter_task", lambda name, *_args: dead.append(name))

    args, kwargs, retries = ["evt_1", "pi_1", "payment_intent.succeeded"], {}, 0
    for _ in range(throttled_calls + 1):
        result = tasks.apply_payment_event.apply(args=args, kwargs=kwargs, retries=retries)
        if result.state != "RETRY":
            break
        retry = result.result.sig  # eagerly, a retry hands back the next attempt's signature
        kwargs, retries = retry.kwargs, retry.options["retries"]
    assert result.state == "SUCCESS" and result.result == "paid"
    assert dead == [] and calls["pi_1"] == throttled_calls + 1
