"""Time policy: which target a call goes to at a moment, in the tenant's time zone.

Order of precedence for the local date: a one-off exception window, then a holiday (the
whole day), then a make-up working day (调休: a weekend day worked as a weekday, using
that weekday's rules), then the weekly rules, then the default target. Windows are
[start, end) in local time; "24:00" ends at midnight."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from dialplan.targets import DEFAULT_GROUP, Target

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _clock(value: str) -> int:
    """'09:30' -> minutes after midnight; '24:00' allowed as the end of the day."""
    hh, _, mm = value.partition(":")
    minutes = int(hh) * 60 + int(mm or "0")
    if not 0 <= minutes <= 24 * 60:
        raise ValueError(f"time of day out of range: {value!r}")
    return minutes


@dataclass(frozen=True, slots=True)
class Window:
    start: int  # minutes after local midnight
    end: int
    target: Target

    def covers(self, minute: int) -> bool:
        return self.start <= minute < self.end


@dataclass(frozen=True, slots=True)
class TimePolicy:
    timezone: str
    weekly: Mapping[str, tuple[Window, ...]]  # 'mon' -> windows
    holidays: frozenset[date]
    holiday_target: Target
    workdays: Mapping[date, str]  # make-up day -> the weekday whose rules apply
    exceptions: Mapping[date, tuple[Window, ...]]
    default: Target

    @staticmethod
    def parse(raw: Mapping[str, Any], tenant_timezone: str = "Asia/Shanghai") -> TimePolicy:
        tz = str(raw.get("timezone") or tenant_timezone)
        ZoneInfo(tz)  # raises for an unknown zone
        weekly: dict[str, list[Window]] = {d: [] for d in DAYS}
        for rule in raw.get("weekly", []):
            days = rule.get("days", [])
            bad = [d for d in days if d not in DAYS]
            if bad or not days:
                raise ValueError(f"weekly rule days must be among {DAYS}, got {days}")
            w = Window(
                _clock(rule["start"]), _clock(rule["end"]), Target.parse(rule.get("target"), DEFAULT_GROUP)
            )
            if w.start >= w.end:
                raise ValueError(f"window {rule['start']}-{rule['end']} is empty")
            for d in days:
                weekly[d].append(w)
        default = Target.parse(raw.get("default"), Target("announcement", "closed"))
        exceptions: dict[date, list[Window]] = {}
        for ex in raw.get("exceptions", []):
            day = date.fromisoformat(ex["date"])
            w = Window(
                _clock(ex.get("start", "00:00")),
                _clock(ex.get("end", "24:00")),
                Target.parse(ex.get("target"), default),
            )
            exceptions.setdefault(day, []).append(w)
        workdays = {}
        for wd in raw.get("workdays", []):
            if isinstance(wd, str):
                workdays[date.fromisoformat(wd)] = "mon"
            else:
                as_day = wd.get("as", "mon")
                if as_day not in DAYS:
                    raise ValueError(f"make-up day 'as' must be a weekday name, got {as_day!r}")
                workdays[date.fromisoformat(wd["date"])] = as_day
        return TimePolicy(
            timezone=tz,
            weekly={d: tuple(ws) for d, ws in weekly.items()},
            holidays=frozenset(date.fromisoformat(h) for h in raw.get("holidays", [])),
            holiday_target=Target.parse(raw.get("holiday_target"), default),
            workdays=workdays,
            exceptions={d: tuple(ws) for d, ws in exceptions.items()},
            default=default,
        )

    def target_at(self, now: datetime) -> tuple[Target, str]:
        """(target, why) for an aware datetime; why is a short code for the call record."""
        local = now.astimezone(ZoneInfo(self.timezone))
        day = local.date()
        minute = local.hour * 60 + local.minute
        for w in self.exceptions.get(day, ()):
            if w.covers(minute):
                return w.target, "exception"
        if day in self.holidays:
            return self.holiday_target, "holiday"
        weekday = self.workdays.get(day) or DAYS[local.weekday()]
        for w in self.weekly.get(weekday, ()):
            if w.covers(minute):
                return w.target, "makeup_workday" if day in self.workdays else "weekly"
        return self.default, "outside_hours"
