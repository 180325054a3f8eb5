"""Domain errors. Each has a stable `code` and an HTTP status; the API turns them into the
contract's error body in one handler, so no handler formats an error by hand."""

from __future__ import annotations

from typing import Any


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """The contract's error body, `{"error": {"code", "message", "details"}}`: every error the
    shop answers (domain errors, HTTP errors, outages, the admission fast path) is built here."""
    return {"error": {"code": code, "message": message, "details": details or {}}}


class DomainError(Exception):
    code = "error"
    status = 400
    message = "The request could not be completed."

    def __init__(self, message: str | None = None, *, details: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message
        self.details = details or {}
        self.headers = headers or {}

    def to_body(self) -> dict[str, Any]:
        return error_body(self.code, self.message, self.details)


class ValidationFailed(DomainError):
    code, status, message = "validation_error", 422, "The request body is not valid."


class NotFound(DomainError):
    code, status, message = "not_found", 404, "Not found."


class Forbidden(DomainError):
    code, status, message = "forbidden", 403, "You are not allowed to do that."


class Unauthorized(DomainError):
    code, status, message = "unauthorized", 401, "Authentication is required."


class InvalidCredentials(DomainError):
    code, status, message = "invalid_credentials", 401, "Email or password is wrong."


class TokenRevoked(DomainError):
    code, status, message = "token_revoked", 401, "This token has been revoked."


class EmailTaken(DomainError):
    code, status, message = "email_taken", 409, "An account with this email already exists."


class Conflict(DomainError):
    code, status, message = "conflict", 409, "The resource changed; try again."


class SaleNotOpen(DomainError):
    code, status, message = "sale_not_open", 409, "The sale is not open."


class SoldOut(DomainError):
    code, status, message = "sold_out", 410, "Every unit of this sale is gone."


class PurchaseLimitReached(DomainError):
    code, status, message = "purchase_limit_reached", 409, "You already bought your share."


class QuantityTooLarge(DomainError):
    code, status, message = "quantity_over_limit", 422, "Quantity is above the per-user limit."


class TicketNotActive(DomainError):
    code, status, message = "ticket_not_active", 409, "This ticket cannot do that any more."


class PaymentInProgress(DomainError):
    code, status, message = ("payment_in_progress", 409,
                             "A payment for this ticket is in progress or has succeeded.")


class InsufficientStock(DomainError):
    code, status, message = "insufficient_stock", 409, "Not enough stock."


class EmptyCart(DomainError):
    code, status, message = "empty_cart", 409, "The cart is empty."


class PaymentDeclined(DomainError):
    code, status, message = "payment_declined", 402, "The card was declined."


class PaymentProviderError(DomainError):
    code, status, message = "payment_provider_unavailable", 503, "Payments are unavailable."


class PaymentProviderBusy(PaymentProviderError):
    """Stripe throttled the shop (429) or could not be reached: the same request is worth
    repeating after a pause, and says nothing about the payment itself."""

    def __init__(self, message: str | None = None, *, details: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message, details=details, headers={"Retry-After": "2", **(headers or {})})


class RateLimited(DomainError):
    code, status, message = "rate_limited", 429, "Too many requests; slow down."


class TooManyStreams(DomainError):
    code, status, message = ("too_many_streams", 429,
                             "Too many event streams are open; close one, or poll the ticket.")


class ServiceUnavailable(DomainError):
    code, status, message = "service_unavailable", 503, "A backing service is unavailable."


class InvalidWebhook(DomainError):
    code, status, message = "invalid_signature", 400, "The webhook signature is not valid."


class MixedCurrencies(DomainError):
    code, status, message = "mixed_currencies", 422, "A cart holds products of one currency only."


class OrderNotPayable(DomainError):
    code, status, message = "order_not_payable", 409, "This order is not waiting for payment."


class AccountNotAdmin(DomainError):
    code, status, message = ("account_not_admin", 409,
                             "An account with this email exists and is not an admin.")


class EmailNotAccepted(DomainError):
    code, status, message = ("email_not_accepted", 422,
                             "Addresses on this mail domain are not accepted; use another address.")


class InvalidVerificationToken(DomainError):
    code, status, message = ("invalid_token", 400,
                             "This link is not valid: it was used already or has expired.")


class EmailUnverified(DomainError):
    code, status, message = ("email_unverified", 403,
                             "This sale is open to verified accounts only: confirm your email first.")


class CardAlreadyUsed(DomainError):
    code, status, message = ("card_already_used", 409,
                             "This card has already paid for another account in this sale.")


class ChallengeRequired(DomainError):
    code, status, message = ("challenge_required", 403,
                             "This sale asks for a solved challenge with each entry: get a new "
                             "one and try again.")


class QueueFull(DomainError):
    code, status, message = ("queue_full", 409,
                             "The waiting room is full for now: try again in a little while.")
