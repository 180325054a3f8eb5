"""The admission rate limit as admit.lua's GCRA takes it (common/flash_sale/waiting_room.py
AdmissionRate.parse): admissions spaced `interval_ms` apart, `burst - 1` intervals of
allowance."""

from __future__ import annotations

import pytest

from common.flash_sale.waiting_room import UNLIMITED, AdmissionRate


@pytest.mark.parametrize(("text", "interval_ms", "allowance_ms"), [
    ("20 per second", 50, 950),
    ("20/second", 50, 950),
    ("1 per second", 1000, 0),
    ("10 per minute", 6000, 54_000),
    ("3 per 2 seconds", 667, 1334),
    ("5000 per second", 1, 4999),  # never 0: 0 means unlimited to admit.lua
])
def test_a_limit_becomes_an_interval_and_a_burst_allowance(text: str, interval_ms: int,
                                                           allowance_ms: int) -> None:
    rate = AdmissionRate.parse(text)
    assert (rate.interval_ms, rate.allowance_ms, rate.text) == (interval_ms, allowance_ms, text)


def test_unlimited_spaces_nothing() -> None:
    assert (UNLIMITED.interval_ms, UNLIMITED.allowance_ms) == (0, 0)


@pytest.mark.parametrize("text", ["", "fast", "20 per fortnight"])
def test_a_limit_that_does_not_parse_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        AdmissionRate.parse(text)
