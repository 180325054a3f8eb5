"""Shared set-up for domain tests of the waiting room: a product, a sale, a decider."""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import requests

from common.billing.payments import PaymentContext
from common.billing.stripe_gateway import StripeGateway
from common.flash_sale import reservations, sales
from common.platform.clients import Clients


def make_product(clients: Clients, stock: int = 1000, price_cents: int = 2500) -> str:
    product_id = "prd_" + secrets.token_hex(8)
    now = datetime.now(UTC)
    clients.db.products.insert_one({
        "_id": product_id, "name": "Limited sneaker", "description": "", "price_cents": price_cents,
        "currency": "USD", "stock": stock, "image_url": "", "created_at": now, "updated_at": now})
    return product_id


def open_sale(clients: Clients, stock: int, *, ttl: int = 300, per_user_limit: int = 1,
              product_stock: int | None = None, starts_in: float = -1, lasts: float = 3600) -> str:
    product_id = make_product(clients, stock if product_stock is None else product_stock)
    now = datetime.now(UTC)
    sale = sales.create_sale(
        clients.db, clients.sales_redis, product_id=product_id, stock=stock, price_cents=1999,
        starts_at=now + timedelta(seconds=starts_in), ends_at=now + timedelta(seconds=starts_in + lasts),
        per_user_limit=per_user_limit, reservation_ttl_seconds=ttl,
        lobby_opens_at=None)  # the v1 window; tests/test_lobby.py covers the lobby
    return str(sale["_id"])


def gateway_for(clients: Clients) -> StripeGateway:
    return StripeGateway(clients.stripe, emulator=True)


def payment_context(clients: Clients) -> PaymentContext:
    return PaymentContext(mongo=clients.mongo, db=clients.db, redis=clients.sales_redis,
                          gateway=gateway_for(clients), serialize_transactions=True)


def drain(clients: Clients, sale_id: str, pool: ThreadPoolExecutor | None = None,
          **options: object) -> reservations.DrainReport:
    opts = reservations.DrainOptions(idle_seconds=0.3, claim_idle_ms=200, **options)  # type: ignore[arg-type]
    own_pool = pool or ThreadPoolExecutor(8)
    try:
        return reservations.drain_sale(clients.sales_redis, gateway_for(clients), sale_id, opts, own_pool)
    finally:
        if pool is None:
            own_pool.shutdown(wait=True)


def card_token(api_base: str, number: str = "4242424242424242") -> str:
    """What Stripe.js `createToken` does: a publishable-key call to /v1/tokens."""
    response = requests.post(f"{api_base}/v1/tokens", data={
        "key": "pk_test_embedded", "card[number]": number, "card[exp_month]": "12",
        "card[exp_year]": "2034", "card[cvc]": "123"}, timeout=10)
    response.raise_for_status()
    return str(response.json()["id"])
