"""Token attacks on the endpoints where they would hurt most: joining a waiting room, reading
or paying a ticket, creating a sale. tests/test_auth.py covers the same attacks on
/api/auth/me and the refresh flow; here every one of them must also be refused by the shop's
own endpoints, each with a 401 and the contract's error body, and change nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt as pyjwt
import pytest

from common.flash_sale import sale_keys
from tests.accounts import bearer, register, register_admin
from tests.faults.flows import access_token
from tests.waiting_room_helpers import open_sale


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _hs256(claims: dict[str, Any], key: bytes) -> str:
    """Signed by hand: PyJWT refuses some of the keys an attacker would try (an empty one)."""
    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64(claims)}"
    digest = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _claims(user_id: str, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": user_id, "iat": now, "nbf": now, "exp": now + 600, "jti": uuid.uuid4().hex,
            "type": "access", "fresh": False, "role": "admin", "fam": "fam_" + uuid.uuid4().hex} | overrides


@pytest.fixture
def victim(fault_client, fault_clients) -> dict[str, Any]:
    """A shopper with a ticket in an open sale, and the sale itself."""
    session = register(fault_client)
    sale_id = open_sale(fault_clients, stock=5)
    joined = fault_client.post(f"/api/sales/{sale_id}/tickets", json={"quantity": 1},
                               headers=bearer(session["access_token"]))
    assert joined.status_code == 202
    return {"session": session, "user_id": session["user"]["id"], "sale_id": sale_id,
            "ticket_id": joined.get_json()["id"]}


def _attempts(victim: dict[str, Any], product_id: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    now = datetime.now(UTC)
    return [
        ("POST", f"/api/sales/{victim['sale_id']}/tickets", {"quantity": 1}),
        ("GET", f"/api/tickets/{victim['ticket_id']}", None),
        ("POST", f"/api/tickets/{victim['ticket_id']}/cancel", None),
        ("POST", f"/api/tickets/{victim['ticket_id']}/pay", {"card_token": "tok_visa"}),
        ("GET", f"/api/sales/{victim['sale_id']}/tickets/mine", None),
        ("POST", "/api/sales", {"product_id": product_id, "stock": 1, "price_cents": 1,
                                "starts_at": now.isoformat(),
                                "ends_at": (now + timedelta(hours=1)).isoformat()}),
    ]


def _assert_refused(client: Any, victim: dict[str, Any], product_id: str, token: str | None,
                    code: str | set[str], name: str, header: str | None = None) -> None:
    codes = {code} if isinstance(code, str) else code
    headers = {"Authorization": header if header is not None else f"Bearer {token}"}
    for method, path, body in _attempts(victim, product_id):
        response = client.open(path, method=method, json=body, headers=headers)
        assert response.status_code == 401, (name, method, path, response.status_code, response.get_json())
        error = response.get_json()["error"]
        assert error["code"] in codes and set(error) == {"code", "message", "details"}, (name, path, error)


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # the HS512 attempt
def test_forged_tokens_are_refused_by_the_shop_endpoints(fault_client, fault_clients, fault_settings, victim):
    admin = register_admin(fault_client, fault_clients)
    product_id = fault_clients.db.sales.find_one({"_id": victim["sale_id"]})["product_id"]
    key, user = fault_settings.jwt_secret(), victim["user_id"]
    header_rs256 = {"alg": "RS256", "typ": "JWT"}
    cases = {
        # Unsigned, claiming to be an admin.
        "alg none": (f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(user))}.", "invalid_token"),
        "alg None, capitalised": (f"{_b64({'alg': 'None'})}.{_b64(_claims(user))}.", "invalid_token"),
        "wrong key": (pyjwt.encode(_claims(user), "another-key-" + "z" * 32, "HS256"), "invalid_token"),
        "empty key": (_hs256(_claims(user), b""), "invalid_token"),
        # The right key but an algorithm the API does not accept.
        "HS512 with the right key": (pyjwt.encode(_claims(user), key, "HS512"), "invalid_token"),
        "RS256 header, HMAC body": (f"{_b64(header_rs256)}.{_b64(_claims(user))}."
                                    + pyjwt.encode(_claims(user), key, "HS256").rsplit(".", 1)[1],
                                    "invalid_token"),
        "kid pointing elsewhere": (pyjwt.encode(_claims(user), "attacker-key-" + "k" * 32, "HS256",
                                                headers={"kid": "../../../../dev/null"}), "invalid_token"),
        "expired": (pyjwt.encode(_claims(user, iat=1, nbf=1, exp=2), key, "HS256"), "token_expired"),
        "not yet valid": (pyjwt.encode(_claims(user, nbf=int(time.time()) + 3600), key, "HS256"),
                          "invalid_token"),
        "refresh token as access": (admin["refresh_token"], "invalid_token"),
        "signature cut off": (admin["access_token"].rsplit(".", 1)[0] + ".", "invalid_token"),
        "claims swapped under a valid signature": (
            ".".join([admin["access_token"].split(".")[0], _b64(_claims(user)),
                      admin["access_token"].split(".")[2]]), "invalid_token"),
        "no type": (pyjwt.encode({k: v for k, v in _claims(user).items() if k != "type"}, key, "HS256"),
                    "invalid_token"),
        "garbage": ("a.b.c", "invalid_token"),
    }
    for name, (token, code) in cases.items():
        _assert_refused(fault_client, victim, product_id, token, code, name)
    for name, header in {"no scheme": victim["session"]["access_token"], "empty bearer": "Bearer ",
                         "basic": "Basic YWRtaW46YWRtaW4=", "huge": "Bearer " + "a" * 6000}.items():
        _assert_refused(fault_client, victim, product_id, None, {"invalid_token", "authorization_required"},
                        name, header=header)
    # Nothing moved: one ticket, still queued, no sale created by anyone.
    assert fault_clients.redis.xlen(sale_keys.stream_key(victim["sale_id"])) == 1
    ticket = fault_client.get(f"/api/tickets/{victim['ticket_id']}",
                              headers=bearer(victim["session"]["access_token"])).get_json()
    assert ticket["status"] == "queued"
    assert fault_clients.db.sales.count_documents({}) == 1


def test_a_validly_signed_admin_claim_is_not_trusted(fault_client, fault_clients, fault_settings, victim):
    """Roles are read from the store: a customer's token that says `admin` (a role revoked since
    the token was issued, or a leaked signing key) creates no sale."""
    product_id = fault_clients.db.sales.find_one({"_id": victim["sale_id"]})["product_id"]
    token = access_token(fault_settings, victim["user_id"], role="admin")
    now = datetime.now(UTC)
    response = fault_client.post("/api/sales", headers=bearer(token), json={
        "product_id": product_id, "stock": 1, "price_cents": 1, "starts_at": now.isoformat(),
        "ends_at": (now + timedelta(hours=1)).isoformat()})
    assert response.status_code == 403 and response.get_json()["error"]["code"] == "forbidden"
    stats = fault_client.get(f"/api/admin/sales/{victim['sale_id']}/stats", headers=bearer(token))
    assert stats.status_code == 403


def test_revoked_and_reused_tokens_are_refused_by_the_shop_endpoints(fault_client, fault_clients, victim):
    product_id = fault_clients.db.sales.find_one({"_id": victim["sale_id"]})["product_id"]
    session = victim["session"]
    # Logout: that access token is dead everywhere, not only on /api/auth/me.
    assert fault_client.post("/api/auth/logout", headers=bearer(session["access_token"])).status_code == 204
    _assert_refused(fault_client, victim, product_id, session["access_token"], "token_revoked", "logged out")

    # Refresh reuse: a thief replays a spent refresh token; the whole login is revoked, so
    # the owner's newer access token stops working for the shop too.
    login = fault_client.post("/api/auth/login", json={"email": session["user"]["email"],
                                                       "password": "correct-horse-battery"}).get_json()
    rotated = fault_client.post("/api/auth/refresh", headers=bearer(login["refresh_token"])).get_json()
    replay = fault_client.post("/api/auth/refresh", headers=bearer(login["refresh_token"]))
    assert replay.status_code == 401 and replay.get_json()["error"]["code"] == "token_revoked"
    for token in (rotated["access_token"], login["access_token"]):
        _assert_refused(fault_client, victim, product_id, token, "token_revoked", "family revoked")
    again = fault_client.post("/api/auth/refresh", headers=bearer(rotated["refresh_token"]))
    assert again.status_code == 401
    # A fresh login is a new family: the shopper finds the same ticket again.
    fresh = fault_client.post("/api/auth/login", json={"email": session["user"]["email"],
                                                       "password": "correct-horse-battery"}).get_json()
    mine = fault_client.get(f"/api/sales/{victim['sale_id']}/tickets/mine",
                            headers=bearer(fresh["access_token"]))
    assert mine.status_code == 200 and mine.get_json()["id"] == victim["ticket_id"]
