"""One place that turns every error into the contract's body:
{"error": {"code", "message", "details"}} with the right status, never a stack trace."""

from __future__ import annotations

import logging
from typing import Any

import marshmallow as ma
from flask import Flask, Response, jsonify
from flask_smorest import Api
from pymongo.errors import PyMongoError
from redis.exceptions import RedisError
from werkzeug.exceptions import HTTPException

from common.platform.errors import DomainError, error_body

log = logging.getLogger("api.errors")

# Stable codes for the HTTP errors Flask and its extensions raise.
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}


class ErrorDetailSchema(ma.Schema):
    code = ma.fields.String(required=True, metadata={"description": "stable snake_case code"})
    message = ma.fields.String(required=True)
    details = ma.fields.Dict()


class ErrorSchema(ma.Schema):
    error = ma.fields.Nested(ErrorDetailSchema, required=True)


def error_response(body: dict[str, Any], status: int,
                   headers: dict[str, str] | None = None) -> Response:
    """A Flask response carrying an error body (from `error_body` or a DomainError's)."""
    response = jsonify(body)
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def unavailable_body(service: str, what: str) -> dict[str, Any]:
    """The 503 body when a backing service is down (with Retry-After: 2)."""
    return error_body("service_unavailable", f"The {what} is unavailable; try again shortly.",
                      {"service": service})


class ContractApi(Api):
    """flask-smorest Api whose error payloads follow the public contract."""

    ERROR_SCHEMA = ErrorSchema

    def handle_http_exception(self, error: HTTPException):  # type: ignore[override]
        status = error.code or 500
        data = getattr(error, "data", None) or {}
        details = data.get("errors") or data.get("messages") or {}
        # webargs nests field errors under the location ("json", "query"): keep the fields.
        if isinstance(details, dict) and len(details) == 1 and next(iter(details)) in (
                "json", "query", "form", "headers", "view_args"):
            details = {"fields": next(iter(details.values()))}
        elif details:
            details = {"fields": details}
        code = HTTP_CODES.get(status, "http_error")
        message = data.get("message") or error.description or error.name
        if status == 422:
            message = "The request is not valid; see details.fields."
        # Flask's own JSON error names JSON in its description; webargs passes the decode error.
        if status == 400 and ("JSON" in (error.description or "")
                              or isinstance(getattr(error, "exc", None), ValueError)):
            code, message = "malformed_json", "The request body is not valid JSON."
        response = error_response(error_body(code, message, details), status,
                                  data.get("headers") or {})
        if getattr(error, "retry_after", None):
            response.headers["Retry-After"] = str(error.retry_after)  # type: ignore[attr-defined]
        return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def _domain_error(exc: DomainError):
        return error_response(exc.to_body(), exc.status, exc.headers)

    def _unavailable(service: str, what: str, exc: Exception):
        log.error("%s unavailable: %s", service, exc)
        return error_response(unavailable_body(service, what), 503, {"Retry-After": "2"})

    @app.errorhandler(RedisError)
    def _redis_down(exc: RedisError):
        return _unavailable("redis", "waiting room", exc)

    @app.errorhandler(PyMongoError)
    def _mongo_down(exc: PyMongoError):
        return _unavailable("mongodb", "store", exc)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        if isinstance(exc, HTTPException):
            return app.extensions["flask-smorest"]["apis"][""]["ext_obj"].handle_http_exception(exc)
        log.exception("unhandled error")
        return error_response(error_body("internal_error", "Something went wrong on our side."), 500)
