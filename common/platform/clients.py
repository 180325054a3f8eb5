"""Clients for Redis, MongoDB and Stripe, created in one place from settings.

Processes build one `Clients` at start-up and pass it down, so tests can point the same
code at throw-away servers. Two Redis roles: `sales_redis` holds the waiting room and sale
data (a Redis Cluster when REDIS_CLUSTER_NODES is set, every sale on its own slot), `redis`
the rest (Celery's broker, rate limits, the token denylist with its pub/sub, locks of the
whole shop); without a cluster they are the same client.

A domain that keeps a background follower of Redis per process (accounts' copy of the token
denylist) gets it from `Clients.follower`: the platform names no domain.
"""

from __future__ import annotations

import select
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol, TypeVar
from urllib.parse import urlsplit

import redis
import stripe
from pymongo import MongoClient
from pymongo.database import Database
from redis.cluster import ClusterNode, RedisCluster

from common.platform.settings import Settings

_FOLLOWER_START = threading.Lock()


class Follower(Protocol):
    def stop(self) -> None: ...


F = TypeVar("F", bound=Follower)

try:  # the OS's poll even where gevent has patched `select` (a zero timeout never blocks)
    from gevent.monkey import get_original

    _native_poll = get_original("select", "poll")
except ImportError:  # pragma: no cover - gevent is a dependency of the API
    _native_poll = select.poll


def _idle_and_open(connection: redis.connection.AbstractConnection) -> bool:
    """True when a pooled connection is connected with nothing to read: no reply left over,
    not closed by the server. What redis-py checks before every command, through `select`,
    which under gevent is the cooperative poll: a watcher and a switch to the hub each time,
    about 40 us of an API worker's CPU per command (py-spy, loadtests/bench_admission.py)."""
    sock = getattr(connection, "_sock", None)
    if sock is None or (hasattr(sock, "pending") and sock.pending()):
        return False
    poller = _native_poll()
    poller.register(sock, select.POLLIN)
    return not poller.poll(0)


class _QuickCheck:
    """Hands out a connection after the cheap check above; anything else (not connected,
    readable: leftover data or a closed socket) gets redis-py's full check and reconnect."""

    def ensure_connection(self, connection: redis.connection.AbstractConnection) -> None:
        if not _idle_and_open(connection):
            super().ensure_connection(connection)  # type: ignore[misc]


class QuickCheckBlockingPool(_QuickCheck, redis.BlockingConnectionPool):
    pass


class QuickCheckPool(_QuickCheck, redis.ConnectionPool):
    pass


def make_redis(url: str, max_connections: int = 200, pool_timeout: float = 10.0,
               **kwargs: object) -> redis.Redis:
    """A client on a blocking pool: past `max_connections` a caller waits up to `pool_timeout`
    for a connection to come back (a surge queues) instead of failing at once."""
    # Short timeouts: an unreachable Redis must surface as a clean 503, not a hung request.
    options: dict[str, object] = {
        "decode_responses": True,
        "socket_connect_timeout": 2,
        "socket_timeout": 5,
        "health_check_interval": 15,
        "retry_on_timeout": False,
    }
    options.update(kwargs)
    pool = QuickCheckBlockingPool.from_url(
        url, max_connections=max_connections, timeout=pool_timeout, **options)
    return redis.Redis(connection_pool=pool)


def make_redis_cluster(nodes: list[tuple[str, int]], max_connections: int = 200) -> RedisCluster:
    """A Redis Cluster client: each command, script (EVALSHA, loaded per node on first use)
    and one-slot pipeline goes to the node owning its keys' slot; a moved slot is followed.
    `max_connections` is per node."""
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in nodes],
        decode_responses=True, socket_connect_timeout=2, socket_timeout=5,
        health_check_interval=15, max_connections=max_connections,
        connection_pool_class=QuickCheckPool,
    )


def make_mongo(uri: str) -> MongoClient:
    return MongoClient(
        uri,
        serverSelectionTimeoutMS=3000,
        connectTimeoutMS=3000,
        socketTimeoutMS=10000,
        tz_aware=True,
        retryWrites=True,
    )


def mongo_database_name(uri: str, default: str) -> str:
    path = urlsplit(uri).path.lstrip("/")
    return path or default


def make_stripe(settings: Settings) -> stripe.StripeClient:
    base = {"api": settings.stripe_api_base} if settings.stripe_api_base else None
    return stripe.StripeClient(
        settings.require("stripe_secret_key"),
        base_addresses=base,  # type: ignore[arg-type]
        max_network_retries=2,
        http_client=stripe.RequestsClient(timeout=settings.stripe_timeout_seconds),
    )


@dataclass
class Clients:
    """Lazily-connected clients of one process."""

    settings: Settings

    @cached_property
    def sales_redis(self) -> redis.Redis:
        """Where sales and waiting rooms live: the cluster when configured, else `redis`.
        (Defined before `redis`, which inside this class names the property.)"""
        nodes = self.settings.cluster_nodes
        if not nodes:
            return self.redis
        # RedisCluster offers the commands the domain uses; typed as redis.Redis for its callers.
        return make_redis_cluster(nodes, self.settings.redis_max_connections)  # type: ignore[return-value]

    @cached_property
    def redis(self) -> redis.Redis:
        return make_redis(self.settings.require("redis_url"),
                          max_connections=self.settings.redis_max_connections,
                          pool_timeout=self.settings.redis_pool_timeout_seconds)

    @cached_property
    def mongo(self) -> MongoClient:
        return make_mongo(self.settings.require("mongodb_uri"))

    @cached_property
    def db(self) -> Database:
        uri = self.settings.require("mongodb_uri")
        return self.mongo[mongo_database_name(uri, self.settings.mongodb_db)]

    @cached_property
    def stripe(self) -> stripe.StripeClient:
        return make_stripe(self.settings)

    def follower(self, name: str, start: Callable[[], F]) -> F:
        """The process's one follower called `name`, started by `start` on first use (so after
        a fork), stopped by close()."""
        followers: dict[str, Follower] = self.__dict__.setdefault("_followers", {})
        made = followers.get(name)
        if made is None:
            with _FOLLOWER_START:
                made = followers.get(name)
                if made is None:
                    made = followers[name] = start()
        return made  # type: ignore[return-value]

    def close(self) -> None:
        for follower in self.__dict__.pop("_followers", {}).values():
            follower.stop()
        if "sales_redis" in self.__dict__ and self.sales_redis is not self.__dict__.get("redis"):
            self.sales_redis.close()
        if "redis" in self.__dict__:
            self.redis.close()
        if "mongo" in self.__dict__:
            self.mongo.close()
