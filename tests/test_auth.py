"""Accounts and tokens through the HTTP contract: register, login, refresh rotation with reuse
detection, logout, every way a token can be wrong, login throttling, the first admin."""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import sys
import time
import uuid

import jwt as pyjwt
import pytest
from pymongo.errors import DuplicateKeyError

from api.app import create_app
from common.accounts import revocations, users
from common.development.ports import free_port
from tests.accounts import PASSWORD, bearer, register, unique_email
from tests.conftest import clean_environ


def error_code(response) -> str:
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    return body["error"]["code"]


# --------------------------------------------------------------------------- register / login / me


def test_register_signs_in_and_me_returns_the_user(client, clients):
    email = unique_email()
    session = register(client, email=f"  {email.upper()} ", name="Ada")
    user = session["user"]
    assert user["email"] == email
    assert user["name"] == "Ada" and user["role"] == "customer"
    assert user["id"].startswith("usr_") and len(user["id"]) == 4 + 32
    assert session["access_token"] and session["refresh_token"]

    me = client.get("/api/auth/me", headers=bearer(session["access_token"]))
    assert me.status_code == 200
    assert me.get_json() == user

    stored = clients.db.users.find_one({"_id": user["id"]})
    assert stored["password_hash"].startswith("$argon2id$")
    assert PASSWORD not in json.dumps(stored, default=str)


def test_duplicate_email_is_409_whatever_its_case(client):
    email = unique_email()
    register(client, email=email)
    again = client.post("/api/auth/register",
                        json={"email": email.upper(), "password": PASSWORD, "name": "Other"})
    assert again.status_code == 409
    assert error_code(again) == "email_taken"


@pytest.mark.parametrize(("body", "field"), [
    ({"email": "not-an-email", "password": PASSWORD, "name": "A"}, "email"),
    ({"email": "a@example.com", "password": "short", "name": "A"}, "password"),
    ({"email": "a@example.com", "password": "x" * 129, "name": "A"}, "password"),
    ({"email": "a@example.com", "password": 1234567890123, "name": "A"}, "password"),
    ({"email": "a@example.com", "password": PASSWORD, "name": "   "}, "name"),
    ({"email": "a@example.com", "password": PASSWORD}, "name"),
    ({"email": "a@example.com", "password": PASSWORD, "name": "A", "role": "admin"}, "role"),
])
def test_register_rejects_bad_bodies_with_field_details(client, body, field):
    response = client.post("/api/auth/register", json=body)
    assert response.status_code == 422
    assert error_code(response) == "validation_error"
    assert field in response.get_json()["error"]["details"]["fields"]


def test_malformed_json_is_400(client):
    response = client.post("/api/auth/register", data=b'{"email": "a@example.com",',
                           content_type="application/json")
    assert response.status_code == 400
    assert error_code(response) == "malformed_json"


def test_huge_body_is_413(client, settings):
    body = json.dumps({"email": "a@example.com", "password": PASSWORD,
                       "name": "x" * (settings.max_content_length + 1)})
    for path in ("/api/auth/register", "/api/auth/login"):
        response = client.post(path, data=body, content_type="application/json")
        assert response.status_code == 413
        assert error_code(response) == "payload_too_large"


def test_login_returns_a_session_and_refuses_wrong_credentials(client):
    email = unique_email()
    registered = register(client, email=email)

    ok = client.post("/api/auth/login", json={"email": f" {email.upper()}", "password": PASSWORD})
    assert ok.status_code == 200
    assert ok.get_json()["user"] == registered["user"]
    me = client.get("/api/auth/me", headers=bearer(ok.get_json()["access_token"]))
    assert me.get_json()["email"] == email

    wrong = client.post("/api/auth/login", json={"email": email, "password": PASSWORD + "!"})
    unknown = client.post("/api/auth/login", json={"email": unique_email(), "password": PASSWORD})
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert error_code(response) == "invalid_credentials"

    extra = client.post("/api/auth/login", json={"email": email, "password": PASSWORD, "x": 1})
    assert extra.status_code == 422


