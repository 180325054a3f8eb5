"""`/api/docs`: Swagger UI over the OpenAPI document, served from the shop's own origin.

flask-smorest's page loaded Swagger UI from a CDN and started it with an inline script, and
the shop's Content-Security-Policy (api/security_headers.py: scripts only from 'self' and
Stripe.js, no inline script) rightly blocked both, so the page stayed blank. Here the assets
come from the `swagger-ui-bundle` package, under /api/docs/static/, and the page
(api/templates/swagger_ui.html, which takes the place of flask-smorest's template of the same
name) starts Swagger UI from a script file of ours, api/static/swagger-initializer.js.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, send_from_directory
from swagger_ui_bundle import swagger_ui_path

# What flask-smorest's OPENAPI_SWAGGER_UI_URL names: the base of the Swagger UI assets.
ASSETS_URL = "/api/docs/static/"
STATIC = Path(__file__).resolve().parent / "static"

blp = Blueprint("api_docs", __name__)


@blp.route(ASSETS_URL + "<path:filename>")
def swagger_ui_asset(filename: str) -> Response:
    return send_from_directory(swagger_ui_path, filename)


@blp.route("/api/docs/swagger-initializer.js")
def swagger_initializer() -> Response:
    return send_from_directory(STATIC, "swagger-initializer.js")
