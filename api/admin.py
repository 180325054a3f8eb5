"""The operator's controls of a live sale, and the log of what operators did (admin only)."""

from __future__ import annotations

import logging

import marshmallow as ma
from flask import Response, request
from flask_smorest import Blueprint

from api.auth import BEARER, admin_required, current_user
from api.extensions import clients, settings
from api.sales import SaleSchema, _presence_timeout
from api.schemas import PageQuerySchema, RequestSchema
from api.task_queue import send_task
from common.auditing import operator_log
from common.billing import sale_cancellation
from common.billing.payments import PaymentContext
from common.billing.stripe_gateway import StripeGateway
from common.flash_sale import controls, sales
from common.flash_sale import sale_report as sale_reports
from common.platform.task_routes import TaskName

log = logging.getLogger("api.admin")

blp = Blueprint("admin", __name__, url_prefix="/api", description="The operator's controls")


class SaleUpdateSchema(RequestSchema):
    """Any of these; anything else is 422."""

    ends_at = ma.fields.AwareDateTime(default_timezone=None, metadata={
        "description": "after starts_at and in the future; admissions follow it at once, "
                       "reservations keep their expiry"})
    reservation_ttl_seconds = ma.fields.Integer(strict=True, validate=ma.validate.Range(min=1, max=86_400),
                                                metadata={"description": "reservations made from now on"})
    presence_timeout_seconds = ma.fields.Integer(
        strict=True, validate=[ma.validate.Range(max=86_400), _presence_timeout],
        metadata={"description": "every ticket not yet decided, when its turn comes"})
    outflow_per_second = ma.fields.Float(allow_none=True, allow_nan=False,
                                         validate=ma.validate.Range(min=0.1, max=100_000), metadata={
        "description": "most tickets decided per second; null: no limit"})
    queue_cap = ma.fields.Integer(strict=True, allow_none=True,
                                  validate=ma.validate.Range(min=1, max=100_000_000), metadata={
        "description": "most live tickets; admissions beyond answer 409 `queue_full`; null: none"})
    paused = ma.fields.Boolean(metadata={
        "description": "true: admission goes on, no ticket is decided; tickets show `paused`"})

    @ma.validates_schema
    def _not_empty(self, data: dict, **_kwargs: object) -> None:
        if not data:
            raise ma.ValidationError("Give at least one field to change.", "_schema")


class AuditEntrySchema(ma.Schema):
    at = ma.fields.String(required=True)
    actor = ma.fields.String(required=True, metadata={"description": "the admin's user id"})
    action = ma.fields.String(required=True, validate=ma.validate.OneOf(
        [action.value for action in operator_log.OperatorAction]))
    sale_id = ma.fields.String(required=True, allow_none=True)
    changes = ma.fields.Dict(required=True, metadata={
        "description": "`{field: {before, after}}`"})


class AuditPageSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(AuditEntrySchema), required=True)
    next_cursor = ma.fields.String(required=True, allow_none=True)


class AuditQuerySchema(PageQuerySchema):
    sale_id = ma.fields.String(load_default=None, validate=ma.validate.Length(max=64))


def _actor() -> str:
    return str(current_user()["id"])


@blp.route("/sales/<sale_id>", methods=["PATCH"])
@blp.doc(security=BEARER)
@admin_required
@blp.arguments(SaleUpdateSchema)
@blp.response(200, SaleSchema)
def update_sale(body: dict, sale_id: str):
    """Steer a live sale (admin): each change holds at once in every process. Reservations
    already made keep their expiry; see the operations page for what applies to whom."""
    db, redis_client = clients().db, clients().sales_redis
    sale = controls.update_sale(db, redis_client, sale_id, body, actor=_actor())
    if body.get("paused") is False:
        _decide_now(sale_id)  # resumed: the waiting tickets are decided now, not at beat's next look
    return sales.public_sale(sale, sales.read_counters(redis_client, sale_id))


class CancelSchema(RequestSchema):
    confirm = ma.fields.String(required=True, metadata={"description": "the sale's id, typed"})


def _decide_now(sale_id: str) -> None:
    """Nudge a decider to end the waiting tickets now (beat looks every second anyway)."""
    try:
        send_task(TaskName.DRAIN_SALE, sale_id)
    except Exception:  # beat drains every second anyway: nothing is lost
        log.warning("drain not sent; beat will drain", extra={"sale_id": sale_id}, exc_info=True)


