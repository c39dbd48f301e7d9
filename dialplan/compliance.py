"""The compliance gates of an outbound call (issue 15; MISSION.md "Compliance duties"):
calling hours in the tenant's time zone, per-callee frequency limits over several windows
(骚扰: repeatedly calling the same person), the tenant's outbound suspension or throttle set
by the monitors, and the daily spend cap (toll fraud). Pure functions of (rules, counters,
call, now): the rules come from the snapshot (rows of `compliance_rules`, the platform's
defaults replaced kind by kind by the tenant's own), the counters from the database, read
under the account's row lock in the transaction that takes the call's reservation
(softswitch.callpath.prepaid), so every service instance counts the same calls."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from dialplan.reasons import Reason

GATE_KINDS = ("callee_frequency", "calling_hours", "daily_spend_cap")
MONITOR_KINDS = (
    "robocall",
    "one_ring",
    "failed_rate",
    "avg_duration",
    "call_frequency",
    "numbers_in_use",
    "complaints",
)
KINDS = GATE_KINDS + MONITOR_KINDS
ACTIONS = ("notice", "alert", "throttle", "suspend")


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of compliance_rules: the platform's (tenant_id None) or a tenant's."""

    kind: str
    params: Mapping[str, Any]
    warning: Decimal | None = None
    critical: Decimal | None = None
    action: str = "notice"
    enabled: bool = True
    tenant_id: int | None = None


@dataclass(frozen=True, slots=True)
class Window:
    seconds: int
    max_calls: int


@dataclass(frozen=True, slots=True)
class OutboundRules:
    """The gates that apply to one tenant's outbound calls."""

    callee_windows: tuple[Window, ...] = ()
    hours: tuple[time, time] | None = None  # local [start, end); end 24:00 is time.max
    daily_spend_cap: Decimal | None = None

    @property
    def longest_window_s(self) -> int:
        return max((w.seconds for w in self.callee_windows), default=0)


@dataclass(frozen=True, slots=True)
class OutboundCounters:
    """What the database says of this tenant and this callee, read under the account lock."""

    callee_calls: Sequence[datetime] = ()  # when calls to this callee were let through
    outbound_suspended: bool = False
    throttle_per_min: int | None = None
    calls_last_minute: int = 0  # the tenant's outbound calls let through in the last 60 s


@dataclass(frozen=True, slots=True)
class Refused:
    reason: Reason
    why: str = ""  # e.g. "3600s:5" — the window whose limit was reached


def effective_rules(platform: Mapping[str, Rule], own: Mapping[str, Rule] | None) -> dict[str, Rule]:
    """Each kind: the tenant's own row if it has one, else the platform's. A disabled row
    (the tenant's or the platform's) switches that kind off."""
    merged = dict(platform)
    merged.update(own or {})
    return {kind: rule for kind, rule in merged.items() if rule.enabled}


def outbound_rules(rules: Mapping[str, Rule]) -> OutboundRules:
    freq = rules.get("callee_frequency")
    hours = rules.get("calling_hours")
    cap = rules.get("daily_spend_cap")
    windows = tuple(Window(int(s), int(n)) for s, n in (freq.params.get("windows", ()) if freq else ()))
    span = None
    if hours is not None:
        span = (parse_hhmm(hours.params["start"]), parse_hhmm(hours.params["end"]))
    amount = cap.params.get("amount") if cap is not None else None
    return OutboundRules(windows, span, Decimal(str(amount)) if amount is not None else None)


def parse_hhmm(text: str) -> time:
    """'08:00' -> 08:00; '24:00' -> the end of the day."""
    if text == "24:00":
        return time.max
    hh, mm = text.split(":")
    return time(int(hh), int(mm))


def within_hours(hours: tuple[time, time] | None, timezone: str, now: datetime) -> bool:
    """Whether `now` falls in [start, end) of the tenant's local day. A span whose end is
    before its start runs past midnight (22:00-06:00)."""
    if hours is None:
        return True
    local = now.astimezone(ZoneInfo(timezone)).time()
    start, end = hours
    if start <= end:
        return start <= local and (local < end or end == time.max)
    return local >= start or local < end


def check_before_counting(rules: OutboundRules, timezone: str, now: datetime) -> Refused | None:
    """What needs no counters: the calling hours. Checked before any database work."""
    if rules.hours is not None and not within_hours(rules.hours, timezone, now):
        start, end = rules.hours
        return Refused(Reason.CALLING_HOURS, f"{start:%H:%M}-{_end(end)}")
    return None


def check_outbound(rules: OutboundRules, counters: OutboundCounters, now: datetime) -> Refused | None:
    """The gates that need the shared counters, in the order a caller would want them
    explained: the tenant's state first, then its pace, then this callee."""
    if counters.outbound_suspended:
        return Refused(Reason.OUTBOUND_SUSPENDED)
    if counters.throttle_per_min is not None and counters.calls_last_minute >= counters.throttle_per_min:
        return Refused(Reason.OUTBOUND_THROTTLED, f"{counters.throttle_per_min}/min")
    for w in rules.callee_windows:
        since = now - timedelta(seconds=w.seconds)
        if sum(1 for at in counters.callee_calls if at > since) >= w.max_calls:
            return Refused(Reason.CALLEE_FREQUENCY, f"{w.seconds}s:{w.max_calls}")
    return None


def _end(t: time) -> str:
    return "24:00" if t == time.max else f"{t:%H:%M}"


@dataclass(frozen=True, slots=True)
class TenantRules:
    """The rows of one snapshot: the platform's by kind, and each tenant's own by kind."""

    platform: Mapping[str, Rule] = field(default_factory=dict)
    tenants: Mapping[int, Mapping[str, Rule]] = field(default_factory=dict)

    def for_tenant(self, tenant_id: int) -> dict[str, Rule]:
        return effective_rules(self.platform, self.tenants.get(tenant_id))

    def spend_cap(self, tenant_id: int) -> Decimal | None:
        """The tenant's daily spend cap, for every call it pays for (inbound legs too)."""
        return outbound_rules(self.for_tenant(tenant_id)).daily_spend_cap
