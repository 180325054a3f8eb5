"""Flash sales: stored in MongoDB, their stock loaded into Redis, which alone gates
reservations from then on.

A sale's units are taken out of its product's catalogue stock when the sale is created, so
cart buyers and sale buyers never sell the same unit; units left unsold when the sale has
ended (and nobody is waiting) go back to the catalogue (`return_unsold_units`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum, StrEnum
from typing import Any

import redis
from pymongo.database import Database

from common.beacon.drand import Chain
from common.flash_sale import beacon_draw, lobby, sale_keys
from common.platform import ids
from common.platform.clock import utc_now
from common.platform.errors import InsufficientStock, NotFound, ValidationFailed
from common.platform.lua_scripts import scripts_for
from common.shop.orders import OrderStatus


class SaleStatus(StrEnum):
    SCHEDULED = "scheduled"
    LOBBY = "lobby"  # before the start, joining the lobby (lobby.py)
    DRAWING = "drawing"  # the lobby closed, its beacon round awaited (beacon_draw.py)
    OPEN = "open"
    SOLD_OUT = "sold_out"
    ENDED = "ended"


class SaleMode(StrEnum):
    QUEUE = "queue"  # the waiting room: reserve in line, then pay within the reservation
    DRAW = "draw"  # the card held at entry, winners charged at the start (draw.py)


# A card hold lasts 7 days at the major networks: a draw's lobby lasts at most 6, so every
# hold taken in it can still be captured at the draw.
MAX_DRAW_LOBBY = timedelta(days=6)

# Redis keeps a sale's keys this long after it ends (tickets stay readable for shoppers).
KEEP_AFTER_END = timedelta(days=7)


@dataclass(frozen=True)
class EntryRequirements:
    """Who may enter a sale. The contract's defaults for a new sale are the API's
    (`verified_email` and `one_card` on); here every requirement is off unless asked for, and
    a sale stored before requirements existed reads as requiring none, as it was created.

    `verified_email` is enforced by admit.lua (the sale's config in Redis says it, the access
    token says whether the shopper is verified); `challenge` too (the API checks the solution,
    admit.lua spends it: flash_sale/entry_challenge.py); `one_card` by the payment
    (billing/card_claims.py), from the same config."""

    verified_email: bool = False
    challenge: bool = False
    one_card: bool = False

    @classmethod
    def of(cls, sale: dict[str, Any]) -> EntryRequirements:
        stored = sale.get("entry") or {}
        return cls(**{name: bool(stored.get(name, False)) for name in cls.__dataclass_fields__})

    def as_dict(self) -> dict[str, bool]:
        return {"verified_email": self.verified_email, "challenge": self.challenge,
                "one_card": self.one_card}


NO_REQUIREMENTS = EntryRequirements()


class Unset(Enum):
    """An argument left out (for lobby_opens_at, where None means "no lobby")."""

    UNSET = "unset"


UNSET = Unset.UNSET


@dataclass(frozen=True)
class SaleCounters:
    stock_total: int
    available: int
    reserved: int
    sold: int
    issued: int
    served: int
    queued: int
    sold_out: int
    expired: int
    cancelled: int
    payment_failed: int
    paid: int
    rate: float
    # Units given back to the catalogue after the sale ended unsold (already taken out of
    # stock_total, which counts the units the sale still owns).
    returned: int = 0
    abandoned: int = 0
    # The pace Stripe's health set (health_pacing.py): decisions a second, 0 paused; None: none.
    auto_pace: float | None = None
    auto_reason: str = ""
    # Tickets in the lobby now (not yet placed), and every ticket that joined it.
    lobby: int = 0
    lobby_size: int = 0
    # A draw sale's entries drawn after the last unit (draw.py).
    not_selected: int = 0
    # A draw sale's holds (counted by the Lua step that changes them, once each): held now,
    # captured, released (cancelled at Stripe), failed (declined, or a failed capture).
    draw_held: int = 0
    draw_captured: int = 0
    draw_released: int = 0
    draw_failed: int = 0

    @property
    def consistent(self) -> bool:
        return (self.available + self.reserved + self.sold == self.stock_total
                and min(self.available, self.reserved, self.sold, self.returned) >= 0)


def _to_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def create_sale(db: Database, redis_client: redis.Redis, *, product_id: str, stock: int,
                price_cents: int, starts_at: datetime, ends_at: datetime, per_user_limit: int = 1,
                reservation_ttl_seconds: int = 300,
                presence_timeout_seconds: int = 0,
                lobby_opens_at: datetime | Unset | None = UNSET,
                entry: EntryRequirements | dict[str, bool] = NO_REQUIREMENTS,
                mode: SaleMode | str = SaleMode.QUEUE, beacon: Chain | None = None,
                fairness_algorithm: str | None = None) -> dict[str, Any]:
    """Store a sale, taking its units out of the product's stock, and load it into Redis.

    `lobby_opens_at`: when shoppers may join the lobby (default: now; None: no lobby, the v1
    behaviour). The sale draws its fairness seed now and publishes only its commitment
    (flash_sale/lobby.py). `entry`: who may enter (EntryRequirements; none by default here).
    `mode`: `draw` for a draw sale (flash_sale/draw.py), which needs a lobby of at most
    MAX_DRAW_LOBBY (ValidationFailed otherwise). `beacon`: the drand chain whose round orders
    the lobby (`hmac-sha256-drand-v2`, beacon_draw.py), the default when one is given and the
    sale has a lobby; `fairness_algorithm` "hmac-sha256-v1" asks for the committed seed alone.

    InsufficientStock (409) when the product has fewer units than the sale. The units are
    taken first, with one conditional update: a crash before the sale is stored leaves the
    catalogue short (an operator sees it), never the same unit sold twice.
    """
    if ends_at <= starts_at:
        raise ValidationFailed(details={"fields": {"ends_at": ["Must be after starts_at."]}})
    if isinstance(lobby_opens_at, Unset):
        # A sale that has already started has no lobby window left.
        lobby_opens_at = min(utc_now(), starts_at if starts_at.tzinfo else starts_at.replace(tzinfo=UTC))
    if lobby_opens_at is not None and _to_ms(lobby_opens_at) > _to_ms(starts_at):
        raise ValidationFailed(details={"fields": {"lobby_opens_at": ["Must not be after starts_at."]}})
    if isinstance(entry, dict):
        entry = EntryRequirements(**entry)
    mode = SaleMode(mode)
    if mode is SaleMode.DRAW:
        _check_draw_lobby(lobby_opens_at, starts_at)
    seed = lobby.new_seed()
    fairness: dict[str, Any] = {"algorithm": lobby.ALGORITHM, "commitment": lobby.commitment(seed)}
    if fairness_algorithm == beacon_draw.ALGORITHM and beacon is None:
        raise ValidationFailed(details={"fields": {"fairness_algorithm": [
            "No randomness beacon is configured (DRAND_URLS)."]}})
    has_lobby = lobby_opens_at is not None and _to_ms(lobby_opens_at) < _to_ms(starts_at)
    if beacon is not None and has_lobby and fairness_algorithm in (None, beacon_draw.ALGORITHM):
        fairness = {"algorithm": beacon_draw.ALGORITHM, "commitment": fairness["commitment"],
                    "beacon": beacon_draw.beacon_fairness(beacon, starts_at)}
    product = db.products.find_one({"_id": product_id})
    if not product:
        raise ValidationFailed(details={"fields": {"product_id": ["No such product."]}})
    taken = db.products.update_one(
        {"_id": product_id, "stock": {"$gte": stock}},
        {"$inc": {"stock": -stock}, "$set": {"updated_at": utc_now()}})
    if taken.matched_count == 0:
        current = db.products.find_one({"_id": product_id}, {"stock": 1}) or {}
        raise InsufficientStock("The product has fewer units in stock than the sale.",
                                details={"product_stock": int(current.get("stock", 0)),
                                         "requested": stock})
    sale = {
        "_id": ids.new_sale_id(),
        "product_id": product_id,
        "stock_total": stock,
        "price_cents": price_cents,
        "currency": product.get("currency", "USD"),
        "starts_at": starts_at,
        "ends_at": ends_at,
        "per_user_limit": per_user_limit,
        "reservation_ttl_seconds": reservation_ttl_seconds,
        "presence_timeout_seconds": presence_timeout_seconds,
        "lobby_opens_at": lobby_opens_at,
        "entry": entry.as_dict(),
        "mode": mode.value,
        "fairness": fairness,
        # Secret until the lobby closes: never in an answer or a log line before the start.
        "fairness_seed": seed.hex(),
        "created_at": utc_now(),
        "loaded": False,
        "returned_units": 0,
    }
    try:
        db.sales.insert_one(sale)
    except Exception:
        db.products.update_one({"_id": product_id}, {"$inc": {"stock": stock}})
        raise
    load_sale(db, redis_client, sale)
    return sale


def _check_draw_lobby(lobby_opens_at: datetime | None, starts_at: datetime) -> None:
    """A draw sale's entries are its lobby's: it needs one, no longer than a hold lasts."""
    if lobby_opens_at is None or _to_ms(lobby_opens_at) >= _to_ms(starts_at):
        raise ValidationFailed(details={"fields": {"lobby_opens_at": [
            "A draw sale needs a lobby: it must open before starts_at."]}})
    if _to_ms(starts_at) - _to_ms(lobby_opens_at) > MAX_DRAW_LOBBY.total_seconds() * 1000:
        raise ValidationFailed(details={"fields": {"lobby_opens_at": [
            "A draw sale's lobby may last at most 6 days (a card hold lasts 7)."]}})


def load_sale(db: Database, redis_client: redis.Redis, sale: dict[str, Any]) -> bool:
    """Put a sale's configuration and stock into Redis once (idempotent)."""
    sale_id = sale["_id"]
    if sale.get("mode") == SaleMode.DRAW:
        # Before the stock: no admission (it needs the stock) can miss that it enters a draw.
        redis_client.hset(sale_keys.config_key(sale_id), "mode", SaleMode.DRAW.value)
    fairness = sale.get("fairness") or {}
    if fairness.get("beacon"):
        # Before the stock, like the mode: the start step must never take the seed for the key.
        redis_client.hset(sale_keys.config_key(sale_id), mapping=beacon_draw.redis_fields(fairness))
    entry = EntryRequirements.of(sale)
    expire_at = int((sale["ends_at"].replace(tzinfo=sale["ends_at"].tzinfo or UTC)
                     + KEEP_AFTER_END).timestamp())
    loaded = scripts_for(redis_client).load_sale(
        keys=[sale_keys.config_key(sale_id), sale_keys.counters_key(sale_id)],
        args=[sale_id, sale["stock_total"], _to_ms(sale["starts_at"]), _to_ms(sale["ends_at"]),
              sale["per_user_limit"], sale["reservation_ttl_seconds"], sale["price_cents"],
              sale["currency"], sale["product_id"], expire_at,
              sale.get("presence_timeout_seconds", 0), _lobby_opens_ms(sale),
              sale.get("fairness_seed") or "",
              "1" if entry.verified_email else "0", "1" if entry.challenge else "0",
              "1" if entry.one_card else "0"],
    )
    # The index spans every sale (another cluster slot): added after the sale's own keys.
    redis_client.sadd(sale_keys.SALES_INDEX_KEY, sale_id)
    if not sale.get("loaded"):
        db.sales.update_one({"_id": sale_id}, {"$set": {"loaded": True}})
    return bool(loaded)


