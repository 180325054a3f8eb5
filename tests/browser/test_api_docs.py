"""`/api/docs` in headless Chromium against `flashsale run`: Swagger UI loads from the shop's
own origin under the shop's Content-Security-Policy (api/api_docs.py), lists the operations of
the OpenAPI document, and nothing it does breaks the policy (no `securitypolicyviolation`
event, no console error). A screenshot goes to tests/artifacts/api-docs.png."""

from __future__ import annotations

import pytest

from tests.browser.chromium import SCREENSHOTS, STEP_TIMEOUT_MS
from tests.conftest import RunningSystem

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(180)]

# Playwright's init scripts run before the page's own and outside its CSP: this one records
# every violation the page reports.
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.violatedDirective} blocked ${event.blockedURI || "inline"}`);
});
"""
ADMISSION = "/api/sales/{sale_id}/tickets"


def test_swagger_ui_lists_the_operations_without_breaking_the_csp(chromium_browser, system: RunningSystem,
                                                                    artifacts):
    context = chromium_browser.new_context(base_url=system.url, viewport={"width": 1200, "height": 1000})
    context.set_default_timeout(STEP_TIMEOUT_MS)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda message: message.type == "error" and problems.append(
        f"console error: {message.text}"))
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    outside: list[str] = []
    page.on("request", lambda request: not request.url.startswith(system.url)
            and outside.append(request.url))
    page.add_init_script(RECORD_VIOLATIONS)
    try:
        response = page.goto("/api/docs")
        assert response is not None and response.status == 200
        policy = response.headers.get("content-security-policy", "")
        assert "script-src 'self'" in policy and "'unsafe-inline'" not in policy, policy

        # Operations are listed, grouped by blueprint; the admission is one of them.
        page.locator(f'.opblock-summary-path[data-path="{ADMISSION}"]').wait_for()
        assert page.locator(".opblock").count() >= 20
        assert page.locator(".opblock-tag").filter(has_text="Sales").count() >= 1
        # Expanding an operation renders its parameters and responses.
        page.locator(f'.opblock-summary-path[data-path="{ADMISSION}"]').click()
        page.locator(".opblock.is-open .parameters-container").first.wait_for()
        page.locator(".opblock.is-open .parameter__name").filter(has_text="sale_id").first.wait_for()

        path = artifacts / "api-docs.png"
        page.screenshot(path=str(path), full_page=False)
        SCREENSHOTS.append(path)

        violations = page.evaluate("window.__cspViolations")
        assert violations == [], violations
        assert problems == [], problems
        assert outside == [], f"/api/docs loaded from elsewhere: {outside}"
    finally:
        context.close()
