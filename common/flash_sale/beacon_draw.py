"""Fairness v2 (`hmac-sha256-drand-v2`): the lobby's order from a public randomness beacon,
so that nobody can predict it, not even whoever runs the shop.

With `hmac-sha256-v1` (lobby.py) the order follows a seed the shop commits to at creation:
whoever runs the shop knows it from the start and could mint a ticket id that sorts first,
or add and drop entries after seeing where they land. v2 orders the lobby with randomness
that did not exist when the entries froze and that nobody controls: a drand round (threshold
BLS signatures from independent operators), announced at creation.

1. Creation (`beacon_fairness`): `fairness.beacon` names the chain and the round, the first
   whose time is at least ROUND_DELAY after `starts_at`; the seed is committed as in v1.
2. The close (`record_close`, record_close.lua): the lobby froze at the start (close_lobby in
   the Lua library notes `lobby_closed_at_ms`); the digest of its ids (`entries_digest`) is
   fixed and published with `closed_at`. A close recorded too late for the announced round
   (after an outage) moves to a later round, and says so (`round_moved_from`).
3. The round (`resolve_round`): once its time has come, fetched from the relays and verified
   (common/beacon); then the seed is revealed with the signature and randomness, and
   `draw key = HMAC-SHA256(key=randomness, message=entries_digest || seed)` orders the lobby
   (lobby.draw_order with the draw key instead of the seed). Until then the sale is
   `drawing`; a beacon that cannot be reached keeps it so, with retries and backoff, and
   never falls back to a private seed.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from pymongo.database import Database

from common.beacon.drand import BeaconClient, BeaconUnavailable, Chain, retry_delay, verify_round
from common.flash_sale import sale_keys
from common.platform.clock import now_ms
from common.platform.lua_scripts import scripts_for

log = logging.getLogger(__name__)

ALGORITHM = "hmac-sha256-drand-v2"
ROUND_DELAY = timedelta(seconds=10)
# How long one fetch may be claimed: a worker killed mid-fetch frees the sale after this.
FETCH_CLAIM_MS = 30_000
# A round reaches the relays a moment after its time: until this long after it, a relay that
# does not have it yet is asked again every FRESH_RETRY_MS, not counted as a failure.
FRESH_ROUND_MS = 3_000
FRESH_RETRY_MS = 250


def entries_digest(ticket_ids: Iterable[str]) -> str:
    """hex SHA-256 of the ids sorted ascending, joined by a newline."""
    return hashlib.sha256("\n".join(sorted(ticket_ids)).encode()).hexdigest()


def draw_key(randomness_hex: str, digest_hex: str, seed_hex: str) -> bytes:
    """HMAC-SHA256(key = the round's randomness, message = entries_digest bytes || seed bytes)."""
    return hmac.digest(bytes.fromhex(randomness_hex), bytes.fromhex(digest_hex) + bytes.fromhex(seed_hex),
                       "sha256")


def beacon_fairness(chain: Chain, starts_at: datetime) -> dict[str, Any]:
    """`fairness.beacon` at creation: the chain, and the round the draw will use."""
    starts = starts_at if starts_at.tzinfo else starts_at.replace(tzinfo=UTC)
    return {**chain.as_public(),
            "round": chain.first_round_at_or_after((starts + ROUND_DELAY).timestamp())}


def sale_chain(beacon: dict[str, Any]) -> Chain:
    """The chain a sale pinned at creation (its draw is checked against this key, whatever the
    settings say later)."""
    return Chain(chain_hash=str(beacon["chain_hash"]), public_key=str(beacon["public_key"]),
                 period_seconds=int(beacon["period_seconds"]), genesis_time=int(beacon["genesis_time"]))


def _round_at_ms(round_: str | None, genesis: str | None, period: str | None) -> int:
    """The time (ms) of the round a sale's Redis config names (the fields redis_fields writes)."""
    return Chain("", "", int(str(period)), int(str(genesis))).round_time(int(str(round_))) * 1000


def redis_fields(fairness: dict[str, Any]) -> dict[str, str]:
    """What the sale's Redis config keeps of a v2 sale's fairness (the close step's Lua reads
    the round's time from it)."""
    beacon = fairness["beacon"]
    return {"fairness_algorithm": ALGORITHM, "beacon_round": str(beacon["round"]),
            "beacon_genesis_time": str(beacon["genesis_time"]),
            "beacon_period_s": str(beacon["period_seconds"])}


# ------------------------------------------------------------------ the close


@dataclass(frozen=True)
class Close:
    state: str  # "recorded" (now), "already", "not_closed"
    entries_digest: str = ""
    closed_at_ms: int = 0
    round: int = 0
    moved_from: int = 0


def iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def record_close(db: Database, redis_client: redis.Redis, sale_id: str) -> Close:
    """Fix and publish the closed lobby's digest and round (idempotent; does nothing before
    the close). The digest goes to Redis first (record_close.lua, once), then to the sale's
    public `fairness` in MongoDB; a crash between the two is repaired by the next call."""
    config = sale_keys.config_key(sale_id)
    keys = [config, sale_keys.counters_key(sale_id), sale_keys.lobby_key(sale_id)]
    for _ in range(3):
        if redis_client.hget(config, "entries_digest"):
            result = scripts_for(redis_client).record_close(keys=keys, args=["", -1])
        else:
            entries = [str(t) for t in redis_client.zrange(sale_keys.lobby_key(sale_id), 0, -1)]
            result = scripts_for(redis_client).record_close(
                keys=keys, args=[entries_digest(entries), len(entries)])
        if result[0] != "changed":  # an admission landed between the read and the step
            break
    if result[0] not in ("recorded", "already"):
        return Close(state=str(result[0]))
    close = Close(state=str(result[0]), entries_digest=str(result[1]), closed_at_ms=int(result[2]),
                  round=int(result[3]), moved_from=int(result[4]))
    if redis_client.hget(config, "close_published") != "1":
        published: dict[str, Any] = {"fairness.entries_digest": close.entries_digest,
                                     "fairness.closed_at": iso_ms(close.closed_at_ms),
                                     "fairness.beacon.round": close.round}
        if close.moved_from:
            published["fairness.beacon.round_moved_from"] = close.moved_from
        db.sales.update_one({"_id": sale_id}, {"$set": published})
        redis_client.hset(config, "close_published", "1")
        if close.moved_from:
            log.warning("beacon round moved: the close was recorded too late for it",
                        extra={"sale_id": sale_id, "round": close.round, "moved_from": close.moved_from})
    return close


# ------------------------------------------------------------------ the round


@dataclass(frozen=True)
class Resolution:
    state: str  # "resolved" (now), "already", "not_closed", "not_yet", "unavailable"
    wait_ms: int = 0
    error: str = ""
    fresh: bool = False  # unavailable, but the round has only just come: ask again shortly


def fetch_due(redis_client: redis.Redis, sale_id: str) -> bool:
    """Whether the sale waits for a round whose time has come and whose next try is due; if
    so, claims the fetch (one at a time per sale) and returns True."""
    state = redis_client.hmget(sale_keys.config_key(sale_id), "order_key", "entries_digest",
                               "beacon_round", "beacon_genesis_time", "beacon_period_s",
                               "beacon_next_try_ms")
    order_key, digest, round_, genesis, period, next_try = state
    if order_key or not digest:
        return False
    now = now_ms()
    if now < _round_at_ms(round_, genesis, period) or now < int(next_try or 0):
        return False
    return bool(redis_client.set(sale_keys.beacon_fetch_key(sale_id), "1", nx=True, px=FETCH_CLAIM_MS))


def round_eta(redis_client: redis.Redis, sale_id: str) -> datetime:
    """When to ask for the sale's round: a moment after its time."""
    round_, genesis, period = redis_client.hmget(sale_keys.config_key(sale_id), "beacon_round",
                                                 "beacon_genesis_time", "beacon_period_s")
    at_ms = _round_at_ms(round_, genesis, period)
    return datetime.fromtimestamp(at_ms / 1000, UTC) + timedelta(milliseconds=50)


def release_fetch(redis_client: redis.Redis, sale_id: str) -> None:
    redis_client.delete(sale_keys.beacon_fetch_key(sale_id))


def resolve_round(db: Database, redis_client: redis.Redis, sale_id: str, urls: list[str], *,
                  timeout_seconds: float = 3.0) -> Resolution:
    """Fetch and verify the sale's round, then publish it and the seed, and give the placing
    steps the draw key (idempotent). A beacon that cannot be reached leaves the sale waiting
    with the next try after a backoff; nothing falls back to a private seed."""
    config = sale_keys.config_key(sale_id)
    order_key, digest, round_text, seed = redis_client.hmget(
        config, "order_key", "entries_digest", "beacon_round", "seed")
    if order_key:
        return Resolution("already")
    if not digest:
        return Resolution("not_closed")
    sale = db.sales.find_one({"_id": sale_id}, {"fairness": 1}) or {}
    chain = sale_chain(sale["fairness"]["beacon"])
    round_ = int(round_text)
    round_at_ms = chain.round_time(round_) * 1000
    wait_ms = round_at_ms - now_ms()
    if wait_ms > 0:
        return Resolution("not_yet", wait_ms=wait_ms)
    try:
        with BeaconClient(chain, urls, timeout_seconds=timeout_seconds) as client:
            beacon_round = client.fetch_round(round_)
    except BeaconUnavailable as exc:
        if now_ms() < round_at_ms + FRESH_ROUND_MS:
            redis_client.hset(config, "beacon_next_try_ms", now_ms() + FRESH_RETRY_MS)
            return Resolution("unavailable", wait_ms=FRESH_RETRY_MS, error=str(exc), fresh=True)
        attempts = int(redis_client.hincrby(config, "beacon_attempts", 1))
        delay_ms = int(retry_delay(attempts) * 1000)
        redis_client.hset(config, mapping={"beacon_next_try_ms": now_ms() + delay_ms,
                                           "beacon_error": str(exc)[:300]})
        log.warning("beacon round not available: the draw waits",
                    extra={"sale_id": sale_id, "round": round_, "attempts": attempts,
                           "retry_in_ms": delay_ms, "error": str(exc)})
        return Resolution("unavailable", wait_ms=delay_ms, error=str(exc))
    db.sales.update_one({"_id": sale_id}, {"$set": {
        "fairness.beacon.signature": beacon_round.signature,
        "fairness.beacon.randomness": beacon_round.randomness}})
    key = draw_key(beacon_round.randomness, str(digest), str(seed))
    # Last: the placing steps (lobby.order_key) wait for this field alone.
    redis_client.hset(config, mapping={"order_key": key.hex(), "beacon_error": ""})
    return Resolution("resolved")


def awaiting_beacon(redis_client: redis.Redis, sale_ids: Iterable[str]) -> list[str]:
    """The v2 sales whose lobby has closed and whose draw key is not known yet."""
    ids = list(sale_ids)
    pipe = redis_client.pipeline(transaction=False)
    for sale_id in ids:
        pipe.hmget(sale_keys.config_key(sale_id), "fairness_algorithm", "order_key")
        pipe.hget(sale_keys.counters_key(sale_id), "lobby_closed")
    answers = pipe.execute()
    return [sale_id for sale_id, (algorithm, order_key), closed
            in zip(ids, answers[0::2], answers[1::2], strict=True)
            if algorithm == ALGORITHM and not order_key and closed == "1"]


def overdue_seconds(redis_client: redis.Redis, sale_id: str) -> tuple[float, int] | None:
    """(seconds past the round's time, failed fetches) of a sale still waiting for its round;
    None when it waits for nothing overdue (the alert's gauge)."""
    order_key, digest, round_, genesis, period, attempts = redis_client.hmget(
        sale_keys.config_key(sale_id), "order_key", "entries_digest", "beacon_round",
        "beacon_genesis_time", "beacon_period_s", "beacon_attempts")
    if order_key or not digest:
        return None
    late_ms = now_ms() - _round_at_ms(round_, genesis, period)
    return (max(0.0, late_ms / 1000), int(attempts or 0))


# ------------------------------------------------------------------ checking the draw


def check_answer(answer: dict[str, Any], entries: list[str]) -> bytes:
    """Every check anyone can make from the public answer alone; the draw key when all pass.
    ValueError names the first check that fails."""
    beacon = answer.get("beacon") or {}
    if not beacon.get("signature"):
        raise ValueError(f"the beacon round {beacon.get('round')} is not published yet (the sale is drawing)")
    seed = str(answer.get("seed") or "")
    if hashlib.sha256(bytes.fromhex(seed)).hexdigest() != answer.get("commitment"):
        raise ValueError("the seed does not match the commitment")
    chain = sale_chain(beacon)
    round_ = int(beacon["round"])
    try:
        verified = verify_round(chain, round_, str(beacon["signature"]))
    except ValueError:
        raise ValueError(f"the beacon signature does not verify for round {round_} against "
                         f"public key {chain.public_key[:16]}...") from None
    if verified.randomness != beacon.get("randomness"):
        raise ValueError("the published randomness is not SHA-256 of the signature")
    closed_at = datetime.fromisoformat(str(answer["closed_at"]).replace("Z", "+00:00"))
    round_at = chain.round_time(round_)
    if round_at <= closed_at.timestamp():
        raise ValueError(f"round {round_} ({iso_ms(round_at * 1000)}) is not after the close "
                         f"({answer['closed_at']}): its randomness may have been known while "
                         f"entries could still change")
    if len(entries) != int(answer.get("lobby_size") or 0):
        raise ValueError(f"{len(entries)} entries but lobby_size {answer.get('lobby_size')}")
    if entries_digest(entries) != answer.get("entries_digest"):
        raise ValueError("the entries do not match the digest published at the close "
                         "(an entry was added or removed after it)")
    return draw_key(verified.randomness, str(answer["entries_digest"]), seed)
