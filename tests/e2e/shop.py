"""A small HTTP client of the public contract, used by the end-to-end tests."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "admin-password-123"


@dataclass
class Shopper:
    base: str
    email: str = field(default_factory=lambda: f"shopper-{secrets.token_hex(6)}@example.com")
    password: str = "correct-horse-battery"
    token: str = ""
    session: requests.Session = field(default_factory=requests.Session)

    def register(self, verify: bool = True) -> Shopper:
        """Sign up; with `verify`, follow the link mailed to the address (read from the
        development mailbox, GET /api/dev/mailbox), as a person would."""
        r = self.session.post(f"{self.base}/api/auth/register", json={
            "email": self.email, "password": self.password, "name": "Shopper"}, timeout=30)
        assert r.status_code == 201, r.text
        self.token = r.json()["access_token"]
        if verify:
            self.verify_email()
        return self

    def verification_token(self, timeout: float = 30) -> str:
        """The token of the newest verification link mailed to this shopper."""
        deadline = time.monotonic() + timeout
        while True:
            r = self.session.get(f"{self.base}/api/dev/mailbox", params={"to": self.email}, timeout=10)
            assert r.status_code == 200, r.text
            for message in r.json()["items"]:
                for link in message["links"]:
                    if urlsplit(link).path == "/verify-email":
                        return parse_qs(urlsplit(link).query)["token"][0]
            assert time.monotonic() < deadline, f"no verification mail for {self.email}"
            time.sleep(0.3)

    def verify_email(self) -> Shopper:
        r = self.session.post(f"{self.base}/api/auth/verify-email",
                              json={"token": self.verification_token()}, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["email_verified"] is True
        # The token from before still admits: a refused one is checked against the account.
        return self

    def login(self) -> Shopper:
        r = self.session.post(f"{self.base}/api/auth/login",
                              json={"email": self.email, "password": self.password}, timeout=30)
        assert r.status_code == 200, r.text
        self.token = r.json()["access_token"]
        return self

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = kwargs.pop("headers", {}) | {"Authorization": f"Bearer {self.token}"}
        timeout = kwargs.pop("timeout", 30)
        try:
            return self.session.request(method, self.base + path, headers=headers,
                                        timeout=timeout, **kwargs)
        except requests.ConnectionError:
            # Like a browser: a kept-alive connection the server closed meanwhile is retried
            # once on a new connection (every call here is safe to repeat).
            self.session.close()
            return self.session.request(method, self.base + path, headers=headers,
                                        timeout=timeout, **kwargs)

    def join(self, sale_id: str, quantity: int = 1) -> requests.Response:
        return self.call("POST", f"/api/sales/{sale_id}/tickets", json={"quantity": quantity})

    def ticket(self, ticket_id: str) -> dict[str, Any]:
        r = self.call("GET", f"/api/tickets/{ticket_id}")
        assert r.status_code == 200, r.text
        return r.json()

    def wait_for(self, ticket_id: str, statuses: set[str], timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        ticket = self.ticket(ticket_id)
        while ticket["status"] not in statuses and time.monotonic() < deadline:
            time.sleep(0.2)
            ticket = self.ticket(ticket_id)
        return ticket


def admin(base: str) -> Shopper:
    return Shopper(base, email=ADMIN_EMAIL, password=ADMIN_PASSWORD).login()


def create_sale(operator: Shopper, stock: int, *, ttl: int = 300, price_cents: int = 4999,
                product_stock: int | None = None, per_user_limit: int = 1,
                starts_in: float = -1, lobby_opens_in: float | bool | None = False,
                one_card: bool = False,
                fairness_algorithm: str | None = "hmac-sha256-v1") -> dict[str, Any]:
    """A product and its sale opening `starts_in` seconds from now. `lobby_opens_in`: False
    leaves lobby_opens_at out (the API's default: the lobby opens at creation), None sends
    null (no lobby, the v1 flow), a number opens the lobby that many seconds from now. The
    shoppers pay with the emulator's test cards, shared by every account: `one_card` is off
    unless asked for; `verified_email` keeps the contract's default (Shopper.register verifies).
    `fairness_algorithm`: the committed seed by default, placed at the start itself; None takes
    the shop's default, a beacon draw under `flashsale run` (placed once its round is out)."""
    product = operator.call("POST", "/api/products", json={
        "name": f"Drop {secrets.token_hex(3)}", "description": "Limited run", "price_cents": 9999,
        "currency": "USD", "stock": stock if product_stock is None else product_stock,
        "image_url": "https://example.com/p.png"})
    assert product.status_code == 201, product.text
    now = datetime.now(UTC)
    body: dict[str, Any] = {
        "product_id": product.json()["id"], "stock": stock, "price_cents": price_cents,
        "starts_at": (now + timedelta(seconds=starts_in)).isoformat(),
        "ends_at": (now + timedelta(hours=1)).isoformat(),
        "per_user_limit": per_user_limit, "reservation_ttl_seconds": ttl,
        "entry": {"one_card": one_card}}
    if fairness_algorithm is not None:
        body["fairness_algorithm"] = fairness_algorithm
    if lobby_opens_in is None:
        body["lobby_opens_at"] = None
    elif lobby_opens_in is not False:
        body["lobby_opens_at"] = (now + timedelta(seconds=float(lobby_opens_in))).isoformat()
    sale = operator.call("POST", "/api/sales", json=body)
    assert sale.status_code == 201, sale.text
    return sale.json()


def card_token(stripe_api_base: str, number: str = "4242424242424242") -> str:
    """What Stripe.js createToken does in the browser, with the publishable key."""
    r = requests.post(f"{stripe_api_base}/v1/tokens", data={
        "key": "pk_test_embedded", "card[number]": number, "card[exp_month]": "12",
        "card[exp_year]": "2034", "card[cvc]": "123"}, timeout=10)
    r.raise_for_status()
    return str(r.json()["id"])
