"""Browser security headers: a Content-Security-Policy on every HTML answer, and the headers
that go with it.

The policy is what keeps an injected script from running at all: scripts come only from the
shop itself (Vite's build output, no inline script) and from the configured Stripe.js origin
(the emulator's stand-in in development). Stripe.js also talks to its API and, with real
Stripe, shows 3-D Secure in frames of its own, so those origins are allowed for connect-src and
frame-src. No page may be framed (clickjacking), and referrers never leave the shop.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, Response

from common.platform.settings import Settings

# What real Stripe.js needs beyond its own origin (Stripe's CSP guide): its API for tokens and
# confirmations, and hooks.stripe.com for the 3-D Secure frame.
STRIPE_EXTRA_CONNECT = {"https://js.stripe.com": ("https://api.stripe.com",)}
STRIPE_EXTRA_FRAMES = {"https://js.stripe.com": ("https://hooks.stripe.com",)}

HSTS = "max-age=31536000; includeSubDomains"


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(stripe_js_url: str) -> str:
    """The policy for HTML answers, allowing Stripe.js from `stripe_js_url`'s origin."""
    stripe = origin_of(stripe_js_url)
    connect = " ".join(("'self'", stripe, *STRIPE_EXTRA_CONNECT.get(stripe, ())))
    frames = " ".join((stripe, *STRIPE_EXTRA_FRAMES.get(stripe, ())))
    return "; ".join((
        "default-src 'self'",
        f"script-src 'self' {stripe}",
        "style-src 'self'",
        # Product images may be on any HTTPS host; the favicon is a data: URL.
        "img-src 'self' data: https:",
        "font-src 'self'",
        f"connect-src {connect}",
        f"frame-src {frames}",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ))


def install_security_headers(app: Flask, settings: Settings) -> None:
    """Add the headers to every answer of `app` (the policy to HTML answers)."""
    policy = content_security_policy(settings.stripe_js_url)
    production = settings.is_production

    @app.after_request
    def _security_headers(response: Response) -> Response:
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "same-origin")
        if production:
            headers.setdefault("Strict-Transport-Security", HSTS)
        if response.mimetype == "text/html":
            headers["Content-Security-Policy"] = policy
        return response