def _lobby_opens_ms(sale: dict[str, Any]) -> int | str:
    """When the lobby opens, for Redis; "" when the sale has no lobby window (none asked for,
    or it would open only at the start)."""
    opens = sale.get("lobby_opens_at")
    if opens is None or _to_ms(opens) >= _to_ms(sale["starts_at"]):
        return ""
    return _to_ms(opens)


def load_pending_sales(db: Database, redis_client: redis.Redis) -> int:
    """At start-up: load sales created while Redis was unreachable."""
    count = 0
    for sale in db.sales.find({"loaded": False}):
        count += int(load_sale(db, redis_client, sale))
    return count


def get_sale_doc(db: Database, sale_id: str) -> dict[str, Any]:
    sale = db.sales.find_one({"_id": sale_id}) if sale_keys.SALE_ID_PATTERN.match(sale_id) else None
    if not sale:
        raise NotFound("No such sale.")
    return sale


def read_counters(redis_client: redis.Redis, sale_id: str) -> SaleCounters | None:
    pipe = redis_client.pipeline(transaction=False)
    pipe.hget(sale_keys.config_key(sale_id), "stock_total")
    pipe.hgetall(sale_keys.counters_key(sale_id))
    stock_total, raw = pipe.execute()
    if stock_total is None or not raw:
        return None

    def number(name: str) -> int:
        return int(raw.get(name) or 0)

    return SaleCounters(
        stock_total=int(stock_total), available=number("available"), reserved=number("reserved"),
        sold=number("sold"), issued=number("issued"), served=number("served"),
        queued=number("queued"), sold_out=number("sold_out"), expired=number("expired"),
        cancelled=number("cancelled"), payment_failed=number("payment_failed"),
        paid=number("paid"), rate=float(raw.get("rate") or 0.0), returned=number("returned"),
        auto_pace=float(raw["auto_pace"]) if raw.get("auto_pace") else None,
        auto_reason=raw.get("auto_reason") or "",
        abandoned=number("abandoned"), lobby=number("lobby"), lobby_size=number("lobby_size"),
        not_selected=number("not_selected"),
        draw_held=number("draw_held"), draw_captured=number("draw_captured"),
        draw_released=number("draw_released"), draw_failed=number("draw_failed"),
    )


