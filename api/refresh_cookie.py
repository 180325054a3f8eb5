"""The refresh token as an HttpOnly cookie, so that browsers never hold it where a script can.

A script injected into a page can read localStorage and every variable, but not an HttpOnly
cookie: login, register and refresh set `refresh_token` here, and the front end keeps only the
15-minute access token, in memory (a reload renews it through this cookie). The JSON bodies
still carry both tokens for other clients, and the Authorization header path is unchanged: a
refresh by cookie goes through the very same view, rotation and reuse detection.

Cross-site request forgery: the cookie is SameSite=Strict (no request started by another site
carries it) and Path=/api/auth (the rest of the API never sees it), and a refresh by cookie must
also send the `X-Requested-With` header. An HTML form or any other "simple" cross-origin request
cannot set that header, and a cross-origin fetch that sets it needs a CORS preflight this API
never grants, which also covers sibling subdomains that SameSite counts as the same site.
Logout needs the access token in the Authorization header, which no other site can have.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from flask import Response, after_this_request, request

from api.extensions import settings
from common.platform.errors import Forbidden

COOKIE_NAME = "refresh_token"
COOKIE_PATH = "/api/auth"
CSRF_HEADER = "X-Requested-With"

F = TypeVar("F", bound=Callable[..., Any])


def attach(refresh_token: str) -> None:
    """Set the cookie on this request's answer, for as long as the refresh token lives."""
    current = settings()

    @after_this_request
    def _set(response: Response) -> Response:
        response.set_cookie(COOKIE_NAME, refresh_token, max_age=current.jwt_refresh_ttl_seconds,
                            path=COOKIE_PATH, secure=current.is_production, httponly=True,
                            samesite="Strict")
        return response


def clear() -> None:
    """Expire the cookie with this request's answer."""
    current = settings()

    @after_this_request
    def _clear(response: Response) -> Response:
        response.delete_cookie(COOKIE_NAME, path=COOKIE_PATH, secure=current.is_production,
                               httponly=True, samesite="Strict")
        return response


def accepted_as_bearer(view: F) -> F:
    """For a view behind `jwt_required(refresh=True)`: when no Authorization header is sent,
    the cookie is presented as the bearer token (with the CSRF header, else 403 `forbidden`)."""

    @wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        token = request.cookies.get(COOKIE_NAME)
        if token and "Authorization" not in request.headers:
            if not request.headers.get(CSRF_HEADER):
                raise Forbidden(f"A refresh by cookie needs the {CSRF_HEADER} header.",
                                details={"header": CSRF_HEADER})
            # request.headers reads the WSGI environ, so flask-jwt-extended sees the header.
            request.environ["HTTP_AUTHORIZATION"] = f"Bearer {token}"
        return view(*args, **kwargs)

    return cast(F, guarded)
