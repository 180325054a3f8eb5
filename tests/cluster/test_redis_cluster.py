"""The waiting room and sale data on a real Redis Cluster (three masters): every script and
pipeline on one slot, sales spread over the shards, a paid flash sale end to end, a worker
killed mid-batch, and a shard restarted on its AOF mid-sale losing nothing. Each ends with the
sale auditor's invariants (its MULTI/EXEC snapshot runs on the sale's slot)."""

from __future__ import annotations

import inspect
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster, key_slot

from common.billing.payments import apply_intent
from common.development.cluster import LocalCluster
from common.flash_sale import sale_keys, sales, waiting_room
from common.platform.clients import Clients
from tests.faults.invariants import assert_invariants, stripe_view

# The worker-kill test, run again here with the sale data on the cluster (its workers get
# REDIS_CLUSTER_NODES through settings_env).
from tests.test_worker_crash import test_sigkill_mid_batch_loses_no_ticket  # noqa: F401
from tests.waiting_room_helpers import card_token, drain, open_sale, payment_context


def _owner_port(cluster_client: RedisCluster, key: str) -> int:
    """The port of the master that owns `key`'s slot, as the cluster itself says."""
    slot = int(cluster_client.execute_command("CLUSTER KEYSLOT", key))
    for (low, high), owners in cluster_client.execute_command("CLUSTER SLOTS").items():
        if low <= slot <= high:
            return int(owners["primary"][1])
    raise AssertionError(f"no node owns slot {slot}")


def test_every_key_of_a_sale_is_on_the_sale_slot():
    sale_id = sale_keys.new_sale_id()
    ticket_id = sale_keys.new_ticket_id(sale_id)
    slots = set()
    for name, function in inspect.getmembers(sale_keys, inspect.isfunction):
        if not name.endswith("_key"):
            continue
        arguments = {"sale_id": sale_id, "ticket_id": ticket_id, "user_id": "u1", "challenge": "c1"}
        wanted = inspect.signature(function).parameters
        slots.add(key_slot(function(**{k: v for k, v in arguments.items() if k in wanted}).encode()))
    assert slots == {key_slot(("{sale:" + sale_id + "}").encode())}


def test_the_sale_data_is_on_the_cluster_and_the_rest_is_not(clients: Clients):
    assert isinstance(clients.sales_redis, RedisCluster)
    assert isinstance(clients.redis, redis.Redis) and clients.redis is not clients.sales_redis


def test_sales_land_on_different_shards(clients: Clients, redis_cluster: LocalCluster):
    sale_ids = [open_sale(clients, stock=5) for _ in range(9)]
    owners = {}
    for sale_id in sale_ids:
        admission = waiting_room.admit(clients.sales_redis, sale_id, "shopper", 1)
        key = sale_keys.ticket_key(sale_id, admission.ticket["id"])
        port = _owner_port(clients.sales_redis, key)
        owners[sale_id] = port
        # The ticket is on that node itself, next to its sale's counters.
        node = next(n for n in redis_cluster.nodes if n.port == port)
        with node.client() as direct:
            assert direct.exists(key, sale_keys.counters_key(sale_id), sale_keys.stream_key(sale_id)) == 3
    assert len(set(owners.values())) >= 2, owners
    assert set(sale_ids) <= set(sales.all_sale_ids(clients.sales_redis))


def _pay(clients: Clients, ticket_id: str) -> str:
    intent_id = waiting_room.read_ticket(clients.sales_redis, ticket_id)["reservation"]["payment_intent_id"]
    ctx = payment_context(clients)
    ctx.gateway.confirm_with_card_token(intent_id, card_token(clients.settings.stripe_api_base),
                                        email="shopper@example.com")
    return apply_intent(ctx, intent_id)


@pytest.mark.slow
def test_flash_sale_200_shoppers_100_units_paid_on_the_cluster(clients: Clients):
    sale_id = open_sale(clients, stock=100)
    with ThreadPoolExecutor(32) as pool:
        admissions = list(pool.map(
            lambda i: waiting_room.admit(clients.sales_redis, sale_id, f"user-{i}", 1), range(200)))
    assert all(a.created for a in admissions)
    report = drain(clients, sale_id)
    assert (report.decided, report.reserved, report.sold_out) == (200, 100, 100)
    reserved = [a.ticket["id"] for a in admissions
                if waiting_room.read_ticket(clients.sales_redis, a.ticket["id"])["status"] == "reserved"]
    assert len(reserved) == 100
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda t: _pay(clients, t), reserved))
    assert outcomes.count("paid") == 100, outcomes
    counters = sales.read_counters(clients.sales_redis, sale_id)
    assert (counters.available, counters.reserved, counters.sold, counters.paid) == (0, 0, 100, 100)
    assert clients.db.orders.count_documents({"sale_id": sale_id, "status": "paid"}) == 100
    assert_invariants(clients.sales_redis, clients.db, sale_id, stripe_view(clients.stripe, sale_id))


@pytest.mark.slow
def test_a_shard_restarted_on_its_aof_mid_sale_loses_nothing(settings, tmp_path: Path):
    # A cluster of its own, every write fsynced before it is answered (appendfsync always).
    cluster = LocalCluster(tmp_path / "cluster", appendfsync="always").start()
    made = Clients(settings.model_copy(update={"redis_cluster_nodes": cluster.nodes_setting}))
    try:
        sale_id = open_sale(made, stock=80)
        shard = next(n for n in cluster.nodes
                     if n.port == _owner_port(made.sales_redis, sale_keys.counters_key(sale_id)))
        answered: dict[str, str] = {}
        refused: list[str] = []
        restarted = threading.Event()

        def shop(i: int) -> None:
            user = f"aof-{i}"
            for _attempt in range(60):
                try:
                    answered[user] = waiting_room.admit(made.sales_redis, sale_id, user, 1).ticket["id"]
                    return
                except (redis.RedisError, redis.exceptions.RedisClusterException):
                    refused.append(user)  # not admitted: the shopper presses Buy again
                    time.sleep(0.1)

        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(shop, i) for i in range(80)]
            while len(answered) < 30:
                time.sleep(0.01)
            cluster.restart(shard, signal.SIGKILL)
            restarted.set()
            futures += [pool.submit(shop, i) for i in range(80, 160)]
            for future in futures:
                future.result()
        assert restarted.is_set() and len(answered) == 160
        # Every ticket answered before the kill is still there, in the stream and as a hash.
        stream_ids = [d["ticket_id"] for _, d in made.sales_redis.xrange(sale_keys.stream_key(sale_id))]
        assert sorted(stream_ids) == sorted(answered.values())
        counters = sales.read_counters(made.sales_redis, sale_id)
        assert counters.issued == counters.queued == 160 and counters.consistent
        report = drain(made, sale_id)
        assert (report.reserved, report.sold_out) == (80, 80)
        assert_invariants(made.sales_redis, made.db, sale_id, stripe_view(made.stripe, sale_id))
    finally:
        made.mongo.drop_database(made.db.name)
        made.close()
        cluster.stop()
