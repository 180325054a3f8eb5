"""Operations endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import time
from typing import Any

import marshmallow as ma
from flask import Response, jsonify
from flask_smorest import Blueprint
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

from api.extensions import clients, settings
from common import metrics

blp = Blueprint("ops", __name__, description="Health, readiness and metrics")


# Documented so that the published contract describes what these endpoints answer.
class HealthSchema(ma.Schema):
    status = ma.fields.String(required=True, metadata={"example": "ok"})


class CheckSchema(ma.Schema):
    ok = ma.fields.Boolean(required=True)
    error = ma.fields.String()


class ReadinessSchema(ma.Schema):
    status = ma.fields.String(required=True, validate=ma.validate.OneOf(["ready", "unavailable"]))
    down = ma.fields.List(ma.fields.String(), required=True)
    checks = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Nested(CheckSchema), required=True)

_stripe_check: dict[str, Any] = {"at": 0.0, "ok": False, "error": ""}
STRIPE_CHECK_CACHE_SECONDS = 10.0


def _check_stripe() -> tuple[bool, str]:
    # Cached: readiness probes run often and Stripe is rate-limited.
    now = time.monotonic()
    if now - _stripe_check["at"] < STRIPE_CHECK_CACHE_SECONDS and _stripe_check["ok"]:
        return True, ""
    try:
        clients().stripe.v1.payment_intents.list(params={"limit": 1})
        _stripe_check.update(at=now, ok=True, error="")
    except Exception as exc:  # any failure means "not ready", with the reason shown
        _stripe_check.update(at=now, ok=False, error=type(exc).__name__)
    return _stripe_check["ok"], _stripe_check["error"]


@blp.route("/healthz")
@blp.doc(summary="The process is up")
@blp.alt_response(200, schema=HealthSchema, description="The process is up", success=True)
def healthz():
    return jsonify({"status": "ok"})


@blp.route("/readyz")
@blp.doc(summary="Redis, MongoDB and Stripe are reachable (503 names what is down)")
@blp.alt_response(200, schema=ReadinessSchema, description="Every service is reachable", success=True)
@blp.alt_response(503, schema=ReadinessSchema, description="`down` names what is not")
def readyz():
    checks: dict[str, dict[str, Any]] = {}
    try:
        clients().redis.ping()
        checks["redis"] = {"ok": True}
    except Exception as exc:
        checks["redis"] = {"ok": False, "error": type(exc).__name__}
    try:
        clients().mongo.admin.command("ping")
        checks["mongodb"] = {"ok": True}
    except Exception as exc:
        checks["mongodb"] = {"ok": False, "error": type(exc).__name__}
    ok, error = _check_stripe()
    checks["stripe"] = {"ok": True} if ok else {"ok": False, "error": error}
    down = [name for name, check in checks.items() if not check["ok"]]
    body = {"status": "ready" if not down else "unavailable", "down": down, "checks": checks}
    return jsonify(body), (200 if not down else 503)


@blp.route("/metrics")
@blp.doc(summary="Prometheus metrics (text format)")
@blp.alt_response(200, content_type=CONTENT_TYPE_LATEST, description="Prometheus text format", success=True)
def prometheus_metrics():
    metrics.refresh_sale_gauges(clients())
    multiproc_dir = settings().prometheus_multiproc_dir
    if multiproc_dir:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(multiproc_dir))
        metrics.register_live_collectors(registry)
        payload = generate_latest(registry)
    else:
        payload = generate_latest()
    return Response(payload, mimetype=CONTENT_TYPE_LATEST)
