"""The shipped Prometheus alert rules (docker/prometheus/alerts.yml) are valid for promtool,
and every alert has `promtool test rules` cases (docker/prometheus/tests/*.yml) in which it
fires and in which it stays silent — and those cases pass.

promtool comes with Debian's prometheus package (scripts/bootstrap.sh installs it); the
tests skip without it on a laptop and fail under CI."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parents[2]
PROM_DIR = ROOT / "docker" / "prometheus"
ALERTS = PROM_DIR / "alerts.yml"
CONFIG = PROM_DIR / "prometheus.yml"
TESTS_DIR = PROM_DIR / "tests"


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if IN_CI:
            pytest.fail(
                "CI is set and promtool is missing (Debian's prometheus package: scripts/bootstrap.sh)"
            )
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    return path


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *map(str, args)], capture_output=True, text=True, timeout=120, check=False, cwd=ROOT
    )


def alert_names() -> list[str]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule["alert"] for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def rule_test_files() -> list[Path]:
    return sorted(TESTS_DIR.glob("*.yml"))


def cases(path: Path) -> list[dict[str, Any]]:
    """The alert_rule_test entries of one promtool test file."""
    doc = yaml.safe_load(path.read_text())
    return [case for test in doc["tests"] for case in test.get("alert_rule_test", [])]


def test_the_rules_pass_promtool_check() -> None:
    result = run("check", "rules", ALERTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_names())} rules found" in result.stdout


def test_the_promtool_rule_tests_pass() -> None:
    files = rule_test_files()
    assert files, f"no promtool tests in {TESTS_DIR}"
    result = run("test", "rules", *files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(files), result.stdout


def test_every_alert_has_a_case_where_it_fires_and_one_where_it_stays_silent() -> None:
    names = alert_names()
    assert len(names) == len(set(names)), "alert names are unique"
    fires: set[str] = set()
    silent: set[str] = set()
    for path in rule_test_files():
        doc = yaml.safe_load(path.read_text())
        rule_files = [(path.parent / f).resolve() for f in doc["rule_files"]]
        assert rule_files == [ALERTS.resolve()], f"{path.name} tests the shipped rules file"
        for case in cases(path):
            (fires if case.get("exp_alerts") else silent).add(case["alertname"])
    unknown = (fires | silent) - set(names)
    assert not unknown, f"test cases for alerts that do not exist: {sorted(unknown)}"
    assert not set(names) - fires, f"alerts never tested firing: {sorted(set(names) - fires)}"
    assert not set(names) - silent, f"alerts never tested silent: {sorted(set(names) - silent)}"


def test_the_case_parser_sees_firing_and_silent_cases(tmp_path: Path) -> None:
    sample = tmp_path / "t.yml"
    sample.write_text(
        "rule_files: [a.yml]\ntests:\n  - alert_rule_test:\n"
        "      - {alertname: A, exp_alerts: [{exp_labels: {x: y}}]}\n"
        "      - {alertname: B, exp_alerts: []}\n      - {alertname: C}\n"
    )
    assert [(c["alertname"], bool(c.get("exp_alerts"))) for c in cases(sample)] == [
        ("A", True),
        ("B", False),
        ("C", False),
    ]


def test_the_prometheus_config_passes_promtool_check(tmp_path: Path) -> None:
    """prometheus.yml names the rules at their path inside the compose container
    (/etc/prometheus/alerts.yml): its syntax is checked as shipped, and the whole config —
    rules included — with the rule path pointed at the repository's file."""
    result = run("check", "config", "--syntax-only", CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(CONFIG.read_text())
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    config["rule_files"] = [str(ALERTS)]
    local = tmp_path / "prometheus.yml"
    local.write_text(yaml.safe_dump(config))
    result = run("check", "config", local)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_names())} rules found" in result.stdout
