"""The operator's controls of a live sale: pause, pace, cap, and the few settings that may
change once shoppers are in (`PATCH /api/sales/<id>`).

Every control lives in the sale's Redis config, which every process reads on each use
(admit.lua, reserve_batch.lua, the decider's loop), so a change holds at once everywhere; it
is written there first, in one step with what shoppers see of it (sale_controls.lua), then
into the sale's MongoDB document (what `GET /api/sales/<id>` shows) and the audit log.

What a change does to tickets already in the sale:
- `paused`: no ticket is decided while it is on (admission goes on); reservations made
  before keep their time to pay. Resuming decides the waiting tickets in their order.
- `outflow_per_second`: paces the decisions from the next batch on; none is undone.
- `queue_cap`: refuses admissions beyond it (409 `queue_full`); tickets already live stay.
- `ends_at`: admissions follow the new end at once; reservations keep their expiry.
- `reservation_ttl_seconds`: reservations made from now on; those made before keep theirs.
- `presence_timeout_seconds`: every ticket not yet decided, when its turn comes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import redis
from pymongo.database import Database

from common.auditing import operator_log
from common.flash_sale import sale_keys
from common.flash_sale.sales import KEEP_AFTER_END, get_sale_doc
from common.flash_sale.tickets import TicketStatus
from common.flash_sale.waiting_room import release_ticket
from common.platform.clock import utc_now
from common.platform.errors import Conflict, NotFound, ValidationFailed
from common.platform.lua_scripts import scripts_for

# What may change, and the sale config field (Redis) each is kept in.
CONFIG_FIELDS = {
    "ends_at": "ends_at_ms",
    "reservation_ttl_seconds": "ttl_s",
    "presence_timeout_seconds": "presence_timeout_s",
    "outflow_per_second": "outflow_per_second",
    "queue_cap": "queue_cap",
    "paused": "paused",
}
# Controls a sale created before them reads as off.
CONTROL_DEFAULTS: dict[str, Any] = {"outflow_per_second": None, "queue_cap": None, "paused": False}


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return _aware(moment).astimezone(UTC).isoformat().replace("+00:00", "Z")


def _config_value(name: str, value: Any) -> str:
    """A control as sale_controls.lua stores it ("" removes it: no limit, not paused)."""
    if value is None or value is False:
        return ""
    if value is True:
        return "1"
    if isinstance(value, datetime):
        return str(int(_aware(value).timestamp() * 1000))
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _shown(value: Any) -> Any:
    return _iso(value) if isinstance(value, datetime) else value


def controls_of(sale: dict[str, Any]) -> dict[str, Any]:
    return {name: sale.get(name, default) for name, default in CONTROL_DEFAULTS.items()}


def apply_config(redis_client: redis.Redis, sale_id: str, config: dict[str, str]) -> float:
    """Write config fields and what shoppers see of them in one step; returns the shown rate."""
    args: list[str] = []
    for name, value in config.items():
        args += [name, value]
    shown = scripts_for(redis_client).sale_controls(
        keys=[sale_keys.config_key(sale_id), sale_keys.counters_key(sale_id)], args=args)
    if shown is None:
        raise NotFound("The sale is not loaded.")
    return float(shown)


def update_sale(db: Database, redis_client: redis.Redis, sale_id: str, changes: dict[str, Any],
                *, actor: str) -> dict[str, Any]:
    """Apply the operator's changes (already validated field by field) and return the sale.

    ValidationFailed when `ends_at` is not after both `starts_at` and now (ending now is
    `POST /api/sales/<id>/end`). Idempotent: the same changes again change nothing more (and
    are logged again, as the operator did send them).
    """
    sale = get_sale_doc(db, sale_id)
    if "ends_at" in changes:
        ends_at = _aware(changes["ends_at"])
        if ends_at <= _aware(sale["starts_at"]) or ends_at <= utc_now():
            raise ValidationFailed(details={"fields": {"ends_at": [
                "Must be after starts_at and in the future (to end the sale now: POST .../end)."]}})
        if sale.get("ended_by_operator"):
            raise ValidationFailed(details={"fields": {"ends_at": ["The sale was ended already."]}})
    current = {**controls_of(sale), **{name: sale.get(name) for name in CONFIG_FIELDS
                                       if name not in CONTROL_DEFAULTS}}
    config = {CONFIG_FIELDS[name]: _config_value(name, value) for name, value in changes.items()}
    if "ends_at" in changes:
        # Keys are kept until a while after the end: a later end keeps them longer.
        expire_at = _aware(changes["ends_at"]) + KEEP_AFTER_END
        config["expire_at_s"] = str(int(max(expire_at, _aware(sale["ends_at"]) + KEEP_AFTER_END)
                                        .timestamp()))
    apply_config(redis_client, sale_id, config)
    _store(db, sale_id, changes)
    operator_log.record(db, actor=actor, action=operator_log.OperatorAction.SALE_UPDATED,
                        sale_id=sale_id,
                        changes={name: {"before": _shown(current.get(name)), "after": _shown(value)}
                                 for name, value in changes.items()})
    return get_sale_doc(db, sale_id)



def _store(db: Database, sale_id: str, changes: dict[str, Any]) -> None:
    """Into the sale's document. A time is written with the whole document (the embedded
    MongoDB wire server stores a datetime given to `$set` as a string), guarded by the one field
    beat changes meanwhile (`returned_units`) and tried again if it moved."""
    plain = {name: value for name, value in changes.items() if not isinstance(value, datetime)}
    if plain:
        db.sales.update_one({"_id": sale_id}, {"$set": plain})
    if len(plain) == len(changes):
        return
    for _attempt in range(5):
        sale = get_sale_doc(db, sale_id)
        replaced = db.sales.replace_one({"_id": sale_id, "returned_units": sale.get("returned_units")},
                                        {**sale, **changes})
        if replaced.matched_count:
            return
    raise Conflict("The sale changed meanwhile; try again.")


class Closing(StrEnum):
    """Why the operator closed a sale early: the `reason` its waiting tickets end with."""

    ENDED = "sale_ended"  # waiting tickets end sold_out; reservations keep their time to pay
    CANCELLED = "sale_cancelled"  # every live ticket ends cancelled; paid orders refunded


LOBBY_PAGE = 200


def close_sale(db: Database, redis_client: redis.Redis, sale_id: str, closing: Closing) -> dict[str, Any]:
    """End the sale now, as the operator asked: admissions stop at once (its end is now), every
    lobby ticket ends here, and every queued ticket ends at the decider's next batch (it reads
    `closing` before anything else: no pause, no pace), which is nudged by the caller.

    Idempotent, and a cancel may follow an end (never the reverse). The sale's document records
    it first (`closing`, `closed_at`): a crash after that leaves a record that the sweep (and
    a second call) finish from. Returns the sale's document."""
    sale = get_sale_doc(db, sale_id)
    if sale.get("closing") == Closing.CANCELLED and closing is Closing.ENDED:
        return sale  # cancelled already: final
    now = utc_now()
    ends_at = min(_aware(sale["ends_at"]), now)
    _store(db, sale_id, {"closing": closing.value, "closed_at": now, "ends_at": ends_at,
                         "paused": False})
    apply_config(redis_client, sale_id, {
        "closing": closing.value, "paused": "", "ends_at_ms": _config_value("ends_at", ends_at)})
    end_lobby_tickets(redis_client, sale_id, closing)
    return get_sale_doc(db, sale_id)


