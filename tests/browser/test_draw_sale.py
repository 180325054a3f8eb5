"""A draw sale in headless Chromium against `flashsale run`: an admin creates a draw sale (its
lobby open now, the draw about 25 s ahead, one unit) through the API; a shopper signs up,
verifies the email through the development mailbox, enters the draw on the sale page, authorises
the hold with the emulator's test card, sees "You're entered", waits for the draw and sees that
they won, with the order. Screenshots tests/artifacts/draw-entered.png and draw-result.png."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, timedelta

import pytest

from tests.browser.chromium import SCREENSHOTS
from tests.browser.test_shopper_journey import CARD, BrowserShopper
from tests.conftest import RunningSystem
from tests.e2e.shop import ADMIN_EMAIL, ADMIN_PASSWORD, Shopper

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(180)]

DRAW_IN_SECONDS = 25
# The draw waits for the beacon round at least 10 s after starts_at, then walks the entries.
RESULT_TIMEOUT_MS = 60_000


def create_draw_sale(operator: Shopper, *, starts_in: float, stock: int = 1) -> dict:
    product = operator.call("POST", "/api/products", json={
        "name": f"Draw {secrets.token_hex(3)}", "description": "Drawn among the entries",
        "price_cents": 9999, "currency": "USD", "stock": stock,
        "image_url": "https://example.com/p.png"})
    assert product.status_code == 201, product.text
    now = datetime.now(UTC)
    sale = operator.call("POST", "/api/sales", json={
        "product_id": product.json()["id"], "stock": stock, "price_cents": 4999, "mode": "draw",
        "starts_at": (now + timedelta(seconds=starts_in)).isoformat(),
        "ends_at": (now + timedelta(hours=1)).isoformat(),
        "lobby_opens_at": (now - timedelta(seconds=1)).isoformat(),
        "per_user_limit": 1, "reservation_ttl_seconds": 300,
        # The emulator's test card is shared by every account of the suite's system.
        "entry": {"one_card": False}})
    assert sale.status_code == 201, sale.text
    assert sale.json()["mode"] == "draw"
    return sale.json()


def test_a_shopper_enters_a_draw_with_a_card_hold_and_wins(chromium_browser, system: RunningSystem,
                                                           artifacts):
    operator = Shopper(system.url, email=ADMIN_EMAIL, password=ADMIN_PASSWORD).login()
    shopper = BrowserShopper(chromium_browser, system.url, "draw")
    try:
        shopper.register()
        # Signed up and verified before the sale is made, so the draw is still ahead on entry.
        sale = create_draw_sale(operator, starts_in=DRAW_IN_SECONDS)
        shopper.open_sale(sale["id"])
        explainer = shopper.testid("draw-explainer")
        explainer.wait_for()
        assert "your card is authorised now and charged only if you are drawn" in explainer.inner_text()
        shopper.page.locator("[data-testid=join-lobby-button]:enabled").click()
        shopper.page.wait_for_url(re.compile(r"/tickets/[^/]+$"))
        ticket_id = shopper.page.url.rsplit("/", 1)[1]

        shopper.testid("draw-hold-view").wait_for()
        assert shopper.testid("pay-button").inner_text() == "Authorise $49.99"
        shopper.testid("card-element").locator("input").first.wait_for()
        shopper.pay(CARD)
        shopper.testid("draw-entered").wait_for()
        assert "You're entered" in shopper.testid("draw-entered-message").inner_text()
        assert shopper.testid("leave-queue-button").inner_text() == "Withdraw"
        entered = shopper.api().ticket(ticket_id)
        assert entered["status"] == "lobby" and entered["hold"]["status"] == "held", entered
        path = artifacts / "draw-entered.png"
        shopper.page.screenshot(path=str(path), full_page=True)
        SCREENSHOTS.append(path)

        # The draw: the only entry is drawn, its hold captured into an order.
        shopper.testid("draw-won").wait_for(timeout=RESULT_TIMEOUT_MS)
        assert "you won" in shopper.testid("draw-won").inner_text()
        shopper.testid("paid-order-status").wait_for()
        assert shopper.testid("paid-order-status").inner_text() == "paid"
        order_id = shopper.testid("paid-order-id").inner_text().strip()
        assert shopper.testid("paid-order-link").get_attribute("href") == f"/orders/{order_id}"
        path = artifacts / "draw-result.png"
        shopper.page.screenshot(path=str(path), full_page=True)
        SCREENSHOTS.append(path)

        won = shopper.api().ticket(ticket_id)
        assert won["status"] == "paid" and won["order_id"] == order_id, won
        assert won["hold"]["status"] == "captured", won
        # Console errors are expected here (the 404 of "no ticket yet", the product's offline
        # image); a script error or a Content-Security-Policy violation is not.
        page_errors = [problem for problem in shopper.problems if problem.startswith("page error")]
        assert page_errors == [] and shopper.csp_violations() == [], shopper.problems
    finally:
        shopper.close()
