"""Stripe webhooks: verify the signature on the raw body, record the delivery, hand it to a
worker, answer fast."""

from __future__ import annotations

import logging

import marshmallow as ma
import stripe
from flask import request
from flask_smorest import Blueprint

from api.extensions import clients, settings
from api.task_queue import send_task
from common.billing.payments import HANDLED_EVENTS, record_webhook_event
from common.billing.stripe_gateway import StripeGateway
from common.platform import metrics
from common.platform.errors import InvalidWebhook
from common.platform.task_routes import TaskName

log = logging.getLogger("api.webhooks")
blp = Blueprint("webhooks", __name__, url_prefix="/api/webhooks", description="Stripe webhooks")


class WebhookAckSchema(ma.Schema):
    received = ma.fields.Boolean(required=True)
    duplicate = ma.fields.Boolean()


@blp.route("/stripe", methods=["POST"])
@blp.response(200, WebhookAckSchema)
def stripe_webhook():
    """Stripe-signed events (public). Unsigned, badly signed or stale events: 400."""
    signature = request.headers.get("Stripe-Signature", "")
    if not signature:
        raise InvalidWebhook("Missing Stripe-Signature header.")
    gateway = StripeGateway(clients().stripe)
    try:
        event = gateway.construct_event(request.get_data(cache=False), signature,
                                        settings().require("stripe_webhook_secret"))
    except stripe.SignatureVerificationError as exc:
        metrics.WEBHOOKS.labels("unknown", "bad_signature").inc()
        raise InvalidWebhook() from exc
    except ValueError as exc:
        raise InvalidWebhook("The body is not a Stripe event.") from exc
    event_type = str(event.get("type", ""))
    if event_type not in HANDLED_EVENTS:
        metrics.WEBHOOKS.labels(event_type, "ignored").inc()
        return {"received": True}
    intent_id = str(((event.get("data") or {}).get("object") or {}).get("id", ""))
    if not record_webhook_event(clients().db, event):
        metrics.WEBHOOKS.labels(event_type, "duplicate").inc()
        return {"received": True, "duplicate": True}
    send_task(TaskName.APPLY_PAYMENT_EVENT, event["id"], intent_id, event_type)
    return {"received": True}
