"""Signing up, signing in and making admins through the public API, for the shop's tests."""

from __future__ import annotations

import uuid
from typing import Any

from common.accounts import users
from common.platform.clients import Clients

PASSWORD = "correct-horse-battery"


def unique_email(prefix: str = "shopper") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"


def register(client: Any, email: str | None = None, password: str = PASSWORD,
             name: str = "Ada Shopper", verified: bool = True) -> dict[str, Any]:
    """A new account through the API. `verified`: its email is marked verified in MongoDB (for
    tests that are not about verification; tests/test_email_verification.py uses the mailed
    link) and the session's tokens are refreshed, so they carry it as a sign-in's would."""
    response = client.post("/api/auth/register",
                           json={"email": email or unique_email(), "password": password,
                                 "name": name})
    assert response.status_code == 201, response.get_json()
    session = response.get_json()
    if verified:
        users.mark_email_verified(client.application.extensions["flashsale.clients"].db,
                                  session["user"]["id"])
        refreshed = client.post("/api/auth/refresh", headers=bearer(session["refresh_token"]))
        assert refreshed.status_code == 200, refreshed.get_json()
        session = {**session, **refreshed.get_json(),
                   "user": {**session["user"], "email_verified": True}}
    return session


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def register_admin(client: Any, clients: Clients) -> dict[str, Any]:
    """A registered account promoted to admin; its access token works as an admin's at once."""
    session = register(client, email=unique_email("admin"))
    users.ensure_admin(clients.db, email=session["user"]["email"], password=None,
                       promote_existing=True)
    return session


def create_product(client: Any, admin_token: str, **fields: Any) -> dict[str, Any]:
    body = {"name": "Lamp", "description": "A lamp.", "price_cents": 1999, "currency": "usd",
            "stock": 10, "image_url": "https://example.com/lamp.png"} | fields
    response = client.post("/api/products", json=body, headers=bearer(admin_token))
    assert response.status_code == 201, response.get_json()
    return response.get_json()
