"""Flash sales and the waiting room's front door."""

from __future__ import annotations

from functools import lru_cache

import marshmallow as ma
from flask import Response, jsonify
from flask_jwt_extended import get_jwt
from flask_smorest import Blueprint

from api.auth import (
    BEARER,
    admin_required,
    current_user,
    current_user_id,
    login_required,
    verified_recheck,
)
from api.extensions import clients, limiter, settings
from api.schemas import PageQuerySchema, RequestSchema, TicketSchema
from api.task_queue import send_task
from common.auditing import operator_log
from common.beacon import drand
from common.flash_sale import beacon_draw, entry_challenge, lobby, sales, ticket_events, waiting_room
from common.flash_sale.lobby import MAX_ENTRIES_PAGE
from common.platform import metrics
from common.platform.errors import DomainError
from common.platform.task_routes import TaskName

blp = Blueprint("sales", __name__, url_prefix="/api", description="Flash sales and the waiting room")


def _presence_timeout(seconds: int) -> None:
    if not ticket_events.presence_timeout_allowed(seconds):
        raise ma.ValidationError("Must be 0 (off) or at least "
                                 f"{ticket_events.MIN_PRESENCE_TIMEOUT_SECONDS} seconds.")


class EntrySchema(RequestSchema):
    """Who may enter; the contract's defaults apply to each field left out."""

    verified_email = ma.fields.Boolean(load_default=True, metadata={
        "description": "admission by an account whose email is not verified: 403 `email_unverified`"})
    challenge = ma.fields.Boolean(load_default=False, metadata={
        "description": "admission needs a solved proof-of-work challenge"})
    one_card = ma.fields.Boolean(load_default=True, metadata={
        "description": "a card pays or holds for one account per sale"})


class EntryViewSchema(ma.Schema):
    verified_email = ma.fields.Boolean(required=True)
    challenge = ma.fields.Boolean(required=True)
    one_card = ma.fields.Boolean(required=True)


class SaleCreateSchema(RequestSchema):
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
    presence_timeout_seconds = ma.fields.Integer(
        load_default=0, strict=True,
        validate=[ma.validate.Range(max=86_400), _presence_timeout],
        metadata={"description": "0: off. Else a ticket whose owner had no open event stream "
                                 "and made no poll for this long when its turn comes ends "
                                 "`abandoned` and its units go to the next in line"})
    lobby_opens_at = ma.fields.AwareDateTime(allow_none=True, default_timezone=None, metadata={
        "description": "when shoppers may join the lobby (default: now); null: no lobby"})
    entry = ma.fields.Nested(EntrySchema, load_default=lambda: EntrySchema().load({}), metadata={
        "description": "entry requirements; default `{verified_email: true, challenge: false, "
                       "one_card: true}`"})
    mode = ma.fields.String(load_default=sales.SaleMode.QUEUE.value,
                            validate=ma.validate.OneOf([m.value for m in sales.SaleMode]), metadata={
        "description": "`queue` (the waiting room) or `draw` (the card held at entry, winners "
                       "charged at `starts_at`); a draw needs a lobby of at most 6 days"})
    fairness_algorithm = ma.fields.String(
        load_default=None, validate=ma.validate.OneOf([lobby.ALGORITHM, beacon_draw.ALGORITHM]),
        metadata={"description": "how the lobby is ordered; default `hmac-sha256-drand-v2` when a "
                                 "randomness beacon is configured (DRAND_URLS), else `hmac-sha256-v1`"})


class BeaconSchema(ma.Schema):
    chain_hash = ma.fields.String(required=True)
    public_key = ma.fields.String(required=True, metadata={
        "description": "hex, the chain's BLS public key (G2, compressed)"})
    period_seconds = ma.fields.Integer(required=True)
    genesis_time = ma.fields.Integer(required=True, metadata={"description": "Unix seconds"})
    round = ma.fields.Integer(required=True, metadata={
        "description": "the round whose randomness orders the lobby: the first whose time is at "
                       "least 10 s after starts_at (a later one when the close was recorded too "
                       "late for it: `round_moved_from` then names the first)"})
    round_moved_from = ma.fields.Integer()
    signature = ma.fields.String(metadata={"description": "hex; once the round is out"})
    randomness = ma.fields.String(metadata={"description": "hex SHA-256 of the signature"})


