"""The lobby and a fair start (API v2 "Lobby and a fair start", "Chance to buy"), against the
real Redis, MongoDB and Stripe emulator. The draw is checked with an implementation of
`hmac-sha256-v1` written here from the contract (hashlib/hmac), not the product's."""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta

import pytest

from common.auditing.audit import audit_sale, read_sale_snapshot
from common.flash_sale import lobby, sale_keys, sales, waiting_room
from common.platform.errors import QuantityTooLarge, SaleNotOpen, TicketNotActive
from tests.accounts import bearer, create_product, register, register_admin
from tests.conftest import settings_env
from tests.waiting_room_helpers import drain, gateway_for, make_product


def contract_order(seed_hex: str, ticket_ids: list[str]) -> list[str]:
    """The contract's order, independently: ids sorted ascending by the raw digest."""
    seed = bytes.fromhex(seed_hex)
    return sorted(ticket_ids, key=lambda t: hmac.new(seed, t.encode("utf-8"), hashlib.sha256).digest())


def lobby_sale(clients, stock: int = 10, *, opens_in: float = -5, starts_in: float = 2.0,
               per_user_limit: int = 1, product_stock: int | None = None) -> dict:
    product_id = make_product(clients, product_stock or stock)
    now = datetime.now(UTC)
    return sales.create_sale(
        clients.db, clients.redis, product_id=product_id, stock=stock, price_cents=1999,
        starts_at=now + timedelta(seconds=starts_in), ends_at=now + timedelta(hours=1),
        per_user_limit=per_user_limit, lobby_opens_at=now + timedelta(seconds=opens_in))


def wait_until(moment: datetime) -> None:
    time.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()) + 0.05)


def seq_of(clients, sale_id: str, ticket_id: str) -> int:
    return int(clients.redis.hget(sale_keys.ticket_key(sale_id, ticket_id), "seq"))


def test_lobby_admission_rules(clients):
    sale = lobby_sale(clients, stock=5, starts_in=30, per_user_limit=2)
    sale_id = sale["_id"]
    first = waiting_room.admit(clients.redis, sale_id, "ada", 1)
    assert first.created and not first.kick
    ticket = first.ticket
    assert ticket["status"] == "lobby" and ticket["position"] is None
    assert ticket["units_ahead"] == 0 and ticket["outlook"] == "likely"
    # One live ticket per user: the same ticket again (200), and the per-user limit holds.
    again = waiting_room.admit(clients.redis, sale_id, "ada", 1)
    assert not again.created and again.ticket["id"] == ticket["id"]
    with pytest.raises(QuantityTooLarge):
        waiting_room.admit(clients.redis, sale_id, "bob", 3)
    # Nothing that waits for the opening: no stream entry, no place, no worker nudged.
    assert clients.redis.xlen(sale_keys.stream_key(sale_id)) == 0
    assert sales.read_counters(clients.redis, sale_id).issued == 0
    assert sales.public_sale(sale, sales.read_counters(clients.redis, sale_id))["status"] == "lobby"
    # A lobby ticket cannot be given up before it has its place.
    from common.billing.payments import cancel_ticket
    with pytest.raises(TicketNotActive):
        cancel_ticket(clients.redis, gateway_for(clients), ticket["id"], "ada")
    # The start step before the start does nothing.
    assert lobby.start_lobby(clients.redis, sale_id).state == "not_yet"


def test_before_the_lobby_opens_409_and_no_lobby_when_null(clients):
    early = lobby_sale(clients, opens_in=30, starts_in=60)
    with pytest.raises(SaleNotOpen):
        waiting_room.admit(clients.redis, early["_id"], "ada", 1)
    assert sales.public_sale(early, None)["status"] == "scheduled"
    product_id = make_product(clients, 5)
    now = datetime.now(UTC)
    v1 = sales.create_sale(clients.db, clients.redis, product_id=product_id, stock=5, price_cents=100,
                           starts_at=now + timedelta(seconds=30), ends_at=now + timedelta(hours=1),
                           lobby_opens_at=None)
    with pytest.raises(SaleNotOpen):
        waiting_room.admit(clients.redis, v1["_id"], "ada", 1)
    assert sales.public_sale(v1, None)["status"] == "scheduled"
    assert sales.public_sale(v1, None)["fairness"]["algorithm"] == "hmac-sha256-v1"


