"""The shopper's journey in headless Chromium against `flashsale run`: sign up, wait for the
sale to open, press Buy, wait in line, pay with the Stripe emulator's card element (and with a
3-D Secure card), see the paid order; a second shopper behind in line ends sold out. With a
lobby: join it before the start, get the drawn place, pay, and check the draw in the browser. Outcomes
are checked through the API too. No token is readable by a script, a reload keeps the shopper
signed in, and nothing breaks the Content-Security-Policy. Screenshots go to
tests/artifacts/."""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from tests.browser.chromium import SCREENSHOTS, STEP_TIMEOUT_MS
from tests.conftest import RunningSystem, start_system, stop_system
from tests.e2e.shop import Shopper, admin, create_sale

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(180)]

PASSWORD = "correct-horse-battery"
CARD = "4242424242424242"
CARD_3DS = "4000002500003155"


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSystem]:
    running = start_system(tmp_path_factory.mktemp("browser-system"))
    try:
        yield running
    finally:
        stop_system(running.process)


@pytest.fixture(scope="module")
def operator(shop: RunningSystem) -> Shopper:
    return admin(shop.url)


class BrowserShopper:
    """One shopper: a browser context of their own (own cookies and localStorage)."""

    def __init__(self, browser, base: str, label: str) -> None:
        self.base = base
        self.label = label
        self.email = f"browser-{label}-{secrets.token_hex(4)}@example.com"
        self.context = browser.new_context(base_url=base, locale="en-US",
                                           viewport={"width": 1100, "height": 900})
        self.context.set_default_timeout(STEP_TIMEOUT_MS)
        self.context.set_default_navigation_timeout(STEP_TIMEOUT_MS)
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        self.page.on("console", lambda message: message.type == "error" and self.problems.append(
            f"console error: {message.text} ({message.location.get('url', '')})"))
        # The emulator's 3-D Secure step is an in-page modal; accept any native dialog as well.
        self.page.on("dialog", lambda dialog: dialog.accept())

    def testid(self, name: str):
        return self.page.get_by_test_id(name)

    def register(self, next_path: str = "/") -> None:
        self.page.goto(f"/register?next={next_path}")
        form = self.testid("register-form")
        form.get_by_label("Name").fill(f"Shopper {self.label}")
        form.get_by_label("Email").fill(self.email)
        form.get_by_label("Password").fill(PASSWORD)
        self.testid("register-submit").click()
        self.testid("current-user").wait_for()
        self.verify_email()
        self.page.goto(next_path)  # where "Continue shopping" would have led
        self.testid("current-user").wait_for()  # the session renewed through the cookie

    def verify_email(self) -> None:
        """As a newcomer on `make run` does: from "check your email" to the development
        mailbox, and the link in the mail (the newest one to this address)."""
        self.testid("check-email").wait_for()
        self.testid("dev-mailbox-link").click()
        message = self.testid("mailbox-message").filter(has_text=self.email).first
        message.wait_for()
        message.get_by_test_id("mailbox-link").click()
        result = self.testid("verify-result")
        result.wait_for()
        assert result.get_attribute("data-result") == "verified", result.inner_text()

    def api(self) -> Shopper:
        """The same account over HTTP, for checking outcomes through the API."""
        return Shopper(self.base, email=self.email, password=PASSWORD).login()

    def open_sale(self, sale_id: str) -> None:
        self.page.goto(f"/sales/{sale_id}")
        self.testid("sale-status").wait_for()

    def press_buy(self) -> str:
        """Press Buy once the sale is open; returns the ticket id from the queue page's URL."""
        button = self.page.locator("[data-testid=buy-button]:enabled")
        button.wait_for()
        button.click()
        self.page.wait_for_url(re.compile(r"/tickets/[^/]+$"))
        return self.page.url.rsplit("/", 1)[1]

    def pay(self, number: str) -> None:
        card = self.testid("card-element")
        # The emulator's Stripe.js renders plain inputs named by their placeholders.
        card.locator("input[placeholder=number]").fill(number)
        card.locator("input[placeholder=exp_month]").fill("12")
        card.locator("input[placeholder=exp_year]").fill("34")
        card.locator("input[placeholder=cvc]").fill("123")
        card.locator("input[placeholder=postal_code]").fill("10001")
        self.page.locator("[data-testid=pay-button]:enabled").click()

    def assert_no_readable_tokens(self) -> None:
        """Neither token is where a script could read it; the refresh token is an HttpOnly
        cookie (JWTs start with "eyJ", the base64 of '{"')."""
        readable = self.page.evaluate(
            "() => JSON.stringify({...localStorage}) + JSON.stringify({...sessionStorage})"
            " + document.cookie")
        assert "eyJ" not in readable, readable
        cookies = {cookie["name"]: cookie for cookie in self.context.cookies()}
        assert cookies["refresh_token"]["value"].startswith("eyJ")
        assert cookies["refresh_token"]["httpOnly"] and cookies["refresh_token"]["sameSite"] == "Strict"
        assert cookies["refresh_token"]["path"] == "/api/auth"

    def csp_violations(self) -> list[str]:
        return [problem for problem in self.problems if "Content Security Policy" in problem]

    def ticket_status(self) -> str:
        status = self.testid("ticket-status")
        status.wait_for()
        return status.get_attribute("data-status") or ""

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.context.close()


