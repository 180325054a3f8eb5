"""The waiting room: admission into a sale's Redis stream, ticket status, cancellation.

Admission is one Lua call (one round trip, its reply the whole answer); reading a ticket is
one pipelined round trip on the sale's slot and O(1) whatever the queue length: the position
comes from two counters, not from the stream.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import limits
import redis

from common.flash_sale import sale_keys, ticket_events
from common.flash_sale.entry_challenge import Solution, challenge_url
from common.flash_sale.tickets import Chances, TicketStatus, public_ticket
from common.platform import ids
from common.platform.errors import (
    ChallengeRequired,
    EmailUnverified,
    NotFound,
    PurchaseLimitReached,
    QuantityTooLarge,
    QueueFull,
    RateLimited,
    SaleNotOpen,
    SoldOut,
)
from common.platform.lua_scripts import scripts_for

KICK_DEBOUNCE_MS = 200


@dataclass(frozen=True)
class AdmissionRate:
    """A shopper's admission rate limit, as admit.lua's GCRA takes it: admissions are spaced
    `interval_ms` apart on average, with up to `burst` of them back to back."""

    interval_ms: int
    allowance_ms: int
    text: str

    @classmethod
    def parse(cls, text: str) -> AdmissionRate:
        item = limits.parse(text)
        interval = max(1, round(item.get_expiry() * 1000 / item.amount))
        return cls(interval_ms=interval, allowance_ms=interval * (item.amount - 1), text=text)


UNLIMITED = AdmissionRate(interval_ms=0, allowance_ms=0, text="unlimited")


@dataclass(frozen=True)
class Admission:
    ticket: dict[str, Any]
    created: bool
    # True when workers should be nudged to drain this sale now (debounced in Redis).
    kick: bool


def admit_script_call(sale_id: str, ticket_id: str, user_id: str, quantity: int,
                      rate: AdmissionRate = UNLIMITED, email_verified: bool = False,
                      solution: Solution | None = None) -> tuple[list[str], list[Any]]:
    """admit.lua's KEYS and ARGV for one admission."""
    keys = [sale_keys.config_key(sale_id), sale_keys.counters_key(sale_id),
            sale_keys.stream_key(sale_id), sale_keys.live_tickets_key(sale_id),
            sale_keys.latest_tickets_key(sale_id), sale_keys.held_units_key(sale_id),
            sale_keys.kick_key(sale_id), sale_keys.ticket_key(sale_id, ticket_id),
            sale_keys.admission_rate_key(sale_id, user_id), sale_keys.drain_lock_key(sale_id),
            sale_keys.lobby_key(sale_id), sale_keys.after_lobby_key(sale_id)]
    args = [ticket_id, user_id, quantity, KICK_DEBOUNCE_MS, sale_id, rate.interval_ms,
            rate.allowance_ms, "1" if email_verified else "0"]
    if solution is not None:
        keys.append(sale_keys.challenge_solution_key(sale_id, solution.challenge))
        args.append(solution.expires_at_ms)
    return keys, args


