"""The flash sale end to end over HTTP against `flashsale run` (gunicorn, Celery worker and
beat, embedded Redis, MongoDB wire server and Stripe emulator sending signed webhooks)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from concurrent.futures import ThreadPoolExecutor

import pymongo
import pytest
import redis
import requests
import stripe

from common.development.embedded import register_stripe_webhook
from common.flash_sale import sale_keys
from tests.e2e.shop import Shopper, admin, card_token, create_sale

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _stats(operator: Shopper, sale_id: str) -> dict:
    r = operator.call("GET", f"/api/admin/sales/{sale_id}/stats")
    assert r.status_code == 200, r.text
    return r.json()


def _wait(predicate, timeout: float = 90, interval: float = 0.3):
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value


@pytest.fixture(scope="module")
def system_db(system):
    """The system's MongoDB database, its client closed after the module (left to the garbage
    collector, an unclosed client is a ResourceWarning, an error, in whichever test runs then)."""
    client = pymongo.MongoClient(system.services["mongodb"])
    yield client[system.services["mongodb"].rsplit("/", 1)[1]]
    client.close()


@pytest.fixture(scope="module")
def shoppers(system):
    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(lambda _: Shopper(system.url).register(), range(200)))


def test_200_shoppers_for_100_units_then_every_reservation_paid(system, shoppers, system_db):
    operator = admin(system.url)
    sale = create_sale(operator, stock=100, product_stock=100, lobby_opens_in=None)
    sale_id = sale["id"]
    store = redis.Redis.from_url(system.services["redis"], decode_responses=True)
    lowest = {"available": 100}

    def watch_available():
        while not stop:
            value = int(store.hget(sale_keys.counters_key(sale_id), "available") or 0)
            lowest["available"] = min(lowest["available"], value)
            time.sleep(0.01)

    stop = False
    with ThreadPoolExecutor(1) as watcher:
        watching = watcher.submit(watch_available)
        with ThreadPoolExecutor(64) as pool:
            answers = list(pool.map(lambda s: s.join(sale_id), shoppers))
        assert [a.status_code for a in answers] == [202] * 200, {a.status_code for a in answers}
        tickets = [a.json() for a in answers]
        assert len({t["id"] for t in tickets}) == 200
        # Joining again gives the same ticket: one live ticket per shopper per sale.
        again = shoppers[0].join(sale_id)
        assert again.status_code == 200 and again.json()["id"] == tickets[0]["id"]

        def all_decided():
            stats = _stats(operator, sale_id)
            return stats if stats["queued"] == 0 and stats["reserved"] + stats["sold_out"] == 200 and \
                stats["reserved"] == 100 else None

        stats = _wait(all_decided)
        stop = True
        watching.result()
    assert stats, _stats(operator, sale_id)
    assert stats["available"] == 0 and stats["consistent"] is True
    assert lowest["available"] >= 0
    finals = [s.wait_for(t["id"], {"reserved", "sold_out"}) for s, t in zip(shoppers, tickets, strict=True)]
    assert sum(t["status"] == "reserved" for t in finals) == 100
    assert sum(t["status"] == "sold_out" for t in finals) == 100
    reserved = [(s, t) for s, t in zip(shoppers, finals, strict=True) if t["status"] == "reserved"]
    assert all(t["reservation"]["payment_intent_id"].startswith("pi_") for _, t in reserved)

    # Every reservation is paid through the emulator, the way Stripe.js would.
    stripe_base = system.services["stripe_api_base"]

    def pay(pair):
        shopper, ticket = pair
        r = shopper.call("POST", f"/api/tickets/{ticket['id']}/pay",
                         json={"card_token": card_token(stripe_base)})
        assert r.status_code == 200, r.text
        return r.json()["status"]

    with ThreadPoolExecutor(16) as pool:
        assert set(pool.map(pay, reserved)) == {"succeeded"}
    paid = [s.wait_for(t["id"], {"paid"}, timeout=120) for s, t in reserved]
    assert all(t["status"] == "paid" and t["order_id"] for t in paid)

    db = system_db
    orders = list(db.orders.find({"sale_id": sale_id}))
    assert len(orders) == 100
    assert len({o["payment_intent_id"] for o in orders}) == 100
    assert len({o["ticket_id"] for o in orders}) == 100
    assert db.products.find_one({"_id": sale["product_id"]})["stock"] == 0
    final = _stats(operator, sale_id)
    assert (final["sold"], final["reserved"], final["available"], final["orders"]) == (100, 0, 0, 100)
    client = stripe.StripeClient(system.services["stripe_secret_key"],
                                 base_addresses={"api": stripe_base})
    for order in orders[:20]:
        assert client.v1.payment_intents.retrieve(order["payment_intent_id"])["status"] == "succeeded"
    # The shopper sees the order.
    shopper, _ = reserved[0]
    order = shopper.call("GET", f"/api/orders/{paid[0]['order_id']}")
    assert order.status_code == 200 and order.json()["status"] == "paid"
    # Sold out now: answered at once, without touching the stream.
    late = Shopper(system.url).register().join(sale_id)
    assert late.status_code == 410 and late.json()["error"]["code"] == "sold_out"


def _signed(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    timestamp = timestamp or int(time.time())
    signature = stripe.WebhookSignature._compute_signature(f"{timestamp}.{payload.decode()}", secret)
    return f"t={timestamp},v1={signature}"


def test_webhooks_are_verified_and_applied_once(system, system_db):
    operator = admin(system.url)
    sale = create_sale(operator, stock=1, product_stock=1, lobby_opens_in=None)
    shopper = Shopper(system.url).register()
    ticket = shopper.join(sale["id"]).json()
    ticket = shopper.wait_for(ticket["id"], {"reserved"})
    intent_id = ticket["reservation"]["payment_intent_id"]
    stripe_base = system.services["stripe_api_base"]
    client = stripe.StripeClient(system.services["stripe_secret_key"], base_addresses={"api": stripe_base})
    # Pay at Stripe directly so no webhook of ours has been applied yet for this event id.
    secret = system.services["stripe_webhook_secret"]
    event = {"id": "evt_" + intent_id[3:], "object": "event", "type": "payment_intent.succeeded",
             "created": int(time.time()), "data": {"object": {"id": intent_id, "object": "payment_intent"}}}
    payload = json.dumps(event).encode()
    url = f"{system.url}/api/webhooks/stripe"
    bad = [
        (payload.replace(b"succeeded", b"canceled"), _signed(payload, secret)),  # tampered body
        (payload, _signed(payload, "whsec_wrong")),  # wrong secret
        (payload, None),  # missing header
        (payload, _signed(payload, secret, int(time.time()) - 3600)),  # stale timestamp
    ]
    for body, header in bad:
        headers = {"Content-Type": "application/json"} | ({"Stripe-Signature": header} if header else {})
        r = requests.post(url, data=body, headers=headers, timeout=10)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "invalid_signature"
    db = system_db
    assert db.webhook_events.count_documents({"_id": event["id"]}) == 0

    r = shopper.call("POST", f"/api/tickets/{ticket['id']}/pay", json={"card_token": card_token(stripe_base)})
    assert r.json()["status"] == "succeeded"
    header = _signed(payload, secret)
    with ThreadPoolExecutor(5) as pool:
        codes = list(pool.map(lambda _: requests.post(
            url, data=payload, headers={"Stripe-Signature": header, "Content-Type": "application/json"},
            timeout=10).status_code, range(5)))
    assert codes == [200] * 5
    assert shopper.wait_for(ticket["id"], {"paid"})["status"] == "paid"
    time.sleep(2)  # let every delivery (ours and the emulator's own) be applied
    assert db.orders.count_documents({"payment_intent_id": intent_id}) == 1
    assert client.v1.payment_intents.retrieve(intent_id)["status"] == "succeeded"
    assert _stats(operator, sale["id"])["sold"] == 1


def test_unpaid_reservations_expire_and_go_to_the_next_in_line(system):
    operator = admin(system.url)
    sale = create_sale(operator, stock=2, ttl=2, product_stock=2, lobby_opens_in=None)
    first = [Shopper(system.url).register() for _ in range(3)]
    tickets = [s.join(sale["id"]).json() for s in first]
    decided = [s.wait_for(t["id"], {"reserved", "sold_out"}) for s, t in zip(first, tickets, strict=True)]
    assert sorted(t["status"] for t in decided) == ["reserved", "reserved", "sold_out"]
    holders = [(s, t) for s, t in zip(first, decided, strict=True) if t["status"] == "reserved"]
    expired = [s.wait_for(t["id"], {"expired"}, timeout=30) for s, t in holders]
    assert [t["status"] for t in expired] == ["expired", "expired"]
    client = stripe.StripeClient(system.services["stripe_secret_key"],
                                 base_addresses={"api": system.services["stripe_api_base"]})
    intents = [t["reservation"]["payment_intent_id"] for _, t in holders]
    assert _wait(lambda: all(client.v1.payment_intents.retrieve(i)["status"] == "canceled"
                             for i in intents), timeout=30)
    # The returned stock is sold to the next tickets.
    nxt = Shopper(system.url).register()
    ticket = nxt.wait_for(nxt.join(sale["id"]).json()["id"], {"reserved", "sold_out"})
    assert ticket["status"] == "reserved"
    stats = _stats(operator, sale["id"])
    assert stats["expired"] == 2 and stats["consistent"]


def test_lobby_shoppers_get_the_committed_random_places_then_the_line_is_decided(system, shoppers):
    """A sale opening in a few seconds: the shoppers join its lobby (no place yet), at the
    start each gets the place the published seed gives (recomputed here with hashlib), a
    late shopper queues behind the lobby, and the line is decided in place order."""
    operator = admin(system.url)
    sale = create_sale(operator, stock=10, product_stock=10, starts_in=5)
    sale_id = sale["id"]
    assert sale["status"] == "lobby" and sale["fairness"]["algorithm"] == "hmac-sha256-v1"
    commitment = sale["fairness"]["commitment"]
    crowd = shoppers[:30]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda s: s.join(sale_id), crowd))
    assert [a.status_code for a in answers] == [202] * 30, [a.text for a in answers if a.status_code != 202]
    tickets = [a.json() for a in answers]
    assert {t["status"] for t in tickets} == {"lobby"}
    assert all(t["position"] is None and t["outlook"] in ("likely", "possible", "unlikely")
               for t in tickets)
    before = requests.get(f"{system.url}/api/sales/{sale_id}/fairness", timeout=10).json()
    assert before["seed"] is None and before["commitment"] == commitment

    assert _wait(lambda: requests.get(f"{system.url}/api/sales/{sale_id}/fairness",
                                      timeout=10).json()["seed"], timeout=30)
    late = Shopper(system.url).register()
    late_ticket = late.join(sale_id).json()
    placed = [s.wait_for(t["id"], {"queued", "reserved", "sold_out"}, timeout=30)
              for s, t in zip(crowd, tickets, strict=True)]
    assert all(t["status"] != "lobby" for t in placed)

    fairness = requests.get(f"{system.url}/api/sales/{sale_id}/fairness",
                            params={"limit": 7}, timeout=10).json()
    entries = list(fairness["entries"])
    while fairness["next_cursor"]:
        fairness = requests.get(f"{system.url}/api/sales/{sale_id}/fairness",
                                params={"limit": 7, "cursor": fairness["next_cursor"]}, timeout=10).json()
        entries += fairness["entries"]
    seed = bytes.fromhex(fairness["seed"])
    assert hashlib.sha256(seed).hexdigest() == commitment and fairness["lobby_size"] == 30
    assert sorted(entries) == sorted(t["id"] for t in tickets)
    order = sorted(entries, key=lambda i: hmac.new(seed, i.encode(), hashlib.sha256).digest())

    finals = {t["id"]: s.wait_for(t["id"], {"reserved", "sold_out"})
              for s, t in zip(crowd, tickets, strict=True)}
    # The first ten places get the ten units; the shopper who came after the start is sold out.
    assert set(order[:10]) == {i for i, t in finals.items() if t["status"] == "reserved"}
    assert late.wait_for(late_ticket["id"], {"reserved", "sold_out"})["status"] == "sold_out"
    stats = _stats(operator, sale_id)
    assert stats["consistent"] and stats["reserved"] == 10


def test_a_beacon_draw_places_the_lobby_once_its_round_is_out(system, shoppers):
    """`flashsale run`'s default for a lobby: `hmac-sha256-drand-v2` with the embedded beacon.
    The sale is `drawing` from the close until its round is out (beat, the worker's fetch task
    and the beacon, all real), then every lobby ticket gets the place that the published round,
    digest and seed give (recomputed here with hashlib/hmac), ahead of a shopper who came
    during the draw."""
    operator = admin(system.url)
    sale = create_sale(operator, stock=5, product_stock=5, starts_in=4, fairness_algorithm=None)
    sale_id = sale["id"]
    beacon = sale["fairness"]["beacon"]
    assert sale["fairness"]["algorithm"] == "hmac-sha256-drand-v2"
    round_at = beacon["genesis_time"] + (beacon["round"] - 1) * beacon["period_seconds"]
    crowd = shoppers[:12]
    tickets = [s.join(sale_id).json() for s in crowd]
    assert {t["status"] for t in tickets} == {"lobby"}

    def sale_now() -> dict:
        return requests.get(f"{system.url}/api/sales/{sale_id}", timeout=10).json()

    assert _wait(lambda: sale_now()["status"] == "drawing", timeout=30)
    late = Shopper(system.url).register()
    late_ticket = late.join(sale_id).json()
    drawing = sale_now()["fairness"]
    assert drawing["entries_digest"] == hashlib.sha256(
        "\n".join(sorted(t["id"] for t in tickets)).encode()).hexdigest()
    assert "signature" not in drawing["beacon"] and time.time() < round_at
    assert requests.get(f"{system.url}/api/sales/{sale_id}/fairness", timeout=10).json()["seed"] is None

    placed = [s.wait_for(t["id"], {"queued", "reserved", "sold_out"}, timeout=60)
              for s, t in zip(crowd, tickets, strict=True)]
    assert time.time() >= round_at and all(t["status"] != "lobby" for t in placed)
    answer = requests.get(f"{system.url}/api/sales/{sale_id}/fairness", timeout=10).json()
    randomness = hashlib.sha256(bytes.fromhex(answer["beacon"]["signature"])).digest()
    assert randomness.hex() == answer["beacon"]["randomness"]
    key = hmac.new(randomness, bytes.fromhex(answer["entries_digest"]) + bytes.fromhex(answer["seed"]),
                   hashlib.sha256).digest()
    order = sorted(answer["entries"], key=lambda i: hmac.new(key, i.encode(), hashlib.sha256).digest())
    finals = {t["id"]: s.wait_for(t["id"], {"reserved", "sold_out"})
              for s, t in zip(crowd, tickets, strict=True)}
    assert set(order[:5]) == {i for i, t in finals.items() if t["status"] == "reserved"}
    assert late.wait_for(late_ticket["id"], {"reserved", "sold_out"})["status"] == "sold_out"
    assert sale_now()["status"] in ("open", "sold_out")


def test_a_payment_whose_webhook_is_lost_is_applied_at_once(system):
    """Under a surge one webhook was lost (the emulator never retries one): the shopper had
    paid, yet stayed `reserved` until the reservation expired. The API applies a payment its
    own confirm saw succeed, without waiting for the webhook."""
    operator = admin(system.url)
    sale = create_sale(operator, stock=1, product_stock=1, lobby_opens_in=None, ttl=600)
    shopper = Shopper(system.url).register()
    ticket = shopper.wait_for(shopper.join(sale["id"]).json()["id"], {"reserved"})
    stripe_base, secret = system.services["stripe_api_base"], system.services["stripe_webhook_secret"]
    # Every webhook goes nowhere while this shopper pays.
    register_stripe_webhook(stripe_base, "http://127.0.0.1:9/nowhere", secret)
    try:
        r = shopper.call("POST", f"/api/tickets/{ticket['id']}/pay",
                         json={"card_token": card_token(stripe_base)})
        assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
        paid = shopper.wait_for(ticket["id"], {"paid"}, timeout=30)
    finally:
        register_stripe_webhook(stripe_base, f"{system.url}/api/webhooks/stripe", secret)
    assert paid["status"] == "paid" and paid["order_id"]
    assert _stats(operator, sale["id"])["sold"] == 1