def test_me_refuses_a_token_of_a_deleted_account(client, clients):
    session = register(client)
    clients.db.users.delete_one({"_id": session["user"]["id"]})
    response = client.get("/api/auth/me", headers=bearer(session["access_token"]))
    assert response.status_code == 401


# --------------------------------------------------------------------------- refresh and logout


def refresh(client, token: str):
    return client.post("/api/auth/refresh", headers=bearer(token))


def test_refresh_rotates_the_refresh_token(client):
    session = register(client)
    rotated = refresh(client, session["refresh_token"])
    assert rotated.status_code == 200
    pair = rotated.get_json()
    assert set(pair) == {"access_token", "refresh_token"}
    assert pair["refresh_token"] != session["refresh_token"]
    assert client.get("/api/auth/me", headers=bearer(pair["access_token"])).status_code == 200
    # The rotated token works once more, and so on down the chain.
    assert refresh(client, pair["refresh_token"]).status_code == 200


def test_reusing_a_spent_refresh_token_revokes_the_whole_family(client):
    session = register(client)
    first = refresh(client, session["refresh_token"]).get_json()

    reuse = refresh(client, session["refresh_token"])
    assert reuse.status_code == 401
    assert error_code(reuse) == "token_revoked"

    # Neither the thief's nor the owner's newer tokens of that login work any more...
    assert error_code(refresh(client, first["refresh_token"])) == "token_revoked"
    for access in (first["access_token"], session["access_token"]):
        me = client.get("/api/auth/me", headers=bearer(access))
        assert me.status_code == 401 and error_code(me) == "token_revoked"
    # ...while a fresh login is a new family and works.
    login = client.post("/api/auth/login",
                        json={"email": session["user"]["email"], "password": PASSWORD})
    assert client.get("/api/auth/me", headers=bearer(login.get_json()["access_token"])).status_code == 200


def test_logout_revokes_the_access_token_and_its_refresh_family(client, clients):
    session = register(client)
    other = client.post("/api/auth/login",
                        json={"email": session["user"]["email"], "password": PASSWORD}).get_json()

    out = client.post("/api/auth/logout", headers=bearer(session["access_token"]))
    assert out.status_code == 204 and out.data == b""

    me = client.get("/api/auth/me", headers=bearer(session["access_token"]))
    assert me.status_code == 401 and error_code(me) == "token_revoked"
    assert error_code(refresh(client, session["refresh_token"])) == "token_revoked"
    jti = pyjwt.decode(session["access_token"], options={"verify_signature": False})["jti"]
    # Denied for as long as the token could still be valid, not longer.
    until_ms = clients.redis.zscore(revocations.DENYLIST_KEY, revocations.access_member(jti))
    assert 0 < until_ms / 1000 - time.time() <= 15 * 60 + 1
    # The other login of the same user is untouched.
    assert client.get("/api/auth/me", headers=bearer(other["access_token"])).status_code == 200
    assert refresh(client, other["refresh_token"]).status_code == 200


# --------------------------------------------------------------------------- bad tokens


def claims_for(user_id: str, **overrides) -> dict:
    now = int(time.time())
    return {"sub": user_id, "iat": now, "nbf": now, "exp": now + 600, "jti": uuid.uuid4().hex,
            "type": "access", "fresh": False, "role": "admin"} | overrides


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def test_every_bad_token_is_a_401_with_a_code(client, settings):
    session = register(client)
    user_id = session["user"]["id"]
    key = settings.jwt_secret_key
    alg_none = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims_for(user_id))}."
    cases = {
        "alg none": (alg_none, "invalid_token"),
        "wrong key": (pyjwt.encode(claims_for(user_id), "another-key-" + "y" * 32, "HS256"),
                      "invalid_token"),
        "expired": (pyjwt.encode(claims_for(user_id, iat=1, nbf=1, exp=2), key, "HS256"),
                    "token_expired"),
        "missing jti": (pyjwt.encode({k: v for k, v in claims_for(user_id).items() if k != "jti"},
                                     key, "HS256"), "invalid_token"),
        "missing type": (pyjwt.encode({k: v for k, v in claims_for(user_id).items()
                                       if k != "type"}, key, "HS256"), "invalid_token"),
        "forged signature": (session["access_token"][:-4] + "AAAA", "invalid_token"),
        "garbage": ("not.a.jwt", "invalid_token"),
        "refresh as access": (session["refresh_token"], "invalid_token"),
    }
    for name, (token, code) in cases.items():
        response = client.get("/api/auth/me", headers=bearer(token))
        assert response.status_code == 401, name
        assert error_code(response) == code, name
        assert response.headers["WWW-Authenticate"].startswith("Bearer"), name

    missing = client.get("/api/auth/me")
    assert missing.status_code == 401 and error_code(missing) == "authorization_required"
    access_as_refresh = refresh(client, session["access_token"])
    assert access_as_refresh.status_code == 401 and error_code(access_as_refresh) == "invalid_token"


