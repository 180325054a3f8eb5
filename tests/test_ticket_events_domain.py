"""Live ticket updates and presence through common/, against the real Redis, MongoDB and
Stripe emulator: the decider's batches reach a following stream through the one subscription,
a closed stream is forgotten, an absent shopper's turn passes to the next in the same batch."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from common.auditing.audit import audit_sale, read_sale_snapshot
from common.flash_sale import lobby, sale_keys, sales, stream_slots, ticket_events, waiting_room
from common.flash_sale.stream_slots import StreamSlots
from common.flash_sale.ticket_events import (
    SaleMessage,
    SaleProgress,
    TicketFeed,
    follow_ticket,
    read_ticket_state,
)
from common.platform.errors import TooManyStreams
from tests.waiting_room_helpers import drain, make_product


def _sale(clients, stock: int, presence_timeout_seconds: int = 0) -> str:
    now = datetime.now(UTC)
    sale = sales.create_sale(
        clients.db, clients.sales_redis, product_id=make_product(clients, stock), stock=stock,
        price_cents=1999, starts_at=now - timedelta(seconds=1), ends_at=now + timedelta(hours=1),
        presence_timeout_seconds=presence_timeout_seconds)
    return str(sale["_id"])


def _wait(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_an_absent_shopper_is_abandoned_and_a_returning_one_keeps_their_place(clients):
    sale_id = _sale(clients, stock=2, presence_timeout_seconds=2)
    first, second, third, fourth = (
        waiting_room.admit(clients.sales_redis, sale_id, f"user-{i}", 1).ticket["id"] for i in range(4))
    time.sleep(2.2)  # everyone has been away for longer than the timeout
    # `second` comes back and polls; `third` has a stream open (the feed notes it present).
    waiting_room.read_ticket(clients.sales_redis, second, owner_id="user-1")
    feed = TicketFeed(clients.sales_redis, presence_refresh_seconds=0.1).start()
    try:
        fields, progress = read_ticket_state(clients.sales_redis, third)
        events = follow_ticket(feed, clients.sales_redis, fields, progress)
        assert next(events).ticket["position"] == 3  # type: ignore[union-attr]
        assert _wait(lambda: clients.sales_redis.hget(sale_keys.presence_key(sale_id), third) is not None)
        report = drain(clients, sale_id)
        events.close()
    finally:
        feed.stop()
    statuses = [waiting_room.read_ticket(clients.sales_redis, t)["status"]
                for t in (first, second, third, fourth)]
    # `first` was away when its turn came: its unit went to `third`, in the same batch;
    # `fourth` was away too (and would have found nothing left).
    assert statuses == ["abandoned", "reserved", "reserved", "abandoned"]
    assert report.reserved == 2
    counters = sales.read_counters(clients.sales_redis, sale_id)
    assert counters is not None and counters.abandoned == 2 and counters.queued == 0
    snapshot = read_sale_snapshot(clients.sales_redis, clients.db, sale_id, stripe_client=clients.stripe)
    assert audit_sale(snapshot, settled=True) == []


def test_presence_off_by_default_keeps_every_ticket(clients):
    sale_id = _sale(clients, stock=1)
    ticket = waiting_room.admit(clients.sales_redis, sale_id, "away", 1).ticket["id"]
    time.sleep(1.1)
    drain(clients, sale_id)
    assert waiting_room.read_ticket(clients.sales_redis, ticket)["status"] == "reserved"


def test_a_stream_follows_its_ticket_through_the_one_subscription(clients):
    sale_id = _sale(clients, stock=1)
    ahead = waiting_room.admit(clients.sales_redis, sale_id, "ahead", 1).ticket["id"]
    mine = waiting_room.admit(clients.sales_redis, sale_id, "me", 1).ticket["id"]
    feed = TicketFeed(clients.sales_redis).start()
    assert feed.subscribed.wait(5)
    received: list = []
    fields, progress = read_ticket_state(clients.sales_redis, mine)
    events = follow_ticket(feed, clients.sales_redis, fields, progress, position_every=0.2)

    def consume() -> None:
        for event in events:
            if event is not None:
                received.append(event)

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    try:
        assert _wait(lambda: len(received) == 1)
        assert received[0].ticket["status"] == "queued" and received[0].ticket["position"] == 2
        # The chance to buy travels with the stream too, as on a poll: one unit for two.
        assert (received[0].ticket["units_ahead"], received[0].ticket["outlook"]) == (1, "unlikely")
        assert received[0].ticket["outlook"] == waiting_room.read_ticket(
            clients.sales_redis, mine)["outlook"]
        assert feed.open_streams == 1
        drain(clients, sale_id)  # `ahead` takes the one unit, `mine` is sold out
        reader.join(10)
        assert not reader.is_alive(), "the stream ends after a final status"
    finally:
        feed.stop()
    assert received[-1].ticket["status"] == "sold_out"
    versions = [event.version for event in received]
    assert versions == sorted(set(versions)), "event ids grow with every change"
    assert feed.open_streams == 0
    assert waiting_room.read_ticket(clients.sales_redis, ahead)["status"] == "reserved"


def test_closing_a_stream_forgets_it_at_once(clients):
    sale_id = _sale(clients, stock=1)
    mine = waiting_room.admit(clients.sales_redis, sale_id, "me", 1).ticket["id"]
    feed = TicketFeed(clients.sales_redis)  # not started: closing needs no subscription
    fields, progress = read_ticket_state(clients.sales_redis, mine)
    follower_seen: list = []
    events = follow_ticket(feed, clients.sales_redis, fields, progress, on_follow=follower_seen.append)
    assert next(events) is not None and feed.open_streams == 1
    done = threading.Event()

    def wait_for_end() -> None:
        for _ in events:
            pass
        done.set()

    threading.Thread(target=wait_for_end, daemon=True).start()
    follower_seen[0].close()  # what the HTTP edge does when the client hangs up
    assert done.wait(2)
    assert feed.open_streams == 0


def test_resume_sends_the_ticket_only_if_newer(clients):
    sale_id = _sale(clients, stock=1)
    mine = waiting_room.admit(clients.sales_redis, sale_id, "me", 1).ticket["id"]
    feed = TicketFeed(clients.sales_redis)
    fields, progress = read_ticket_state(clients.sales_redis, mine)
    first = next(follow_ticket(feed, clients.sales_redis, fields, progress))
    assert first is not None
    resumed = follow_ticket(feed, clients.sales_redis, fields, progress, last_event_id=first.version,
                            ping_seconds=0.1)
    assert next(resumed) is None  # nothing newer: a ping comes first
    resumed.close()
    older = follow_ticket(feed, clients.sales_redis, fields, progress, last_event_id=first.version - 1)
    assert next(older).version == first.version  # type: ignore[union-attr]
    older.close()


def test_stream_tokens_open_their_own_ticket_only_until_they_expire():
    key = ticket_events.stream_token_key("secret-" + "x" * 32)
    now, ttl = 1_800_000_000.0, 3600
    token = ticket_events.stream_token(key, "tkt_a", int(now) + ttl)
    assert ticket_events.stream_token_valid(key, "tkt_a", token, now, ttl)
    assert ticket_events.stream_token_valid(key, "tkt_a", token, now + ttl - 1, ttl)
    assert not ticket_events.stream_token_valid(key, "tkt_a", token, now + ttl, ttl)  # expired
    assert not ticket_events.stream_token_valid(key, "tkt_b", token, now, ttl)
    other_key = ticket_events.stream_token_key("other")
    assert not ticket_events.stream_token_valid(other_key, "tkt_a", token, now, ttl)
    # A later expiry written over a valid token breaks its signature; one further away than the
    # API ever issues is refused before any signature is computed.
    expires, _, signature = token.partition(".")
    assert not ticket_events.stream_token_valid(key, "tkt_a", f"{int(expires) + 60}.{signature}", now, ttl)
    far = ticket_events.stream_token(key, "tkt_a", int(now) + ttl + 60)
    assert not ticket_events.stream_token_valid(key, "tkt_a", far, now, ttl)
    # The first format (an HMAC of the ticket id alone) never expired: it opens nothing now.
    first_format = base64.urlsafe_b64encode(hmac.new(key, b"tkt_a", hashlib.sha256).digest()[:24]).decode()
    assert not ticket_events.stream_token_valid(key, "tkt_a", first_format, now, ttl)
    # Anything a client puts in the query string is refused, never an error (found by fuzzing).
    for junk in ("", ".", "\U000fe10e", "é" * 32, token + "\x00", "١٢٣." + signature,
                 "9" * 40 + "." + signature, "-5." + signature):
        assert not ticket_events.stream_token_valid(key, "tkt_a", junk, now, ttl)


def test_a_streaming_lobby_ticket_learns_its_place_at_the_start(clients):
    now = datetime.now(UTC)
    starts_at = now + timedelta(seconds=1.5)
    sale = sales.create_sale(
        clients.db, clients.sales_redis, product_id=make_product(clients, 3), stock=3,
        price_cents=1999, starts_at=starts_at, ends_at=now + timedelta(hours=1),
        lobby_opens_at=now - timedelta(seconds=5))
    sale_id = str(sale["_id"])
    tickets = [waiting_room.admit(clients.sales_redis, sale_id, f"user-{i}", 1).ticket["id"]
               for i in range(3)]
    mine = tickets[1]
    feed = TicketFeed(clients.sales_redis).start()
    assert feed.subscribed.wait(5)
    received: list = []
    fields, progress = read_ticket_state(clients.sales_redis, mine)
    followers: list = []
    events = follow_ticket(feed, clients.sales_redis, fields, progress, on_follow=followers.append)

    def consume() -> None:
        for event in events:
            if event is not None:
                received.append((time.monotonic(), event))

    threading.Thread(target=consume, daemon=True).start()
    try:
        assert _wait(lambda: len(received) == 1)
        assert received[0][1].ticket["status"] == "lobby"
        time.sleep(max(0.0, (starts_at - datetime.now(UTC)).total_seconds()) + 0.05)
        started = time.monotonic()
        assert lobby.start_lobby(clients.sales_redis, sale_id).state == "placed"
        # Well within the feed's one-second position pacing and far from its 60 s re-read.
        assert _wait(lambda: len(received) == 2, timeout=0.5), "the placement reaches the stream"
    finally:
        followers[0].close()
        feed.stop()
    at, placed = received[1]
    place = int(clients.sales_redis.hget(sale_keys.ticket_key(sale_id, mine), "seq"))
    assert placed.ticket["status"] == "queued" and placed.ticket["position"] == place
    assert at - started < 0.5


def test_a_paced_stream_is_woken_by_its_own_change_but_not_by_every_move(clients):
    sale_id = _sale(clients, stock=1)
    feed = TicketFeed(clients.sales_redis)  # dispatch is called here as the subscription would
    paced = feed.follow("tkt_paced", sale_id, SaleProgress())
    eager = feed.follow("tkt_eager", sale_id, SaleProgress())
    paced.quiet_until = time.monotonic() + 60  # it has just been sent its position
    feed.dispatch(SaleMessage(sale_id, SaleProgress(5, 1_000, 10.0), []))
    assert paced.moved and not paced.wake.is_set(), "a move during its pause wakes nothing"
    assert eager.wake.is_set()
    feed.dispatch(SaleMessage(sale_id, None, ["tkt_paced"]))
    assert paced.wake.is_set() and paced.status_changed, "its own change wakes it at once"


def test_a_stream_slot_is_a_lease_renewed_while_open_and_ended_by_its_lease(clients):
    """A process killed outright cannot give its streams' slots back: they end with their lease;
    a live process renews them (its feed does, every RENEW_SECONDS)."""
    address = f"10.9.{secrets.randbelow(250)}.{secrets.randbelow(250)}"
    slots = StreamSlots(clients.redis, per_ticket=1, per_address=2, lease_seconds=1)
    held = slots.take("tkt_lease_a", address)
    with pytest.raises(TooManyStreams) as refused:
        slots.take("tkt_lease_a", address)
    assert refused.value.details == {"per": "ticket", "limit": 1}
    assert refused.value.headers["Retry-After"] == "1"
    slots.take("tkt_lease_b", address)
    with pytest.raises(TooManyStreams) as refused:
        slots.take("tkt_lease_c", address)
    assert refused.value.details == {"per": "address", "limit": 2}
    time.sleep(0.6)
    assert slots.renew([held]) == 2  # the ticket's set and the address's
    time.sleep(0.6)  # past the first lease, within the renewed one
    with pytest.raises(TooManyStreams):
        slots.take("tkt_lease_a", address)
    slots.take("tkt_lease_c", address)  # tkt_lease_b's slot was never renewed: it ended
    time.sleep(1.1)
    slots.take("tkt_lease_a", address)  # nobody renewed `held`: as if its process was killed
    slots.release(held)
    assert clients.redis.zscore(stream_slots.ticket_streams_key("tkt_lease_a"), held.stream_id) is None


def test_a_change_that_no_message_announced_reaches_its_stream_by_the_feeds_check(clients):
    """The feed checks every followed ticket at once every REREAD_SECONDS (here 0.3 s) and wakes
    only the stream whose ticket changed; the streams do not read their tickets themselves."""
    sale_id = _sale(clients, stock=5)
    mine, other = (waiting_room.admit(clients.sales_redis, sale_id, f"user-{i}", 1).ticket["id"]
                   for i in range(2))
    feed = TicketFeed(clients.sales_redis, reread_seconds=0.3).start()
    assert feed.subscribed.wait(5)
    received: dict[str, list] = {mine: [], other: []}
    followers: list = []
    readers = []
    for ticket_id in (mine, other):
        fields, progress = read_ticket_state(clients.sales_redis, ticket_id)
        events = follow_ticket(feed, clients.sales_redis, fields, progress, on_follow=followers.append)

        def consume(events=events, into=received[ticket_id]) -> None:
            for event in events:
                if event is not None:
                    into.append(event.ticket)

        readers.append(threading.Thread(target=consume, daemon=True))
        readers[-1].start()
    try:
        assert _wait(lambda: len(received[mine]) == 1 and len(received[other]) == 1)
        # Written without a message, as a script that does not publish would.
        changed = {"status": "cancelled", "updated_at_ms": str(int(time.time() * 1000))}
        clients.sales_redis.hset(sale_keys.ticket_key(sale_id, mine), mapping=changed)
        assert _wait(lambda: len(received[mine]) == 2, timeout=5)
        assert received[mine][-1]["status"] == "cancelled"
        time.sleep(0.7)  # two more checks: the other ticket did not change, its stream sent nothing
        assert len(received[other]) == 1
    finally:
        for follower in followers:
            follower.close()  # as a client that hangs up: each stream ends
        for reader in readers:
            reader.join(5)
        feed.stop()
