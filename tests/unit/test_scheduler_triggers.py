"""The scheduler's triggers as pure functions of (trigger, last runs, now, zones): local
midnight in Asia/Shanghai and other zones (DST included), catch-up once, retry after a
failure with a growing backoff; the onboarding deadline's steps; the outbound-attempt
retention; the job list and its selection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialplan.compliance import Rule
from provisioning.onboarding import DeadlineStep, Step, deadline_step, notice_key
from softswitch.core.settings import Settings
from softswitch.jobs.catalogue import all_jobs, attempts_retention, selected
from softswitch.jobs.scheduler import lock_key
from softswitch.jobs.triggers import (
    SINCE_EVER,
    Every,
    LastRuns,
    LocalDayStart,
    day_start,
    day_started,
    due_at,
    is_due,
    local_day,
    next_due,
    retry_delay,
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
    assert day_start(datetime(2026, 12, 3).date(), SH) == datetime(2026, 12, 2, 16, tzinfo=UTC)


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
    assert due_at(DAILY, LastRuns(), ["Asia/Shanghai"]) == SINCE_EVER
    assert not is_due(DAILY, LastRuns(), now, [])
    assert due_at(DAILY, LastRuns(), []) is None
    assert is_due(Every(60), LastRuns(), now)
    # The first run of a day job is for every zone.
    assert zones_due(["Asia/Shanghai", "Europe/London"], None, now) == {"Asia/Shanghai", "Europe/London"}


def test_the_zones_whose_day_began_are_the_ones_the_job_is_told() -> None:
    last = datetime(2026, 12, 2, 14, 30, tzinfo=UTC)  # 22:30 Shanghai, 23:30 Tokyo
    now = datetime(2026, 12, 2, 16, 30, tzinfo=UTC)  # past midnight in Shanghai and Tokyo only
    got = zones_due(["Asia/Shanghai", "Asia/Tokyo", "Europe/London", "America/New_York"], last, now)
    assert got == {"Asia/Shanghai", "Asia/Tokyo"}
    assert next_due(DAILY, last, ["Asia/Shanghai", "Asia/Tokyo"]) == datetime(2026, 12, 2, 15, tzinfo=UTC)


def test_catch_up_once_after_missed_midnights() -> None:
    # The service was down for three local midnights: one run at the next tick, not three.
    last_ok = datetime(2026, 12, 1, 0, 1, tzinfo=SH)
    back = datetime(2026, 12, 4, 9, 30, tzinfo=SH)
    assert is_due(DAILY, LastRuns(ok=last_ok, attempt=last_ok), back, ["Asia/Shanghai"])
    assert zones_due(["Asia/Shanghai"], last_ok, back) == {"Asia/Shanghai"}
    # That catch-up run is now the last: nothing more until the next midnight.
    after = LastRuns(ok=back, attempt=back)
    for later in (back + timedelta(seconds=30), datetime(2026, 12, 4, 23, 59, 59, tzinfo=SH)):
        assert not is_due(DAILY, after, later, ["Asia/Shanghai"])
    assert next_due(DAILY, back, ["Asia/Shanghai"]) == datetime(2026, 12, 5, 0, 0, tzinfo=SH)
    # The same for a periodic job: one run after a long stop, not one per missed period.
    hourly = Every(3600)
    assert is_due(hourly, LastRuns(ok=last_ok, attempt=last_ok), back)
    assert not is_due(hourly, after, back + timedelta(minutes=59))


def test_new_york_day_starts_across_both_dst_changes() -> None:
    # Spring forward (2026-03-08 02:00 -> 03:00): that day is 23 hours long.
    assert day_start(local_day(datetime(2026, 3, 8, 12, tzinfo=NY), NY), NY) == datetime(
        2026, 3, 8, 5, tzinfo=UTC
    )
    spring = datetime(2026, 3, 8, 0, 5, tzinfo=NY)
    nxt = next_due(DAILY, spring, ["America/New_York"])
    assert nxt == datetime(2026, 3, 9, 4, tzinfo=UTC)
    assert nxt - spring == timedelta(hours=22, minutes=55)
    # Fall back (2026-11-01 02:00 -> 01:00): a 25-hour day, still one run.
    ran = datetime(2026, 11, 1, 0, 5, tzinfo=NY)
    nxt = next_due(DAILY, ran, ["America/New_York"])
    assert nxt == datetime(2026, 11, 2, 5, tzinfo=UTC)
    assert nxt is not None and nxt - ran == timedelta(hours=24, minutes=55)
    one_before = datetime(2026, 11, 2, 4, 59, tzinfo=UTC)  # 23:59 EST on the 1st
    last = LastRuns(ok=ran, attempt=ran)
    # The repeated hour 01:00-02:00 is not a new day.
    for t in (datetime(2026, 11, 1, 5, 30, tzinfo=UTC), datetime(2026, 11, 1, 6, 30, tzinfo=UTC), one_before):
        assert not is_due(DAILY, last, t, ["America/New_York"])
    assert is_due(DAILY, last, nxt, ["America/New_York"])


def test_a_zone_whose_clocks_skip_midnight_starts_its_day_at_the_first_instant_that_exists() -> None:
    # Chile moves its clocks from Saturday 24:00 to Sunday 01:00 (2026-09-06): 00:00 never
    # happens; the day begins at 01:00 -03 = 04:00 UTC.
    start = day_start(datetime(2026, 9, 6).date(), SANTIAGO)
    assert start == datetime(2026, 9, 6, 4, tzinfo=UTC)
    assert start.astimezone(SANTIAGO).hour == 1
    assert (start - timedelta(seconds=1)).astimezone(SANTIAGO).date() == datetime(2026, 9, 5).date()
    last = datetime(2026, 9, 5, 23, 30, tzinfo=SANTIAGO)
    runs = LastRuns(ok=last, attempt=last)
    assert not is_due(DAILY, runs, start - timedelta(seconds=1), ["America/Santiago"])
    assert is_due(DAILY, runs, start, ["America/Santiago"])
    assert next_due(DAILY, last, ["America/Santiago"]) == start


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
    last = LastRuns(ok=ok, attempt=failed, failures=1)
    assert not is_due(DAILY, last, failed + timedelta(seconds=5), ["Asia/Shanghai"], retry_s=300)
    assert not is_due(DAILY, last, failed + timedelta(seconds=299), ["Asia/Shanghai"], retry_s=300)
    assert is_due(DAILY, last, failed + timedelta(seconds=300), ["Asia/Shanghai"], retry_s=300)
    # A success since (the last finished run ok) is the period's run.
    assert not is_due(
        DAILY, LastRuns(ok=failed, attempt=failed), failed + timedelta(hours=1), ["Asia/Shanghai"]
    )
    # A job that never succeeded waits out its backoff too.
    assert not is_due(Every(60), LastRuns(attempt=failed, failures=1), failed + timedelta(seconds=59))
    assert is_due(Every(60), LastRuns(attempt=failed, failures=1), failed + timedelta(seconds=60))


def test_the_backoff_doubles_with_each_failure_up_to_its_cap() -> None:
    assert [retry_delay(n, 60, 3600).total_seconds() for n in range(0, 9)] == [
        0,
        60,
        120,
        240,
        480,
        960,
        1920,
        3600,
        3600,
    ]
    assert retry_delay(10_000, 60, 3600) == timedelta(hours=1)
    t = datetime(2026, 12, 3, 10, tzinfo=UTC)
    # An hourly job failing three times in a row: the next try 4 min after the last failure.
    last = LastRuns(ok=t - timedelta(hours=2), attempt=t, failures=3)
    assert due_at(Every(3600), last, retry_s=60) == t + timedelta(minutes=4)


def test_deadline_steps_two_days_one_day_and_the_deadline() -> None:
    due = datetime(2026, 12, 10, 12, tzinfo=SH)
    assert deadline_step(due, 3, due - timedelta(days=3)).step is Step.NOTHING
    assert deadline_step(due, 3, due - timedelta(days=2, seconds=1)).step is Step.NOTHING
    assert deadline_step(due, 3, due - timedelta(days=2)) == DeadlineStep(Step.REMIND, "2d")
    assert deadline_step(due, 3, due - timedelta(days=1, seconds=1)).reminder == "2d"
    assert deadline_step(due, 3, due - timedelta(days=1)).reminder == "1d"
    assert deadline_step(due, 3, due - timedelta(seconds=1)).reminder == "1d"
    assert deadline_step(due, 3, due).step is Step.RELEASE
    assert deadline_step(due, 3, due + timedelta(days=30)).step is Step.RELEASE
    assert deadline_step(due, 0, due + timedelta(days=1)).step is Step.NOTHING
    assert deadline_step(None, 3, due).step is Step.NOTHING  # unpaid: no clock running


def test_each_deadline_step_has_its_own_notice_key_per_payment() -> None:
    paid = datetime(2026, 12, 3, 10, 0, 0, 999_999, tzinfo=SH)
    keys = {
        notice_key(7, paid, s) for s in (DeadlineStep(Step.REMIND, "2d"), DeadlineStep(Step.REMIND, "1d"))
    }
    keys.add(notice_key(7, paid, DeadlineStep(Step.RELEASE)))
    assert len(keys) == 3
    assert notice_key(7, paid, DeadlineStep(Step.RELEASE)) == f"onboarding:7:{int(paid.timestamp())}:release"
    # A new payment (an operator moved paid_at) is a new deadline with its own notices.
    later = paid + timedelta(days=1)
    assert notice_key(7, later, DeadlineStep(Step.RELEASE)) != notice_key(7, paid, DeadlineStep(Step.RELEASE))


def _freq(*windows: tuple[int, int]) -> Rule:
    return Rule("callee_frequency", {"windows": [list(w) for w in windows]})


def test_outbound_attempts_are_kept_a_day_or_the_longest_window() -> None:
    assert attempts_retention([]) == timedelta(hours=24)
    assert attempts_retention([_freq((60, 1), (3600, 5), (86400, 20))]) == timedelta(hours=24)
    assert attempts_retention([_freq((60, 1)), _freq((30 * 86400, 100))]) == timedelta(days=30)
    assert attempts_retention([_freq()]) == timedelta(hours=24)


def test_a_window_that_cannot_be_read_stops_the_purge_rather_than_shorten_it() -> None:
    with pytest.raises((ValueError, TypeError)):
        attempts_retention([_freq((60, 1)), Rule("callee_frequency", {"windows": [["bad"]]})])


def test_the_job_list_and_the_selection_by_settings() -> None:
    jobs = all_jobs(Settings())
    names = [j.name for j in jobs]
    assert names == [
        "billing_cycle",
        "recording_purge",
        "voicemail_purge",
        "onboarding_deadlines",
        "outbound_attempts_purge",
        "compliance_monitors",
    ]
    triggers = {j.name: j.trigger for j in jobs}
    assert triggers["billing_cycle"] == LocalDayStart()
    assert triggers["recording_purge"] == Every(3600)
    assert triggers["voicemail_purge"] == Every(3600)
    assert triggers["onboarding_deadlines"] == Every(300)
    assert triggers["outbound_attempts_purge"] == Every(3600)
    assert triggers["compliance_monitors"] == Every(60)
    assert [j.name for j in selected(jobs, ["outbound_attempts_purge"])] == ["outbound_attempts_purge"]
    assert selected(jobs, []) == jobs
    with pytest.raises(ValueError, match=r"scheduler\.jobs: no job 'billing'"):
        selected(jobs, ["billing"])


def test_lock_keys_are_stable_64_bit_and_differ_by_job() -> None:
    keys = {lock_key(n) for n in ("billing_cycle", "recording_purge", "onboarding_deadlines")}
    assert len(keys) == 3
    assert all(-(2**63) <= k < 2**63 for k in keys)
    # Pinned: every instance, of every version running side by side, must take the same lock.
    assert lock_key("billing_cycle") == 1938808613080235398
