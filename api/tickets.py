"""A shopper's ticket: status polling, giving up, paying the reservation."""

from __future__ import annotations

from flask_smorest import Blueprint

from api.auth import current_user, current_user_id, login_required
from api.extensions import clients, settings
from api.schemas import PaymentResultSchema, PaySchema, TicketSchema
from api.task_queue import send_task
from common import waiting_room
from common.errors import ServiceUnavailable, TicketNotActive
from common.stripe_gateway import REQUIRES_ACTION, StripeGateway

blp = Blueprint("tickets", __name__, url_prefix="/api/tickets", description="Waiting-room tickets")
SECURED: list[dict[str, list[str]]] = [{"bearerAuth": []}]


@blp.route("/<ticket_id>", methods=["GET"])
@blp.response(200, TicketSchema)
@blp.doc(security=SECURED)
@login_required
def get_ticket(ticket_id: str):
    """The caller's own ticket: position and ETA while queued, then the outcome."""
    return waiting_room.read_ticket(clients().redis, ticket_id, owner_id=current_user_id())


@blp.route("/<ticket_id>/cancel", methods=["POST"])
@blp.response(200, TicketSchema)
@blp.doc(security=SECURED)
@login_required
def cancel_ticket(ticket_id: str):
    """Give up a queued or reserved ticket; a reservation's stock returns at once."""
    ticket, intent_id = waiting_room.cancel_ticket(clients().redis, ticket_id, current_user_id())
    if intent_id:
        try:
            send_task("worker.tasks.cancel_payment_intent", intent_id)
        except ServiceUnavailable:
            # Logged by the task queue. The ticket is cancelled and its stock back whatever
            # happens to the intent: a payment still made with it is honoured or refunded.
            pass
    return ticket


@blp.route("/<ticket_id>/pay", methods=["POST"])
@blp.arguments(PaySchema)
@blp.response(200, PaymentResultSchema)
@blp.doc(security=SECURED)
@login_required
def pay_ticket(body: dict, ticket_id: str):
    """Confirm the reservation's payment with a Stripe.js card token.

    When the bank asks for 3-D Secure the answer says `requires_action` and the browser
    finishes with `stripe.confirmCardPayment(client_secret)`. The order appears once
    Stripe's webhook is applied; poll the ticket until it is `paid`.
    """
    ticket = waiting_room.read_ticket(clients().redis, ticket_id, owner_id=current_user_id())
    reservation = ticket.get("reservation")
    if ticket["status"] != "reserved" or not reservation:
        raise TicketNotActive(details={"status": ticket["status"]})
    gateway = StripeGateway(clients().stripe, emulator=settings().stripe_emulator)
    intent = gateway.confirm_with_card_token(reservation["payment_intent_id"], body["card_token"],
                                             email=current_user()["email"])
    return {"status": intent.status, "requires_action": intent.status == REQUIRES_ACTION,
            "client_secret": intent.client_secret, "payment_intent_id": intent.id}