class FairnessSchema(ma.Schema):
    algorithm = ma.fields.String(required=True, validate=ma.validate.OneOf(
        [lobby.ALGORITHM, beacon_draw.ALGORITHM]))
    commitment = ma.fields.String(required=True, metadata={"description": "hex(SHA-256(seed))"})
    beacon = ma.fields.Nested(BeaconSchema, metadata={
        "description": "`hmac-sha256-drand-v2` only: the public randomness beacon's round"})
    entries_digest = ma.fields.String(metadata={
        "description": "`hmac-sha256-drand-v2`, from the close: hex SHA-256 of the lobby's ids "
                       "sorted ascending, joined by a newline"})
    closed_at = ma.fields.String(metadata={"description": "`hmac-sha256-drand-v2`: when the lobby closed"})
    seed = ma.fields.String(metadata={
        "description": "`hmac-sha256-drand-v2`: the committed seed (hex), once the beacon's round is out"})


class FairnessPageSchema(FairnessSchema):
    seed = ma.fields.String(required=True, allow_none=True, metadata={
        "description": "hex; null until the start (`hmac-sha256-drand-v2`: until the beacon's round is out)"})
    lobby_size = ma.fields.Integer(required=True)
    entries = ma.fields.List(ma.fields.String(), required=True, metadata={
        "description": "ids of the tickets in the lobby at the start, ascending"})
    next_cursor = ma.fields.String(required=True, allow_none=True)


class FairnessQuerySchema(PageQuerySchema):
    limit = ma.fields.Integer(load_default=MAX_ENTRIES_PAGE,
                              validate=ma.validate.Range(min=1, max=MAX_ENTRIES_PAGE))


class PacingSchema(ma.Schema):
    mode = ma.fields.String(required=True, validate=ma.validate.OneOf(["auto", "operator"]))
    per_second = ma.fields.Float(required=True, allow_none=True, metadata={
        "description": "most tickets decided a second; null: no limit; 0 while paused"})
    reason = ma.fields.String(required=True, allow_none=True)


class SaleControlsViewMixin(ma.Schema):
    paused = ma.fields.Boolean(metadata={"description": "no ticket is decided (admission goes on)"})
    outflow_per_second = ma.fields.Float(allow_none=True, metadata={
        "description": "the operator's pace: most tickets decided a second; null: no limit"})
    queue_cap = ma.fields.Integer(allow_none=True, metadata={
        "description": "most live tickets; admissions beyond answer 409 `queue_full`"})
    pacing = ma.fields.Nested(PacingSchema)


class SaleSchema(SaleControlsViewMixin):
    id = ma.fields.String(required=True)
    product_id = ma.fields.String(required=True)
    price_cents = ma.fields.Integer(required=True)
    currency = ma.fields.String(required=True)
    starts_at = ma.fields.String(required=True)
    ends_at = ma.fields.String(required=True)
    per_user_limit = ma.fields.Integer()
    reservation_ttl_seconds = ma.fields.Integer()
    presence_timeout_seconds = ma.fields.Integer()
    status = ma.fields.String(required=True, validate=ma.validate.OneOf(
        [status.value for status in sales.SaleStatus]))
    stock_total = ma.fields.Integer(required=True)
    stock_available = ma.fields.Integer(required=True)
    queue_length = ma.fields.Integer(required=True)
    lobby_opens_at = ma.fields.String(allow_none=True)
    lobby_size = ma.fields.Integer()
    fairness = ma.fields.Nested(FairnessSchema, allow_none=True)
    entry = ma.fields.Nested(EntryViewSchema)
    mode = ma.fields.String(validate=ma.validate.OneOf([m.value for m in sales.SaleMode]))


class SaleListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(SaleSchema), required=True)


MAX_QUANTITY = 100


