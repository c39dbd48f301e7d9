"""Time policy: which target a call goes to at a moment, in the tenant's time zone.

Order of precedence for the local date: a one-off exception window, then a holiday (the
whole day), then a make-up working day (调休: a weekend day worked as a weekday, using
that weekday's rules), then the weekly rules, then the default target. Windows are
[start, end) in local time; "24:00" ends at midnight.

``match_at`` says which rule decided (a ``TimeMatch``: the target, the typed rule, and a
``why`` naming it — "holiday: 2026-10-01 国庆节", "after hours: mon 09:00-18:00"), so that
a call the policy closes records what closed it. Holidays may be given as dates or as
``{"date": ..., "name": ...}``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from dialplan.targets import DEFAULT_GROUP, Target

# Every tenant has a time zone; this is the default (the one place it is written).
DEFAULT_TIMEZONE = "Asia/Shanghai"

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _clock(value: str) -> int:
    """'09:30' -> minutes after midnight; '24:00' allowed as the end of the day."""
    hh, _, mm = value.partition(":")
    minutes = int(hh) * 60 + int(mm or "0")
    if not 0 <= minutes <= 24 * 60:
        raise ValueError(f"time of day out of range: {value!r}")
    return minutes


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass(frozen=True, slots=True)
class Window:
    start: int  # minutes after local midnight
    end: int
    target: Target

    def covers(self, minute: int) -> bool:
        return self.start <= minute < self.end

    def __str__(self) -> str:
        return f"{_hhmm(self.start)}-{_hhmm(self.end)}"


class TimeRule(StrEnum):
    """Which rule of the policy decided; the value is the code routed calls record."""

    EXCEPTION = "exception"  # a one-off exception window
    HOLIDAY = "holiday"  # a holiday (the whole day)
    MAKEUP_WORKDAY = "makeup_workday"  # a window of a make-up working day
    WEEKLY = "weekly"  # a weekly window
    OUTSIDE_HOURS = "outside_hours"  # no window covers the moment: the default (after hours)


_LABELS = {
    TimeRule.EXCEPTION: "exception",
    TimeRule.HOLIDAY: "holiday",
    TimeRule.MAKEUP_WORKDAY: "makeup workday",
    TimeRule.WEEKLY: "weekly",
    TimeRule.OUTSIDE_HOURS: "after hours",
}


@dataclass(frozen=True, slots=True)
class TimeMatch:
    """What the policy decided at a moment, and by which rule."""

    target: Target
    rule: TimeRule
    detail: str  # the rule itself: the holiday's date and name, the window, the day's hours

    @property
    def why(self) -> str:
        """For the call record: 'holiday: 2026-10-01 国庆节', 'after hours: mon 09:00-18:00',
        'weekly: wed 08:00-09:00', 'exception: 2026-11-27 15:00-24:00'."""
        return f"{_LABELS[self.rule]}: {self.detail}"


def _holiday(raw: object) -> tuple[date, str]:
    if isinstance(raw, str):
        return date.fromisoformat(raw), ""
    if isinstance(raw, Mapping) and isinstance(raw.get("date"), str):
        name = raw.get("name", "")
        if not isinstance(name, str):
            raise ValueError(f"holiday name must be a string, got {name!r}")
        return date.fromisoformat(raw["date"]), name.strip()
    raise ValueError(f"a holiday is a date or {{'date': ..., 'name': ...}}, got {raw!r}")


@dataclass(frozen=True, slots=True)
class TimePolicy:
    timezone: str
    weekly: Mapping[str, tuple[Window, ...]]  # 'mon' -> windows
    holidays: Mapping[date, str]  # date -> its name ('' if none)
    holiday_target: Target
    workdays: Mapping[date, str]  # make-up day -> the weekday whose rules apply
    exceptions: Mapping[date, tuple[Window, ...]]
    default: Target

    @staticmethod
    def parse(raw: Mapping[str, Any], tenant_timezone: str = DEFAULT_TIMEZONE) -> TimePolicy:
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
            holidays=dict(_holiday(h) for h in raw.get("holidays", [])),
            holiday_target=Target.parse(raw.get("holiday_target"), default),
            workdays=workdays,
            exceptions={d: tuple(ws) for d, ws in exceptions.items()},
            default=default,
        )

    def target_at(self, now: datetime) -> tuple[Target, str]:
        """(target, why) for an aware datetime; why is the rule's short code."""
        match = self.match_at(now)
        return match.target, match.rule.value

    def match_at(self, now: datetime) -> TimeMatch:
        """The target for an aware datetime, and the rule that chose it."""
        local = now.astimezone(ZoneInfo(self.timezone))
        day = local.date()
        minute = local.hour * 60 + local.minute
        for w in self.exceptions.get(day, ()):
            if w.covers(minute):
                return TimeMatch(w.target, TimeRule.EXCEPTION, f"{day} {w}")
        if day in self.holidays:
            return TimeMatch(self.holiday_target, TimeRule.HOLIDAY, f"{day} {self.holidays[day]}".rstrip())
        weekday = self.workdays.get(day) or DAYS[local.weekday()]
        rules = f"{day} as {weekday}" if day in self.workdays else weekday
        windows = self.weekly.get(weekday, ())
        for w in windows:
            if w.covers(minute):
                if day in self.workdays:
                    return TimeMatch(w.target, TimeRule.MAKEUP_WORKDAY, f"{rules} {w}")
                return TimeMatch(w.target, TimeRule.WEEKLY, f"{rules} {w}")
        hours = ", ".join(str(w) for w in sorted(windows, key=lambda w: (w.start, w.end)))
        return TimeMatch(
            self.default, TimeRule.OUTSIDE_HOURS, f"{rules} {hours}" if hours else f"{rules} has no hours"
        )