def test_tokens_carry_role_family_and_the_configured_lifetimes(client):
    session = register(client)
    access = pyjwt.decode(session["access_token"], options={"verify_signature": False})
    refresh_claims = pyjwt.decode(session["refresh_token"], options={"verify_signature": False})
    header = pyjwt.get_unverified_header(session["access_token"])
    assert header["alg"] == "HS256"
    assert access["sub"] == session["user"]["id"] and access["role"] == "customer"
    assert access["type"] == "access" and refresh_claims["type"] == "refresh"
    assert access["fam"] == refresh_claims["fam"]
    assert access["exp"] - access["iat"] == 15 * 60
    assert refresh_claims["exp"] - refresh_claims["iat"] == 30 * 24 * 3600


# --------------------------------------------------------------------------- throttling


def test_login_is_throttled_per_address_and_per_email(servers, settings, clients, make_clients):
    limited = settings.model_copy(update={"login_rate_limit": "3 per minute"})
    app = create_app(limited, make_clients(limited))
    client = app.test_client()
    email = unique_email()
    register(client, email=email)
    address = f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.7"

    def attempt(who: str, remote: str):
        return client.post("/api/auth/login", json={"email": who, "password": "wrong-password!"},
                           environ_base={"REMOTE_ADDR": remote})

    # Per email: three tries from three addresses, the fourth (another address) is refused.
    for n in range(3):
        assert attempt(email, f"{address}{n}").status_code == 401
    blocked = attempt(email, f"{address}9")
    assert blocked.status_code == 429
    assert error_code(blocked) == "rate_limited"
    assert 0 < int(blocked.headers["Retry-After"]) <= 60
    # Even the right password waits.
    right = client.post("/api/auth/login", json={"email": email, "password": PASSWORD},
                        environ_base={"REMOTE_ADDR": f"{address}8"})
    assert right.status_code == 429

    # Per address: three different emails from one address, the fourth is refused.
    for _ in range(3):
        assert attempt(unique_email(), address).status_code == 401
    assert attempt(unique_email(), address).status_code == 429


# --------------------------------------------------------------------------- the first admin


def test_first_admin_is_created_at_start_up_once(settings, clients):
    email = unique_email("boss")
    configured = settings.model_copy(update={"admin_email": email,
                                             "admin_password": "admin-password-123"})
    create_app(configured, clients)
    create_app(configured, clients)  # idempotent
    assert clients.db.users.count_documents({"email": email}) == 1

    client = create_app(configured, clients).test_client()
    login = client.post("/api/auth/login", json={"email": email, "password": "admin-password-123"})
    assert login.status_code == 200
    assert login.get_json()["user"]["role"] == "admin"
    # The schema was prepared too: the store itself refuses a second account for the email.
    with pytest.raises(DuplicateKeyError):
        clients.db.users.insert_one({"_id": "usr_copy", "email": email})


