"""When a periodic job is due, as pure functions of (trigger, the job's last runs, now, the
tenants' time zones).

Two triggers: ``Every(seconds)`` after the start of the last successful run, and
``LocalDayStart()``, due as soon as a local day has begun in one of the tenants' zones
since the last successful run started. A job that never succeeded is due at once. After a
service stopped over several midnights the job is due once, not once per missed day: the
catch-up run is the last run. Local days come from the zone database, so a 23- or 25-hour
day (DST) is still one day, and a zone whose clocks skip midnight starts its day at the
first instant that exists. A failed run is retried after a backoff (``retry_delay``), not
at every tick."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

# "Due since ever": the due time of a job that never succeeded.
SINCE_EVER = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Every:
    seconds: float

    def describe(self) -> str:
        return f"every {self.seconds:g} s"


@dataclass(frozen=True, slots=True)
class LocalDayStart:
    def describe(self) -> str:
        return "local day start (each tenant zone's 00:00)"


Trigger = Every | LocalDayStart


@dataclass(frozen=True, slots=True)
class LastRuns:
    """What the job's recorded runs say (scheduler_runs), whichever instance ran them."""

    ok: datetime | None = None  # start of the last successful run
    attempt: datetime | None = None  # start of the last finished run, ok or failed
    failures: int = 0  # failed runs since the last success


def local_day(at: datetime, tz: ZoneInfo) -> date:
    return at.astimezone(tz).date()


def day_start(day: date, tz: ZoneInfo) -> datetime:
    """The first instant of ``day`` in ``tz`` (in UTC): its 00:00, or where the clocks jump
    over midnight, the first local time after the jump (a local 00:00 that does not exist
    is read at the offset before the jump, which is that instant)."""
    return datetime.combine(day, time(), tz).astimezone(UTC)


def day_started(zone: str, last: datetime, now: datetime) -> bool:
    """Whether a new local day of ``zone`` began after ``last``, by ``now``."""
    tz = ZoneInfo(zone)
    return local_day(now, tz) > local_day(last, tz)


def zones_due(zones: Iterable[str], last: datetime | None, now: datetime) -> frozenset[str]:
    """The zones whose local day began since ``last`` (every zone when it never ran)."""
    if last is None:
        return frozenset(zones)
    return frozenset(z for z in zones if day_started(z, last, now))


def next_due(trigger: Trigger, last_ok: datetime | None, zones: Iterable[str] = ()) -> datetime | None:
    """When the trigger fires after a success started at ``last_ok``; ``SINCE_EVER`` when it
    never succeeded; None when it never will (a day-start job with no tenant zone)."""
    if isinstance(trigger, Every):
        return SINCE_EVER if last_ok is None else last_ok + timedelta(seconds=trigger.seconds)
    names = list(zones)
    if not names:
        return None
    if last_ok is None:
        return SINCE_EVER
    return min(day_start(local_day(last_ok, ZoneInfo(z)) + timedelta(days=1), ZoneInfo(z)) for z in names)


def retry_delay(failures: int, retry_s: float, retry_max_s: float) -> timedelta:
    """How long after a failed run the next attempt waits: ``retry_s``, doubled by each
    further failure, at most ``retry_max_s``."""
    if failures <= 0:
        return timedelta(0)
    return timedelta(seconds=min(retry_s * 2 ** min(failures - 1, 32), retry_max_s))


def due_at(
    trigger: Trigger,
    last: LastRuns,
    zones: Iterable[str] = (),
    retry_s: float = 60.0,
    retry_max_s: float = 3600.0,
) -> datetime | None:
    """When the job is next due (None: never), the backoff after failures included."""
    due = next_due(trigger, last.ok, zones)
    if due is None or not last.failures or last.attempt is None:
        return due
    return max(due, last.attempt + retry_delay(last.failures, retry_s, retry_max_s))


def is_due(
    trigger: Trigger,
    last: LastRuns,
    now: datetime,
    zones: Iterable[str] = (),
    retry_s: float = 60.0,
    retry_max_s: float = 3600.0,
) -> bool:
    due = due_at(trigger, last, zones, retry_s, retry_max_s)
    return due is not None and now >= due
