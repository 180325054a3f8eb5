"""Fairness v2 (API v3 "Verifiable randomness from a public beacon"), against the real Redis,
MongoDB and the embedded drand beacon (its own BLS key, drand's HTTP paths, 1 s rounds here).

The order is recomputed with code written here from the contract (hashlib, hmac, and py_ecc's
pairing for the BLS signature), not the product's."""

from __future__ import annotations

import hashlib
import hmac
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from common.development.ports import free_port
from common.flash_sale import beacon_draw, lobby, sale_keys, sales, waiting_room
from common.flash_sale.sale_gauges import SaleGauges
from tests.conftest import settings_env
from tests.waiting_room_helpers import make_product

DST = b"BLS_SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_NUL_"


# ------------------------------------------------------------------ the contract, independently


def bls_signature_verifies(public_key_hex: str, round_: int, signature_hex: str) -> bool:
    """e(signature, G2) == e(H(sha256(round as 8 bytes big-endian)), public key), with py_ecc
    (pure Python, about 2 s)."""
    from py_ecc.bls.hash_to_curve import hash_to_G1
    from py_ecc.bls.point_compression import decompress_G1, decompress_G2
    from py_ecc.bls.typing import G1Compressed, G2Compressed
    from py_ecc.optimized_bls12_381 import G2, pairing

    key = bytes.fromhex(public_key_hex)
    public_key = decompress_G2(G2Compressed((int.from_bytes(key[:48], "big"),
                                             int.from_bytes(key[48:], "big"))))
    signature = decompress_G1(G1Compressed(int.from_bytes(bytes.fromhex(signature_hex), "big")))
    message = hash_to_G1(hashlib.sha256(round_.to_bytes(8, "big")).digest(), DST, hashlib.sha256)
    return pairing(G2, signature) == pairing(public_key, message)


def contract_order(answer: dict, entries: list[str]) -> list[str]:
    randomness = hashlib.sha256(bytes.fromhex(answer["beacon"]["signature"])).digest()
    assert randomness.hex() == answer["beacon"]["randomness"]
    digest = hashlib.sha256("\n".join(sorted(entries)).encode()).hexdigest()
    assert digest == answer["entries_digest"]
    key = hmac.new(randomness, bytes.fromhex(digest) + bytes.fromhex(answer["seed"]), hashlib.sha256).digest()
    return sorted(entries, key=lambda t: hmac.new(key, t.encode("utf-8"), hashlib.sha256).digest())


# ------------------------------------------------------------------ helpers


def beacon_sale(clients, chain, *, stock: int = 10, starts_in: float = 1.5) -> dict:
    product_id = make_product(clients, stock)
    now = datetime.now(UTC)
    return sales.create_sale(
        clients.db, clients.redis, product_id=product_id, stock=stock, price_cents=1999,
        starts_at=now + timedelta(seconds=starts_in), ends_at=now + timedelta(hours=1),
        lobby_opens_at=now - timedelta(seconds=5), beacon=chain)


def wait_until(unix_seconds: float) -> None:
    time.sleep(max(0.0, unix_seconds - time.time()) + 0.05)


def whole_answer(clients, sale_id: str) -> tuple[dict, list[str]]:
    entries: list[str] = []
    cursor = None
    while True:
        page = lobby.fairness_page(clients.db, clients.redis, sale_id, cursor=cursor, limit=7)
        entries += page["entries"]
        cursor = page["next_cursor"]
        if not cursor:
            return page, entries


def places(clients, sale_id: str, ticket_ids: list[str]) -> list[int | None]:
    return [int(s) if s else None for s in (
        clients.redis.hget(sale_keys.ticket_key(sale_id, t), "seq") for t in ticket_ids)]


def beat_tick(clients, sale_id: str, urls: list[str]) -> str:
    """What beat's start-lobbies pass and the fetch task do for one sale (worker/tasks.py)."""
    lobby.start_due_lobby(clients.redis, sale_id)
    if sale_id in beacon_draw.awaiting_beacon(clients.redis, [sale_id]):
        beacon_draw.record_close(clients.db, clients.redis, sale_id)
        if beacon_draw.fetch_due(clients.redis, sale_id):
            try:
                state = beacon_draw.resolve_round(clients.db, clients.redis, sale_id, urls,
                                                  timeout_seconds=0.5).state
            finally:
                beacon_draw.release_fetch(clients.redis, sale_id)
            lobby.start_due_lobby(clients.redis, sale_id)
            return state
    return "waiting"


def public(clients, sale_id: str) -> dict:
    return sales.public_sale(sales.get_sale_doc(clients.db, sale_id),
                             sales.read_counters(clients.redis, sale_id))


# ------------------------------------------------------------------ tests


