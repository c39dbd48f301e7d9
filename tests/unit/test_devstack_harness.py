"""The e2e harness's own readers, without the stack: a metric read from /metrics fails when
its family is gone (a renamed metric never reads as 0.0)."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from scripts.devstack.process import MetricAbsent, metric_family, sample_value


@pytest.fixture(scope="module")
def exposition() -> str:
    r = CollectorRegistry()
    Counter("softswitch_c", "a counter", ["reason"], registry=r).labels("ROUTED").inc(3)
    Counter("softswitch_plain", "no labels", registry=r)
    Gauge("softswitch_g", "a gauge", ["tenant"], registry=r)  # no sample yet
    Gauge("softswitch_generation", "a gauge", registry=r).set(7)
    Histogram("softswitch_h_seconds", "a histogram", registry=r).observe(0.02)
    return generate_latest(r).decode()


def test_a_present_sample_is_read(exposition: str) -> None:
    assert sample_value(exposition, "softswitch_c_total", {"reason": "ROUTED"}) == 3.0
    assert sample_value(exposition, "softswitch_generation", {}) == 7.0
    assert sample_value(exposition, "softswitch_plain_total", {}) == 0.0
    assert sample_value(exposition, "softswitch_h_seconds_count", {}) == 1.0


def test_labels_not_seen_yet_of_an_exported_family_read_zero(exposition: str) -> None:
    assert sample_value(exposition, "softswitch_c_total", {"reason": "CHANNEL_LIMIT"}) == 0.0
    assert sample_value(exposition, "softswitch_g", {"tenant": "1"}) == 0.0


@pytest.mark.parametrize(
    "name",
    [
        "softswitch_gone_total",  # never exported
        "softswitch_c",  # a counter is read by its sample name, _total
        "softswitch_generation_total",  # a gauge has no _total
        "softswitch_h_seconds_total",
        "softswitch_c_total_bucket",
    ],
)
def test_an_absent_family_raises(exposition: str, name: str) -> None:
    with pytest.raises(MetricAbsent, match=name):
        sample_value(exposition, name, {})


def test_families_of_suffixed_samples() -> None:
    openmetrics = "# TYPE softswitch_x counter\nsoftswitch_x_total 1\n# TYPE softswitch_h histogram\n"
    assert metric_family(openmetrics, "softswitch_x_total") == "softswitch_x"
    assert metric_family(openmetrics, "softswitch_h_bucket") == "softswitch_h"
    assert metric_family(openmetrics, "softswitch_h_sum") == "softswitch_h"
    assert metric_family(openmetrics, "softswitch_x_bucket") is None
