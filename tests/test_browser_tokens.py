"""Tokens in browsers (API.md v2): the refresh token as an HttpOnly cookie on login, register
and refresh, a refresh by that cookie (rotation and reuse detection included), logout clearing
it; and the Content-Security-Policy and related headers on every HTML answer."""

from __future__ import annotations

from http.cookies import SimpleCookie

import pytest

from api.app import create_app
from api.security_headers import content_security_policy
from common.accounts import users
from common.platform.settings import Settings
from tests.accounts import PASSWORD, bearer, unique_email

CSRF = {"X-Requested-With": "fetch"}


def error_code(response) -> str:
    return response.get_json()["error"]["code"]


def refresh_cookie_of(response) -> dict[str, str]:
    """The `refresh_token` Set-Cookie of an answer: its value and attributes (lowercased keys;
    flags such as httponly map to True)."""
    found = [header for header in response.headers.getlist("Set-Cookie")
             if header.startswith("refresh_token=")]
    assert len(found) == 1, response.headers.getlist("Set-Cookie")
    morsel = SimpleCookie(found[0])["refresh_token"]
    attributes = {key: morsel[key] for key in morsel if morsel[key]}
    flags = {part.strip().lower() for part in found[0].split(";")[1:]}
    return {"value": morsel.value, **attributes,
            **{flag: True for flag in ("httponly", "secure") if flag in flags}}


def login(client, email: str):
    response = client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.get_json()
    return response


@pytest.fixture
def account(clients) -> str:
    """An account made in the store (sign-ups are throttled; logins are not, in tests)."""
    email = unique_email()
    users.create_user(clients.db, email=email, password=PASSWORD, name="Ada Shopper")
    return email


def assert_browser_cookie(response, settings: Settings) -> str:
    cookie = refresh_cookie_of(response)
    assert cookie["value"] == response.get_json()["refresh_token"]
    assert cookie["path"] == "/api/auth"
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert int(cookie["max-age"]) == settings.jwt_refresh_ttl_seconds
    assert "secure" not in cookie  # not in development and tests: see the production test
    return cookie["value"]


# --------------------------------------------------------------------------- the cookie


def test_register_and_login_set_the_refresh_token_as_an_httponly_cookie(client, settings, account):
    registered = client.post("/api/auth/register", json={
        "email": unique_email(), "password": PASSWORD, "name": "Ada"})
    assert registered.status_code == 201
    assert set(registered.get_json()) == {"user", "access_token", "refresh_token"}
    assert_browser_cookie(registered, settings)

    logged_in = login(client, account)
    assert set(logged_in.get_json()) == {"user", "access_token", "refresh_token"}
    assert_browser_cookie(logged_in, settings)


def test_a_refresh_by_header_also_sets_the_rotated_cookie(client, settings, account):
    session = login(client, account).get_json()
    client.delete_cookie("refresh_token", path="/api/auth")
    rotated = client.post("/api/auth/refresh", headers=bearer(session["refresh_token"]))
    assert rotated.status_code == 200
    assert set(rotated.get_json()) == {"access_token", "refresh_token"}
    assert assert_browser_cookie(rotated, settings) != session["refresh_token"]


def test_the_cookie_is_secure_in_production(servers, settings):
    production = settings.model_copy(update={"app_env": "production"})
    app = create_app(production)
    app.testing = True
    client = app.test_client()
    email = unique_email()
    users.create_user(app.extensions["flashsale.clients"].db, email=email, password=PASSWORD,
                      name="Ada")
    cookie = refresh_cookie_of(login(client, email))
    assert cookie["secure"] is True and cookie["httponly"] is True
    assert cookie["samesite"] == "Strict" and cookie["path"] == "/api/auth"
    answer = client.get("/api/auth/me")  # any answer
    assert answer.headers["Strict-Transport-Security"].startswith("max-age=")
    app.extensions["flashsale.clients"].close()


# --------------------------------------------------------------------------- refresh by cookie


def test_a_refresh_by_cookie_rotates_it_and_keeps_the_body(client, settings, account):
    session = login(client, account).get_json()
    rotated = client.post("/api/auth/refresh", headers=CSRF)
    assert rotated.status_code == 200, rotated.get_json()
    pair = rotated.get_json()
    assert set(pair) == {"access_token", "refresh_token"}
    assert pair["refresh_token"] != session["refresh_token"]
    assert assert_browser_cookie(rotated, settings) == pair["refresh_token"]
    assert client.get("/api/auth/me", headers=bearer(pair["access_token"])).status_code == 200
    # The test client now holds the rotated cookie: down the chain it goes.
    assert client.post("/api/auth/refresh", headers=CSRF).status_code == 200