@blp.route("/sales/<sale_id>/end", methods=["POST"])
@blp.doc(security=BEARER)
@admin_required
@blp.response(200, SaleSchema)
def end_sale(sale_id: str):
    """End the sale now (admin): queued and lobby tickets end `sold_out` with reason
    `sale_ended`; reservations keep their time to pay."""
    db, redis_client = clients().db, clients().sales_redis
    sale = controls.end_sale(db, redis_client, sale_id, actor=_actor())
    _decide_now(sale_id)
    return sales.public_sale(sale, sales.read_counters(redis_client, sale_id))


@blp.route("/sales/<sale_id>/cancel", methods=["POST"])
@blp.doc(security=BEARER)
@admin_required
@blp.arguments(CancelSchema)
@blp.response(200, SaleSchema)
def cancel_sale(body: dict, sale_id: str):
    """Cancel the sale, final (admin; `confirm` is the sale's id): every live ticket ends
    `cancelled` with reason `sale_cancelled`, every hold is released and every paid order of
    the sale is refunded (what Stripe does not confirm now, reconcile finishes)."""
    made = clients()
    ctx = PaymentContext(mongo=made.mongo, db=made.db, redis=made.sales_redis,
                         gateway=StripeGateway(made.stripe, emulator=settings().stripe_emulator),
                         serialize_transactions=settings().mongodb_serialize_transactions)
    sale = sale_cancellation.cancel_sale(ctx, sale_id, confirm=body["confirm"], actor=_actor())
    _decide_now(sale_id)
    return sales.public_sale(sale, sales.read_counters(made.sales_redis, sale_id))


class WaitSchema(ma.Schema):
    decided = ma.fields.Integer(required=True)
    p50 = ma.fields.Float(required=True, allow_none=True, metadata={"description": "a bucket's upper bound"})
    p95 = ma.fields.Float(required=True, allow_none=True, metadata={"description": "a bucket's upper bound"})
    max = ma.fields.Float(required=True, allow_none=True)


class MinuteSchema(ma.Schema):
    minute = ma.fields.String(required=True)
    admissions = ma.fields.Integer(required=True)


class SaleReportSchema(ma.Schema):
    sale_id = ma.fields.String(required=True)
    tickets_issued = ma.fields.Integer(required=True)
    admissions_per_minute = ma.fields.List(ma.fields.Nested(MinuteSchema), required=True, metadata={
        "description": "tickets decided so far, by the minute they were admitted"})
    wait_seconds = ma.fields.Nested(WaitSchema, required=True, metadata={
        "description": "from admission to decision"})
    outcomes = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Integer(), required=True,
                              metadata={"description": "tickets by final status, and `waiting`"})
    reserved = ma.fields.Integer(required=True, metadata={"description": "tickets ever reserved"})
    conversion = ma.fields.Float(required=True, allow_none=True, metadata={
        "description": "paid / reserved"})
    expired = ma.fields.Integer(required=True)
    abandoned = ma.fields.Integer(required=True)
    cancelled = ma.fields.Integer(required=True)
    refunded = ma.fields.Integer(required=True, metadata={"description": "orders refunded"})
    paid_orders = ma.fields.Integer(required=True)
    units_sold = ma.fields.Integer(required=True)
    units_returned = ma.fields.Integer(required=True)
    rate_limited = ma.fields.Integer(required=True, metadata={"description": "admissions answered 429"})
    challenges_refused = ma.fields.Integer(required=True)


@blp.route("/admin/sales/<sale_id>/report", methods=["GET"])
@blp.doc(security=BEARER)
@admin_required
@blp.response(200, SaleReportSchema, description="JSON; `Accept: text/csv` for CSV")
def sale_report(sale_id: str):
    """How the sale went (admin), from the counters the system keeps as it goes: admissions
    per minute, wait from admission to decision, outcomes, conversion, refusals."""
    report = sale_reports.sale_report(clients().db, clients().sales_redis, sale_id)
    if request.accept_mimetypes.best_match(["application/json", "text/csv"]) == "text/csv":
        return Response(sale_reports.report_csv(report), mimetype="text/csv", headers={
            "Content-Disposition": f'attachment; filename="sale-{sale_id}-report.csv"'})
    return report


@blp.route("/admin/audit-log", methods=["GET"])
@blp.doc(security=BEARER)
@admin_required
@blp.arguments(AuditQuerySchema, location="query")
@blp.response(200, AuditPageSchema)
def audit_log(query: dict):
    """What operators did, newest first (admin), paged (`next_cursor` back as `cursor`)."""
    return operator_log.page(clients().db, limit=query["limit"], cursor=query["cursor"],
                             sale_id=query["sale_id"])
