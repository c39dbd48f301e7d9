"""Split billing (分摊付费) of 400/4008 numbers: which seconds of a call the enterprise pays.

The contracts' clause. Seed 002 §3.5: a 400 number is the carriers' 主被叫分摊付费 service,
the caller pays the local call (拨打方需支付市话费). Seed 003 §2.1: the caller bears the
local access fee, the called enterprise bears the answering charges (接听费用) at the
contract's rate. Seed 004 §1: the end user pays the local network's charge, the enterprise
(the called party) the long-distance part of the forwarded call (呼叫转移).

Our reading. A call to a unified number has two legs: the caller's leg, from the caller's
network to the platform, and the forwarded leg, from the platform to the bound destination
the number rings. The caller pays the first to their own carrier, outside the platform;
the platform charges the enterprise only the second: from the moment a bound destination
answers to the end of the call, at the package's rate. Time the caller spends with the
platform alone — a greeting, an IVR menu, a PIN prompt, the destinations ringing after the
platform has answered — is the caller's local access and costs the enterprise nothing; a
call no destination answered (an IVR that ended in an announcement, voicemail) costs it
nothing. A number without split billing is charged the whole call from its answer by the
platform, as before.

When the platform does not answer first (no greeting, no menu), both legs are answered at
the same instant and the two readings charge the same seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class BilledLeg(StrEnum):
    """Which part of a call the enterprise is charged for (``calls.billed_leg``)."""

    CALL = "call"  # the whole call, from its answer (no split billing)
    FORWARDED = "forwarded"  # split billing: from a bound destination's answer


@dataclass(frozen=True, slots=True)
class CallTimes:
    """A call's times as the platform saw them.

    ``answered_at``: the caller's leg was answered — by the platform (greeting, IVR, PIN)
    or, through it, by the destination; ``forwarded_answered_at``: a bound destination
    answered (None if none did); ``ended_at``: the call ended."""

    answered_at: datetime | None
    forwarded_answered_at: datetime | None
    ended_at: datetime | None


def _seconds(start: datetime | None, end: datetime | None) -> int:
    if start is None or end is None:
        return 0
    return max(int((end - start).total_seconds()), 0)


def talk_seconds(times: CallTimes) -> int:
    """The caller's talk: answer to end (whole seconds, started ones not counted)."""
    return _seconds(times.answered_at, times.ended_at)


def forwarded_seconds(times: CallTimes) -> int:
    """The forwarded leg's talk: a destination's answer to the end; never more than the
    caller's talk (the forwarded leg lives inside the caller's)."""
    start = times.forwarded_answered_at
    if start is not None and times.answered_at is not None and start < times.answered_at:
        start = times.answered_at
    return min(_seconds(start, times.ended_at), talk_seconds(times))


def billed_seconds(times: CallTimes, leg: BilledLeg) -> int:
    """The seconds the enterprise is charged for (to be rated by ``rating.rate.rate_call``)."""
    return forwarded_seconds(times) if leg is BilledLeg.FORWARDED else talk_seconds(times)


def billed_seconds_from_cdr(
    leg: BilledLeg,
    whole_s: int,
    forwarded_s: int | None,
    ended_at: datetime | None,
    forwarded_answered_at: datetime | None,
) -> int:
    """The same choice from the engine's call records, when the platform's own times are
    not exact (a call adopted or ended unobserved). ``whole_s``: the longest answered leg's
    billsec; ``forwarded_s``: the destination leg's billsec where the engine records that
    leg by itself (FreeSWITCH's b-leg), else None; ``ended_at``: the call's end by the
    engine; ``forwarded_answered_at``: when the platform saw a destination answer.

    Asterisk's CDR of a dialled call carries the caller's answer only, so there the
    forwarded leg is the engine's end minus the destination's answer the platform saw; if
    the platform never saw one, the whole call is charged (what is known to have been
    talked, never a guess below it)."""
    if whole_s < 0:
        raise ValueError(f"whole_s must be >= 0, got {whole_s}")
    if leg is BilledLeg.CALL:
        return whole_s
    if forwarded_s is not None:
        return min(max(forwarded_s, 0), whole_s)
    if forwarded_answered_at is not None and ended_at is not None:
        return min(_seconds(forwarded_answered_at, ended_at), whole_s)
    return whole_s
