"""The scheduler's triggers as pure functions of (trigger, last runs, now, zones): local
midnight in Asia/Shanghai and other zones (DST included), catch-up once, retry after a
failure; the onboarding deadline's steps; the outbound-attempt retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from provisioning.onboarding import Step, deadline_step
from softswitch.jobs.catalogue import attempts_retention
from softswitch.jobs.scheduler import (
    Every,
    LastRuns,
    LocalDayStart,
    day_start,
    day_started,
    is_due,
    local_day,
    next_due,
    zones_due,
)

SH = ZoneInfo("Asia/Shanghai")
NY = ZoneInfo("America/New_York")
SANTIAGO = ZoneInfo("America/Santiago")
DAILY = LocalDayStart()


def test_shanghai_midnight_is_16_utc_the_day_before() -> None:
    last = datetime(2026, 12, 2, 15, 59, tzinfo=UTC)  # 23:59 in Shanghai on the 2nd
    assert not day_started("Asia/Shanghai", last, datetime(2026, 12, 2, 15, 59, 59, tzinfo=UTC))
    assert day_started("Asia/Shanghai", last, datetime(2026, 12, 2, 16, 0, tzinfo=UTC))
    # ... while in New York it is still 11:00 on the 2nd: not its day start.
    assert not day_started("America/New_York", last, datetime(2026, 12, 2, 16, 0, tzinfo=UTC))
    assert day_started("America/New_York", last, datetime(2026, 12, 3, 5, 0, tzinfo=UTC))


def test_a_run_just_after_midnight_is_not_due_again_that_day() -> None:
    ran = datetime(2026, 12, 3, 0, 0, 30, tzinfo=SH)
    for later in (ran + timedelta(minutes=1), datetime(2026, 12, 3, 23, 59, 59, tzinfo=SH)):
        assert not is_due(DAILY, LastRuns(ok=ran, attempt=ran), later, ["Asia/Shanghai"])
    assert is_due(
        DAILY, LastRuns(ok=ran, attempt=ran), datetime(2026, 12, 4, 0, 0, tzinfo=SH), ["Asia/Shanghai"]
    )


def test_never_run_is_due_at_once_and_with_no_tenant_zone_a_day_job_never_is() -> None:
    now = datetime(2026, 12, 3, 10, 0, tzinfo=SH)
    assert is_due(DAILY, LastRuns(), now, ["Asia/Shanghai"])
    assert not is_due(DAILY, LastRuns(), now, [])
    assert is_due(Every(60), LastRuns(), now)


def test_the_zones_whose_day_began_are_the_ones_the_job_is_told() -> None:
    last = datetime(2026, 12, 2, 14, 30, tzinfo=UTC)  # 22:30 Shanghai, 23:30 Tokyo
    now = datetime(2026, 12, 2, 16, 30, tzinfo=UTC)  # past midnight in Shanghai and Tokyo only
    got = zones_due(["Asia/Shanghai", "Asia/Tokyo", "Europe/London", "America/New_York"], last, now)
    assert got == {"Asia/Shanghai", "Asia/Tokyo"}
    assert next_due(DAILY, last, ["Asia/Shanghai", "Asia/Tokyo"]) == datetime(2026, 12, 2, 15, tzinfo=UTC)


def test_catch_up_once_after_missed_midnights() -> None:
    # The service was down for three local midnights: one run at the next tick, not three.
    last = datetime(2026, 12, 1, 0, 1, tzinfo=SH)
    back = datetime(2026, 12, 4, 9, 30, tzinfo=SH)
    assert is_due(DAILY, LastRuns(ok=back - timedelta(days=3), attempt=last), back, ["Asia/Shanghai"])
    # That catch-up run is now the last: nothing more until the next midnight.
    assert not is_due(DAILY, LastRuns(ok=back, attempt=back), back + timedelta(seconds=30), ["Asia/Shanghai"])
    assert next_due(DAILY, back, ["Asia/Shanghai"]) == datetime(2026, 12, 5, 0, 0, tzinfo=SH)


def test_new_york_day_starts_across_both_dst_changes() -> None:
    # Spring forward (2026-03-08 02:00 -> 03:00): that day is 23 hours long.
    assert day_start(local_day(datetime(2026, 3, 8, 12, tzinfo=NY), NY), NY) == datetime(
        2026, 3, 8, 5, tzinfo=UTC
    )
    assert next_due(DAILY, datetime(2026, 3, 8, 0, 5, tzinfo=NY), ["America/New_York"]) == datetime(
        2026, 3, 9, 4, tzinfo=UTC
    )
    # Fall back (2026-11-01 02:00 -> 01:00): a 25-hour day, still one run.
    ran = datetime(2026, 11, 1, 0, 5, tzinfo=NY)
    nxt = next_due(DAILY, ran, ["America/New_York"])
    assert nxt == datetime(2026, 11, 2, 5, tzinfo=UTC)
    assert nxt is not None and nxt - ran == timedelta(hours=24, minutes=55)
    one_before = datetime(2026, 11, 2, 4, 59, tzinfo=UTC)  # 23:59 EST on the 1st
    assert not is_due(DAILY, LastRuns(ok=ran, attempt=ran), one_before, ["America/New_York"])


def test_a_zone_whose_clocks_skip_midnight_starts_its_day_at_the_first_instant_that_exists() -> None:
    # Chile moves its clocks from Saturday 24:00 to Sunday 01:00 (2026-09-06): 00:00 never
    # happens; the day begins at 01:00 -03 = 04:00 UTC.
    start = day_start(datetime(2026, 9, 6).date(), SANTIAGO)
    assert start == datetime(2026, 9, 6, 4, tzinfo=UTC)
    assert start.astimezone(SANTIAGO).hour == 1
    assert (start - timedelta(seconds=1)).astimezone(SANTIAGO).date() == datetime(2026, 9, 5).date()
    last = datetime(2026, 9, 5, 23, 30, tzinfo=SANTIAGO)
    assert not is_due(
        DAILY, LastRuns(ok=last, attempt=last), start - timedelta(seconds=1), ["America/Santiago"]
    )
    assert is_due(DAILY, LastRuns(ok=last, attempt=last), start, ["America/Santiago"])


@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)),
    st.sampled_from(
        ["Asia/Shanghai", "America/New_York", "America/Santiago", "Europe/London", "Asia/Kolkata"]
    ),
)
def test_the_next_day_start_is_the_first_instant_of_the_next_local_day(last: datetime, name: str) -> None:
    tz = ZoneInfo(name)
    nxt = next_due(DAILY, last, [name])
    assert nxt is not None
    assert local_day(nxt, tz) == local_day(last, tz) + timedelta(days=1)
    assert local_day(nxt - timedelta(seconds=1), tz) == local_day(last, tz)
    assert not day_started(name, last, nxt - timedelta(seconds=1))
    assert day_started(name, last, nxt)


def test_every_n_seconds_from_the_last_success() -> None:
    t0 = datetime(2026, 12, 3, 10, tzinfo=UTC)
    every = Every(3600)
    assert not is_due(every, LastRuns(ok=t0, attempt=t0), t0 + timedelta(seconds=3599))
    assert is_due(every, LastRuns(ok=t0, attempt=t0), t0 + timedelta(seconds=3600))
    assert next_due(every, t0, []) == t0 + timedelta(hours=1)


def test_a_failed_run_is_retried_after_retry_s_not_at_every_tick() -> None:
    ok = datetime(2026, 12, 2, 0, 0, 10, tzinfo=SH)
    failed = datetime(2026, 12, 3, 0, 0, 10, tzinfo=SH)
    last = LastRuns(ok=ok, attempt=failed, failed=True)
    assert not is_due(DAILY, last, failed + timedelta(seconds=299), ["Asia/Shanghai"], retry_s=300)
    assert is_due(DAILY, last, failed + timedelta(seconds=300), ["Asia/Shanghai"], retry_s=300)
    # A success since (the last finished run ok) is the period's run.
    assert not is_due(
        DAILY, LastRuns(ok=failed, attempt=failed), failed + timedelta(hours=1), ["Asia/Shanghai"]
    )


def test_deadline_steps_two_days_one_day_and_the_deadline() -> None:
    due = datetime(2026, 12, 10, 12, tzinfo=SH)
    assert deadline_step(due, 3, due - timedelta(days=3)).step is Step.NOTHING
    assert deadline_step(due, 3, due - timedelta(days=2)).reminder == "2d"
    assert deadline_step(due, 3, due - timedelta(days=1, seconds=1)).reminder == "2d"
    assert deadline_step(due, 3, due - timedelta(days=1)).reminder == "1d"
    assert deadline_step(due, 3, due - timedelta(seconds=1)).reminder == "1d"
    assert deadline_step(due, 3, due).step is Step.RELEASE
    assert deadline_step(due, 3, due + timedelta(days=30)).step is Step.RELEASE
    assert deadline_step(due, 0, due + timedelta(days=1)).step is Step.NOTHING


def test_outbound_attempts_are_kept_eight_days_or_the_longest_window() -> None:
    assert attempts_retention([]) == timedelta(days=8)
    assert attempts_retention([[[60, 1], [3600, 5], [86400, 20]]]) == timedelta(days=8)
    assert attempts_retention([[[60, 1]], [[30 * 86400, 100]]]) == timedelta(days=30)
    assert attempts_retention([None, [["bad"]], [[]]]) == timedelta(days=8)
