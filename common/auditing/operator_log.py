"""The operator's audit log: who changed what on a sale, when, with the values before and after.

One MongoDB document per action (collection `audit_log`, newest first by `created_at`), written
after the action has taken effect, so the log never shows a change that did not happen. Read
by `GET /api/admin/audit-log`, paged like the catalogue (platform/pagination.py).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pymongo.database import Database

from common.platform import ids
from common.platform.clock import utc_now
from common.platform.pagination import Page, newest_first


class OperatorAction(StrEnum):
    SALE_CREATED = "sale.created"
    SALE_UPDATED = "sale.updated"
    SALE_ENDED = "sale.ended"
    SALE_CANCELLED = "sale.cancelled"


def record(db: Database, *, actor: str, action: OperatorAction, sale_id: str | None,
           changes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Store one entry; `changes` is `{field: {"before": ..., "after": ...}}` (JSON values)."""
    entry = {"_id": ids.new_request_id(), "created_at": utc_now(), "actor": actor,
             "action": action.value, "sale_id": sale_id, "changes": changes}
    db.audit_log.insert_one(entry)
    return entry


def public_entry(entry: dict[str, Any]) -> dict[str, Any]:
    at = entry["created_at"]
    return {"at": at.isoformat().replace("+00:00", "Z") if at.tzinfo else at.isoformat() + "Z",
            "actor": entry["actor"], "action": entry["action"], "sale_id": entry.get("sale_id"),
            "changes": entry.get("changes") or {}}


def page(db: Database, *, limit: int, cursor: str | None = None,
         sale_id: str | None = None) -> dict[str, Any]:
    """Newest first; `sale_id` narrows it to one sale."""
    found: Page = newest_first(db.audit_log, {"sale_id": sale_id} if sale_id else {},
                               limit=limit, cursor=cursor)
    return {"items": [public_entry(entry) for entry in found.items], "next_cursor": found.next_cursor}
