"""Proof-of-work at a sale's door (API v3, "Entry requirements": `challenge`), through the API
against the real Redis and MongoDB: a challenge missing, wrong, expired, made for another sale
or used already is refused with 403 challenge_required; a correct one admits, once. The check
of a solution is the altcha library's own, compared here with its create and solve."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import altcha
import pytest
from werkzeug.test import Client

from common.flash_sale import entry_challenge, sale_keys
from tests.accounts import bearer, create_product, register, register_admin

SALE = "sal_0123456789abcdef"
KEY = "k" * 32


def payload_for(challenge: dict[str, Any], number: int | None = None, **changes: Any) -> str:
    """What the widget sends: the challenge's fields and the number that solves it."""
    if number is None:
        solved = altcha.solve_challenge_v1(challenge["challenge"], challenge["salt"],
                                           challenge["algorithm"], challenge["maxnumber"])
        assert solved is not None
        number = solved.number
    body = {"algorithm": challenge["algorithm"], "challenge": challenge["challenge"],
            "number": number, "salt": challenge["salt"], "signature": challenge["signature"],
            "took": 5} | changes
    return base64.b64encode(json.dumps(body).encode()).decode()


def expired_challenge(sale_id: str, key: str) -> dict[str, Any]:
    made = altcha.create_challenge_v1(altcha.ChallengeOptionsV1(
        algorithm="SHA-256", max_number=1000, hmac_key=key,
        expires=datetime.now(UTC) - timedelta(seconds=5), params={"sale": sale_id}))
    return {"algorithm": made.algorithm, "challenge": made.challenge, "maxnumber": made.max_number,
            "salt": made.salt, "signature": made.signature}


# --------------------------------------------------------------------------- the check


def test_a_solution_checks_out_as_the_altcha_library_says():
    challenge = entry_challenge.new_challenge(SALE, KEY, max_number=2000, ttl_seconds=60)
    good = payload_for(challenge)
    assert altcha.verify_solution_v1(good, KEY) == (True, None)
    assert entry_challenge.verify(good, SALE, KEY) == entry_challenge.Solution(
        challenge=challenge["challenge"],
        expires_at_ms=int(challenge["salt"].split("expires=")[1].split("&")[0]) * 1000)

    solved = json.loads(base64.b64decode(good))["number"]
    forged = [payload_for(challenge, number=solved + 1),
              payload_for(challenge, signature="0" * 64),
              payload_for(challenge, salt=challenge["salt"].replace("expires=", "expires=9")),
              payload_for(challenge, algorithm="SHA-1")]
    for payload in forged:
        assert entry_challenge.verify(payload, SALE, KEY) is None
    assert altcha.verify_solution_v1(forged[0], KEY)[0] is False

    assert entry_challenge.verify(good, "sal_fedcba9876543210", KEY) is None  # another sale's
    assert entry_challenge.verify(good, SALE, "another key") is None
    late = payload_for(expired_challenge(SALE, KEY))
    assert altcha.verify_solution_v1(late, KEY)[0] is False
    assert entry_challenge.verify(late, SALE, KEY) is None
    for garbage in ("", "not base64!", base64.b64encode(b"[1]").decode(),
                    base64.b64encode(b'{"algorithm": "SHA-256"}').decode(), 7, None, "A" * 2000):
        assert entry_challenge.verify(garbage, SALE, KEY) is None


# --------------------------------------------------------------------------- through the API


def make_sale(client, admin_token: str, **entry: bool) -> dict[str, Any]:
    product = create_product(client, admin_token, stock=10)
    now = datetime.now(UTC)
    response = client.post("/api/sales", headers=bearer(admin_token), json={
        "product_id": product["id"], "stock": 5, "price_cents": 1000, "lobby_opens_at": None,
        "starts_at": (now - timedelta(seconds=1)).isoformat(),
        "ends_at": (now + timedelta(hours=1)).isoformat(), "entry": entry})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


@pytest.fixture
def challenge_sale(client, clients) -> dict[str, Any]:
    admin = register_admin(client, clients)
    return make_sale(client, admin["access_token"], challenge=True, verified_email=False)


def shopper(client) -> dict[str, str]:
    return bearer(register(client)["access_token"])


def get_challenge(client, sale_id: str, headers: dict[str, str]) -> dict[str, Any]:
    answer = client.get(f"/api/sales/{sale_id}/challenge", headers=headers)
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


@pytest.fixture(params=["fast path", "Flask"])
def entrance(request, app, client):
    """Admissions through the admission fast path (api/admission_fast_path.py), which takes a
    body with `altcha`, and through the Flask route behind it: both answer alike."""
    return client if request.param == "fast path" else Client(app.wsgi_app.app)


