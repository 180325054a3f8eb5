"""The lobby's order function (common/flash_sale/lobby.py) against the standard library's HMAC:
its precomputed-pad HMAC-SHA256 must give the same digests, so the same order, for any key."""

from __future__ import annotations

import hashlib
import hmac
import secrets

import pytest

from common.flash_sale import lobby


@pytest.mark.parametrize("key_length", [0, 1, 32, 63, 64, 65, 200])
def test_keyed_hmac_is_hmac_sha256(key_length):
    key = secrets.token_bytes(key_length)
    keyed = lobby.keyed_hmac_sha256(key)
    for message in (b"", b"tkt_x", secrets.token_bytes(100), "tkt_é".encode()):
        assert keyed(message) == hmac.new(key, message, hashlib.sha256).digest()


def test_the_order_is_the_ids_sorted_by_their_raw_hmac():
    key = secrets.token_bytes(32)
    ids = [f"tkt_{secrets.token_hex(16)}" for _ in range(2_000)]
    expected = sorted(ids, key=lambda t: hmac.new(key, t.encode("utf-8"), hashlib.sha256).digest())
    assert lobby.draw_order(key, ids) == expected
    assert lobby.draw_order(key, reversed(ids)) == expected
