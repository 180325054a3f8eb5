"""The catalogue: public reads, admin-only writes, validation, cursor pagination."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from common.shop import products
from tests.accounts import bearer, create_product, register, register_admin


@pytest.fixture
def admin(client, clients) -> str:
    return register_admin(client, clients)["access_token"]


def test_admin_creates_a_product_anyone_reads(client, admin):
    created = create_product(client, admin, name="Desk lamp", currency="eur", price_cents=4500,
                             stock=3)
    assert created["id"].startswith("prd_")
    assert created == {"id": created["id"], "name": "Desk lamp", "description": "A lamp.",
                       "price_cents": 4500, "currency": "EUR", "stock": 3,
                       "image_url": "https://example.com/lamp.png"}

    one = client.get(f"/api/products/{created['id']}")  # no token: public
    assert one.status_code == 200 and one.get_json() == created
    listed = client.get("/api/products").get_json()
    assert listed["items"] == [created] and listed["next_cursor"] is None


def test_only_admins_write_the_catalogue(client, clients, admin):
    product = create_product(client, admin)
    customer = bearer(register(client)["access_token"])
    attempts = [
        client.post("/api/products", json={"name": "X", "price_cents": 1, "currency": "USD",
                                           "stock": 1}, headers=customer),
        client.patch(f"/api/products/{product['id']}", json={"price_cents": 1}, headers=customer),
        client.delete(f"/api/products/{product['id']}", headers=customer),
    ]
    for response in attempts:
        assert response.status_code == 403
        assert response.get_json()["error"]["code"] == "forbidden"
    anonymous = client.post("/api/products", json={"name": "X"})
    assert anonymous.status_code == 401
    assert anonymous.get_json()["error"]["code"] == "authorization_required"
    assert clients.db.products.find_one({"_id": product["id"]})["price_cents"] == 1999


def test_a_demoted_admin_loses_write_access_at_once(client, clients):
    session = register_admin(client, clients)
    clients.db.users.update_one({"_id": session["user"]["id"]}, {"$set": {"role": "customer"}})
    response = client.post("/api/products", json={"name": "X", "price_cents": 1, "currency": "USD",
                                                  "stock": 1},
                           headers=bearer(session["access_token"]))
    assert response.status_code == 403


@pytest.mark.parametrize(("change", "field"), [
    ({"price_cents": 0}, "price_cents"),
    ({"price_cents": "10"}, "price_cents"),
    ({"price_cents": 10.5}, "price_cents"),
    ({"currency": "US"}, "currency"),
    ({"currency": "U$D"}, "currency"),
    ({"stock": -1}, "stock"),
    ({"name": ""}, "name"),
    ({"image_url": "javascript:alert(1)"}, "image_url"),
    ({"id": "prd_mine"}, "id"),
    ({"created_at": "2020-01-01T00:00:00Z"}, "created_at"),
])
def test_product_bodies_are_validated(client, admin, change, field):
    body = {"name": "Lamp", "price_cents": 100, "currency": "USD", "stock": 1} | change
    response = client.post("/api/products", json=body, headers=bearer(admin))
    assert response.status_code == 422
    assert field in response.get_json()["error"]["details"]["fields"]


def test_patch_changes_only_what_is_sent(client, admin):
    product = create_product(client, admin)
    patched = client.patch(f"/api/products/{product['id']}",
                           json={"price_cents": 2500, "currency": "gbp"}, headers=bearer(admin))
    assert patched.status_code == 200
    assert patched.get_json() == product | {"price_cents": 2500, "currency": "GBP"}
    assert client.get(f"/api/products/{product['id']}").get_json()["price_cents"] == 2500

    empty = client.patch(f"/api/products/{product['id']}", json={}, headers=bearer(admin))
    assert empty.status_code == 422
    sneaky = client.patch(f"/api/products/{product['id']}", json={"stock": 5, "owner": "me"},
                          headers=bearer(admin))
    assert sneaky.status_code == 422
    missing = client.patch("/api/products/prd_nope", json={"stock": 5}, headers=bearer(admin))
    assert missing.status_code == 404


def test_delete_removes_the_product(client, admin):
    product = create_product(client, admin)
    deleted = client.delete(f"/api/products/{product['id']}", headers=bearer(admin))
    assert deleted.status_code == 204
    gone = client.get(f"/api/products/{product['id']}")
    assert gone.status_code == 404 and gone.get_json()["error"]["code"] == "not_found"
    again = client.delete(f"/api/products/{product['id']}", headers=bearer(admin))
    assert again.status_code == 404


def test_listing_pages_newest_first_with_a_cursor(client, admin):
    made = [create_product(client, admin, name=f"P{n}")["id"] for n in range(5)]
    seen, cursor, pages = [], None, 0
    while True:
        query = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get("/api/products", query_string=query).get_json()
        assert len(page["items"]) <= 2
        seen += [item["id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == list(reversed(made))

    for bad in ({"limit": 0}, {"limit": 101}, {"limit": "many"}, {"cursor": "not-a-cursor"}):
        response = client.get("/api/products", query_string=bad)
        assert response.status_code == 422, bad


def test_pages_neither_skip_nor_repeat_products_made_in_the_same_millisecond(clients):
    same_moment = datetime(2030, 1, 1, tzinfo=UTC)
    ids = [f"prd_{n:032x}" for n in range(7)]
    clients.db.products.insert_many([
        {"_id": product_id, "name": product_id, "description": "", "price_cents": 1,
         "currency": "USD", "stock": 1, "image_url": None, "created_at": same_moment,
         "updated_at": same_moment} for product_id in ids])
    seen, cursor = [], None
    while True:
        page = products.list_products(clients.db, limit=3, cursor=cursor)
        seen += [doc["_id"] for doc in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == sorted(ids, reverse=True)


def test_openapi_documents_the_catalogue(client):
    paths = client.get("/api/openapi.json").get_json()["paths"]
    assert "security" not in paths["/api/products"]["get"]
    assert paths["/api/products"]["post"]["security"] == [{"bearerAuth": []}]
    assert paths["/api/products/{product_id}"]["patch"]["security"] == [{"bearerAuth": []}]
    assert "/api/products/{product_id}" in paths
