"""Redis's clock is the waiting room's one clock (issue 21, findings 5 and 6), against the real
Redis, MongoDB and Stripe emulator.

- After a failover to a replica whose clock is behind, the lobby's closed flag still decides:
  a shopper admitted after the close queues behind the lobby, never in a lobby whose seed is
  public. The replica's clock is played by the scripts' `now_ms` set back (a test-only prelude).
- Presence is stamped and compared with Redis's clock: an API host's clock far ahead or behind
  (the project's clock, common/platform/clock.py, skewed) does not change who counts as present.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from common.auditing.audit import audit_sale, read_sale_snapshot
from common.flash_sale import lobby, sale_keys, sales, ticket_events, waiting_room
from common.platform import clock, lua_scripts
from common.platform.clients import make_redis
from tests.test_lobby import lobby_sale, wait_until
from tests.waiting_room_helpers import drain, make_product


def _scripts_on_a_clock_behind(monkeypatch: pytest.MonkeyPatch, behind_ms: int) -> None:
    """Every script registered from now on reads Redis's clock set back by `behind_ms`."""
    library = lua_scripts.LIBRARY.read_text()
    original = lua_scripts._source

    def skewed(name: str) -> str:
        source = original(name)
        assert source.startswith(library)
        prelude = (f"local redis_now_ms = now_ms\n"
                   f"local function now_ms() return redis_now_ms() - {behind_ms} end\n")
        return library + "\n" + prelude + source[len(library):]

    monkeypatch.setattr(lua_scripts, "_source", skewed)


def test_after_the_lobby_closed_a_clock_behind_does_not_reopen_it(clients, settings, monkeypatch):
    sale = lobby_sale(clients, stock=5, opens_in=-120, starts_in=1.0)
    sale_id = sale["_id"]
    early = waiting_room.admit(clients.redis, sale_id, "early", 1).ticket
    assert early["status"] == "lobby"
    wait_until(sale["starts_at"])
    assert lobby.start_lobby(clients.redis, sale_id).done  # closed, placed; the seed is public
    assert lobby.fairness_page(clients.db, clients.redis, sale_id)["seed"]

    # The primary fails over to a replica whose clock is a minute behind: by that clock the
    # lobby is open and the sale not started.
    _scripts_on_a_clock_behind(monkeypatch, 60_000)
    replica = make_redis(settings.redis_url)  # a new client registers the scripts anew
    try:
        late = waiting_room.admit(replica, sale_id, "late", 1).ticket
        # Behind the lobby, not in it: the draw whose seed is public cannot take it any more.
        assert late["status"] == "queued" and late["position"] == 2
        assert replica.zscore(sale_keys.lobby_key(sale_id), late["id"]) is None
        assert sales.read_counters(replica, sale_id).lobby_size == 1
        # The start step on that replica goes on (the lobby stays closed), and does nothing new.
        assert lobby.start_lobby(replica, sale_id).state == "placed"
    finally:
        replica.close()
    report = drain(clients, sale_id)
    assert report.reserved == 2
    snapshot = read_sale_snapshot(clients.redis, clients.db, sale_id, stripe_client=clients.stripe)
    assert audit_sale(snapshot, settled=True) == []


class _SkewedTime:
    """The `time` module as common/platform/clock.py sees it, off by `skew_s`."""

    def __init__(self, skew_s: float) -> None:
        self.skew_s = skew_s

    def time(self) -> float:
        return time.time() + self.skew_s


@pytest.mark.parametrize("skew_s", [-3600.0, 3600.0], ids=["api-clock-behind", "api-clock-ahead"])
def test_a_skewed_api_clock_does_not_change_who_counts_as_present(clients, monkeypatch, skew_s):
    now = datetime.now(UTC)
    sale_id = str(sales.create_sale(
        clients.db, clients.sales_redis, product_id=make_product(clients, 2), stock=2,
        price_cents=1999, starts_at=now - timedelta(seconds=1), ends_at=now + timedelta(hours=1),
        presence_timeout_seconds=2)["_id"])
    monkeypatch.setattr(clock, "time", _SkewedTime(skew_s))
    # A 2 s timeout is below the API's 15 s minimum: polls note presence as often as they come.
    monkeypatch.setattr(ticket_events, "POLL_PRESENCE", ticket_events.PollPresence(every_seconds=0))
    assert abs(clock.now_ms() / 1000 - time.time() - skew_s) < 5  # the API host's clock is off
    redis = clients.sales_redis
    here, away = (waiting_room.admit(redis, sale_id, user, 1).ticket["id"] for user in ("here", "away"))
    for ticket_id, user in ((here, "here"), (away, "away")):
        waiting_room.read_ticket(redis, ticket_id, owner_id=user)  # both poll once
    time.sleep(2.3)  # longer than the presence timeout
    waiting_room.read_ticket(redis, here, owner_id="here")  # only `here` polls again
    drain(clients, sale_id)
    statuses = [waiting_room.read_ticket(redis, t)["status"] for t in (here, away)]
    assert statuses == ["reserved", "abandoned"]
