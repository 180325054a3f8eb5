"""Process faults by PID during a shopper run, with real `flashsale serve` processes on a Redis
of the test's own: a worker stopped past the claim idle time, a worker killed while applying
payments, the API's gunicorn worker killed, Redis and MongoDB restarted, beat killed and run
twice. After each, I1-I4 hold once the system settles.

A worker killed in the middle of deciding is tests/test_worker_crash.py.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
import requests
from pymongo import MongoClient

from api.app import create_app
from api.task_queue import TaskQueue
from common.billing import payments
from common.development.ports import free_port
from common.flash_sale import sale_keys, sales, waiting_room
from common.platform.clients import Clients
from tests.faults.flows import (
    access_token,
    deliver,
    event_payload,
    eventually_invariants,
    pay_at_stripe,
    stripe_state,
    wait_settled,
)
from tests.faults.invariants import assert_invariants
from tests.faults.proxy import FaultProxy, Mode
from tests.faults.services import MongoServer, wait_until
from tests.waiting_room_helpers import drain, open_sale, payment_context

pytestmark = [pytest.mark.slow]


def _counter(clients: Clients, sale_id: str, name: str) -> int:
    return int(clients.redis.hget(sale_keys.counters_key(sale_id), name) or 0)


def _holder(clients: Clients, sale_id: str) -> str:
    return clients.redis.get(sale_keys.drain_lock_key(sale_id)) or ""


def _pay_some(clients: Clients, sale_id: str, count: int) -> list[str]:
    """Pay `count` reserved tickets at Stripe; returns their PaymentIntent ids."""
    paid = []
    for _, data in clients.redis.xrange(sale_keys.stream_key(sale_id)):
        fields = clients.redis.hgetall(sale_keys.ticket_key(sale_id, data["ticket_id"]))
        if fields.get("status") == "reserved" and len(paid) < count:
            assert pay_at_stripe(clients, fields["payment_intent_id"]) == "succeeded"
            paid.append(fields["payment_intent_id"])
    return paid


def test_worker_stopped_past_claim_idle_then_continued_never_double_reserves(
        fault_settings, fault_clients, spawn):
    """SIGSTOP a worker mid-batch until its lock and entries go stale, let another worker take
    the sale over, then SIGCONT: two workers saw the same tickets, each still has one
    reservation and one live PaymentIntent."""
    clients = fault_clients
    stock, shoppers = 30, 90
    sale_id = open_sale(clients, stock=stock)
    for i in range(shoppers):
        waiting_room.admit(clients.redis, sale_id, f"stop-{i}", 1)
    slow = {"DECISION_BATCH_SIZE": "5", "PAYMENT_INTENT_CONCURRENCY": "1", "CLAIM_IDLE_MS": "1000"}
    victim = spawn("worker", fault_settings, label="worker-stopped", **slow)
    TaskQueue(fault_settings.broker_url).send("worker.tasks.drain_sale", sale_id)
    wait_until(lambda: _counter(clients, sale_id, "reserved") >= 5, 30, interval=0.01,
               message="the first reservations")
    os.kill(victim.pid, signal.SIGSTOP)
    stopped_at = time.monotonic()
    assert _holder(clients, sale_id).startswith(f"decider-{victim.pid}-")
    try:
        successor = spawn("worker", fault_settings, label="worker-successor", **slow)
        spawn("beat", fault_settings, label="beat")
        # The lock (5 s) and the stopped worker's entries (1 s idle) go stale; the successor
        # takes the sale and claims what the stopped one had read.
        wait_until(lambda: _holder(clients, sale_id).startswith(f"decider-{successor.pid}-"), 40,
                   message="the successor to take the sale")
        wait_until(lambda: _counter(clients, sale_id, "served") >= shoppers // 2, 40,
                   message="the successor to decide")
    finally:
        os.kill(victim.pid, signal.SIGCONT)
    print(f"\nworker {victim.pid} stopped for {time.monotonic() - stopped_at:.1f}s")
    wait_settled(clients, sale_id, timeout=60)
    # The continued worker may still hold a PaymentIntent it created while stopped: it learns
    # it lost the race when that call returns, and cancels it. So: once it has caught up.
    statuses = Counter(t["status"] for t in eventually_invariants(clients, sale_id).tickets.values())
    assert statuses == {"reserved": stock, "sold_out": shoppers - stock}
    view = stripe_state(clients, sale_id)
    cancelled = sum(i.status == "canceled" for i in view.intents.values())
    print(f"{len(view.intents)} intents for {stock} reservations, {cancelled} duplicates cancelled")
    # The paid side works after the takeover too.
    for intent_id in _pay_some(clients, sale_id, 3):
        TaskQueue(fault_settings.broker_url).send("worker.tasks.apply_payment_event", "evt_" + intent_id,
                                                  intent_id, "payment_intent.succeeded")
    wait_until(lambda: _counter(clients, sale_id, "paid") == 3, 30, message="3 payments applied")
    eventually_invariants(clients, sale_id)


def test_worker_killed_while_applying_payments_loses_no_payment(fault_settings, fault_clients,
                                                                fault_client, spawn):
    """SIGKILL the worker in the middle of applying webhooks. Its tasks stay unacknowledged in
    the broker for the visibility timeout; reconcile, expiry and the redelivered tasks finish
    every payment, in whatever order: each succeeded PaymentIntent ends with exactly one order."""
    clients, secret = fault_clients, fault_settings.stripe_webhook_secret
    count = 16
    sale_id = open_sale(clients, stock=count, ttl=6, product_stock=count)
    for i in range(count):
        waiting_room.admit(clients.redis, sale_id, f"payer-{i}", 1)
    drain(clients, sale_id)
    intents = _pay_some(clients, sale_id, count)
    assert len(intents) == count
    victim = spawn("worker", fault_settings, label="worker-killed")
    for intent_id in intents:  # Stripe's deliveries, through the webhook endpoint
        assert deliver(fault_client, event_payload("payment_intent.succeeded", intent_id),
                       secret).status_code == 200
    wait_until(lambda: clients.db.orders.count_documents({"sale_id": sale_id}) >= 2, 30, interval=0.01,
               message="the first orders")
    os.kill(victim.pid, signal.SIGKILL)
    victim.popen.wait(10)  # type: ignore[union-attr]
    at_kill = clients.db.orders.count_documents({"sale_id": sale_id})
    print(f"\nworker killed after {at_kill} of {count} orders; "
          f"{clients.redis.hlen('unacked')} tasks left unacknowledged")

    spawn("worker", fault_settings, label="worker-after")
    spawn("beat", fault_settings, label="beat")
    wait_until(lambda: _counter(clients, sale_id, "paid") == count, 60,
               message="every payment to end in an order")
    wait_settled(clients, sale_id)
    eventually_invariants(clients, sale_id)
    assert clients.db.orders.count_documents({"sale_id": sale_id}) == count


def _stalled_stripe(settings) -> FaultProxy:
    """A proxy to the Stripe emulator that forwards nothing until set to PASS: a worker's
    Stripe call waits inside its task."""
    parts = urlsplit(settings.stripe_api_base)
    return FaultProxy(parts.hostname, parts.port, mode=Mode.BLACKHOLE)


def _paid_intent(clients: Clients) -> tuple[str, str]:
    """A sale with one reserved ticket, paid at Stripe: (sale_id, intent_id)."""
    sale_id = open_sale(clients, stock=1, product_stock=1)
    waiting_room.admit(clients.redis, sale_id, "payer", 1)
    drain(clients, sale_id)
    [intent_id] = _pay_some(clients, sale_id, 1)
    return sale_id, intent_id


def test_webhook_task_of_a_killed_worker_goes_to_another_within_a_minute(
        fault_settings, fault_clients, fault_client, spawn):
    """SIGKILL the worker while it waits on Stripe inside a webhook's task. With no beat (so no
    reconcile), only the broker's redelivery can apply the payment: a worker started after
    the kill makes the order within a minute (the visibility timeout was an hour)."""
    clients, secret = fault_clients, fault_settings.stripe_webhook_secret
    sale_id, intent_id = _paid_intent(clients)
    with _stalled_stripe(fault_settings) as stalled:
        victim = spawn("worker", fault_settings, label="worker-killed",
                       STRIPE_API_BASE=stalled.url("http"), STRIPE_TIMEOUT_SECONDS="120")
        assert deliver(fault_client, event_payload("payment_intent.succeeded", intent_id),
                       secret).status_code == 200
        wait_until(lambda: stalled.open_connections() >= 1, 30, interval=0.05,
                   message="the worker to call Stripe inside the task")
        assert clients.redis.hlen("unacked") == 1
        os.kill(victim.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        victim.popen.wait(10)  # type: ignore[union-attr]
    assert clients.db.orders.count_documents({"sale_id": sale_id}) == 0
    spawn("worker", fault_settings, label="worker-after")
    wait_until(lambda: clients.db.orders.count_documents({"sale_id": sale_id}) == 1, 90,
               interval=0.2, message="the order from the redelivered task")
    took = time.monotonic() - killed_at
    print(f"\norder made {took:.1f}s after the kill")
    assert took < 60
    assert _counter(clients, sale_id, "paid") == 1


def test_a_live_worker_keeps_a_task_that_outlasts_the_visibility_timeout(
        fault_settings, fault_clients, fault_client, spawn):
    """A worker that waits on Stripe for several visibility timeouts keeps its task: another
    worker, sweeping all the while and with a Stripe that answers, never gets a copy (it
    would have made the order); the task then finishes once."""
    clients, secret = fault_clients, fault_settings.stripe_webhook_secret
    timeout = 4
    sale_id, intent_id = _paid_intent(clients)
    with _stalled_stripe(fault_settings) as stalled:
        spawn("worker", fault_settings, label="worker-holder", STRIPE_API_BASE=stalled.url("http"),
              STRIPE_TIMEOUT_SECONDS="40", CELERY_VISIBILITY_TIMEOUT_SECONDS=str(timeout))
        assert deliver(fault_client, event_payload("payment_intent.succeeded", intent_id),
                       secret).status_code == 200
        wait_until(lambda: stalled.open_connections() >= 1, 30, interval=0.05,
                   message="the worker to call Stripe inside the task")
        spawn("worker", fault_settings, label="worker-other",
              CELERY_VISIBILITY_TIMEOUT_SECONDS=str(timeout))
        [held] = clients.redis.hkeys("unacked")
        deadline = time.monotonic() + 4 * timeout  # about a dozen sweeps
        while time.monotonic() < deadline:
            assert clients.db.orders.count_documents({"sale_id": sale_id}) == 0, "a copy ran"
            assert clients.redis.hkeys("unacked") == [held]
            taken_at = clients.redis.zscore("unacked_index", held)
            assert taken_at is not None and time.time() - taken_at < timeout  # renewed
            time.sleep(0.25)
        stalled.set(Mode.PASS)  # the call times out and is tried again, now through
        wait_until(lambda: clients.db.orders.count_documents({"sale_id": sale_id}) == 1, 90,
                   interval=0.2, message="the held task to finish")
    wait_until(lambda: clients.redis.hlen("unacked") == 0, 30, message="the task acknowledged")
    assert _counter(clients, sale_id, "paid") == 1


def test_api_worker_killed_during_admissions_loses_no_ticket(fault_settings, fault_clients, spawn):
    """SIGKILL one gunicorn worker while shoppers join: gunicorn respawns it, admissions go on,
    and every ticket issued belongs to exactly one shopper who knows it."""
    clients = fault_clients
    sale_id = open_sale(clients, stock=40)
    port = free_port()
    api = spawn("api", fault_settings, label="api", PORT=str(port), WEB_CONCURRENCY="2")
    base = f"http://127.0.0.1:{port}"
    workers_before = {p.pid for p in api.children()}
    assert len(workers_before) == 2
    shoppers = [f"usr_gun_{i}" for i in range(80)]
    tokens = {u: access_token(fault_settings, u) for u in shoppers}
    outcomes: dict[str, list[str]] = {u: [] for u in shoppers}
    tickets: dict[str, str] = {}
    go = threading.Event()

    def shop(user: str) -> None:
        session = requests.Session()
        go.wait()
        for _ in range(20):
            try:
                response = session.post(f"{base}/api/sales/{sale_id}/tickets", json={"quantity": 1},
                                        headers={"Authorization": f"Bearer {tokens[user]}"}, timeout=10)
            except requests.RequestException as exc:
                outcomes[user].append(type(exc).__name__)
                time.sleep(0.1)
                continue
            outcomes[user].append(str(response.status_code))
            if response.status_code in (200, 202):
                tickets[user] = response.json()["id"]
                return
            assert response.status_code == 503, response.text
            time.sleep(0.1)

    with ThreadPoolExecutor(len(shoppers)) as pool:
        futures = [pool.submit(shop, u) for u in shoppers]
        go.set()
        time.sleep(0.05)
        killed = sorted(workers_before)[0]
        os.kill(killed, signal.SIGKILL)
        for future in futures:
            future.result()
    wait_until(lambda: len(api.children()) == 2 and killed not in {p.pid for p in api.children()}, 30,
               message="gunicorn to respawn its worker")
    seen = Counter(o for per_user in outcomes.values() for o in per_user)
    print(f"\ngunicorn worker {killed} killed; answers {dict(seen)}")
    assert not any(o.startswith("5") and o != "503" for o in seen), seen
    assert set(tickets) == set(shoppers), "every shopper ends up with a ticket"
    in_stream = [d["ticket_id"] for _, d in clients.redis.xrange(sale_keys.stream_key(sale_id))]
    assert sorted(in_stream) == sorted(tickets.values()), "no ticket is lost or left without its shopper"
    # The respawned worker serves as before.
    after = requests.get(f"{base}/api/sales/{sale_id}", timeout=10)
    assert after.status_code == 200 and after.json()["queue_length"] == len(shoppers)
    drain(clients, sale_id)
    assert_invariants(clients.redis, clients.db, sale_id, stripe_state(clients, sale_id))


def test_redis_killed_and_restarted_with_its_aof_keeps_tickets_and_stock(fault_settings, fault_clients,
                                                                         redis_server, spawn):
    clients = fault_clients
    stock = 15
    sale_id = open_sale(clients, stock=stock, ttl=300)
    for i in range(30):
        waiting_room.admit(clients.redis, sale_id, f"aof-{i}", 1)
    spawn("worker", fault_settings, label="worker")
    spawn("beat", fault_settings, label="beat")
    wait_until(lambda: _counter(clients, sale_id, "served") == 30, 40, message="the first wave decided")
    wait_settled(clients, sale_id)
    paid = _pay_some(clients, sale_id, 4)
    for intent_id in paid:
        TaskQueue(fault_settings.broker_url).send("worker.tasks.apply_payment_event", "evt_" + intent_id,
                                                  intent_id, "payment_intent.succeeded")
    wait_until(lambda: _counter(clients, sale_id, "paid") == 4, 30, message="4 payments")
    before = {t: f["status"] for t, f in
              assert_invariants(clients.redis, clients.db, sale_id).tickets.items()}

    redis_server.kill(signal.SIGKILL)
    time.sleep(1.5)  # worker, beat and shoppers meet a dead Redis for a moment
    redis_server.start()
    clients.redis.connection_pool.disconnect()
    after = {t: f["status"] for t, f in
             assert_invariants(clients.redis, clients.db, sale_id).tickets.items()}
    assert after == before, "every ticket and its status survived the restart"
    counters = sales.read_counters(clients.redis, sale_id)
    assert (counters.sold, counters.reserved, counters.available) == (4, stock - 4, 0)

    # The system carries on: a cancelled reservation's unit goes to a shopper who joins now.
    giver = next(t for t, s in after.items() if s == "reserved")
    owner = clients.redis.hget(sale_keys.ticket_key(sale_id, giver), "user_id")
    payments.cancel_ticket(clients.redis, payment_context(clients).gateway, giver, owner)
    late = waiting_room.admit(clients.redis, sale_id, "aof-late", 1).ticket["id"]
    TaskQueue(fault_settings.broker_url).send("worker.tasks.drain_sale", sale_id)
    wait_until(lambda: waiting_room.read_ticket(clients.redis, late)["status"] == "reserved", 40,
               message="the late shopper to get the returned unit")
    wait_settled(clients, sale_id)
    eventually_invariants(clients, sale_id)


def test_mongodb_restarted_mid_payments_every_payment_ends_in_one_order(fault_settings, spawn, tmp_path):
    mongo = MongoServer(tmp_path).start()
    try:
        local = fault_settings.model_copy(update={"mongodb_uri": mongo.uri + "flashsale_faults"})
        clients = Clients(local)
        # The API's store timeouts, shortened so that each refused delivery takes a moment.
        clients.__dict__["mongo"] = MongoClient(local.mongodb_uri, serverSelectionTimeoutMS=500,
                                                connectTimeoutMS=500, socketTimeoutMS=3000, tz_aware=True)
        app = create_app(local, clients)
        app.testing = True
        client, secret = app.test_client(), local.stripe_webhook_secret
        count = 10
        sale_id = open_sale(clients, stock=count, product_stock=count)
        for i in range(count):
            waiting_room.admit(clients.redis, sale_id, f"mongo-{i}", 1)
        drain(clients, sale_id)
        intents = _pay_some(clients, sale_id, count)
        spawn("worker", local, label="worker")
        spawn("beat", local, label="beat")
        first, rest = intents[:4], intents[4:]
        for intent_id in first:
            payload = event_payload("payment_intent.succeeded", intent_id)
            assert deliver(client, payload, secret).status_code == 200
        wait_until(lambda: _counter(clients, sale_id, "paid") >= 2, 30, message="the first orders")

        mongo.kill(signal.SIGKILL)
        refused = []
        for intent_id in rest:  # Stripe's deliveries meet a store that is down: 503, retried later
            payload = event_payload("payment_intent.succeeded", intent_id)
            response = deliver(client, payload, secret)
            assert response.status_code == 503, response.get_data(as_text=True)
            assert response.get_json()["error"]["details"] == {"service": "mongodb"}
            refused.append(payload)
        mongo.start()
        for payload in refused:  # Stripe retries
            assert deliver(client, payload, secret).status_code == 200
        wait_until(lambda: _counter(clients, sale_id, "paid") == count, 90,
                   message="every payment to end in an order")
        wait_settled(clients, sale_id)
        eventually_invariants(clients, sale_id)
        assert clients.db.orders.count_documents({"sale_id": sale_id}) == count
        clients.close()
    finally:
        mongo.stop()


def test_beat_killed_restarted_and_doubled_expires_each_reservation_once(fault_settings, fault_clients,
                                                                         spawn):
    clients = fault_clients
    stock = 8
    sale_id = open_sale(clients, stock=stock, ttl=3)
    for i in range(20):
        waiting_room.admit(clients.redis, sale_id, f"beat-{i}", 1)
    spawn("worker", fault_settings, label="worker")
    beat_a = spawn("beat", fault_settings, label="beat-a", EXPIRY_INTERVAL_SECONDS="0.5")
    spawn("beat", fault_settings, label="beat-b", EXPIRY_INTERVAL_SECONDS="0.5")
    wait_until(lambda: _counter(clients, sale_id, "served") == 20, 40, message="the line decided")
    os.kill(beat_a.pid, signal.SIGKILL)
    wait_until(lambda: _counter(clients, sale_id, "expired") == stock, 30,
               message="the first reservations to expire")
    spawn("beat", fault_settings, label="beat-a-again", EXPIRY_INTERVAL_SECONDS="0.5")
    # The returned stock goes to the next shoppers; two of them pay, the rest expire too.
    wave = [waiting_room.admit(clients.redis, sale_id, f"beat-late-{i}", 1).ticket["id"] for i in range(5)]
    wait_until(lambda: all(waiting_room.read_ticket(clients.redis, t)["status"] == "reserved" for t in wave),
               30, message="the second wave to be reserved")
    for ticket_id in wave[:2]:
        intent_id = clients.redis.hget(sale_keys.ticket_key(sale_id, ticket_id), "payment_intent_id")
        assert pay_at_stripe(clients, intent_id) == "succeeded"
        TaskQueue(fault_settings.broker_url).send("worker.tasks.apply_payment_event", "evt_" + intent_id,
                                                  intent_id, "payment_intent.succeeded")
    wait_until(lambda: _counter(clients, sale_id, "expired") == stock + 3, 30,
               message="the unpaid second wave to expire")
    wait_settled(clients, sale_id)
    snapshot = eventually_invariants(clients, sale_id)
    statuses = Counter(t["status"] for t in snapshot.tickets.values())
    assert statuses == {"expired": stock + 3, "paid": 2, "sold_out": 20 - stock}
    assert _counter(clients, sale_id, "expired") == statuses["expired"]
