"""Issue 11, item 5: a call the time policy closes says which rule closed it. Holiday and
after-hours closures were both reason CLOSED with an empty `why`; the decision now carries
the rule (typed) and a `why` for the call record naming it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from dialplan.inbound import InboundCall, Reject, decide_inbound
from dialplan.reasons import Reason
from dialplan.snapshot import BoundDestination, ConfigSnapshot, Tenant, UnifiedNumber
from dialplan.time_policy import TimePolicy, TimeRule

SHANGHAI = timezone(timedelta(hours=8))
CLOSED = {"kind": "announcement", "ref": "softswitch/closed"}
HOLIDAY_PROMPT = {"kind": "announcement", "ref": "softswitch/holiday"}

POLICY = {
    "weekly": [
        {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "12:00"},
        {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "13:00", "end": "18:00"},
        # a weekly window that closes: Wednesday's training hour
        {"days": ["wed"], "start": "08:00", "end": "09:00", "target": CLOSED},
    ],
    "holidays": [{"date": "2026-10-01", "name": "国庆节"}, "2026-10-02"],
    "holiday_target": HOLIDAY_PROMPT,
    "workdays": [{"date": "2026-10-10", "as": "fri"}],
    "exceptions": [{"date": "2026-11-27", "start": "15:00", "end": "24:00", "target": CLOSED}],
    "default": CLOSED,
}


def sh(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=SHANGHAI)


@pytest.mark.parametrize(
    ("now", "rule", "why"),
    [
        (sh(2026, 10, 1, 10), TimeRule.HOLIDAY, "holiday: 2026-10-01 国庆节"),
        (sh(2026, 10, 2, 10), TimeRule.HOLIDAY, "holiday: 2026-10-02"),  # a holiday without a name
        (sh(2026, 11, 23, 20), TimeRule.OUTSIDE_HOURS, "after hours: mon 09:00-12:00, 13:00-18:00"),
        (sh(2026, 11, 23, 12, 30), TimeRule.OUTSIDE_HOURS, "after hours: mon 09:00-12:00, 13:00-18:00"),
        (sh(2026, 11, 28, 10), TimeRule.OUTSIDE_HOURS, "after hours: sat has no hours"),
        (
            sh(2026, 10, 10, 19),
            TimeRule.OUTSIDE_HOURS,
            "after hours: 2026-10-10 as fri 09:00-12:00, 13:00-18:00",
        ),
        (sh(2026, 11, 25, 8, 30), TimeRule.WEEKLY, "weekly: wed 08:00-09:00"),
        (sh(2026, 11, 27, 16), TimeRule.EXCEPTION, "exception: 2026-11-27 15:00-24:00"),
    ],
)
def test_each_closing_rule_has_its_own_why(now: datetime, rule: TimeRule, why: str) -> None:
    match = TimePolicy.parse(POLICY).match_at(now)
    assert match.target.kind == "announcement"
    assert (match.rule, match.why) == (rule, why)


def test_a_holiday_and_after_hours_give_different_whys() -> None:
    policy = TimePolicy.parse(POLICY)
    holiday, night = policy.match_at(sh(2026, 10, 1, 10)), policy.match_at(sh(2026, 11, 23, 20))
    assert holiday.rule is TimeRule.HOLIDAY and night.rule is TimeRule.OUTSIDE_HOURS
    assert holiday.why != night.why
    assert holiday.why.startswith("holiday: ") and night.why.startswith("after hours: ")


def test_target_at_still_gives_the_rule_code_routed_calls_record() -> None:
    policy = TimePolicy.parse(POLICY)
    assert policy.target_at(sh(2026, 11, 23, 10))[1] == "weekly"
    assert policy.target_at(sh(2026, 11, 23, 20))[1] == "outside_hours"
    assert policy.target_at(sh(2026, 10, 1, 10))[1] == "holiday"


def _snapshot() -> ConfigSnapshot:
    number = UnifiedNumber(
        10,
        "4001234567",
        "active",
        1,
        (BoundDestination("13800138000", 20),),
        time_policy=TimePolicy.parse(POLICY),
    )
    return ConfigSnapshot.build([Tenant(1, "Acme", "active")], [number], sh(2026, 11, 23, 10), generation=1)


@pytest.mark.parametrize(
    ("now", "prompt", "rule", "why"),
    [
        (sh(2026, 10, 1, 10), "softswitch/holiday", TimeRule.HOLIDAY, "holiday: 2026-10-01 国庆节"),
        (
            sh(2026, 11, 23, 20),
            "softswitch/closed",
            TimeRule.OUTSIDE_HOURS,
            "after hours: mon 09:00-12:00, 13:00-18:00",
        ),
    ],
)
def test_the_closed_decision_carries_the_rule_and_its_why(
    now: datetime, prompt: str, rule: TimeRule, why: str
) -> None:
    call = InboundCall(caller="13900139000", called="4001234567", linkedid="1700000000.1")
    decision = decide_inbound(_snapshot(), call, now)
    assert isinstance(decision, Reject)
    assert (decision.reason, decision.announcement) == (Reason.CLOSED, prompt)
    assert decision.closed_by is not None and decision.closed_by.rule is rule
    assert decision.why == why


def test_holiday_names_are_validated() -> None:
    with pytest.raises(ValueError, match="holiday"):
        TimePolicy.parse({"holidays": [{"name": "no date"}]})
    with pytest.raises(ValueError, match="holiday"):
        TimePolicy.parse({"holidays": [{"date": "2026-10-01", "name": 7}]})
