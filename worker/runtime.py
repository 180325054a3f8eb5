"""Per-process resources of a worker: clients, the Stripe gateway, the PaymentIntent pool."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import cache

from common.billing.payments import PaymentContext
from common.billing.stripe_gateway import StripeGateway
from common.platform.clients import Clients
from common.platform.lua_scripts import scripts_for
from common.platform.schema import ensure_schema
from worker.app import settings


@cache
def runtime_clients() -> Clients:
    clients = Clients(settings)
    ensure_schema(clients.db)
    return clients


@cache
def stripe_gateway() -> StripeGateway:
    return StripeGateway(runtime_clients().stripe, emulator=settings.stripe_emulator)


@cache
def intent_pool() -> ThreadPoolExecutor:
    # PaymentIntents are created concurrently: one slow Stripe call does not hold the line.
    return ThreadPoolExecutor(max_workers=settings.payment_intent_concurrency,
                              thread_name_prefix="intents")


def payment_context() -> PaymentContext:
    clients = runtime_clients()
    return PaymentContext(mongo=clients.mongo, db=clients.db, redis=clients.redis,
                          gateway=stripe_gateway(),
                          serialize_transactions=settings.mongodb_serialize_transactions)


@contextmanager
def with_lock(key: str, ttl_seconds: int) -> Iterator[bool]:
    """A Redis lock so that two beats (or two workers) never run the same sweep at once."""
    redis_client = runtime_clients().redis
    token = secrets.token_hex(8)
    acquired = bool(redis_client.set(key, token, nx=True, ex=ttl_seconds))
    try:
        yield acquired
    finally:
        if acquired:
            scripts_for(redis_client).release_lock(keys=[key], args=[token])
