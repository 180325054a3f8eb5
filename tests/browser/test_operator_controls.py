"""The operator view's controls in headless Chromium against `flashsale run`: the operator signs
in, pauses a live sale (a shopper's ticket then says the line is paused), resumes it (the ticket
is decided), ends it, and sees the report. Screenshots go to tests/artifacts/operator-controls.png
and tests/artifacts/operator-report.png."""

from __future__ import annotations

import time

import pytest

from tests.browser.chromium import SCREENSHOTS, STEP_TIMEOUT_MS
from tests.conftest import RunningSystem
from tests.e2e.shop import ADMIN_EMAIL, ADMIN_PASSWORD, Shopper, create_sale

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(180)]


def test_the_operator_pauses_resumes_and_ends_a_sale(chromium_browser, system: RunningSystem, artifacts):
    operator = Shopper(system.url, email=ADMIN_EMAIL, password=ADMIN_PASSWORD).login()
    sale_id = create_sale(operator, stock=5, product_stock=5, lobby_opens_in=None)["id"]
    context = chromium_browser.new_context(base_url=system.url, locale="en-US",
                                           viewport={"width": 1100, "height": 1400})
    context.set_default_timeout(STEP_TIMEOUT_MS)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    try:
        page.goto(f"/login?next=/admin/sales/{sale_id}")
        form = page.get_by_test_id("login-form")
        form.get_by_label("Email").fill(ADMIN_EMAIL)
        form.get_by_label("Password").fill(ADMIN_PASSWORD)
        page.get_by_test_id("login-submit").click()
        page.get_by_test_id("sale-controls").wait_for()

        page.get_by_test_id("pause-sale").click()
        page.get_by_test_id("resume-sale").wait_for()
        assert "Paused" in page.get_by_test_id("sale-pacing").inner_text()
        shopper = Shopper(system.url).register()
        ticket_id = shopper.join(sale_id).json()["id"]
        time.sleep(2)
        waiting = shopper.ticket(ticket_id)
        assert waiting["status"] == "queued" and waiting["paused"] is True
        path = artifacts / "operator-controls.png"
        page.screenshot(path=str(path), full_page=True)
        SCREENSHOTS.append(path)

        page.get_by_test_id("resume-sale").click()
        page.get_by_test_id("pause-sale").wait_for()
        assert shopper.wait_for(ticket_id, {"reserved"}, timeout=30)["status"] == "reserved"

        page.get_by_test_id("end-sale").click()
        page.get_by_test_id("end-sale-confirm").click()
        page.get_by_text("ended", exact=True).first.wait_for()
        assert page.get_by_test_id("admin-sale-status").inner_text() == "ended"
        page.get_by_role("button", name="Refresh").click()
        page.get_by_test_id("report-conversion").wait_for()
        path = artifacts / "operator-report.png"
        page.get_by_test_id("sale-report").screenshot(path=str(path))
        SCREENSHOTS.append(path)
        assert problems == [], problems
    finally:
        context.close()
