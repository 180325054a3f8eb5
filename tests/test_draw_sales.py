"""Draw sales (API v3, "Draw sales: the card held at entry, only winners charged"), against the
real Redis, MongoDB and Stripe emulator: the mode and its lobby limit, holds (a decline leaves
the entry out, 3-D Secure, one card per sale), withdrawal, and the draw's walk (winners
captured exactly once in the contract's order, losers released, a failed capture moving on).
The order is checked with `hmac-sha256-v1` written here from the contract."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from common.auditing.audit import audit_sale, read_sale_snapshot
from common.billing import draw_walk, holds
from common.billing.draw_walk import Pace
from common.flash_sale import lobby, sale_keys, sales, waiting_room
from common.flash_sale.tickets import HoldStatus
from common.platform.errors import CardAlreadyUsed, PaymentDeclined, TicketNotActive
from tests.accounts import bearer, create_product, register, register_admin
from tests.waiting_room_helpers import card_token, gateway_for, make_product, payment_context

DECLINED = "4000000000000341"  # attaches, then the authorisation is declined
THREE_D_SECURE = "4000002500003155"
# Distinct cards (one card per sale): Stripe's test numbers of 16 digits, as the emulator takes.
CARDS = ["4242424242424242", "5555555555554444", "4000056655665556", "5200828282828210",
         "5105105105105100", "4012888888881881", "4000000760000002", "4000001240000000"]


def contract_order(seed_hex: str, ticket_ids: list[str]) -> list[str]:
    seed = bytes.fromhex(seed_hex)
    return sorted(ticket_ids, key=lambda t: hmac.new(seed, t.encode("utf-8"), hashlib.sha256).digest())


def draw_sale(clients, stock: int, *, starts_in: float = 3.0, per_user_limit: int = 1,
              one_card: bool = True) -> dict[str, Any]:
    now = datetime.now(UTC)
    return sales.create_sale(
        clients.db, clients.redis, product_id=make_product(clients, stock), stock=stock,
        price_cents=1999, starts_at=now + timedelta(seconds=starts_in),
        ends_at=now + timedelta(hours=1), per_user_limit=per_user_limit,
        lobby_opens_at=now - timedelta(seconds=5), mode=sales.SaleMode.DRAW,
        entry=sales.EntryRequirements(one_card=one_card))


def enter(clients, sale_id: str, user_id: str, quantity: int = 1) -> dict[str, Any]:
    return waiting_room.admit(clients.redis, sale_id, user_id, quantity).ticket


def hold(clients, ticket: dict[str, Any], user_id: str, number: str = CARDS[0]):
    token = card_token(str(clients.settings.stripe_api_base), number)
    return holds.place_hold(clients.redis, clients.db, gateway_for(clients), ticket_id=ticket["id"],
                            user_id=user_id, card_token=token)


def ticket_of(clients, ticket: dict[str, Any]) -> dict[str, Any]:
    return waiting_room.read_ticket(clients.redis, ticket["id"])


def stripe_status(clients, intent_id: str) -> str:
    return str(clients.stripe.v1.payment_intents.retrieve(intent_id).to_dict()["status"])


def wait_for_start(sale: dict[str, Any]) -> None:
    time.sleep(max(0.0, (sale["starts_at"] - datetime.now(UTC)).total_seconds()) + 0.05)


def walk(clients, sale_id: str) -> draw_walk.WalkReport:
    return draw_walk.walk_draw(payment_context(clients), sale_id, calls_per_second=1000)


def audited(clients, sale_id: str) -> list[Any]:
    """The one auditor's violations of the sale, Stripe included (after the walk: settled)."""
    return audit_sale(read_sale_snapshot(clients.redis, clients.db, sale_id, stripe_client=clients.stripe),
                      settled=True, allow_reserved=False)


def users(clients, n: int) -> list[str]:
    now = datetime.now(UTC)
    ids = [f"usr_draw{time.time_ns()}{i}" for i in range(n)]
    clients.db.users.insert_many([{"_id": u, "email": f"{u}@example.com", "created_at": now}
                                  for u in ids])
    return ids


