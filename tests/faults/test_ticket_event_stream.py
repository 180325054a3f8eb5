"""`GET /api/tickets/<id>/events` through a real gunicorn API with gevent workers: auth by
header or the ticket's stream_token (401/404), the ticket at once and its changes, resume with
Last-Event-ID, and a client that hangs up frees its stream at once (not at the next ping)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from common.billing.payments import sweep_intent_cancellations
from common.development.ports import free_port
from common.flash_sale import reservations, waiting_room
from common.flash_sale.ticket_events import stream_token, stream_token_key
from tests.faults.flows import access_token, bearer, pay_at_stripe, reserve
from tests.faults.services import wait_until
from tests.faults.sse import Event
from tests.faults.sse import events as _events
from tests.waiting_room_helpers import drain, open_sale, payment_context

pytestmark = [pytest.mark.slow]


def _open_streams(base: str) -> float:
    text = requests.get(base + "/metrics", timeout=5).text
    found = re.search(r"^flashsale_ticket_streams_open (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def _ends(base: str, reason: str) -> float:
    text = requests.get(base + "/metrics", timeout=5).text
    pattern = r'^flashsale_ticket_stream_ends_total\{reason="' + reason + r'"\} (\S+)$'
    found = re.search(pattern, text, re.M)
    return float(found.group(1)) if found else 0.0


@pytest.fixture
def api(fault_settings, spawn) -> str:
    port = free_port()
    spawn("api", fault_settings, label="api", PORT=str(port), WEB_CONCURRENCY="1")
    return f"http://127.0.0.1:{port}"


def test_auth_by_header_or_stream_token_and_401_404(api, fault_settings, fault_clients):
    sale_id = open_sale(fault_clients, stock=5)
    ticket = waiting_room.admit(fault_clients.sales_redis, sale_id, "usr_owner", 1).ticket
    url = f"{api}/api/tickets/{ticket['id']}/events"
    owner = bearer(access_token(fault_settings, "usr_owner"))

    with requests.get(url, headers=owner, stream=True, timeout=10) as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        first = next(e for e in _events(response) if e is not None)
    assert first.ticket["id"] == ticket["id"] and first.ticket["status"] == "queued"
    token = first.ticket["stream_token"]
    # Every ticket answer carries a fresh token, valid for at most the configured hour.
    polled = requests.get(f"{api}/api/tickets/{ticket['id']}", headers=owner, timeout=10).json()
    key = stream_token_key(fault_settings.jwt_secret())
    for answer in (first.ticket, polled):
        expires_at = int(answer["stream_token"].partition(".")[0])
        assert time.time() + 3590 < expires_at <= time.time() + 3600
        assert answer["stream_token"] == stream_token(key, ticket["id"], expires_at)

    with requests.get(url, params={"stream_token": token}, stream=True, timeout=10) as response:
        assert response.status_code == 200
        assert next(e for e in _events(response) if e is not None).ticket["id"] == ticket["id"]

    expired = stream_token(key, ticket["id"], int(time.time()) - 1)
    first_format = token.partition(".")[2]  # the first tokens had no expiry: they open nothing
    for params, headers, code in (
            ({}, {}, "authorization_required"),
            ({"stream_token": token[:-2] + "xx"}, {}, "unauthorized"),
            ({"stream_token": expired}, {}, "unauthorized"),
            ({"stream_token": first_format}, {}, "unauthorized"),
            ({}, {"Authorization": "Bearer not-a-token"}, "invalid_token")):
        refused = requests.get(url, params=params, headers=headers, timeout=10)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == code
    other = waiting_room.admit(fault_clients.sales_redis, sale_id, "usr_other", 1).ticket
    # A token opens its own ticket only; someone else's ticket is 404 with a bearer.
    wrong = requests.get(f"{api}/api/tickets/{other['id']}/events", params={"stream_token": token},
                         timeout=10)
    assert wrong.status_code == 401
    foreign = requests.get(f"{api}/api/tickets/{other['id']}/events", headers=owner, timeout=10)
    assert foreign.status_code == 404 and foreign.json()["error"]["code"] == "not_found"


def test_changes_arrive_and_the_stream_ends_after_a_final_status(api, fault_settings, fault_clients):
    sale_id = open_sale(fault_clients, stock=1)
    ahead = waiting_room.admit(fault_clients.sales_redis, sale_id, "usr_ahead", 1).ticket
    mine = waiting_room.admit(fault_clients.sales_redis, sale_id, "usr_me", 1).ticket
    received: list[Event] = []
    url = f"{api}/api/tickets/{mine['id']}/events"
    with requests.get(url, headers=bearer(access_token(fault_settings, "usr_me")), stream=True,
                      timeout=30) as response:
        events = _events(response)
        received.append(next(e for e in events if e is not None))
        assert received[0].ticket["position"] == 2
        decided_at = time.monotonic()
        decider = threading.Thread(target=drain, args=(fault_clients, sale_id), daemon=True)
        decider.start()
        received.extend(e for e in events if e is not None)  # ends when the server ends it
    decider.join(30)
    assert received[-1].ticket["status"] == "sold_out"
    assert time.monotonic() - decided_at < 10
    ids = [e.id for e in received]
    assert ids == sorted(set(ids))
    assert waiting_room.read_ticket(fault_clients.sales_redis, ahead["id"])["status"] == "reserved"


def test_resume_with_last_event_id_sends_the_ticket_only_if_newer(api, fault_settings, fault_clients):
    sale_id = open_sale(fault_clients, stock=5)
    ticket = waiting_room.admit(fault_clients.sales_redis, sale_id, "usr_me", 1).ticket
    url = f"{api}/api/tickets/{ticket['id']}/events"
    owner = bearer(access_token(fault_settings, "usr_me"))
    with requests.get(url, headers=owner, stream=True, timeout=10) as response:
        first = next(e for e in _events(response) if e is not None)
    # Nothing changed since: no event within a second (the stream stays open, silent).
    with requests.get(url, headers={**owner, "Last-Event-ID": str(first.id)}, stream=True,
                      timeout=1.5) as response:
        assert response.status_code == 200
        with pytest.raises(requests.exceptions.RequestException):  # read timed out
            next(e for e in _events(response) if e is not None)
    with requests.get(url, headers={**owner, "Last-Event-ID": str(first.id - 1)}, stream=True,
                      timeout=10) as response:
        assert next(e for e in _events(response) if e is not None).id == first.id


def test_a_client_that_hangs_up_frees_its_stream_at_once(api, fault_settings, fault_clients):
    sale_id = open_sale(fault_clients, stock=5)
    key = stream_token_key(fault_settings.jwt_secret())
    tickets = [waiting_room.admit(fault_clients.sales_redis, sale_id, f"usr_{i}", 1).ticket
               for i in range(20)]
    responses = []
    for ticket in tickets:
        response = requests.get(f"{api}/api/tickets/{ticket['id']}/events", stream=True, timeout=10,
                                params={"stream_token": stream_token(key, ticket["id"],
                                                                     int(time.time()) + 60)})
        events = _events(response)  # kept: a parser dropped would close its connection
        assert next(events) is not None
        responses.append((response, events))
    assert _open_streams(api) == 20
    gone_before = _ends(api, "client_gone")
    for response, _events_left in responses:
        response.close()  # hang up without a word, as a closed tab does
    deadline = time.monotonic() + 3  # far less than the 15 s between pings
    while time.monotonic() < deadline and _open_streams(api) > 0:
        time.sleep(0.1)
    assert _open_streams(api) == 0
    assert _ends(api, "client_gone") - gone_before == 20



def test_streams_are_capped_per_ticket_and_per_address_across_the_workers(fault_settings,
                                                                          fault_clients, spawn):
    port = free_port()
    spawn("api", fault_settings, label="api", PORT=str(port), WEB_CONCURRENCY="2",
          STREAM_MAX_PER_TICKET="3", STREAM_MAX_PER_ADDRESS="5")
    api = f"http://127.0.0.1:{port}"
    sale_id = open_sale(fault_clients, stock=5)
    tickets = [waiting_room.admit(fault_clients.sales_redis, sale_id, f"usr_{i}", 1).ticket
               for i in range(3)]
    key = stream_token_key(fault_settings.jwt_secret())

    def url(ticket: dict) -> str:
        token = stream_token(key, ticket["id"], int(time.time()) + 600)
        return f"{api}/api/tickets/{ticket['id']}/events?stream_token={token}"

    def open_stream(ticket: dict) -> tuple[requests.Response, Iterator[Event | None]]:
        response = requests.get(url(ticket), stream=True, timeout=10)
        assert response.status_code == 200
        events = _events(response)  # kept: a parser dropped would close its connection
        assert next(events) is not None
        return response, events

    def refused(ticket: dict, per: str, limit: int) -> None:
        answer = requests.get(url(ticket), timeout=10)
        assert answer.status_code == 429
        assert answer.json()["error"] == {
            "code": "too_many_streams", "message": answer.json()["error"]["message"],
            "details": {"per": per, "limit": limit}}
        assert 1 <= int(answer.headers["Retry-After"]) <= 60

    # Three streams of one ticket (one account, two workers between them), not a fourth.
    opened = [open_stream(tickets[0]) for _ in range(3)]
    refused(tickets[0], "ticket", 3)
    # Five from one address, whatever the tickets.
    opened += [open_stream(tickets[1]) for _ in range(2)]
    refused(tickets[2], "address", 5)
    assert fault_clients.redis.zcard("flashsale:streams:address:127.0.0.1") == 5
    # A stream that ends gives its place back at once.
    opened.pop(0)[0].close()
    deadline = time.monotonic() + 5
    while fault_clients.redis.zcard("flashsale:streams:address:127.0.0.1") > 4:
        assert time.monotonic() < deadline, "the closed stream kept its slot"
        time.sleep(0.05)
    opened.append(open_stream(tickets[2]))
    for response, _events_left in opened:
        response.close()


class _Follower(threading.Thread):
    """A shopper's stream read to its end in the background."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.url, self.headers = url, headers
        self.tickets: list[dict] = []
        self.opened = threading.Event()

    def run(self) -> None:
        with requests.get(self.url, headers=self.headers, stream=True, timeout=60) as response:
            for event in _events(response):
                if event is not None:
                    self.tickets.append(event.ticket)
                    self.opened.set()

    def statuses(self) -> list[tuple[str, bool, bool]]:
        return [(t["status"], t.get("payment_pending", False), t.get("refunded", False))
                for t in self.tickets]


