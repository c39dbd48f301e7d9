"""Incoming-call analysis (来电分析): a tenant's inbound calls of a period, for all its
numbers or one, by the caller's province and city, by local hour of day and weekday,
answered/missed, first-time/repeat, and per number.

What is counted: every inbound call record to one of the tenant's numbers
(``direction = 'inbound'``, ``number_id`` set) once the record has its end
(``ended_at``) — calls still live are not in the figures yet. A call belongs to the local
day and hour of its START (``decided_at``, the moment the control plane decided it) in
the tenant's time zone (``tenants.timezone``) as it was when the call was counted: a call
at 23:30 UTC is on the next day in Asia/Shanghai, and a call that starts on the last
evening of a period and ends after midnight stays in that period. Periods are whole local
days, ``from`` and ``to`` both included (as in provisioning/reports.py). Weekdays are ISO
(1 = Monday … 7 = Sunday).

Outcomes, exactly one per call:
  * ``answered`` — the call was answered (``answered_at`` set: a destination, or the
    number's IVR or voicemail, took it), and it was not a refusal;
  * ``refused`` — the platform refused it (``action = 'reject'``: blacklist, closed by the
    time policy, denied region, channel cap, no balance, PIN failed …), even if the
    caller's channel was answered to play the announcement or ask the PIN;
  * ``missed`` in the narrow sense — routed but answered by nobody (no destination
    answered, all busy, or the caller hung up while it rang).
``missed`` in the figures (the doughnut, the tables) is every call that was not answered:
the narrow missed plus the refused, which are also given on their own.

First-time and repeat: a call is a first-time call when it is the caller's first counted
call to this tenant ever (the earliest by start; the caller number as delivered), and a
repeat call otherwise. So ``first_time`` of a period is also the number of NEW callers of
the period (each caller has one first call), and ``repeat`` the calls of the period from
numbers that had called the tenant before (earlier in the period or before it). With a
number chosen, first-time calls are those of that number that were their caller's first
call to the tenant.

Province and city come from ``dialplan.region.region_of`` — the region policy's own
lookup (phonenumbers' geocoder: mobile segment or fixed-line area code), normalised names
('广东', '深圳'); '' is a caller the geocoder cannot place. Its answers are cached per
caller number in ``caller_places``; a call whose caller is not placed yet counts under
``NOT_PLACED`` ('?') until ``place_callers`` (run before each analysis, a bounded number
of new callers at a time, and by ``python -m provisioning.analysis place``) places it.

The figures are read only from aggregates kept by triggers on ``calls`` as records end
(migration 0018): per (day, number, hour, outcome) and per (day, number, province, city);
a year of a million calls answers in milliseconds (bench/analysis.py)."""

from __future__ import annotations

import asyncio
import calendar
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
from pydantic import BaseModel, ConfigDict, Field

from dialplan.region import region_of
from provisioning.engine import Ctx, Invalid, NotFound

MAX_DAYS = 366
MIN_DATE = date(2000, 1, 1)
MAX_DATE = date(9998, 12, 31)
NOT_PLACED = "?"
# New callers looked up per analysis request (about 100 us each, in a worker thread); the
# rest wait for the next request or the CLI.
PLACE_PER_REQUEST = 2000
TOP_PROVINCES = 10


class Totals(BaseModel):
    calls: int = 0
    answered: int = 0
    missed: int = Field(0, description="not answered: missed_unanswered + refused")
    missed_unanswered: int = Field(0, description="routed, answered by nobody")
    refused: int = Field(0, description="refused by the platform")
    talk_seconds: int = 0
    first_time: int = Field(0, description="calls that were their caller's first to the tenant = new callers")
    repeat: int = Field(0, description="calls from callers who had called the tenant before")
    not_placed: int = Field(0, description="calls whose caller's place is not looked up yet")


class PlaceRow(BaseModel):
    province: str = Field(description="'' unknown region, '?' not placed yet")
    city: str | None = None
    calls: int
    answered: int
    missed: int


class HourRow(BaseModel):
    hour: int = Field(ge=0, le=23)
    calls: int
    answered: int
    missed: int


class WeekdayRow(BaseModel):
    weekday: int = Field(ge=1, le=7, description="ISO: 1 Monday … 7 Sunday")
    calls: int
    answered: int
    missed: int


class NumberRow(BaseModel):
    number_id: int
    number: str
    calls: int
    answered: int
    missed: int
    refused: int
    first_time: int
    talk_seconds: int


