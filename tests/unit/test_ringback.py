"""Personalised ringback tones, the pure parts: when an application takes effect (seed 001:
"当月申请，次月生效", in the tenant's time zone), which tone a call hears at a given instant,
the tone carried by the snapshot's flat number records, the routing decision, and what
each engine is told (Asterisk: SS_RINGBACK, a music-on-hold class)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialplan.inbound import InboundCall, Route, decide_inbound, ivr_transfer
from dialplan.ringback import RingbackTone, ToneApplication, effective_from, tone_at
from dialplan.snapshot import BoundDestination, ConfigSnapshot, Tenant, UnifiedNumber
from softswitch.engines.asterisk.contract import asterisk_variables

SH = "Asia/Shanghai"
SPRING = RingbackTone(7, "softswitch/t3/ringback/spring")
AUTUMN = RingbackTone(9, "softswitch/t3/ringback/autumn")


def at(y: int, m: int, d: int, hh: int = 10, tz: str = SH) -> datetime:
    return datetime(y, m, d, hh, tzinfo=ZoneInfo(tz))


@pytest.mark.parametrize(
    ("applied_at", "timezone", "effective_on"),
    [
        (at(2026, 12, 4), SH, date(2027, 1, 1)),  # December applies, January plays
        (at(2026, 4, 1, 0), SH, date(2026, 5, 1)),  # the first day of a month: still next month
        (at(2026, 4, 30, 23), SH, date(2026, 5, 1)),
        # 2026-12-31 20:00 UTC is 1 January 04:00 in Shanghai: applied in January there
        (datetime(2026, 12, 31, 20, tzinfo=UTC), SH, date(2027, 2, 1)),
        (datetime(2026, 12, 31, 20, tzinfo=UTC), "UTC", date(2027, 1, 1)),
    ],
)
def test_an_application_takes_effect_on_the_first_day_of_the_next_month(
    applied_at: datetime, timezone: str, effective_on: date
) -> None:
    assert effective_from(applied_at, timezone) == effective_on


def test_a_naive_instant_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        effective_from(datetime(2026, 12, 4, 10), SH)


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 12, 31), timezones=st.just(UTC)))
def test_the_effective_day_is_a_first_of_month_within_one_month(applied_at: datetime) -> None:
    local = applied_at.astimezone(ZoneInfo(SH)).date()
    day = effective_from(applied_at, SH)
    assert day.day == 1 and local < day <= local + timedelta(days=31)
    assert (day.year * 12 + day.month) - (local.year * 12 + local.month) == 1


def test_the_tone_heard_is_the_latest_in_effect_on_the_tenants_day() -> None:
    apps = (ToneApplication(date(2027, 1, 1), SPRING), ToneApplication(date(2027, 3, 1), AUTUMN))
    assert tone_at((), SH, at(2027, 6, 1)) is None  # no tone: the default ring
    assert tone_at(apps, SH, at(2026, 12, 31, 23)) is None  # applied in December, not yet
    # midnight of 1 January in Shanghai is 16:00 UTC on 31 December
    assert tone_at(apps, SH, datetime(2026, 12, 31, 15, 59, tzinfo=UTC)) is None
    assert tone_at(apps, SH, datetime(2026, 12, 31, 16, 0, tzinfo=UTC)) == SPRING
    assert tone_at(apps, SH, at(2027, 2, 28, 23)) == SPRING  # the next one is still to come
    assert tone_at(apps, SH, at(2027, 3, 1, 0)) == AUTUMN
    assert tone_at(tuple(reversed(apps)), SH, at(2027, 4, 1)) == AUTUMN  # order does not matter


def _number(ringback: tuple[ToneApplication, ...] = ()) -> UnifiedNumber:
    return UnifiedNumber(
        10, "4008001234", "active", 3, (BoundDestination("13800138000", 20),), ringback=ringback
    )


def _snapshot(number: UnifiedNumber) -> ConfigSnapshot:
    return ConfigSnapshot.build([Tenant(3, "Acme", "active")], [number], at(2026, 12, 4), generation=1)


def test_the_snapshot_keeps_a_numbers_tones_in_its_flat_record() -> None:
    n = _number((ToneApplication(date(2027, 1, 1), SPRING), ToneApplication(date(2027, 3, 1), AUTUMN)))
    snap = _snapshot(n)
    assert snap.numbers["4008001234"] == n
    record = snap.number_table.record("4008001234")
    assert record is not None and record[15] == (
        date(2027, 1, 1).toordinal(),
        7,
        SPRING.prompt,
        date(2027, 3, 1).toordinal(),
        9,
        AUTUMN.prompt,
    )
    # a number without one holds the empty tuple (one shared object), and reads back without
    assert _snapshot(_number()).numbers["4008001234"].ringback == ()


def test_a_routed_call_carries_the_tone_in_effect_and_none_before() -> None:
    snap = _snapshot(_number((ToneApplication(date(2027, 1, 1), SPRING),)))
    call = InboundCall("13900139000", "4008001234", "1.1")
    before = decide_inbound(snap, call, at(2026, 12, 31, 23))
    after = decide_inbound(snap, call, at(2027, 1, 2))
    assert isinstance(before, Route) and before.ringback is None
    assert isinstance(after, Route) and after.ringback == SPRING
    assert isinstance(plain := decide_inbound(_snapshot(_number()), call, at(2027, 1, 2)), Route)
    assert plain.ringback is None
    # an IVR's transfer to a group rings with the number's tone too
    transfer = ivr_transfer(snap, "4008001234", "group", "default", now=at(2027, 1, 2))
    assert isinstance(transfer, Route) and transfer.ringback == SPRING


def test_asterisk_is_told_the_tones_music_on_hold_class() -> None:
    snap = _snapshot(_number((ToneApplication(date(2027, 1, 1), SPRING),)))
    route = decide_inbound(snap, InboundCall("13900139000", "4008001234", "1.1"), at(2027, 1, 2))
    assert dict(asterisk_variables(route, "carrier-out"))["SS_RINGBACK"] == "ss-rbt-7"
    assert SPRING.moh_class == "ss-rbt-7"  # the name migration 0028's view gives tone 7
    default = decide_inbound(snap, InboundCall("13900139000", "4008001234", "1.1"), at(2026, 12, 4))
    assert dict(asterisk_variables(default, "carrier-out"))["SS_RINGBACK"] == ""
