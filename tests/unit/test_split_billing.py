"""Split billing (分摊付费, seeds 002 §3.5, 003 §2.1, 004 §1): the enterprise pays the
forwarded leg of a 400 call, from a bound destination's answer; the caller's time with the
platform alone (greeting, IVR, PIN, ringing after the platform answered) is their local
access. A number without split billing pays the whole call, as before."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rating.rate import rate_call
from rating.split import (
    BilledLeg,
    CallTimes,
    billed_seconds,
    billed_seconds_from_cdr,
    forwarded_seconds,
    talk_seconds,
)
from rating.tariff import Tariff
from softswitch.callpath.registry import CallRegistry
from softswitch.core.clock import FixedClock

T0 = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


# A greeting of 1.4 s and 2 s of ringing after the platform answered, then 75.5 s of talk.
GREETED = CallTimes(answered_at=at(0), forwarded_answered_at=at(3.4), ended_at=at(78.9))


@pytest.mark.parametrize(
    ("times", "leg", "seconds"),
    [
        # the platform answered first: the enterprise pays from the destination's answer
        (GREETED, BilledLeg.FORWARDED, 75),
        # ... and without split billing the whole call, greeting and ringing included
        (GREETED, BilledLeg.CALL, 78),
        # no greeting: both legs answered at the same instant, the same seconds either way
        (CallTimes(at(0), at(0), at(61)), BilledLeg.FORWARDED, 61),
        (CallTimes(at(0), at(0), at(61)), BilledLeg.CALL, 61),
        # an IVR that ended in an announcement or voicemail: no destination answered
        (CallTimes(at(0), None, at(40)), BilledLeg.FORWARDED, 0),
        (CallTimes(at(0), None, at(40)), BilledLeg.CALL, 40),
        # never answered
        (CallTimes(None, None, at(30)), BilledLeg.FORWARDED, 0),
        (CallTimes(None, None, at(30)), BilledLeg.CALL, 0),
    ],
)
def test_billed_seconds(times: CallTimes, leg: BilledLeg, seconds: int) -> None:
    assert billed_seconds(times, leg) == seconds


def test_split_billing_changes_the_charge_at_the_package_rate() -> None:
    # 0.10 CNY/min by the started minute (seed 002): 75 s forwarded = 2 min; 78 s = 2 min
    p002 = Tariff(D("0.10"))
    assert rate_call(billed_seconds(GREETED, BilledLeg.FORWARDED), p002, 0).amount == D("0.20")
    # 58 s after the destination answered, 62 s with the greeting: one minute, or two
    short = CallTimes(at(0), at(4), at(62))
    assert rate_call(billed_seconds(short, BilledLeg.FORWARDED), p002, 0).amount == D("0.10")
    assert rate_call(billed_seconds(short, BilledLeg.CALL), p002, 0).amount == D("0.20")


def test_a_destination_answer_seen_before_the_callers_counts_from_the_callers() -> None:
    # Events of one instant may fold in either order: the forwarded leg is inside the call.
    times = CallTimes(at(1), at(0.5), at(11))
    assert forwarded_seconds(times) == talk_seconds(times) == 10


@pytest.mark.parametrize(
    ("leg", "whole", "forwarded", "ended", "forwarded_at", "seconds"),
    [
        (BilledLeg.CALL, 78, 75, at(78), at(3), 78),
        # FreeSWITCH records the dialled leg by itself
        (BilledLeg.FORWARDED, 78, 75, at(78), None, 75),
        (BilledLeg.FORWARDED, 40, 0, at(40), None, 0),  # its b-leg never answered
        # Asterisk's CDR has the caller's answer only: its end, the platform's answer seen
        (BilledLeg.FORWARDED, 78, None, at(78), at(3.4), 74),
        # ... and nothing seen: the whole call, what is known to have been talked
        (BilledLeg.FORWARDED, 78, None, at(78), None, 78),
        (BilledLeg.FORWARDED, 10, 12, at(10), None, 10),  # never more than the call
    ],
)
def test_billed_seconds_from_the_engines_records(
    leg: BilledLeg,
    whole: int,
    forwarded: int | None,
    ended: datetime,
    forwarded_at: datetime | None,
    seconds: int,
) -> None:
    assert billed_seconds_from_cdr(leg, whole, forwarded, ended, forwarded_at) == seconds


def test_negative_engine_seconds_are_refused() -> None:
    with pytest.raises(ValueError, match="whole_s"):
        billed_seconds_from_cdr(BilledLeg.CALL, -1, None, None, None)


offsets = st.floats(0, 10_000, allow_nan=False)


@given(offsets, offsets, offsets)
def test_the_enterprise_never_pays_more_than_the_call(a: float, f: float, e: float) -> None:
    times = CallTimes(at(a), at(a + f), at(a + f + e))
    assert 0 <= billed_seconds(times, BilledLeg.FORWARDED) <= billed_seconds(times, BilledLeg.CALL)
    # the part before the forwarded leg is at most what the platform held alone, plus one
    # second of flooring
    assert talk_seconds(times) - forwarded_seconds(times) <= int(f) + 1


# ------------------------------------------------------------------ the registry's times


def test_the_registry_keeps_the_forwarded_legs_answer_apart_from_the_callers() -> None:
    clock = FixedClock(T0)
    reg = CallRegistry(clock)
    reg.channel_created("c1", "c1", "PJSIP/carrier-in-1", "13900000000", "4001234567")
    reg.channel_alerting("c1", up=True)  # the platform answers: a greeting
    clock.at = at(1.4)
    reg.channel_created("d1", "c1", "PJSIP/carrier-out-2", "", "13800138000")
    reg.channel_alerting("d1", up=False)
    clock.at = at(3.4)
    reg.channel_alerting("d1", up=True)  # the bound destination answers
    reg.callee_answered("d1", "c1", "PJSIP/carrier-out-2")
    call = reg.get("c1")
    assert call is not None
    assert (call.answered_at, call.callee_answered_at) == (T0, at(3.4))


def test_without_a_greeting_both_legs_are_answered_at_one_instant() -> None:
    clock = FixedClock(T0)
    reg = CallRegistry(clock)
    reg.channel_created("c1", "c1", "PJSIP/carrier-in-1", "13900000000", "4001234567")
    reg.channel_created("d1", "c1", "PJSIP/carrier-out-2", "", "13800138000")
    clock.at = at(2)
    reg.channel_alerting("d1", up=True)  # the destination first, then Dial answers the caller
    reg.channel_alerting("c1", up=True)
    call = reg.get("c1")
    assert call is not None and call.answered_at == call.callee_answered_at == at(2)
    times = CallTimes(call.answered_at, call.callee_answered_at, at(63))
    assert billed_seconds(times, BilledLeg.FORWARDED) == billed_seconds(times, BilledLeg.CALL) == 61
