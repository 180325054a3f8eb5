"""One card per sale: a card (Stripe's `card.fingerprint`, the same for every token and
PaymentMethod made from one card number) pays for one account in a sale.

A scalper who wins with many accounts pays with few cards; a draw that lets one card pay for
all of them is not fair to people. So the card is claimed for the sale, atomically on the
sale's slot, after Stripe has told its fingerprint and before the payment is confirmed: a
second account gets CardAlreadyUsed and nothing is charged. The claim belongs to the ticket
that made it and is given back in the same step that ends that ticket without buying
(flash_sale/lua/release.lua: expired, cancelled, declined); the same account may use its card
again (a retry, its next ticket). A sale whose `entry.one_card` is off only records the card.
"""

from __future__ import annotations

import redis

from common.flash_sale import sale_keys
from common.platform.errors import CardAlreadyUsed, NotFound, TicketNotActive
from common.platform.lua_scripts import scripts_for


def claim_card(redis_client: redis.Redis, ticket_id: str, user_id: str, fingerprint: str) -> bool:
    """Claim the card for the owner's reserved ticket's sale; True when the sale keeps one card
    per account (False: the card is only recorded on the ticket).

    Idempotent: claiming again for the same ticket, or for another ticket of the same account,
    changes nothing. Raises CardAlreadyUsed when another account's ticket holds the card,
    TicketNotActive when the ticket no longer holds a reservation.
    """
    sale_id = sale_keys.sale_of_ticket(ticket_id)
    if sale_id is None:
        raise NotFound("No such ticket.")
    outcome = scripts_for(redis_client).claim_card(
        keys=[sale_keys.card_claims_key(sale_id), sale_keys.ticket_key(sale_id, ticket_id),
              sale_keys.config_key(sale_id)],
        args=[fingerprint, ticket_id, user_id])
    if outcome[0] == "taken":
        raise CardAlreadyUsed(details={"sale_id": sale_id})
    if outcome[0] == "ended":
        raise TicketNotActive(details={"status": outcome[1]})
    return bool(outcome[0] == "claimed")


def card_holder(redis_client: redis.Redis, sale_id: str, fingerprint: str) -> tuple[str, str] | None:
    """(ticket_id, user_id) of the ticket holding the card's claim in the sale, or None."""
    holder = redis_client.hget(sale_keys.card_claims_key(sale_id), fingerprint)
    if not holder:
        return None
    ticket_id, _, user_id = str(holder).partition(" ")
    return ticket_id, user_id