def test_mode_draw_needs_a_lobby_of_at_most_six_days(client, clients):
    admin = register_admin(client, clients)
    product = create_product(client, admin["access_token"], stock=20)
    now = datetime.now(UTC)

    def create(**fields: Any):
        body = {"product_id": product["id"], "stock": 2, "price_cents": 500,
                "starts_at": (now + timedelta(days=1)).isoformat(),
                "ends_at": (now + timedelta(days=2)).isoformat()} | fields
        return client.post("/api/sales", headers=bearer(admin["access_token"]), json=body)

    no_lobby = create(mode="draw", lobby_opens_at=None)
    assert no_lobby.status_code == 422, no_lobby.get_json()
    assert "lobby_opens_at" in no_lobby.get_json()["error"]["details"]["fields"]
    too_long = create(mode="draw", starts_at=(now + timedelta(days=7)).isoformat(),
                      ends_at=(now + timedelta(days=8)).isoformat())
    assert too_long.status_code == 422, too_long.get_json()
    assert create(mode="raffle").status_code == 422

    made = create(mode="draw", starts_at=(now + timedelta(days=5, hours=23)).isoformat(),
                  ends_at=(now + timedelta(days=7)).isoformat())
    assert made.status_code == 201, made.get_json()
    assert made.get_json()["mode"] == "draw"
    assert client.get(f"/api/sales/{made.get_json()['id']}").get_json()["mode"] == "draw"
    queue = create()
    assert queue.status_code == 201 and queue.get_json()["mode"] == "queue"
    # A refused sale takes no units: 2 + 2 taken of 20.
    assert client.get(f"/api/products/{product['id']}").get_json()["stock"] == 16


def test_an_entry_needs_its_card_held_and_a_decline_leaves_it_out(clients):
    sale = draw_sale(clients, stock=2, starts_in=4)
    ada, bob = users(clients, 2)
    entry = enter(clients, sale["_id"], ada, quantity=1)
    assert entry["status"] == "lobby"
    assert entry["hold"] == {"status": "required", "payment_intent_id": None, "client_secret": None,
                             "amount_cents": 1999, "currency": "USD"}
    assert ticket_of(clients, entry)["hold"]["status"] == "required"

    with pytest.raises(PaymentDeclined):
        hold(clients, entry, ada, DECLINED)
    failed = ticket_of(clients, entry)["hold"]
    assert failed["status"] == "failed"

    # A declined entry stays out of the draw: it ends cancelled, reason no_hold, its intent
    # cancelled at Stripe.
    other = enter(clients, sale["_id"], bob)
    held = hold(clients, other, bob, CARDS[1])
    assert held.status == "requires_capture"
    assert ticket_of(clients, other)["hold"]["status"] == "held"
    wait_for_start(sale)
    report = walk(clients, sale["_id"])
    assert report.state == "done" and report.entries == 1 and report.captured == 1
    out = ticket_of(clients, entry)
    assert out["status"] == "cancelled" and out["reason"] == "no_hold"
    assert stripe_status(clients, failed["payment_intent_id"]) == "canceled"
    won = ticket_of(clients, other)
    assert won["status"] == "paid" and won["hold"]["status"] == "captured"


def test_another_card_after_a_decline_is_held(clients):
    sale = draw_sale(clients, stock=1, starts_in=30)
    (ada,) = users(clients, 1)
    entry = enter(clients, sale["_id"], ada)
    with pytest.raises(PaymentDeclined):
        hold(clients, entry, ada, DECLINED)
    declined_intent = ticket_of(clients, entry)["hold"]["payment_intent_id"]
    assert hold(clients, entry, ada, CARDS[0]).status == "requires_capture"
    now_held = ticket_of(clients, entry)["hold"]
    assert now_held["status"] == "held" and now_held["payment_intent_id"] != declined_intent
    assert stripe_status(clients, declined_intent) == "canceled"
    # Held already: the same hold again, nothing new at Stripe.
    assert hold(clients, entry, ada, CARDS[1]).id == now_held["payment_intent_id"]


def test_three_d_secure_answers_requires_action_and_the_draw_finds_it_held(clients):
    sale = draw_sale(clients, stock=1, starts_in=4)
    (ada,) = users(clients, 1)
    entry = enter(clients, sale["_id"], ada)
    intent = hold(clients, entry, ada, THREE_D_SECURE)
    assert intent.status == "requires_action" and intent.client_secret
    assert ticket_of(clients, entry)["hold"]["status"] == "required"
    # The browser finishes 3-D Secure (what stripe.confirmCardPayment does on the emulator).
    import requests
    requests.post(f"{clients.settings.stripe_api_base}/v1/payment_intents/{intent.id}/_authenticate",
                  data={"client_secret": intent.client_secret, "success": "true",
                        "key": "pk_test_embedded"}, timeout=10).raise_for_status()
    wait_for_start(sale)
    assert walk(clients, sale["_id"]).captured == 1
    assert ticket_of(clients, entry)["status"] == "paid"


