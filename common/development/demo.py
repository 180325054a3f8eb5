"""A first-run experience: a development admin account and a demo sale, made through the
public API like any operator would."""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path

import requests

from common.platform.clock import utc_now
from common.platform.files import write_private

DEV_ADMIN_EMAIL = "admin@example.com"
CATALOGUE_UNITS = 20


def dev_admin_password(var_dir: Path) -> str:
    """The development admin's password, generated once into var/secrets."""
    path = var_dir / "secrets" / "admin_password"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_private(path, secrets.token_urlsafe(12))
    return path.read_text().strip()


def seed_demo_sale(api_url: str, email: str, password: str, *, opens_in: int = 60,
                   stock: int = 100) -> str | None:
    """Create a product and a sale opening soon, unless a sale exists already.

    Returns the new sale's id, or None when there was one already.
    """
    session = requests.Session()
    if session.get(f"{api_url}/api/sales", timeout=10).json().get("items"):
        return None
    login = session.post(f"{api_url}/api/auth/login", json={"email": email, "password": password},
                         timeout=30)
    login.raise_for_status()
    session.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
    product = session.post(f"{api_url}/api/products", timeout=10, json={
        "name": "Limited-edition sneaker", "description": "100 pairs, one per shopper.",
        # The sale takes its units out of the catalogue; a few stay for the cart.
        "price_cents": 18000, "currency": "USD", "stock": stock + CATALOGUE_UNITS, "image_url": None})
    product.raise_for_status()
    now = utc_now()
    sale = session.post(f"{api_url}/api/sales", timeout=10, json={
        "product_id": product.json()["id"], "stock": stock, "price_cents": 9900,
        "starts_at": (now + timedelta(seconds=opens_in)).isoformat(),
        "ends_at": (now + timedelta(hours=2)).isoformat(),
        "per_user_limit": 1, "reservation_ttl_seconds": 300})
    sale.raise_for_status()
    return str(sale.json()["id"])
