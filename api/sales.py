"""Flash sales and the waiting room's front door."""

from __future__ import annotations

from functools import lru_cache

from flask import Response, jsonify
from flask_smorest import Blueprint

from api.auth import admin_required, current_user_id, login_required
from api.extensions import clients, limiter, settings
from api.schemas import (
    AdmissionSchema,
    SaleCreateSchema,
    SaleListSchema,
    SaleSchema,
    SaleStatsSchema,
    TicketSchema,
)
from api.task_queue import send_task
from common.flash_sale import sales, waiting_room
from common.platform import metrics
from common.platform.errors import DomainError

blp = Blueprint("sales", __name__, url_prefix="/api", description="Flash sales and the waiting room")
SECURED: list[dict[str, list[str]]] = [{"bearerAuth": []}]
# Built once: admission is the hottest path, and a schema instance is reusable for dumping.
TICKET_SCHEMA = TicketSchema()
# Admission's rate limit is enforced inside admit.lua, in the admission's own round trip
# (flask-limiter would add two more to the hottest path); per shopper and sale, so one
# client hammering admission is slowed without touching others.
_admission_rate = lru_cache(maxsize=8)(waiting_room.AdmissionRate.parse)


@blp.route("/sales", methods=["POST"])
@blp.arguments(SaleCreateSchema)
@blp.response(201, SaleSchema)
@blp.alt_response(409, description="`insufficient_stock`: the product has fewer units than the sale")
@blp.doc(security=SECURED)
@admin_required
def create_sale(body: dict):
    """Create a flash sale (admin): its units leave the product's catalogue stock and are
    loaded into Redis at once; units left unsold when it ends go back to the catalogue."""
    db, redis_client = clients().db, clients().redis
    sale = sales.create_sale(db, redis_client, **body)
    return sales.public_sale(sale, sales.read_counters(redis_client, sale["_id"]))


@blp.route("/sales", methods=["GET"])
@blp.response(200, SaleListSchema)
def list_sales():
    """Sales, newest first (public)."""
    return {"items": sales.list_sales(clients().db, clients().redis)}


@blp.route("/sales/<sale_id>", methods=["GET"])
@blp.response(200, SaleSchema)
def get_sale(sale_id: str):
    """One sale with its live stock and queue length (public)."""
    sale = sales.get_sale_doc(clients().db, sale_id)
    return sales.public_sale(sale, sales.read_counters(clients().redis, sale_id))


@blp.route("/sales/<sale_id>/tickets", methods=["POST"])
@blp.arguments(AdmissionSchema)
@blp.response(202, TicketSchema, description="A new ticket")
@blp.alt_response(200, schema=TicketSchema, description="The caller's live ticket, again")
@blp.doc(security=SECURED)
@login_required
@limiter.exempt  # limited inside admit.lua instead (see above)
def join_waiting_room(body: dict, sale_id: str):
    """Join the sale's waiting room: one ticket per shopper per sale."""
    try:
        admission = waiting_room.admit(clients().redis, sale_id, current_user_id(), body["quantity"],
                                       _admission_rate(settings().admission_rate_limit))
    except DomainError as exc:
        metrics.ADMISSIONS.labels(exc.code).inc()
        raise
    metrics.ADMISSIONS.labels("issued" if admission.created else "existing").inc()
    if admission.kick:
        try:
            send_task("worker.tasks.drain_sale", sale_id)
        except Exception:  # beat drains every second anyway; the ticket is safe in the stream
            pass
    response: Response = jsonify(TICKET_SCHEMA.dump(admission.ticket))
    response.status_code = 202 if admission.created else 200
    return response


@blp.route("/sales/<sale_id>/tickets/mine", methods=["GET"])
@blp.response(200, TicketSchema)
@blp.doc(security=SECURED)
@login_required
def my_ticket(sale_id: str):
    """The caller's most recent ticket for this sale (to find it again after a reload)."""
    return waiting_room.latest_ticket(clients().redis, sale_id, current_user_id())


@blp.route("/admin/sales/<sale_id>/stats", methods=["GET"])
@blp.response(200, SaleStatsSchema)
@blp.doc(security=SECURED)
@admin_required
def sale_stats(sale_id: str):
    """Stock, queue and outcome counts, with the invariant check (admin)."""
    return sales.sale_stats(clients().db, clients().redis, sale_id)