def test_one_card_holds_for_one_account_per_sale(clients):
    sale = draw_sale(clients, stock=2, starts_in=30)
    ada, bob = users(clients, 2)
    mine, theirs = enter(clients, sale["_id"], ada), enter(clients, sale["_id"], bob)
    assert hold(clients, mine, ada, CARDS[0]).status == "requires_capture"
    with pytest.raises(CardAlreadyUsed):
        hold(clients, theirs, bob, CARDS[0])
    # Nothing held on the refused card.
    intent_id = ticket_of(clients, theirs)["hold"]["payment_intent_id"]
    assert stripe_status(clients, intent_id) == "requires_payment_method"


def test_a_withdrawal_releases_the_hold(client, clients):
    sale = draw_sale(clients, stock=2, starts_in=30)
    session = register(client)
    user_id = session["user"]["id"]
    entry = enter(clients, sale["_id"], user_id)
    intent = hold(clients, entry, user_id)
    assert client.get(f"/api/sales/{sale['_id']}/fairness").get_json()["lobby_size"] == 1

    withdrawn = client.post(f"/api/tickets/{entry['id']}/cancel",
                            headers=bearer(session["access_token"]))
    assert withdrawn.status_code == 200, withdrawn.get_json()
    body = withdrawn.get_json()
    assert body["status"] == "cancelled" and body["reason"] == "withdrawn"
    assert body["hold"]["status"] == "released"
    assert stripe_status(clients, intent.id) == "canceled"
    assert not clients.redis.zcard(sale_keys.intent_cancels_key(sale["_id"]))
    # Out of the draw's entries, and the shopper may enter again.
    assert client.get(f"/api/sales/{sale['_id']}/fairness").get_json()["lobby_size"] == 0
    again = enter(clients, sale["_id"], user_id)
    assert again["id"] != entry["id"] and again["status"] == "lobby"
    # A withdrawn entry cannot be held again.
    with pytest.raises(TicketNotActive):
        hold(clients, entry, user_id, CARDS[1])


def test_winners_captured_once_in_drawn_order_and_losers_released(client, clients):
    stock, entrants = 3, 7
    sale = draw_sale(clients, stock=stock, starts_in=6)
    sale_id = sale["_id"]
    shoppers = users(clients, entrants)
    entries = [enter(clients, sale_id, u) for u in shoppers]
    for entry, user_id, number in zip(entries, shoppers, CARDS, strict=False):
        assert hold(clients, entry, user_id, number).status == "requires_capture"
    # Before the start: nothing happens.
    assert walk(clients, sale_id).state == "not_yet"
    wait_for_start(sale)

    report = walk(clients, sale_id)
    assert (report.captured, report.released, report.failed) == (stock, entrants - stock, 0)
    fairness = client.get(f"/api/sales/{sale_id}/fairness").get_json()
    order = contract_order(fairness["seed"], fairness["entries"])
    assert sorted(order) == sorted(e["id"] for e in entries)
    results = {e["id"]: ticket_of(clients, e) for e in entries}
    assert [results[t]["status"] for t in order] == ["paid"] * stock + ["not_selected"] * (entrants - stock)
    # The lobby's fairness check reads a draw as a placed lobby.
    assert not lobby.order_differences(order, lobby.placed_lobby(clients.redis, sale_id, order))
    for ticket_id in order[:stock]:
        hold_view = results[ticket_id]["hold"]
        assert hold_view["status"] == "captured"
        assert stripe_status(clients, hold_view["payment_intent_id"]) == "succeeded"
        assert clients.db.orders.count_documents({"ticket_id": ticket_id, "status": "paid"}) == 1
    for ticket_id in order[stock:]:
        assert results[ticket_id]["hold"]["status"] == "released"
        assert stripe_status(clients, results[ticket_id]["hold"]["payment_intent_id"]) == "canceled"

    # Walked again (a redelivered task): nothing captured twice, no second order.
    again = walk(clients, sale_id)
    assert again.captured == 0 and again.released == 0
    # Even from the first entry (a walk killed after its Stripe calls, before it recorded
    # them): decided entries are not captured again, losers only released again.
    clients.redis.hset(sale_keys.draw_key(sale_id), "walked", 0)
    rewound = walk(clients, sale_id)
    assert rewound.captured == 0 and rewound.released == entrants - stock
    assert clients.db.orders.count_documents({"sale_id": sale_id}) == stock
    counters = sales.read_counters(clients.redis, sale_id)
    assert (counters.sold, counters.available, counters.reserved) == (stock, 0, 0)
    assert audited(clients, sale_id) == []


