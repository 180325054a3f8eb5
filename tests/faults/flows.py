"""Steps the fault tests share: a shopper's reservation, a payment at the Stripe emulator, a
signed webhook delivery, and the worker's share of a delivery (common.billing.payments)."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import redis
import stripe

from common.billing.payments import apply_intent, mark_event_processed
from common.flash_sale import sale_keys, waiting_room
from common.platform.clients import Clients
from common.platform.settings import Settings
from loadtests.shop import mint_access_token
from tests.faults.invariants import StripeView, stripe_view
from tests.waiting_room_helpers import card_token, drain, payment_context

GOOD_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000341"  # attaches, then the charge is declined


def signature_header(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    signature = stripe.WebhookSignature._compute_signature(f"{timestamp}.{payload.decode()}", secret)
    return f"t={timestamp},v1={signature}"


def event_payload(event_type: str, intent_id: str, event_id: str | None = None) -> bytes:
    return json.dumps({
        "id": event_id or "evt_" + secrets.token_hex(12), "object": "event", "type": event_type,
        "created": int(time.time()), "api_version": "2024-06-20",
        "data": {"object": {"id": intent_id, "object": "payment_intent"}},
    }).encode()


def deliver(client: Any, payload: bytes, secret: str, **header_options: Any) -> Any:
    """POST a delivery to the webhook endpoint through a Flask test client."""
    return client.post("/api/webhooks/stripe", data=payload, content_type="application/json",
                       headers={"Stripe-Signature": signature_header(payload, secret, **header_options)})


def work_delivery(clients: Clients, payload: bytes) -> str:
    """What worker.tasks.apply_payment_event does with a delivery the API queued."""
    event = json.loads(payload)
    outcome = apply_intent(payment_context(clients), event["data"]["object"]["id"])
    mark_event_processed(clients.db, event["id"], outcome)
    return outcome


def reserve(clients: Clients, sale_id: str, user_id: str) -> tuple[str, str]:
    """Admit a shopper and decide the line; returns (ticket_id, payment_intent_id or "")."""
    ticket_id = waiting_room.admit(clients.redis, sale_id, user_id, 1).ticket["id"]
    drain(clients, sale_id)
    intent_id = clients.redis.hget(sale_keys.ticket_key(sale_id, ticket_id), "payment_intent_id") or ""
    return ticket_id, intent_id


def pay_at_stripe(clients: Clients, intent_id: str, number: str = GOOD_CARD) -> str:
    """The shopper's card payment, as POST /api/tickets/<id>/pay makes it; returns the status."""
    gateway = payment_context(clients).gateway
    token = card_token(str(clients.settings.stripe_api_base), number)
    return gateway.confirm_with_card_token(intent_id, token, email="shopper@example.com").status


def stripe_state(clients: Clients, sale_id: str) -> StripeView:
    return stripe_view(clients.stripe, sale_id)


def queued_tasks(clients: Clients) -> int:
    """Tasks the API sent and no worker took (the default Celery queue)."""
    return int(clients.redis.llen("celery"))


def access_token(settings: Settings, user_id: str, role: str = "customer", ttl: int = 600) -> str:
    """An access token as the API issues one (of an account whose email is verified), without
    the cost of registering the user."""
    return mint_access_token(settings.jwt_secret(), user_id, role, ttl)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


UNSETTLED = ("queued", "reserving", "settling")


def in_flight(clients: Clients, sale_id: str) -> int:
    """Tickets not decided or not finished, plus stream entries not acknowledged."""
    from tests.faults.invariants import snapshot_tickets

    _, tickets = snapshot_tickets(clients.redis, sale_id)
    unsettled = sum(t.get("status") in UNSETTLED for t in tickets.values())
    try:
        pending = int(clients.redis.xpending(sale_keys.stream_key(sale_id),
                                             sale_keys.CONSUMER_GROUP)["pending"])
    except redis.ResponseError:  # no consumer group yet: nothing was read
        pending = 0
    return unsettled + pending


def wait_settled(clients: Clients, sale_id: str, timeout: float = 60) -> None:
    from tests.faults.services import wait_until

    wait_until(lambda: in_flight(clients, sale_id) == 0, timeout, interval=0.3,
               message=f"sale {sale_id} to settle")


def eventually_invariants(clients: Clients, sale_id: str, timeout: float = 30, **options: Any) -> Any:
    """I1-I4 once the system has caught up (cancel and payment tasks still running)."""
    from tests.faults.invariants import assert_invariants, check_invariants

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        snapshot = check_invariants(clients.redis, clients.db, sale_id, stripe_state(clients, sale_id),
                                    **options)
        if not snapshot.problems:
            return snapshot
        time.sleep(1)
    return assert_invariants(clients.redis, clients.db, sale_id, stripe_state(clients, sale_id), **options)