def sale_status(sale: dict[str, Any], counters: SaleCounters | None, now: datetime) -> SaleStatus:
    starts = sale["starts_at"].replace(tzinfo=sale["starts_at"].tzinfo or UTC)
    ends = sale["ends_at"].replace(tzinfo=sale["ends_at"].tzinfo or UTC)
    if now < starts:
        opens = sale.get("lobby_opens_at")
        if opens is not None and now >= opens.replace(tzinfo=opens.tzinfo or UTC):
            return SaleStatus.LOBBY
        return SaleStatus.SCHEDULED
    if now >= ends:
        return SaleStatus.ENDED
    beacon = (sale.get("fairness") or {}).get("beacon")
    if beacon and not beacon.get("signature") and counters and counters.lobby_size > 0:
        return SaleStatus.DRAWING
    if counters and counters.available <= 0 and counters.reserved <= 0:
        return SaleStatus.SOLD_OUT
    return SaleStatus.OPEN


def public_sale(sale: dict[str, Any], counters: SaleCounters | None,
                now: datetime | None = None) -> dict[str, Any]:
    now = now or utc_now()
    return {
        # The operator's controls (flash_sale/controls.py).
        "paused": bool(sale.get("paused")),
        "outflow_per_second": sale.get("outflow_per_second"),
        "queue_cap": sale.get("queue_cap"),
        "pacing": pacing(sale, counters),
        "id": sale["_id"],
        "product_id": sale["product_id"],
        "price_cents": sale["price_cents"],
        "currency": sale["currency"],
        "starts_at": _iso(sale["starts_at"]),
        "ends_at": _iso(sale["ends_at"]),
        "per_user_limit": sale["per_user_limit"],
        "reservation_ttl_seconds": sale["reservation_ttl_seconds"],
        "presence_timeout_seconds": sale.get("presence_timeout_seconds", 0),
        "status": sale_status(sale, counters, now).value,
        "stock_total": sale["stock_total"],
        "stock_available": counters.available if counters else sale["stock_total"],
        "queue_length": counters.queued if counters else 0,
        "lobby_opens_at": _iso(sale["lobby_opens_at"]) if sale.get("lobby_opens_at") else None,
        "lobby_size": counters.lobby_size if counters else 0,
        "fairness": lobby.sale_fairness(sale),
        "entry": EntryRequirements.of(sale).as_dict(),
        "mode": sale.get("mode") or SaleMode.QUEUE.value,
    }


