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
from typing import Any

import redis
from pymongo.database import Database

from common.auditing import operator_log
from common.flash_sale import sale_keys
from common.flash_sale.sales import KEEP_AFTER_END, get_sale_doc
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
