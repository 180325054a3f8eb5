"""Accounts a sale can trust, through the API on the real servers: verified email (the mailed
one-time link, read from the SMTP sink's files), a sale's `verified_email` entry rule on both
admission paths, aliases of an address, disposable domains, and accounts made before any of it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from werkzeug.test import Client

from common.accounts import email_verification, users
from common.development.smtp_sink import message_paths, read_message
from tests.accounts import PASSWORD, bearer, create_product, register, register_admin, unique_email


def mail_to(mail_dir: Path, address: str, timeout: float = 10) -> list:
    """The messages the sink kept for `address`, oldest first (waits for one)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [read_message(path) for path in message_paths(mail_dir)]
        found = [message for message in found if message["To"] == address]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def link_in(message) -> str:
    body = message.get_body(preferencelist=("plain",)).get_content()
    return next(word for word in body.split() if "/verify-email?token=" in word)


def mail_a_link(clients, settings, servers, session: dict) -> str:
    """What the Celery task does for this account; the token of the link it mailed."""
    assert email_verification.send_verification(
        clients.db, session["user"]["id"], public_url="http://shop.test", smtp_url=settings.smtp_url,
        sender=settings.mail_from)
    messages = mail_to(servers.mail_dir, session["user"]["email"])
    assert messages, "no mail in the sink"
    link = link_in(messages[-1])
    assert urlsplit(link).path == "/verify-email" and link.startswith("http://shop.test/")
    return parse_qs(urlsplit(link).query)["token"][0]


def make_sale(client, admin_token: str, **entry: bool) -> dict:
    product = create_product(client, admin_token, stock=10)
    now = datetime.now(UTC)
    body = {"product_id": product["id"], "stock": 5, "price_cents": 1000,
            "starts_at": (now - timedelta(seconds=1)).isoformat(),
            "ends_at": (now + timedelta(hours=1)).isoformat(), "lobby_opens_at": None}
    if entry:
        body["entry"] = entry
    response = client.post("/api/sales", json=body, headers=bearer(admin_token))
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def flask_path(app) -> Client:
    """A client of the Flask app behind the admission fast path (api/admission_fast_path.py)."""
    return Client(app.wsgi_app.app)


def test_a_sale_shows_its_entry_requirements_with_the_contract_defaults(client, clients):
    admin = register_admin(client, clients)
    sale = make_sale(client, admin["access_token"])
    assert sale["entry"] == {"verified_email": True, "challenge": False, "one_card": True}
    shown = client.get(f"/api/sales/{sale['id']}").get_json()
    assert shown["entry"] == sale["entry"]
    other = make_sale(client, admin["access_token"], verified_email=False, challenge=True)
    assert other["entry"] == {"verified_email": False, "challenge": True, "one_card": True}
    refused = client.post("/api/sales", headers=bearer(admin["access_token"]), json={
        "product_id": "x", "stock": 1, "price_cents": 1, "starts_at": sale["starts_at"],
        "ends_at": sale["ends_at"], "entry": {"verified_email": True, "captcha": True}})
    assert refused.status_code == 422


def test_an_unverified_shopper_is_refused_on_both_admission_paths(app, client, clients):
    admin = register_admin(client, clients)
    sale = make_sale(client, admin["access_token"])
    open_to_all = make_sale(client, admin["access_token"], verified_email=False)
    shopper = register(client, verified=False)
    assert shopper["user"]["email_verified"] is False
    path = f"/api/sales/{sale['id']}/tickets"
    for http in (client, flask_path(app)):
        refused = http.post(path, json={"quantity": 1}, headers=bearer(shopper["access_token"]))
        assert refused.status_code == 403, refused.get_json()
        assert refused.get_json()["error"]["code"] == "email_unverified"
    # A sale that does not ask for it admits the same shopper.
    admitted = client.post(f"/api/sales/{open_to_all['id']}/tickets", json={"quantity": 1},
                           headers=bearer(shopper["access_token"]))
    assert admitted.status_code == 202, admitted.get_json()