class AnalysisRead(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    tenant_id: int
    from_: date = Field(alias="from")
    to: date
    timezone: str
    number_id: int | None
    totals: Totals
    by_province: list[PlaceRow]
    by_city: list[PlaceRow]
    by_hour: list[HourRow]
    by_weekday: list[WeekdayRow]
    by_number: list[NumberRow]


class NumberChoice(BaseModel):
    id: int
    number: str


# ---------------------------------------------------------------------------- periods
def presets(today: date) -> dict[str, tuple[date, date]]:
    """The period picker's presets, ending today (local): the last 7 days, this month,
    this quarter."""
    q_month = 3 * ((today.month - 1) // 3) + 1
    return {
        "7d": (today - timedelta(days=6), today),
        "month": (today.replace(day=1), today),
        "quarter": (date(today.year, q_month, 1), today),
    }


def month_of(d: date) -> tuple[date, date]:
    return d.replace(day=1), d.replace(day=calendar.monthrange(d.year, d.month)[1])


def local_today(now: datetime, tz: str) -> date:
    return now.astimezone(ZoneInfo(tz)).date()


def check_period(from_date: date, to_date: date) -> None:
    for name, d in (("from", from_date), ("to", to_date)):
        if not MIN_DATE <= d <= MAX_DATE:
            raise Invalid(f"{name} must be between {MIN_DATE} and {MAX_DATE}", name)
    if to_date < from_date:
        raise Invalid("to is before from", "to")
    if (to_date - from_date).days + 1 > MAX_DAYS:
        raise Invalid(f"at most {MAX_DAYS} days at a time", "to")


# ---------------------------------------------------------------------------- places
def _look_up(callers: list[str]) -> tuple[list[str], list[str], list[str]]:
    provinces, cities = [], []
    for caller in callers:
        region = region_of(caller)
        provinces.append(region.province)
        cities.append(region.city)
    return callers, provinces, cities


async def place_callers(conn: asyncpg.Connection, tenant_id: int | None = None, limit: int = 50_000) -> int:
    """Look up (region_of) up to ``limit`` callers of counted calls not placed yet — of one
    tenant, or of every tenant — and move their calls from '?' to their province and city.
    Returns the number of calls moved."""
    where = "l.province IS NULL" + (" AND l.tenant_id = $2" if tenant_id is not None else "")
    args: list[object] = [limit, *([tenant_id] if tenant_id is not None else [])]
    rows = await conn.fetch(
        f"""SELECT DISTINCT l.caller FROM call_analysis_calls l
            WHERE {where} AND NOT EXISTS (SELECT 1 FROM caller_places p WHERE p.caller = l.caller)
            LIMIT $1""",
        *args,
    )
    callers = [r["caller"] for r in rows]
    if callers:
        found = await asyncio.to_thread(_look_up, callers) if len(callers) > 50 else _look_up(callers)
        await conn.execute(
            """INSERT INTO caller_places (caller, province, city)
               SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
               ON CONFLICT (caller) DO NOTHING""",
            *found,
        )
    if tenant_id is not None:
        tenants = [tenant_id]
    else:
        tenants = [
            r["tenant_id"]
            for r in await conn.fetch(
                "SELECT DISTINCT tenant_id FROM call_analysis_calls WHERE province IS NULL"
            )
        ]
    moved = 0
    for t in tenants:
        async with conn.transaction():
            moved += await conn.fetchval("SELECT call_analysis_place($1)", t)
    return moved


# ---------------------------------------------------------------------------- figures
async def _tenant(ctx: Ctx) -> tuple[int, str]:
    if ctx.tenant_id is None or not ctx.actor.sees_tenant(ctx.tenant_id):
        raise NotFound(f"tenant {ctx.tenant_id} not found", "tenant_id")
    tz = await ctx.conn.fetchval("SELECT timezone FROM tenants WHERE id = $1", ctx.tenant_id)
    if tz is None:
        raise NotFound(f"tenant {ctx.tenant_id} not found", "tenant_id")
    return ctx.tenant_id, str(tz)


async def numbers(ctx: Ctx) -> list[NumberChoice]:
    """The tenant's numbers, for the number picker (also those with no calls)."""
    tid, _ = await _tenant(ctx)
    rows = await ctx.conn.fetch("SELECT id, number FROM numbers WHERE tenant_id = $1 ORDER BY number", tid)
    return [NumberChoice(id=r["id"], number=r["number"]) for r in rows]


async def default_period(ctx: Ctx) -> tuple[date, date]:
    """This month so far, in the tenant's zone."""
    _, tz = await _tenant(ctx)
    return presets(local_today(ctx.clock.now(), tz))["month"]


_HOURS = """
SELECT number_id, local_hour, extract(isodow FROM local_day)::int AS weekday, outcome,
       sum(calls)::bigint AS calls, sum(talk_seconds)::bigint AS talk, sum(first_calls)::bigint AS first
FROM call_analysis_hours
WHERE tenant_id = $1 AND local_day BETWEEN $2 AND $3 AND ($4::bigint IS NULL OR number_id = $4)
GROUP BY 1, 2, 3, 4
"""
_PLACES = """
SELECT province, city, sum(calls)::bigint AS calls, sum(answered)::bigint AS answered
FROM call_analysis_places
WHERE tenant_id = $1 AND local_day BETWEEN $2 AND $3 AND ($4::bigint IS NULL OR number_id = $4)
GROUP BY 1, 2
HAVING sum(calls) > 0
"""


async def call_analysis(
    ctx: Ctx, from_date: date, to_date: date, number_id: int | None = None, place: bool = True
) -> AnalysisRead:
    """The figures of [from_date, to_date] (local days, both included)."""
    tid, tz = await _tenant(ctx)
    check_period(from_date, to_date)
    names = {n.id: n.number for n in await numbers(ctx)}
    if number_id is not None and number_id not in names:
        raise NotFound(f"number {number_id} not found", "number_id")
    if place:
        await place_callers(ctx.conn, tid, PLACE_PER_REQUEST)
    hours = await ctx.conn.fetch(_HOURS, tid, from_date, to_date, number_id)
    places = await ctx.conn.fetch(_PLACES, tid, from_date, to_date, number_id)

    totals = Totals()
    by_hour = {h: [0, 0] for h in range(24)}
    by_weekday = {d: [0, 0] for d in range(1, 8)}
    per_number: dict[int, dict[str, int]] = {}
    for r in hours:
        calls, answered = r["calls"], r["calls"] if r["outcome"] == "answered" else 0
        totals.calls += calls
        totals.answered += answered
        totals.refused += calls if r["outcome"] == "refused" else 0
        totals.missed_unanswered += calls if r["outcome"] == "missed" else 0
        totals.talk_seconds += r["talk"]
        totals.first_time += r["first"]
        by_hour[r["local_hour"]][0] += calls
        by_hour[r["local_hour"]][1] += answered
        by_weekday[r["weekday"]][0] += calls
        by_weekday[r["weekday"]][1] += answered
        n = per_number.setdefault(
            r["number_id"], {"calls": 0, "answered": 0, "refused": 0, "first_time": 0, "talk_seconds": 0}
        )
        n["calls"] += calls
        n["answered"] += answered
        n["refused"] += calls if r["outcome"] == "refused" else 0
        n["first_time"] += r["first"]
        n["talk_seconds"] += r["talk"]
    totals.missed = totals.calls - totals.answered
    totals.repeat = totals.calls - totals.first_time

    provinces: dict[str, list[int]] = {}
    cities = []
    for r in places:
        if r["province"] == NOT_PLACED:
            totals.not_placed += r["calls"]
        p = provinces.setdefault(r["province"], [0, 0])
        p[0] += r["calls"]
        p[1] += r["answered"]
        cities.append(
            PlaceRow(
                province=r["province"],
                city=r["city"],
                calls=r["calls"],
                answered=r["answered"],
                missed=r["calls"] - r["answered"],
            )
        )
    cities.sort(key=lambda c: (-c.calls, c.province, c.city or ""))
    return AnalysisRead(
        tenant_id=tid,
        from_=from_date,
        to=to_date,
        timezone=tz,
        number_id=number_id,
        totals=totals,
        by_province=sorted(
            (
                PlaceRow(province=k, calls=v[0], answered=v[1], missed=v[0] - v[1])
                for k, v in provinces.items()
            ),
            key=lambda p: (-p.calls, p.province),
        ),
        by_city=cities,
        by_hour=[HourRow(hour=h, calls=c, answered=a, missed=c - a) for h, (c, a) in by_hour.items()],
        by_weekday=[
            WeekdayRow(weekday=d, calls=c, answered=a, missed=c - a) for d, (c, a) in by_weekday.items()
        ],
        by_number=sorted(
            (
                NumberRow(number_id=k, number=names.get(k, str(k)), missed=v["calls"] - v["answered"], **v)
                for k, v in per_number.items()
            ),
            key=lambda n: (-n.calls, n.number),
        ),
    )


async def _main(argv: list[str]) -> int:
    """``python -m provisioning.analysis place``: place every caller not placed yet (after
    the migration's backfill, or a burst of new callers)."""
    from softswitch.core.db import connect  # here: only the CLI opens its own connection
    from softswitch.core.settings import Settings  # here: only the CLI reads settings

    if argv != ["place"]:
        print("usage: python -m provisioning.analysis place")
        return 2
    conn = await connect(Settings())
    try:
        total = 0
        while moved := await place_callers(conn):
            total += moved
        print(f"placed {total} calls")
    finally:
        await conn.close()
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(asyncio.run(_main(sys.argv[1:])))
