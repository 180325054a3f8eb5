"""The admission fast path answers exactly as the Flask route does, and only the ordinary case.

Each case runs twice against the same Redis and MongoDB: through the app as served (fast path
in front) and through the Flask app alone, each with its own shopper, and the answers must
match in status, error code and the headers a client relies on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from werkzeug.test import Client

from api.admission_fast_path import AdmissionFastPath
from common.accounts import revocations, tokens
from common.flash_sale import sale_keys, sales
from common.flash_sale.waiting_room import AdmissionRate
from loadtests.shop import mint_access_token
from tests.waiting_room_helpers import open_sale


@pytest.fixture
def paths(app, settings):
    """(served, flask_only, calls): the served app, the app behind the fast path, and how many
    requests the fast path handed on to it."""
    fast: AdmissionFastPath = app.wsgi_app
    calls = {"n": 0}
    inner = fast.app

    def counting(environ, start_response):
        calls["n"] += 1
        return inner(environ, start_response)

    fast.app = counting
    return Client(fast), Client(inner), calls


def _token(settings, user_id: str, **overrides: Any) -> str:
    return mint_access_token(settings.jwt_secret(), user_id, **overrides)


def _answer(client: Client, path: str, headers: dict[str, str], body: Any):
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    response = client.post(path, headers={"Content-Type": "application/json", **headers}, data=data)
    payload = response.get_json(silent=True) or {}
    code = payload.get("error", {}).get("code") if "error" in payload else payload.get("status")
    kept = {name: response.headers.get(name) for name in ("Content-Type", "Retry-After",
                                                           "X-Content-Type-Options", "WWW-Authenticate")}
    # The same fields (values differ: another ticket), and an error body alike.
    shape = sorted(payload) if "error" not in payload else payload["error"].get("details")
    return response.status_code, code, kept, response.headers.get("X-Request-ID"), shape


def test_an_ordinary_admission_never_reaches_flask_and_matches_its_answer(paths, settings, clients):
    served, flask_only, calls = paths
    sale_id = open_sale(clients, stock=10)
    path = f"/api/sales/{sale_id}/tickets"
    for user, body in (("usr_fast_q", {"quantity": 1}), ("usr_fast_empty", {})):
        fast = _answer(served, path, {"Authorization": "Bearer " + _token(settings, user),
                                      "X-Request-ID": "req-fast-1"}, body)
        slow = _answer(flask_only, path, {"Authorization": "Bearer " + _token(settings, user + "_f"),
                                          "X-Request-ID": "req-fast-1"}, body)
        assert fast == slow and fast[0] == 202 and fast[1] == "queued" and fast[3] == "req-fast-1"
    # The same shopper again: the same ticket, 200, still without Flask.
    again = _answer(served, path, {"Authorization": "Bearer " + _token(settings, "usr_fast_q")},
                    {"quantity": 1})
    assert again[0] == 200
    assert calls["n"] == 0
    # `true` is not an integer to the fast path; the schema's answer (Flask's) is the one given.
    as_bool = _answer(served, path, {"Authorization": "Bearer " + _token(settings, "usr_fast_bool")},
                      {"quantity": True})
    as_bool_flask = _answer(flask_only, path,
                            {"Authorization": "Bearer " + _token(settings, "usr_fast_bool_f")},
                            {"quantity": True})
    assert as_bool[:3] == as_bool_flask[:3] and calls["n"] == 1
    ticket = served.post(path, headers={"Authorization": "Bearer " + _token(settings, "usr_fast_new")},
                         json={}).get_json()
    assert clients.redis.hget(sale_keys.live_tickets_key(sale_id), "usr_fast_new") == ticket["id"]
    assert ticket["position"] == sales.read_counters(clients.redis, sale_id).issued
    assert calls["n"] == 1


def _expired(settings, user: str) -> str:
    return _token(settings, user, ttl=-5)


def _refresh(settings, user: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": user, "iat": now, "nbf": now, "exp": now + 600, "jti": "j" + user,
                       "type": "refresh", "fam": "fam_x"}, settings.jwt_secret(), algorithm="HS256")


CASES: dict[str, tuple[Callable[..., Any], Any, bool]] = {
    # name: (token maker or None, body, handled by the fast path)
    "no token": (lambda s, u: None, {"quantity": 1}, False),
    "expired token": (_expired, {"quantity": 1}, False),
    "forged token": (lambda s, u: mint_access_token("another-key-" + "y" * 32, u), {"quantity": 1}, False),
    "refresh token": (_refresh, {"quantity": 1}, False),
    "quantity zero": (_token, {"quantity": 0}, False),
    "quantity as text": (_token, {"quantity": "1"}, False),
    "unknown field": (_token, {"quantity": 1, "price": 1}, False),
    "malformed json": (_token, b'{"quantity": ', False),
    "a list": (_token, [1], False),
    "over the per-user limit": (_token, {"quantity": 3}, True),
    "quantity as a float": (_token, {"quantity": 1.5}, False),
    "quantity over the maximum": (_token, {"quantity": 101}, False),
    "quantity null": (_token, {"quantity": None}, False),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_other_request_gets_the_flask_answer(paths, settings, clients, name):
    served, flask_only, calls = paths
    sale_id = open_sale(clients, stock=10)
    make_token, body, handled_fast = CASES[name]
    answers = []
    for client, user in ((served, f"usr_a_{len(name)}"), (flask_only, f"usr_b_{len(name)}")):
        token = make_token(settings, user)
        headers = {"Authorization": "Bearer " + token} if token else {}
        answers.append(_answer(client, f"/api/sales/{sale_id}/tickets", headers, body)[:3])
    assert answers[0] == answers[1]
    assert answers[0][0] in (400, 401, 409, 422)
    assert calls["n"] == (0 if handled_fast else 1)


def test_domain_refusals_and_revocation_match_flask(paths, settings, clients):
    served, flask_only, calls = paths
    scheduled = open_sale(clients, stock=10, starts_in=3600)
    for path, expected in ((f"/api/sales/{scheduled}/tickets", 409),
                           ("/api/sales/sal_doesnotexist00/tickets", 404)):
        fast = _answer(served, path, {"Authorization": "Bearer " + _token(settings, "usr_d1")}, {})
        slow = _answer(flask_only, path, {"Authorization": "Bearer " + _token(settings, "usr_d2")}, {})
        assert fast[:3] == slow[:3] and fast[0] == expected
    assert calls["n"] == 0

    sale_id = open_sale(clients, stock=10)
    token = _token(settings, "usr_revoked")
    claims = jwt.decode(token, settings.jwt_secret(), algorithms=["HS256"])
    tokens.revoke_access_token(clients.redis, claims["jti"], claims["exp"])  # as another process would
    deadline = time.monotonic() + 5
    while not revocations.denylist_copy(clients).is_denied([revocations.access_member(claims["jti"])]):
        assert time.monotonic() < deadline, "the revocation never reached this process"
        time.sleep(0.02)
    answer = _answer(served, f"/api/sales/{sale_id}/tickets", {"Authorization": "Bearer " + token}, {})
    assert answer[:2] == (401, "token_revoked") and calls["n"] == 1
    assert clients.redis.hget(sale_keys.live_tickets_key(sale_id), "usr_revoked") is None


def test_a_rate_limited_shopper_gets_429_with_retry_after(app, settings, clients):
    fast: AdmissionFastPath = app.wsgi_app
    fast.rate = AdmissionRate.parse("1 per minute")
    served = Client(fast)
    first, second = open_sale(clients, stock=10), open_sale(clients, stock=10)
    headers = {"Authorization": "Bearer " + _token(settings, "usr_hammer")}
    assert _answer(served, f"/api/sales/{first}/tickets", headers, {})[0] == 202
    status, code, kept, _, _ = _answer(served, f"/api/sales/{first}/tickets", headers, {})
    assert (status, code) == (429, "rate_limited") and int(kept["Retry-After"]) >= 59
    # Per shopper and sale: the same shopper joins another sale at once.
    assert _answer(served, f"/api/sales/{second}/tickets", headers, {})[0] == 202


def test_a_token_verified_before_is_still_refused_once_revoked(paths, settings, clients):
    served, _flask_only, calls = paths
    first, second = open_sale(clients, stock=10), open_sale(clients, stock=10)
    token = _token(settings, "usr_cached")
    headers = {"Authorization": "Bearer " + token}
    assert _answer(served, f"/api/sales/{first}/tickets", headers, {})[0] == 202  # now cached
    claims = jwt.decode(token, settings.jwt_secret(), algorithms=["HS256"])
    tokens.revoke_access_token(clients.redis, claims["jti"], claims["exp"])
    deadline = time.monotonic() + 5
    while not revocations.denylist_copy(clients).is_denied([revocations.access_member(claims["jti"])]):
        assert time.monotonic() < deadline, "the revocation never reached this process"
        time.sleep(0.02)
    answer = _answer(served, f"/api/sales/{second}/tickets", headers, {})
    assert answer[:2] == (401, "token_revoked") and calls["n"] == 1
