"""Redis keys of the waiting room. Every key of one sale carries the hash tag `{sale:<id>}`,
so each Lua script touches a single cluster slot."""

from __future__ import annotations

import re

# Re-exported: whoever builds a sale's keys makes its ids with them (common/platform/ids.py).
from common.platform.ids import new_sale_id as new_sale_id
from common.platform.ids import new_ticket_id as new_ticket_id

SALES_INDEX_KEY = "flashsale:sales"
CONSUMER_GROUP = "deciders"

SALE_ID_PATTERN = re.compile(r"^sal_[0-9a-f]{16}$")
TICKET_ID_PATTERN = re.compile(r"^tkt_([0-9a-f]{16})_[0-9a-f]{32}$")


def sale_of_ticket(ticket_id: str) -> str | None:
    match = TICKET_ID_PATTERN.match(ticket_id)
    return f"sal_{match.group(1)}" if match else None


def _tag(sale_id: str) -> str:
    return "{sale:" + sale_id + "}"


def config_key(sale_id: str) -> str:
    return _tag(sale_id) + ":config"


def counters_key(sale_id: str) -> str:
    """Hash: available, reserved, sold, issued, served, queued and outcome counts."""
    return _tag(sale_id) + ":counters"


def report_key(sale_id: str) -> str:
    """Hash: what the operator's report reads, counted as tickets are decided
    (reserve_batch.lua): `admitted:<unix minute>` and `wait:<bucket ms>` counts, `wait_max_ms`,
    `reserved_total` (flash_sale/sale_report.py)."""
    return _tag(sale_id) + ":report"


def stream_key(sale_id: str) -> str:
    return _tag(sale_id) + ":stream"


def dead_letter_key(sale_id: str) -> str:
    return _tag(sale_id) + ":dead"


def ticket_key(sale_id: str, ticket_id: str) -> str:
    return _tag(sale_id) + ":t:" + ticket_id


def live_tickets_key(sale_id: str) -> str:
    """Hash user_id -> the user's queued or reserved ticket (one per user per sale)."""
    return _tag(sale_id) + ":live"


def latest_tickets_key(sale_id: str) -> str:
    """Hash user_id -> the user's most recent ticket, live or final."""
    return _tag(sale_id) + ":latest"


def held_units_key(sale_id: str) -> str:
    """Hash user_id -> units the user holds (reserved or paid), for the per-user limit."""
    return _tag(sale_id) + ":held"


def expiry_key(sale_id: str) -> str:
    """Sorted set ticket_id -> reservation expiry (ms)."""
    return _tag(sale_id) + ":expiry"


def settled_key(sale_id: str) -> str:
    """Set of ticket ids whose payment moved stock into `sold` (each must have an order)."""
    return _tag(sale_id) + ":settled"


def drift_key(sale_id: str) -> str:
    """Set of the violations the last periodic reconcile saw (`code|subject`): a violation is
    reported as drift only when the next run sees it again (auditing/reconcile.py)."""
    return _tag(sale_id) + ":drift"


def intent_cancels_key(sale_id: str) -> str:
    """Sorted set payment_intent_id -> when to try cancelling it at Stripe (ms): the outbox
    of released tickets' intents, swept by beat until Stripe confirms."""
    return _tag(sale_id) + ":intent-cancels"


def intent_cancel_attempts_key(sale_id: str) -> str:
    """Hash payment_intent_id -> failed cancellation attempts (for the outbox's backoff)."""
    return _tag(sale_id) + ":intent-cancel-attempts"


def card_claims_key(sale_id: str) -> str:
    """Hash card fingerprint -> "<ticket_id> <user_id>": the ticket whose payment claimed the
    card in this sale, so that one card pays for one account (common/billing/card_claims.py)."""
    return _tag(sale_id) + ":cards"


def challenge_solution_key(sale_id: str, challenge: str) -> str:
    """String, set once by admit.lua: an ALTCHA solution spent on an admission to this sale,
    kept until its challenge expires (common/flash_sale/entry_challenge.py)."""
    return _tag(sale_id) + ":altcha:" + challenge


def lobby_key(sale_id: str) -> str:
    """Sorted set, every score 0, of the tickets admitted into the lobby: ZRANGEBYLEX pages
    them in ascending id order (the fairness answer's `entries`). Frozen at starts_at."""
    return _tag(sale_id) + ":lobby"


def after_lobby_key(sale_id: str) -> str:
    """List of tickets admitted after the start while the lobby was still being placed: they
    enter the stream, in arrival order, right behind the last lobby ticket."""
    return _tag(sale_id) + ":after-lobby"


def lobby_start_lock_key(sale_id: str) -> str:
    return _tag(sale_id) + ":lobby-start"


def presence_key(sale_id: str) -> str:
    """Hash ticket_id -> when its owner was last seen (ms): a poll, or an open event stream
    (refreshed every few seconds per API process, common/flash_sale/ticket_events.py)."""
    return _tag(sale_id) + ":presence"


# Pub/sub channel `{sale:<id>}:events`: the Lua scripts that change tickets publish there
# (platform/lua/library.lua publish_ticket_events), every API process listens to the pattern.
EVENTS_PATTERN = "{sale:*}:events"


def sale_of_events_channel(channel: str) -> str | None:
    if channel.startswith("{sale:") and channel.endswith("}:events"):
        return channel[len("{sale:"):-len("}:events")]
    return None


def drain_lock_key(sale_id: str) -> str:
    return _tag(sale_id) + ":drainer"


def admission_rate_key(sale_id: str, user_id: str) -> str:
    return _tag(sale_id) + ":rate:" + user_id


def kick_key(sale_id: str) -> str:
    return _tag(sale_id) + ":kick"


def intent_throttled_key(sale_id: str) -> str:
    """Hash stream entry id -> deliveries that ended in a transient Stripe failure (429, no
    connection): not the entry's fault, so they are not counted towards max_deliveries."""
    return _tag(sale_id) + ":intent-throttled"


def draw_key(sale_id: str) -> str:
    """Hash of a draw sale's walk (flash_sale/draw.py): `prepared` (entries given their drawn
    rank), `walked` (entries of the order done: the cursor a restarted walk resumes from),
    `done`."""
    return _tag(sale_id) + ":draw"


def draw_order_key(sale_id: str) -> str:
    """List of a draw's held entries in drawn order: the walk captures from its head."""
    return _tag(sale_id) + ":draw-order"


def draw_mailed_key(sale_id: str) -> str:
    """Set of a draw's entries whose result was mailed (billing/draw_mail.py)."""
    return _tag(sale_id) + ":draw-mailed"


def draw_lock_key(sale_id: str) -> str:
    return _tag(sale_id) + ":draw-lock"


def beacon_fetch_key(sale_id: str) -> str:
    """Claimed while one worker fetches a beacon draw's round (beacon_draw.fetch_due)."""
    return _tag(sale_id) + ":beacon-fetch"
