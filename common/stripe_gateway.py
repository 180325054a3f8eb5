"""The few Stripe calls the shop makes, in one place, through the stripe SDK.

Every call is safe to repeat: creation passes an idempotency key (real Stripe honours it; the
emulator does not, so callers also record the PaymentIntent id atomically and cancel a loser),
and cancel/refund treat "already done" as done.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import stripe

from common.errors import PaymentDeclined, PaymentProviderError, ValidationFailed

log = logging.getLogger("common.stripe")

SUCCEEDED = "succeeded"
CANCELED = "canceled"
REQUIRES_ACTION = "requires_action"
PROCESSING = "processing"
FAILED_STATES = ("requires_payment_method",)


@dataclass(frozen=True)
class Intent:
    """What the shop needs of a PaymentIntent."""

    id: str
    status: str
    client_secret: str
    amount: int
    currency: str
    metadata: dict[str, str]
    last_error: str | None = None

    @classmethod
    def from_stripe(cls, resource: Any) -> Intent:
        obj = resource.to_dict() if hasattr(resource, "to_dict") else dict(resource)
        error = obj.get("last_payment_error") or None
        return cls(
            id=obj["id"], status=obj["status"], client_secret=obj.get("client_secret") or "",
            amount=int(obj["amount"]), currency=str(obj["currency"]),
            metadata=dict(obj.get("metadata") or {}),
            last_error=(error or {}).get("code") if isinstance(error, dict) else None,
        )


class StripeGateway:
    def __init__(self, client: stripe.StripeClient, *, emulator: bool = False) -> None:
        self.client = client
        self.emulator = emulator

    def create_intent(self, *, amount_cents: int, currency: str, metadata: dict[str, str],
                      idempotency_key: str) -> Intent:
        try:
            obj = self.client.v1.payment_intents.create(
                params={"amount": amount_cents, "currency": currency.lower(),
                        "metadata": metadata, "payment_method_types": ["card"]},  # type: ignore[typeddict-unknown-key]
                options={"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as exc:
            log.warning("payment intent creation failed: %s", exc)
            raise PaymentProviderError() from exc
        return Intent.from_stripe(obj)

    def retrieve(self, intent_id: str) -> Intent:
        try:
            return Intent.from_stripe(self.client.v1.payment_intents.retrieve(intent_id))
        except stripe.StripeError as exc:
            raise PaymentProviderError() from exc

    def cancel(self, intent_id: str, reason: str = "abandoned") -> Intent:
        """Cancel unless it already succeeded or was cancelled; returns the final state."""
        current = self.retrieve(intent_id)
        if current.status in (SUCCEEDED, CANCELED, PROCESSING):
            return current
        params: dict[str, Any] = {} if self.emulator else {"cancellation_reason": reason}
        try:
            return Intent.from_stripe(self.client.v1.payment_intents.cancel(
                intent_id, params=params))  # type: ignore[arg-type]
        except stripe.StripeError:
            # A concurrent confirm or cancel wins the race: report what Stripe now says.
            return self.retrieve(intent_id)

    def refund(self, intent_id: str, idempotency_key: str) -> str:
        try:
            refund = self.client.v1.refunds.create(
                params={"payment_intent": intent_id}, options={"idempotency_key": idempotency_key})
        except stripe.StripeError as exc:
            raise PaymentProviderError() from exc
        return str(refund["id"])

    def confirm_with_card_token(self, intent_id: str, card_token: str, *, email: str) -> Intent:
        """Server-side confirmation with a card token made by Stripe.js `createToken`.

        The flow works the same on real Stripe and on the emulator: the token becomes a card
        on a customer, the PaymentIntent is confirmed with it, and when the bank asks for
        3-D Secure the status is `requires_action` and the browser finishes with
        `stripe.confirmCardPayment(client_secret)`.
        """
        if not card_token.startswith("tok_"):
            raise ValidationFailed(details={"fields": {"card_token": ["Not a card token."]}})
        # Paid already (a second click, or a retry whose first answer was lost): report it
        # rather than an error, and never attach a second card.
        current = self.retrieve(intent_id)
        if current.status in (SUCCEEDED, PROCESSING):
            return current
        try:
            customer = self.client.v1.customers.create(params={"email": email})
            card = self.client.v1.customers.payment_sources.create(
                customer["id"], params={"source": card_token})
            self.client.v1.payment_intents.update(
                intent_id, params={"payment_method": card["id"], "customer": customer["id"]})
            obj = self.client.v1.payment_intents.confirm(intent_id)
        except stripe.CardError as exc:
            raise PaymentDeclined(str(exc.user_message or "The card was declined.")) from exc
        except stripe.InvalidRequestError as exc:
            current = self.retrieve(intent_id)
            if current.status in (SUCCEEDED, PROCESSING):
                return current  # a concurrent confirmation of the same intent won
            raise ValidationFailed(str(exc.user_message or "The payment could not be confirmed."),
                                   details={"stripe": exc.code or "invalid_request"}) from exc
        except stripe.StripeError as exc:
            raise PaymentProviderError() from exc
        return Intent.from_stripe(obj)

    def construct_event(self, payload: bytes, signature: str, secret: str) -> dict[str, Any]:
        """Verify a webhook signature (default tolerance) and parse the event.

        Raises stripe.SignatureVerificationError for a bad signature, and ValueError for a
        signed body that is not an event object with an id, a type and a data object.
        """
        stripe.WebhookSignature.verify_header(payload.decode("utf-8"), signature, secret,
                                              stripe.Webhook.DEFAULT_TOLERANCE)
        # Parsed here rather than by stripe.Webhook, which fails on valid JSON that is not an
        # object with an AttributeError (a 500 instead of a 400).
        event = json.loads(payload)
        data = event.get("data") if isinstance(event, dict) else None
        if not (isinstance(event, dict) and isinstance(event.get("id"), str)
                and isinstance(event.get("type"), str) and isinstance(data, dict)
                and isinstance(data.get("object"), dict)):
            raise ValueError("not a Stripe event")
        return event