def test_a_token_from_before_verification_is_admitted_once_the_account_is_verified(app, client, clients):
    admin = register_admin(client, clients)
    sale = make_sale(client, admin["access_token"])
    fast, slow = register(client, verified=False), register(client, verified=False)
    for shopper in (fast, slow):
        users.mark_email_verified(clients.db, shopper["user"]["id"])
    # Their tokens still say "not verified": the account, read then, decides.
    for http, shopper in ((client, fast), (flask_path(app), slow)):
        admitted = http.post(f"/api/sales/{sale['id']}/tickets", json={"quantity": 1},
                             headers=bearer(shopper["access_token"]))
        assert admitted.status_code == 202, admitted.get_json()


def test_the_mailed_link_verifies_once(client, clients, settings, servers):
    shopper = register(client, verified=False)
    token = mail_a_link(clients, settings, servers, shopper)
    message = mail_to(servers.mail_dir, shopper["user"]["email"])[-1]
    assert message["Subject"] and message["From"] and message["Date"]
    verified = client.post("/api/auth/verify-email", json={"token": token})
    assert verified.status_code == 200, verified.get_json()
    assert verified.get_json() == {**shopper["user"], "email_verified": True}
    again = client.post("/api/auth/verify-email", json={"token": token})
    assert again.status_code == 400 and again.get_json()["error"]["code"] == "invalid_token"
    # Only a hash of the token is stored, and the spent one is gone.
    assert clients.db.email_verifications.count_documents({"_id": token}) == 0
    me = client.get("/api/auth/me", headers=bearer(shopper["access_token"])).get_json()
    assert me["email_verified"] is True
    # Tokens issued from now on carry it (the admission fast path reads the claim).
    refreshed = client.post("/api/auth/refresh", headers=bearer(shopper["refresh_token"])).get_json()
    from flask_jwt_extended import decode_token
    with client.application.app_context():
        assert decode_token(refreshed["access_token"])["ev"] is True
    unknown = client.post("/api/auth/verify-email", json={"token": "x" * 43})
    assert unknown.status_code == 400 and unknown.get_json()["error"]["code"] == "invalid_token"


def test_a_link_older_than_a_day_is_refused(client, clients, settings, servers, monkeypatch):
    shopper = register(client, verified=False)
    token = mail_a_link(clients, settings, servers, shopper)
    later = datetime.now(UTC) + email_verification.TOKEN_TTL + timedelta(seconds=1)
    monkeypatch.setattr(email_verification, "utc_now", lambda: later)  # the project's clock
    late = client.post("/api/auth/verify-email", json={"token": token})
    assert late.status_code == 400 and late.get_json()["error"]["code"] == "invalid_token"
    assert users.is_email_verified(clients.db, shopper["user"]["id"]) is False
    # Just before the day is out, a fresh link still works.
    monkeypatch.setattr(email_verification, "utc_now",
                        lambda: datetime.now(UTC) + email_verification.TOKEN_TTL - timedelta(seconds=5))
    fresh = mail_a_link(clients, settings, servers, shopper)
    assert client.post("/api/auth/verify-email", json={"token": fresh}).status_code == 200


def test_asking_for_a_link_is_limited_per_account(client):
    shopper = register(client, verified=False)
    answers = [client.post("/api/auth/verify-email/request", headers=bearer(shopper["access_token"]))
               for _ in range(4)]
    assert [a.status_code for a in answers] == [202, 202, 202, 429]
    assert answers[0].get_json() == {"status": "sending"}
    verified = register(client)
    done = client.post("/api/auth/verify-email/request", headers=bearer(verified["access_token"]))
    assert done.status_code == 202 and done.get_json() == {"status": "verified"}
    assert client.post("/api/auth/verify-email/request").status_code == 401


