"""MongoDB transactions, with one extra guard for the embedded wire server.

The embedded server keeps every session on one SQLite connection: aborting one transaction
can undo another's writes that interleaved with it. With `serialize` set (the default for
the embedded server, never needed on a real replica set) transactions run one at a time
under a Redis lock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import redis
from pymongo import MongoClient

from common.platform.locks import RedisLock

T = TypeVar("T")
LOCK_KEY = "flashsale:lock:mongo-transactions"
LOCK_TTL_MS = 15_000


def run_transaction(mongo: MongoClient, body: Callable[[Any], T], *,
                    redis_client: redis.Redis | None = None, serialize: bool = False,
                    wait_seconds: float = 30.0) -> T:
    """Run `body(session)` in a transaction (retried on transient errors by pymongo)."""
    if not serialize or redis_client is None:
        with mongo.start_session() as session:
            return session.with_transaction(body)
    with RedisLock(redis_client, LOCK_KEY, LOCK_TTL_MS, wait_seconds=wait_seconds) as acquired:
        if not acquired:
            raise TimeoutError("timed out waiting for the transaction lock")
        with mongo.start_session() as session:
            return session.with_transaction(body)
