"""Accounts over HTTP: register, login, refresh, logout, me; and what other blueprints use to
require a signed-in user (`login_required`, `admin_required`, `current_user_id`,
`current_user`).

Access tokens carry `role`, `fam` (the refresh family of the login) and `ev` (the account's
email was verified when the token was issued: the admission fast path reads it instead of
MongoDB); refresh tokens are rotated on every use (common/accounts/tokens.py). Every JWT problem
answers 401 with the contract's error body. Email verification: a link is mailed by a Celery
task (common/accounts/email_verification.py), on sign-up and on request.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

import limits
import marshmallow as ma
from flask import Response, g, request
from flask_jwt_extended import (
    create_access_token,
    create_refresh_token,
    get_jwt,
    get_jwt_identity,
    jwt_required,
)
from flask_jwt_extended.config import config as jwt_config
from flask_jwt_extended.exceptions import JWTDecodeError
from flask_limiter.errors import RateLimitExceeded
from flask_smorest import Blueprint
from redis.exceptions import RedisError
from werkzeug.exceptions import HTTPException

from api import refresh_cookie
from api.errors import error_body, error_response
from api.extensions import client_address, clients, denylist, jwt, limiter, settings
from api.schemas import RequestSchema
from api.task_queue import send_task
from common.accounts import email_verification, tokens, users
from common.platform import ids
from common.platform.clients import Clients
from common.platform.clock import now_seconds
from common.platform.errors import (
    AccountNotAdmin,
    DomainError,
    Forbidden,
    RateLimited,
    Unauthorized,
)
from common.platform.schema import ensure_schema
from common.platform.settings import Settings
from common.platform.task_routes import TaskName

log = logging.getLogger("api.auth")

blp = Blueprint("auth", __name__, url_prefix="/api/auth", description="Accounts and tokens")

# The one security requirement for `@blp.doc(security=BEARER)` on every endpoint that needs a
# token. Every such endpoint stacks its decorators in one order: route, doc, the guard
# (`login_required`/`admin_required`), any rate limit, then arguments and responses, so that a
# request without a token is a 401 before its body is judged (tests/test_authentication_first.py).
BEARER: list[dict[str, list[str]]] = [{"bearerAuth": []}]
REQUIRED_CLAIMS = ("exp", "iat", "jti", "type", "sub")

F = TypeVar("F", bound=Callable[..., Any])


# --------------------------------------------------------------------------- for other blueprints


def login_required(fn: F | None = None) -> Any:
    """Require a valid, unrevoked access token (`@login_required` or `@login_required()`)."""
    if fn is None:
        return login_required
    return cast(F, jwt_required()(fn))


def admin_required(fn: F | None = None) -> Any:
    """Require an access token of a user who is an admin *now* (403 `forbidden` otherwise)."""
    if fn is None:
        return admin_required

    @wraps(fn)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if current_user()["role"] != users.Role.ADMIN:
            raise Forbidden("Only an admin may do that.")
        return fn(*args, **kwargs)

    return cast(F, jwt_required()(guarded))


def current_user_id() -> str:
    """The signed-in user's id (inside a `login_required` view)."""
    return str(get_jwt_identity())


def current_user() -> dict[str, Any]:
    """The signed-in user as `{id, email, name, role}`, read once per request."""
    cached = g.get("flashsale_user")
    if cached is None:
        doc = users.get_user(clients().db, current_user_id())
        if doc is None:
            raise Unauthorized("This account no longer exists.")
        cached = g.flashsale_user = users.user_to_public(doc)
    return cast(dict[str, Any], cached)


def verified_recheck(db: Any, user_id: str) -> Callable[[], bool]:
    """For an admission whose token predates the account's verification: asked only when a
    sale needing a verified email refuses the token's word (one MongoDB read then)."""
    return lambda: users.is_email_verified(db, user_id)


def issue_tokens(user: dict[str, Any], family: str | None = None) -> dict[str, str]:
    """A new access token and refresh token for `user` (a users document), in `family` or in
    a new one (a new login); the refresh token is also set as the browsers' HttpOnly cookie."""
    current = settings()
    family = family or ids.new_token_family()
    refresh_jti = ids.new_token_id()
    tokens.record_refresh_token(clients().db, jti=refresh_jti, family=family,
                                user_id=user["_id"], ttl_seconds=current.jwt_refresh_ttl_seconds)
    refresh_token = create_refresh_token(
        identity=user["_id"], additional_claims={"fam": family, "jti": refresh_jti})
    refresh_cookie.attach(refresh_token)
    return {
        "access_token": create_access_token(
            identity=user["_id"], additional_claims={
                "role": user["role"], "fam": family, "ev": bool(user.get("email_verified"))}),
        "refresh_token": refresh_token,
    }


