"""The surge: thousands of shoppers arriving over a sale's lobby window (--join-early, spread
over --arrival-window) or within seconds of its opening, driven by gevent greenlets over one
pool of keep-alive connections (10,000 locust users would cost more CPU than the system under
test on a small machine).

Each shopper does what a locust shopper does: join at its arrival time, follow its ticket over
its event stream (--updates sse, the default; back to polling if the stream fails) or poll it
honouring `poll_after_ms` (--updates poll), and with --pay pay a reservation with a card token
from Stripe's `/v1/tokens`. With --leavers a fraction of them close their stream or stop
polling once queued and never come back. Writes admissions.csv, outcomes.json, leavers.json
(the leavers' ticket ids) and driver.json (request and failure counts) into --out. Run by
`flashsale loadtest --scenario surge`.
"""

from __future__ import annotations

if __name__ == "__main__":
    from gevent import monkey

    monkey.patch_all()

import argparse
import csv
import json
import random
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import gevent
from gevent.pool import Pool

from loadtests.gevent_http import Answer, JsonClient
from loadtests.ticket_stream import (
    FINAL,
    UPDATES,
    StreamFailed,
    is_leaver,
    leave_after_first_event,
    wait_over_stream,
)

JOURNEY_TIMEOUT_S = 180.0


