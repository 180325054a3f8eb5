"""Cart, checkout into a Stripe PaymentIntent (on the emulator), orders and paying them, and
that nobody sees anyone else's."""

from __future__ import annotations

import re

import pytest

from api.app import create_app
from common.development.ports import free_port
from common.platform.clients import Clients
from common.shop import carts, orders
from tests.accounts import bearer, create_product, register, register_admin


@pytest.fixture
def admin(client, clients) -> str:
    return register_admin(client, clients)["access_token"]


@pytest.fixture
def shopper(client) -> dict:
    session = register(client)
    return {"id": session["user"]["id"], "email": session["user"]["email"],
            "headers": bearer(session["access_token"])}


def put(client, shopper, product_id: str, quantity):
    return client.put(f"/api/cart/items/{product_id}", json={"quantity": quantity},
                      headers=shopper["headers"])


def card_token(clients: Clients, number: str = "4242424242424242") -> str:
    token = clients.stripe.v1.tokens.create(params={"card": {
        "number": number, "exp_month": "12", "exp_year": "2040", "cvc": "123"}})
    return str(token["id"])


# --------------------------------------------------------------------------- cart


def test_cart_starts_empty_and_follows_puts_and_deletes(client, admin, shopper):
    lamp = create_product(client, admin, name="Lamp", price_cents=1999, stock=5)
    desk = create_product(client, admin, name="Desk", price_cents=10000, stock=2)

    empty = client.get("/api/cart", headers=shopper["headers"])
    assert empty.status_code == 200
    assert empty.get_json() == {"items": [], "total_cents": 0, "currency": None}

    assert put(client, shopper, lamp["id"], 2).status_code == 200
    cart = put(client, shopper, desk["id"], 1).get_json()
    assert [(i["product_id"], i["quantity"], i["unit_price_cents"], i["line_total_cents"])
            for i in cart["items"]] == [(lamp["id"], 2, 1999, 3998), (desk["id"], 1, 10000, 10000)]
    assert cart["total_cents"] == 13998 and cart["currency"] == "USD"

    cart = put(client, shopper, lamp["id"], 3).get_json()  # sets, does not add
    assert cart["items"][0]["quantity"] == 3 and cart["total_cents"] == 3 * 1999 + 10000

    removed = client.delete(f"/api/cart/items/{lamp['id']}", headers=shopper["headers"])
    assert removed.status_code == 200
    assert [i["product_id"] for i in removed.get_json()["items"]] == [desk["id"]]
    again = client.delete(f"/api/cart/items/{lamp['id']}", headers=shopper["headers"])
    assert again.status_code == 200  # idempotent
    assert client.get("/api/cart", headers=shopper["headers"]).get_json()["total_cents"] == 10000


def test_cart_refuses_bad_items(client, admin, shopper):
    lamp = create_product(client, admin, stock=2)
    euro = create_product(client, admin, currency="EUR")
    assert put(client, shopper, "prd_missing", 1).status_code == 404

    too_many = put(client, shopper, lamp["id"], 3)
    assert too_many.status_code == 409
    assert too_many.get_json()["error"]["code"] == "insufficient_stock"

    for quantity in (0, -1, "2", 1.5, None):
        response = put(client, shopper, lamp["id"], quantity)
        assert response.status_code == 422, quantity
        assert "quantity" in response.get_json()["error"]["details"]["fields"]
    extra = client.put(f"/api/cart/items/{lamp['id']}", json={"quantity": 1, "price_cents": 1},
                       headers=shopper["headers"])
    assert extra.status_code == 422

    assert put(client, shopper, lamp["id"], 1).status_code == 200
    mixed = put(client, shopper, euro["id"], 1)
    assert mixed.status_code == 422
    assert mixed.get_json()["error"]["code"] == "mixed_currencies"

    assert client.get("/api/cart").status_code == 401


def test_carts_are_per_user(client, admin, shopper):
    lamp = create_product(client, admin)
    put(client, shopper, lamp["id"], 1)
    other = bearer(register(client)["access_token"])
    assert client.get("/api/cart", headers=other).get_json()["items"] == []


def test_a_deleted_product_drops_out_of_the_cart(client, admin, shopper):
    lamp = create_product(client, admin)
    desk = create_product(client, admin, name="Desk")
    put(client, shopper, lamp["id"], 1)
    put(client, shopper, desk["id"], 1)
    client.delete(f"/api/products/{lamp['id']}", headers=bearer(admin))
    cart = client.get("/api/cart", headers=shopper["headers"]).get_json()
    assert [i["product_id"] for i in cart["items"]] == [desk["id"]]


# --------------------------------------------------------------------------- checkout