def test_an_alias_of_an_account_is_the_same_account(client):
    first = register(client, email="Ada.Lovelace+drop1@Gmail.com", verified=False)
    assert first["user"]["email"] == "ada.lovelace+drop1@gmail.com"  # as typed, lowercased
    for alias in ("adalovelace@gmail.com", "a.d.a.lovelace+other@googlemail.com",
                  "ADA.LOVELACE+DROP1@GMAIL.COM"):
        taken = client.post("/api/auth/register", json={"email": alias, "password": PASSWORD,
                                                         "name": "Scalper"})
        assert taken.status_code == 409, (alias, taken.get_json())
        assert taken.get_json()["error"]["code"] == "email_taken"
    # Sign-in by the original or by any alias reaches the one account.
    for address in ("ada.lovelace+drop1@gmail.com", "adalovelace@gmail.com"):
        signed_in = client.post("/api/auth/login", json={"email": address, "password": PASSWORD})
        assert signed_in.status_code == 200, signed_in.get_json()
        assert signed_in.get_json()["user"]["id"] == first["user"]["id"]
    # Dots are part of the name elsewhere; a tag is dropped where the provider ignores tags.
    assert register(client, email="ada.lovelace@example.com")["user"]["id"]
    assert register(client, email="adalovelace@example.com")["user"]["id"]
    register(client, email="grace+x@outlook.com")
    taken = client.post("/api/auth/register", json={"email": "grace@outlook.com", "password": PASSWORD,
                                                     "name": "Scalper"})
    assert taken.status_code == 409


def test_a_disposable_address_is_not_accepted(client, clients):
    for address in ("bot1@mailinator.com", "bot2@sub.mailinator.com"):
        refused = client.post("/api/auth/register", json={"email": address, "password": PASSWORD,
                                                           "name": "Bot"})
        assert refused.status_code == 422, refused.get_json()
        assert refused.get_json()["error"]["code"] == "email_not_accepted"
    assert clients.db.users.count_documents({}) == 0


def test_accounts_made_before_keys_and_verification_keep_working(client, clients, settings):
    from api.auth import prepare_accounts

    old = register(client, email="Old.Timer+shop@gmail.com", verified=False)
    clients.db.users.update_one({"_id": old["user"]["id"]},
                                {"$unset": {"email_key": "", "email_verified": ""}})
    signed_in = client.post("/api/auth/login", json={"email": "old.timer+shop@gmail.com",
                                                     "password": PASSWORD})
    assert signed_in.status_code == 200
    assert signed_in.get_json()["user"]["email_verified"] is False
    prepare_accounts(settings, clients)  # start-up: the backfill, idempotent
    prepare_accounts(settings, clients)
    assert clients.db.users.find_one({"_id": old["user"]["id"]})["email_key"] == "oldtimer@gmail.com"
    by_alias = client.post("/api/auth/login", json={"email": "oldtimer@gmail.com", "password": PASSWORD})
    assert by_alias.status_code == 200
    taken = client.post("/api/auth/register", json={"email": "o.ld.timer@gmail.com",
                                                     "password": PASSWORD, "name": "Dup"})
    assert taken.status_code == 409


def test_a_registration_queues_the_verification_mail(client, clients):
    before = clients.redis.llen("celery")
    client.post("/api/auth/register", json={"email": unique_email(), "password": PASSWORD, "name": "A"})
    assert clients.redis.llen("celery") == before + 1


def test_the_development_mailbox_exists_only_when_configured_and_never_in_production(client, settings):
    from common.platform.settings import SettingsError, load_settings

    assert client.get("/api/dev/mailbox").status_code == 404  # DEV_MAILBOX unset
    with pytest.raises(SettingsError, match="DEV_MAILBOX"):
        load_settings(app_env="production", dev_mailbox=True, jwt_secret_key="k" * 40,
                      redis_url=settings.redis_url, mongodb_uri=settings.mongodb_uri,
                      stripe_secret_key="sk_live_x", stripe_webhook_secret="whsec_x")


def test_the_development_mailbox_lists_the_sinks_messages(settings, clients, servers, tmp_path):
    from api.app import create_app

    app = create_app(settings.model_copy(update={"dev_mailbox": True, "var_dir": servers.root}), clients)
    shopper_client = app.test_client()
    shopper = register(shopper_client, verified=False)
    token = mail_a_link(clients, settings, servers, shopper)
    listed = shopper_client.get("/api/dev/mailbox", query_string={"to": shopper["user"]["email"]})
    assert listed.status_code == 200
    [message] = listed.get_json()["items"]
    assert message["subject"] == "Confirm your email for Flash Sale"
    assert message["links"] == [f"http://shop.test/verify-email?token={token}"]
