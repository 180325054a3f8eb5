"""The per-process cache of verified access tokens: bounded, and never past a token's expiry."""

from __future__ import annotations

import time

from common.accounts.verified_tokens import VerifiedTokens


def test_a_cached_token_is_forgotten_at_its_expiry():
    cache = VerifiedTokens()
    cache.put("live", {"sub": "u1", "exp": time.time() + 60})
    cache.put("expired", {"sub": "u2", "exp": time.time() - 1})
    assert cache.get("live") == {"sub": "u1", "exp": cache.get("live")["exp"]}
    assert cache.get("expired") is None and cache.get("never-seen") is None


def test_the_oldest_entries_go_first_when_full():
    cache = VerifiedTokens(max_entries=3)
    for n in range(5):
        cache.put(f"t{n}", {"sub": f"u{n}", "exp": time.time() + 60})
    assert [cache.get(f"t{n}") is not None for n in range(5)] == [False, False, True, True, True]
