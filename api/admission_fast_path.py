"""The waiting room's front door, and a shopper's status read, without the framework around them.

`POST /api/sales/<id>/tickets` is the request a flash sale sends tens of thousands of times in
one second. Through Flask it ran the whole stack: routing, flask-smorest and webargs (a new
schema per request), flask-jwt-extended (which decodes the token twice), flask-limiter's
bookkeeping for an exempt route, request hooks. Measured with py-spy, that stack cost about
three times the admission itself.

This WSGI middleware answers the ordinary admission: a well-formed body, a valid unrevoked
access token. It runs the same domain code (`waiting_room.admit`), the same checks and gives
the same answers, headers and metrics. Anything else (no or bad token, a body webargs would
refuse, another method) goes on to the Flask route, which stays the one definition of the
endpoint in the OpenAPI document and gives the canonical error; this path never guesses one.

The same goes for the status read, `GET /api/tickets/<id>` and `GET /api/sales/<id>/tickets/mine`,
which a sale's waiting shoppers send far more often than they join: through Flask it cost
1.0-1.5 ms of API CPU, more than twice an admission. The ordinary read (a well-formed id, a
valid unrevoked token, no query string or body, the ticket found) is answered here with the same
domain call (`waiting_room.read_ticket` / `latest_ticket`) and the same ticket builder as the
admission (`api.schemas.ticket_body`); anything else, an error included, goes on to Flask, which
answers it from scratch (a read changes nothing but the owner's presence, which it notes again).

Answers carry what Flask's hooks add: the request id, `nosniff`, `Referrer-Policy` (and HSTS in
production), the JSON as Flask writes it (sorted keys, compact, a newline), the latency and
request metrics under the Flask rule's name; gunicorn's access log sees every request alike.
"""

from __future__ import annotations

import io
import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from redis.exceptions import RedisError

from api.auth import REQUIRED_CLAIMS, verified_recheck
from api.errors import error_body, unavailable_body
from api.sales import MAX_QUANTITY
from api.schemas import ticket_body
from api.security_headers import HSTS
from api.task_queue import TaskQueue
from common.accounts import revocations, tokens
from common.accounts.verified_tokens import AccessTokenCheck, VerifiedTokens
from common.flash_sale import entry_challenge, sale_keys, waiting_room
from common.platform import metrics
from common.platform.clients import Clients
from common.platform.errors import DomainError
from common.platform.logs import request_id_from, request_id_var
from common.platform.settings import Settings
from common.platform.task_routes import TaskName

log = logging.getLogger("api.admission")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
ADMISSION_PATH = re.compile(r"^/api/sales/([^/]+)/tickets$")
ENDPOINT = "/api/sales/<sale_id>/tickets"  # the Flask rule, so both paths share metric labels
MAX_BODY = 1024  # `{"quantity": n}`, with a solved challenge (~400 characters); larger: Flask
TICKET_PATH = re.compile(r"^/api/tickets/([^/]+)$")
TICKET_ENDPOINT = "/api/tickets/<ticket_id>"
MY_TICKET_PATH = re.compile(r"^/api/sales/([^/]+)/tickets/mine$")
MY_TICKET_ENDPOINT = "/api/sales/<sale_id>/tickets/mine"


