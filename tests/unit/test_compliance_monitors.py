"""The compliance monitors' judgement as pure functions (dialplan.monitors): each rule's
value from a window's figures, its level against the warning and critical thresholds, and
what a change of level does."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialplan.compliance import Rule
from dialplan.monitors import Figures, Finding, evaluate, level_of, measure, step, throttle_of


def rule(
    kind: str, warning: float | None, critical: float | None, action: str = "notice", **params: Any
) -> Rule:
    w = None if warning is None else Decimal(str(warning))
    c = None if critical is None else Decimal(str(critical))
    return Rule(kind, params, w, c, action)


ROBOCALL = rule(
    "robocall", 20, 40, "suspend", window_s=600, max_answer_rate=0.3, max_avg_talk_s=10, min_calls=20
)


def test_robocall_counts_distinct_callees_only_when_the_calls_look_automated() -> None:
    burst = Figures(calls=50, answered=5, talk_s=10, distinct_callees=50)
    assert measure(ROBOCALL, burst) == 50
    assert evaluate(ROBOCALL, burst).level == "critical"
    # The same 50 callees reached by a call centre whose calls are answered and long:
    # not automated.
    human = Figures(calls=50, answered=40, talk_s=40 * 95, distinct_callees=50)
    assert measure(ROBOCALL, human) == 0 and evaluate(ROBOCALL, human).level == "ok"
    # Answered but very short (a recorded message that hangs up): automated.
    short = Figures(calls=50, answered=45, talk_s=45 * 3, distinct_callees=30)
    assert evaluate(ROBOCALL, short) == Finding("robocall", "", "warning", Decimal(30), Decimal(20))


def test_too_few_calls_are_not_judged() -> None:
    assert measure(ROBOCALL, Figures(calls=19, distinct_callees=19)) is None
    assert evaluate(ROBOCALL, Figures(calls=19, distinct_callees=19)).level == "ok"
    one_ring = rule("one_ring", 0.3, 0.5, window_s=3600, ring_s=4, min_calls=10)
    assert evaluate(one_ring, Figures(calls=2, one_ring=2)).level == "ok"
    assert evaluate(one_ring, Figures(calls=10, one_ring=5)) == Finding(
        "one_ring", "", "critical", Decimal("0.5000"), Decimal("0.5")
    )
    assert evaluate(one_ring, Figures(calls=10, one_ring=3)).level == "warning"


def test_failed_rate_and_average_duration() -> None:
    failed = rule("failed_rate", 0.7, 0.85, min_calls=50)
    assert measure(failed, Figures(calls=100, answered=20)) == Decimal("0.8000")
    assert evaluate(failed, Figures(calls=100, answered=20)).level == "warning"
    avg = rule("avg_duration", 15, 8, below=True, min_calls=50)
    figures = Figures(calls=60, answered=50, talk_s=50 * 7)
    assert measure(avg, figures) == Decimal("7.0000")
    assert evaluate(avg, figures).level == "critical"  # reached from above
    assert evaluate(avg, Figures(calls=60, answered=50, talk_s=50 * 12)).level == "warning"
    assert evaluate(avg, Figures(calls=60, answered=50, talk_s=50 * 60)).level == "ok"
    assert measure(avg, Figures(calls=60, answered=0)) is None  # nothing answered: no average


def test_counting_rules() -> None:
    assert (
        evaluate(rule("call_frequency", 300, 600, "throttle"), Figures(calls=300), "4008001234").level
        == "warning"
    )
    assert evaluate(rule("numbers_in_use", 20, 50, "alert"), Figures(caller_numbers=51)).level == "critical"
    assert evaluate(rule("complaints", 3, 5, "suspend"), Figures(complaints=2)).level == "ok"
    assert evaluate(rule("complaints", 3, 5, "suspend"), Figures(complaints=5)).level == "critical"


def test_a_rule_without_thresholds_never_rises() -> None:
    assert level_of(rule("complaints", None, None), Decimal(1000)) == ("ok", None)


def test_a_change_of_level_is_an_event_and_critical_takes_the_rules_action() -> None:
    r = rule("complaints", 3, 5, "suspend")
    crit = Finding("complaints", "", "critical", Decimal(5), Decimal(5))
    warn = Finding("complaints", "", "warning", Decimal(3), Decimal(3))
    ok = Finding("complaints", "", "ok", Decimal(0), None)
    assert (step(None, crit, r).event, step(None, crit, r).action) == (True, "suspend")
    assert (step("warning", crit, r).event, step("warning", crit, r).action) == (True, "suspend")
    assert (step("ok", warn, r).event, step("ok", warn, r).action) == (True, "notice")
    assert step("critical", crit, r).event is False  # no second action while it stays critical
    assert (step("critical", warn, r).event, step("critical", warn, r).action) == (True, "none")
    assert (step("warning", ok, r).event, step("warning", ok, r).action) == (True, "none")
    assert step(None, ok, r).event is False


def test_the_throttle_pace_is_the_rules_or_ten_a_minute() -> None:
    assert throttle_of(rule("one_ring", 0.3, 0.5, "throttle", throttle_per_min=2)) == 2
    assert throttle_of(rule("one_ring", 0.3, 0.5, "throttle")) == 10


@given(
    calls=st.integers(0, 500),
    answered=st.integers(0, 500),
    warning=st.decimals(0, 1, places=2),
    gap=st.decimals(0, 1, places=2),
)
def test_levels_are_monotonic_in_the_value(calls: int, answered: int, warning: Decimal, gap: Decimal) -> None:
    """More failed calls never lower the failed-rate level."""
    answered = min(answered, calls)
    r = Rule("failed_rate", {"min_calls": 1}, warning, warning + gap)
    order = ("ok", "warning", "critical")
    worse = evaluate(r, Figures(calls=calls + 1, answered=answered))
    better = evaluate(r, Figures(calls=calls + 1, answered=min(answered + 1, calls + 1)))
    assert order.index(worse.level) >= order.index(better.level)


def test_an_unknown_kind_is_an_error() -> None:
    with pytest.raises(ValueError, match="not a monitor"):
        measure(rule("calling_hours", None, None), Figures())
