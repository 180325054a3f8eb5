"""A sale with a proof-of-work entry in headless Chromium against `flashsale run`: the sale
page says what entry needs, the browser solves the ALTCHA challenge in the altcha widget's Web
Workers while the shopper waits for the start (from the shop's own origin, under its
Content-Security-Policy: no violation), and Buy sends the solution with the admission. A
screenshot of the sale page with its entry requirements goes to
tests/artifacts/sale-entry-requirements.png."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.browser.chromium import SCREENSHOTS
from tests.browser.test_shopper_journey import BrowserShopper
from tests.conftest import RunningSystem, start_system, stop_system
from tests.e2e.shop import admin

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSystem]:
    running = start_system(tmp_path_factory.mktemp("challenge-system"))
    try:
        yield running
    finally:
        stop_system(running.process)


def test_the_browser_solves_while_waiting_and_enters_with_the_solution(chromium_browser, shop, artifacts):
    operator = admin(shop.url)
    product = operator.call("POST", "/api/products", json={
        "name": "Proof-of-work sneaker", "description": "One entry per solved challenge",
        "price_cents": 9999, "currency": "USD", "stock": 5, "image_url": "https://example.com/p.png"})
    assert product.status_code == 201, product.text
    now = datetime.now(UTC)
    created = operator.call("POST", "/api/sales", json={
        "product_id": product.json()["id"], "stock": 5, "price_cents": 4999, "lobby_opens_at": None,
        "starts_at": (now + timedelta(seconds=25)).isoformat(),
        "ends_at": (now + timedelta(hours=1)).isoformat(),
        "entry": {"verified_email": True, "challenge": True, "one_card": True}})
    assert created.status_code == 201, created.text
    sale = created.json()

    shopper = BrowserShopper(chromium_browser, shop.url, "pow")
    try:
        shopper.register(next_path=f"/sales/{sale['id']}")
        opened = time.monotonic()
        shopper.testid("sale-status").wait_for()
        entry = shopper.testid("sale-entry")
        assert "verified email" in entry.inner_text() and "one card per person" in entry.inner_text()
        shopper.page.locator("[data-testid=challenge-status][data-ready=true]").wait_for()
        solved_in = time.monotonic() - opened
        print(f"challenge fetched and solved in the browser within {solved_in:.2f} s of the page")
        path = artifacts / "sale-entry-requirements.png"
        shopper.page.screenshot(path=str(path), full_page=True)
        SCREENSHOTS.append(path)

        ticket_id = shopper.press_buy()  # enabled at the start
        assert ticket_id.startswith("tkt_")
        mine = shopper.api().call("GET", f"/api/sales/{sale['id']}/tickets/mine")
        assert mine.status_code == 200 and mine.json()["id"] == ticket_id
        assert shopper.csp_violations() == [], shopper.problems
        assert [p for p in shopper.problems if "page error" in p] == [], shopper.problems
    finally:
        for problem in shopper.problems:
            print(f"[pow] {problem}")
        shopper.close()
