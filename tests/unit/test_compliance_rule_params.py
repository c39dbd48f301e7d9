"""The compliance rules' params per kind (provisioning.compliance.rules.validate_rule) and
what "tighter" means for a tenant's admin (loosening): pure, no database."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from unittest.mock import ANY

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialplan.compliance import KINDS, Rule, outbound_rules, parse_hhmm, within_hours
from provisioning.compliance.rules import loosening, validate_rule
from provisioning.compliance.schemas import RuleWrite
from provisioning.engine import Invalid

# The platform's defaults as migration 0019 seeds them: each must validate as it is.
SEEDED: dict[str, dict[str, Any]] = {
    "callee_frequency": {"params": {"windows": [[60, 1], [3600, 5], [86400, 20]]}},
    "calling_hours": {"params": {"start": "08:00", "end": "21:00"}},
    "daily_spend_cap": {"params": {"amount": "5000.00"}},
    "robocall": {
        "params": {"window_s": 600, "max_answer_rate": 0.3, "max_avg_talk_s": 10, "min_calls": 20},
        "warning": 100,
        "critical": 200,
        "action": "suspend",
    },
    "one_ring": {
        "params": {"window_s": 3600, "ring_s": 4, "min_calls": 20},
        "warning": "0.3",
        "critical": "0.5",
        "action": "suspend",
    },
    "failed_rate": {"params": {"window_s": 3600, "min_calls": 50}, "warning": "0.7", "critical": "0.85"},
    "avg_duration": {
        "params": {"window_s": 3600, "min_calls": 50, "below": True},
        "warning": 15,
        "critical": 8,
    },
    "call_frequency": {"params": {"window_s": 3600}, "warning": 300, "critical": 600, "action": "throttle"},
    "numbers_in_use": {"params": {"window_s": 86400}, "warning": 20, "critical": 50, "action": "alert"},
    "complaints": {"params": {"window_s": 2592000}, "warning": 3, "critical": 5, "action": "suspend"},
}


def rule(kind: str, **body: Any) -> Rule:
    return validate_rule(kind, RuleWrite(**{**SEEDED[kind], **body}))


def refused(kind: str, **body: Any) -> Invalid:
    with pytest.raises(Invalid) as info:
        rule(kind, **body)
    return info.value


def test_every_kind_has_a_seeded_default() -> None:
    assert set(SEEDED) == set(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_the_seeded_defaults_validate(kind: str) -> None:
    got = rule(kind)
    assert got.kind == kind
    assert loosening(kind, got, got) is None


def test_normalised_params_feed_the_call_path() -> None:
    rules = {k: rule(k) for k in ("callee_frequency", "calling_hours", "daily_spend_cap")}
    out = outbound_rules(rules)
    assert [(w.seconds, w.max_calls) for w in out.callee_windows] == [(60, 1), (3600, 5), (86400, 20)]
    assert out.hours == (parse_hhmm("08:00"), parse_hhmm("21:00"))
    assert out.daily_spend_cap == Decimal("5000.00")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"windows": []}, "params.windows"),
        ({"windows": [[60, 1]] * 7}, "params.windows"),
        ({"windows": [[0, 1]]}, "params.windows"),
        ({"windows": [[60, 0]]}, "params.windows"),
        ({"windows": [[3600, 5], [60, 1]]}, "params.windows"),  # not ascending
        ({"windows": [[60, 1], [60, 2]]}, "params.windows"),  # one span twice
        ({"windows": [["60", 1]]}, "params.windows.0.0"),  # a string is not seconds
        ({"windows": [[True, 1]]}, "params.windows.0.0"),
        ({"windows": [[60, 1, 2]]}, "params.windows.0"),
        ({"windows": [[60, 1]], "extra": 1}, "params.extra"),
        ({}, "params.windows"),
    ],
)
def test_callee_frequency_windows(params: dict[str, Any], field: str) -> None:
    assert refused("callee_frequency", params=params).field == field


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"start": "8:00", "end": "21:00"}, "params.start"),
        ({"start": "24:00", "end": "21:00"}, "params.start"),
        ({"start": "08:00", "end": "24:01"}, "params.end"),
        ({"start": "08:00", "end": "21:60"}, "params.end"),
        ({"start": "08:00", "end": "08:00"}, "params"),
        ({"start": "08:00"}, "params.end"),
    ],
)
def test_calling_hours(params: dict[str, Any], field: str) -> None:
    assert refused("calling_hours", params=params).field == field


def test_calling_hours_end_of_day_and_past_midnight() -> None:
    assert rule("calling_hours", params={"start": "08:00", "end": "24:00"}).params["end"] == "24:00"
    assert rule("calling_hours", params={"start": "22:00", "end": "06:00"}).params["start"] == "22:00"


@pytest.mark.parametrize("amount", ["0", "0.0000", "-1", "1.00001", "1e3", "abc", "", "12345678901"])
def test_daily_spend_cap_amount_refused(amount: str) -> None:
    assert refused("daily_spend_cap", params={"amount": amount}).field == "params.amount"


def test_daily_spend_cap_amount_must_be_a_string() -> None:
    # a JSON number may already have lost digits as a float
    assert refused("daily_spend_cap", params={"amount": 500.1}).field == "params.amount"
    assert rule("daily_spend_cap", params={"amount": "0.0001"}).params == {"amount": "0.0001"}


def test_gates_have_no_levels() -> None:
    assert refused("calling_hours", warning=1).field == "warning"
    assert refused("daily_spend_cap", critical=1).field == "critical"


@pytest.mark.parametrize(
    ("kind", "body", "field"),
    [
        ("robocall", {"warning": None}, "warning"),
        ("robocall", {"critical": None}, "critical"),
        ("robocall", {"warning": 300}, "critical"),  # critical below warning
        ("one_ring", {"critical": "1.5"}, "critical"),  # a share of calls
        ("failed_rate", {"warning": 2, "critical": 3}, "warning"),
        ("avg_duration", {"warning": 8, "critical": 15}, "critical"),  # below: critical <= warning
        (
            "robocall",
            {"params": {**SEEDED["robocall"]["params"], "max_answer_rate": 1.5}},
            "params.max_answer_rate",
        ),
        ("one_ring", {"params": {"window_s": 3600, "ring_s": 0, "min_calls": 20}}, "params.ring_s"),
        ("failed_rate", {"params": {"window_s": 0, "min_calls": 50}}, "params.window_s"),
        ("complaints", {"params": {"window_s": 3600, "min_calls": 1}}, "params.min_calls"),
        ("complaints", {"params": {}}, "params.window_s"),
    ],
)
def test_monitor_levels_and_params(kind: str, body: dict[str, Any], field: str) -> None:
    assert refused(kind, **body).field == field


def test_avg_duration_not_below_orders_levels_upwards() -> None:
    params = {"window_s": 3600, "min_calls": 50, "below": False}
    assert rule("avg_duration", params=params, warning=8, critical=15).critical == Decimal(15)
    assert refused("avg_duration", params=params, warning=15, critical=8).field == "critical"


def test_action_must_be_one_of_the_actions() -> None:
    with pytest.raises(ValueError):
        RuleWrite(params={}, action="shout")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- tightening
def why(kind: str, current: Rule | None, **new: Any) -> str | None:
    out = loosening(kind, current, rule(kind, **new))
    return out[0] if out else None


def test_no_rule_in_force_takes_anything() -> None:
    assert why("daily_spend_cap", None, params={"amount": "99999"}) is None
    off = rule("daily_spend_cap", enabled=False)
    assert why("daily_spend_cap", off, params={"amount": "99999"}) is None


def test_a_rule_in_force_is_not_switched_off() -> None:
    assert why("robocall", rule("robocall"), enabled=False) == "enabled"


@pytest.mark.parametrize(
    ("windows", "looser"),
    [
        ([[60, 1], [3600, 5], [86400, 20]], False),
        ([[60, 1], [3600, 4], [86400, 20]], False),
        ([[120, 1], [3600, 5], [86400, 20]], False),  # a longer window, same calls: tighter
        ([[60, 1], [86400, 5]], False),  # 5 a day covers 5 an hour and 20 a day
        ([[60, 1], [3600, 6], [86400, 20]], True),
        ([[60, 1], [86400, 20]], True),  # the hourly limit gone
        ([[30, 1], [3600, 5], [86400, 20]], True),  # a shorter window lets a second call in at 31 s
    ],
)
def test_callee_frequency_tightening(windows: list[list[int]], looser: bool) -> None:
    current = rule("callee_frequency")
    assert (why("callee_frequency", current, params={"windows": windows}) == "params.windows") is looser


@pytest.mark.parametrize(
    ("start", "end", "looser"),
    [
        ("08:00", "21:00", False),
        ("09:00", "18:00", False),
        ("07:59", "21:00", True),
        ("08:00", "21:01", True),
        ("20:00", "09:00", True),  # past midnight: 20:00-24:00 and 00:00-09:00
    ],
)
def test_calling_hours_tightening(start: str, end: str, looser: bool) -> None:
    current = rule("calling_hours")
    assert (why("calling_hours", current, params={"start": start, "end": end}) == "params") is looser


def test_calling_hours_past_midnight_tightening() -> None:
    night = rule("calling_hours", params={"start": "22:00", "end": "06:00"})
    assert why("calling_hours", night, params={"start": "23:00", "end": "05:00"}) is None
    assert why("calling_hours", night, params={"start": "12:00", "end": "13:00"}) == "params"


def test_daily_spend_cap_tightening() -> None:
    current = rule("daily_spend_cap")
    assert why("daily_spend_cap", current, params={"amount": "4999.9999"}) is None
    assert why("daily_spend_cap", current, params={"amount": "5000.0001"}) == "params.amount"


@pytest.mark.parametrize(
    ("kind", "body", "field"),
    [
        ("robocall", {"warning": 50, "critical": 100}, None),
        ("robocall", {"warning": 101}, "warning"),
        ("robocall", {"critical": 201}, "critical"),
        ("call_frequency", {"action": "suspend"}, None),
        ("call_frequency", {"action": "alert"}, "action"),  # milder than throttle
        ("avg_duration", {"warning": 20, "critical": 10}, None),  # below: higher is tighter
        ("avg_duration", {"warning": 14}, "warning"),
        ("robocall", {"params": {**SEEDED["robocall"]["params"], "min_calls": 10}}, None),
        ("robocall", {"params": {**SEEDED["robocall"]["params"], "min_calls": 30}}, "params.min_calls"),
        ("robocall", {"params": {**SEEDED["robocall"]["params"], "window_s": 300}}, "params.window_s"),
        ("complaints", {"params": {"window_s": 2592001}}, None),
        ("complaints", {"params": {"window_s": 86400}}, "params.window_s"),
        ("one_ring", {"params": {"window_s": 7200, "ring_s": 4, "min_calls": 20}}, "params.window_s"),
        ("one_ring", {"params": {"window_s": 3600, "ring_s": 6, "min_calls": 20}}, None),
        ("one_ring", {"params": {"window_s": 3600, "ring_s": 3, "min_calls": 20}}, "params.ring_s"),
    ],
)
def test_monitor_tightening(kind: str, body: dict[str, Any], field: str | None) -> None:
    assert why(kind, rule(kind), **body) == field


def test_a_throttle_allows_no_more_calls_a_minute() -> None:
    current = rule("call_frequency")  # throttle, at the default pace
    assert current.action == "throttle"
    faster = Rule(
        "call_frequency",
        {"window_s": 3600, "throttle_per_min": 11},
        current.warning,
        current.critical,
        "throttle",
    )
    slower = Rule(
        "call_frequency",
        {"window_s": 3600, "throttle_per_min": 5},
        current.warning,
        current.critical,
        "throttle",
    )
    assert loosening("call_frequency", current, faster) == ("params.throttle_per_min", ANY)
    assert loosening("call_frequency", current, slower) is None
    assert loosening("call_frequency", slower, current) == ("params.throttle_per_min", ANY)
    suspend = Rule(
        "call_frequency",
        {"window_s": 3600, "throttle_per_min": 5},
        current.warning,
        current.critical,
        "suspend",
    )
    assert loosening("call_frequency", slower, suspend) is None


# ---------------------------------------------------------------------------- properties
HHMM = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.integers(0, 59))
END = st.one_of(HHMM, st.just("24:00"))


def hours(start: str, end: str) -> Rule | None:
    try:
        return validate_rule("calling_hours", RuleWrite(params={"start": start, "end": end}))
    except Invalid:
        return None


def allowed(span: tuple[time, time] | None, at: datetime) -> bool:
    """The call path's within_hours, except for a span ending at 24:00: [start, end of day)
    (see test_call_path_hours_ending_at_24_00)."""
    if span is not None and span[1] == time.max:
        return at.time() >= span[0]
    return within_hours(span, "UTC", at)


def test_call_path_hours_ending_at_24_00() -> None:
    span = outbound_rules({"calling_hours": rule("calling_hours", params={"start": "08:00", "end": "24:00"})})
    assert not within_hours(span.hours, "UTC", datetime(2024, 5, 1, 3, 0, tzinfo=UTC))


@settings(max_examples=300, deadline=None)
@given(HHMM, END, HHMM, END)
def test_hours_no_looser_means_every_minute_allowed_was_allowed(s1: str, e1: str, s2: str, e2: str) -> None:
    """The tightening check against the call path's own within_hours, minute by minute."""
    current, new = hours(s1, e1), hours(s2, e2)
    if current is None or new is None:
        return
    cur_span = outbound_rules({"calling_hours": current}).hours
    new_span = outbound_rules({"calling_hours": new}).hours
    midnight = datetime(2024, 5, 1, tzinfo=UTC)
    widened = [
        t
        for t in (midnight + timedelta(minutes=m) for m in range(24 * 60))
        if allowed(new_span, t) and not allowed(cur_span, t)
    ]
    assert (loosening("calling_hours", current, new) is None) == (not widened), widened[:3]


WINDOWS = st.lists(
    st.tuples(st.integers(1, 86400), st.integers(1, 50)), min_size=1, max_size=6, unique_by=lambda w: w[0]
).map(sorted)


@settings(max_examples=200, deadline=None)
@given(WINDOWS)
def test_any_valid_windows_are_no_looser_than_themselves(windows: list[tuple[int, int]]) -> None:
    current = validate_rule("callee_frequency", RuleWrite(params={"windows": [list(w) for w in windows]}))
    assert loosening("callee_frequency", current, current) is None
    fewer = [[s, max(1, n - 1)] for s, n in windows]
    assert why("callee_frequency", current, params={"windows": fewer}) is None


@settings(max_examples=200, deadline=None)
@given(st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("9999999999"), places=4))
def test_any_positive_amount_with_four_decimals_validates(amount: Decimal) -> None:
    assert rule("daily_spend_cap", params={"amount": str(amount)}).params["amount"] == str(amount)
