"""Draw sales (API v3, "Draw sales: the card held at entry, only winners charged"), against the
real Redis, MongoDB and Stripe emulator: the mode and its lobby limit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.accounts import bearer, create_product, register_admin


def test_mode_draw_needs_a_lobby_of_at_most_six_days(client, clients):
    admin = register_admin(client, clients)
    product = create_product(client, admin["access_token"], stock=20)
    now = datetime.now(UTC)

    def create(**fields: Any):
        body = {"product_id": product["id"], "stock": 2, "price_cents": 500,
                "starts_at": (now + timedelta(days=1)).isoformat(),
                "ends_at": (now + timedelta(days=2)).isoformat()} | fields
        return client.post("/api/sales", headers=bearer(admin["access_token"]), json=body)

    no_lobby = create(mode="draw", lobby_opens_at=None)
    assert no_lobby.status_code == 422, no_lobby.get_json()
    assert "lobby_opens_at" in no_lobby.get_json()["error"]["details"]["fields"]
    too_long = create(mode="draw", starts_at=(now + timedelta(days=7)).isoformat(),
                      ends_at=(now + timedelta(days=8)).isoformat())
    assert too_long.status_code == 422, too_long.get_json()
    assert create(mode="raffle").status_code == 422

    made = create(mode="draw", starts_at=(now + timedelta(days=5, hours=23)).isoformat(),
                  ends_at=(now + timedelta(days=7)).isoformat())
    assert made.status_code == 201, made.get_json()
    assert made.get_json()["mode"] == "draw"
    assert client.get(f"/api/sales/{made.get_json()['id']}").get_json()["mode"] == "draw"
    queue = create()
    assert queue.status_code == 201 and queue.get_json()["mode"] == "queue"
    # A refused sale takes no units: 2 + 2 taken of 20.
    assert client.get(f"/api/products/{product['id']}").get_json()["stock"] == 16
