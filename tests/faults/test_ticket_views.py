"""One ticket, three ways to see it: the join's answer (`POST /api/sales/<id>/tickets`), a poll
(`GET /api/tickets/<id>`) and the first event of its stream (`GET /api/tickets/<id>/events`)
show the same ticket, for every status a ticket can have, through a real gunicorn API on the
real Redis, MongoDB and Stripe emulator. units_ahead and outlook included: the stream once
told the only shopper of a 1-unit lobby `unlikely` while the join and the poll said `likely`."""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from common.billing.payments import apply_intent, cancel_ticket, sweep_intent_cancellations
from common.development.ports import free_port
from common.flash_sale import reservations, sale_keys, sales
from common.flash_sale.ticket_events import stream_token_key, stream_token_valid
from common.flash_sale.tickets import TicketStatus
from common.platform.errors import PaymentDeclined
from tests.faults.flows import DECLINED_CARD, access_token, bearer, pay_at_stripe
from tests.faults.sse import first_event
from tests.waiting_room_helpers import drain, gateway_for, make_product, open_sale, payment_context

pytestmark = [pytest.mark.slow]


@pytest.fixture
def api(fault_settings, spawn) -> str:
    port = free_port()
    spawn("api", fault_settings, label="api", PORT=str(port), WEB_CONCURRENCY="1")
    return f"http://127.0.0.1:{port}"


class Shop:
    """Shoppers joining through the API, and what the API shows them of their tickets."""

    def __init__(self, api: str, settings: Any) -> None:
        self.api, self.settings = api, settings
        self.statuses: set[str] = set()  # the statuses compared

    def auth(self, user_id: str) -> dict[str, str]:
        return bearer(access_token(self.settings, user_id))

    def join(self, sale_id: str, user_id: str, expected: int = 202) -> dict[str, Any]:
        answer = requests.post(f"{self.api}/api/sales/{sale_id}/tickets", json={"quantity": 1},
                               headers=self.auth(user_id), timeout=10)
        assert answer.status_code == expected, answer.text
        return dict(answer.json())

    def poll(self, ticket_id: str, user_id: str) -> dict[str, Any]:
        answer = requests.get(f"{self.api}/api/tickets/{ticket_id}", headers=self.auth(user_id),
                              timeout=10)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def streamed(self, ticket_id: str, user_id: str) -> dict[str, Any]:
        return first_event(f"{self.api}/api/tickets/{ticket_id}/events",
                           headers=self.auth(user_id)).ticket

    def same_everywhere(self, ticket_id: str, user_id: str, status: TicketStatus,
                        joined: dict[str, Any] | None = None) -> dict[str, Any]:
        """The poll and the stream's first event (and the join's answer, when given) agree; the
        stream_token aside, which each answer makes afresh."""
        self.statuses.add(status.value)
        polled = self.poll(ticket_id, user_id)
        views = {"poll": polled, "stream": self.streamed(ticket_id, user_id)}
        if joined is not None:
            views["join"] = joined
        key = stream_token_key(self.settings.jwt_secret())
        for name, view in views.items():
            assert stream_token_valid(key, ticket_id, view.pop("stream_token"), time.time(), 3600), name
        assert views["stream"] == polled, f"{status}: stream {views['stream']} != poll {polled}"
        if joined is not None:
            assert joined == polled, f"{status}: join {joined} != poll {polled}"
        return polled


def _lobby_sale(clients, stock: int) -> str:
    now = datetime.now(UTC)
    sale = sales.create_sale(
        clients.db, clients.sales_redis, product_id=make_product(clients, stock), stock=stock,
        price_cents=1999, starts_at=now + timedelta(minutes=10), ends_at=now + timedelta(hours=1),
        lobby_opens_at=now - timedelta(seconds=5))
    return str(sale["_id"])


def _intent(clients, sale_id: str, ticket_id: str) -> str:
    return str(clients.sales_redis.hget(sale_keys.ticket_key(sale_id, ticket_id), "payment_intent_id"))