# --------------------------------------------------------------------------- start-up


def prepare_accounts(settings: Settings, clients: Clients) -> None:
    """Collections, indexes and the first admin (from ADMIN_EMAIL/ADMIN_PASSWORD), idempotent.

    An existing customer account with ADMIN_EMAIL is never promoted here (whoever registered
    the address would become admin): that is logged as an error and the API starts anyway."""
    ensure_schema(clients.db)
    keyed = users.backfill_email_keys(clients.db)
    if keyed:
        log.info("gave existing accounts their email key", extra={"accounts": keyed})
    if settings.admin_email:
        try:
            user, created = users.ensure_admin(clients.db, email=settings.admin_email,
                                               password=settings.admin_password)
        except AccountNotAdmin as exc:
            log.error("ADMIN_EMAIL belongs to an existing customer account, which is not "
                      "promoted: check who registered it, then run `flashsale create-admin "
                      "--promote-existing` or choose another ADMIN_EMAIL",
                      extra={"user_id": exc.details.get("user_id"), "code": exc.code})
            return
        if created:
            log.info("created the first admin account", extra={"user_id": user["_id"]})


def bootstrap_accounts(settings: Settings, clients: Clients) -> None:
    """`prepare_accounts` at start-up without ever stopping it: when MongoDB is not up yet,
    log it and keep trying in the background."""
    try:
        prepare_accounts(settings, clients)
        return
    except Exception as exc:
        log.warning("accounts not prepared at start-up (%s); retrying in the background",
                    type(exc).__name__)

    def retry() -> None:
        delay = 1.0
        while True:
            time.sleep(delay)
            try:
                prepare_accounts(settings, clients)
                log.info("accounts prepared")
                return
            except Exception as exc:
                log.warning("accounts still not prepared: %s", type(exc).__name__)
                delay = min(delay * 2, 30.0)

    threading.Thread(target=retry, name="prepare-accounts", daemon=True).start()


# --------------------------------------------------------------------------- JWT policy


def _jwt_error(code: str, message: str) -> tuple[Response, int]:
    return error_response(error_body(code, message), 401,
                          {"WWW-Authenticate": f'Bearer error="{code}"'}), 401


@jwt.decode_key_loader
def _decode_key(_header: dict[str, Any], claims: dict[str, Any]) -> str:
    # flask-jwt-extended fills in a missing `type` or `jti`; ours always carry them.
    missing = [claim for claim in REQUIRED_CLAIMS if claim not in claims]
    if missing:
        raise JWTDecodeError(f"Missing claim: {', '.join(missing)}")
    return cast(str, jwt_config.decode_key)


@jwt.token_in_blocklist_loader
def _is_revoked(_header: dict[str, Any], payload: dict[str, Any]) -> bool:
    if payload.get("type") == "refresh":
        return tokens.is_refresh_token_revoked(clients().db, payload["jti"])
    return tokens.is_access_token_revoked(clients().redis, payload["jti"], payload.get("fam"),
                                          denylist())


@jwt.expired_token_loader
def _expired(_header: dict[str, Any], _payload: dict[str, Any]) -> tuple[Response, int]:
    return _jwt_error("token_expired", "The token has expired.")


@jwt.invalid_token_loader
def _invalid(reason: str) -> tuple[Response, int]:
    return _jwt_error("invalid_token", f"The token is not valid: {reason}.")


@jwt.unauthorized_loader
def _missing(_reason: str) -> tuple[Response, int]:
    return _jwt_error("authorization_required",
                      "This needs an Authorization: Bearer <token> header.")


@jwt.revoked_token_loader
def _revoked(_header: dict[str, Any], _payload: dict[str, Any]) -> tuple[Response, int]:
    return _jwt_error("token_revoked", "This token has been revoked.")


@jwt.needs_fresh_token_loader
def _needs_fresh(_header: dict[str, Any], _payload: dict[str, Any]) -> tuple[Response, int]:
    return _jwt_error("fresh_token_required", "Sign in again to do that.")


@jwt.token_verification_failed_loader
def _claims_refused(_header: dict[str, Any], _payload: dict[str, Any]) -> tuple[Response, int]:
    return _jwt_error("invalid_token", "The token's claims are not accepted.")


@jwt.user_lookup_error_loader
def _no_user(_header: dict[str, Any], _payload: dict[str, Any]) -> tuple[Response, int]:
    return _jwt_error("unauthorized", "This account no longer exists.")


# --------------------------------------------------------------------------- login throttling


def _login_rate_limit() -> str:
    return settings().login_rate_limit