def test_a_failed_capture_moves_on_to_the_next_entrant(client, clients):
    sale = draw_sale(clients, stock=1, starts_in=4)
    sale_id = sale["_id"]
    shoppers = users(clients, 3)
    entries = [enter(clients, sale_id, u) for u in shoppers]
    intents = {e["id"]: hold(clients, e, u, n).id for e, u, n in zip(entries, shoppers, CARDS, strict=False)}
    wait_for_start(sale)
    # The first drawn entry's hold lapsed before the draw (Stripe cancels an expired hold).
    draw_walk_order = contract_order(str(clients.redis.hget(sale_keys.config_key(sale_id), "seed")),
                                     [e["id"] for e in entries])
    first, second, third = draw_walk_order
    clients.stripe.v1.payment_intents.cancel(intents[first])

    report = walk(clients, sale_id)
    assert (report.captured, report.failed, report.released) == (1, 1, 1)
    assert ticket_of(clients, {"id": first})["status"] == "payment_failed"
    assert ticket_of(clients, {"id": first})["hold"]["status"] == "failed"
    assert ticket_of(clients, {"id": second})["status"] == "paid"
    assert ticket_of(clients, {"id": third})["status"] == "not_selected"
    assert stripe_status(clients, intents[second]) == "succeeded"
    assert stripe_status(clients, intents[third]) == "canceled"
    assert clients.db.orders.count_documents({"sale_id": sale_id}) == 1
    assert audited(clients, sale_id) == []


def test_the_walk_is_paced():
    moments: list[float] = []
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    pace = Pace(25, clock=lambda: now[0], sleep=sleep)
    for _ in range(50):
        pace.wait()
        moments.append(now[0])
    gaps = [b - a for a, b in itertools.pairwise(moments)]
    assert min(gaps) == pytest.approx(0.04) and pace.calls == 50


def test_the_hold_over_http(client, clients):
    sale = draw_sale(clients, stock=1, starts_in=30)
    session = register(client)
    headers = bearer(session["access_token"])
    joined = client.post(f"/api/sales/{sale['_id']}/tickets", json={"quantity": 1}, headers=headers)
    assert joined.status_code == 202, joined.get_json()
    entry = joined.get_json()
    assert entry["hold"]["status"] == "required" and entry["hold"]["amount_cents"] == 1999
    api_base = str(clients.settings.stripe_api_base)

    declined = client.post(f"/api/tickets/{entry['id']}/hold", headers=headers,
                           json={"card_token": card_token(api_base, DECLINED)})
    assert declined.status_code == 402 and declined.get_json()["error"]["code"] == "payment_declined"
    held = client.post(f"/api/tickets/{entry['id']}/hold", headers=headers,
                       json={"card_token": card_token(api_base)})
    assert held.status_code == 200, held.get_json()
    assert held.get_json()["status"] == "requires_capture" and not held.get_json()["requires_action"]
    polled = client.get(f"/api/tickets/{entry['id']}", headers=headers).get_json()
    assert polled["hold"]["status"] == "held"
    assert polled["hold"]["payment_intent_id"] == held.get_json()["payment_intent_id"]
    # Someone else's entry is not found; a body with anything more is refused.
    other = bearer(register(client)["access_token"])
    assert client.post(f"/api/tickets/{entry['id']}/hold", headers=other,
                       json={"card_token": card_token(api_base)}).status_code == 404
    assert client.post(f"/api/tickets/{entry['id']}/hold", headers=headers,
                       json={"card_token": "tok_x", "amount_cents": 1}).status_code == 422


def test_a_queue_sale_ticket_has_no_hold_and_cannot_hold(client, clients):
    now = datetime.now(UTC)
    sale = sales.create_sale(clients.db, clients.redis, product_id=make_product(clients, 1), stock=1,
                             price_cents=500, starts_at=now + timedelta(seconds=30),
                             ends_at=now + timedelta(hours=1), lobby_opens_at=now - timedelta(seconds=1))
    session = register(client)
    headers = bearer(session["access_token"])
    ticket = client.post(f"/api/sales/{sale['_id']}/tickets", json={}, headers=headers).get_json()
    assert ticket["status"] == "lobby" and "hold" not in ticket
    refused = client.post(f"/api/tickets/{ticket['id']}/hold", headers=headers,
                          json={"card_token": card_token(str(clients.settings.stripe_api_base))})
    assert refused.status_code == 409 and refused.get_json()["error"]["code"] == "ticket_not_active"


