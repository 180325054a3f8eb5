"""Operations endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import marshmallow as ma
from flask import Response, current_app, jsonify
from flask_smorest import Blueprint
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

from api.extensions import clients, settings
from common.flash_sale.sale_gauges import SaleGauges
from common.platform import metrics

blp = Blueprint("ops", __name__, description="Health, readiness and metrics")
log = logging.getLogger("api.ops")


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

# A failed probe's answer is reused for this long: probes come from every load balancer and
# dashboard at once, and a service that is down (slow to fail, or Stripe: rate-limited and
# retried twice per call) must not get a burst of them; recovery still shows within 2 s.
READINESS_CACHE_SECONDS = 2.0
# A reachable Stripe is asked even less often: every call counts against its rate limit.
# Redis and MongoDB answering are asked every time: a ping is cheap, and an outage of a
# second (an embedded server restarting) must show.
STRIPE_READY_CACHE_SECONDS = 10.0


class CachedProbe:
    """One service's readiness, `(ok, error)`: after a failure the service is asked again only
    once READINESS_CACHE_SECONDS have passed, after a success once `ok_seconds` have; requests
    arriving while a probe is in flight wait for it and share its answer."""

    def __init__(self, name: str, check: Callable[[], object], ok_seconds: float = 0.0) -> None:
        self.name, self._check, self._ok_seconds = name, check, ok_seconds
        self._lock = threading.Lock()  # gevent's under gunicorn (monkey-patched before import)
        self._answer: tuple[bool, str] = (False, "")
        self._at: float | None = None

    def __call__(self) -> tuple[bool, str]:
        with self._lock:
            keep = self._ok_seconds if self._answer[0] else READINESS_CACHE_SECONDS
            if self._at is None or time.monotonic() - self._at >= keep:
                try:
                    self._check()
                    self._answer = (True, "")
                except Exception as exc:  # any failure means "not ready", with the reason shown
                    log.warning("readiness: %s is down: %s: %s", self.name, type(exc).__name__, exc)
                    self._answer = (False, type(exc).__name__)
                self._at = time.monotonic()
            return self._answer


def _probes() -> dict[str, CachedProbe]:
    """This app's probes (one set per app: tests build many apps in one process)."""
    probes = current_app.extensions.get("flashsale.readiness")
    if probes is None:
        made = clients()
        probes = current_app.extensions["flashsale.readiness"] = {
            probe.name: probe for probe in (
                CachedProbe("redis", made.redis.ping),
                *([CachedProbe("redis_cluster", made.sales_redis.ping)]
                  if made.settings.redis_cluster_nodes else []),
                CachedProbe("mongodb", lambda: made.mongo.admin.command("ping")),
                CachedProbe("stripe", lambda: made.stripe.v1.payment_intents.list(params={"limit": 1}),
                            ok_seconds=STRIPE_READY_CACHE_SECONDS),
            )
        }
    return probes  # type: ignore[no-any-return]


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
    for name, probe in _probes().items():
        ok, error = probe()
        checks[name] = {"ok": True} if ok else {"ok": False, "error": error}
    down = [name for name, check in checks.items() if not check["ok"]]
    body = {"status": "ready" if not down else "unavailable", "down": down, "checks": checks}
    return jsonify(body), (200 if not down else 503)


def _sale_gauges() -> SaleGauges:
    """The app's own sale gauges: their cache and the sales' ends they have read last as long as
    the app does."""
    extensions = current_app.extensions
    if "flashsale.sale_gauges" not in extensions:
        extensions["flashsale.sale_gauges"] = SaleGauges(clients().sales_redis)
    return extensions["flashsale.sale_gauges"]  # type: ignore[no-any-return]


@blp.route("/metrics")
@blp.doc(summary="Prometheus metrics (text format)")
@blp.alt_response(200, content_type=CONTENT_TYPE_LATEST, description="Prometheus text format", success=True)
def prometheus_metrics():
    metrics.serve_live_collector("sale_gauges", _sale_gauges())
    multiproc_dir = settings().prometheus_multiproc_dir
    if multiproc_dir:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(multiproc_dir))
        metrics.register_live_collectors(registry)
        payload = generate_latest(registry)
    else:
        payload = generate_latest()
    return Response(payload, mimetype=CONTENT_TYPE_LATEST)