def test_start_up_survives_mongodb_being_down(settings, make_clients):
    down = settings.model_copy(update={"mongodb_uri": f"mongodb://127.0.0.1:{free_port()}/x",
                                       "admin_email": "a@example.com",
                                       "admin_password": "admin-password-123"})
    app = create_app(down, make_clients(down))
    assert app.test_client().get("/healthz").status_code == 200
    response = app.test_client().post("/api/auth/login",
                                      json={"email": "a@example.com", "password": "x" * 12})
    assert response.status_code == 503
    assert error_code(response) == "service_unavailable"


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_start_up_never_promotes_a_customer_who_registered_the_admin_email(settings, clients):
    email = unique_email("boss")
    squatter = users.create_user(clients.db, email=email, password=PASSWORD, name="Squatter")
    configured = settings.model_copy(update={"admin_email": email,
                                             "admin_password": "admin-password-123"})
    # On the logger itself: create_app replaces the root logger's handlers.
    errors = _Records()
    logging.getLogger("api.auth").addHandler(errors)
    try:
        app = create_app(configured, clients)
    finally:
        logging.getLogger("api.auth").removeHandler(errors)
    assert clients.db.users.find_one({"_id": squatter["_id"]})["role"] == "customer"
    refused = [r.getMessage() for r in errors.records if "ADMIN_EMAIL" in r.getMessage()]
    assert refused and "not promoted" in refused[0]
    # The API is up anyway, and neither password makes anyone an admin.
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    login = client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200 and login.get_json()["user"]["role"] == "customer"
    assert client.post("/api/auth/login", json={"email": email, "password": "admin-password-123"}
                       ).status_code == 401


def test_create_admin_command_creates_then_promotes(servers, settings, clients):
    env = clean_environ() | {
        "MONGODB_URI": settings.mongodb_uri or "", "REDIS_URL": settings.redis_url or "",
        "VAR_DIR": str(settings.var_dir), "APP_ENV": "test",
    }
    email = unique_email("ops")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "common.cli", "create-admin", *args],
                              env=env, capture_output=True, text=True, timeout=60)

    created = run("--email", email, "--password", "admin-password-123", "--name", "Ops")
    assert created.returncode == 0, created.stderr
    user = clients.db.users.find_one({"email": email})
    assert user["role"] == "admin" and user["name"] == "Ops"

    again = run("--email", email, "--password", "admin-password-123", "--name", "Ops")
    assert again.returncode == 0, again.stderr
    assert clients.db.users.count_documents({"email": email}) == 1

    assert "already an admin" in again.stdout

    # An existing customer account is not promoted without --promote-existing.
    customer = users.create_user(clients.db, email=unique_email(), password=PASSWORD, name="C")
    refused = run("--email", customer["email"], "--password", "whatever-long-pw", "--name", "C")
    assert refused.returncode != 0
    assert "--promote-existing" in refused.stderr and "Traceback" not in refused.stderr
    assert clients.db.users.find_one({"_id": customer["_id"]})["role"] == "customer"

    promoted = run("--email", customer["email"], "--password", "whatever-long-pw", "--name", "C",
                   "--promote-existing")
    assert promoted.returncode == 0, promoted.stderr
    assert "promoted an existing customer account" in promoted.stdout
    assert clients.db.users.find_one({"_id": customer["_id"]})["role"] == "admin"

    too_short = run("--email", unique_email(), "--password", "short", "--name", "X")
    assert too_short.returncode != 0
    assert "password" in (too_short.stderr + too_short.stdout).lower()
    assert "Traceback" not in too_short.stderr


# --------------------------------------------------------------------------- the published contract


def test_openapi_lists_the_account_endpoints_with_bearer_security(client):
    spec = client.get("/api/openapi.json").get_json()
    paths = spec["paths"]
    for path in ("/api/auth/register", "/api/auth/login", "/api/auth/refresh",
                 "/api/auth/logout", "/api/auth/me"):
        assert path in paths, path
    assert paths["/api/auth/me"]["get"]["security"] == [{"bearerAuth": []}]
    assert "security" not in paths["/api/auth/login"]["post"]
    register_body = paths["/api/auth/register"]["post"]["requestBody"]["content"]["application/json"]
    assert register_body["schema"]["$ref"].endswith("/Register")
