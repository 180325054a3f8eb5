"""Shoppers of one flash sale, for locust.

Each shopper signs in (an account handed over by the runner, else registers one), waits for the
sale to open, joins its waiting room, follows its ticket over the ticket's event stream (or,
with --updates poll or when the stream fails, polls it honouring `poll_after_ms`), and in pay
mode pays its reservation the way the browser does: a card token from Stripe's `/v1/tokens`
with the publishable key (what Stripe.js `createToken` does), then `POST /api/tickets/<id>/pay`,
then polls until the ticket is `paid`.

Expected answers are successes, so locust's failures are real errors only: 410 `sold_out` at
the door, a ticket decided `sold_out`, 409 `sale_not_open` before the opening.

Options (each also an environment variable, for `flashsale loadtest` and for the web UI):
  --sale-id / LOADTEST_SALE_ID       the sale (default: the newest open sale)
  --pay / LOADTEST_PAY               pay reserved tickets
  --loop / LOADTEST_LOOP             soak: start a new journey after each one (paying, or
                                     cancelling the reservation without --pay)
  --accounts-file / LOADTEST_ACCOUNTS   JSON lines {email, password, access_token, refresh_token}
  --stripe-api-base / LOADTEST_STRIPE_API_BASE   where card tokens come from (default: derived
                                     from GET /api/config)
  --arrival-window / LOADTEST_ARRIVAL_WINDOW     shoppers waiting for the opening press Buy
                                     within this many seconds of it (default 1)
  --card-entry / LOADTEST_CARD_ENTRY            seconds a shopper takes to type a card, "MIN,MAX"
                                     (default 3,8: a person, not a script; 0,0 pays at once)
  --quit-when-done / LOADTEST_QUIT_WHEN_DONE     stop the run once every shopper is done
  --admissions-log / LOADTEST_ADMISSIONS_LOG     CSV of every admission request (for the plot)
  --outcomes-file / LOADTEST_OUTCOMES            JSON of journey outcomes, written at the end
  --updates / LOADTEST_UPDATES       sse (default): follow the ticket's event stream; poll
  --leavers / LOADTEST_LEAVERS       fraction of shoppers who close their stream / stop polling
                                     once queued and never come back (ids to --leavers-file)
  --join-early / LOADTEST_JOIN_EARLY            arrivals start this many seconds before the
                                     opening (in the sale's lobby)

    locust -f loadtests/locustfile.py --host http://127.0.0.1:8000       # web UI
"""

from __future__ import annotations

import csv
import itertools
import json
import random
import secrets
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import gevent
from locust import FastHttpUser, between, events, task
from locust.exception import StopUser

from loadtests.ticket_stream import (
    FINAL,
    StreamFailed,
    is_leaver,
    leave_after_first_event,
    wait_over_stream,
)

ADMISSION = "admission"
JOURNEY_TIMEOUT_S = 180.0
PASSWORD = "load-test-password-1"


