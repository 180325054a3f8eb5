"""One per-shopper budget for the calls that cost Stripe requests: paying a ticket, paying an
order and checking out (PAYMENT_RATE_LIMIT, flask-limiter on Redis).

Every shopper pays through the shop's one Stripe account; without a budget, one shopper
repeating pay attempts could spend that account's rate limit, and other shoppers' payments
and PaymentIntents would fail. Going over answers 429 `rate_limited` with `Retry-After`
(api/auth.py's handler). Put `@payment_rate_limited` below `@login_required`, so that a
request without a valid token is a 401 first and costs nothing.
"""

from __future__ import annotations

from api.auth import current_user_id
from api.extensions import limiter, settings


def _payment_rate_limit() -> str:
    return settings().payment_rate_limit


def _shopper_key() -> str:
    return "shopper:" + current_user_id()


payment_rate_limited = limiter.shared_limit(_payment_rate_limit, scope="payment",
                                            key_func=_shopper_key)
