"""Cursors of the paged lists (common/platform/pagination.py): they round-trip, are opaque
URL-safe strings, and one we did not make is a 422, never a 500."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from common.platform.errors import ValidationFailed
from common.platform.pagination import (
    decode_cursor,
    decode_id_cursor,
    encode_cursor,
    encode_id_cursor,
)


def test_a_cursor_names_the_moment_to_the_millisecond_and_the_id() -> None:
    moment = datetime(2026, 12, 1, 10, 30, 15, 123456, tzinfo=UTC)
    cursor = encode_cursor(moment, "prd_0123456789abcdef")
    assert cursor.replace("-", "").replace("_", "").isalnum()  # URL-safe, no padding
    assert decode_cursor(cursor) == (datetime(2026, 12, 1, 10, 30, 15, 123000, tzinfo=UTC),
                                     "prd_0123456789abcdef")


def test_a_naive_time_is_taken_as_utc() -> None:
    naive = datetime(2026, 12, 1, 10, 30, 15)
    assert decode_cursor(encode_cursor(naive, "x"))[0] == naive.replace(tzinfo=UTC)


def test_id_cursors_round_trip() -> None:
    assert decode_id_cursor(encode_id_cursor("tkt_00ff_1a")) == "tkt_00ff_1a"


@pytest.mark.parametrize("cursor", ["", "%%%", "bm90LWpzb24", "WzEsMl0", "WyJhIiwiYiJd",
                                    "W251bGwsImEiXQ", "A" * 512])
def test_a_cursor_we_did_not_make_is_a_validation_error(cursor: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        decode_cursor(cursor)
    assert refused.value.details == {"fields": {"cursor": ["Not a valid cursor."]}}


@pytest.mark.parametrize("cursor", ["", "%%%", encode_id_cursor("a b"), encode_id_cursor("é"),
                                    encode_id_cursor("$gt")])
def test_an_id_cursor_we_did_not_make_is_a_validation_error(cursor: str) -> None:
    with pytest.raises(ValidationFailed):
        decode_id_cursor(cursor)
