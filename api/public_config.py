"""Public configuration for the browser: where Stripe.js comes from and which key it uses,
so the front end needs no rebuild to move between the emulator and real Stripe."""

from __future__ import annotations

import marshmallow as ma
from flask_smorest import Blueprint

from api.extensions import settings

blp = Blueprint("config", __name__, url_prefix="/api/config", description="Public configuration")


class PublicConfigSchema(ma.Schema):
    stripe_publishable_key = ma.fields.String(required=True)
    stripe_js_url = ma.fields.String(required=True)


@blp.route("")
@blp.response(200, PublicConfigSchema)
def public_config():
    """Stripe.js location and publishable key (public)."""
    current = settings()
    return {
        "stripe_publishable_key": current.stripe_publishable_key or "",
        "stripe_js_url": current.stripe_js_url,
    }
