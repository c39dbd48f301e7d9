"""Personalised ringback tones (个性化彩铃, seed 001): what the caller hears while a number's
destinations ring. Pure: the number's applications and the current time decide it.

Seed 001's tariff: "当月申请，次月生效" — a tone applied to a number in one month takes effect
on the first day of the next month, in the tenant's time zone. Until then the number keeps
what it had: the tone applied before, or the default ring (no tone)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo


@dataclass(frozen=True, slots=True)
class RingbackTone:
    """A tenant's tone as the engines play it: Asterisk by its music-on-hold class
    (``moh_class``, migration 0028's view), FreeSWITCH by its file (``prompt``)."""

    tone_id: int
    prompt: str  # softswitch/t<tenant>/ringback/<name>, relative to the sounds directory

    @property
    def moh_class(self) -> str:
        return f"ss-rbt-{self.tone_id}"


@dataclass(frozen=True, slots=True)
class ToneApplication:
    """A tone applied to a number, in effect from ``effective_on`` (a month's first day)."""

    effective_on: date
    tone: RingbackTone


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def effective_from(applied_at: datetime, timezone: str) -> date:
    """The first day of the month after the one ``applied_at`` falls in, in ``timezone``."""
    if applied_at.tzinfo is None:
        raise ValueError("applied_at must be an aware datetime (with a UTC offset)")
    local = applied_at.astimezone(_zone(timezone)).date()
    return date(local.year + local.month // 12, local.month % 12 + 1, 1)


def tone_at(applications: Sequence[ToneApplication], timezone: str, now: datetime) -> RingbackTone | None:
    """The tone callers of the number hear at ``now``: of the applications in effect on the
    tenant's local day, the latest; None (the default ring) when none is."""
    if not applications:
        return None
    today = now.astimezone(_zone(timezone)).date()
    current: ToneApplication | None = None
    for a in applications:
        if a.effective_on <= today and (current is None or a.effective_on >= current.effective_on):
            current = a
    return current.tone if current is not None else None
