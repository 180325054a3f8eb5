"""The token denylist and each API process's copy of it, against the real Redis."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest

from common.accounts import revocations, tokens
from common.accounts.revocations import DenylistCopy
from common.platform.clients import make_redis


def _eventually(check: Callable[[], object], timeout: float = 5.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


@pytest.fixture
def copy(clients):
    made = DenylistCopy(clients.redis, retry_seconds=0.2).start()
    _eventually(lambda: made.current)
    yield made
    made.stop()


def test_a_revocation_elsewhere_reaches_the_copy_and_redis(clients, copy):
    jti, family = uuid.uuid4().hex, "fam_" + uuid.uuid4().hex
    members = revocations.members_of(jti, family)
    assert copy.is_denied(members) is False
    assert not tokens.is_access_token_revoked(clients.redis, jti, family, copy)
    other_process = make_redis(clients.settings.redis_url)
    tokens.revoke_access_token(other_process, jti, int(time.time()) + 60)
    _eventually(lambda: copy.is_denied(members))
    assert revocations.is_denied(clients.redis, members)
    # A family revocation covers every token of the login.
    other = uuid.uuid4().hex
    tokens.revoke_family(clients.db, other_process, family, access_ttl_seconds=60)
    _eventually(lambda: copy.is_denied(revocations.members_of(other, family)))
    assert tokens.is_access_token_revoked(clients.redis, other, family)  # from Redis, no copy
    other_process.close()


def test_the_revoking_process_sees_its_own_revocation_at_once(clients, copy):
    jti = uuid.uuid4().hex
    tokens.revoke_access_token(clients.redis, jti, int(time.time()) + 60, copy)
    assert copy.is_denied([revocations.access_member(jti)]) is True


def test_entries_expire_and_the_copy_loads_what_came_before_it(clients):
    old, expired = uuid.uuid4().hex, uuid.uuid4().hex
    revocations.revoke(clients.redis, revocations.access_member(old), time.time() + 60)
    revocations.revoke(clients.redis, revocations.access_member(expired), time.time() + 0.3)
    assert revocations.is_denied(clients.redis, [revocations.access_member(expired)])
    time.sleep(0.4)
    assert not revocations.is_denied(clients.redis, [revocations.access_member(expired)])
    late = DenylistCopy(clients.redis).start()
    try:
        assert late.is_denied([revocations.access_member(old)]) in (None, True)  # None until loaded
        _eventually(lambda: late.current)
        assert late.is_denied([revocations.access_member(old)]) is True
        assert late.is_denied([revocations.access_member(expired)]) is False
    finally:
        late.stop()


def test_a_broken_subscription_stops_answering_then_catches_up(clients, copy):
    # Kill the copy's subscription: until it has subscribed and loaded again it must not vouch
    # for anything, and a revocation published meanwhile must be known afterwards.
    host, port = copy._pubsub.connection._sock.getsockname()[:2]
    assert clients.redis.client_kill_filter(_id=None, addr=f"{host}:{port}") == 1
    missed = uuid.uuid4().hex
    revocations.revoke(clients.redis, revocations.access_member(missed), time.time() + 60)
    _eventually(lambda: copy.is_denied([revocations.access_member(missed)]))


def test_a_copy_that_hears_nothing_stops_vouching(clients, copy, monkeypatch):
    assert copy.current
    monkeypatch.setattr(revocations, "QUIET_LIMIT_SECONDS", 0.0)
    assert copy.is_denied([revocations.access_member("anything")]) is None
