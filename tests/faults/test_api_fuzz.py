"""Bad input through the public contract: the OpenAPI document fuzzed with schemathesis as two
different shoppers, object-level authorization (BOLA), and mass assignment.

- No input gives a 500, and every answer matches the published schema.
- Nobody reaches another shopper's ticket, order or cart: a foreign id is a 404, exactly as
  an id that does not exist, and the other shopper's things are unchanged afterwards.
- No request body can set a price, an owner or a status: an unknown field is a 422 naming it.
"""

from __future__ import annotations

import contextlib
import itertools
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from api.app import create_app
from common.development import embedded
from common.flash_sale import sale_keys
from common.platform.clients import Clients
from common.platform.settings import load_settings
from tests.accounts import bearer, create_product, register, register_admin
from tests.faults.flows import access_token, event_payload, pay_at_stripe, work_delivery
from tests.faults.invariants import assert_invariants
from tests.faults.services import RedisServer
from tests.waiting_room_helpers import card_token, drain

pytestmark = [pytest.mark.slow]


@dataclass
class Shopper:
    id: str
    email: str
    token: str
    ticket_id: str = ""
    order_id: str = ""  # a paid flash-sale order
    cart_order_id: str = ""  # a cart order waiting for payment
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.token)


@dataclass
class Shop:
    app: Any
    clients: Clients
    admin: str
    product_id: str
    sale_id: str
    alice: Shopper
    bob: Shopper

    @property
    def client(self) -> Any:
        return self.app.test_client()


