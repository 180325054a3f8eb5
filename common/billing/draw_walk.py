"""The draw's walk: charge the winners in drawn order, release everyone else's hold.

At a draw sale's start (flash_sale/draw.py builds the order of held entries), the walk takes
the entries one at a time from a cursor kept on the sale's slot: while units remain it
captures the entry's hold, and the capture's own answer settles it into exactly one paid
order through the same step a webhook takes (payments.settle_ticket_payment: whichever comes
first writes the order, the other finds it); a capture that fails (the hold expired or was
cancelled) ends the entry `payment_failed`, its units go on to the next entry. After the last
unit every entry ends `not_selected` and its hold is cancelled.

Crash-safe: each entry is decided once, atomically (draw_step.lua), before any Stripe call, and
the cursor moves past it only after Stripe answered; a walk killed anywhere resumes at the
cursor and repeats at most that one entry's call, with the same idempotency key (a repeated
capture is reported as the capture it was). Every released hold is also in the sale's
cancellation outbox, which beat sweeps until Stripe confirms.

Paced, not a burst: every Stripe call waits for its slot, `calls_per_second` apart
(DRAW_STRIPE_CALLS_PER_SECOND): the shop's account shares its rate limit with every shopper.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from common.billing import holds
from common.billing.payments import PaymentContext, settle_ticket_payment
from common.billing.stripe_gateway import CANCELED, REQUIRES_CAPTURE, SUCCEEDED, Intent
from common.flash_sale import draw, lobby
from common.flash_sale.intent_outbox import forget_cancellation
from common.flash_sale.tickets import HoldStatus, TicketStatus
from common.flash_sale.waiting_room import release_ticket

log = logging.getLogger("common.billing.draw_walk")


class Pace:
    """Evenly spaced calls: each `wait()` returns no sooner than 1/per_second after the
    previous one's slot."""

    def __init__(self, per_second: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], object] = time.sleep) -> None:
        self.interval = 1.0 / per_second
        self.clock, self.sleep = clock, sleep
        self.next_slot = 0.0
        self.calls = 0

    def wait(self) -> None:
        now = self.clock()
        if self.next_slot > now:
            self.sleep(self.next_slot - now)
            now = self.next_slot
        self.next_slot = now + self.interval
        self.calls += 1


@dataclass
class WalkReport:
    state: str  # "not_yet", "no_lobby", "done"
    entries: int = 0
    captured: int = 0
    failed: int = 0
    released: int = 0
    no_hold: int = 0
    stripe_calls: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


def _check_pending_holds(ctx: PaymentContext, pace: Pace, sale_id: str, ticket_ids: list[str]) -> None:
    """A hold whose 3-D Secure was finished in the browser is `held` at Stripe though not
    marked: ask Stripe once, as the draw starts, before the entry is ranked."""
    for ticket_id, intent_id in draw.pending_holds(ctx.redis, sale_id, ticket_ids):
        pace.wait()
        if ctx.gateway.retrieve(intent_id).status == REQUIRES_CAPTURE:
            holds.mark_hold(ctx.redis, ticket_id, intent_id, HoldStatus.HELD, by_draw=True)


def _release(ctx: PaymentContext, pace: Pace, sale_id: str, intent_id: str) -> bool:
    """Cancel a hold at Stripe (the outbox already has it); True when Stripe confirms."""
    pace.wait()
    final = ctx.gateway.cancel_hold(intent_id, idempotency_key=f"draw-release-{intent_id}")
    if final.status == CANCELED:
        forget_cancellation(ctx.redis, sale_id, intent_id)
        return True
    log.warning("hold not cancelled; the outbox sweep retries",
                extra={"intent_id": intent_id, "sale_id": sale_id, "status": final.status})
    return False


def _capture(ctx: PaymentContext, pace: Pace, sale_id: str, step: draw.Step) -> str:
    pace.wait()
    intent: Intent = ctx.gateway.capture(step.intent_id,
                                         idempotency_key=f"draw-capture-{step.intent_id}")
    if intent.status == SUCCEEDED:
        return settle_ticket_payment(ctx, sale_id, step.ticket_id, intent)
    # Expired or cancelled: the entry's units go on to the next in the order.
    released, _ = release_ticket(ctx.redis, step.ticket_id, TicketStatus.PAYMENT_FAILED,
                                 (TicketStatus.RESERVING,), payment_intent_id=step.intent_id)
    log.info("draw capture failed", extra={"ticket_id": step.ticket_id, "intent_id": step.intent_id,
                                           "status": intent.status})
    if intent.status != CANCELED:
        _release(ctx, pace, sale_id, step.intent_id)
    else:
        forget_cancellation(ctx.redis, sale_id, step.intent_id)
    return TicketStatus.PAYMENT_FAILED.value if released else "unchanged"


def walk_draw(ctx: PaymentContext, sale_id: str, *, calls_per_second: float,
              keep_alive: Callable[[], object] | None = None,
              pace: Pace | None = None) -> WalkReport:
    """Run (or resume) the draw of a draw sale whose start has come; does nothing before.

    Idempotent and crash-safe (see the module docstring); the caller holds the sale's draw
    lock and `keep_alive()` (called after each entry) renews it. Stripe errors that are worth
    repeating propagate: the task retries and the walk resumes at its cursor.
    """
    pace = pace or Pace(calls_per_second)
    state = draw.close(ctx.redis, sale_id)
    if state != "closed":
        return WalkReport(state=state)
    if lobby.order_key(ctx.redis, sale_id) is None:
        return WalkReport(state="drawing")  # a beacon draw: its round is not in yet
    report = WalkReport(state="done")
    preparation = draw.prepare(ctx.redis, sale_id,
                               before_chunk=lambda ids: _check_pending_holds(ctx, pace, sale_id, ids))
    for intent_id in preparation.to_release:
        report.no_hold += 1
        _release(ctx, pace, sale_id, intent_id)
    report.entries = preparation.entries
    cursor = draw.walked(ctx.redis, sale_id)
    while True:
        step = draw.take(ctx.redis, sale_id, cursor)
        if step is None:
            break
        if step.action == "moved":
            cursor = step.cursor
            continue
        if step.action == "capture":
            outcome = _capture(ctx, pace, sale_id, step)
            if outcome == TicketStatus.PAYMENT_FAILED.value:
                report.failed += 1
            else:
                report.captured += 1
            report.outcomes[outcome] = report.outcomes.get(outcome, 0) + 1
        elif step.action == "release":
            if step.intent_id:
                _release(ctx, pace, sale_id, step.intent_id)
            report.released += 1
        draw.advance(ctx.redis, sale_id, step)
        cursor += 1
        if keep_alive is not None:
            keep_alive()
    draw.finish(ctx.redis, sale_id)
    report.stripe_calls = pace.calls
    return report
