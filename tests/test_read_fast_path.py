"""The status read's fast path answers exactly as the Flask routes do, and only the ordinary read.

A read changes nothing a second read would see differently, so each case reads the same
ticket through the app as served (fast path in front) and through the Flask app alone: the
status, every header, the body's bytes and the metric series moved must be the same. (The
ticket's `stream_token` is compared as "present and the same on both", since it may carry
the time it was made.) Ordinary reads never reach Flask; every other one does.
"""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest
from prometheus_client import REGISTRY
from werkzeug.test import Client

from api.admission_fast_path import AdmissionFastPath
from common.accounts import revocations, tokens
from common.flash_sale import sale_keys
from common.flash_sale.tickets import TicketStatus
from loadtests.shop import mint_access_token
from tests.waiting_room_helpers import open_sale

ENDPOINTS = ("/api/tickets/<ticket_id>", "/api/sales/<sale_id>/tickets/mine")

# What each status's ticket holds besides its status, as the scripts leave it.
STATUS_FIELDS: dict[TicketStatus, dict[str, str]] = {
    TicketStatus.RESERVING: {"expires_at_ms": "1764800300000"},
    TicketStatus.RESERVED: {"expires_at_ms": "4102444800000", "payment_intent_id": "pi_read_1",
                            "client_secret": "pi_read_1_secret", "amount_cents": "1999",
                            "currency": "usd"},
    TicketStatus.SETTLING: {"payment_intent_id": "pi_read_2", "client_secret": "pi_read_2_secret",
                            "amount_cents": "1999", "currency": "usd"},
    TicketStatus.PAID: {"payment_intent_id": "pi_read_3", "amount_cents": "1999", "currency": "usd",
                        "order_id": "ord_read_1"},
    TicketStatus.SOLD_OUT: {"reason": "per_user_limit"},
    TicketStatus.EXPIRED: {"refund_id": "re_read_1"},
}


@pytest.fixture
def paths(app):
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


def _requests_counted() -> dict[tuple[Any, ...], float]:
    counted = {}
    for metric in REGISTRY.collect():
        for sample in metric.samples:
            if sample.name in ("flashsale_http_requests_total", "flashsale_http_request_seconds_count"):
                labels = sample.labels
                if labels.get("endpoint") in ENDPOINTS:
                    counted[(sample.name, *sorted(labels.items()))] = sample.value
    return counted


def _moved(before: dict, after: dict) -> dict:
    return {key: value - before.get(key, 0.0) for key, value in after.items()
            if value != before.get(key, 0.0)}


def _read(client: Client, path: str, headers: dict[str, str]) -> tuple[Any, ...]:
    """Everything a client and the metrics see of one read."""
    before = _requests_counted()
    response = client.get(path, headers={"X-Request-ID": "req-read-0", **headers})
    moved = _moved(before, _requests_counted())
    body = response.get_data()
    stream_token = None
    payload = json.loads(body) if response.mimetype == "application/json" else None
    if isinstance(payload, dict) and "stream_token" in payload:
        stream_token = payload["stream_token"]
        body = body.replace(stream_token.encode(), b"<stream_token>")
    header_list = [(name, value) for name, value in response.headers.items() if name != "Content-Length"]
    return response.status_code, header_list, body, moved, stream_token is not None


def _admitted(served: Client, settings, sale_id: str, user: str) -> tuple[dict[str, Any], str]:
    token = _token(settings, user)
    joined = served.post(f"/api/sales/{sale_id}/tickets", json={"quantity": 1},
                         headers={"Authorization": "Bearer " + token})
    assert joined.status_code == 202
    return joined.get_json(), token


@pytest.mark.parametrize("status", list(TicketStatus))
def test_every_status_reads_the_same_without_flask(paths, settings, clients, status):
    served, flask_only, calls = paths
    sale_id = open_sale(clients, stock=10)
    ticket, token = _admitted(served, settings, sale_id, f"usr_read_{status.value}")
    fields = {"status": status.value, **STATUS_FIELDS.get(status, {})}
    clients.sales_redis.hset(sale_keys.ticket_key(sale_id, ticket["id"]), mapping=fields)
    headers = {"Authorization": "Bearer " + token, "X-Request-ID": "req-read-1"}
    calls["n"] = 0
    for path in (f"/api/tickets/{ticket['id']}", f"/api/sales/{sale_id}/tickets/mine"):
        fast, slow = _read(served, path, headers), _read(flask_only, path, headers)
        assert fast == slow
        assert fast[0] == 200 and fast[4], fast
        assert ("X-Request-ID", "req-read-1") in fast[1]
        assert json.loads(fast[2].replace(b'"<stream_token>"', b'""'))["id"] == ticket["id"]
    assert calls["n"] == 0


def _expired(settings, user: str) -> str:
    return _token(settings, user, ttl=-5)


def _refresh(settings, user: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": user, "iat": now, "nbf": now, "exp": now + 600, "jti": "j" + user,
                       "type": "refresh", "fam": "fam_x"}, settings.jwt_secret(), algorithm="HS256")


