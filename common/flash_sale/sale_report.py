"""The operator's report of a sale (`GET /api/admin/sales/<id>/report`), from what the system
counts as it goes: the sale's counters, the report hash that reserve_batch.lua fills as tickets
are decided (admissions by minute, the wait from admission to decision in buckets, the longest
wait), the refusals admit.lua counts (429s, challenges) and the paid and refunded orders (two
indexed counts). Nothing here reads the tickets, so a report costs the same for any sale size.

Admissions per minute count the tickets decided so far by the minute they were admitted (a
ticket still waiting is counted once decided); waits are bucket upper bounds (p50, p95), the
longest one exact.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

import redis
from pymongo.database import Database

from common.flash_sale import sale_keys
from common.flash_sale.sales import get_sale_doc, read_counters
from common.platform.errors import NotFound
from common.shop.orders import OrderStatus


def _percentile(buckets: dict[int, int], share: float) -> float | None:
    """`buckets`: count by upper bound in ms (reserve_batch.lua's WAIT_BUCKETS_MS)."""
    total = sum(buckets.values())
    if not total:
        return None
    seen = 0
    for bound in sorted(buckets):
        seen += buckets[bound]
        if seen >= share * total:
            return bound / 1000
    return max(buckets) / 1000


def sale_report(db: Database, redis_client: redis.Redis, sale_id: str) -> dict[str, Any]:
    get_sale_doc(db, sale_id)
    counters = read_counters(redis_client, sale_id)
    if counters is None:
        raise NotFound("The sale is not loaded.")
    pipe = redis_client.pipeline(transaction=False)
    pipe.hgetall(sale_keys.report_key(sale_id))
    pipe.hmget(sale_keys.counters_key(sale_id), "rate_limited", "challenges_refused")
    raw, (rate_limited, challenges_refused) = pipe.execute()
    minutes = sorted((int(name.split(":", 1)[1]), int(count)) for name, count in raw.items()
                     if name.startswith("admitted:"))
    waits = {int(name.split(":", 1)[1]): int(count) for name, count in raw.items()
             if name.startswith("wait:")}
    reserved_total = int(raw.get("reserved_total") or 0)
    paid_orders = db.orders.count_documents({"sale_id": sale_id, "status": str(OrderStatus.PAID)})
    refunded = db.orders.count_documents({"sale_id": sale_id, "status": str(OrderStatus.REFUNDED)})
    outcomes = {"paid": counters.paid, "sold_out": counters.sold_out, "expired": counters.expired,
                "abandoned": counters.abandoned, "cancelled": counters.cancelled,
                "payment_failed": counters.payment_failed, "not_selected": counters.not_selected,
                "waiting": counters.queued + counters.lobby}
    return {
        "sale_id": sale_id,
        "tickets_issued": counters.issued,
        "admissions_per_minute": [
            {"minute": datetime.fromtimestamp(minute, tz=UTC).isoformat().replace("+00:00", "Z"),
             "admissions": count} for minute, count in minutes],
        "wait_seconds": {"decided": sum(waits.values()), "p50": _percentile(waits, 0.5),
                         "p95": _percentile(waits, 0.95),
                         "max": int(raw.get("wait_max_ms") or 0) / 1000 if waits else None},
        "outcomes": outcomes,
        "reserved": reserved_total,
        "conversion": round(counters.paid / reserved_total, 4) if reserved_total else None,
        "expired": counters.expired, "abandoned": counters.abandoned,
        "cancelled": counters.cancelled, "refunded": refunded, "paid_orders": paid_orders,
        "units_sold": counters.sold, "units_returned": counters.returned,
        "rate_limited": int(rate_limited or 0), "challenges_refused": int(challenges_refused or 0),
    }


def report_csv(report: dict[str, Any]) -> str:
    """The report as CSV rows `section,key,value` (one table, for a spreadsheet)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["section", "key", "value"])
    for name in ("sale_id", "tickets_issued", "reserved", "conversion", "expired", "abandoned",
                 "cancelled", "refunded", "paid_orders", "units_sold", "units_returned",
                 "rate_limited", "challenges_refused"):
        writer.writerow(["summary", name, "" if report[name] is None else report[name]])
    for name, value in report["wait_seconds"].items():
        writer.writerow(["wait_seconds", name, "" if value is None else value])
    for name, value in report["outcomes"].items():
        writer.writerow(["outcomes", name, value])
    for row in report["admissions_per_minute"]:
        writer.writerow(["admissions_per_minute", row["minute"], row["admissions"]])
    return out.getvalue()