def test_each_entrant_is_mailed_its_result_once(clients, settings, servers):
    from common.billing import draw_mail
    from tests.test_email_verification import mail_to

    sale = draw_sale(clients, stock=1, starts_in=4)
    shoppers = users(clients, 2)
    entries = [enter(clients, sale["_id"], u) for u in shoppers]
    for entry, user_id, number in zip(entries, shoppers, CARDS, strict=False):
        hold(clients, entry, user_id, number)
    wait_for_start(sale)
    walk(clients, sale["_id"])

    def send() -> int:
        return draw_mail.send_results(clients.redis, clients.db, sale["_id"], smtp_url=settings.smtp_url,
                                      sender="shop@example.com", public_url="http://shop.test")

    assert send() == 2 and send() == 0
    subjects = {}
    for entry, user_id in zip(entries, shoppers, strict=True):
        [message] = mail_to(servers.mail_dir, f"{user_id}@example.com")
        subjects[ticket_of(clients, entry)["status"]] = message["Subject"]
        body = message.get_body(preferencelist=("plain",)).get_content()
        assert f"http://shop.test/tickets/{entry['id']}" in body
    assert subjects == {"paid": "You were drawn: your order is confirmed",
                        "not_selected": "The draw: not selected this time"}


def test_the_operator_stats_count_the_holds_as_the_tickets_say(client, clients):
    """GET /api/admin/sales/<id>/stats has `draw`: held now, captured, released, failed, each
    counted once by the step that changes it, however often a step runs again."""
    stock = 2
    sale = draw_sale(clients, stock=stock, starts_in=8, one_card=False)  # one declining card
    sale_id = sale["_id"]
    admin = register_admin(client, clients)

    def draw_stats() -> dict[str, int]:
        answer = client.get(f"/api/admin/sales/{sale_id}/stats", headers=bearer(admin["access_token"]))
        assert answer.status_code == 200, answer.get_json()
        return answer.get_json()["draw"]

    assert draw_stats() == {"held": 0, "captured": 0, "released": 0, "failed": 0}
    shoppers = users(clients, 6)
    entries = [enter(clients, sale_id, u) for u in shoppers]
    # The first declines, then holds another card; the second declines and stays out.
    for entry, user_id in zip(entries[:2], shoppers[:2], strict=True):
        with pytest.raises(PaymentDeclined):
            hold(clients, entry, user_id, DECLINED)
    intents = {entries[0]["id"]: hold(clients, entries[0], shoppers[0], CARDS[0]).id}
    for entry, user_id, number in zip(entries[2:], shoppers[2:], CARDS[1:], strict=False):
        intents[entry["id"]] = hold(clients, entry, user_id, number).id
    # Stripe's answer recorded again (a retried request) counts nothing more.
    assert holds.mark_hold(clients.redis, entries[2]["id"], intents[entries[2]["id"]], HoldStatus.HELD)
    assert draw_stats() == {"held": 5, "captured": 0, "released": 0, "failed": 2}
    # One withdraws (the third).
    assert holds.withdraw_entry(clients.redis, gateway_for(clients), entries[2]["id"],
                               shoppers[2])["reason"] == "withdrawn"
    assert draw_stats() == {"held": 4, "captured": 0, "released": 1, "failed": 2}

    wait_for_start(sale)
    drawn = [t for t in contract_order(str(clients.redis.hget(sale_keys.config_key(sale_id), "seed")),
                                       [e["id"] for e in entries]) if t in intents and t != entries[2]["id"]]
    clients.stripe.v1.payment_intents.cancel(intents[drawn[0]])  # the first drawn: a failed capture
    report = walk(clients, sale_id)
    assert (report.captured, report.failed, report.released) == (stock, 1, 1)
    # Walked again from the first entry (a redelivered task after a crash): counted once.
    clients.redis.hset(sale_keys.draw_key(sale_id), "walked", 0)
    walk(clients, sale_id)

    tickets = [ticket_of(clients, e) for e in entries]
    shown = [t["hold"]["status"] for t in tickets]
    expected = {"held": shown.count("held"), "captured": shown.count("captured"),
                "released": shown.count("released"),
                "failed": 2 + sum(t["status"] == "payment_failed" for t in tickets)}
    assert expected == {"held": 0, "captured": 2, "released": 3, "failed": 3}
    assert draw_stats() == expected
    # A queue sale's stats have no `draw`.
    queue_sale = sales.create_sale(
        clients.db, clients.redis, product_id=make_product(clients, 1), stock=1, price_cents=100,
        starts_at=datetime.now(UTC), ends_at=datetime.now(UTC) + timedelta(hours=1))
    answer = client.get(f"/api/admin/sales/{queue_sale['_id']}/stats", headers=bearer(admin["access_token"]))
    assert "draw" not in answer.get_json()
