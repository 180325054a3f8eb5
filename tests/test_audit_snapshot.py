"""The auditor's reader against real Redis, MongoDB and the Stripe emulator: a sale sold honestly
reads back whole and passes; a paid ticket forced back to `cancelled` is caught twice (it left a
final status, and a cancelled ticket was charged)."""

from __future__ import annotations

from common.auditing import audit
from common.auditing.audit import Invariant
from common.billing import payments
from common.billing.payments import apply_intent
from common.flash_sale import sale_keys, waiting_room
from tests.waiting_room_helpers import card_token, drain, open_sale, payment_context


def test_a_snapshot_read_from_the_servers_audits_a_sale(clients):
    sale_id = open_sale(clients, stock=2, per_user_limit=1, product_stock=2)
    payer, quitter, late = (waiting_room.admit(clients.redis, sale_id, user, 1).ticket["id"]
                            for user in ("payer", "quitter", "late"))
    drain(clients, sale_id)
    ctx = payment_context(clients)
    intent_id = waiting_room.read_ticket(clients.redis, payer)["reservation"]["payment_intent_id"]
    ctx.gateway.confirm_with_card_token(intent_id, card_token(clients.settings.stripe_api_base),
                                        email="payer@example.com")
    assert apply_intent(ctx, intent_id) == "paid"
    released = clients.redis.hget(sale_keys.ticket_key(sale_id, quitter), "payment_intent_id")
    payments.cancel_ticket(clients.redis, ctx.gateway, quitter, "quitter")

    before = audit.read_sale_snapshot(clients.redis, clients.db, sale_id, stripe_client=clients.stripe,
                                      with_product=True)
    assert before.stream_ids == [payer, quitter, late]
    assert before.statuses() == {payer: "paid", quitter: "cancelled", late: "sold_out"}
    assert before.config is not None and before.config.per_user_limit == 1
    assert before.counters is not None and (before.counters.sold, before.counters.available) == (1, 1)
    assert [(o.ticket_id, o.user_id, o.units) for o in before.orders] == [(payer, "payer", 1)]
    assert before.intents is not None
    assert {i.id: (i.status, i.refunds) for i in before.intents.values()} == {
        intent_id: ("succeeded", 0), released: ("canceled", 0)}
    assert before.settled == {payer} and before.product_stock is not None
    assert audit.audit_sale(before, settled=True) == []

    # Corrupt it the way the old bug looked from outside: the paid ticket shows cancelled.
    clients.redis.hset(sale_keys.ticket_key(sale_id, payer), "status", "cancelled")
    after = audit.read_sale_snapshot(clients.redis, clients.db, sale_id, stripe_client=clients.stripe)
    found = {(v.invariant, v.code, v.subject) for v in audit.audit_sale(after, earlier=[before])}
    assert (Invariant.FINAL_STAYS_FINAL, "left_final", payer) in found
    assert (Invariant.MONEY, "cancelled_charged", payer) in found