@pytest.mark.parametrize("late_payment", ["honoured", "refunded", "none"])
def test_an_expired_ticket_streams_until_its_late_payment_is_decided(api, fault_settings,
                                                                     fault_clients, late_payment):
    """A payment taken just as the reservation expired: the stream stays open past `expired`
    and ends with the decision, `paid` (honoured) or `expired` with `refunded: true` (the unit
    went to someone else meanwhile); with no payment it ends once the intent is cancelled."""
    clients = fault_clients
    sale_id = open_sale(clients, stock=1, ttl=1)
    ticket_id, intent_id = reserve(clients, sale_id, "usr_late")
    follower = _Follower(f"{api}/api/tickets/{ticket_id}/events",
                         bearer(access_token(fault_settings, "usr_late")))
    follower.start()
    assert follower.opened.wait(10)
    if late_payment != "none":
        assert pay_at_stripe(clients, intent_id) == "succeeded"  # the webhook is not applied yet
    time.sleep(1.1)
    assert reservations.expire_due_reservations(clients.redis, sale_id) == [(ticket_id, intent_id)]
    if late_payment == "refunded":
        reserve(clients, sale_id, "usr_next")  # the freed unit is someone else's now
    wait_until(lambda: ("expired", True, False) in follower.statuses(), timeout=10,
               message="expired with its payment pending")
    assert follower.is_alive()  # `expired` did not end the stream
    sweep_intent_cancellations(payment_context(clients), sale_id)  # beat's sweep: Stripe asked
    follower.join(15)
    assert not follower.is_alive(), "the stream did not end after the decision"
    last = follower.tickets[-1]
    expected = {"honoured": ("paid", False, False), "refunded": ("expired", False, True),
                "none": ("expired", False, False)}[late_payment]
    assert follower.statuses()[-1] == expected, follower.statuses()
    if late_payment == "honoured":
        assert last["order_id"]