def pacing(sale: dict[str, Any], counters: SaleCounters | None = None) -> dict[str, Any]:
    """How fast the sale's tickets are decided, and who set it: the operator
    (flash_sale/controls.py) or Stripe's health (health_pacing.py), whichever is lower."""
    auto = counters.auto_pace if counters else None
    operator = sale.get("outflow_per_second")
    if auto is not None and not sale.get("paused") and (operator is None or auto < operator):
        return {"mode": "auto", "per_second": auto, "reason": counters.auto_reason if counters else None}
    if sale.get("paused"):
        return {"mode": "operator", "per_second": 0, "reason": "paused by the operator"}
    per_second = sale.get("outflow_per_second")
    return {"mode": "operator", "per_second": per_second,
            "reason": "set by the operator" if per_second is not None else None}


def shown_value(value: Any) -> Any:
    """A sale's field as JSON shows it (times in ISO 8601 UTC), for the audit log."""
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, EntryRequirements):
        return value.as_dict()
    return value


def list_sales(db: Database, redis_client: redis.Redis, limit: int = 50) -> list[dict[str, Any]]:
    sales = list(db.sales.find().sort("starts_at", -1).limit(limit))
    return [public_sale(sale, read_counters(redis_client, sale["_id"])) for sale in sales]


def all_sale_ids(redis_client: redis.Redis) -> list[str]:
    return sorted(redis_client.smembers(sale_keys.SALES_INDEX_KEY))  # type: ignore[arg-type]