def admit(redis_client: redis.Redis, sale_id: str, user_id: str, quantity: int,
          rate: AdmissionRate = UNLIMITED, *, email_verified: bool = False,
          recheck_verified: Callable[[], bool] | None = None,
          solution: Solution | None = None) -> Admission:
    """Issue a ticket, or return the caller's live ticket for this sale (idempotent).

    One call is one admission whatever the network does: admit.lua is idempotent on the ticket
    id drawn here, so a resend after a lost reply answers as the first run did.
    `email_verified`: what the shopper's access token says; a sale that needs it refuses
    others, unless `recheck_verified()` (the account as it is now, asked only then) says the
    address was verified since the token was issued.
    `solution`: the admission's proof-of-work, verified by the caller (entry_challenge.verify);
    a sale that needs one spends it here, once: ChallengeRequired without one, or when it was
    spent already (by anyone).
    Raises RateLimited, SaleNotOpen, SoldOut, QuantityTooLarge, PurchaseLimitReached, QueueFull,
    EmailUnverified, ChallengeRequired, NotFound.
    """
    if not sale_keys.SALE_ID_PATTERN.match(sale_id):
        raise NotFound("No such sale.")
    ticket_id = ids.new_ticket_id(sale_id)
    keys, args = admit_script_call(sale_id, ticket_id, user_id, quantity, rate, email_verified,
                                   solution)
    # One round trip: the script's reply carries everything the answer needs (no pipeline:
    # a Redis Cluster client does not pipeline EVALSHA).
    result = scripts_for(redis_client).call_hot("admit", keys, args)
    outcome = result[0]
    if outcome == "email_unverified" and recheck_verified is not None and recheck_verified():
        # The same ticket id: its rate step was counted already and is not taken again.
        keys, args = admit_script_call(sale_id, ticket_id, user_id, quantity, rate, True, solution)
        result = scripts_for(redis_client).call_hot("admit", keys, args)
        outcome = result[0]
    if outcome == "issued":
        kick, seq, created_at_ms, served, service_rate, status, units_before = result[2:9]
        fields = {"id": ticket_id, "sale_id": sale_id, "user_id": user_id, "quantity": str(quantity),
                  "seq": str(seq), "status": str(status), "units_before": str(units_before),
                  "created_at_ms": created_at_ms, "updated_at_ms": created_at_ms}
        if len(result) > 13:  # a draw sale's entry, whose card is to be held (draw.py)
            fields.update(hold_status="required", hold_amount_cents=str(result[13]),
                          hold_currency=str(result[14]))
        ticket = public_ticket(fields, int(served), float(service_rate),
                               Chances.from_values(result[9:13]))
        return Admission(ticket=ticket, created=True, kick=bool(int(kick)))
    if outcome == "replayed":
        # Rare (the first reply was lost): the ticket as it is now, one more round trip. Its
        # nudge may have been lost with the reply; a spare one costs a drain that finds little.
        ticket = read_ticket(redis_client, ticket_id)
        return Admission(ticket=ticket, created=True, kick=ticket["status"] == TicketStatus.QUEUED)
    if outcome == "existing":
        return Admission(ticket=read_ticket(redis_client, result[1]), created=False, kick=False)
    if outcome == "rate_limited":
        retry_after = max(1, -(-int(result[1]) // 1000))
        raise RateLimited(details={"limit": rate.text}, headers={"Retry-After": str(retry_after)})
    if outcome == "not_open":
        raise SaleNotOpen(details={"sale_status": result[1]})
    if outcome == TicketStatus.SOLD_OUT:
        raise SoldOut()
    if outcome == "over_limit":
        raise QuantityTooLarge(details={"per_user_limit": int(result[1])})
    if outcome == "limit_reached":
        raise PurchaseLimitReached(details={"held": int(result[1])})
    if outcome == "email_unverified":
        raise EmailUnverified()
    if outcome == "queue_full":
        raise QueueFull(details={"queue_cap": int(result[1])})
    if outcome == "challenge_required":
        raise ChallengeRequired(details={"challenge_url": challenge_url(sale_id), "reason": result[1]})
    raise NotFound("No such sale.")


def read_ticket_fields(redis_client: redis.Redis, ticket_id: str) -> tuple[dict[str, str], int, float]:
    fields, served, rate, _ = read_ticket_view(redis_client, ticket_id)
    return fields, served, rate


def read_ticket_view(redis_client: redis.Redis,
                     ticket_id: str) -> tuple[dict[str, str], int, float, Chances]:
    """A ticket's hash with the sale's served counter, rate and chances (one round trip)."""
    fields, progress = ticket_events.read_ticket_state(redis_client, ticket_id)
    return fields, progress.served, progress.rate, progress.chances


def read_ticket(redis_client: redis.Redis, ticket_id: str, owner_id: str | None = None) -> dict[str, Any]:
    """The contract's ticket, read and built as every stream event is (ticket_events.ticket_of).
    With owner_id, another user's ticket is NotFound (not 403)."""
    fields, progress = ticket_events.read_ticket_state(redis_client, ticket_id)
    if owner_id is not None and fields.get("user_id") != owner_id:
        raise NotFound("No such ticket.")
    if (owner_id is not None and fields.get("status") in ticket_events.WAITING
            and ticket_events.POLL_PRESENCE.due(ticket_id)):
        # Its owner is here: a waiting ticket keeps its place under the sale's presence rule.
        ticket_events.note_presence(redis_client, fields["sale_id"], [ticket_id])
    return ticket_events.ticket_of(fields, progress)


def latest_ticket(redis_client: redis.Redis, sale_id: str, user_id: str) -> dict[str, Any]:
    """The caller's most recent ticket for a sale (to find it again after a reload)."""
    if not sale_keys.SALE_ID_PATTERN.match(sale_id):
        raise NotFound("No such sale.")
    ticket_id = redis_client.hget(sale_keys.latest_tickets_key(sale_id), user_id)
    if not ticket_id:
        raise NotFound("You hold no ticket for this sale.")
    return read_ticket(redis_client, str(ticket_id), owner_id=user_id)


def release_ticket(redis_client: redis.Redis, ticket_id: str, new_status: TicketStatus,
                   allowed: tuple[TicketStatus, ...], *, only_if_due: bool = False,
                   payment_intent_id: str = "", intent_state: str = "") -> tuple[bool, str]:
    """End an unpaid ticket atomically, returning its stock to the sale at once, and queue
    its PaymentIntent (if any) in the sale's cancellation outbox in the same step, unless
    `intent_state` is "cancelled" (Stripe already confirmed it), and giving back the card it
    claimed for the sale (if it still holds the claim). `payment_intent_id`: the
    intent the ticket must have, "none" for a ticket that must have none, "" for any.

    Returns (released, payment_intent_id or the status that prevented it).
    """
    sale_id = sale_keys.sale_of_ticket(ticket_id)
    if sale_id is None:
        raise NotFound("No such ticket.")
    result = scripts_for(redis_client).release(
        keys=[sale_keys.ticket_key(sale_id, ticket_id), sale_keys.counters_key(sale_id),
              sale_keys.live_tickets_key(sale_id), sale_keys.held_units_key(sale_id),
              sale_keys.expiry_key(sale_id), sale_keys.intent_cancels_key(sale_id),
              sale_keys.card_claims_key(sale_id)],
        args=[new_status.value, ",".join(s.value for s in allowed),
              "due" if only_if_due else "any", payment_intent_id, intent_state],
    )
    return result[0] == "released", result[1]


def public_status(status: str) -> str:
    from common.flash_sale.tickets import PUBLIC_STATUS

    try:
        parsed = TicketStatus(status)
    except ValueError:
        return status
    return PUBLIC_STATUS.get(parsed, parsed).value