def test_the_order_recomputed_independently_equals_the_places(clients, beacon):
    sale = beacon_sale(clients, beacon.chain)
    sale_id = sale["_id"]
    fairness = public(clients, sale_id)["fairness"]
    # At creation: the chain and the round, the first at least 10 s after starts_at.
    assert fairness["algorithm"] == "hmac-sha256-drand-v2"
    assert fairness["beacon"]["public_key"] == beacon.chain.public_key
    round_ = fairness["beacon"]["round"]
    round_at = beacon.chain.round_time(round_)
    starts = sale["starts_at"].timestamp()
    assert starts + 10 <= round_at < starts + 10 + beacon.chain.period_seconds
    assert "entries_digest" not in fairness and "signature" not in fairness["beacon"]
    lobby_ids = [waiting_room.admit(clients.redis, sale_id, f"u{i}", 1).ticket["id"] for i in range(40)]
    wait_until(starts)

    # The close: nothing is placed, the digest and closed_at are published, the seed is not.
    assert lobby.start_lobby(clients.redis, sale_id).state == "drawing"
    late = waiting_room.admit(clients.redis, sale_id, "late", 1).ticket
    close = beacon_draw.record_close(clients.db, clients.redis, sale_id)
    assert close.state == "recorded" and close.moved_from == 0 and close.round == round_
    sale_now = public(clients, sale_id)
    assert sale_now["status"] == "drawing"
    answer, entries = whole_answer(clients, sale_id)
    assert answer["seed"] is None and sorted(entries) == sorted(lobby_ids)
    assert answer["entries_digest"] == hashlib.sha256("\n".join(sorted(lobby_ids)).encode()).hexdigest()
    closed_at = datetime.fromisoformat(answer["closed_at"].replace("Z", "+00:00")).timestamp()
    assert starts - 0.1 <= closed_at < round_at
    assert set(places(clients, sale_id, lobby_ids)) == {None}
    assert beacon_draw.resolve_round(clients.db, clients.redis, sale_id, [beacon.url]).state == "not_yet"

    # The round: placed in its order, everyone, ahead of the ticket admitted after the start.
    wait_until(round_at)
    assert beacon_draw.resolve_round(clients.db, clients.redis, sale_id, [beacon.url]).state == "resolved"
    report = lobby.start_lobby(clients.redis, sale_id)
    assert report.state == "placed" and report.done
    answer, entries = whole_answer(clients, sale_id)
    assert answer["seed"] == sale["fairness_seed"]
    assert bls_signature_verifies(answer["beacon"]["public_key"], answer["beacon"]["round"],
                                  answer["beacon"]["signature"])
    order = contract_order(answer, entries)
    assert places(clients, sale_id, order) == list(range(1, 41))
    assert int(clients.redis.hget(sale_keys.ticket_key(sale_id, late["id"]), "seq")) == 41
    assert public(clients, sale_id)["status"] == "open"
    published = public(clients, sale_id)["fairness"]
    assert published["seed"] == answer["seed"] and published["beacon"] == answer["beacon"]
    assert "seed" not in sale_now["fairness"]  # not while drawing
    # And the product's own auditor agrees.
    assert lobby.recompute_order(answer, entries) == order


def run_audit(settings, sale_id: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "common.cli", "audit-fairness", "--sale", sale_id],
                          env=settings_env(settings), capture_output=True, text=True, timeout=60)