def admit(client, sale_id: str, headers: dict[str, str], **body: Any):
    return client.post(f"/api/sales/{sale_id}/tickets", json={"quantity": 1} | body, headers=headers)


def assert_challenge_required(answer, sale_id: str) -> None:
    assert answer.status_code == 403, answer.get_json()
    error = answer.get_json()["error"]
    assert error["code"] == "challenge_required"
    assert error["details"]["challenge_url"] == f"/api/sales/{sale_id}/challenge"


def test_a_sale_that_asks_for_a_challenge_shows_it_and_hands_challenges_to_shoppers(client, challenge_sale):
    sale_id = challenge_sale["id"]
    assert challenge_sale["entry"]["challenge"] is True
    assert client.get(f"/api/sales/{sale_id}/challenge").status_code == 401
    challenge = get_challenge(client, sale_id, shopper(client))
    assert challenge["algorithm"] == "SHA-256" and challenge["maxnumber"] == 50_000
    assert f"sale={sale_id}" in challenge["salt"] and "expires=" in challenge["salt"]
    unknown = client.get("/api/sales/sal_0000000000000000/challenge", headers=shopper(client))
    assert unknown.status_code == 404


def test_a_correct_solution_admits_once_whoever_brings_it_again(client, clients, challenge_sale, entrance):
    sale_id = challenge_sale["id"]
    first, second = shopper(client), shopper(client)
    payload = payload_for(get_challenge(client, sale_id, first))
    admitted = admit(entrance, sale_id, first, altcha=payload)
    assert admitted.status_code == 202, admitted.get_json()

    assert_challenge_required(admit(entrance, sale_id, second, altcha=payload), sale_id)
    # The solution is remembered on the sale's slot until its challenge expires.
    challenge = json.loads(base64.b64decode(payload))["challenge"]
    key = sale_keys.challenge_solution_key(sale_id, challenge)
    assert 0 < clients.redis.pttl(key) <= 1800 * 1000
    # A fresh challenge of their own lets the second shopper in.
    assert admit(entrance, sale_id, second,
                 altcha=payload_for(get_challenge(client, sale_id, second))).status_code == 202


def test_a_missing_wrong_expired_or_foreign_solution_is_refused(client, clients, settings, challenge_sale,
                                                                entrance):
    sale_id = challenge_sale["id"]
    headers = shopper(client)
    assert_challenge_required(admit(entrance, sale_id, headers), sale_id)  # missing
    challenge = get_challenge(client, sale_id, headers)
    solved = json.loads(base64.b64decode(payload_for(challenge)))["number"]
    assert_challenge_required(admit(entrance, sale_id, headers,
                                    altcha=payload_for(challenge, number=solved + 1)), sale_id)
    assert_challenge_required(admit(entrance, sale_id, headers,
                                    altcha=payload_for(challenge, signature="0" * 64)), sale_id)
    assert_challenge_required(admit(entrance, sale_id, headers, altcha="garbage"), sale_id)
    key = entry_challenge.hmac_key(settings)
    assert_challenge_required(admit(entrance, sale_id, headers,
                                    altcha=payload_for(expired_challenge(sale_id, key))), sale_id)
    # Solved for another sale that asks for one.
    admin = register_admin(client, clients)
    other = make_sale(client, admin["access_token"], challenge=True, verified_email=False)
    foreign = payload_for(get_challenge(client, other["id"], headers))
    assert_challenge_required(admit(entrance, sale_id, headers, altcha=foreign), sale_id)
    # None of the refusals spent anything: the good one still admits.
    assert admit(entrance, sale_id, headers, altcha=payload_for(challenge)).status_code == 202
    # Each refusal is counted on the sale, for the operator's report.
    assert clients.redis.hget(sale_keys.counters_key(sale_id), "challenges_refused") == "6"
    # A body the schema refuses is refused alike on both paths.
    for wrong in (None, 7, "A" * 2000):
        refused = admit(entrance, sale_id, shopper(client), altcha=wrong)
        assert refused.status_code == 422, refused.get_json()


def test_a_sale_without_a_challenge_admits_with_or_without_one(client, clients):
    admin = register_admin(client, clients)
    sale = make_sale(client, admin["access_token"], verified_email=False)
    assert sale["entry"]["challenge"] is False
    assert admit(client, sale["id"], shopper(client)).status_code == 202
    headers = shopper(client)
    payload = payload_for(get_challenge(client, sale["id"], headers))
    assert admit(client, sale["id"], headers, altcha=payload).status_code == 202