@pytest.fixture
def new_shopper(chromium_browser, shop: RunningSystem) -> Iterator[Callable[[str], BrowserShopper]]:
    made: list[BrowserShopper] = []

    def new(label: str) -> BrowserShopper:
        made.append(BrowserShopper(chromium_browser, shop.url, label))
        return made[-1]

    yield new
    for shopper in made:
        for problem in shopper.problems:
            print(f"[{shopper.label}] {problem}")
        shopper.close()


def _worker_processes(shop: RunningSystem) -> list[psutil.Process]:
    """The Celery workers (`celery -A worker.app worker`: worker and decider) under this
    system's `flashsale run`."""
    found = []
    for child in psutil.Process(shop.process.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            argv = child.cmdline()
            if "worker.app" in argv and argv[argv.index("worker.app") + 1:][:1] == ["worker"]:
                found.append(child)
    assert found, "no Celery worker under flashsale run"
    return found


@contextlib.contextmanager
def worker_paused(shop: RunningSystem) -> Iterator[None]:
    """Hold the workers still (SIGSTOP) so tickets stay queued and the line can be looked at."""
    workers = _worker_processes(shop)
    for worker in workers:
        worker.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        for worker in workers:
            with contextlib.suppress(psutil.Error):
                worker.send_signal(signal.SIGCONT)


@contextlib.contextmanager
def stripe_emulator_paused(shop: RunningSystem) -> Iterator[None]:
    """Hold the Stripe emulator still (SIGSTOP): a ticket whose turn came waits for its
    PaymentIntent, shown as `queued` at its place, long enough for a page to see it."""
    found = []
    for child in psutil.Process(shop.process.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "common.development.localstripe_server" in child.cmdline():
                found.append(child)
    assert found, "no Stripe emulator under flashsale run"
    for process in found:
        process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        for process in found:
            with contextlib.suppress(psutil.Error):
                process.send_signal(signal.SIGCONT)


def _screenshot(shopper: BrowserShopper, path: Path) -> None:
    shopper.page.screenshot(path=str(path), full_page=True)
    SCREENSHOTS.append(path)
    print(f"screenshot: {path}")


def _wait_api(predicate, timeout: float = 30):
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(0.3)
        value = predicate()
    return value


def test_shopper_queues_pays_and_the_next_one_sees_sold_out(
        shop: RunningSystem, operator: Shopper, new_shopper, artifacts: Path):
    first, second = new_shopper("one"), new_shopper("two")
    first.register()
    second.register()
    # Opening a few seconds from now: the sale page shows its countdown first.
    # No lobby: this journey is the v1 line, in arrival order.
    sale = create_sale(operator, stock=1, product_stock=1, starts_in=6, price_cents=4999,
                       lobby_opens_in=None)
    sale_id = sale["id"]
    first.open_sale(sale_id)
    second.open_sale(sale_id)
    first.testid("sale-countdown").wait_for()
    assert first.testid("buy-button").is_disabled()

    with worker_paused(shop):
        # Nobody is decided while the worker is held: both wait in line, in arrival order.
        first_ticket = first.press_buy()
        first.testid("queue-view").wait_for()
        assert first.ticket_status() == "queued"
        assert first.testid("queue-position").inner_text().strip() == "1"
        second_ticket = second.press_buy()
        second.testid("queue-view").wait_for()
        assert second.testid("queue-position").inner_text().strip() == "2"
        first.page.wait_for_function(
            "() => /in line/.test(document.querySelector('[data-testid=sale-stock]')?.textContent ?? '')")
        _screenshot(first, artifacts / "queue-page.png")
        assert first.api().ticket(first_ticket)["status"] == "queued"

    # The worker decides the line: the one unit is reserved for the first, the second is sold out.
    first.testid("payment-view").wait_for()
    assert first.ticket_status() == "reserved"
    assert first.testid("payment-amount").inner_text().strip() == "$49.99"
    second.page.locator("[data-testid=ticket-outcome][data-status=sold_out]").wait_for()
    assert second.testid("sold-out-message").is_visible()

    first.testid("card-element").locator("input").first.wait_for()
    first.pay(CARD)
    first.testid("paid-order-summary").wait_for()
    first.testid("paid-order-status").wait_for()
    assert first.testid("paid-order-status").inner_text() == "paid"
    assert first.ticket_status() == "paid"
    order_id = first.testid("paid-order-id").inner_text().strip()
    _screenshot(first, artifacts / "paid-page.png")

    # The second shopper, coming back to the sale, is told it is sold out.
    second.open_sale(sale_id)
    second.testid("sold-out-message").wait_for()
    assert not second.testid("buy-button").count()

    # The same outcomes through the API.
    buyer = first.api()
    ticket = buyer.ticket(first_ticket)
    assert ticket["status"] == "paid" and ticket["order_id"] == order_id, ticket
    order = buyer.call("GET", f"/api/orders/{order_id}").json()
    assert order["status"] == "paid" and order["ticket_id"] == first_ticket, order
    assert order["amount_cents"] == 4999 and order["sale_id"] == sale_id, order
    assert second.api().ticket(second_ticket)["status"] == "sold_out"
    assert shop.get(f"/api/sales/{sale_id}").json()["status"] == "sold_out"
    stats = operator.call("GET", f"/api/admin/sales/{sale_id}/stats").json()
    assert (stats["sold"], stats["available"], stats["reserved"]) == (1, 0, 0), stats
    assert stats["sold_out"] == 1 and stats["consistent"], stats
    late = Shopper(shop.url).register().join(sale_id)
    assert late.status_code == 410, late.text
    assert not first.csp_violations() and not second.csp_violations()


def test_three_d_secure_card_is_confirmed_in_the_emulator_dialog(
        shop: RunningSystem, operator: Shopper, new_shopper):
    shopper = new_shopper("three")
    sale = create_sale(operator, stock=1, product_stock=1, price_cents=2500, lobby_opens_in=None)
    shopper.register(f"/sales/{sale['id']}")
    shopper.page.wait_for_url(re.compile(r"/sales/"))
    shopper.assert_no_readable_tokens()
    # The access token was in memory only: a reload renews it through the refresh cookie.
    page = shopper.page.reload()
    assert page is not None and "script-src 'self' http" in page.headers["content-security-policy"]
    shopper.testid("current-user").wait_for()
    shopper.assert_no_readable_tokens()
    ticket_id = shopper.press_buy()
    shopper.testid("payment-view").wait_for()
    shopper.testid("card-element").locator("input").first.wait_for()
    shopper.pay(CARD_3DS)
    # The emulator's confirmCardPayment opens its own modal with two buttons.
    shopper.page.get_by_role("button", name="Complete authentication").click()
    shopper.testid("paid-order-summary").wait_for()
    shopper.testid("paid-order-status").wait_for()
    assert shopper.testid("paid-order-status").inner_text() == "paid"
    assert shopper.testid("paid-order-amount").inner_text().strip() == "$25.00"

    api = shopper.api()
    ticket = _wait_api(lambda: (t := api.ticket(ticket_id))["status"] == "paid" and t)
    assert ticket and ticket["order_id"], ticket
    order = api.call("GET", f"/api/orders/{ticket['order_id']}").json()
    assert order["status"] == "paid" and order["amount_cents"] == 2500, order
    assert not shopper.csp_violations(), shopper.problems


def test_lobby_then_the_drawn_place_then_pay_and_the_draw_checks_out_in_the_browser(
        shop: RunningSystem, operator: Shopper, new_shopper, artifacts: Path):
    shopper = new_shopper("lobby")
    shopper.register()
    sale = create_sale(operator, stock=1, product_stock=1, starts_in=8, price_cents=3000, one_card=True)
    sale_id = sale["id"]
    shopper.open_sale(sale_id)
    assert shopper.testid("sale-status").get_attribute("class").endswith("badge-lobby")
    # The contract's default entry: the shopper verified through the mailed link at sign-up.
    assert shopper.testid("sale-entry").inner_text() == "Entry: verified email · one card per person"
    assert shopper.testid("verify-banner").count() == 0
    _screenshot(shopper, artifacts / "sale-page-entry.png")
    shopper.page.locator("[data-testid=join-lobby-button]:enabled").click()
    shopper.page.wait_for_url(re.compile(r"/tickets/[^/]+$"))
    ticket_id = shopper.page.url.rsplit("/", 1)[1]
    shopper.testid("lobby-view").wait_for()
    assert shopper.ticket_status() == "lobby"
    message = shopper.testid("lobby-message").inner_text()
    assert re.fullmatch(r"You're in: at \d\d:\d\d:\d\d everyone in the lobby gets a random place\.",
                        message.strip()), message
    shopper.page.wait_for_function(
        "() => /1 in the lobby/.test(document.querySelector('[data-testid=lobby-size]')?.textContent ?? '')")
    _screenshot(shopper, artifacts / "lobby-page.png")
    assert shopper.api().ticket(ticket_id)["status"] == "lobby"

    with stripe_emulator_paused(shop):
        # At the start the lobby gets its places; the reservation waits for the emulator, so
        # the page shows the drawn place first.
        shopper.page.locator("[data-testid=queue-view]").wait_for(timeout=30_000)
        assert shopper.testid("queue-position").inner_text().strip() == "1"
        assert shopper.testid("fairness-link").inner_text() == "How was my place drawn?"

    shopper.testid("payment-view").wait_for()
    assert shopper.testid("payment-amount").inner_text().strip() == "$30.00"
    shopper.testid("card-element").locator("input").first.wait_for()
    shopper.pay(CARD)
    shopper.testid("paid-order-status").wait_for()
    assert shopper.testid("paid-order-status").inner_text() == "paid"

    shopper.testid("fairness-link").click()
    shopper.page.wait_for_url(re.compile(r"/sales/[^/]+/fairness\?ticket="))
    verdict = shopper.page.locator("[data-testid=fairness-verdict]")
    shopper.page.wait_for_function(
        "() => document.querySelector('[data-testid=fairness-verdict]')?.textContent === 'matches'")
    assert verdict.inner_text() == "matches"
    assert shopper.testid("fairness-seed-check").inner_text() == "yes"
    assert shopper.testid("fairness-computed-place").inner_text() == "1 of 1"
    assert shopper.testid("fairness-commitment").inner_text() == sale["fairness"]["commitment"]
    _screenshot(shopper, artifacts / "fairness-page.png")

    # The same through the API: the published seed is the committed one, the ticket is paid.
    fairness = shop.get(f"/api/sales/{sale_id}/fairness").json()
    assert hashlib.sha256(bytes.fromhex(fairness["seed"])).hexdigest() == sale["fairness"]["commitment"]
    assert fairness["entries"] == [ticket_id] and fairness["lobby_size"] == 1
    assert shopper.testid("fairness-seed").inner_text() == fairness["seed"]
    assert _wait_api(lambda: shopper.api().ticket(ticket_id)["status"] == "paid")
    assert not shopper.csp_violations(), shopper.problems