def test_audit_fairness_catches_a_wrong_signature_an_early_round_and_a_late_entry(
        clients, beacon, beacon_settings):
    sale = beacon_sale(clients, beacon.chain, starts_in=1.0)
    sale_id = sale["_id"]
    for i in range(12):
        waiting_room.admit(clients.redis, sale_id, f"u{i}", 1)
    wait_until(sale["starts_at"].timestamp())
    round_ = sale["fairness"]["beacon"]["round"]
    deadline = time.time() + 60
    while beat_tick(clients, sale_id, [beacon.url]) != "resolved":
        assert time.time() < deadline
        time.sleep(0.2)
    good = run_audit(beacon_settings, sale_id)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "12 lobby tickets, 0 differences" in good.stdout and f"round {round_}" in good.stdout

    # A wrong signature: a real one of the same beacon, for the next round.
    from common.beacon.drand import BeaconClient
    wait_until(beacon.chain.round_time(round_ + 1))
    other = BeaconClient(beacon.chain, [beacon.url]).fetch_round(round_ + 1)
    real = sale_doc_beacon(clients, sale_id)
    clients.db.sales.update_one({"_id": sale_id}, {"$set": {"fairness.beacon.signature": other.signature,
                                                            "fairness.beacon.randomness": other.randomness}})
    wrong = run_audit(beacon_settings, sale_id)
    assert wrong.returncode == 1 and "signature does not verify" in wrong.stderr, wrong.stdout + wrong.stderr
    clients.db.sales.update_one({"_id": sale_id}, {"$set": {
        "fairness.beacon.signature": real["signature"], "fairness.beacon.randomness": real["randomness"]}})

    # A round no later than the close: its randomness was public while entries could change.
    closed_at = clients.db.sales.find_one({"_id": sale_id})["fairness"]["closed_at"]
    too_late = beacon_draw.iso_ms(beacon.chain.round_time(round_) * 1000 + 500)
    clients.db.sales.update_one({"_id": sale_id}, {"$set": {"fairness.closed_at": too_late}})
    early = run_audit(beacon_settings, sale_id)
    assert early.returncode == 1 and "is not after the close" in early.stderr, early.stdout + early.stderr
    clients.db.sales.update_one({"_id": sale_id}, {"$set": {"fairness.closed_at": closed_at}})

    # An entry slipped in after the close (lobby size bumped with it, to pass the count).
    clients.redis.zadd(sale_keys.lobby_key(sale_id), {"tkt_slipped_in": 0})
    clients.redis.hincrby(sale_keys.counters_key(sale_id), "lobby_size", 1)
    added = run_audit(beacon_settings, sale_id)
    assert added.returncode == 1 and "do not match the digest" in added.stderr, added.stdout + added.stderr


def sale_doc_beacon(clients, sale_id: str) -> dict:
    return dict(clients.db.sales.find_one({"_id": sale_id})["fairness"]["beacon"])


def test_a_beacon_down_for_a_minute_delays_placement_then_places_everyone(clients, beacon):
    sale = beacon_sale(clients, beacon.chain, stock=50, starts_in=1.0)
    sale_id = sale["_id"]
    lobby_ids = [waiting_room.admit(clients.redis, sale_id, f"u{i}", 1).ticket["id"] for i in range(60)]
    wait_until(sale["starts_at"].timestamp())
    round_at = beacon.chain.round_time(sale["fairness"]["beacon"]["round"])
    down = [f"http://127.0.0.1:{free_port()}"]  # nobody listens: connection refused
    gauges = SaleGauges(clients.redis)
    after_start: list[str] = []
    outage_ends = round_at + 60
    while time.time() < outage_ends:
        assert beat_tick(clients, sale_id, down) in ("waiting", "unavailable")
        if len(after_start) < 5:
            admitted = waiting_room.admit(clients.redis, sale_id, f"late{len(after_start)}", 1)
            after_start.append(admitted.ticket["id"])
        time.sleep(0.25)
    assert public(clients, sale_id)["status"] == "drawing"
    assert set(places(clients, sale_id, lobby_ids)) == {None}
    assert clients.db.sales.find_one({"_id": sale_id})["fairness"].get("seed") is None
    overdue = {sample.labels["sale_id"]: sample.value for family in gauges._read()
               if family.name == "flashsale_beacon_overdue_seconds" for sample in family.samples}
    assert overdue[sale_id] >= 55
    attempts = int(clients.redis.hget(sale_keys.config_key(sale_id), "beacon_attempts"))
    assert 5 <= attempts <= 20, attempts  # retried with backoff (1, 2, 4, 8, then every 10 s)

    # Back: placed within one backoff step, everyone, the late ones behind the lobby.
    back = time.time()
    while beat_tick(clients, sale_id, [beacon.url]) != "resolved":
        assert time.time() - back < 12
        time.sleep(0.25)
    lobby.start_due_lobby(clients.redis, sale_id)
    answer, entries = whole_answer(clients, sale_id)
    order = contract_order(answer, entries)
    assert places(clients, sale_id, order) == list(range(1, 61))
    assert places(clients, sale_id, after_start) == list(range(61, 61 + len(after_start)))
    counters = sales.read_counters(clients.redis, sale_id)
    assert counters.lobby == 0 and counters.queued == 60 + len(after_start)
    assert public(clients, sale_id)["status"] == "open"


def test_a_close_recorded_after_the_round_moves_to_a_later_round(clients, beacon):
    sale = beacon_sale(clients, beacon.chain, starts_in=1.0)
    sale_id = sale["_id"]
    for i in range(5):
        waiting_room.admit(clients.redis, sale_id, f"u{i}", 1)
    announced = sale["fairness"]["beacon"]["round"]
    # The shop was down from the start until after the announced round.
    wait_until(beacon.chain.round_time(announced) + 0.5)
    lobby.start_lobby(clients.redis, sale_id)
    close = beacon_draw.record_close(clients.db, clients.redis, sale_id)
    assert close.moved_from == announced and beacon.chain.round_time(close.round) >= time.time() + 9
    fairness = public(clients, sale_id)["fairness"]
    assert fairness["beacon"]["round"] == close.round and fairness["beacon"]["round_moved_from"] == announced


