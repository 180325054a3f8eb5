"""Keyset pagination, newest first, over `(created_at, _id)`.

A cursor is an opaque string naming the last item of the previous page; a page never skips or
repeats an item when others are inserted meanwhile (unlike offsets).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo import DESCENDING
from pymongo.collection import Collection

from common.platform.errors import ValidationFailed

MAX_PAGE_SIZE = 100


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None


def encode_cursor(created_at: datetime, doc_id: str) -> str:
    if created_at.tzinfo is None:
        created_at = created_at.replace(tzinfo=UTC)
    millis = round(created_at.timestamp() * 1000)
    raw = json.dumps([millis, doc_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The `(created_at, _id)` a cursor names; a cursor we did not make is a 422."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        millis, doc_id = json.loads(raw)
        if not isinstance(millis, int) or not isinstance(doc_id, str):
            raise ValueError(cursor)
        return datetime.fromtimestamp(millis / 1000, tz=UTC), doc_id
    except (ValueError, TypeError, binascii.Error, OverflowError):
        raise ValidationFailed(details={"fields": {"cursor": ["Not a valid cursor."]}}) from None


def encode_id_cursor(last_id: str) -> str:
    """A cursor over a list ordered by id alone (a sorted set paged with ZRANGEBYLEX)."""
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_id_cursor(cursor: str) -> str:
    """The id an id cursor names; a cursor we did not make is a 422."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, binascii.Error):
        raw = ""
    if not raw or not raw.isascii() or not raw.replace("_", "").isalnum():
        raise ValidationFailed(details={"fields": {"cursor": ["Not a valid cursor."]}})
    return raw


def _moment(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def newest_first(collection: Collection, query: dict[str, Any], *, limit: int,
                 cursor: str | None = None) -> Page:
    """One page of `collection` matching `query`, newest first, after `cursor`."""
    limit = max(1, min(limit, MAX_PAGE_SIZE))
    selector = dict(query)
    after: tuple[datetime, str] | None = None
    if cursor:
        after = decode_cursor(cursor)
        # `$lte` and an exact cut below: the embedded server compares times to the second
        # (while it sorts them to the millisecond), so `$lt` there would lose items.
        selector["created_at"] = {"$lte": after[0]}
    docs: list[dict[str, Any]] = []
    with collection.find(selector).sort(
            [("created_at", DESCENDING), ("_id", DESCENDING)]) as found:
        for doc in found:
            if after is not None and (_moment(doc["created_at"]), doc["_id"]) >= after:
                continue
            docs.append(doc)
            if len(docs) > limit:
                break
    if len(docs) <= limit:
        return Page(docs, None)
    last = docs[limit - 1]
    return Page(docs[:limit], encode_cursor(last["created_at"], last["_id"]))