class AdmissionFastPath:
    def __init__(self, app: WSGIApp, settings: Settings, clients: Clients, tasks: TaskQueue) -> None:
        self.app = app
        self.settings = settings
        self.clients = clients
        self.tasks = tasks
        # The tokens this API issues, checked without PyJWT's generality; any other shape
        # goes on to flask-jwt-extended.
        self.access_tokens = AccessTokenCheck(settings.jwt_secret(), REQUIRED_CLAIMS)
        self.rate = waiting_room.AdmissionRate.parse(settings.admission_rate_limit)
        self.challenge_key = entry_challenge.hmac_key(settings)
        # Signatures checked once per token; expiry and revocation still on every request.
        self.verified = VerifiedTokens()
        # The series every ordinary admission updates, looked up once (labels() takes a lock).
        self.issued = metrics.ADMISSIONS.labels("issued")
        self.latency = metrics.HTTP_LATENCY.labels(ENDPOINT)
        self.answered_202 = metrics.HTTP_REQUESTS.labels("POST", ENDPOINT, "202")
        self.read_metrics = {endpoint: (metrics.HTTP_LATENCY.labels(endpoint),
                                        metrics.HTTP_REQUESTS.labels("GET", endpoint, "200"))
                             for endpoint in (TICKET_ENDPOINT, MY_TICKET_ENDPOINT)}
        # What install_security_headers adds to every answer (api/security_headers.py).
        self.security_headers = [("Referrer-Policy", "same-origin")]
        if settings.is_production:
            self.security_headers.append(("Strict-Transport-Security", HSTS))

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD")
        if method == "GET":
            return self._read_or_pass(environ, start_response)
        if method != "POST":
            return self.app(environ, start_response)
        matched = ADMISSION_PATH.match(environ.get("PATH_INFO", ""))
        if matched is None:
            return self.app(environ, start_response)
        body = self._read_body(environ)
        ordinary = _ordinary_body(environ, body)
        claims = self._token_claims(environ) if ordinary is not None else None
        if ordinary is None or claims is None:
            if body is not None:
                environ["wsgi.input"] = io.BytesIO(body)  # Flask reads the body again
            return self.app(environ, start_response)
        return self._admit(environ, start_response, matched.group(1), claims["sub"],
                           bool(claims.get("ev")), *ordinary)

    def _admit(self, environ: dict[str, Any], start_response: Callable[..., Any], sale_id: str,
               user_id: str, email_verified: bool, quantity: int,
               altcha: str | None = None) -> Iterable[bytes]:
        started = time.perf_counter()
        request_id = request_id_from(environ.get("HTTP_X_REQUEST_ID", ""))
        token = request_id_var.set(request_id)
        headers: dict[str, str] = {}
        try:
            status, payload = 500, error_body("internal_error", "Something went wrong on our side.")
            try:
                # The token's `ev` claim says whether the email is verified: no MongoDB read,
                # but for a token issued before its account was verified (then one, on refusal).
                # A proof-of-work solution (a sale with entry.challenge) is checked here, as
                # Flask's route checks it (about 15 us); admit.lua spends it.
                solution = (None if altcha is None else
                            entry_challenge.verify(altcha, sale_id, self.challenge_key))
                admission = waiting_room.admit(
                    self.clients.sales_redis, sale_id, user_id, quantity, self.rate,
                    email_verified=email_verified,
                    recheck_verified=None if email_verified else verified_recheck(self.clients.db, user_id),
                    solution=solution)
            except DomainError as exc:
                metrics.ADMISSIONS.labels(exc.code).inc()
                status, payload, headers = exc.status, exc.to_body(), dict(exc.headers)
            except RedisError as exc:
                log.error("redis unavailable: %s", exc)
                status, payload = 503, unavailable_body("redis", "waiting room")
                headers = {"Retry-After": "2"}
            except Exception:
                log.exception("unhandled error")
            else:
                (self.issued if admission.created else metrics.ADMISSIONS.labels("existing")).inc()
                if admission.kick:
                    try:
                        self.tasks.send(TaskName.DRAIN_SALE, sale_id)
                    except Exception:  # beat drains every second anyway; the ticket is safe in the stream
                        pass
                status, payload = (202 if admission.created else 200), ticket_body(admission.ticket)
        finally:
            request_id_var.reset(token)
        data = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode() + b"\n"  # as Flask
        self.latency.observe(time.perf_counter() - started)
        (self.answered_202 if status == 202 else
         metrics.HTTP_REQUESTS.labels("POST", ENDPOINT, str(status))).inc()
        if status >= 500:
            log.warning("request failed", extra={"path": environ.get("PATH_INFO"), "status": status})
        start_response(f"{status} {HTTPStatus(status).phrase}",
                       self._headers(data, request_id, headers.items()))
        return [data]

    def _read_or_pass(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """The caller's ticket, when the read is ordinary; else Flask's answer."""
        path = environ.get("PATH_INFO", "")
        read: Callable[[str], dict[str, Any]]
        if (matched := TICKET_PATH.match(path)) and sale_keys.TICKET_ID_PATTERN.match(matched.group(1)):
            endpoint, ticket_id = TICKET_ENDPOINT, matched.group(1)

            def read(user_id: str) -> dict[str, Any]:
                return waiting_room.read_ticket(self.clients.sales_redis, ticket_id, owner_id=user_id)
        elif (matched := MY_TICKET_PATH.match(path)) and sale_keys.SALE_ID_PATTERN.match(matched.group(1)):
            endpoint, sale_id = MY_TICKET_ENDPOINT, matched.group(1)

            def read(user_id: str) -> dict[str, Any]:
                return waiting_room.latest_ticket(self.clients.sales_redis, sale_id, user_id)
        else:
            return self.app(environ, start_response)
        if (environ.get("QUERY_STRING") or environ.get("CONTENT_LENGTH", "0") not in ("", "0")
                or environ.get("HTTP_TRANSFER_ENCODING")):
            return self.app(environ, start_response)
        claims = self._token_claims(environ)
        if claims is None:
            return self.app(environ, start_response)
        user_id = claims["sub"]
        started = time.perf_counter()
        request_id = request_id_from(environ.get("HTTP_X_REQUEST_ID", ""))
        token = request_id_var.set(request_id)
        try:
            ticket = read(user_id)
        except Exception:  # not found, Redis down...: Flask answers it the canonical way
            return self.app(environ, start_response)
        finally:
            request_id_var.reset(token)
        # As Flask writes JSON (sorted keys, compact, a newline), from the admission's builder.
        data = json.dumps(ticket_body(ticket), separators=(",", ":"), sort_keys=True).encode() + b"\n"
        latency, answered = self.read_metrics[endpoint]
        latency.observe(time.perf_counter() - started)
        answered.inc()
        start_response("200 OK", self._headers(data, request_id))
        return [data]

    def _headers(self, data: bytes, request_id: str,
                 extra: Iterable[tuple[str, str]] = ()) -> list[tuple[str, str]]:
        """A JSON answer's headers in Flask's order: the error's own (Retry-After...), then
        the security headers' hook, which runs before the request id's."""
        return [("Content-Type", "application/json"), ("Content-Length", str(len(data))), *extra,
                ("X-Content-Type-Options", "nosniff"), *self.security_headers, ("X-Request-ID", request_id)]

    def _read_body(self, environ: dict[str, Any]) -> bytes | None:
        """The body when it is small and of stated length (chunked ones go to Flask unread)."""
        try:
            length = int(environ.get("CONTENT_LENGTH") or "")
        except ValueError:
            return None
        if not 0 < length <= MAX_BODY or environ.get("HTTP_TRANSFER_ENCODING"):
            return None
        return environ["wsgi.input"].read(length)  # type: ignore[no-any-return]

    def _token_claims(self, environ: dict[str, Any]) -> dict[str, Any] | None:
        """The claims of a valid, unrevoked access token; None for anything else."""
        scheme, _, token = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme != "Bearer" or not token:
            return None
        claims = self.verified.get(token)
        if claims is None:
            claims = self.access_tokens.check(token)
            if claims is None:
                return None
            self.verified.put(token, claims)
        try:
            if tokens.is_access_token_revoked(self.clients.redis, claims["jti"], claims.get("fam"),
                                              revocations.denylist_copy(self.clients)):
                return None
        except RedisError:
            return None  # Flask answers the outage the usual way
        return claims


def _ordinary_body(environ: dict[str, Any], body: bytes | None) -> tuple[int, str | None] | None:
    """The quantity and proof-of-work payload of the plainest bodies AdmissionSchema accepts,
    `{}` and `{"quantity": n}` with n a JSON integer in range, each optionally with `"altcha":
    "<text>"` (through Flask, a sale's challenge cost 0.8 ms more API CPU per admission than
    here: loadtests/bench_challenge.py); None sends the request to Flask, which loads it with
    the schema (and answers a refused body with the contract's 400 or 422). Checked here
    without marshmallow, which cost about 4% of a worker's time under an admission flood."""
    if body is None or environ.get("CONTENT_TYPE", "").partition(";")[0].strip() != "application/json":
        return None
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    if type(parsed) is not dict or not parsed.keys() <= {"quantity", "altcha"}:
        return None
    altcha = parsed.get("altcha")
    if "altcha" in parsed and (type(altcha) is not str
                               or len(altcha) > entry_challenge.MAX_PAYLOAD_CHARS):
        return None  # null, a number, too long: the schema decides
    quantity = parsed.get("quantity", 1)
    if type(quantity) is not int or not 1 <= quantity <= MAX_QUANTITY:
        return None  # a bool, a float, text, out of range: the schema decides
    return quantity, altcha