def test_a_sale_without_a_lobby_or_asking_for_v1_keeps_the_committed_seed(clients, beacon):
    product_id = make_product(clients, 10)
    now = datetime.now(UTC)
    common = {"product_id": product_id, "stock": 2, "price_cents": 100, "beacon": beacon.chain,
              "starts_at": now + timedelta(seconds=30), "ends_at": now + timedelta(hours=1)}
    no_lobby = sales.create_sale(clients.db, clients.redis, lobby_opens_at=None, **common)
    assert no_lobby["fairness"] == {"algorithm": "hmac-sha256-v1",
                                    "commitment": no_lobby["fairness"]["commitment"]}
    v1 = sales.create_sale(clients.db, clients.redis, fairness_algorithm="hmac-sha256-v1", **common)
    assert v1["fairness"]["algorithm"] == "hmac-sha256-v1" and "beacon" not in v1["fairness"]
    assert clients.redis.hget(sale_keys.config_key(v1["_id"]), "fairness_algorithm") is None


@pytest.mark.parametrize("beacon_configured", [True, False])
def test_http_sale_shows_the_beacon_and_refuses_v2_without_one(beacon_configured, request, clients):
    from api.app import create_app
    from tests.accounts import bearer, register_admin

    settings = request.getfixturevalue("beacon_settings" if beacon_configured else "settings")
    client = create_app(settings, clients).test_client()
    token = register_admin(client, clients)["access_token"]
    product_id = make_product(clients, 5)
    now = datetime.now(UTC)
    body = {"product_id": product_id, "stock": 1, "price_cents": 100,
            "starts_at": (now + timedelta(minutes=5)).isoformat(),
            "ends_at": (now + timedelta(hours=1)).isoformat()}
    created = client.post("/api/sales", json=body, headers=bearer(token))
    assert created.status_code == 201, created.get_json()
    fairness = client.get(f"/api/sales/{created.get_json()['id']}").get_json()["fairness"]
    if beacon_configured:
        assert fairness["algorithm"] == "hmac-sha256-drand-v2"
        assert set(fairness["beacon"]) == {"chain_hash", "public_key", "period_seconds",
                                           "genesis_time", "round"}
    else:
        assert fairness["algorithm"] == "hmac-sha256-v1"
        refused = client.post("/api/sales", json={**body, "fairness_algorithm": "hmac-sha256-drand-v2"},
                              headers=bearer(token))
        assert refused.status_code == 422
        assert "fairness_algorithm" in refused.get_json()["error"]["details"]["fields"]


def test_a_draw_sale_waits_for_the_round_then_charges_the_winners_in_its_order(clients, beacon):
    from tests.test_draw_sales import CARDS, hold, ticket_of, users, walk

    stock, entrants = 2, 5
    now = datetime.now(UTC)
    sale = sales.create_sale(
        clients.db, clients.redis, product_id=make_product(clients, stock), stock=stock,
        price_cents=1999, starts_at=now + timedelta(seconds=4), ends_at=now + timedelta(hours=1),
        lobby_opens_at=now - timedelta(seconds=5), mode=sales.SaleMode.DRAW, beacon=beacon.chain)
    sale_id = sale["_id"]
    assert sale["fairness"]["algorithm"] == "hmac-sha256-drand-v2"
    shoppers = users(clients, entrants)
    entries = [waiting_room.admit(clients.redis, sale_id, u, 1).ticket for u in shoppers]
    for entry, user_id, number in zip(entries, shoppers, CARDS, strict=False):
        assert hold(clients, entry, user_id, number).status == "requires_capture"
    wait_until(sale["starts_at"].timestamp())
    # Closed, and nothing charged or released until the round is out.
    assert walk(clients, sale_id).state == "drawing"
    assert public(clients, sale_id)["status"] == "drawing"
    assert {ticket_of(clients, e)["hold"]["status"] for e in entries} == {"held"}
    deadline = time.time() + 60
    while beat_tick(clients, sale_id, [beacon.url]) != "resolved":
        assert time.time() < deadline
        time.sleep(0.2)

    report = walk(clients, sale_id)
    assert (report.captured, report.released) == (stock, entrants - stock)
    answer, ids = whole_answer(clients, sale_id)
    order = contract_order(answer, ids)
    results = {e["id"]: ticket_of(clients, e) for e in entries}
    assert [results[t]["status"] for t in order] == ["paid"] * stock + ["not_selected"] * (entrants - stock)
    assert places(clients, sale_id, order) == list(range(1, entrants + 1))