def test_the_start_gives_the_drawn_order_ahead_of_later_arrivals_and_the_seed_is_hidden_until_then(
        client, clients):
    sale = lobby_sale(clients, stock=30, starts_in=2.5)
    sale_id = sale["_id"]
    lobby_ids = [waiting_room.admit(clients.redis, sale_id, f"early-{i}", 1).ticket["id"] for i in range(60)]
    # Before the start: the commitment is public, the seed nowhere in an answer.
    before = client.get(f"/api/sales/{sale_id}/fairness").get_json()
    assert before["seed"] is None and before["lobby_size"] == 60 and before["entries"] == []
    assert before["algorithm"] == "hmac-sha256-v1"
    shown = client.get(f"/api/sales/{sale_id}").get_json()
    assert shown["status"] == "lobby" and shown["fairness"] == {
        "algorithm": "hmac-sha256-v1", "commitment": before["commitment"]}
    assert sale["fairness_seed"] not in str(shown) and sale["fairness_seed"] not in str(before)
    wait_until(sale["starts_at"])
    # Admitted after the start, before the lobby is placed: behind the lobby, outside the stream.
    late_ids = [waiting_room.admit(clients.redis, sale_id, f"late-{i}", 1).ticket["id"] for i in range(5)]
    assert clients.redis.xlen(sale_keys.stream_key(sale_id)) == 0
    assert [seq_of(clients, sale_id, t) for t in late_ids] == [61, 62, 63, 64, 65]
    report = lobby.start_lobby(clients.redis, sale_id, chunk_size=7)
    assert report.state == "placed" and report.done and report.placed_now == 60 and report.released_now == 5
    assert lobby.start_lobby(clients.redis, sale_id).placed_now == 0  # idempotent

    # The public answer alone gives the order (paged), and it is the tickets' places.
    entries, cursor = [], None
    while True:
        page = client.get(f"/api/sales/{sale_id}/fairness",
                          query_string={"limit": 25, **({"cursor": cursor} if cursor else {})}).get_json()
        entries += page["entries"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert entries == sorted(lobby_ids) and page["lobby_size"] == 60
    assert hashlib.sha256(bytes.fromhex(page["seed"])).hexdigest() == page["commitment"]
    order = contract_order(page["seed"], entries)
    assert [seq_of(clients, sale_id, t) for t in order] == list(range(1, 61))
    # The deciders see the lobby first, in place order, then the later arrivals.
    stream = [data["ticket_id"] for _, data in clients.redis.xrange(sale_keys.stream_key(sale_id))]
    assert stream == order + late_ids
    ticket = waiting_room.read_ticket(clients.redis, order[40])
    assert ticket["status"] == "queued" and ticket["position"] == 41
    assert ticket["units_ahead"] == 40 and ticket["outlook"] == "unlikely"
    assert waiting_room.read_ticket(clients.redis, order[10])["outlook"] == "likely"
    # Admitted once the lobby is placed: straight into the stream.
    after = waiting_room.admit(clients.redis, sale_id, "later", 1).ticket
    assert after["position"] == 66 and after["units_ahead"] == 65
    drain(clients, sale_id)
    statuses = [waiting_room.read_ticket(clients.redis, t)["status"] for t in order]
    assert statuses == ["reserved"] * 30 + ["sold_out"] * 30
    assert waiting_room.read_ticket(clients.redis, order[45]).get("outlook") is None
    snapshot = read_sale_snapshot(clients.redis, clients.db, sale_id, stripe_client=clients.stripe)
    assert audit_sale(snapshot, intents_closed=False) == []


def test_lobby_over_http_202_then_200_and_units_ahead(client, clients):
    admin = register_admin(client, clients)
    product = create_product(client, admin["access_token"], stock=20)
    now = datetime.now(UTC)
    created = client.post("/api/sales", headers=bearer(admin["access_token"]), json={
        "product_id": product["id"], "stock": 3, "price_cents": 500,
        "starts_at": (now + timedelta(seconds=60)).isoformat(),
        "ends_at": (now + timedelta(hours=1)).isoformat()})
    assert created.status_code == 201, created.get_json()
    sale = created.get_json()
    assert sale["status"] == "lobby" and len(sale["fairness"]["commitment"]) == 64
    shopper = register(client)
    joined = client.post(f"/api/sales/{sale['id']}/tickets", json={}, headers=bearer(shopper["access_token"]))
    assert joined.status_code == 202
    assert joined.get_json()["status"] == "lobby" and joined.get_json()["position"] is None
    again = client.post(f"/api/sales/{sale['id']}/tickets", json={}, headers=bearer(shopper["access_token"]))
    assert again.status_code == 200 and again.get_json()["id"] == joined.get_json()["id"]
    assert again.get_json()["outlook"] == "likely"
    no_lobby = client.post("/api/sales", headers=bearer(admin["access_token"]), json={
        "product_id": product["id"], "stock": 3, "price_cents": 500, "lobby_opens_at": None,
        "starts_at": (now + timedelta(seconds=60)).isoformat(),
        "ends_at": (now + timedelta(hours=1)).isoformat()}).get_json()
    assert no_lobby["status"] == "scheduled" and no_lobby["lobby_opens_at"] is None
    refused = client.post(f"/api/sales/{no_lobby['id']}/tickets", json={},
                          headers=bearer(shopper["access_token"]))
    assert refused.status_code == 409 and refused.get_json()["error"]["code"] == "sale_not_open"
    bad = client.get(f"/api/sales/{sale['id']}/fairness", query_string={"limit": 1001})
    assert bad.status_code == 422


@pytest.mark.slow
def test_the_draw_is_fair_over_many_lobbies(clients):
    """Arrival order says nothing about the place: correlation near zero, and each arrival
    rank lands on each place about equally often (chi-square)."""
    lobbies, size = 300, 10
    now = datetime.now(UTC)
    # Room for 300 sales and 3,000 admissions on a loaded machine: an admission after the start
    # queues in arrival order, which would read as an unfair draw rather than a slow set-up.
    starts = now + timedelta(seconds=20)
    product_id = make_product(clients, lobbies * 2)
    sale_ids = [str(sales.create_sale(
        clients.db, clients.redis, product_id=product_id, stock=2, price_cents=100, starts_at=starts,
        ends_at=starts + timedelta(hours=1), lobby_opens_at=now)["_id"]) for _ in range(lobbies)]
    admissions = {s: [waiting_room.admit(clients.redis, s, f"u{i}", 1).ticket for i in range(size)]
                  for s in sale_ids}
    late = [t["id"] for tickets in admissions.values() for t in tickets if t["status"] != "lobby"]
    assert not late, f"{len(late)} admissions came after the start: the set-up was too slow"
    arrivals = {s: [t["id"] for t in tickets] for s, tickets in admissions.items()}
    wait_until(starts)
    counts = [[0] * size for _ in range(size)]
    pairs = []
    for sale_id, ids in arrivals.items():
        assert lobby.start_lobby(clients.redis, sale_id).done
        for rank, ticket_id in enumerate(ids):
            place = seq_of(clients, sale_id, ticket_id) - 1
            counts[rank][place] += 1
            pairs.append((rank, place))
    n = len(pairs)
    mean = (size - 1) / 2
    cov = sum((r - mean) * (p - mean) for r, p in pairs) / n
    var = sum((r - mean) ** 2 for r, _ in pairs) / n
    correlation = cov / var
    expected = lobbies / size
    chi_square = sum((c - expected) ** 2 / expected for row in counts for c in row)
    dof = (size - 1) ** 2
    # p = 0.001 critical value by the Wilson-Hilferty approximation.
    z = 3.09
    critical = dof * (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3
    print(f"correlation={correlation:.4f} chi_square={chi_square:.1f} dof={dof} critical={critical:.1f}")
    assert abs(correlation) < 4 / math.sqrt(n)
    assert chi_square < critical
    # Each ticket exactly one place, 1..size, in every lobby.
    assert all(sum(row) == lobbies for row in counts)
    assert all(sum(row[place] for row in counts) == lobbies for place in range(size))


CRASHING_START = textwrap.dedent("""
    import sys, time
    from common.flash_sale import lobby
    from common.platform.clients import Clients
    from common.platform.settings import load_settings
    redis_client = Clients(load_settings()).redis
    lobby.start_lobby(redis_client, sys.argv[1], chunk_size=100,
                      after_chunk=lambda placed: (print(placed, flush=True), time.sleep(0.1)))
""")


@pytest.mark.slow
def test_a_start_step_killed_halfway_then_run_again_gives_one_place_each(clients, settings):
    sale = lobby_sale(clients, stock=50, starts_in=6, per_user_limit=1)
    sale_id = sale["_id"]
    ids = [waiting_room.admit(clients.redis, sale_id, f"s{i}", 1).ticket["id"] for i in range(3000)]
    wait_until(sale["starts_at"])
    process = subprocess.Popen([sys.executable, "-c", CRASHING_START, sale_id], stdout=subprocess.PIPE,
                               env=settings_env(settings), text=True, start_new_session=True)
    assert process.stdout is not None
    for line in process.stdout:
        if int(line) >= 1000:
            break
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)
    process.stdout.close()
    placed = int(clients.redis.hget(sale_keys.counters_key(sale_id), "lobby_placed"))
    assert 1000 <= placed < 3000, placed
    # Admitted while the step lay dead: behind the lobby.
    late = waiting_room.admit(clients.redis, sale_id, "late", 1).ticket["id"]
    snapshot = read_sale_snapshot(clients.redis, clients.db, sale_id)
    assert audit_sale(snapshot) == []
    report = lobby.start_lobby(clients.redis, sale_id)
    assert report.done and report.placed_now == 3000 - placed
    seed = clients.db.sales.find_one({"_id": sale_id})["fairness_seed"]
    order = contract_order(seed, ids)
    assert [seq_of(clients, sale_id, t) for t in order] == list(range(1, 3001))
    stream = [data["ticket_id"] for _, data in clients.redis.xrange(sale_keys.stream_key(sale_id))]
    assert stream == [*order, late]
    drain(clients, sale_id)
    snapshot = read_sale_snapshot(clients.redis, clients.db, sale_id, stripe_client=clients.stripe)
    assert audit_sale(snapshot, intents_closed=False) == []
    assert [waiting_room.read_ticket(clients.redis, t)["status"] for t in order[:50]] == ["reserved"] * 50


def test_flashsale_audit_fairness_recomputes_from_the_public_answer(clients, settings):
    sale = lobby_sale(clients, stock=5, starts_in=1.5)
    sale_id = sale["_id"]
    for i in range(30):
        waiting_room.admit(clients.redis, sale_id, f"a{i}", 1)
    wait_until(sale["starts_at"])
    lobby.start_lobby(clients.redis, sale_id)
    command = [sys.executable, "-m", "common.cli", "audit-fairness", "--sale", sale_id]
    fair = subprocess.run(command, env=settings_env(settings), capture_output=True, text=True, timeout=60)
    assert fair.returncode == 0, fair.stdout + fair.stderr
    assert "OK" in fair.stdout and "30 lobby tickets, 0 differences" in fair.stdout
    # Two places swapped: found.
    members = [str(t) for t in clients.redis.zrange(sale_keys.lobby_key(sale_id), 0, -1)]
    first, second = contract_order(sale["fairness_seed"], members)[:2]
    clients.redis.hset(sale_keys.ticket_key(sale_id, first), "seq", 2)
    clients.redis.hset(sale_keys.ticket_key(sale_id, second), "seq", 1)
    unfair = subprocess.run(command, env=settings_env(settings), capture_output=True, text=True, timeout=60)
    assert unfair.returncode == 1 and "2 differences" in unfair.stdout
