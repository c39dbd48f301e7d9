"""The NOC view is built on what the service really exports: every metric name in every
Grafana panel expression (docker/grafana/softswitch-dashboard.json) and every Prometheus
alert expression (docker/prometheus/alerts.yml) is in the live service's /metrics; any
missing name fails (the recording metrics, once tolerated while absent, are exported)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from scripts.devstack.process import ServiceProcess

pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "docker" / "grafana" / "softswitch-dashboard.json"
ALERTS = ROOT / "docker" / "prometheus" / "alerts.yml"
PROMETHEUS = ROOT / "docker" / "prometheus" / "prometheus.yml"

NAME = re.compile(r"\bsoftswitch_[a-z0-9_]+")
TYPE_LINE = re.compile(r"^# TYPE (\S+) (\S+)$", re.M)
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{[^}]*\})? \S+", re.M)


def dashboard_expressions() -> dict[str, str]:
    dash = json.loads(DASHBOARD.read_text())
    out = {}
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            out[f"panel {panel['title']!r} {target['refId']}"] = target["expr"]
    return out


def alert_expressions() -> dict[str, str]:
    rules = yaml.safe_load(ALERTS.read_text())
    return {
        f"alert {rule['alert']}": str(rule["expr"])
        for group in rules["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }


def exported(exposition: str) -> tuple[set[str], dict[str, str]]:
    """(sample names, family name -> type) of a Prometheus text exposition."""
    samples = {m.group(1) for m in SAMPLE.finditer(exposition) if not m.group(0).startswith("#")}
    families = {m.group(1): m.group(2) for m in TYPE_LINE.finditer(exposition)}
    return samples, families


def is_exported(name: str, samples: set[str], families: dict[str, str]) -> bool:
    """A name used in PromQL is exported if it is a sample or family name of the exposition,
    or a histogram's _bucket/_sum/_count of an exported histogram, or a counter's _total of
    a counter family exposed without the suffix (OpenMetrics naming)."""
    if name in samples or name in families:
        return True
    for suffix, kinds in (("_bucket", {"histogram"}), ("_sum", {"histogram", "summary"})):
        if name.endswith(suffix) and families.get(name.removesuffix(suffix)) in kinds:
            return True
    if name.endswith("_count") and families.get(name.removesuffix("_count")) in {"histogram", "summary"}:
        return True
    return name.endswith("_total") and families.get(name.removesuffix("_total")) == "counter"


def test_parser_against_a_known_exposition() -> None:
    text = (
        "# HELP softswitch_x_total x\n# TYPE softswitch_x_total counter\n"
        "# TYPE softswitch_h_seconds histogram\n"
        'softswitch_h_seconds_bucket{le="0.1"} 1.0\nsoftswitch_h_seconds_count 1.0\n'
        "# TYPE softswitch_y counter\nsoftswitch_y_total 2.0\n"
    )
    samples, families = exported(text)
    for ok in (
        "softswitch_x_total",
        "softswitch_h_seconds_bucket",
        "softswitch_h_seconds_sum",
        "softswitch_y_total",
    ):
        assert is_exported(ok, samples, families), ok
    for bad in (
        "softswitch_x",
        "softswitch_h_seconds_total",
        "softswitch_z_bucket",
        "softswitch_x_total_bucket",
    ):
        assert not is_exported(bad, samples, families), bad


def test_every_dashboard_and_alert_metric_is_exported_by_the_live_service(service: ServiceProcess) -> None:
    samples, families = exported(service.metrics())
    expressions = {**dashboard_expressions(), **alert_expressions()}
    assert len(expressions) >= 20, "the dashboard and the alerts have expressions"
    used: dict[str, list[str]] = {}
    for where, expr in expressions.items():
        names = NAME.findall(expr)
        assert names or "up{" in expr, f"{where} uses no softswitch metric: {expr}"
        for name in names:
            used.setdefault(name, []).append(where)
    missing = {n: w for n, w in used.items() if not is_exported(n, samples, families)}
    assert not missing, f"used but not exported by the service: {json.dumps(missing, indent=1)}"


def test_dashboard_and_prometheus_config_are_well_formed() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert 36 <= dash["schemaVersion"] <= 41
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
    prom = yaml.safe_load(PROMETHEUS.read_text())
    assert prom["scrape_configs"][0]["static_configs"][0]["targets"] == ["127.0.0.1:8080"]
    assert prom["scrape_configs"][0]["metrics_path"] == "/metrics"
    assert any(str(f).endswith("alerts.yml") for f in prom["rule_files"])
    alerts = set(alert_expressions())
    for needed in (
        "SoftswitchAmiDown",
        "SoftswitchAsrDrop",
        "SoftswitchDecisionP99OverBudget",
        "SoftswitchDatabaseDown",
        "SoftswitchRecordingDiskHighWater",
    ):
        assert f"alert {needed}" in alerts
