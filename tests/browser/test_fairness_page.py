"""The fairness page of a beacon draw (hmac-sha256-drand-v2) in headless Chromium against
`flashsale run` pointed at the session's embedded drand beacon (1 s rounds): an admin creates a
lobby sale through the API, two shoppers join its lobby, and at the start the sale is drawing.
The page then says the draw waits for the announced round; once the round is out it checks, in
the browser, the beacon's BLS signature, the randomness, the round's time after the close, the
seed's commitment, the entries' fingerprint and the order, and says "Every check passed". The
order and the places it shows are compared with the same draw recomputed here with hashlib and
hmac from the public answer. Screenshots tests/artifacts/fairness-drawing.png and
fairness-beacon.png."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.chromium import SCREENSHOTS
from tests.browser.test_shopper_journey import BrowserShopper
from tests.conftest import RunningBeacon, RunningSystem, start_system, stop_system
from tests.e2e.shop import Shopper, admin, create_sale

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(180)]

ALGORITHM = "hmac-sha256-drand-v2"
CHECKS = ("signature", "randomness", "round_time", "commitment", "entries", "order")
# The round is the first at least 10 s after starts_at; then it is fetched and verified.
DRAWN_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def beacon_shop(tmp_path_factory: pytest.TempPathFactory, beacon: RunningBeacon) -> Iterator[RunningSystem]:
    """`flashsale run` with DRAND_* pointing at the session's beacon, so it embeds none."""
    chain = beacon.chain
    running = start_system(tmp_path_factory.mktemp("fairness-system"), extra_env={
        "DRAND_URLS": beacon.url, "DRAND_CHAIN_HASH": chain.chain_hash,
        "DRAND_PUBLIC_KEY": chain.public_key, "DRAND_PERIOD_SECONDS": str(chain.period_seconds),
        "DRAND_GENESIS_TIME": str(chain.genesis_time)})
    try:
        yield running
    finally:
        stop_system(running.process)


def public_answer(shop: RunningSystem, sale_id: str) -> dict[str, Any]:
    r = shop.get(f"/api/sales/{sale_id}/fairness")
    assert r.status_code == 200, r.text
    return r.json()


def wait_answer(shop: RunningSystem, sale_id: str, done, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    answer = public_answer(shop, sale_id)
    while not done(answer) and time.monotonic() < deadline:
        time.sleep(0.2)
        answer = public_answer(shop, sale_id)
    assert done(answer), answer
    return answer


def order_v2(answer: dict[str, Any]) -> list[str]:
    """The contract's order, independently of the page: draw key = HMAC(randomness,
    entries_digest || seed), ids sorted by HMAC(draw key, id)."""
    key = hmac.digest(bytes.fromhex(answer["beacon"]["randomness"]),
                      bytes.fromhex(answer["entries_digest"]) + bytes.fromhex(answer["seed"]), "sha256")
    return sorted(answer["entries"], key=lambda ticket_id: hmac.digest(key, ticket_id.encode(), "sha256"))


def screenshot(viewer: BrowserShopper, path: Path) -> None:
    viewer.page.screenshot(path=str(path), full_page=True)
    SCREENSHOTS.append(path)


def test_the_fairness_page_checks_a_beacon_draw(chromium_browser, beacon_shop: RunningSystem,
                                                beacon: RunningBeacon, artifacts: Path):
    operator = admin(beacon_shop.url)
    shoppers = [Shopper(beacon_shop.url).register() for _ in range(2)]
    # The lobby opens at creation; the beacon draw asked for by name.
    sale = create_sale(operator, stock=2, starts_in=5, fairness_algorithm=ALGORITHM)
    sale_id = sale["id"]
    fairness = sale["fairness"]
    assert fairness["algorithm"] == ALGORITHM, fairness
    assert fairness["beacon"]["public_key"] == beacon.chain.public_key
    announced_round = fairness["beacon"]["round"]
    ticket_ids = []
    for shopper in shoppers:
        joined = shopper.join(sale_id)
        assert joined.status_code == 202 and joined.json()["status"] == "lobby", joined.text
        ticket_ids.append(joined.json()["id"])

    # The start: the lobby closes, and the draw waits for the round.
    closed = wait_answer(beacon_shop, sale_id, lambda a: "closed_at" in a, timeout=30)
    assert "signature" not in closed["beacon"] and closed["seed"] is None, closed
    viewer = BrowserShopper(chromium_browser, beacon_shop.url, "fairness")
    try:
        viewer.page.goto(f"/sales/{sale_id}/fairness?ticket={ticket_ids[0]}")
        stage = viewer.testid("fairness-stage")
        stage.wait_for()
        assert "The lobby closed at" in stage.inner_text()
        assert f"The draw waits for drand round {announced_round}, due at" in stage.inner_text()
        assert viewer.testid("fairness-summary").count() == 0
        screenshot(viewer, artifacts / "fairness-drawing.png")
        # The sale says so in plain words where its status is shown.
        sale_page = viewer.context.new_page()
        sale_page.goto(f"/sales/{sale_id}")
        assert sale_page.get_by_test_id("sale-status").inner_text() == "Drawing the places"
        sale_page.close()

        # The page reads the sale until the round is out, then checks it all in the browser.
        drawn = wait_answer(beacon_shop, sale_id, lambda a: "signature" in a["beacon"] and a["seed"],
                            timeout=DRAWN_TIMEOUT_S)
        summary = viewer.testid("fairness-summary")
        summary.wait_for(timeout=30_000)
        assert "Every check passed" in summary.inner_text(), summary.inner_text()
        for name in CHECKS:
            assert viewer.testid(f"fairness-check-{name}-mark").inner_text() == "✓ Passed", name
        round_ = drawn["beacon"]["round"]
        assert f"The randomness comes from the public drand beacon round {round_}: its signature checks" \
            in viewer.testid("fairness-check-signature").inner_text()
        entries_check = viewer.testid("fairness-check-entries").inner_text()
        assert "the published fingerprint matches these 2 entries" in entries_check
        assert viewer.testid("fairness-signature").inner_text() == drawn["beacon"]["signature"]
        assert viewer.testid("fairness-entries-digest").inner_text() == drawn["entries_digest"]

        # The page's draw is the one the contract defines, recomputed here.
        assert sorted(drawn["entries"]) == sorted(ticket_ids) and drawn["lobby_size"] == 2
        order = order_v2(drawn)
        place = order.index(ticket_ids[0]) + 1
        assert viewer.testid("fairness-computed-place").inner_text() == f"{place} of 2"
        assert hashlib.sha256(bytes.fromhex(drawn["seed"])).hexdigest() == fairness["commitment"]
        screenshot(viewer, artifacts / "fairness-beacon.png")

        page_errors = [problem for problem in viewer.problems if problem.startswith("page error")]
        assert page_errors == [] and viewer.csp_violations() == [], viewer.problems
    finally:
        viewer.close()