def _register_rate_limit() -> str:
    return settings().register_rate_limit


def _verify_email_rate_limit() -> str:
    return settings().verify_email_rate_limit


def _verify_email_account_rate_limit() -> str:
    return settings().verify_email_account_rate_limit


def _account_key() -> str:
    return "verify-email-account:" + current_user_id()


def _take_a_register_slot() -> None:
    """REGISTER_TOTAL_RATE_LIMIT, counted only for sign-ups the per-address limit let through
    (flask-limiter would check the per-second total first, so one address's refused flood
    would use up everyone's sign-ups)."""
    item = limits.parse(settings().register_total_rate_limit)
    try:
        if limiter.limiter.hit(item, "register-total"):
            return
        reset_at = limiter.limiter.get_window_stats(item, "register-total").reset_time
    except RedisError as exc:  # like RATELIMIT_SWALLOW_ERRORS: Redis down does not refuse
        log.warning("register total limit not checked: %s", type(exc).__name__)
        return
    raise RateLimited(details={"limit": str(item)},
                      headers={"Retry-After": str(max(1, math.ceil(reset_at - now_seconds())))})


def _login_email_key() -> str:
    """Throttle by the account being tried too, so rotating addresses does not help."""
    try:
        body = request.get_json(silent=True)
    except HTTPException:  # too large: the view answers 413
        body = None
    email = body.get("email") if isinstance(body, dict) else None
    if not isinstance(email, str):
        return "login-email:-"
    # Hashed: limiter keys and its log lines carry no email address.
    return "login-email:" + hashlib.sha256(users.normalise_email(email).encode()).hexdigest()[:32]


@blp.app_errorhandler(RateLimitExceeded)
def _rate_limited(exc: RateLimitExceeded) -> Response:
    current = limiter.current_limit
    if current is not None:
        retry_after = max(1, math.ceil(current.reset_at - now_seconds()))
    else:
        retry_after = max(1, int(exc.limit.limit.get_expiry()))
    error = RateLimited(details={"limit": str(exc.limit.limit)})
    return error_response(error.to_body(), error.status, {"Retry-After": str(retry_after)})


# --------------------------------------------------------------------------- schemas


class UserSchema(ma.Schema):
    id = ma.fields.String(required=True)
    email = ma.fields.String(required=True)
    name = ma.fields.String(required=True)
    role = ma.fields.String(required=True, validate=ma.validate.OneOf([r.value for r in users.Role]))
    email_verified = ma.fields.Boolean(required=True)


class _EmailNormalised(RequestSchema):
    @ma.pre_load
    def _normalise_email(self, data: Any, **_kwargs: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("email"), str):
            return {**data, "email": users.normalise_email(data["email"])}
        return data


class RegisterSchema(_EmailNormalised):
    email = ma.fields.Email(required=True, validate=ma.validate.Length(max=users.EMAIL_MAX_LENGTH))
    password = ma.fields.String(required=True, load_only=True, validate=ma.validate.Length(
        min=users.PASSWORD_MIN_LENGTH, max=users.PASSWORD_MAX_LENGTH))
    name = ma.fields.String(required=True, validate=ma.validate.And(
        ma.validate.Length(min=1, max=users.NAME_MAX_LENGTH),
        ma.validate.Regexp(r"\S", error="Must not be blank.")))


class LoginSchema(_EmailNormalised):
    email = ma.fields.String(required=True, validate=ma.validate.Length(
        min=1, max=users.EMAIL_MAX_LENGTH))
    password = ma.fields.String(required=True, load_only=True,
                                validate=ma.validate.Length(min=1, max=users.PASSWORD_MAX_LENGTH))


class VerifyEmailSchema(RequestSchema):
    token = ma.fields.String(required=True, validate=ma.validate.Length(
        min=1, max=email_verification.MAX_TOKEN_LENGTH))


class VerificationRequestedSchema(ma.Schema):
    status = ma.fields.String(required=True, validate=ma.validate.OneOf(["sending", "verified"]),
                              metadata={"description": "`sending`: a new link is on its way; "
                                                       "`verified`: nothing to do"})


class TokenPairSchema(ma.Schema):
    access_token = ma.fields.String(required=True)
    refresh_token = ma.fields.String(required=True)


class SessionSchema(TokenPairSchema):
    user = ma.fields.Nested(UserSchema, required=True)


# --------------------------------------------------------------------------- endpoints


