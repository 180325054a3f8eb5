"""Draw sales: the waiting room's side of the draw at `starts_at` (the walk that charges the
winners is billing's: common/billing/draw_walk.py).

In a draw sale (`mode: draw`, sales.py) nobody queues: each lobby ticket is an entry whose card
is held (billing/holds.py). At the start the lobby closes (close_lobby.lua, as any lobby) and
its entries are ranked by the sale's fairness algorithm over the whole lobby (lobby.draw_order,
the same order and `/fairness` answer as a placed lobby; each entry's `seq` is its rank, so
`flashsale audit-fairness` checks a draw as it checks a lobby). The held entries, in that
order, form the draw's order (a Redis list); the others end `cancelled`, reason `no_hold`.
The walk then decides the entries one at a time from a cursor kept on the sale's slot, so a
walk killed anywhere resumes where it stopped and decides no entry twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import redis

from common.flash_sale import lobby, sale_keys
from common.flash_sale.tickets import HoldStatus
from common.platform.lua_scripts import scripts_for

PREPARE_CHUNK = 500


def is_draw_sale(redis_client: redis.Redis, sale_id: str) -> bool:
    return redis_client.hget(sale_keys.config_key(sale_id), "mode") == "draw"


def due_draws(redis_client: redis.Redis, sale_ids: Iterable[str]) -> list[str]:
    """Draw sales whose lobby has closed (the start has come) and whose walk is not done."""
    due = []
    for sale_id in sale_ids:
        if not is_draw_sale(redis_client, sale_id):
            continue
        closed = redis_client.hget(sale_keys.counters_key(sale_id), "lobby_closed") == "1"
        # Done once the tickets admitted after the start are released too (finish()).
        if (closed and redis_client.hget(sale_keys.counters_key(sale_id), "lobby_done") != "1"
                and lobby.order_key(redis_client, sale_id) is not None):  # a beacon draw's round is in
            due.append(sale_id)
    return due


def close(redis_client: redis.Redis, sale_id: str) -> str:
    """Close the lobby at the start (idempotent): "closed", or "not_yet" before starts_at."""
    return str(lobby._close(redis_client, sale_id)[0])


class DrawWaiting(Exception):
    """The draw's order needs the beacon's round, not published yet (beacon_draw.py)."""


@dataclass
class Preparation:
    entries: int = 0  # held entries in the draw's order
    # Hold intents of entries that ended without a hold, queued for cancellation now.
    to_release: list[str] = field(default_factory=list)


def pending_holds(redis_client: redis.Redis, sale_id: str, ticket_ids: list[str]) -> list[tuple[str, str]]:
    """(ticket_id, intent id) of the entries among `ticket_ids` not marked held whose hold
    intent may have been authorised meanwhile (3-D Secure finished in the browser)."""
    pipe = redis_client.pipeline(transaction=False)
    for ticket_id in ticket_ids:
        pipe.hmget(sale_keys.ticket_key(sale_id, ticket_id), "status", "hold_status", "hold_intent_id")
    pending = []
    for ticket_id, (status, hold_status, intent_id) in zip(ticket_ids, pipe.execute(), strict=True):
        if status == "lobby" and intent_id and hold_status != HoldStatus.HELD:
            pending.append((ticket_id, str(intent_id)))
    return pending


def prepare(redis_client: redis.Redis, sale_id: str, *,
            before_chunk: Callable[[list[str]], object] | None = None) -> Preparation:
    """Rank the closed lobby and build the draw's order of held entries (idempotent, chunked:
    a run killed halfway and run again goes on from the last chunk done). `before_chunk(ids)`
    runs before each chunk is applied (the walk checks pending holds at Stripe there)."""
    state = sale_keys.draw_key(sale_id)
    report = Preparation()
    prepared = int(redis_client.hget(state, "prepared") or 0)
    size = int(redis_client.hget(sale_keys.counters_key(sale_id), "lobby_size") or 0)
    if prepared < size:
        key = lobby.order_key(redis_client, sale_id)
        if key is None:
            raise DrawWaiting(sale_id)
        entries = redis_client.zrange(sale_keys.lobby_key(sale_id), 0, -1)
        order = lobby.draw_order(key, (str(t) for t in entries))
        keys = [state, sale_keys.draw_order_key(sale_id), sale_keys.counters_key(sale_id),
                sale_keys.live_tickets_key(sale_id), sale_keys.intent_cancels_key(sale_id),
                sale_keys.card_claims_key(sale_id)]
        while prepared < len(order):
            chunk = order[prepared:prepared + PREPARE_CHUNK]
            if before_chunk is not None:
                before_chunk(chunk)
            result = scripts_for(redis_client).draw_prepare(
                keys=[*keys, *(sale_keys.ticket_key(sale_id, t) for t in chunk)], args=[prepared + 1])
            if result[0] == "prepared":
                report.to_release += [str(i) for i in result[2:]]
            prepared = int(result[1])
    report.entries = int(redis_client.llen(sale_keys.draw_order_key(sale_id)))
    return report


@dataclass(frozen=True)
class Step:
    action: str  # "capture", "release", "done", "moved"
    ticket_id: str
    intent_id: str
    cursor: int


def walked(redis_client: redis.Redis, sale_id: str) -> int:
    return int(redis_client.hget(sale_keys.draw_key(sale_id), "walked") or 0)


def _step_keys(sale_id: str, ticket_id: str) -> list[str]:
    return [sale_keys.draw_key(sale_id), sale_keys.ticket_key(sale_id, ticket_id),
            sale_keys.counters_key(sale_id), sale_keys.held_units_key(sale_id),
            sale_keys.live_tickets_key(sale_id), sale_keys.config_key(sale_id),
            sale_keys.intent_cancels_key(sale_id), sale_keys.card_claims_key(sale_id)]


def take(redis_client: redis.Redis, sale_id: str, cursor: int) -> Step | None:
    """Decide the entry at `cursor` (draw_step.lua, atomic): "capture" its hold (units
    reserved for it), or "release" it (`not_selected`); for an entry decided already, what is
    left to do. None past the end of the order."""
    ticket_id = redis_client.lindex(sale_keys.draw_order_key(sale_id), cursor)
    if ticket_id is None:
        return None
    result = scripts_for(redis_client).draw_step(keys=_step_keys(sale_id, str(ticket_id)),
                                                 args=[cursor, "take"])
    if result[0] == "moved":
        return Step("moved", str(ticket_id), "", int(result[1]))
    return Step(str(result[0]), str(ticket_id), str(result[1]), cursor)


def advance(redis_client: redis.Redis, sale_id: str, step: Step) -> None:
    """Move the cursor past `step`'s entry, once (a repeat changes nothing)."""
    scripts_for(redis_client).draw_step(keys=_step_keys(sale_id, step.ticket_id),
                                        args=[step.cursor, "advance"])


def finish(redis_client: redis.Redis, sale_id: str) -> bool:
    """After the last entry: the lobby's places count as served, the tickets admitted after
    the start enter the queue for any unit the draw left, and the draw is done. True when
    done (idempotent)."""
    result = scripts_for(redis_client).draw_finish(
        keys=[sale_keys.draw_key(sale_id), sale_keys.counters_key(sale_id),
              sale_keys.draw_order_key(sale_id)])
    if result[0] != "finished":
        return False
    lobby.release_after_lobby(redis_client, sale_id)
    return True
