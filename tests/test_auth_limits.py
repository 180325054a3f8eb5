"""Sign-up throttling and the client address behind proxies, through the HTTP contract.

Each sign-up costs an argon2 hash, so register is limited per client address and in total;
both limits key on the client address, which is read from X-Forwarded-For only as many hops
back as TRUSTED_PROXY_COUNT says."""

from __future__ import annotations

import uuid

from api.app import create_app
from tests.accounts import PASSWORD, unique_email


def error_code(response) -> str:
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    return body["error"]["code"]


def random_address() -> str:
    return f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"


def sign_up(client, remote: str, headers: dict[str, str] | None = None):
    return client.post("/api/auth/register", headers=headers or {},
                       json={"email": unique_email(), "password": PASSWORD, "name": "Sam"},
                       environ_base={"REMOTE_ADDR": remote})


def test_register_is_throttled_per_address(settings, make_clients):
    limited = settings.model_copy(update={"register_rate_limit": "3 per minute"})
    client = create_app(limited, make_clients(limited)).test_client()
    address = random_address()

    for _ in range(3):
        assert sign_up(client, address).status_code == 201
    blocked = sign_up(client, address)
    assert blocked.status_code == 429
    assert error_code(blocked) == "rate_limited"
    assert 0 < int(blocked.headers["Retry-After"]) <= 60
    # Another address is not affected.
    assert sign_up(client, random_address()).status_code == 201


def test_register_is_throttled_in_total_and_a_refused_address_uses_none_of_it(settings, make_clients):
    # Limiter keys carry the limit itself: no other test shares this total.
    limited = settings.model_copy(update={"register_rate_limit": "2 per minute",
                                          "register_total_rate_limit": "4 per 61 minutes"})
    client = create_app(limited, make_clients(limited)).test_client()
    # One address hammering: its refused sign-ups do not use up everyone's total.
    flooder = random_address()
    assert [sign_up(client, flooder).status_code for _ in range(10)] == [201, 201] + [429] * 8
    assert [sign_up(client, random_address()).status_code for _ in range(2)] == [201, 201]
    blocked = sign_up(client, random_address())
    assert blocked.status_code == 429
    assert error_code(blocked) == "rate_limited"
    assert 0 < int(blocked.headers["Retry-After"]) <= 61 * 60


def test_forwarded_for_is_ignored_without_trusted_proxies(settings, make_clients):
    limited = settings.model_copy(update={"register_rate_limit": "2 per minute"})
    client = create_app(limited, make_clients(limited)).test_client()
    peer = random_address()
    # Anyone can write the header: a fresh value per request must not buy a fresh bucket.
    for _ in range(2):
        assert sign_up(client, peer, {"X-Forwarded-For": random_address()}).status_code == 201
    assert sign_up(client, peer, {"X-Forwarded-For": random_address()}).status_code == 429


def test_forwarded_for_names_the_client_behind_one_trusted_proxy(settings, make_clients):
    limited = settings.model_copy(update={"register_rate_limit": "2 per minute",
                                          "trusted_proxy_count": 1})
    client = create_app(limited, make_clients(limited)).test_client()
    proxy, shopper = random_address(), random_address()
    # Every request arrives from the proxy; each client has a bucket of its own.
    for _ in range(2):
        assert sign_up(client, proxy, {"X-Forwarded-For": shopper}).status_code == 201
    assert sign_up(client, proxy, {"X-Forwarded-For": shopper}).status_code == 429
    assert sign_up(client, proxy, {"X-Forwarded-For": random_address()}).status_code == 201
    # A client's own spoofed entry comes before the proxy's, and only the proxy's is believed.
    spoofed = f"{random_address()}, {shopper}"
    assert sign_up(client, proxy, {"X-Forwarded-For": spoofed}).status_code == 429