def test_reusing_a_spent_cookie_revokes_the_whole_family(client, account):
    session = login(client, account).get_json()
    first = client.post("/api/auth/refresh", headers=CSRF).get_json()

    # A copy of the first cookie, replayed after it was spent.
    client.set_cookie("refresh_token", session["refresh_token"], path="/api/auth")
    reuse = client.post("/api/auth/refresh", headers=CSRF)
    assert reuse.status_code == 401 and error_code(reuse) == "token_revoked"
    assert reuse.get_json()["error"]["details"] == {"reason": "refresh_token_reuse"}

    client.set_cookie("refresh_token", first["refresh_token"], path="/api/auth")
    later = client.post("/api/auth/refresh", headers=CSRF)
    assert later.status_code == 401 and error_code(later) == "token_revoked"
    me = client.get("/api/auth/me", headers=bearer(first["access_token"]))
    assert me.status_code == 401 and error_code(me) == "token_revoked"


def test_the_header_wins_over_the_cookie(client, account):
    """With an Authorization header the cookie is not looked at: the header path as before."""
    session = login(client, account).get_json()
    other = login(client, account).get_json()  # the client now holds this login's cookie
    by_header = client.post("/api/auth/refresh", headers=bearer(session["refresh_token"]))
    assert by_header.status_code == 200
    # The header's token was spent, not the cookie's.
    again = client.post("/api/auth/refresh", headers=bearer(session["refresh_token"]))
    assert again.status_code == 401
    client.set_cookie("refresh_token", other["refresh_token"], path="/api/auth")
    assert client.post("/api/auth/refresh", headers=CSRF).status_code == 200
    # An access token in the header is refused as before, whatever the cookie holds.
    wrong = client.post("/api/auth/refresh", headers=bearer(session["access_token"]))
    assert wrong.status_code == 401


def test_a_refresh_by_cookie_needs_the_csrf_header(client, account):
    login(client, account)
    forged = client.post("/api/auth/refresh")  # what a form on another site could send
    assert forged.status_code == 403 and error_code(forged) == "forbidden"
    assert forged.get_json()["error"]["details"] == {"header": "X-Requested-With"}
    # Nothing was spent: the same cookie still works with the header.
    assert client.post("/api/auth/refresh", headers=CSRF).status_code == 200


def test_no_cookie_and_no_header_is_still_a_401(client):
    response = client.post("/api/auth/refresh", headers=CSRF)
    assert response.status_code == 401 and error_code(response) == "authorization_required"


def test_logout_clears_the_cookie_and_its_family(client, account):
    session = login(client, account).get_json()
    out = client.post("/api/auth/logout", headers=bearer(session["access_token"]))
    assert out.status_code == 204
    cleared = refresh_cookie_of(out)
    assert cleared["value"] == "" and int(cleared["max-age"]) == 0
    assert cleared["path"] == "/api/auth" and cleared["httponly"] is True
    assert client.get_cookie("refresh_token", path="/api/auth") is None
    # A copy kept from before is refused: logout revoked its family.
    client.set_cookie("refresh_token", session["refresh_token"], path="/api/auth")
    after = client.post("/api/auth/refresh", headers=CSRF)
    assert after.status_code == 401 and error_code(after) == "token_revoked"


# --------------------------------------------------------------------------- HTML answers


@pytest.fixture
def frontend_client(settings, clients, tmp_path):
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text(
        '<!doctype html><script type="module" src="/assets/app.js"></script>')
    (dist / "assets" / "app.js").write_text("console.log('shop')")
    app = create_app(settings.model_copy(update={"frontend_dist": dist}), clients)
    app.testing = True
    return app.test_client()


@pytest.mark.parametrize("path", ["/", "/sales/sal_1", "/tickets/tkt_1", "/index.html"])
def test_every_html_answer_carries_the_content_security_policy(frontend_client, path):
    page = frontend_client.get(path)
    page.close()  # a file answer holds the file open until closed (headers stay readable)
    assert page.status_code == 200 and page.mimetype == "text/html"
    policy = page.headers["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["frame-ancestors"] == "'none'"
    assert directives["object-src"] == "'none'"
    assert directives["default-src"] == "'self'"
    # Scripts only from the shop itself and Stripe.js's origin: no inline script, no eval.
    assert directives["script-src"].split() == ["'self'", "https://js.stripe.com"]
    assert "https://js.stripe.com" in directives["frame-src"].split()
    assert "https://api.stripe.com" in directives["connect-src"].split()
    assert page.headers["Referrer-Policy"] == "same-origin"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert "Strict-Transport-Security" not in page.headers  # production only


def test_the_policy_allows_the_configured_stripe_origin():
    """The emulator's stand-in in development: its origin for scripts, calls and frames."""
    policy = content_security_policy("http://127.0.0.1:8420/js.stripe.com/v3/")
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["script-src"].split() == ["'self'", "http://127.0.0.1:8420"]
    assert directives["connect-src"].split() == ["'self'", "http://127.0.0.1:8420"]
    assert directives["frame-src"].split() == ["http://127.0.0.1:8420"]
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy


def test_api_answers_are_json_with_nosniff_and_no_referrer(frontend_client):
    answer = frontend_client.get("/api/products")
    assert answer.mimetype == "application/json"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["Referrer-Policy"] == "same-origin"
    script = frontend_client.get("/assets/app.js")
    script.close()
    assert script.headers["X-Content-Type-Options"] == "nosniff"
    assert "Content-Security-Policy" not in script.headers
