"""Marshmallow schemas of the waiting-room endpoints (requests reject unknown fields)."""

from __future__ import annotations

import marshmallow as ma


class SaleCreateSchema(ma.Schema):
    product_id = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=64))
    stock = ma.fields.Integer(required=True, strict=True, validate=ma.validate.Range(min=1, max=10_000_000))
    price_cents = ma.fields.Integer(required=True, strict=True,
                                    validate=ma.validate.Range(min=1, max=100_000_000))
    starts_at = ma.fields.AwareDateTime(required=True, default_timezone=None)
    ends_at = ma.fields.AwareDateTime(required=True, default_timezone=None)
    per_user_limit = ma.fields.Integer(load_default=1, strict=True,
                                       validate=ma.validate.Range(min=1, max=100))
    reservation_ttl_seconds = ma.fields.Integer(load_default=300, strict=True,
                                                validate=ma.validate.Range(min=1, max=86_400))


class SaleSchema(ma.Schema):
    id = ma.fields.String(required=True)
    product_id = ma.fields.String(required=True)
    price_cents = ma.fields.Integer(required=True)
    currency = ma.fields.String(required=True)
    starts_at = ma.fields.String(required=True)
    ends_at = ma.fields.String(required=True)
    per_user_limit = ma.fields.Integer()
    reservation_ttl_seconds = ma.fields.Integer()
    status = ma.fields.String(required=True, validate=ma.validate.OneOf(
        ["scheduled", "open", "sold_out", "ended"]))
    stock_total = ma.fields.Integer(required=True)
    stock_available = ma.fields.Integer(required=True)
    queue_length = ma.fields.Integer(required=True)


class SaleListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(SaleSchema), required=True)


class AdmissionSchema(ma.Schema):
    quantity = ma.fields.Integer(load_default=1, strict=True, validate=ma.validate.Range(min=1, max=100))


class ReservationSchema(ma.Schema):
    expires_at = ma.fields.String(allow_none=True)
    payment_intent_id = ma.fields.String(allow_none=True)
    client_secret = ma.fields.String(allow_none=True)
    amount_cents = ma.fields.Integer()
    currency = ma.fields.String(allow_none=True)


class TicketSchema(ma.Schema):
    id = ma.fields.String(required=True)
    sale_id = ma.fields.String(required=True)
    quantity = ma.fields.Integer(required=True)
    status = ma.fields.String(required=True, validate=ma.validate.OneOf(
        ["queued", "reserved", "paid", "sold_out", "expired", "cancelled", "payment_failed"]))
    position = ma.fields.Integer(allow_none=True)
    eta_seconds = ma.fields.Integer(allow_none=True)
    poll_after_ms = ma.fields.Integer(allow_none=True)
    reservation = ma.fields.Nested(ReservationSchema, allow_none=True)
    order_id = ma.fields.String(allow_none=True)
    refunded = ma.fields.Boolean(metadata={"description": "present when a late payment was refunded"})
    reason = ma.fields.String(metadata={
        "description": "present on a `sold_out` ticket whose owner already held or bought their "
                       "share (`per_user_limit`)"})
    created_at = ma.fields.String(allow_none=True)
    updated_at = ma.fields.String(allow_none=True)


class PaySchema(ma.Schema):
    card_token = ma.fields.String(required=True, validate=ma.validate.Length(min=4, max=255))


class PaymentResultSchema(ma.Schema):
    status = ma.fields.String(required=True)
    requires_action = ma.fields.Boolean(required=True)
    client_secret = ma.fields.String(required=True)
    payment_intent_id = ma.fields.String(required=True)


class SaleStatsSchema(ma.Schema):
    stock_total = ma.fields.Integer(required=True)
    available = ma.fields.Integer(required=True)
    reserved = ma.fields.Integer(required=True)
    sold = ma.fields.Integer(required=True)
    queued = ma.fields.Integer(required=True)
    tickets_issued = ma.fields.Integer(required=True)
    sold_out = ma.fields.Integer(required=True)
    expired = ma.fields.Integer(required=True)
    cancelled = ma.fields.Integer(required=True)
    payment_failed = ma.fields.Integer(required=True)
    paid = ma.fields.Integer()
    returned = ma.fields.Integer(metadata={
        "description": "units given back to the catalogue after the sale ended unsold"})
    orders = ma.fields.Integer()
    decisions_per_second = ma.fields.Float()
    consistent = ma.fields.Boolean(required=True)


class WebhookAckSchema(ma.Schema):
    received = ma.fields.Boolean(required=True)
    duplicate = ma.fields.Boolean()
