"""An insider who knows everything the server knows before the beacon's round (the seed, every
other entry) and mints an accomplice's ticket id to win place 1 wins no more often than any
other entry under `hmac-sha256-drand-v2`; under `hmac-sha256-v1` the same insider nearly
always wins. The round's randomness, unknown until after the close, is drawn here as fresh
random bytes per draw (a drand round is 32 bytes that nobody could predict)."""

from __future__ import annotations

import math
import secrets

from common.flash_sale import beacon_draw, lobby

ENTRIES = 20  # the accomplice and 19 honest entries
DRAWS = 2_000
CANDIDATES = 200  # ids the insider may try before the close


def insider_pick(seed: bytes, candidates: list[str]) -> str:
    """The best the insider can do with what they know: the id that sorts first under the seed."""
    return lobby.draw_order(seed, candidates)[0]


def first_place_wins(algorithm: str) -> tuple[int, int]:
    """(draws won by the accomplice, draws won by one fixed honest entry)."""
    accomplice_wins = honest_wins = 0
    for _ in range(DRAWS):
        seed = secrets.token_bytes(32)
        honest = [f"tkt_{secrets.token_hex(12)}" for _ in range(ENTRIES - 1)]
        accomplice = insider_pick(seed, [f"tkt_{secrets.token_hex(12)}" for _ in range(CANDIDATES)])
        entries = [*honest, accomplice]
        if algorithm == lobby.ALGORITHM:
            key = seed
        else:
            randomness = secrets.token_bytes(32).hex()  # the round, after the close
            key = beacon_draw.draw_key(randomness, beacon_draw.entries_digest(entries), seed.hex())
        first = lobby.draw_order(key, entries)[0]
        accomplice_wins += first == accomplice
        honest_wins += first == honest[0]
    return accomplice_wins, honest_wins


def test_the_insider_wins_no_more_often_than_chance_with_the_beacon():
    expected = DRAWS / ENTRIES
    spread = 4.5 * math.sqrt(DRAWS * (1 / ENTRIES) * (1 - 1 / ENTRIES))  # 4.5 standard deviations
    accomplice, honest = first_place_wins(beacon_draw.ALGORITHM)
    assert abs(accomplice - expected) < spread, (accomplice, expected)
    assert abs(honest - expected) < spread, (honest, expected)


def test_the_same_insider_wins_almost_always_with_a_known_seed():
    # The control: the strategy above is a real attack, which only the beacon defeats.
    accomplice, _ = first_place_wins(lobby.ALGORITHM)
    assert accomplice > 0.85 * DRAWS
