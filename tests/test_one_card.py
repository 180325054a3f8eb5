"""One card per sale (API v3, "Entry requirements": `one_card`), against the real Redis, MongoDB
and Stripe emulator: a card that paid for one account is refused for a second account of the
same sale before anything is charged, the same account may use it again, the card is given
back when the ticket that claimed it ends without buying, and the auditor sees a card that paid
for two accounts."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from common.auditing import audit
from common.billing import card_claims
from common.billing.payments import apply_intent
from common.flash_sale import reservations, sale_keys, sales, waiting_room
from tests.accounts import bearer, register
from tests.waiting_room_helpers import card_token, drain, make_product, payment_context

# Stripe's test card that asks for 3-D Secure: the payment stays open, the reservation held.
THREE_D_SECURE = "4000002500003155"
DECLINED = "4000000000000341"  # attaches, then the charge is declined


def one_card_sale(clients, stock: int, *, ttl: int = 300, per_user_limit: int = 1) -> str:
    now = datetime.now(UTC)
    sale = sales.create_sale(
        clients.db, clients.redis, product_id=make_product(clients, stock), stock=stock,
        price_cents=1999, starts_at=now - timedelta(seconds=1), ends_at=now + timedelta(hours=1),
        per_user_limit=per_user_limit, reservation_ttl_seconds=ttl, lobby_opens_at=None,
        entry=sales.EntryRequirements(one_card=True))
    return str(sale["_id"])


def shopper(client) -> dict[str, Any]:
    session = register(client)
    return {"id": session["user"]["id"], "headers": bearer(session["access_token"])}


def reserved_tickets(clients, sale_id: str, *shoppers: dict[str, Any]) -> list[dict[str, Any]]:
    tickets = [waiting_room.admit(clients.redis, sale_id, s["id"], 1).ticket for s in shoppers]
    drain(clients, sale_id)
    found = [waiting_room.read_ticket(clients.redis, t["id"]) for t in tickets]
    assert [t["status"] for t in found] == ["reserved"] * len(shoppers)
    return found


def pay(client, clients, ticket: dict[str, Any], who: dict[str, Any], number: str = "4242424242424242"):
    token = card_token(str(clients.settings.stripe_api_base), number)
    return client.post(f"/api/tickets/{ticket['id']}/pay", json={"card_token": token},
                       headers=who["headers"])


def intent_at_stripe(clients, ticket: dict[str, Any]) -> dict[str, Any]:
    intent_id = ticket["reservation"]["payment_intent_id"]
    return clients.stripe.v1.payment_intents.retrieve(intent_id).to_dict()


def test_a_card_that_paid_for_one_account_is_refused_for_another_before_any_charge(client, clients):
    sale_id = one_card_sale(clients, stock=3)
    first, second = shopper(client), shopper(client)
    mine, theirs = reserved_tickets(clients, sale_id, first, second)

    paid = pay(client, clients, mine, first)
    assert paid.status_code == 200 and paid.get_json()["status"] == "succeeded", paid.get_json()

    refused = pay(client, clients, theirs, second)
    assert refused.status_code == 409, refused.get_json()
    assert refused.get_json()["error"]["code"] == "card_already_used"
    # Nothing charged nor even prepared: the intent never got the card, nor was confirmed.
    intent = intent_at_stripe(clients, theirs)
    assert intent["status"] == "requires_payment_method"
    assert not intent.get("payment_method") and not intent.get("customer")
    assert waiting_room.read_ticket(clients.redis, theirs["id"])["status"] == "reserved"

    # Another card of theirs goes through; the first account's card stays with it.
    other = pay(client, clients, theirs, second, number="5555555555554444")
    assert other.status_code == 200 and other.get_json()["status"] == "succeeded", other.get_json()
    for ticket in (mine, theirs):
        apply_intent(payment_context(clients), ticket["reservation"]["payment_intent_id"])
    snapshot = audit.read_sale_snapshot(clients.redis, clients.db, sale_id, stripe_client=clients.stripe)
    assert audit.audit_sale(snapshot, settled=True) == []
    orders = {o.user_id: o.document["card_fingerprint"] for o in snapshot.paid_orders()}
    assert len(orders) == 2 and len(set(orders.values())) == 2


def test_the_same_account_may_use_its_card_again(client, clients):
    sale_id = one_card_sale(clients, stock=4, per_user_limit=2)
    buyer, other = shopper(client), shopper(client)
    (first,) = reserved_tickets(clients, sale_id, buyer)
    # Declined by the bank: the card was claimed, and the ticket's end gives it back.
    declined = pay(client, clients, first, buyer, DECLINED)
    assert declined.status_code == 402, declined.get_json()
    refused_card = clients.redis.hget(sale_keys.ticket_key(sale_id, first["id"]), "card_fingerprint")
    assert card_claims.card_holder(clients.redis, sale_id, refused_card) == (first["id"], buyer["id"])
    outcome = apply_intent(payment_context(clients), first["reservation"]["payment_intent_id"])
    assert outcome == "payment_failed"
    assert card_claims.card_holder(clients.redis, sale_id, refused_card) is None

    # Its next tickets: the card that bought one buys the next (the claim stays with the first).
    bought = []
    for _ticket in range(2):
        (ticket,) = reserved_tickets(clients, sale_id, buyer)
        assert pay(client, clients, ticket, buyer).get_json()["status"] == "succeeded"
        apply_intent(payment_context(clients), ticket["reservation"]["payment_intent_id"])
        bought.append(ticket)
    card = clients.redis.hget(sale_keys.ticket_key(sale_id, bought[1]["id"]), "card_fingerprint")
    assert card_claims.card_holder(clients.redis, sale_id, card) == (bought[0]["id"], buyer["id"])
    (theirs,) = reserved_tickets(clients, sale_id, other)
    assert pay(client, clients, theirs, other).get_json()["error"]["code"] == "card_already_used"


def test_the_card_is_given_back_when_the_ticket_that_claimed_it_expires(client, clients):
    sale_id = one_card_sale(clients, stock=2, ttl=2)
    first, second = shopper(client), shopper(client)
    mine, theirs = reserved_tickets(clients, sale_id, first, second)
    assert pay(client, clients, mine, first, THREE_D_SECURE).get_json()["status"] == "requires_action"

    refused = pay(client, clients, theirs, second, THREE_D_SECURE)
    assert refused.status_code == 409 and refused.get_json()["error"]["code"] == "card_already_used"

    # The first reservation runs out unpaid: its card is free for the sale again.
    past = int(time.time() * 1000) - 1
    clients.redis.hset(sale_keys.ticket_key(sale_id, mine["id"]), "expires_at_ms", past)
    clients.redis.zadd(sale_keys.expiry_key(sale_id), {mine["id"]: past})
    assert [t for t, _ in reservations.expire_due_reservations(clients.redis, sale_id)] == [mine["id"]]

    accepted = pay(client, clients, theirs, second, THREE_D_SECURE)
    assert accepted.status_code == 200, accepted.get_json()
    assert accepted.get_json()["status"] == "requires_action"
    fingerprint = clients.redis.hget(sale_keys.ticket_key(sale_id, theirs["id"]), "card_fingerprint")
    assert card_claims.card_holder(clients.redis, sale_id, fingerprint) == (theirs["id"], second["id"])


def test_the_auditor_sees_a_card_that_paid_for_two_accounts(client, clients):
    sale_id = one_card_sale(clients, stock=2)
    first, second = shopper(client), shopper(client)
    mine, theirs = reserved_tickets(clients, sale_id, first, second)
    for ticket, who, number in ((mine, first, "4242424242424242"), (theirs, second, "5555555555554444")):
        assert pay(client, clients, ticket, who, number).get_json()["status"] == "succeeded"
        apply_intent(payment_context(clients), ticket["reservation"]["payment_intent_id"])
    snapshot = audit.read_sale_snapshot(clients.redis, clients.db, sale_id)
    assert audit.check_one_card(snapshot) == []

    # As if the second had paid with the first one's card.
    card = clients.db.orders.find_one({"ticket_id": mine["id"]})["card_fingerprint"]
    clients.db.orders.update_one({"ticket_id": theirs["id"]}, {"$set": {"card_fingerprint": card}})
    snapshot = audit.read_sale_snapshot(clients.redis, clients.db, sale_id)
    found = [(v.invariant, v.code, v.subject) for v in audit.audit_sale(snapshot, settled=True)]
    assert found == [(audit.Invariant.ONE_CARD, "card_paid_for_two_accounts", card)]
