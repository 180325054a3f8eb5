"""Per-process resources of a worker: clients, the Stripe gateway, the PaymentIntent pool."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import cache

from common.billing.payments import PaymentContext
from common.billing.stripe_gateway import StripeGateway
from common.platform.clients import Clients
from common.platform.locks import RedisLock
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
    return PaymentContext(mongo=clients.mongo, db=clients.db, redis=clients.sales_redis,
                          gateway=stripe_gateway(),
                          serialize_transactions=settings.mongodb_serialize_transactions)


def with_lock(key: str, ttl_seconds: int) -> RedisLock:
    """A Redis lock so that two beats (or two workers) never run the same sweep at once:
    `with with_lock(key, ttl_seconds) as acquired:`."""
    return RedisLock(runtime_clients().redis, key, ttl_seconds * 1000)