# name: (path, given the ticket and its sale; headers, given the owner's token; expected status)
ERROR_CASES: dict[str, tuple[Any, Any, int]] = {
    "no token": (lambda t, s: f"/api/tickets/{t}", lambda s, tok: {}, 401),
    "not a bearer": (lambda t, s: f"/api/tickets/{t}", lambda s, tok: {"Authorization": "Basic " + tok}, 401),
    "expired token": (lambda t, s: f"/api/tickets/{t}",
                      lambda s, tok: {"Authorization": "Bearer " + _expired(s, "usr_x")}, 401),
    "forged token": (lambda t, s: f"/api/tickets/{t}", lambda s, tok: {
        "Authorization": "Bearer " + mint_access_token("another-key-" + "y" * 32, "usr_x")}, 401),
    "refresh token": (lambda t, s: f"/api/sales/{s}/tickets/mine",
                      lambda s, tok: {"Authorization": "Bearer " + _refresh(s, "usr_x")}, 401),
    "another shopper's ticket": (lambda t, s: f"/api/tickets/{t}",
                                 lambda s, tok: {"Authorization": "Bearer " + _token(s, "usr_other")}, 404),
    "no ticket in this sale": (lambda t, s: f"/api/sales/{s}/tickets/mine",
                               lambda s, tok: {"Authorization": "Bearer " + _token(s, "usr_other")}, 404),
    "unknown ticket": (lambda t, s: f"/api/tickets/{t[:-4]}beef", lambda s, tok: {"Authorization": tok}, 404),
    "unknown sale": (lambda t, s: "/api/sales/sal_0000000000000000/tickets/mine",
                     lambda s, tok: {"Authorization": tok}, 404),
    "malformed ticket id": (lambda t, s: "/api/tickets/tkt_nope", lambda s, tok: {"Authorization": tok},
                            404),
    "malformed sale id": (lambda t, s: "/api/sales/nope/tickets/mine", lambda s, tok: {"Authorization": tok},
                          404),
    "a query string": (lambda t, s: f"/api/tickets/{t}?fields=id", lambda s, tok: {"Authorization": tok},
                       200),
}


@pytest.mark.parametrize("name", sorted(ERROR_CASES))
def test_every_other_read_gets_the_flask_answer(paths, settings, clients, name):
    served, flask_only, calls = paths
    sale_id = open_sale(clients, stock=10)
    ticket, token = _admitted(served, settings, sale_id, f"usr_err_{len(name)}_{name[:6]}")
    make_path, make_headers, expected = ERROR_CASES[name]
    path = make_path(ticket["id"], sale_id)
    headers = make_headers(settings, token)
    if headers.get("Authorization") == token:
        headers["Authorization"] = "Bearer " + token
    calls["n"] = 0
    fast, slow = _read(served, path, headers), _read(flask_only, path, headers)
    assert fast == slow
    assert fast[0] == expected
    assert calls["n"] == 1


def test_a_revoked_token_reads_nothing(paths, settings, clients):
    served, flask_only, calls = paths
    sale_id = open_sale(clients, stock=10)
    ticket, token = _admitted(served, settings, sale_id, "usr_read_revoked")
    claims = jwt.decode(token, settings.jwt_secret(), algorithms=["HS256"])
    tokens.revoke_access_token(clients.redis, claims["jti"], claims["exp"])
    deadline = time.monotonic() + 5
    while not revocations.denylist_copy(clients).is_denied([revocations.access_member(claims["jti"])]):
        assert time.monotonic() < deadline, "the revocation never reached this process"
        time.sleep(0.02)
    calls["n"] = 0
    path = f"/api/tickets/{ticket['id']}"
    fast = _read(served, path, {"Authorization": "Bearer " + token})
    assert fast == _read(flask_only, path, {"Authorization": "Bearer " + token})
    assert fast[0] == 401 and calls["n"] == 1


def test_a_read_notes_its_owner_present_as_flasks_does(paths, settings, clients):
    served, _flask_only, calls = paths
    sale_id = open_sale(clients, stock=10)
    ticket, token = _admitted(served, settings, sale_id, "usr_read_present")
    presence = sale_keys.presence_key(sale_id)
    clients.sales_redis.delete(presence)
    assert served.get(f"/api/tickets/{ticket['id']}",
                      headers={"Authorization": "Bearer " + token}).status_code == 200
    assert clients.sales_redis.hexists(presence, ticket["id"]) and calls["n"] == 0


@pytest.mark.parametrize("case", ["admitted", "unknown sale", "scheduled sale"])
def test_an_admission_carries_the_same_headers_as_flasks(paths, settings, clients, case):
    served, flask_only, calls = paths
    sale_id = {"admitted": lambda: open_sale(clients, stock=10),
               "unknown sale": lambda: "sal_0000000000000000",
               "scheduled sale": lambda: open_sale(clients, stock=10, starts_in=3600)}[case]()
    answers = []
    for client, user in ((served, "usr_adm_headers_a"), (flask_only, "usr_adm_headers_b")):
        response = client.post(f"/api/sales/{sale_id}/tickets", json={"quantity": 1},
                               headers={"Authorization": "Bearer " + _token(settings, user),
                                        "X-Request-ID": "req-adm-1"})
        keys = [name for name, _ in json.loads(response.get_data(), object_pairs_hook=lambda pairs: pairs)]
        answers.append((response.status_code, keys,
                        [(k, v) for k, v in response.headers.items() if k != "Content-Length"]))
    assert answers[0] == answers[1] and answers[0][0] == {"admitted": 202, "unknown sale": 404,
                                                          "scheduled sale": 409}[case]
    assert calls["n"] == 0
