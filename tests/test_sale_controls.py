"""The operator steers a live sale (`PATCH /api/sales/<id>`): pause, pace, cap and the settings
that may change, each holding at once; every change in the audit log."""

from __future__ import annotations

import secrets
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from werkzeug.test import Client

from common.auditing import audit, reconcile
from common.billing.payments import apply_intent
from common.flash_sale import controls, reservations, sale_keys, sales, waiting_room
from common.platform.errors import QueueFull, RateLimited, SaleNotOpen
from tests.accounts import bearer, create_product, register, register_admin
from tests.waiting_room_helpers import (
    card_token,
    drain,
    gateway_for,
    make_product,
    open_sale,
    payment_context,
)


def http_sale(client, admin_token: str, stock: int = 10, **fields) -> dict:
    product = create_product(client, admin_token, stock=stock)
    now = datetime.now(UTC)
    response = client.post("/api/sales", headers=bearer(admin_token), json={
        "product_id": product["id"], "stock": stock, "price_cents": 1500,
        "starts_at": (now - timedelta(seconds=1)).isoformat(),
        "ends_at": (now + timedelta(hours=1)).isoformat(), "lobby_opens_at": None,
        "entry": {"verified_email": False}, **fields})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def statuses(clients, sale_id: str, ticket_ids: list[str]) -> list[str]:
    return [clients.sales_redis.hget(sale_keys.ticket_key(sale_id, tid), "status") for tid in ticket_ids]


def admit_many(clients, sale_id: str, count: int) -> list[str]:
    return [waiting_room.admit(clients.sales_redis, sale_id, f"user-{secrets.token_hex(6)}", 1).ticket["id"]
            for _ in range(count)]


