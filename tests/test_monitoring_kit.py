"""The monitoring kit in deploy/monitoring/ names only metrics the API really exports.

Every PromQL expression of the Grafana dashboard and of the alert rules is read, its metric
names taken out, and each is looked up in the API's own `/metrics` answer (a histogram's
`_bucket`, `_sum` and `_count` series belong to its base name, a counter's `_total` to its
own). A renamed or removed metric fails here instead of leaving a dashboard panel empty or an
alert that can never fire. The compose profile that starts Prometheus and Grafana is checked
to mount these files. (promtool checks and unit-tests the rules themselves: `make test`.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from common.platform.settings import PROJECT_ROOT

KIT = PROJECT_ROOT / "deploy" / "monitoring"
DASHBOARDS = sorted((KIT / "grafana" / "dashboards").glob("*.json"))
ALERTS = KIT / "alerts.yml"
PROMETHEUS = KIT / "prometheus.yml"

# PromQL's own words: functions, aggregations, operators and modifiers the kit uses. A word
# missing here shows up as an unknown metric below, so the list cannot hide a metric.
PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "rate", "increase", "delta", "deriv", "irate",
    "histogram_quantile", "clamp_min", "clamp_max", "min_over_time", "max_over_time",
    "avg_over_time", "abs", "vector", "and", "or", "unless", "by", "without", "on", "ignoring",
    "group_left", "group_right", "offset", "bool", "time",
}
# Made by Prometheus itself for every target it scrapes.
PROMETHEUS_SERIES = {"up"}
# What a histogram or counter's samples are called beside the family's name.
SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "counter": ("_total",),
            "gauge": ("",), "summary": ("_sum", "_count", "")}


def metric_names(expr: str) -> set[str]:
    """The metric names one PromQL expression reads."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)                  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)                            # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)                           # ranges, subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\boffset\s+\w+", "", text)
    words = set(re.findall(r"(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*", text))
    return words - PROMQL_WORDS


def dashboard_expressions(path: Path) -> list[str]:
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                found.append(node["expr"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(path.read_text()))
    return found


def alert_expressions() -> dict[str, str]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}


@pytest.fixture
def exported(client) -> set[str]:
    """Every series name the API's /metrics can answer with, after a little traffic."""
    assert client.get("/healthz").status_code == 200
    answer = client.get("/metrics")
    assert answer.status_code == 200
    names: set[str] = set()
    for family in text_string_to_metric_families(answer.get_data(as_text=True)):
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def test_the_metric_name_reader_finds_every_metric_and_no_promql_word():
    expr = ('histogram_quantile(0.95, sum by (le) (rate(a_seconds_bucket{endpoint="/x", s=~"5.."}[5m])))'
            ' / clamp_min(sum(rate(b_total[5m] offset 1h)), 1e-9) > 0.02 unless on (x) c_gauge')
    assert metric_names(expr) == {"a_seconds_bucket", "b_total", "c_gauge"}


def test_the_dashboard_and_the_alerts_name_only_metrics_the_api_exports(exported):
    assert DASHBOARDS, "no Grafana dashboard in deploy/monitoring/grafana/dashboards"
    named: dict[str, set[str]] = {}
    for path in DASHBOARDS:
        for expr in dashboard_expressions(path):
            for name in metric_names(expr):
                named.setdefault(name, set()).add(path.name)
    for alert, expr in alert_expressions().items():
        for name in metric_names(expr):
            named.setdefault(name, set()).add(f"alerts.yml {alert}")
    assert len(named) >= 6, named
    unknown = {name: sorted(where) for name, where in named.items()
               if name not in exported and name not in PROMETHEUS_SERIES}
    assert not unknown, f"not in /metrics: {unknown}"
    # Only the project's own series: a process or Python metric of one API process would not
    # add up across gunicorn's workers (prometheus_client's multiprocess mode drops them).
    assert all(name.startswith("flashsale_") or name in PROMETHEUS_SERIES for name in named), named


def test_the_alerts_cover_what_an_operator_must_know_at_once():
    alerts = alert_expressions()
    for needed in ("FlashsaleApiErrorRate", "FlashsaleAdmissionLatencyHigh", "FlashsaleStripeErrors",
                   "FlashsaleWebhooksLagging", "FlashsaleSaleInvariantBroken", "FlashsaleDeciderStalled"):
        assert needed in alerts, needed


def test_the_dashboard_shows_the_sale_at_a_glance():
    text = " ".join(expr for path in DASHBOARDS for expr in dashboard_expressions(path))
    for metric in ("flashsale_admissions_total", "flashsale_sale_queue_length",
                   "flashsale_http_request_seconds_bucket", "flashsale_sale_units",
                   "flashsale_webhook_events_total", "flashsale_http_requests_total"):
        assert metric in text, metric


def test_the_monitoring_profile_starts_prometheus_and_grafana_provisioned():
    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"], name
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (PROJECT_ROOT / source).exists(), volume
    prometheus_mounts = " ".join(services["prometheus"]["volumes"])
    assert "prometheus.yml:/etc/prometheus/prometheus.yml" in prometheus_mounts
    assert "alerts.yml:/etc/prometheus/alerts.yml" in prometheus_mounts
    config = yaml.safe_load(PROMETHEUS.read_text())
    assert config["rule_files"] == ["alerts.yml"]
    assert any(target.startswith("api:") for job in config["scrape_configs"]
               for static in job["static_configs"] for target in static["targets"])
    provisioning = KIT / "grafana" / "provisioning"
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    uid = datasource["datasources"][0]["uid"]
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            if panel["type"] != "row":
                assert panel["datasource"]["uid"] == uid, panel["title"]
