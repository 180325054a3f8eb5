"""The scalper scenario (`flashsale loadtest --scenario scalpers`): people and one scalper enter
one sale through the real API, and the summary says who got the units and what each entry
defence stopped.

- H people (`--users`): one account each, their own card, each arriving during the lobby
  window; with `challenge` on each solves the sale's ALTCHA challenge at a phone's pace (the
  solve itself plus a wait up to a phone's time for it, PHONE_SOLVE_SECONDS).
- One scalper: S accounts (`--scalper-accounts`), C cards (`--scalper-cards`), and a solver
  running as fast as one core goes, timed in CPU seconds; an entry not solved before the start
  is one the challenge stopped. When a card is refused (`card_already_used`) the scalper tries
  his next one; a reservation none of them can pay runs out, and its unit goes on down the line.
- The sale: U units (`--stock`), per-user limit 1, a lobby (everyone entered before the start
  gets a drawn place), `verified_email` off (the pool's accounts are registered in bulk), and
  `challenge` / `one_card` as `--defences` says: `off`, `challenge`, `one_card`, `all`, or
  `table` for the four runs one after another and one table.

Run against `flashsale run` (its services.json), like the other scenarios.
"""

from __future__ import annotations

import hashlib
import random
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import altcha
import requests

from loadtests.shop import AccountPool, Operator, pool_path, session

DEFENCES = {"off": (False, False), "challenge": (True, False), "one_card": (False, True),
            "all": (True, True)}
# How long a phone takes for the sale's challenge (the default 50,000: a few hundred ms in a
# browser's workers, longer on an old phone): each person is ready after a wait drawn up to it.
PHONE_SOLVE_SECONDS = 2.0
DECLINED_OR_SPECIAL = {"4000", "4242"}  # prefixes of the emulator's special test cards


@dataclass
class Entrant:
    account: dict[str, str]
    scalper: bool
    cards: list[str]
    ticket_id: str = ""
    refused: str = ""  # the admission's error code, if refused
    paid: bool = False
    card_refusals: int = 0
    tried: set[str] = field(default_factory=set)


@dataclass
class RunResult:
    defences: str
    units: int
    people_units: int = 0
    scalper_units: int = 0
    scalper_entries: int = 0
    stopped_by_challenge: int = 0
    stopped_by_one_card: int = 0
    scalper_challenge_cpu_s: float = 0.0
    people_challenge_cpu_s: float = 0.0
    sold: int = 0
    seconds: float = 0.0


def card_number(rng: random.Random) -> str:
    """A 16-digit number the emulator accepts and charges (none of its special test cards)."""
    while True:
        number = "5" + "".join(rng.choice("0123456789") for _ in range(15))
        if number[:4] not in DECLINED_OR_SPECIAL:
            return number


def solve(challenge: dict[str, Any]) -> str:
    """The number that solves the challenge, as fast as Python's hashlib goes."""
    salt, target = challenge["salt"].encode(), challenge["challenge"]
    for number in range(int(challenge["maxnumber"]) + 1):
        if hashlib.sha256(salt + str(number).encode()).hexdigest() == target:
            return altcha.PayloadV1(challenge["algorithm"], target, number, challenge["salt"],
                                    challenge["signature"]).to_base64()
    raise RuntimeError("challenge without a solution")