class Run:
    """State shared by the shoppers of this locust process."""

    accounts: list[dict[str, str]] = []
    next_account = itertools.count()
    outcomes: Counter[str] = Counter()
    admissions: list[tuple[float, float, int]] = []
    leavers: list[str] = []
    shoppers_done = 0
    lock = threading.Lock()
    sale: dict[str, Any] | None = None
    stripe_api_base = ""
    publishable_key = ""


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--sale-id", env_var="LOADTEST_SALE_ID", default="",
                        help="Sale to join (default: the newest open sale)")
    parser.add_argument("--pay", env_var="LOADTEST_PAY", action="store_true", default=False,
                        help="Pay reserved tickets with a test card")
    parser.add_argument("--loop", env_var="LOADTEST_LOOP", action="store_true", default=False,
                        help="Soak: start a new journey after each one")
    parser.add_argument("--accounts-file", env_var="LOADTEST_ACCOUNTS", default="",
                        include_in_web_ui=False, help="Pre-registered accounts (JSON lines)")
    parser.add_argument("--stripe-api-base", env_var="LOADTEST_STRIPE_API_BASE", default="",
                        help="Stripe API base for card tokens (default: from /api/config)")
    parser.add_argument("--arrival-window", env_var="LOADTEST_ARRIVAL_WINDOW", type=float,
                        default=1.0, help="Seconds within which waiting shoppers press Buy")
    parser.add_argument("--card-entry", env_var="LOADTEST_CARD_ENTRY", default="3,8",
                        help="Seconds to type a card before paying, MIN,MAX")
    parser.add_argument("--quit-when-done", env_var="LOADTEST_QUIT_WHEN_DONE", action="store_true",
                        default=False, include_in_web_ui=False)
    parser.add_argument("--admissions-log", env_var="LOADTEST_ADMISSIONS_LOG", default="",
                        include_in_web_ui=False)
    parser.add_argument("--outcomes-file", env_var="LOADTEST_OUTCOMES", default="",
                        include_in_web_ui=False)
    parser.add_argument("--updates", env_var="LOADTEST_UPDATES", choices=["sse", "poll"],
                        default="sse", help="Follow the ticket over its event stream, or poll")
    parser.add_argument("--leavers", env_var="LOADTEST_LEAVERS", type=float, default=0.0,
                        help="Fraction of shoppers who leave once queued, for good")
    parser.add_argument("--leavers-file", env_var="LOADTEST_LEAVERS_FILE", default="",
                        include_in_web_ui=False)
    parser.add_argument("--join-early", env_var="LOADTEST_JOIN_EARLY", type=float, default=0.0,
                        help="Arrivals start this many seconds before the opening")


@events.init.add_listener
def _load_accounts(environment: Any, **_kwargs: Any) -> None:
    options = environment.parsed_options
    if options and options.accounts_file:
        lines = Path(options.accounts_file).read_text().splitlines()
        Run.accounts = [json.loads(line) for line in lines if line.strip()]


@events.request.add_listener
def _record_admission(request_type: str, name: str, response_time: float, response: Any = None,
                      exception: Any = None, start_time: float | None = None, **_kwargs: Any) -> None:
    if name != ADMISSION:
        return
    status = getattr(response, "status_code", 0) or 0
    Run.admissions.append((start_time or time.time(), response_time, int(status)))


