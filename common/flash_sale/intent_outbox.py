"""Where the waiting room meets the payment provider, and the outbox of PaymentIntents to cancel.

A reservation gets its PaymentIntent when it is decided (reservations.py), and a released
ticket's intent goes into its sale's cancellation outbox atomically with the release
(release.lua, attach_intent.lua). The waiting room reaches the provider only through the
`PaymentIntents` port below, which billing's StripeGateway fills; billing builds on the
waiting room (it settles and refunds tickets) and sweeps this outbox. So the two domains meet
in one direction: billing imports flash_sale, flash_sale never imports billing.
"""

from __future__ import annotations

from typing import Protocol

import redis

from common.flash_sale import sale_keys

CANCELED = "canceled"  # the provider's status of a cancelled PaymentIntent


class IntentState(Protocol):
    """What the waiting room reads of a PaymentIntent."""

    @property
    def id(self) -> str: ...

    @property
    def status(self) -> str: ...

    @property
    def client_secret(self) -> str: ...


class PaymentIntents(Protocol):
    """The provider calls the waiting room makes (common/billing/stripe_gateway.py)."""

    def create_intent(self, *, amount_cents: int, currency: str, metadata: dict[str, str],
                      idempotency_key: str) -> IntentState: ...

    def cancel(self, intent_id: str, reason: str = ...) -> IntentState:
        """Cancel unless it already succeeded or was cancelled; returns the final state."""
        ...


def cancel_released_intent(redis_client: redis.Redis, gateway: PaymentIntents, sale_id: str,
                           intent_id: str) -> str:
    """Cancel a released ticket's intent at Stripe and take it out of the outbox once Stripe
    confirms. Returns Stripe's status; an intent that succeeded meanwhile stays in the outbox
    for the sweep, which settles or refunds it."""
    final = gateway.cancel(intent_id)
    if final.status == CANCELED:
        forget_cancellation(redis_client, sale_id, intent_id)
    return final.status


def forget_cancellation(redis_client: redis.Redis, sale_id: str, intent_id: str) -> None:
    """Take an intent out of its sale's outbox (cancelled, or settled by the sweep)."""
    key = sale_keys.intent_cancels_key(sale_id)
    pipe = redis_client.pipeline(transaction=False)
    pipe.zrem(key, intent_id)
    pipe.hdel(sale_keys.intent_cancel_attempts_key(sale_id), intent_id)
    pipe.execute()
