"""The outbound compliance gates (dialplan/compliance.py), as the platforms publish them:
"1 call a minute, 5 an hour, 20 a day to one callee", calling hours 08:00-21:00 in the
tenant's time zone; the tenant's own rule replaces the platform's of the same kind."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from dialplan.compliance import (
    OutboundCounters,
    OutboundRules,
    Refused,
    Rule,
    TenantRules,
    Window,
    check_before_counting,
    check_outbound,
    outbound_rules,
    within_hours,
)
from dialplan.reasons import Reason

NOW = datetime(2026, 12, 3, 6, 0, tzinfo=UTC)  # 14:00 in Shanghai
PLATFORM = {
    "callee_frequency": Rule("callee_frequency", {"windows": [[60, 1], [3600, 5], [86400, 20]]}),
    "calling_hours": Rule("calling_hours", {"start": "08:00", "end": "21:00"}),
    "daily_spend_cap": Rule("daily_spend_cap", {"amount": "500.00"}),
}
RULES = outbound_rules(PLATFORM)


def ago(*seconds: int) -> tuple[datetime, ...]:
    return tuple(NOW - timedelta(seconds=s) for s in seconds)


def test_the_platform_defaults_read_as_published() -> None:
    assert RULES == OutboundRules(
        (Window(60, 1), Window(3600, 5), Window(86400, 20)), (time(8), time(21)), Decimal("500.00")
    )


def test_one_call_a_minute_to_the_same_callee() -> None:
    assert check_outbound(RULES, OutboundCounters(ago(61)), NOW) is None
    assert check_outbound(RULES, OutboundCounters(ago(59)), NOW) == Refused(Reason.CALLEE_FREQUENCY, "60s:1")


def test_five_an_hour_then_twenty_a_day() -> None:
    four_this_hour = ago(120, 600, 1200, 3000)
    assert check_outbound(RULES, OutboundCounters(four_this_hour), NOW) is None
    assert check_outbound(RULES, OutboundCounters((*four_this_hour, *ago(3500))), NOW) == Refused(
        Reason.CALLEE_FREQUENCY, "3600s:5"
    )
    twenty_today = ago(*(4000 + 3000 * i for i in range(20)))
    assert check_outbound(RULES, OutboundCounters(twenty_today), NOW) == Refused(
        Reason.CALLEE_FREQUENCY, "86400s:20"
    )


def test_a_suspended_or_throttled_tenant_is_refused_before_any_callee_count() -> None:
    suspended = OutboundCounters(outbound_suspended=True)
    assert check_outbound(RULES, suspended, NOW) == Refused(Reason.OUTBOUND_SUSPENDED)
    throttled = OutboundCounters(throttle_per_min=10, calls_last_minute=10)
    assert check_outbound(RULES, throttled, NOW) == Refused(Reason.OUTBOUND_THROTTLED, "10/min")
    assert check_outbound(RULES, OutboundCounters(throttle_per_min=10, calls_last_minute=9), NOW) is None


def test_calling_hours_are_the_tenants_local_time() -> None:
    at_22_in_shanghai = datetime(2026, 12, 3, 14, 0, tzinfo=UTC)
    refused = check_before_counting(RULES, "Asia/Shanghai", at_22_in_shanghai)
    assert refused == Refused(Reason.CALLING_HOURS, "08:00-21:00")
    # The same instant is 09:00 in New York's winter: inside its hours.
    assert check_before_counting(RULES, "America/New_York", at_22_in_shanghai) is None
    assert check_before_counting(RULES, "Asia/Shanghai", NOW) is None


def test_hours_over_midnight_and_the_whole_day() -> None:
    night = (time(22), time(6))
    assert within_hours(night, "UTC", datetime(2026, 1, 1, 23, tzinfo=UTC))
    assert within_hours(night, "UTC", datetime(2026, 1, 1, 5, 59, tzinfo=UTC))
    assert not within_hours(night, "UTC", datetime(2026, 1, 1, 6, tzinfo=UTC))
    whole = outbound_rules({"calling_hours": Rule("calling_hours", {"start": "00:00", "end": "24:00"})})
    assert within_hours(whole.hours, "UTC", datetime(2026, 1, 1, 23, 59, 59, tzinfo=UTC))


def test_a_tenants_rule_replaces_the_platforms_and_a_disabled_one_switches_it_off() -> None:
    own = {
        "callee_frequency": Rule("callee_frequency", {"windows": [[60, 3]]}, tenant_id=7),
        "calling_hours": Rule(
            "calling_hours", {"start": "08:00", "end": "21:00"}, enabled=False, tenant_id=7
        ),
    }
    rules = TenantRules(PLATFORM, {7: own})
    mine = outbound_rules(rules.for_tenant(7))
    assert (mine.callee_windows, mine.hours, mine.daily_spend_cap) == (
        (Window(60, 3),),
        None,
        Decimal("500.00"),
    )
    assert outbound_rules(rules.for_tenant(8)) == RULES
    assert rules.spend_cap(8) == Decimal("500.00")


@given(
    st.lists(st.integers(min_value=0, max_value=200_000), max_size=30),
    st.integers(min_value=1, max_value=90_000),
    st.integers(min_value=0, max_value=25),
)
def test_a_window_lets_through_exactly_its_limit(offsets: list[int], seconds: int, limit: int) -> None:
    rules = OutboundRules((Window(seconds, limit),))
    inside = sum(1 for o in offsets if o < seconds)
    verdict = check_outbound(rules, OutboundCounters(ago(*offsets)), NOW)
    assert (verdict is None) == (inside < limit)