class Surge:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        # A shopper in a surge waits as long as it takes; how long it took is the measurement.
        self.api = JsonClient(args.host, args.connections, timeout=300.0)
        self.stripe: JsonClient | None = None
        self.publishable_key = ""
        self.admissions: list[tuple[float, float, int]] = []
        self.outcomes: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self.requests = 0
        self.leavers: list[str] = []
        self.opens = 0.0
        # Where each unfinished journey is (its step and ticket): a journey still here when
        # the run ends is reported by step, so a lost event or a hung call shows where it was.
        self.underway: dict[int, tuple[str, str]] = {}

    def call(self, what: str, client: JsonClient, method: str, path: str, expected: tuple[int, ...],
             **kwargs: Any) -> Answer | None:
        self.requests += 1
        try:
            answer = client.request(method, path, **kwargs)
        except Exception as exc:
            self.failures[f"{what}: {type(exc).__name__}"] += 1
            return None
        if answer.status not in expected:
            self.failures[f"{what}: {answer.status} {answer.error_code()}"] += 1
        return answer

    def shopper(self, index: int, account: dict[str, str], arrive_at: float,
                leaves: bool = False) -> None:
        gevent.sleep(max(0.0, arrive_at - time.time()))
        self.underway[index] = ("admission", "")
        self.outcomes[self.journey(index, account, leaves)] += 1
        del self.underway[index]

    def wait_for(self, ticket: dict[str, Any], want: set[str], token: str,
                 started: float) -> dict[str, Any] | None:
        """The ticket once its status is in `want`: over its stream, else by polling."""
        if self.args.updates == "sse":
            self.requests += 1
            try:
                return wait_over_stream(self.args.host, ticket, want, access_token=token,
                                        deadline=started + JOURNEY_TIMEOUT_S)
            except (StreamFailed, OSError, ValueError) as exc:
                self.failures[f"ticket events: {str(exc)[:80]}"] += 1  # then poll, like the page
        while ticket["status"] not in want:
            if time.monotonic() - started > JOURNEY_TIMEOUT_S:
                self.failures["ticket not decided in time"] += 1
                return None
            gevent.sleep((ticket.get("poll_after_ms") or 1000) / 1000)
            polled = self.call("ticket", self.api, "GET", f"/api/tickets/{ticket['id']}", (200,),
                               token=token)
            if polled is None or polled.status != 200:
                return None
            ticket = polled.body
        return ticket

    def journey(self, index: int, account: dict[str, str], leaves: bool = False) -> str:
        token, sale_id = account["access_token"], self.args.sale_id
        for _attempt in range(20):
            self.requests += 1
            try:
                answer = self.api.request("POST", f"/api/sales/{sale_id}/tickets", {"quantity": 1}, token)
            except Exception as exc:
                self.failures[f"admission: {type(exc).__name__}"] += 1
                return "error"
            self.admissions.append((answer.started_at, answer.ms, answer.status))
            code = answer.error_code()
            if answer.status == 409 and code == "sale_not_open":
                gevent.sleep(0.2)
                continue
            if answer.status == 410 and code == "sold_out":
                return "sold_out_at_door"
            if answer.status not in (200, 202):
                self.failures[f"admission: {answer.status} {code}"] += 1
                return "error"
            break
        else:
            return "error"
        ticket = answer.body
        # A lobby ticket waits for the opening first: its journey's time counts from then.
        started = time.monotonic() + max(0.0, self.opens - time.time())
        if leaves and ticket["status"] in ("lobby", "queued"):
            if self.args.updates == "sse":
                try:
                    leave_after_first_event(self.args.host, ticket, token)
                except (StreamFailed, OSError) as exc:
                    self.failures[f"ticket events: {str(exc)[:80]}"] += 1
            self.leavers.append(ticket["id"])
            return "left"
        while time.monotonic() - started < JOURNEY_TIMEOUT_S:
            status = ticket["status"]
            if status == "reserved" and self.args.pay:
                self.underway[index] = ("paying", ticket["id"])
                if not self.pay(ticket, token):
                    return "error"
                want = {"paid"} | FINAL
            elif status == "reserved" or status in FINAL:
                return str(status)
            else:
                want = {"reserved"} | FINAL
            self.underway[index] = (f"waiting for {' or '.join(sorted(want - FINAL))}", ticket["id"])
            followed = self.wait_for(ticket, want, token, started)
            if followed is None:
                return "error"
            ticket = followed
            if ticket["status"] in FINAL:
                return str(ticket["status"])
        self.failures["ticket not decided in time"] += 1
        return "error"

    def pay(self, ticket: dict[str, Any], token: str) -> bool:
        assert self.stripe is not None
        card = self.call("stripe: create token", self.stripe, "POST", "/v1/tokens", (200,), form={
            "key": self.publishable_key, "card[number]": "4242424242424242",
            "card[exp_month]": "12", "card[exp_year]": "2034", "card[cvc]": "123"})
        if card is None or card.status != 200:
            return False
        paid = self.call("pay", self.api, "POST", f"/api/tickets/{ticket['id']}/pay", (200,),
                         body={"card_token": card.body["id"]}, token=token)
        return paid is not None and paid.status == 200

    def run(self) -> None:
        args = self.args
        accounts = [json.loads(line) for line in Path(args.accounts).read_text().splitlines() if line]
        sale = self.api.request("GET", f"/api/sales/{args.sale_id}").body
        config = self.api.request("GET", "/api/config").body
        self.publishable_key = config["stripe_publishable_key"]
        if args.pay:
            self.stripe = JsonClient(args.stripe_api_base, min(args.connections, 200))
        opens = self.opens = datetime.fromisoformat(sale["starts_at"].replace("Z", "+00:00")).timestamp()
        pool = Pool(len(accounts))
        # --join-early: shoppers arrive that long before the opening (in the sale's lobby).
        first = opens - args.join_early
        for index, account in enumerate(accounts):
            pool.spawn(self.shopper, index, account, first + random.uniform(0, args.arrival_window),
                       is_leaver(index, args.leavers))
        pool.join(timeout=max(opens - time.time(), 0) + args.run_time)
        pool.kill(block=True, timeout=10)

    def write(self, out: Path) -> None:
        with (out / "admissions.csv").open("w", newline="") as target:
            writer = csv.writer(target)
            writer.writerow(["started_at", "response_time_ms", "status"])
            writer.writerows((f"{t:.4f}", f"{ms:.2f}", s) for t, ms, s in self.admissions)
        (out / "outcomes.json").write_text(json.dumps(dict(self.outcomes), indent=2))
        (out / "leavers.json").write_text(json.dumps(self.leavers))
        (out / "driver.json").write_text(json.dumps({
            "requests": self.requests, "failed": sum(self.failures.values()),
            "failures": dict(self.failures), "outcomes": dict(self.outcomes),
            "unfinished": dict(Counter(step for step, _ in self.underway.values())),
            "unfinished_tickets": sorted(f"{step}: {ticket}" for step, ticket in self.underway.values()
                                         if ticket)}, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--sale-id", required=True)
    parser.add_argument("--accounts", required=True, help="JSON lines with access_token")
    parser.add_argument("--arrival-window", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--run-time", type=float, default=300.0, help="seconds after the opening")
    parser.add_argument("--pay", action="store_true")
    parser.add_argument("--stripe-api-base", default="")
    parser.add_argument("--updates", choices=UPDATES, default="sse")
    parser.add_argument("--leavers", type=float, default=0.0, help="fraction who leave once queued")
    parser.add_argument("--join-early", type=float, default=0.0,
                        help="seconds before the opening the arrivals start")
    args = parser.parse_args()
    surge = Surge(args)
    surge.run()
    surge.write(args.out)
    print(json.dumps({"requests": surge.requests, "failed": sum(surge.failures.values()),
                      "outcomes": dict(surge.outcomes),
                      "unfinished": dict(Counter(step for step, _ in surge.underway.values()))}))


if __name__ == "__main__":
    main()