def test_checkout_creates_a_pending_order_and_a_payment_intent(client, clients, admin, shopper):
    lamp = create_product(client, admin, price_cents=1999, stock=5)
    desk = create_product(client, admin, name="Desk", price_cents=10000, stock=2)
    put(client, shopper, lamp["id"], 2)
    put(client, shopper, desk["id"], 1)

    response = client.post("/api/cart/checkout", headers=shopper["headers"])
    assert response.status_code == 201
    placed = response.get_json()
    assert set(placed) == {"order_id", "payment_intent_id", "client_secret", "amount_cents",
                           "currency"}
    assert re.fullmatch(r"ord_[0-9a-f]{32}", placed["order_id"])
    assert placed["amount_cents"] == 2 * 1999 + 10000 and placed["currency"] == "USD"
    assert placed["client_secret"].startswith(placed["payment_intent_id"])

    intent = clients.stripe.v1.payment_intents.retrieve(placed["payment_intent_id"])
    assert intent["amount"] == 13998 and intent["currency"] == "usd"
    assert intent["metadata"].to_dict() == {"kind": "cart", "order_id": placed["order_id"],
                                        "user_id": shopper["id"]}

    stored = clients.db.orders.find_one({"_id": placed["order_id"]})
    assert stored["kind"] == "cart" and stored["status"] == "pending_payment"
    assert stored["payment_intent_id"] == placed["payment_intent_id"]
    assert stored["sale_id"] is None and stored["ticket_id"] is None
    assert stored["user_id"] == shopper["id"]
    assert client.get("/api/cart", headers=shopper["headers"]).get_json()["items"] == []
    # Checkout only checks stock; paying takes it.
    assert client.get(f"/api/products/{lamp['id']}").get_json()["stock"] == 5

    order = client.get(f"/api/orders/{placed['order_id']}", headers=shopper["headers"]).get_json()
    assert order == {
        "id": placed["order_id"], "user_id": shopper["id"],
        "items": [{"product_id": lamp["id"], "quantity": 2, "unit_price_cents": 1999},
                  {"product_id": desk["id"], "quantity": 1, "unit_price_cents": 10000}],
        "amount_cents": 13998, "currency": "USD", "status": "pending_payment",
        "payment_intent_id": placed["payment_intent_id"], "sale_id": None, "ticket_id": None,
        "created_at": order["created_at"],
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", order["created_at"])

    again = client.post("/api/cart/checkout", headers=shopper["headers"])
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "empty_cart"


def test_checkout_refuses_what_it_cannot_sell(client, clients, admin, shopper):
    lamp = create_product(client, admin, stock=5)
    desk = create_product(client, admin, name="Desk", stock=5)
    empty = client.post("/api/cart/checkout", headers=shopper["headers"])
    assert empty.status_code == 409 and empty.get_json()["error"]["code"] == "empty_cart"

    put(client, shopper, lamp["id"], 3)
    put(client, shopper, desk["id"], 1)
    client.patch(f"/api/products/{lamp['id']}", json={"stock": 2}, headers=bearer(admin))
    short = client.post("/api/cart/checkout", headers=shopper["headers"])
    assert short.status_code == 409
    assert short.get_json()["error"]["code"] == "insufficient_stock"
    assert short.get_json()["error"]["details"]["product_id"] == lamp["id"]

    client.patch(f"/api/products/{lamp['id']}", json={"stock": 5, "currency": "EUR"},
                 headers=bearer(admin))
    mixed = client.post("/api/cart/checkout", headers=shopper["headers"])
    assert mixed.status_code == 422
    assert mixed.get_json()["error"]["code"] == "mixed_currencies"

    # Nothing was ordered and the cart is as it was.
    assert clients.db.orders.count_documents({"user_id": shopper["id"]}) == 0
    assert len(client.get("/api/cart", headers=shopper["headers"]).get_json()["items"]) == 2


def test_checkout_with_stripe_down_is_503_and_keeps_the_cart(settings, clients, make_clients):
    down = settings.model_copy(update={"stripe_api_base": f"http://127.0.0.1:{free_port()}",
                                       "stripe_timeout_seconds": 1.0})
    client = create_app(down, make_clients(down)).test_client()
    admin = register_admin(client, clients)["access_token"]
    lamp = create_product(client, admin)
    session = register(client)
    headers = bearer(session["access_token"])
    client.put(f"/api/cart/items/{lamp['id']}", json={"quantity": 2}, headers=headers)

    response = client.post("/api/cart/checkout", headers=headers)
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "payment_provider_unavailable"
    cart = client.get("/api/cart", headers=headers).get_json()
    assert [(i["product_id"], i["quantity"]) for i in cart["items"]] == [(lamp["id"], 2)]
    statuses = [o["status"] for o in clients.db.orders.find({"user_id": session["user"]["id"]})]
    assert statuses == ["cancelled"]


def test_a_cart_changed_after_pricing_is_not_taken(clients):
    clients.db.products.insert_one({"_id": "prd_x", "name": "X", "price_cents": 5,
                                    "currency": "USD", "stock": 9, "created_at": None})
    carts.set_quantity(clients.db, "usr_a", "prd_x", 1)
    priced = carts.priced_cart(clients.db, "usr_a")
    carts.set_quantity(clients.db, "usr_a", "prd_x", 2)
    assert carts.take(clients.db, "usr_a", priced) is False
    assert carts.take(clients.db, "usr_a", carts.priced_cart(clients.db, "usr_a")) is True
    assert carts.priced_cart(clients.db, "usr_a").lines == []


# --------------------------------------------------------------------------- orders


def checkout(client, admin, shopper, price_cents: int = 1999) -> dict:
    product = create_product(client, admin, price_cents=price_cents)
    put(client, shopper, product["id"], 1)
    response = client.post("/api/cart/checkout", headers=shopper["headers"])
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_orders_list_is_the_callers_own_newest_first(client, admin, shopper):
    placed = [checkout(client, admin, shopper, price_cents=100 * (n + 1))["order_id"]
              for n in range(3)]
    listed = client.get("/api/orders", headers=shopper["headers"]).get_json()
    assert [o["id"] for o in listed["items"]] == list(reversed(placed))
    assert listed["next_cursor"] is None

    first = client.get("/api/orders", query_string={"limit": 2},
                       headers=shopper["headers"]).get_json()
    rest = client.get("/api/orders", query_string={"limit": 2, "cursor": first["next_cursor"]},
                      headers=shopper["headers"]).get_json()
    assert [o["id"] for o in first["items"] + rest["items"]] == list(reversed(placed))
    assert rest["next_cursor"] is None

    other = bearer(register(client)["access_token"])
    assert client.get("/api/orders", headers=other).get_json()["items"] == []
    assert client.get("/api/orders").status_code == 401


def test_another_users_order_is_404(client, clients, admin, shopper):
    placed = checkout(client, admin, shopper)
    other = bearer(register(client)["access_token"])
    seen = client.get(f"/api/orders/{placed['order_id']}", headers=other)
    assert seen.status_code == 404 and seen.get_json()["error"]["code"] == "not_found"
    paid = client.post(f"/api/orders/{placed['order_id']}/pay",
                       json={"card_token": card_token(clients)}, headers=other)
    assert paid.status_code == 404
    assert client.get("/api/orders/ord_missing", headers=shopper["headers"]).status_code == 404


def test_paying_a_cart_order_confirms_its_payment_intent(client, clients, admin, shopper):
    placed = checkout(client, admin, shopper)
    response = client.post(f"/api/orders/{placed['order_id']}/pay",
                           json={"card_token": card_token(clients)}, headers=shopper["headers"])
    assert response.status_code == 200, response.get_json()
    attempt = response.get_json()
    assert attempt == {"status": "succeeded", "requires_action": False,
                       "payment_intent_id": placed["payment_intent_id"],
                       "client_secret": placed["client_secret"]}
    intent = clients.stripe.v1.payment_intents.retrieve(placed["payment_intent_id"])
    assert intent["status"] == "succeeded"
    # The webhook, not this call, marks the order paid.
    stored = clients.db.orders.find_one({"_id": placed["order_id"]})
    assert stored["status"] == "pending_payment"


def test_only_pending_cart_orders_can_be_paid(client, clients, admin, shopper):
    placed = checkout(client, admin, shopper)
    bad_token = client.post(f"/api/orders/{placed['order_id']}/pay", json={"card_token": "card_1"},
                            headers=shopper["headers"])
    assert bad_token.status_code == 422
    extra = client.post(f"/api/orders/{placed['order_id']}/pay",
                        json={"card_token": "tok_x", "amount_cents": 1}, headers=shopper["headers"])
    assert extra.status_code == 422

    clients.db.orders.update_one({"_id": placed["order_id"]}, {"$set": {"status": "paid"}})
    response = client.post(f"/api/orders/{placed['order_id']}/pay",
                           json={"card_token": card_token(clients)}, headers=shopper["headers"])
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "order_not_payable"


def test_order_to_public_reads_times_however_the_store_returns_them(clients):
    doc = {"_id": "ord_1", "user_id": "usr_1", "kind": "sale",
           "items": [{"product_id": "prd_1", "quantity": 1, "unit_price_cents": 500}],
           "amount_cents": 500, "currency": "USD", "status": "paid", "payment_intent_id": "pi_1",
           "sale_id": "sal_1", "ticket_id": "tkt_1", "created_at": "2030-01-02 03:04:05.678000",
           "updated_at": "2030-01-02 03:04:05.678000"}
    public = orders.order_to_public(doc)
    assert public["created_at"] == "2030-01-02T03:04:05.678000Z"
    assert set(public) == {"id", "user_id", "items", "amount_cents", "currency", "status",
                           "payment_intent_id", "sale_id", "ticket_id", "created_at"}
    assert public["sale_id"] == "sal_1" and public["ticket_id"] == "tkt_1"


def test_openapi_documents_cart_and_orders(client):
    paths = client.get("/api/openapi.json").get_json()["paths"]
    for path, method in (("/api/cart", "get"), ("/api/cart/items/{product_id}", "put"),
                         ("/api/cart/items/{product_id}", "delete"), ("/api/cart/checkout", "post"),
                         ("/api/orders", "get"), ("/api/orders/{order_id}", "get"),
                         ("/api/orders/{order_id}/pay", "post")):
        assert paths[path][method]["security"] == [{"bearerAuth": []}], (path, method)
