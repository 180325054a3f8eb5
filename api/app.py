"""The Flask application factory: blueprints, extensions, errors, request ids, metrics."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from pathlib import Path

from flask import Flask, Response, g, request, send_from_directory
from werkzeug.middleware.proxy_fix import ProxyFix

from api import api_docs, stream_tokens
from api.admission_fast_path import AdmissionFastPath
from api.auth import bootstrap_accounts
from api.body_limit import ChunkedBodyLimit
from api.errors import register_error_handlers
from api.extensions import api, jwt, limiter
from api.security_headers import install_security_headers
from api.task_queue import TaskQueue
from common.accounts import users
from common.platform import metrics
from common.platform.clients import Clients
from common.platform.logs import configure_logging, request_id_from, request_id_var
from common.platform.settings import Settings, settings_or_exit

log = logging.getLogger("api")



def create_app(settings: Settings | None = None, clients: Clients | None = None) -> Flask:
    settings = settings or settings_or_exit()
    clients = clients or Clients(settings)
    configure_logging(settings.log_level, settings.log_format, process="api")

    app = Flask(__name__, static_folder=None)
    app.extensions["flashsale.settings"] = settings
    app.extensions["flashsale.clients"] = clients
    app.extensions["flashsale.tasks"] = TaskQueue(settings.broker_url)
    # Tickets' stream_token (api/stream_tokens.py).
    stream_tokens.configure(settings.jwt_secret(), settings.stream_token_ttl_seconds)
    users.configure_accounts(settings)  # argon2 parameters, email aliases (common/accounts/users.py)
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_content_length,
        API_TITLE="Flash-sale waiting room",
        API_VERSION="1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        # Served from our own origin (api/api_docs.py): the CSP allows no CDN and no inline script.
        OPENAPI_SWAGGER_UI_URL=api_docs.ASSETS_URL,
        API_SPEC_OPTIONS={
            "components": {"securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}},
        },
        JWT_SECRET_KEY=settings.jwt_secret(),
        JWT_ALGORITHM="HS256",
        JWT_DECODE_ALGORITHMS=["HS256"],
        JWT_ACCESS_TOKEN_EXPIRES=timedelta(seconds=settings.jwt_access_ttl_seconds),
        JWT_REFRESH_TOKEN_EXPIRES=timedelta(seconds=settings.jwt_refresh_ttl_seconds),
        JWT_TOKEN_LOCATION=["headers"],
        JWT_ERROR_MESSAGE_KEY="message",
        RATELIMIT_STORAGE_URI=settings.require("redis_url"),
        RATELIMIT_STORAGE_OPTIONS={"socket_connect_timeout": 2, "socket_timeout": 2},
        RATELIMIT_HEADERS_ENABLED=True,
        RATELIMIT_SWALLOW_ERRORS=True,
    )

    app.wsgi_app = AdmissionFastPath(  # type: ignore[method-assign]
        ChunkedBodyLimit(app.wsgi_app, settings.max_content_length),
        settings, clients, app.extensions["flashsale.tasks"])
    if settings.trusted_proxy_count:
        # Outermost, so that rate limits and logs see the client, not the proxy: the address
        # that many hops back in X-Forwarded-For. Without proxies the header is not read.
        n = settings.trusted_proxy_count
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=n, x_proto=n, x_host=0, x_port=0, x_prefix=0)
    api.init_app(app)
    jwt.init_app(app)
    limiter.init_app(app)
    register_error_handlers(app)
    _register_blueprints(app)
    bootstrap_accounts(settings, clients)  # collections, indexes, first admin; never fatal
    _install_request_hooks(app)
    install_security_headers(app, settings)  # CSP on HTML answers, Referrer-Policy, HSTS
    _serve_frontend(app, settings.frontend_dist)
    return app


def _register_blueprints(app: Flask) -> None:
    from api import ops

    api.register_blueprint(ops.blp)
    app.register_blueprint(api_docs.blp)  # Swagger UI's assets for /api/docs
    if app.extensions["flashsale.settings"].dev_mailbox:  # development only (settings refuse it
        from api import dev_mailbox  # in production): the embedded SMTP sink's messages

        app.register_blueprint(dev_mailbox.blp)
    # Resource blueprints register themselves through api.resources (one module each).
    from api.resources import register_resources

    register_resources(api)


def _install_request_hooks(app: Flask) -> None:
    @app.before_request
    def _start_request() -> None:
        request_id = request_id_from(request.headers.get("X-Request-ID", ""))
        g.request_id = request_id
        g.request_started = time.perf_counter()
        g.request_id_token = request_id_var.set(request_id)

    @app.after_request
    def _finish_request(response: Response) -> Response:
        response.headers["X-Request-ID"] = g.get("request_id", "")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        started = g.get("request_started")
        if started is not None:
            metrics.HTTP_LATENCY.labels(endpoint).observe(time.perf_counter() - started)
        metrics.HTTP_REQUESTS.labels(metrics.method_label(request.method), endpoint,
                                     str(response.status_code)).inc()
        if response.status_code >= 500:
            log.warning("request failed", extra={"path": request.path, "status": response.status_code})
        return response

    @app.teardown_request
    def _end_request(_exc: BaseException | None) -> None:
        token = g.pop("request_id_token", None)
        if token is not None:
            request_id_var.reset(token)


def _serve_frontend(app: Flask, dist: Path) -> None:
    """Serve the built front end, so a new user opens one URL (index.html for app routes)."""

    @app.route("/", defaults={"path": ""})
    @app.route("/<path:path>")
    def frontend(path: str):
        from common.platform.errors import NotFound

        if path.startswith("api/") or not (dist / "index.html").exists():
            raise NotFound("No such endpoint.")
        candidate = dist / path
        if path and candidate.is_file() and candidate.resolve().is_relative_to(dist.resolve()):
            return send_from_directory(dist, path)
        return send_from_directory(dist, "index.html")