@blp.route("/register", methods=["POST"])
@limiter.limit(_register_rate_limit, key_func=client_address, scope="register-address")
@blp.arguments(RegisterSchema)
@blp.response(201, SessionSchema)
@blp.alt_response(409, description="`email_taken` (also for an alias of an account's address)")
@blp.alt_response(422, description="`email_not_accepted`: a disposable-mail domain")
@blp.alt_response(429, description="`rate_limited`, with Retry-After")
def register(body: dict[str, Any]) -> dict[str, Any]:
    """Create a customer account and sign it in, and mail it a verification link; throttled per
    client address and in total."""
    _take_a_register_slot()
    user = users.create_user(clients().db, email=body["email"], password=body["password"],
                             name=body["name"])
    try:
        send_task(TaskName.SEND_VERIFICATION_MAIL, user["_id"])
    except DomainError:  # logged by the queue; the shopper can ask again from the shop
        pass
    return {"user": users.user_to_public(user), **issue_tokens(user)}


@blp.route("/login", methods=["POST"])
@limiter.limit(_login_rate_limit, key_func=client_address, scope="login-address")
@limiter.limit(_login_rate_limit, key_func=_login_email_key, scope="login-email")
@blp.arguments(LoginSchema)
@blp.response(200, SessionSchema)
@blp.alt_response(401, description="`invalid_credentials`")
@blp.alt_response(429, description="`rate_limited`, with Retry-After")
def login(body: dict[str, Any]) -> dict[str, Any]:
    """Sign in; throttled per client address and per email."""
    user = users.authenticate(clients().db, body["email"], body["password"])
    return {"user": users.user_to_public(user), **issue_tokens(user)}


@blp.route("/refresh", methods=["POST"])
@blp.doc(security=BEARER, description=(
    "Send the refresh token as the bearer token, or (browsers) send no Authorization header: "
    "the `refresh_token` cookie is used then, with an `X-Requested-With` header against CSRF."))
@refresh_cookie.accepted_as_bearer
@jwt_required(refresh=True)
@blp.response(200, TokenPairSchema)
@blp.alt_response(401, description="`token_revoked` (also when a spent token is reused)")
def refresh() -> dict[str, Any]:
    """Spend the refresh token for a new pair; reusing a spent one revokes the whole login."""
    claims = get_jwt()
    db = clients().db
    record = tokens.spend_refresh_token(db, clients().redis, claims["jti"],
                                        access_ttl_seconds=settings().jwt_access_ttl_seconds,
                                        copy=denylist())
    user = users.get_user(db, record["user_id"])
    if user is None:
        raise Unauthorized("This account no longer exists.")
    return issue_tokens(user, family=record["family"])


@blp.route("/logout", methods=["POST"])
@blp.doc(security=BEARER)
@login_required
@blp.response(204)
def logout() -> None:
    """Revoke this access token and every refresh token of its login; clear the cookie."""
    claims = get_jwt()
    refresh_cookie.clear()
    redis_client = clients().redis
    copy = denylist()
    tokens.revoke_access_token(redis_client, claims["jti"], int(claims["exp"]), copy)
    if claims.get("fam"):
        tokens.revoke_family(clients().db, redis_client, claims["fam"],
                             access_ttl_seconds=settings().jwt_access_ttl_seconds, copy=copy)


@blp.route("/me")
@blp.doc(security=BEARER)
@login_required
@blp.response(200, UserSchema)
def me() -> dict[str, Any]:
    """The signed-in user."""
    return current_user()


@blp.route("/verify-email/request", methods=["POST"])
@blp.doc(security=BEARER)
@login_required
@limiter.limit(_verify_email_rate_limit, key_func=client_address, scope="verify-email-address")
@limiter.limit(_verify_email_account_rate_limit, key_func=_account_key, scope="verify-email-account")
@blp.response(202, VerificationRequestedSchema)
@blp.alt_response(429, description="`rate_limited`, with Retry-After")
def request_verification() -> dict[str, Any]:
    """Mail the signed-in account a new one-time link to `/verify-email?token=<t>` (valid for
    24 hours); throttled per client address and per account."""
    if current_user()["email_verified"]:
        return {"status": "verified"}
    send_task(TaskName.SEND_VERIFICATION_MAIL, current_user_id())
    return {"status": "sending"}


@blp.route("/verify-email", methods=["POST"])
@limiter.limit(_login_rate_limit, key_func=client_address, scope="verify-email-confirm")
@blp.arguments(VerifyEmailSchema)
@blp.response(200, UserSchema)
@blp.alt_response(400, description="`invalid_token`: unknown, used already, or older than 24 hours")
def verify_email(body: dict[str, Any]) -> dict[str, Any]:
    """Spend a mailed token and mark its account verified (public). Tokens issued from now on
    say so; one issued before still admits (the admission checks the account then)."""
    return users.user_to_public(email_verification.confirm(clients().db, body["token"]))