class ScalperRun:
    def __init__(self, base: str, stripe_base: str, publishable_key: str, operator: Operator,
                 people: list[dict[str, str]], scalper: list[dict[str, str]], cards: int,
                 units: int, defences: str, lobby_seconds: float, ttl: int,
                 echo: Callable[[str], None]) -> None:
        self.base, self.stripe_base, self.publishable_key = base, stripe_base, publishable_key
        self.operator, self.units, self.defences, self.echo = operator, units, defences, echo
        self.lobby_seconds, self.ttl = lobby_seconds, ttl
        rng = random.Random(secrets.randbits(64))
        scalper_cards = [card_number(rng) for _ in range(cards)]
        self.entrants = ([Entrant(a, False, [card_number(rng)]) for a in people]
                         + [Entrant(a, True, scalper_cards) for a in scalper])
        self.http = session(128)
        self.lock = threading.Lock()
        self.result = RunResult(defences, units, scalper_entries=len(scalper))

    def call(self, entrant: Entrant, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.http.request(method, self.base + path, timeout=60, headers={
            "Authorization": f"Bearer {entrant.account['access_token']}"}, **kwargs)

    def run(self) -> RunResult:
        challenge, one_card = DEFENCES[self.defences]
        started = time.monotonic()
        starts_at = datetime.now(UTC) + timedelta(seconds=self.lobby_seconds)
        self.sale_id = self._create_sale(challenge, one_card, starts_at)
        self.echo(f"scalpers [{self.defences}]: sale {self.sale_id}, {len(self.entrants)} entrants, "
                  f"start in {self.lobby_seconds:.0f} s")
        deadline = time.monotonic() + self.lobby_seconds - 1
        people = [e for e in self.entrants if not e.scalper]
        scalper = [e for e in self.entrants if e.scalper]
        # A thread per person: each waits for their own moment of arrival.
        with ThreadPoolExecutor(len(people) + 1) as pool:
            scalper_done = pool.submit(self._scalper_enters, scalper, challenge, deadline)
            list(pool.map(lambda e: self._person_enters(e, challenge, deadline), people))
            scalper_done.result()
        self._wait_until(starts_at.timestamp() + 1)
        self._pay_until_sold(time.monotonic() + 10 * self.ttl + 60)
        self.result.sold = int(self.operator.stats(self.sale_id)["sold"])
        self.result.seconds = time.monotonic() - started
        return self.result

    def _create_sale(self, challenge: bool, one_card: bool, starts_at: datetime) -> str:
        """A product and its sale, its lobby open from now; `verified_email` off (the pool's
        accounts are registered in bulk and never verify)."""
        product = self.operator.call("POST", "/api/products", json={
            "name": f"Scalped drop {secrets.token_hex(3)}", "description": "Limited run",
            "price_cents": 9998, "currency": "USD", "stock": self.units,
            "image_url": "https://example.com/drop.png"}).json()
        made = self.operator.call("POST", "/api/sales", json={
            "product_id": product["id"], "stock": self.units, "price_cents": 4999,
            "starts_at": starts_at.isoformat(), "ends_at": (starts_at + timedelta(hours=2)).isoformat(),
            "per_user_limit": 1, "reservation_ttl_seconds": self.ttl,
            "entry": {"verified_email": False, "challenge": challenge, "one_card": one_card}})
        if made.status_code != 201:
            raise RuntimeError(f"create sale: HTTP {made.status_code} {made.text[:300]}")
        return str(made.json()["id"])

    def _enter(self, entrant: Entrant, payload: str | None) -> None:
        body: dict[str, Any] = {"quantity": 1} | ({"altcha": payload} if payload else {})
        answer = self.call(entrant, "POST", f"/api/sales/{self.sale_id}/tickets", json=body)
        if answer.status_code in (200, 202):
            entrant.ticket_id = answer.json()["id"]
        else:
            entrant.refused = answer.json().get("error", {}).get("code", str(answer.status_code))

    def _challenge(self, entrant: Entrant) -> dict[str, Any]:
        return dict(self.call(entrant, "GET", f"/api/sales/{self.sale_id}/challenge").json())

    def _person_enters(self, entrant: Entrant, challenge: bool, deadline: float) -> None:
        time.sleep(random.uniform(0, max(0.0, deadline - time.monotonic() - PHONE_SOLVE_SECONDS - 1)))
        payload = None
        if challenge:
            began, cpu = time.monotonic(), time.thread_time()
            payload = solve(self._challenge(entrant))
            with self.lock:
                self.result.people_challenge_cpu_s += time.thread_time() - cpu
            time.sleep(max(0.0, random.uniform(0.3, PHONE_SOLVE_SECONDS) - (time.monotonic() - began)))
        self._enter(entrant, payload)

    def _scalper_enters(self, accounts: list[Entrant], challenge: bool, deadline: float) -> None:
        """One core, as fast as it goes: solve, enter, next account; what is not solved by the
        start never enters."""
        cpu = time.thread_time()
        for entrant in accounts:
            payload = None
            if challenge:
                if time.monotonic() > deadline:
                    entrant.refused = "challenge_required"
                    continue
                payload = solve(self._challenge(entrant))
            self._enter(entrant, payload)
        if challenge:
            self.result.scalper_challenge_cpu_s = time.thread_time() - cpu
        self.result.stopped_by_challenge = sum(e.refused == "challenge_required" for e in accounts)

    def _wait_until(self, moment: float) -> None:
        time.sleep(max(0.0, moment - time.time()))

    def _pay_until_sold(self, deadline: float) -> None:
        """Follow every ticket; pay each reservation (the scalper goes through his cards)."""
        live = [e for e in self.entrants if e.ticket_id]
        with ThreadPoolExecutor(32) as pool:
            while live and time.monotonic() < deadline:
                statuses = list(pool.map(self._status, live))
                reserved = [e for e, s in zip(live, statuses, strict=True) if s == "reserved" and not e.paid]
                list(pool.map(self._pay, reserved))
                live = [e for e, s in zip(live, statuses, strict=True)
                        if s in ("lobby", "queued", "reserved") and not e.paid]
                if int(self.operator.stats(self.sale_id)["sold"]) >= self.units:
                    break
                time.sleep(1.0)
        for entrant in self.entrants:
            if entrant.paid:
                if entrant.scalper:
                    self.result.scalper_units += 1
                else:
                    self.result.people_units += 1
            if entrant.scalper and entrant.card_refusals and not entrant.paid:
                self.result.stopped_by_one_card += 1

    def _status(self, entrant: Entrant) -> str:
        answer = self.call(entrant, "GET", f"/api/tickets/{entrant.ticket_id}")
        status = answer.json().get("status", "") if answer.status_code == 200 else ""
        if status == "paid":
            entrant.paid = True
        return str(status)

    def _pay(self, entrant: Entrant) -> None:
        for number in entrant.cards:
            if number in entrant.tried:
                continue
            token = self.http.post(f"{self.stripe_base}/v1/tokens", timeout=30, data={
                "key": self.publishable_key, "card[number]": number, "card[exp_month]": "12",
                "card[exp_year]": "2034", "card[cvc]": "123"}).json()["id"]
            answer = self.call(entrant, "POST", f"/api/tickets/{entrant.ticket_id}/pay",
                               json={"card_token": token})
            if answer.status_code == 200 and answer.json().get("status") == "succeeded":
                entrant.paid = True
                return
            entrant.tried.add(number)
            if answer.status_code == 409 and answer.json()["error"]["code"] == "card_already_used":
                entrant.card_refusals += 1
                continue
            return


def render(results: list[RunResult], people: int, scalper_accounts: int, cards: int) -> str:
    lines = [f"Scalper scenario: {people} people (one account, one card each), one scalper with "
             f"{scalper_accounts} accounts and {cards} cards, {results[0].units} units, "
             "per-user limit 1, a lobby draw",
             "",
             "| defences | scalper's units | people's units | scalper entries stopped by the "
             "challenge | stopped by one card | scalper's CPU s on challenges | people's CPU s "
             "on challenges (all of them) | sold | run s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        lines.append(f"| {r.defences} | {r.scalper_units} ({r.scalper_units / r.units:.0%}) | "
                     f"{r.people_units} ({r.people_units / r.units:.0%}) | {r.stopped_by_challenge} "
                     f"of {r.scalper_entries} | {r.stopped_by_one_card} | "
                     f"{r.scalper_challenge_cpu_s:.1f} | {r.people_challenge_cpu_s:.1f} | {r.sold} | "
                     f"{r.seconds:.0f} |")
    return "\n".join(lines)


def run_scalpers(services: dict[str, Any], *, admin_email: str, admin_password: str,
                 people: int, scalper_accounts: int, cards: int, units: int, defences: str,
                 results_dir: Path, lobby_seconds: float | None = None, ttl: int = 15,
                 echo: Callable[[str], None] = print) -> str:
    base = str(services["api"]).rstrip("/")
    operator = Operator(base, admin_email, admin_password).sign_in()
    pool = AccountPool(base, pool_path(results_dir, base))
    accounts, report = pool.take(people + scalper_accounts, progress=echo, valid_for=3600)
    echo(f"scalpers: accounts ready: {report.describe()}")
    # Long enough for every person to arrive and solve, and for this one process to solve for
    # all of them and the scalper (hashlib holds the GIL for such short inputs).
    window = lobby_seconds or 15.0 + 0.06 * (people + scalper_accounts)
    results = []
    for name in (list(DEFENCES) if defences == "table" else [defences]):
        run = ScalperRun(base, str(services.get("stripe_api_base", "")).rstrip("/"),
                         str(services.get("stripe_publishable_key") or "pk_test_embedded"), operator,
                         accounts[:people], accounts[people:people + scalper_accounts], cards,
                         units, name, window, ttl, echo)
        results.append(run.run())
        echo(render(results[-1:], people, scalper_accounts, cards))
    return render(results, people, scalper_accounts, cards)