def test_only_an_admin_steers_a_sale_and_only_the_contracts_fields(client, clients):
    admin = register_admin(client, clients)
    shopper = register(client)
    sale = http_sale(client, admin["access_token"])
    path = f"/api/sales/{sale['id']}"

    assert client.patch(path, json={"paused": True},
                        headers=bearer(shopper["access_token"])).status_code == 403
    for body in ({"stock_total": 5}, {"paused": True, "price_cents": 1},
                 {"queue_cap": 0}, {"queue_cap": "ten"}, {"outflow_per_second": 0},
                 {"outflow_per_second": -2}, {"reservation_ttl_seconds": 0},
                 {"presence_timeout_seconds": 3}, {"paused": "maybe"},
                 {"ends_at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat()},
                 {"ends_at": "tomorrow"}, {}):
        response = client.patch(path, json=body, headers=bearer(admin["access_token"]))
        assert response.status_code == 422, (body, response.get_json())
        assert response.get_json()["error"]["code"] == "validation_error"
    assert client.patch("/api/sales/sal_nope", json={"paused": True},
                        headers=bearer(admin["access_token"])).status_code == 404
    # Nothing of the refused changes took hold.
    assert client.get(path).get_json()["paused"] is False


def test_changes_show_on_the_sale_and_in_the_audit_log(client, clients):
    admin = register_admin(client, clients)
    sale = http_sale(client, admin["access_token"])
    path = f"/api/sales/{sale['id']}"
    assert sale["pacing"] == {"mode": "operator", "per_second": None, "reason": None}
    new_end = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
    response = client.patch(path, headers=bearer(admin["access_token"]), json={
        "outflow_per_second": 5, "queue_cap": 100, "reservation_ttl_seconds": 120,
        "ends_at": new_end.isoformat()})
    assert response.status_code == 200, response.get_json()
    shown = client.get(path).get_json()
    assert shown["outflow_per_second"] == 5 and shown["queue_cap"] == 100
    assert shown["reservation_ttl_seconds"] == 120 and shown["paused"] is False
    assert shown["ends_at"] == new_end.isoformat().replace("+00:00", "Z")
    assert shown["pacing"] == {"mode": "operator", "per_second": 5, "reason": "set by the operator"}
    config = clients.sales_redis.hgetall(sale_keys.config_key(sale["id"]))
    assert config["ttl_s"] == "120" and config["queue_cap"] == "100"
    assert config["ends_at_ms"] == str(int(new_end.timestamp() * 1000))

    # Back to no limit: null.
    assert client.patch(path, json={"outflow_per_second": None, "queue_cap": None},
                        headers=bearer(admin["access_token"])).status_code == 200
    assert "queue_cap" not in clients.sales_redis.hgetall(sale_keys.config_key(sale["id"]))

    shopper = register(client)
    assert client.get("/api/admin/audit-log", headers=bearer(shopper["access_token"])).status_code == 403
    log = client.get(f"/api/admin/audit-log?sale_id={sale['id']}&limit=2",
                     headers=bearer(admin["access_token"])).get_json()
    newest, before = log["items"]
    assert newest["action"] == "sale.updated" and newest["actor"] == admin["user"]["id"]
    assert newest["changes"]["queue_cap"] == {"before": 100, "after": None}
    assert before["changes"]["outflow_per_second"] == {"before": None, "after": 5}
    assert before["changes"]["reservation_ttl_seconds"] == {"before": 300, "after": 120}
    rest = client.get(f"/api/admin/audit-log?sale_id={sale['id']}&cursor={log['next_cursor']}",
                      headers=bearer(admin["access_token"])).get_json()
    assert [entry["action"] for entry in rest["items"]] == ["sale.created"]
    assert rest["items"][0]["changes"]["stock"] == {"before": None, "after": 10}
    assert rest["next_cursor"] is None


def test_the_cap_answers_queue_full_on_both_admission_paths(app, client, clients, settings):
    admin = register_admin(client, clients)
    sale = http_sale(client, admin["access_token"])
    assert client.patch(f"/api/sales/{sale['id']}", json={"queue_cap": 2},
                        headers=bearer(admin["access_token"])).status_code == 200
    served, flask_only = Client(app.wsgi_app), Client(app.wsgi_app.app)
    answers = []
    for path in (served, flask_only, served, flask_only):
        shopper = register(client)
        response = path.post(f"/api/sales/{sale['id']}/tickets", json={},
                             headers=bearer(shopper["access_token"]))
        answers.append((response.status_code, (response.get_json().get("error") or {}).get("code")))
    assert answers[:2] == [(202, None), (202, None)]
    assert answers[2:] == [(409, "queue_full"), (409, "queue_full")]
    # A ticket that ends frees a place.
    holder = clients.sales_redis.hvals(sale_keys.live_tickets_key(sale["id"]))[0]
    waiting_room.release_ticket(clients.sales_redis, holder, waiting_room.TicketStatus.CANCELLED,
                                (waiting_room.TicketStatus.QUEUED,))
    assert len(admit_many(clients, sale["id"], 1)) == 1
    with pytest.raises(QueueFull):
        admit_many(clients, sale["id"], 1)


def test_pause_holds_every_ticket_and_resume_decides_them(clients):
    sale_id = open_sale(clients, stock=20)
    controls.update_sale(clients.db, clients.sales_redis, sale_id, {"paused": True}, actor="ops")
    tickets = admit_many(clients, sale_id, 6)  # admission goes on
    drain(clients, sale_id)
    assert statuses(clients, sale_id, tickets) == ["queued"] * 6
    seen = waiting_room.read_ticket(clients.sales_redis, tickets[-1])
    assert seen["paused"] is True and seen["eta_seconds"] is None and seen["position"] == 6
    # The shown rate is -1 while paused: the operator's stats say 0 decisions a second.
    assert sales.sale_stats(clients.db, clients.sales_redis, sale_id)["decisions_per_second"] == 0

    controls.update_sale(clients.db, clients.sales_redis, sale_id, {"paused": False}, actor="ops")
    seen = waiting_room.read_ticket(clients.sales_redis, tickets[-1])
    assert "paused" not in seen and seen["eta_seconds"] is not None
    drain(clients, sale_id)
    assert statuses(clients, sale_id, tickets) == ["reserved"] * 6


def test_a_pause_between_read_and_decision_holds_the_batch_in_order(clients):
    """reserve_batch.lua checks the pause itself: a decider that read entries just before the
    pause decides none of them, and they are decided first after it, in arrival order."""
    sale_id = open_sale(clients, stock=20)
    tickets = admit_many(clients, sale_id, 4)
    clients.sales_redis.hset(sale_keys.config_key(sale_id), "paused", "1")
    assert {outcome for _, outcome in reservations.decide_batch(clients.sales_redis, sale_id, tickets)} \
        == {"paused"}
    assert statuses(clients, sale_id, tickets) == ["queued"] * 4
    clients.sales_redis.hdel(sale_keys.config_key(sale_id), "paused")
    drain(clients, sale_id)
    assert statuses(clients, sale_id, tickets) == ["reserved"] * 4


def test_a_pace_of_two_a_second_gives_at_most_two_decisions_a_second(clients):
    sale_id = open_sale(clients, stock=20)
    controls.update_sale(clients.db, clients.sales_redis, sale_id, {"outflow_per_second": 2},
                         actor="ops")
    tickets = admit_many(clients, sale_id, 8)
    # The ETA follows the pace: the 8th waits about 4 s.
    assert waiting_room.read_ticket(clients.sales_redis, tickets[-1])["eta_seconds"] == 4
    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        reservations.drain_sale(clients.sales_redis, gateway_for(clients), sale_id,
                                reservations.DrainOptions(idle_seconds=1.0), pool)
    elapsed = time.monotonic() - started
    assert statuses(clients, sale_id, tickets) == ["reserved"] * 8
    decided_at = [int(clients.sales_redis.hget(sale_keys.ticket_key(sale_id, tid), "expires_at_ms"))
                  - 300_000 for tid in tickets]
    per_second = Counter(moment // 1000 for moment in decided_at)
    assert max(per_second.values()) <= 2, per_second
    assert decided_at == sorted(decided_at)  # in arrival order
    assert elapsed >= 3.0


def test_a_shorter_reservation_time_applies_to_new_reservations_only(clients):
    sale_id = open_sale(clients, stock=20, ttl=300)
    first = admit_many(clients, sale_id, 1)
    drain(clients, sale_id)
    controls.update_sale(clients.db, clients.sales_redis, sale_id, {"reservation_ttl_seconds": 60},
                         actor="ops")
    second = admit_many(clients, sale_id, 1)
    drain(clients, sale_id)

    def ttl_of(ticket_id: str) -> float:
        fields = clients.sales_redis.hmget(sale_keys.ticket_key(sale_id, ticket_id),
                                           "expires_at_ms", "updated_at_ms")
        return (int(fields[0]) - int(fields[1] or 0)) / 1000

    assert ttl_of(first[0]) > 250 and ttl_of(second[0]) <= 60


# ------------------------------------------------------------------ end and cancel


def pay(clients, ticket_id: str) -> str:
    intent_id = waiting_room.read_ticket(clients.sales_redis, ticket_id)["reservation"]["payment_intent_id"]
    ctx = payment_context(clients)
    ctx.gateway.confirm_with_card_token(intent_id, card_token(clients.settings.stripe_api_base),
                                        email="shopper@example.com")
    return apply_intent(ctx, intent_id)


def audit_problems(clients, sale_id: str) -> list[str]:
    snapshot = audit.read_sale_snapshot(
        clients.sales_redis, clients.db, sale_id,
        stripe_client=clients.stripe)
    return [str(v) for v in audit.audit_sale(snapshot, settled=True, allow_reserved=True)]


def test_end_ends_waiting_tickets_sold_out_and_reservations_keep_their_time(client, clients):
    admin = register_admin(client, clients)
    sale_id = open_sale(clients, stock=5)
    reserved = admit_many(clients, sale_id, 2)
    drain(clients, sale_id)
    expiries = [clients.sales_redis.hget(sale_keys.ticket_key(sale_id, t), "expires_at_ms") for t in reserved]
    waiting = admit_many(clients, sale_id, 3)
    shopper = register(client)
    refused = client.post(f"/api/sales/{sale_id}/end", headers=bearer(shopper["access_token"]))
    assert refused.status_code == 403

    response = client.post(f"/api/sales/{sale_id}/end", headers=bearer(admin["access_token"]))
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["status"] == "ended"
    with pytest.raises(SaleNotOpen):
        admit_many(clients, sale_id, 1)
    drain(clients, sale_id)
    assert statuses(clients, sale_id, waiting) == ["sold_out"] * 3
    assert {waiting_room.read_ticket(clients.sales_redis, t).get("reason") for t in waiting} == {"sale_ended"}
    assert statuses(clients, sale_id, reserved) == ["reserved"] * 2
    assert [clients.sales_redis.hget(sale_keys.ticket_key(sale_id, t), "expires_at_ms")
            for t in reserved] == expiries
    assert pay(clients, reserved[0]) == "paid"  # its time to pay holds
    assert audit_problems(clients, sale_id) == []
    log = client.get(f"/api/admin/audit-log?sale_id={sale_id}", headers=bearer(admin["access_token"]))
    assert log.get_json()["items"][0]["action"] == "sale.ended"


def test_end_during_the_lobby_ends_lobby_tickets(clients):
    product_id = make_product(clients, 10)
    now = datetime.now(UTC)
    sale = sales.create_sale(clients.db, clients.sales_redis, product_id=product_id, stock=5,
                             price_cents=1000, starts_at=now + timedelta(minutes=5),
                             ends_at=now + timedelta(hours=1), lobby_opens_at=now - timedelta(seconds=1))
    lobby = admit_many(clients, sale["_id"], 3)
    assert statuses(clients, sale["_id"], lobby) == ["lobby"] * 3
    controls.end_sale(clients.db, clients.sales_redis, sale["_id"], actor="ops")
    assert statuses(clients, sale["_id"], lobby) == ["sold_out"] * 3
    assert waiting_room.read_ticket(clients.sales_redis, lobby[0])["reason"] == "sale_ended"
    assert not clients.sales_redis.hlen(sale_keys.live_tickets_key(sale["_id"]))
    assert audit_problems(clients, sale["_id"]) == []


def test_cancel_ends_every_live_ticket_and_refunds_every_paid_order(client, clients):
    admin = register_admin(client, clients)
    sale_id = open_sale(clients, stock=4)
    bought = admit_many(clients, sale_id, 2)
    drain(clients, sale_id)
    assert [pay(clients, t) for t in bought] == ["paid", "paid"]
    held = admit_many(clients, sale_id, 1)
    drain(clients, sale_id)
    waiting = admit_many(clients, sale_id, 2)
    path = f"/api/sales/{sale_id}/cancel"
    token = bearer(admin["access_token"])
    shopper = register(client)
    assert client.post(path, json={"confirm": sale_id},
                       headers=bearer(shopper["access_token"])).status_code == 403
    for body in ({}, {"confirm": "sal_other"}, {"confirm": sale_id, "force": True}):
        assert client.post(path, json=body, headers=token).status_code == 422, body
    assert statuses(clients, sale_id, held) == ["reserved"]

    response = client.post(path, json={"confirm": sale_id}, headers=token)
    assert response.status_code == 200, response.get_json()
    drain(clients, sale_id)
    everyone = held + waiting
    assert statuses(clients, sale_id, everyone) == ["cancelled"] * 3
    reasons = {waiting_room.read_ticket(clients.sales_redis, t)["reason"] for t in everyone}
    assert reasons == {"sale_cancelled"}
    orders = list(clients.db.orders.find({"sale_id": sale_id}))
    assert len(orders) == 2 and {o["status"] for o in orders} == {"refunded"}
    refunds = [clients.stripe.v1.refunds.list(params={"payment_intent": o["payment_intent_id"]}).data
               for o in orders]
    assert [len(found) for found in refunds] == [1, 1]
    assert all(waiting_room.read_ticket(clients.sales_redis, t)["refunded"] for t in bought)
    assert audit_problems(clients, sale_id) == []
    # Final, and a second call refunds nothing twice.
    assert client.post(path, json={"confirm": sale_id}, headers=token).status_code == 200
    assert client.post(f"/api/sales/{sale_id}/end", headers=token).status_code == 200
    assert [len(clients.stripe.v1.refunds.list(params={"payment_intent": o["payment_intent_id"]}).data)
            for o in orders] == [1, 1]
    assert client.get(f"/api/sales/{sale_id}").get_json()["status"] == "ended"


def test_a_cancel_cut_short_is_finished_by_reconcile_and_the_auditor_sees_money_kept(clients):
    sale_id = open_sale(clients, stock=2)
    bought = admit_many(clients, sale_id, 1)
    drain(clients, sale_id)
    assert pay(clients, bought[0]) == "paid"
    # The process died right after recording the cancellation: nothing refunded yet.
    controls.close_sale(clients.db, clients.sales_redis, sale_id, controls.Closing.CANCELLED)
    kept = audit_problems(clients, sale_id)
    assert kept and all(problem.startswith("cancelled sale:") for problem in kept), kept
    report = reconcile.reconcile_sale(payment_context(clients), sale_id)
    assert report.consistent, report.problems
    assert clients.db.orders.find_one({"sale_id": sale_id})["status"] == "refunded"
    assert audit_problems(clients, sale_id) == []


def test_the_pace_set_by_stripes_health_shows_and_holds(client, clients):
    """health_pacing.py writes the counters' auto_pace; the sale shows it as `auto` while it is
    below the operator's pace, and reserve_batch.lua decides nothing at 0."""
    admin = register_admin(client, clients)
    sale = http_sale(client, admin["access_token"])
    counters = sale_keys.counters_key(sale["id"])
    clients.sales_redis.hset(counters, mapping={"auto_pace": "0.0", "auto_reason": "Stripe: slow"})
    tickets = admit_many(clients, sale["id"], 2)
    assert {o for _, o in reservations.decide_batch(clients.sales_redis, sale["id"], tickets)} == {"deferred"}
    assert client.get(f"/api/sales/{sale['id']}").get_json()["pacing"] == {
        "mode": "auto", "per_second": 0.0, "reason": "Stripe: slow"}
    clients.sales_redis.hset(counters, "auto_pace", "8.0")
    assert client.patch(f"/api/sales/{sale['id']}", json={"outflow_per_second": 4},
                        headers=bearer(admin["access_token"])).status_code == 200
    assert client.get(f"/api/sales/{sale['id']}").get_json()["pacing"]["mode"] == "operator"
    clients.sales_redis.hdel(counters, "auto_pace", "auto_reason")
    drain(clients, sale["id"])
    assert statuses(clients, sale["id"], tickets) == ["reserved"] * 2


def test_the_report_counts_what_happened_without_reading_tickets(client, clients):
    admin = register_admin(client, clients)
    sale_id = open_sale(clients, stock=2)
    tickets = admit_many(clients, sale_id, 3)
    with pytest.raises(RateLimited):  # the same shopper again at once: 429, counted
        for _ in range(3):
            waiting_room.admit(clients.sales_redis, sale_id, "hammer", 1,
                               waiting_room.AdmissionRate.parse("1/minute"))
    drain(clients, sale_id)
    assert pay(clients, tickets[0]) == "paid"
    path = f"/api/admin/sales/{sale_id}/report"
    shopper = register(client)
    assert client.get(path, headers=bearer(shopper["access_token"])).status_code == 403

    report = client.get(path, headers=bearer(admin["access_token"])).get_json()
    assert report["tickets_issued"] == 4
    assert sum(row["admissions"] for row in report["admissions_per_minute"]) == 4
    assert report["wait_seconds"]["decided"] == 4 and report["wait_seconds"]["p50"] is not None
    assert report["wait_seconds"]["max"] >= 0
    assert report["outcomes"]["paid"] == 1 and report["outcomes"]["sold_out"] == 2
    assert report["reserved"] == 2 and report["conversion"] == 0.5
    assert report["rate_limited"] == 1 and report["paid_orders"] == 1 and report["units_sold"] == 1

    as_csv = client.get(path, headers={**bearer(admin["access_token"]), "Accept": "text/csv"})
    assert as_csv.status_code == 200 and as_csv.mimetype == "text/csv"
    rows = as_csv.get_data(as_text=True).splitlines()
    assert rows[0] == "section,key,value" and "summary,conversion,0.5" in rows
    assert "outcomes,paid,1" in rows