class AdmissionSchema(RequestSchema):
    """The admission fast path (api/admission_fast_path.py) takes only the plainest bodies this
    accepts and leaves the rest to it."""

    quantity = ma.fields.Integer(load_default=1, strict=True,
                                 validate=ma.validate.Range(min=1, max=MAX_QUANTITY))
    altcha = ma.fields.String(validate=ma.validate.Length(max=entry_challenge.MAX_PAYLOAD_CHARS),
                              metadata={"description": "the solved challenge's ALTCHA payload "
                                                       "(base64), for a sale with `entry.challenge`"})


class ChallengeSchema(ma.Schema):
    """An ALTCHA challenge (the protocol's first version, which the `altcha` widget solves)."""

    algorithm = ma.fields.String(required=True)
    challenge = ma.fields.String(required=True)
    maxnumber = ma.fields.Integer(required=True)
    salt = ma.fields.String(required=True, metadata={
        "description": "carries `expires` (unix seconds) and the sale's id"})
    signature = ma.fields.String(required=True)


class DrawStatsSchema(ma.Schema):
    held = ma.fields.Integer(required=True, metadata={"description": "entries whose hold is held now"})
    captured = ma.fields.Integer(required=True, metadata={"description": "holds captured by the draw"})
    released = ma.fields.Integer(required=True, metadata={
        "description": "holds cancelled: withdrawn, not selected, no hold at the draw, sale cancelled"})
    failed = ma.fields.Integer(required=True, metadata={
        "description": "hold authorisations declined, and captures that failed"})


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
    abandoned = ma.fields.Integer(metadata={
        "description": "tickets whose owner was away when their turn came (presence)"})
    paid = ma.fields.Integer()
    returned = ma.fields.Integer(metadata={
        "description": "units given back to the catalogue after the sale ended unsold"})
    orders = ma.fields.Integer()
    decisions_per_second = ma.fields.Float()
    consistent = ma.fields.Boolean(required=True)
    draw = ma.fields.Nested(DrawStatsSchema, metadata={
        "description": "a draw sale's holds so far (draw sales only)"})


# Built once: admission is the hottest path, and a schema instance is reusable for dumping.
TICKET_SCHEMA = TicketSchema()
# Admission's rate limit is enforced inside admit.lua, in the admission's own round trip
# (flask-limiter would add two more to the hottest path); per shopper and sale, so one
# client hammering admission is slowed without touching others.
_admission_rate = lru_cache(maxsize=8)(waiting_room.AdmissionRate.parse)


@blp.route("/sales", methods=["POST"])
@blp.doc(security=BEARER)
@admin_required
@blp.arguments(SaleCreateSchema)
@blp.response(201, SaleSchema)
@blp.alt_response(409, description="`insufficient_stock`: the product has fewer units than the sale")
def create_sale(body: dict):
    """Create a flash sale (admin): its units leave the product's catalogue stock and are
    loaded into Redis at once; units left unsold when it ends go back to the catalogue."""
    db, redis_client = clients().db, clients().sales_redis
    sale = sales.create_sale(db, redis_client, **body, beacon=drand.chain_from_settings(settings())
                             if settings().drand_urls else None)
    operator_log.record(
        db, actor=str(current_user()["id"]), action=operator_log.OperatorAction.SALE_CREATED,
        sale_id=sale["_id"],
        changes={name: {"before": None, "after": sales.shown_value(value)} for name, value in body.items()})
    return sales.public_sale(sale, sales.read_counters(redis_client, sale["_id"]))


@blp.route("/sales", methods=["GET"])
@blp.response(200, SaleListSchema)
def list_sales():
    """Sales, newest first (public)."""
    return {"items": sales.list_sales(clients().db, clients().sales_redis)}


@blp.route("/sales/<sale_id>", methods=["GET"])
@blp.response(200, SaleSchema)
def get_sale(sale_id: str):
    """One sale with its live stock and queue length (public)."""
    sale = sales.get_sale_doc(clients().db, sale_id)
    return sales.public_sale(sale, sales.read_counters(clients().sales_redis, sale_id))