def sale_stats(db: Database, redis_client: redis.Redis, sale_id: str) -> dict[str, Any]:
    """The operator's view of one sale, from Redis and MongoDB."""
    sale = get_sale_doc(db, sale_id)
    counters = read_counters(redis_client, sale_id)
    if counters is None:
        raise NotFound("The sale is not loaded.")
    orders = db.orders.count_documents({"sale_id": sale_id, "status": str(OrderStatus.PAID)})
    stats: dict[str, Any] = {
        "stock_total": counters.stock_total,
        "available": counters.available,
        "reserved": counters.reserved,
        "sold": counters.sold,
        "queued": counters.queued,
        "tickets_issued": counters.issued,
        "sold_out": counters.sold_out,
        "expired": counters.expired,
        "cancelled": counters.cancelled,
        "payment_failed": counters.payment_failed,
        "abandoned": counters.abandoned,
        "paid": counters.paid,
        "returned": counters.returned,
        "orders": orders,
        # The shown rate is -1 while the sale is paused (sale_controls.lua): nothing is decided.
        "decisions_per_second": round(max(0.0, counters.rate), 1),
        "consistent": counters.consistent,
    }
    if sale.get("mode") == SaleMode.DRAW:
        stats["draw"] = {"held": counters.draw_held, "captured": counters.draw_captured,
                         "released": counters.draw_released, "failed": counters.draw_failed}
    return stats


def return_unsold_units(db: Database, redis_client: redis.Redis, sale_id: str) -> int:
    """Give the units of an ended sale that nobody holds back to its product's stock.

    Idempotent and safe to repeat (beat runs it): Redis moves the units from `available` to
    `returned` atomically, and MongoDB catches up with a conditional update on the sale's
    `returned_units`, so each unit reaches the catalogue once. A crash between the two
    MongoDB updates leaves the catalogue short, never over. Returns the units given back now.
    """
    taken, returned = scripts_for(redis_client).return_unsold(
        keys=[sale_keys.config_key(sale_id), sale_keys.counters_key(sale_id)])
    if int(taken) < 0:
        return 0
    sale = db.sales.find_one({"_id": sale_id}, {"returned_units": 1, "product_id": 1})
    if sale is None:
        return 0
    already = int(sale.get("returned_units") or 0)
    if int(returned) <= already:
        return 0
    moved = db.sales.update_one({"_id": sale_id, "returned_units": sale.get("returned_units")},
                                {"$set": {"returned_units": int(returned)}})
    if moved.matched_count == 0:
        return 0  # another sweep caught up first
    delta = int(returned) - already
    db.products.update_one({"_id": sale["product_id"]},
                           {"$inc": {"stock": delta}, "$set": {"updated_at": utc_now()}})
    return delta