@pytest.fixture(scope="module")
def shop(servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    """One shop for the module: two shoppers, each with a ticket, an order and a cart."""
    root: Path = tmp_path_factory.mktemp("fuzz")
    redis = RedisServer(root).start()
    settings_ = load_settings(
        app_env="test", redis_url=redis.url,
        mongodb_uri=servers.mongodb.url + f"fuzz_{uuid.uuid4().hex[:10]}",
        stripe_secret_key=embedded.EMBEDDED_STRIPE_SECRET_KEY,
        stripe_publishable_key=embedded.EMBEDDED_STRIPE_PUBLISHABLE_KEY,
        stripe_webhook_secret=servers.webhook_secret, stripe_api_base=servers.stripe.url,
        stripe_emulator=True, mongodb_serialize_transactions=True, jwt_secret_key="fuzz-secret-" + "y" * 32,
        var_dir=root / "var", log_format="text", login_rate_limit="100000 per minute",
        register_rate_limit="100000 per minute", register_total_rate_limit="100000 per second",
        admission_rate_limit="100000 per second")
    clients = Clients(settings_)
    app = create_app(settings_, clients)
    app.testing = True
    client = app.test_client()
    try:
        admin = register_admin(client, clients)["access_token"]
        product = create_product(client, admin, name="Sneaker", price_cents=1500, stock=50)
        now = datetime.now(UTC)
        sale = client.post("/api/sales", headers=bearer(admin), json={
            "product_id": product["id"], "stock": 10, "price_cents": 999, "per_user_limit": 1,
            "starts_at": (now - timedelta(minutes=1)).isoformat(),
            "ends_at": (now + timedelta(hours=1)).isoformat()}).get_json()
        people = []
        for name in ("alice", "bob"):
            session = register(client, name=name.title())
            user = Shopper(session["user"]["id"], session["user"]["email"], session["access_token"])
            joined = client.post(f"/api/sales/{sale['id']}/tickets", json={"quantity": 1},
                                 headers=user.headers)
            assert joined.status_code == 202, joined.get_json()
            user.ticket_id = joined.get_json()["id"]
            people.append(user)
        drain(clients, sale["id"])
        alice, bob = people
        # Alice has paid her ticket (an order); Bob holds his reservation.
        intent_id = clients.redis.hget(sale_keys.ticket_key(sale["id"], alice.ticket_id), "payment_intent_id")
        assert pay_at_stripe(clients, intent_id) == "succeeded"
        assert work_delivery(clients, event_payload("payment_intent.succeeded", intent_id)) == "paid"
        paid = client.get(f"/api/tickets/{alice.ticket_id}", headers=alice.headers).get_json()
        alice.order_id = paid["order_id"]
        for user in (alice, bob):
            assert client.put(f"/api/cart/items/{product['id']}", json={"quantity": 2},
                              headers=user.headers).status_code == 200
            placed = client.post("/api/cart/checkout", headers=user.headers).get_json()
            user.cart_order_id = placed["order_id"]
            assert client.put(f"/api/cart/items/{product['id']}", json={"quantity": 1},
                              headers=user.headers).status_code == 200
        yield Shop(app, clients, admin, product["id"], sale["id"], alice, bob)
    finally:
        with contextlib.suppress(Exception):
            clients.mongo.drop_database(clients.db.name)
        clients.close()
        redis.stop()


def _state_of(shop: Shop, user: Shopper) -> dict[str, Any]:
    """What `user` sees of their own things: it must not move when someone else tries."""
    client = shop.client
    ticket = client.get(f"/api/tickets/{user.ticket_id}", headers=user.headers).get_json()
    cart = client.get("/api/cart", headers=user.headers).get_json()
    listed = client.get("/api/orders", headers=user.headers).get_json()["items"]
    orders = {o["id"]: o["status"] for o in listed}
    return {"ticket": (ticket["status"], ticket["order_id"]), "cart": cart, "orders": orders}


# ------------------------------------------------------------------ object-level authorization


def test_nobody_reaches_another_shoppers_ticket_order_or_cart(shop: Shop) -> None:
    client, alice, bob = shop.client, shop.alice, shop.bob
    before = {u.id: _state_of(shop, u) for u in (alice, bob)}
    token = card_token(str(shop.clients.settings.stripe_api_base))
    for intruder, owner in ((bob, alice), (alice, bob)):
        attempts = [
            ("GET", f"/api/tickets/{owner.ticket_id}", None),
            ("POST", f"/api/tickets/{owner.ticket_id}/cancel", None),
            ("POST", f"/api/tickets/{owner.ticket_id}/pay", {"card_token": token}),
            ("GET", f"/api/orders/{owner.cart_order_id}", None),
            ("POST", f"/api/orders/{owner.cart_order_id}/pay", {"card_token": token}),
        ]
        if owner.order_id:
            attempts.append(("GET", f"/api/orders/{owner.order_id}", None))
        for method, path, body in attempts:
            response = client.open(path, method=method, json=body, headers=intruder.headers)
            assert response.status_code == 404, (intruder.id, method, path, response.get_json())
            assert response.get_json()["error"]["code"] == "not_found"
            # ...exactly what an id that does not exist gets: nothing tells them apart.
            missing = path.replace(owner.ticket_id, owner.ticket_id[:-4] + "0000").replace(
                owner.cart_order_id, "ord_" + "0" * 32).replace(owner.order_id or "-", "ord_" + "1" * 32)
            assert client.open(missing, method=method, json=body,
                               headers=intruder.headers).get_json() == response.get_json()
        # Their lists and their cart are their own.
        listed = client.get("/api/orders", headers=intruder.headers).get_json()["items"]
        assert all(o["user_id"] == intruder.id for o in listed)
        assert owner.cart_order_id not in {o["id"] for o in listed}
        mine = client.get(f"/api/sales/{shop.sale_id}/tickets/mine", headers=intruder.headers).get_json()
        assert mine["id"] == intruder.ticket_id
    after = {u.id: _state_of(shop, u) for u in (alice, bob)}
    assert after == before


def test_customers_cannot_use_admin_endpoints(shop: Shop) -> None:
    client, headers = shop.client, shop.bob.headers
    now = datetime.now(UTC)
    attempts = [
        ("POST", "/api/products", {"name": "Free", "description": "", "price_cents": 1, "currency": "USD",
                                   "stock": 1, "image_url": "https://example.com/x.png"}),
        ("PATCH", f"/api/products/{shop.product_id}", {"price_cents": 1}),
        ("DELETE", f"/api/products/{shop.product_id}", None),
        ("POST", "/api/sales", {"product_id": shop.product_id, "stock": 1, "price_cents": 1,
                                "starts_at": now.isoformat(),
                                "ends_at": (now + timedelta(hours=1)).isoformat()}),
        ("GET", f"/api/admin/sales/{shop.sale_id}/stats", None),
    ]
    for method, path, body in attempts:
        response = client.open(path, method=method, json=body, headers=headers)
        assert response.status_code == 403, (method, path, response.get_json())
        assert response.get_json()["error"]["code"] == "forbidden"
    product = client.get(f"/api/products/{shop.product_id}").get_json()
    assert product["price_cents"] == 1500


# ------------------------------------------------------------------ mass assignment


FORBIDDEN_FIELDS = {"status": "paid", "user_id": "usr_" + "0" * 32, "owner_id": "usr_" + "0" * 32,
                    "price_cents": 1, "amount_cents": 1, "unit_price_cents": 1, "role": "admin",
                    "order_id": "ord_x", "payment_intent_id": "pi_x", "sold": 0, "stock_total": 1}


def _operations_with_bodies(shop: Shop) -> Iterator[tuple[str, str, dict[str, Any]]]:
    spec = shop.client.get("/api/openapi.json").get_json()
    ids = {"product_id": shop.product_id, "sale_id": shop.sale_id, "ticket_id": shop.alice.ticket_id,
           "order_id": shop.alice.cart_order_id}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if method not in ("post", "put", "patch"):
                continue
            schema = (operation.get("requestBody") or {}).get("content", {}).get("application/json", {})
            if not schema:
                continue
            ref = schema["schema"]["$ref"].rsplit("/", 1)[1]
            yield method.upper(), path.format(**ids), spec["components"]["schemas"][ref]


def test_every_request_body_refuses_fields_that_set_price_owner_or_status(shop: Shop) -> None:
    client = shop.client
    checked = []
    for method, path, schema in _operations_with_bodies(shop):
        assert schema.get("additionalProperties") is False, f"{method} {path} accepts unknown fields"
        unknown = {k: v for k, v in FORBIDDEN_FIELDS.items() if k not in schema.get("properties", {})}
        # The catalogue and a sale's own settings are an admin's; joining a sale is a shopper's.
        for_admin = "product" in path or (path.startswith("/api/sales") and not path.endswith("/tickets"))
        headers = bearer(shop.admin if for_admin else shop.alice.token)
        response = client.open(path, method=method, json=unknown, headers=headers)
        assert response.status_code == 422, (method, path, response.status_code, response.get_json())
        fields = response.get_json()["error"]["details"]["fields"]
        assert set(unknown) <= set(fields), (method, path, fields)
        checked.append(f"{method} {path}")
    assert len(checked) >= 9, checked
    # A valid admission with a status or owner slipped in is refused as a whole.
    sneaky = client.post(f"/api/sales/{shop.sale_id}/tickets", headers=shop.bob.headers,
                         json={"quantity": 1, "status": "reserved", "user_id": shop.alice.id})
    assert sneaky.status_code == 422


def test_bodies_on_body_less_operations_change_nothing(shop: Shop) -> None:
    """Cancel and checkout take no body: whatever is sent, the outcome is the documented one."""
    client = shop.client
    carol = register(client, name="Carol")
    headers = bearer(carol["access_token"])
    joined = client.post(f"/api/sales/{shop.sale_id}/tickets", json={"quantity": 1},
                         headers=headers).get_json()
    cancelled = client.post(f"/api/tickets/{joined['id']}/cancel", headers=headers,
                            json={"status": "paid", "order_id": "ord_x"})
    assert cancelled.status_code == 200 and cancelled.get_json()["status"] == "cancelled"
    put = client.put(f"/api/cart/items/{shop.product_id}", json={"quantity": 1}, headers=headers)
    assert put.status_code == 200
    order = client.post("/api/cart/checkout", headers=headers,
                        json={"amount_cents": 1, "status": "paid", "user_id": shop.alice.id}).get_json()
    placed = client.get(f"/api/orders/{order['order_id']}", headers=headers).get_json()
    assert placed["status"] == "pending_payment" and placed["amount_cents"] == 1500
    assert placed["user_id"] == carol["user"]["id"]


# ------------------------------------------------------------------ fuzzing the OpenAPI document


# schemathesis.pytest.from_fixture cannot be used here: it relies on a pytest internal that
# pytest 9 removed (Function._nodeid). Each operation's strategy is driven by hypothesis
# directly instead, inside one test per generation mode.
FUZZ_CHECKS = [schemathesis.checks.not_a_server_error, schemathesis.checks.response_schema_conformance,
               schemathesis.checks.content_type_conformance, schemathesis.checks.status_code_conformance]


@pytest.mark.parametrize(("mode", "examples"), [(GenerationMode.POSITIVE, 15), (GenerationMode.NEGATIVE, 10)],
                         ids=["valid-input", "invalid-input"])
def test_fuzzed_requests_never_fail_and_never_cross_shoppers(shop: Shop, mode: GenerationMode,
                                                             examples: int) -> None:
    """Generated requests as Alice or Bob (in turn, with fresh tokens), path ids sometimes the
    other shopper's: no 500, answers match the schema, invalid input is refused with a 4xx,
    and a foreign id is never served."""
    api = schemathesis.openapi.from_wsgi("/api/openapi.json", shop.app)
    turns = itertools.count()
    failures: dict[str, str] = {}
    calls: Counter[str] = Counter()

    def exercise(case: Any) -> None:
        turn = next(turns)
        me, other = (shop.alice, shop.bob) if turn % 2 else (shop.bob, shop.alice)
        used_foreign = False
        if turn % 3 == 0:
            for name, value in {"ticket_id": other.ticket_id, "order_id": other.cart_order_id}.items():
                if name in (case.path_parameters or {}):
                    case.path_parameters[name] = value
                    used_foreign = True
        token = access_token(shop.clients.settings, me.id)
        response = case.call(headers={"Authorization": f"Bearer {token}"})
        calls[str(response.status_code)] += 1
        checks = FUZZ_CHECKS + ([schemathesis.checks.negative_data_rejection]
                                if mode is GenerationMode.NEGATIVE else [])
        case.validate_response(response, checks=checks)
        if used_foreign:
            assert response.status_code >= 400, (case.method, case.formatted_path, response.status_code)
        assert other.ticket_id not in response.text and other.cart_order_id not in response.text

    for result in api.get_all_operations():
        operation = result.ok()
        if operation.path == "/api/webhooks/stripe":
            continue  # unsigned deliveries: tests/faults/test_webhooks.py (400, nothing changes)
        run = settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
                       suppress_health_check=list(HealthCheck))(given(case=operation.as_strategy(mode))(exercise))
        try:
            run()
        except Unsatisfiable:
            continue  # nothing about this operation's input can be invalid (negative mode)
        except (Exception, BaseExceptionGroup) as exc:  # every operation runs; failures are listed together
            failures[operation.label] = f"{type(exc).__name__}: {str(exc)[:1500]}"
    print(f"\n{mode.value}: {sum(calls.values())} requests, answers {dict(sorted(calls.items()))}")
    assert not failures, "\n\n".join(f"{label}\n{error}" for label, error in failures.items())


def test_after_fuzzing_everybody_still_has_what_they_had(shop: Shop) -> None:
    alice = _state_of(shop, shop.alice)
    assert alice["ticket"] == ("paid", shop.alice.order_id)
    assert alice["orders"][shop.alice.order_id] == "paid"
    bob = _state_of(shop, shop.bob)
    assert bob["ticket"] == ("reserved", None)
    assert bob["orders"][shop.bob.cart_order_id] == "pending_payment"
    assert_invariants(shop.clients.redis, shop.clients.db, shop.sale_id)
