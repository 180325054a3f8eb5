"""The few Stripe calls the shop makes, in one place, through the stripe SDK.

Every call is safe to repeat: creation passes an idempotency key (real Stripe honours it; the
emulator does not, so callers also record the PaymentIntent id atomically and cancel a loser),
and cancel/refund treat "already done" as done.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import stripe

from common.platform.errors import (
    PaymentDeclined,
    PaymentProviderBusy,
    PaymentProviderError,
    ValidationFailed,
)

log = logging.getLogger("common.stripe")

SUCCEEDED = "succeeded"
CANCELED = "canceled"
REQUIRES_ACTION = "requires_action"
PROCESSING = "processing"
REQUIRES_PAYMENT_METHOD = "requires_payment_method"  # new, or declined and open to another card
REQUIRES_CAPTURE = "requires_capture"  # a manual-capture intent authorised: a hold

# What Stripe.js `createToken` returns (and Stripe's test tokens such as tok_visa): checked
# before any Stripe call, so that garbage costs the shop's account nothing.
CARD_TOKEN_PATTERN = re.compile(r"^tok_[A-Za-z0-9_]{1,251}$")

# Stripe throttling the shop's account, or not answering: worth repeating after a pause.
TRANSIENT_ERRORS = (stripe.RateLimitError, stripe.APIConnectionError)


def provider_error(exc: stripe.StripeError) -> PaymentProviderError:
    """The domain error for a Stripe failure: PaymentProviderBusy when it is transient."""
    if isinstance(exc, TRANSIENT_ERRORS):
        return PaymentProviderBusy()
    return PaymentProviderError()


def check_card_token(card_token: str) -> None:
    """ValidationFailed unless `card_token` looks like a Stripe.js card token."""
    if not CARD_TOKEN_PATTERN.match(card_token):
        raise ValidationFailed(details={"fields": {"card_token": ["Not a card token."]}})


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
            raise provider_error(exc) from exc
        return Intent.from_stripe(obj)

    def create_hold(self, *, amount_cents: int, currency: str, metadata: dict[str, str],
                    idempotency_key: str) -> Intent:
        """A manual-capture PaymentIntent: confirmed, it only authorises the amount (a hold,
        `requires_capture`, for up to 7 days) until `capture` charges it or `cancel_hold`
        releases it (a draw sale's entry: flash_sale/draw.py)."""
        try:
            obj = self.client.v1.payment_intents.create(
                params={"amount": amount_cents, "currency": currency.lower(),
                        "metadata": metadata, "payment_method_types": ["card"],
                        "capture_method": "manual"},  # type: ignore[typeddict-unknown-key]
                options={"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as exc:
            log.warning("hold creation failed: %s", exc)
            raise provider_error(exc) from exc
        return Intent.from_stripe(obj)

    def capture(self, intent_id: str, idempotency_key: str) -> Intent:
        """Charge a hold in full; returns the intent as it is after the call. Repeating it is
        safe: a hold captured already (its first answer lost) reports `succeeded`; a hold that
        cannot be captured (cancelled, expired) reports its status, which is not `succeeded`.
        One Stripe call, two when the capture is refused."""
        try:
            return Intent.from_stripe(self.client.v1.payment_intents.capture(
                intent_id, options={"idempotency_key": idempotency_key}))
        except stripe.InvalidRequestError:
            return self.retrieve(intent_id)
        except stripe.CardError:
            return self.retrieve(intent_id)
        except stripe.StripeError as exc:
            raise provider_error(exc) from exc

    def cancel_hold(self, intent_id: str, idempotency_key: str) -> Intent:
        """Release a hold (or close an intent never confirmed); returns the final state. One
        Stripe call, two when Stripe refuses it (cancelled already, or captured: reported)."""
        params: dict[str, Any] = {} if self.emulator else {"cancellation_reason": "abandoned"}
        try:
            return Intent.from_stripe(self.client.v1.payment_intents.cancel(
                intent_id, params=params,  # type: ignore[arg-type]
                options={"idempotency_key": idempotency_key}))
        except stripe.InvalidRequestError:
            return self.retrieve(intent_id)
        except stripe.StripeError as exc:
            raise provider_error(exc) from exc

    def retrieve(self, intent_id: str) -> Intent:
        try:
            return Intent.from_stripe(self.client.v1.payment_intents.retrieve(intent_id))
        except stripe.StripeError as exc:
            raise provider_error(exc) from exc

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
        """Refund the intent in full, at most once: an intent already refunded (a retry whose
        answer was lost) returns its existing refund. Real Stripe honours the idempotency key
        too; the emulator does not, hence the look first."""
        try:
            existing = self.client.v1.refunds.list(params={"payment_intent": intent_id, "limit": 1})
            if existing.data:
                return str(existing.data[0]["id"])
            refund = self.client.v1.refunds.create(
                params={"payment_intent": intent_id}, options={"idempotency_key": idempotency_key})
        except stripe.StripeError as exc:
            raise provider_error(exc) from exc
        return str(refund["id"])

    def create_customer(self, *, email: str, user_id: str) -> str:
        """A Stripe Customer for a shop account; returns its id. The idempotency key makes
        real Stripe answer a repeat within 24 h with the same customer (the emulator ignores
        it, so callers store the id atomically and delete a loser)."""
        try:
            customer = self.client.v1.customers.create(
                params={"email": email, "metadata": {"user_id": user_id}},
                options={"idempotency_key": f"customer-{user_id}"})
        except stripe.StripeError as exc:
            raise provider_error(exc) from exc
        return str(customer["id"])

    def delete_customer(self, customer_id: str) -> None:
        try:
            self.client.v1.customers.delete(customer_id)
        except stripe.StripeError as exc:
            raise provider_error(exc) from exc

    def _customer_exists(self, customer_id: str) -> bool:
        try:
            found = self.client.v1.customers.retrieve(customer_id)
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404:
                return False
            raise
        return not found.to_dict().get("deleted")  # Stripe still answers a deleted one, marked

    def confirm_with_card_token(self, intent_id: str, card_token: str, *,
                                customer: Callable[[str | None], str] | None = None,
                                email: str | None = None,
                                claim_card: Callable[[str], object] | None = None) -> Intent:
        """Server-side confirmation with a card token made by Stripe.js `createToken`.

        The flow works the same on real Stripe and on the emulator: the token becomes a card
        on a customer, the PaymentIntent is confirmed with it, and when the bank asks for
        3-D Secure the status is `requires_action` and the browser finishes with
        `stripe.confirmCardPayment(client_secret)`.

        `customer` gives the id of the payer's Stripe Customer and is called only when a card
        is to be attached (the shop keeps one per account: common/billing/card_payments.py);
        called again with that id when Stripe no longer knows it (deleted, or an emulator that
        restarted), it gives a new one. Without it a new customer is made for `email`, which
        suits callers with no account only.

        `claim_card` is called with the card's fingerprint once Stripe has made the card and
        before the intent is given it or confirmed: whatever it raises (one card per sale,
        common/billing/card_claims.py) leaves the payment untouched, nothing charged.
        """
        check_card_token(card_token)
        # Paid already (a second click, or a retry whose first answer was lost): report it
        # rather than an error, and never attach a second card.
        current = self.retrieve(intent_id)
        if current.status in (SUCCEEDED, PROCESSING):
            return current
        customer_id = customer(None) if customer is not None else None
        try:
            if customer_id is None:
                customer_id = str(self.client.v1.customers.create(params={"email": email or ""})["id"])
            try:
                card = self.client.v1.customers.payment_sources.create(
                    customer_id, params={"source": card_token})
            except stripe.InvalidRequestError as exc:
                if exc.http_status != 404 or customer is None or self._customer_exists(customer_id):
                    raise  # the token is what is missing
                # The stored customer is gone: the shopper would be refused for good.
                customer_id = customer(customer_id)
                card = self.client.v1.customers.payment_sources.create(
                    customer_id, params={"source": card_token})
            if claim_card is not None:
                fingerprint = card.to_dict().get("fingerprint")
                if not fingerprint:
                    # Stripe gives one for every card; without it there is nothing to claim.
                    raise PaymentProviderError("Stripe did not identify the card; try again.")
                claim_card(str(fingerprint))
            self.client.v1.payment_intents.update(
                intent_id, params={"payment_method": card["id"], "customer": customer_id})
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
            raise provider_error(exc) from exc
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