def end_lobby_tickets(redis_client: redis.Redis, sale_id: str, closing: Closing) -> int:
    """Every ticket still in the lobby ends now (end_lobby_tickets.lua), a page at a time;
    a draw entry's hold goes into the cancellation outbox in the same step."""
    status = "cancelled" if closing is Closing.CANCELLED else "sold_out"
    lobby_key, ended, start = sale_keys.lobby_key(sale_id), 0, 0
    while True:
        page = redis_client.zrange(lobby_key, start, start + LOBBY_PAGE - 1)
        if not page:
            return ended
        keys = [sale_keys.counters_key(sale_id), sale_keys.live_tickets_key(sale_id),
                sale_keys.intent_cancels_key(sale_id)]
        keys += [sale_keys.ticket_key(sale_id, str(ticket_id)) for ticket_id in page]
        ended += len(scripts_for(redis_client).end_lobby_tickets(keys=keys,
                                                                args=[status, closing.value]))
        start += LOBBY_PAGE


def end_sale(db: Database, redis_client: redis.Redis, sale_id: str, *, actor: str) -> dict[str, Any]:
    """`POST /api/sales/<id>/end`: the sale ends now; queued and lobby tickets end `sold_out`
    with reason `sale_ended`; reservations keep their time to pay. Idempotent."""
    before = get_sale_doc(db, sale_id)
    sale = close_sale(db, redis_client, sale_id, Closing.ENDED)
    operator_log.record(db, actor=actor, action=operator_log.OperatorAction.SALE_ENDED, sale_id=sale_id,
                        changes={"ends_at": {"before": _shown(before["ends_at"]),
                                             "after": _shown(sale["ends_at"])}})
    return sale


def cancel_waiting_and_reserved(redis_client: redis.Redis, sale_id: str) -> list[str]:
    """A cancelled sale's reservations end `cancelled` (reason `sale_cancelled`), their units
    back and their PaymentIntents in the cancellation outbox, each in one step (release.lua).
    A payment already under way is settled as a late payment on a cancelled ticket: refunded.
    Returns the intents to cancel now (the outbox keeps them until Stripe confirms)."""
    intents = []
    for ticket_id in redis_client.zrange(sale_keys.expiry_key(sale_id), 0, -1):
        released, intent_id = release_ticket(redis_client, str(ticket_id), TicketStatus.CANCELLED,
                                             (TicketStatus.RESERVING, TicketStatus.RESERVED))
        if released:
            redis_client.hset(sale_keys.ticket_key(sale_id, str(ticket_id)), "reason",
                              Closing.CANCELLED.value)
            if intent_id:
                intents.append(intent_id)
    return intents