@events.quitting.add_listener
def _write_results(environment: Any, **_kwargs: Any) -> None:
    options = environment.parsed_options
    if options is None:
        return
    if options.admissions_log:
        with Path(options.admissions_log).open("w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(["started_at", "response_time_ms", "status"])
            writer.writerows((f"{t:.4f}", f"{ms:.2f}", s) for t, ms, s in Run.admissions)
    if options.outcomes_file:
        Path(options.outcomes_file).write_text(json.dumps(dict(Run.outcomes), indent=2))
    if options.leavers_file:
        Path(options.leavers_file).write_text(json.dumps(Run.leavers))


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


class Shopper(FastHttpUser):
    """One shopper: sign in, join at the opening, wait honouring poll_after_ms, pay."""

    wait_time = between(1, 3)  # between journeys, in --loop mode only
    # Generous: a shopper keeps waiting for a slow answer (the Stripe emulator under load can
    # take tens of seconds); the time is in the statistics either way.
    network_timeout = 120.0
    connection_timeout = 30.0

    def on_start(self) -> None:
        self.options = self.environment.parsed_options
        self.access_token = ""
        self.refresh_token = ""
        index = next(Run.next_account)
        self.leaves = is_leaver(index, self.options.leavers)
        if index < len(Run.accounts):
            account = Run.accounts[index]
            self.access_token, self.refresh_token = account["access_token"], account["refresh_token"]
        else:
            self._register()
        self._discover()

    # -- accounts -----------------------------------------------------------------------

    def _register(self) -> None:
        email = f"shopper-{secrets.token_hex(8)}@loadtest.example.com"
        with self.client.post("/api/auth/register", name="register", catch_response=True, json={
                "email": email, "password": PASSWORD, "name": "Load Shopper"}) as response:
            if response.status_code != 201:
                response.failure(f"register: {response.status_code} {response.text[:200]}")
                raise StopUser()
            body = response.json()
        self.access_token, self.refresh_token = body["access_token"], body["refresh_token"]

    def _refresh(self) -> bool:
        with self.client.post("/api/auth/refresh", name="refresh", catch_response=True,
                              headers={"Authorization": f"Bearer {self.refresh_token}"}) as response:
            if response.status_code != 200:
                response.failure(f"refresh: {response.status_code} {response.text[:200]}")
                return False
            body = response.json()
        self.access_token, self.refresh_token = body["access_token"], body["refresh_token"]
        return True

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}

    # -- the sale ---------------------------------------------------------------------------

    def _discover(self) -> None:
        """The sale and where card tokens come from, fetched once per process (one page load
        stands for all: hundreds of identical GETs just before the opening would only add
        load the real crowd spreads over the minutes before it)."""
        with Run.lock:  # a gevent lock under locust: the other shoppers wait for this one
            if Run.sale is not None:
                return
            sale_id = self.options.sale_id
            if sale_id:
                sale = self.client.get(f"/api/sales/{sale_id}", name="sale").json()
            else:
                items = self.client.get("/api/sales", name="sales").json()["items"]
                open_sales = [s for s in items if s["status"] in ("open", "scheduled")]
                if not open_sales:
                    raise StopUser()
                sale = open_sales[0]
            config = self.client.get("/api/config", name="config").json()
            base = self.options.stripe_api_base or config["stripe_js_url"].split("/js.stripe.com")[0]
            if base.rstrip("/") == "https:":
                base = "https://api.stripe.com"
            Run.stripe_api_base = base.rstrip("/")
            Run.publishable_key = config["stripe_publishable_key"]
            Run.sale = sale

    def _wait_for_opening(self) -> None:
        assert Run.sale is not None
        opens_in = _epoch(Run.sale["starts_at"]) - time.time() - self.options.join_early
        if opens_in > 0:
            # Shoppers watching the countdown press Buy within a moment of the opening.
            gevent.sleep(opens_in + random.uniform(0, self.options.arrival_window))

    # -- one journey ----------------------------------------------------------------------

    @task
    def journey(self) -> None:
        self._wait_for_opening()
        try:
            outcome = self._journey()
        except StopUser:
            raise
        except Exception as exc:  # counted as a failure, and this shopper's journey ends
            self.environment.events.request.fire(
                request_type="JOURNEY", name="journey", response_time=0, response_length=0,
                exception=exc, context={})
            outcome = "error"
        Run.outcomes[outcome] += 1
        # A soak goes on after a failed journey (it is counted); only a shopper who cannot buy
        # any more stops.
        if self.options.loop and outcome not in ("limit_reached", "sold_out_at_door"):
            return
        self._done()

    def _done(self) -> None:
        Run.shoppers_done += 1
        runner = self.environment.runner
        if (self.options.quit_when_done and runner is not None
                and Run.shoppers_done >= self.environment.parsed_options.num_users):
            gevent.spawn_later(0.2, runner.quit)
        raise StopUser()

    def _journey(self) -> str:
        assert Run.sale is not None
        joined = self._join(Run.sale["id"])
        if isinstance(joined, str):
            return joined
        started = time.monotonic()
        if self.leaves and joined["status"] in ("lobby", "queued"):
            if self.options.updates == "sse":
                leave_after_first_event(self.host, joined, self.access_token)
            Run.leavers.append(joined["id"])
            return "left"
        ticket: dict[str, Any] | None = joined
        while ticket is not None:
            status = ticket["status"]
            if status in FINAL:
                return str(status)
            if status != "reserved":
                ticket = self._wait_until(ticket, {"reserved"} | FINAL, started)
                continue
            if self.options.pay:
                if not self._pay(ticket):
                    return "error"
                paid = self._wait_until(ticket, {"paid"} | FINAL, started)
                return str(paid["status"]) if paid else "error"
            if self.options.loop:
                self._cancel(ticket["id"])
                return "cancelled"
            return "reserved"
        return "error"

    def _join(self, sale_id: str) -> dict[str, Any] | str:
        for _attempt in range(3):
            with self.client.post(f"/api/sales/{sale_id}/tickets", name=ADMISSION, json={"quantity": 1},
                                  headers=self._headers(), catch_response=True) as response:
                code = response.status_code
                error = _error_code(response)
                if code in (200, 202):
                    return dict(response.json())
                if code == 410 and error == "sold_out":
                    response.success()
                    return "sold_out_at_door"
                if code == 409 and error == "purchase_limit_reached":
                    response.success()
                    return "limit_reached"
                if code == 409 and error == "sale_not_open":
                    response.success()
                    gevent.sleep(0.5)
                    continue
                if code == 401 and error == "token_expired":
                    response.success()
                    if self._refresh():
                        continue
                response.failure(f"admission: {code} {error or response.text[:200]}")
                return "error"
        return "error"

    def _get_ticket(self, ticket_id: str) -> dict[str, Any] | None:
        for _attempt in range(2):
            with self.client.get(f"/api/tickets/{ticket_id}", name="ticket", headers=self._headers(),
                                 catch_response=True) as response:
                if response.status_code == 200:
                    return dict(response.json())
                if response.status_code == 401 and _error_code(response) == "token_expired":
                    response.success()
                    if self._refresh():
                        continue
                response.failure(f"ticket: {response.status_code} {response.text[:200]}")
                return None
        return None

    def _wait_until(self, ticket: dict[str, Any], statuses: set[str],
                    started: float) -> dict[str, Any] | None:
        """Follow the ticket's event stream (one 'ticket events' request in the statistics,
        timed to the wanted status), else poll it, each time after the pause the server asks."""
        if self.options.updates == "sse":
            began = time.perf_counter()
            try:
                followed = wait_over_stream(self.host, ticket, statuses, access_token=self.access_token,
                                            deadline=started + JOURNEY_TIMEOUT_S)
                self.environment.events.request.fire(
                    request_type="SSE", name="ticket events", context={}, exception=None,
                    response_time=(time.perf_counter() - began) * 1000, response_length=0)
                return followed
            except (StreamFailed, OSError, ValueError) as exc:  # then poll, like the page
                self.environment.events.request.fire(
                    request_type="SSE", name="ticket events", context={}, exception=exc,
                    response_time=(time.perf_counter() - began) * 1000, response_length=0)
        current: dict[str, Any] | None = ticket
        while current is not None and current["status"] not in statuses:
            if time.monotonic() - started > JOURNEY_TIMEOUT_S:
                self._journey_failed(f"ticket still {current['status']}")
                return None
            gevent.sleep((current.get("poll_after_ms") or 1000) / 1000)
            current = self._get_ticket(ticket["id"])
        return current

    def _pay(self, ticket: dict[str, Any]) -> bool:
        low, high = (float(x) for x in self.options.card_entry.split(","))
        gevent.sleep(random.uniform(low, high))  # typing the card number
        # Stripe.js createToken: the card goes to Stripe with the publishable key, never to us.
        with self.client.post(f"{Run.stripe_api_base}/v1/tokens", name="stripe: create token",
                              catch_response=True, data={
                                  "key": Run.publishable_key, "card[number]": "4242424242424242",
                                  "card[exp_month]": "12", "card[exp_year]": "2034",
                                  "card[cvc]": "123"}) as response:
            if response.status_code != 200:
                response.failure(f"card token: {response.status_code} {response.text[:200]}")
                return False
            card_token = response.json()["id"]
        with self.client.post(f"/api/tickets/{ticket['id']}/pay", name="pay", headers=self._headers(),
                              json={"card_token": card_token}, catch_response=True) as response:
            status = response.json().get("status") if response.status_code == 200 else None
            if status != "succeeded":
                response.failure(f"pay: {response.status_code} {(response.text or '')[:200]}")
                return False
        return True

    def _cancel(self, ticket_id: str) -> None:
        with self.client.post(f"/api/tickets/{ticket_id}/cancel", name="cancel",
                              headers=self._headers(), catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"cancel: {response.status_code} {response.text[:200]}")

    def _journey_failed(self, reason: str) -> None:
        self.environment.events.request.fire(
            request_type="JOURNEY", name="ticket decided", response_time=JOURNEY_TIMEOUT_S * 1000,
            response_length=0, exception=TimeoutError(reason), context={})


def _error_code(response: Any) -> str:
    try:
        body = response.json()
    except Exception:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    return str(error.get("code", "")) if isinstance(error, dict) else ""
