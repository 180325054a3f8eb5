"""What the load tests need of the public contract outside the shoppers themselves: the
operator's calls (sign in, product, sale, stats) and a pool of shopper accounts.

Accounts are registered through `POST /api/auth/register`, which costs an argon2 hash on the
server (about half a second of a core here), so the pool is kept in a file per API and reused
by later runs: a kept account only needs `POST /api/auth/refresh`, which is cheap.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt as pyjwt
import requests
from requests.adapters import HTTPAdapter

PASSWORD = "load-test-password-1"


def mint_access_token(secret: str, user_id: str, role: str = "customer", ttl: int = 600) -> str:
    """An access token as the API issues one (same claims, same key), for a user that was
    never registered: what a benchmark of admission alone needs, without argon2 sign-ups."""
    now = int(time.time())
    claims = {"sub": user_id, "iat": now, "nbf": now, "exp": now + ttl, "jti": uuid.uuid4().hex,
              "type": "access", "fresh": False, "role": role, "fam": "fam_" + uuid.uuid4().hex,
              "ev": True}  # verified email: these benchmarks measure the waiting room
    return pyjwt.encode(claims, secret, algorithm="HS256")


def session(pool: int = 64) -> requests.Session:
    made = requests.Session()
    adapter = HTTPAdapter(pool_connections=pool, pool_maxsize=pool)
    made.mount("http://", adapter)
    made.mount("https://", adapter)
    return made


class ShopError(RuntimeError):
    pass


def _expect(response: requests.Response, status: int, what: str) -> dict[str, Any]:
    if response.status_code != status:
        raise ShopError(f"{what}: HTTP {response.status_code} {response.text[:300]}")
    return dict(response.json())


@dataclass
class Operator:
    """The admin's side: sign in, create a product and its sale, read the sale's stats."""

    base: str
    email: str
    password: str
    token: str = ""
    http: requests.Session = field(default_factory=session)

    def sign_in(self) -> Operator:
        response = self.http.post(f"{self.base}/api/auth/login",
                                  json={"email": self.email, "password": self.password}, timeout=30)
        if response.status_code == 401:
            raise ShopError(f"cannot sign in as the admin {self.email}: set ADMIN_EMAIL and "
                            "ADMIN_PASSWORD for the system (or `flashsale create-admin`) and pass "
                            "the same to the load test")
        self.token = _expect(response, 200, "admin sign-in")["access_token"]
        return self

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        timeout = kwargs.pop("timeout", 30)
        for attempt in (1, 2):
            response = self.http.request(method, self.base + path, timeout=timeout,
                                         headers={"Authorization": f"Bearer {self.token}"}, **kwargs)
            # A long run (registering thousands of shoppers) outlives the admin's access token.
            if response.status_code == 401 and attempt == 1:
                self.sign_in()
                continue
            return response
        return response

    def create_sale(self, *, stock: int, product_stock: int | None = None, price_cents: int = 4999,
                    starts_at: datetime | None = None, lasts: timedelta = timedelta(hours=2),
                    per_user_limit: int = 1, reservation_ttl_seconds: int = 300,
                    presence_timeout_seconds: int = 0, lobby: bool = True,
                    verified_email: bool = False, one_card: bool = False) -> dict[str, Any]:
        """A product with `product_stock` units (default: the sale's) and a sale of it
        (with presence on when `presence_timeout_seconds` > 0; its lobby open from now, or
        no lobby at all when `lobby` is false). The pool's accounts are registered in bulk and
        never verify their email, so the sale admits them unless `verified_email`; they all pay
        with the emulator's few test cards, so one card pays for many accounts unless `one_card`."""
        product = _expect(self.call("POST", "/api/products", json={
            "name": f"Load-test drop {secrets.token_hex(3)}", "description": "Limited run",
            "price_cents": price_cents * 2, "currency": "USD",
            "stock": stock if product_stock is None else product_stock,
            "image_url": "https://example.com/drop.png"}), 201, "create product")
        opens = starts_at or datetime.now(UTC)
        return _expect(self.call("POST", "/api/sales", json={
            "product_id": product["id"], "stock": stock, "price_cents": price_cents,
            "starts_at": opens.isoformat(), "ends_at": (opens + lasts).isoformat(),
            "per_user_limit": per_user_limit,
            "reservation_ttl_seconds": reservation_ttl_seconds,
            **({"presence_timeout_seconds": presence_timeout_seconds} if presence_timeout_seconds else {}),
            **({} if lobby else {"lobby_opens_at": None}),
            "entry": {"verified_email": verified_email, "one_card": one_card},
        }), 201, "create sale")

    def stats(self, sale_id: str) -> dict[str, Any]:
        return _expect(self.call("GET", f"/api/admin/sales/{sale_id}/stats", timeout=10), 200,
                       "sale stats")


# ------------------------------------------------------------------ shopper accounts


@dataclass
class PoolReport:
    kept: int = 0
    registered: int = 0
    failed: int = 0
    refresh_seconds: float = 0.0
    register_seconds: float = 0.0

    def describe(self) -> str:
        parts = [f"{self.kept} kept accounts refreshed in {self.refresh_seconds:.1f}s"]
        if self.registered:
            rate = self.registered / self.register_seconds if self.register_seconds else 0.0
            parts.append(f"{self.registered} registered in {self.register_seconds:.1f}s "
                         f"({rate:.1f}/s)")
        if self.failed:
            parts.append(f"{self.failed} failed")
        return ", ".join(parts)


def pool_path(results_dir: Path, api_base: str) -> Path:
    where = urlsplit(api_base)
    return results_dir / "accounts" / f"{where.hostname}-{where.port or 80}.jsonl"


class AccountPool:
    """Shopper accounts of one API, kept in a JSON-lines file between runs."""

    def __init__(self, base: str, path: Path, concurrency: int = 16) -> None:
        self.base = base
        self.path = path
        self.concurrency = concurrency
        self.http = session(concurrency * 2)
        self._lock = threading.Lock()
        self._accounts: list[dict[str, str]] = []
        if path.exists():
            self._accounts = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with self._lock:
            tmp.write_text("".join(json.dumps(a) + "\n" for a in self._accounts))
        tmp.replace(self.path)

    def _register(self, _index: int) -> dict[str, str] | None:
        email = f"shopper-{secrets.token_hex(8)}@loadtest.example.com"
        for _attempt in range(3):
            try:
                response = self.http.post(f"{self.base}/api/auth/register", json={
                    "email": email, "password": PASSWORD, "name": "Load Shopper"}, timeout=120)
            except requests.RequestException:
                time.sleep(1)
                continue
            if response.status_code == 201:
                body = response.json()
                return {"email": email, "password": PASSWORD, "user_id": body["user"]["id"],
                        "access_token": body["access_token"], "refresh_token": body["refresh_token"]}
            if response.status_code < 500:
                return None
            time.sleep(1)
        return None

    def _refresh(self, account: dict[str, str]) -> dict[str, str] | None:
        try:
            response = self.http.post(f"{self.base}/api/auth/refresh", timeout=60, headers={
                "Authorization": f"Bearer {account['refresh_token']}"})
        except requests.RequestException:
            return None
        if response.status_code != 200:
            return None
        body = response.json()
        return account | {"access_token": body["access_token"], "refresh_token": body["refresh_token"]}

    def take(self, count: int, progress: Any = None,
             valid_for: float = 600.0) -> tuple[list[dict[str, str]], PoolReport]:
        """`count` signed-in accounts whose access tokens stay valid `valid_for` seconds more:
        kept ones first (refreshed), then new registrations. The pool file is saved as
        registrations complete."""
        report = PoolReport()
        kept = self._accounts[:count]
        started = time.monotonic()
        with ThreadPoolExecutor(self.concurrency * 2) as pool:
            refreshed = list(pool.map(self._refresh, kept))
        report.refresh_seconds = time.monotonic() - started
        ready = [a for a in refreshed if a]
        report.kept = len(ready)
        # Accounts that could not be refreshed (another system, revoked) are dropped.
        self._accounts = ready + self._accounts[count:]
        self._save()
        missing = count - len(ready)
        if missing > 0:
            started = time.monotonic()
            with ThreadPoolExecutor(self.concurrency) as pool:
                for done, account in enumerate(pool.map(self._register, range(missing)), 1):
                    if account is None:
                        report.failed += 1
                        continue
                    ready.append(account)
                    with self._lock:
                        self._accounts.insert(len(ready) - 1, account)
                    if done % 100 == 0:
                        self._save()
                        if progress:
                            progress(f"registered {done}/{missing} shoppers "
                                     f"({done / (time.monotonic() - started):.1f}/s)")
            report.registered = missing - report.failed
            report.register_seconds = time.monotonic() - started
            # A long registration outlives the first access tokens: renew those about to expire.
            expiring = [i for i, a in enumerate(ready) if token_expires_at(a["access_token"])
                        < time.time() + valid_for]
            with ThreadPoolExecutor(self.concurrency * 2) as pool:
                renewed = list(pool.map(self._refresh, [ready[i] for i in expiring]))
            for i, account in zip(expiring, renewed, strict=True):
                if account:
                    ready[i] = account
            self._accounts = ready + self._accounts[len(ready):]
            self._save()
        return ready, report


def token_expires_at(token: str) -> float:
    """The `exp` claim of a JWT (read, not verified: only to know when to refresh it)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, ValueError, KeyError):
        return 0.0


def write_accounts(path: Path, accounts: list[dict[str, str]]) -> None:
    path.write_text("".join(json.dumps(a) + "\n" for a in accounts))


def card_token(stripe_api_base: str, publishable_key: str, http: requests.Session | None = None) -> str:
    """What Stripe.js createToken does in the browser, with the publishable key."""
    response = (http or requests).post(f"{stripe_api_base.rstrip('/')}/v1/tokens", data={
        "key": publishable_key, "card[number]": "4242424242424242", "card[exp_month]": "12",
        "card[exp_year]": "2034", "card[cvc]": "123"}, timeout=30)
    return str(_expect(response, 200, "card token")["id"])