@blp.route("/sales/<sale_id>/fairness", methods=["GET"])
@blp.arguments(FairnessQuerySchema, location="query")
@blp.response(200, FairnessPageSchema)
def sale_fairness(query: dict, sale_id: str):
    """The lobby's draw, to check it (public): the commitment, the seed once the lobby has
    closed at the start (null before), the lobby's size and its ticket ids in ascending order,
    paged (`next_cursor` back as `cursor`). Order: ids sorted ascending by the raw
    HMAC-SHA256(key=seed, message=id as UTF-8); place 1 first (`hmac-sha256-v1`)."""
    return lobby.fairness_page(clients().db, clients().sales_redis, sale_id,
                               cursor=query["cursor"], limit=query["limit"])


@blp.route("/sales/<sale_id>/tickets", methods=["POST"])
@blp.doc(security=BEARER)
@login_required
@limiter.exempt  # limited inside admit.lua instead (see above)
@blp.arguments(AdmissionSchema)
@blp.response(202, TicketSchema, description="A new ticket")
@blp.alt_response(200, schema=TicketSchema, description="The caller's live ticket, again")
@blp.alt_response(403, description="`email_unverified`: the sale is open to verified accounts only; "
                                   "`challenge_required`: the sale needs a solved challenge (missing, "
                                   "invalid, expired or used already), see `details.challenge_url`")
def join_waiting_room(body: dict, sale_id: str):
    """Join the sale's waiting room: one ticket per shopper per sale."""
    user_id = current_user_id()
    email_verified = bool(get_jwt().get("ev"))
    solution = None
    if "altcha" in body:
        solution = entry_challenge.verify(body["altcha"], sale_id, entry_challenge.hmac_key(settings()))
    try:
        admission = waiting_room.admit(
            clients().sales_redis, sale_id, user_id, body["quantity"],
            _admission_rate(settings().admission_rate_limit), email_verified=email_verified,
            recheck_verified=None if email_verified else verified_recheck(clients().db, user_id),
            solution=solution)
    except DomainError as exc:
        metrics.ADMISSIONS.labels(exc.code).inc()
        raise
    metrics.ADMISSIONS.labels("issued" if admission.created else "existing").inc()
    if admission.kick:
        try:
            send_task(TaskName.DRAIN_SALE, sale_id)
        except Exception:  # beat drains every second anyway; the ticket is safe in the stream
            pass
    response: Response = jsonify(TICKET_SCHEMA.dump(admission.ticket))
    response.status_code = 202 if admission.created else 200
    return response


@blp.route("/sales/<sale_id>/challenge", methods=["GET"])
@blp.doc(security=BEARER)
@login_required
@blp.response(200, ChallengeSchema)
def sale_challenge(sale_id: str):
    """A proof-of-work challenge for one admission to this sale (ALTCHA): solve it (the
    `altcha` widget does) and send the payload as the admission's `altcha`. It expires (the
    salt's `expires`) and its solution is accepted once."""
    sale = sales.get_sale_doc(clients().db, sale_id)  # 404 for no such sale
    config = settings()
    return entry_challenge.new_challenge(sale["_id"], entry_challenge.hmac_key(config),
                                         max_number=config.altcha_max_number,
                                         ttl_seconds=config.altcha_challenge_ttl_seconds)


@blp.route("/sales/<sale_id>/tickets/mine", methods=["GET"])
@blp.doc(security=BEARER)
@login_required
@blp.response(200, TicketSchema)
def my_ticket(sale_id: str):
    """The caller's most recent ticket for this sale (to find it again after a reload)."""
    return waiting_room.latest_ticket(clients().sales_redis, sale_id, current_user_id())


@blp.route("/admin/sales/<sale_id>/stats", methods=["GET"])
@blp.doc(security=BEARER)
@admin_required
@blp.response(200, SaleStatsSchema)
def sale_stats(sale_id: str):
    """Stock, queue and outcome counts, with the invariant check (admin)."""
    return sales.sale_stats(clients().db, clients().sales_redis, sale_id)