def test_join_poll_and_stream_show_the_same_ticket_for_every_status(api, fault_settings, fault_clients):
    clients, shop = fault_clients, Shop(api, fault_settings)
    redis_client = clients.sales_redis

    # lobby: the only shopper of a 1-unit sale, nobody ahead: likely, everywhere.
    lobby_sale = _lobby_sale(clients, stock=1)
    joined = shop.join(lobby_sale, "usr_lobby")
    lobby = shop.same_everywhere(joined["id"], "usr_lobby", TicketStatus.LOBBY, joined)
    assert (lobby["status"], lobby["units_ahead"], lobby["outlook"]) == ("lobby", 0, "likely")
    assert shop.join(lobby_sale, "usr_lobby", expected=200)["id"] == joined["id"]

    # queued: first (likely) and second (unlikely) in a 1-unit line; a second join is the same.
    sale_id = open_sale(clients, stock=1)
    first = shop.join(sale_id, "usr_first")
    second = shop.join(sale_id, "usr_second")
    ahead = shop.same_everywhere(first["id"], "usr_first", TicketStatus.QUEUED, first)
    behind = shop.same_everywhere(second["id"], "usr_second", TicketStatus.QUEUED, second)
    assert (ahead["position"], ahead["units_ahead"], ahead["outlook"]) == (1, 0, "likely")
    assert (behind["position"], behind["units_ahead"], behind["outlook"]) == (2, 1, "unlikely")
    shop.same_everywhere(second["id"], "usr_second", TicketStatus.QUEUED,
                         shop.join(sale_id, "usr_second", expected=200))

    # reserved and sold_out: the line decided.
    drain(clients, sale_id)
    shop.same_everywhere(first["id"], "usr_first", TicketStatus.RESERVED,
                         shop.join(sale_id, "usr_first", expected=200))
    shop.same_everywhere(second["id"], "usr_second", TicketStatus.SOLD_OUT)

    # paid and cancelled.
    sale_id = open_sale(clients, stock=2)
    payer, leaver = shop.join(sale_id, "usr_payer"), shop.join(sale_id, "usr_leaver")
    drain(clients, sale_id)
    assert pay_at_stripe(clients, _intent(clients, sale_id, payer["id"])) == "succeeded"
    apply_intent(payment_context(clients), _intent(clients, sale_id, payer["id"]))
    shop.same_everywhere(payer["id"], "usr_payer", TicketStatus.PAID)
    cancel_ticket(redis_client, gateway_for(clients), leaver["id"], "usr_leaver")
    shop.same_everywhere(leaver["id"], "usr_leaver", TicketStatus.CANCELLED)

    # payment_failed: a declined card.
    sale_id = open_sale(clients, stock=1)
    declined = shop.join(sale_id, "usr_declined")
    drain(clients, sale_id)
    with contextlib.suppress(PaymentDeclined):
        pay_at_stripe(clients, _intent(clients, sale_id, declined["id"]), DECLINED_CARD)
    apply_intent(payment_context(clients), _intent(clients, sale_id, declined["id"]))
    shop.same_everywhere(declined["id"], "usr_declined", TicketStatus.PAYMENT_FAILED)

    # expired: the reservation ran out unpaid, its intent cancelled at Stripe.
    sale_id = open_sale(clients, stock=1, ttl=1)
    late = shop.join(sale_id, "usr_late")
    drain(clients, sale_id)
    time.sleep(1.1)
    assert reservations.expire_due_reservations(redis_client, sale_id)
    # Until Stripe confirms its intent cancelled, a payment may still have gone through.
    pending = shop.same_everywhere(late["id"], "usr_late", TicketStatus.EXPIRED)
    assert pending["payment_pending"] is True
    sweep_intent_cancellations(payment_context(clients), sale_id)
    assert "payment_pending" not in shop.same_everywhere(late["id"], "usr_late", TicketStatus.EXPIRED)

    # abandoned: away (no stream, no poll) for longer than the sale's presence timeout.
    now = datetime.now(UTC)
    away_sale = str(sales.create_sale(
        clients.db, redis_client, product_id=make_product(clients, 1), stock=1, price_cents=1999,
        starts_at=now - timedelta(seconds=1), ends_at=now + timedelta(hours=1),
        presence_timeout_seconds=2, lobby_opens_at=None)["_id"])
    away = shop.join(away_sale, "usr_away")
    time.sleep(2.2)
    drain(clients, away_sale)
    shop.same_everywhere(away["id"], "usr_away", TicketStatus.ABANDONED)

    # The two internal steps last milliseconds in a real sale: written by hand here, each is
    # shown as its public neighbour (reserving as queued at position 1, settling as reserved).
    sale_id = open_sale(clients, stock=2)
    stepping = [shop.join(sale_id, "usr_reserving"), shop.join(sale_id, "usr_settling")]
    drain(clients, sale_id)
    for ticket, status in zip(stepping, (TicketStatus.RESERVING, TicketStatus.SETTLING), strict=True):
        redis_client.hset(sale_keys.ticket_key(sale_id, ticket["id"]), "status", status.value)
        shop.same_everywhere(ticket["id"], f"usr_{status.value}", status,
                             shop.join(sale_id, f"usr_{status.value}", expected=200))

    # A status added since this test was written (and not reached by a flow above yet) is
    # written by hand on a lobby ticket: still compared, join aside, so none goes unchecked.
    for status in TicketStatus:
        if status.value not in shop.statuses:
            ticket = shop.join(lobby_sale, f"usr_{status.value}")
            redis_client.hset(sale_keys.ticket_key(lobby_sale, ticket["id"]), "status", status.value)
            shop.same_everywhere(ticket["id"], f"usr_{status.value}", status)
    assert shop.statuses == {status.value for status in TicketStatus}
