"""A worker killed with SIGKILL in the middle of deciding: every ticket still reaches exactly
one outcome, and the stock invariant holds. Real Celery workers and beat as subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from api.task_queue import TaskQueue
from common.flash_sale import sale_keys, sales, waiting_room
from tests.conftest import settings_env
from tests.faults.invariants import assert_invariants, stripe_view
from tests.waiting_room_helpers import open_sale

pytestmark = [pytest.mark.slow]

FLASHSALE = str(Path(sys.executable).parent / "flashsale")


def _spawn(name: str, env: dict[str, str], log_dir: Path) -> subprocess.Popen:
    with (log_dir / f"{name}.log").open("ab") as log:  # the child keeps its own copy
        return subprocess.Popen([FLASHSALE, "serve", name.split("-")[0]], env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


# A Redis database of this test's own (sale data and broker): the session's database holds the
# sales of every earlier test and the drain tasks their admissions queued with no worker to
# take them; a worker started there spends minutes on those before it reaches this sale.
OWN_REDIS_DB = 9


@pytest.fixture
def settings(settings):
    own = settings.model_copy(
        update={"redis_url": settings.redis_url.rsplit("/", 1)[0] + f"/{OWN_REDIS_DB}"})
    with redis.Redis.from_url(own.redis_url) as fresh:
        fresh.flushdb()
    return own


def test_sigkill_mid_batch_loses_no_ticket(settings, clients, tmp_path):
    stock, shoppers = 100, 600
    sale_id = open_sale(clients, stock=stock)
    for i in range(shoppers):
        waiting_room.admit(clients.sales_redis, sale_id, f"crash-{i}", 1)
    # Small batches and one PaymentIntent at a time widen the window a kill can land in.
    env = settings_env(settings, DECISION_BATCH_SIZE="10", CLAIM_IDLE_MS="1000",
                       PAYMENT_INTENT_CONCURRENCY="1", DRAIN_IDLE_SECONDS="1",
                       EXPIRY_INTERVAL_SECONDS="1")
    victim = _spawn("worker-a", env, tmp_path)
    survivor = beat = None
    try:
        time.sleep(6)  # let the victim boot alone, so it is the one that takes the sale
        TaskQueue(settings.broker_url).send("worker.tasks.drain_sale", sale_id)
        counters_key = sale_keys.counters_key(sale_id)
        # Kill while the victim holds the sale with decisions made (a loaded machine boots it
        # slowly: wait for both).
        deadline = time.monotonic() + 60
        holder = ""
        while time.monotonic() < deadline:
            reserved = int(clients.sales_redis.hget(counters_key, "reserved") or 0)
            holder = clients.sales_redis.get(sale_keys.drain_lock_key(sale_id)) or ""
            if reserved >= 10 and holder:
                break
            time.sleep(0.005)
        served_at_kill = int(clients.sales_redis.hget(counters_key, "served") or 0)
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(10)
        assert holder.startswith(f"decider-{victim.pid}-"), holder
        assert served_at_kill > 0, "the kill should land after the first decisions"
        pending_at_kill = clients.sales_redis.xpending(sale_keys.stream_key(sale_id), "deciders")["pending"]

        survivor = _spawn("worker-b", env, tmp_path)
        beat = _spawn("beat", env, tmp_path)
        deadline = time.monotonic() + 90
        counters = sales.read_counters(clients.sales_redis, sale_id)
        while time.monotonic() < deadline:
            counters = sales.read_counters(clients.sales_redis, sale_id)
            pending = clients.sales_redis.xpending(sale_keys.stream_key(sale_id), "deciders")["pending"]
            if counters.queued == 0 and pending == 0 and counters.served == shoppers:
                break
            time.sleep(0.5)
    finally:
        for process in (victim, survivor, beat):
            if process is not None:
                _stop(process)

    ids = [data["ticket_id"] for _, data in clients.sales_redis.xrange(sale_keys.stream_key(sale_id))]
    assert len(ids) == shoppers == len(set(ids))
    tickets = [clients.sales_redis.hgetall(sale_keys.ticket_key(sale_id, t)) for t in ids]
    statuses = [t["status"] for t in tickets]
    assert statuses.count("reserved") == stock, (statuses.count("reserving"), pending_at_kill)
    assert statuses.count("sold_out") == shoppers - stock
    assert all(t.get("payment_intent_id", "").startswith("pi_") for t in tickets if t["status"] == "reserved")
    assert counters.consistent and counters.available == 0 and counters.reserved == stock
    # I1-I4 (tests/faults/invariants.py). A PaymentIntent whose creation the kill cut short may
    # be left at the emulator (it ignores idempotency keys); it was never handed to anyone.
    assert_invariants(clients.sales_redis, clients.db, sale_id, stripe_view(clients.stripe, sale_id),
                      one_live_intent=False)
