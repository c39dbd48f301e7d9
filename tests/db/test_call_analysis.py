"""Incoming-call analysis against the real PostgreSQL: the aggregates the triggers of
migration 0018 keep as call records end equal a direct count over `calls` (an oracle in
Python: zoneinfo for local days, dialplan.region.region_of for places, the earliest call
per caller for first-time) for seeded random calls written through the call path's own
record writer — ends out of order, records completed later as the engine audit does,
calls around local midnight (23:30 UTC is the next day in Shanghai), calls that end after
the period's last day, a change of the tenant's zone between calls, updates of ended
records (no double count, nothing counted twice for a repeated update), a record deleted.
The service's figures for a period equal the oracle's."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from dialplan.region import region_of
from provisioning.analysis import NOT_PLACED, call_analysis, place_callers
from provisioning.engine import Ctx
from provisioning.roles import Principal, Role
from softswitch.callpath.records import CallRecordWriter, DecisionRecord, EndRecord
from softswitch.core.clock import FixedClock
from softswitch.core.metrics import Metrics
from tests.db.conftest import new_tenant

# Callers: mobiles of several provinces, fixed lines, a number the geocoder cannot place,
# a withheld caller ID.
CALLERS = [
    "13800138000",  # Beijing mobile
    "13912345678",  # Jiangsu
    "+8613012345678",
    "15012345678",
    "18612345678",
    "02161234567",  # Shanghai fixed line
    "075512345678",  # Shenzhen
    "02087654321",  # Guangzhou
    "057187654321",  # Hangzhou
    "anonymous",
    "12345",
]
# Around local midnight in Shanghai (16:00 UTC) and New York (05:00 UTC), and 23:30 UTC.
START = datetime(2026, 3, 30, 12, 0, tzinfo=UTC)


def _times(rng: random.Random) -> datetime:
    day = START + timedelta(days=rng.randint(0, 3))
    pick = rng.random()
    if pick < 0.3:
        return day.replace(hour=15, minute=59) + timedelta(seconds=rng.randint(0, 120))
    if pick < 0.5:
        return day.replace(hour=23, minute=30)
    if pick < 0.6:
        return day.replace(hour=4, minute=59) + timedelta(seconds=rng.randint(0, 120))
    return day + timedelta(seconds=rng.randint(0, 86_400))


def _outcome(c: Any) -> str:
    if c["action"] == "reject":
        return "refused"
    return "answered" if c["answered_at"] is not None else "missed"


def _placed(caller: str) -> tuple[str, str]:
    region = region_of(caller)
    return region.province, region.city


def _oracle(
    calls: list[Any], zone_of: dict[int, str], place_of: Callable[[str], tuple[str, str]] = _placed
) -> tuple[Counter[Any], Counter[Any]]:
    """Hours (calls, talk, first) and places (calls, answered) from the call records."""
    counted = [
        c
        for c in calls
        if c["ended_at"] is not None
        and c["direction"] == "inbound"
        and c["tenant_id"] is not None
        and c["number_id"] is not None
    ]
    first: dict[tuple[int, str], Any] = {}
    for c in sorted(counted, key=lambda c: (c["decided_at"], c["id"])):
        first.setdefault((c["tenant_id"], c["caller"]), c["id"])
    hours: Counter[Any] = Counter()
    places: Counter[Any] = Counter()
    for c in counted:
        local = c["decided_at"].astimezone(ZoneInfo(zone_of[c["id"]]))
        outcome = _outcome(c)
        talk = int((c["ended_at"] - c["answered_at"]).total_seconds()) if outcome == "answered" else 0
        key = (c["tenant_id"], local.date(), c["number_id"], local.hour, outcome)
        hours[(*key, "calls")] += 1
        hours[(*key, "talk")] += max(0, talk)
        hours[(*key, "first")] += first[(c["tenant_id"], c["caller"])] == c["id"]
        pkey = (c["tenant_id"], local.date(), c["number_id"], *place_of(c["caller"]))
        places[(*pkey, "calls")] += 1
        places[(*pkey, "answered")] += outcome == "answered"
    return +hours, +places


async def _aggregates(conn: asyncpg.Connection, tenants: list[int]) -> tuple[Counter[Any], Counter[Any]]:
    hours: Counter[Any] = Counter()
    for r in await conn.fetch("SELECT * FROM call_analysis_hours WHERE tenant_id = ANY($1)", tenants):
        key = (r["tenant_id"], r["local_day"], r["number_id"], r["local_hour"], r["outcome"])
        hours[(*key, "calls")] += r["calls"]
        hours[(*key, "talk")] += r["talk_seconds"]
        hours[(*key, "first")] += r["first_calls"]
    places: Counter[Any] = Counter()
    for r in await conn.fetch("SELECT * FROM call_analysis_places WHERE tenant_id = ANY($1)", tenants):
        pkey = (r["tenant_id"], r["local_day"], r["number_id"], r["province"], r["city"])
        places[(*pkey, "calls")] += r["calls"]
        places[(*pkey, "answered")] += r["answered"]
    return +hours, +places


async def _number(conn: asyncpg.Connection, tenant: int) -> int:
    return await conn.fetchval(
        "INSERT INTO numbers (number, kind, tenant_id, state) VALUES ($1, 'unified_400', $2, 'active') "
        "RETURNING id",
        f"400{random.randint(10**6, 10**7 - 1)}",
        tenant,
    )


class World:
    def __init__(self, pool: asyncpg.Pool, rng: random.Random) -> None:
        self.pool = pool
        self.rng = rng
        self.writer = CallRecordWriter(pool, Metrics())
        self.zone_of: dict[int, str] = {}  # call id -> the tenant's zone when it was counted
        self.tag = f"{random.getrandbits(48):x}"  # unique per run (the rng is seeded)
        self.n = 0
        # callers never seen before (whatever earlier runs left in caller_places)
        self.callers = CALLERS + [
            f"1{random.choice('3578')}{random.randint(10**8, 10**9 - 1)}" for _ in range(4)
        ]

    def decision(self, tenant: int | None, number: int | None, at: datetime, **kw: Any) -> DecisionRecord:
        self.n += 1
        rng = self.rng
        return DecisionRecord(
            linkedid=f"an-{self.tag}-{self.n}",
            uniqueid=f"an-{self.tag}-{self.n}",
            tenant_id=tenant,
            number_id=number,
            caller=kw.get("caller") or rng.choice(self.callers),
            called="4008001234",
            action=kw.get("action") or rng.choices(["dial", "reject", "ivr"], [6, 2, 1])[0],
            reason="ROUTED",
            destinations=(),
            decided_at=at,
            decision_us=100,
            direction=kw.get("direction") or rng.choices(["inbound", "outbound", "internal"], [8, 1, 1])[0],
        )

    def end(self, d: DecisionRecord) -> EndRecord:
        rng = self.rng
        answered = d.decided_at + timedelta(seconds=rng.randint(1, 30)) if rng.random() < 0.6 else None
        # some calls end hours later: after local midnight, after the period's last day
        ended = (answered or d.decided_at) + timedelta(seconds=rng.choice([3, 40, 600, 7 * 3600]))
        return EndRecord(d.linkedid, answered, ended, 16)


async def _calls(conn: asyncpg.Connection, tenants: list[int]) -> list[Any]:
    return list(await conn.fetch("SELECT * FROM calls WHERE tenant_id = ANY($1) ORDER BY id", tenants))


async def _zones(world: World, conn: asyncpg.Connection, tenants: list[int]) -> None:
    """Zones of calls counted now, for calls not seen before."""
    for r in await conn.fetch(
        "SELECT c.id, t.timezone FROM calls c JOIN tenants t ON t.id = c.tenant_id "
        "WHERE c.tenant_id = ANY($1) AND c.ended_at IS NOT NULL",
        tenants,
    ):
        world.zone_of.setdefault(r["id"], r["timezone"])


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_aggregates_equal_a_count_over_calls(pool: asyncpg.Pool, seed: int) -> None:
    rng = random.Random(seed)
    world = World(pool, rng)
    async with pool.acquire() as conn:
        a, b = await new_tenant(conn), await new_tenant(conn)
        await conn.execute("UPDATE tenants SET timezone = 'America/New_York' WHERE id = $1", b)
        numbers = {a: [await _number(conn, a), await _number(conn, a)], b: [await _number(conn, b)]}
    tenants = [a, b]

    async def batch(count: int) -> list[DecisionRecord]:
        decisions = []
        for _ in range(count):
            t = rng.choice(tenants)
            number = rng.choice(numbers[t]) if rng.random() < 0.95 else None
            decisions.append(world.decision(t, number, _times(rng)))
        # decisions first (as the AGI handler enqueues them), then ends in another order,
        # in batches of the writer's size, some calls never end
        await world.writer.write(list(decisions))
        ends = [world.end(d) for d in decisions if rng.random() < 0.9]
        rng.shuffle(ends)
        for i in range(0, len(ends), 17):
            await world.writer.write(list(ends[i : i + 17]))
        return decisions

    await batch(150)
    async with pool.acquire() as conn:
        await _zones(world, conn, tenants)
        # the tenant moves to another zone: calls counted so far keep their local days
        await conn.execute("UPDATE tenants SET timezone = 'Asia/Tokyo' WHERE id = $1", a)
    await batch(150)
    async with pool.acquire() as conn:
        await _zones(world, conn, tenants)
        # records the engine audit completes: already ended when first written
        for _ in range(20):
            t = rng.choice(tenants)
            d = world.decision(t, rng.choice(numbers[t]), _times(rng), direction="inbound")
            e = world.end(d)
            await conn.execute(
                "INSERT INTO calls (linkedid, uniqueid, tenant_id, number_id, caller, called, action, "
                "reason, decided_at, answered_at, ended_at, direction) "
                "VALUES ($1, $1, $2, $3, $4, '4008001234', $5, 'ROUTED', $6, $7, $8, 'inbound')",
                d.linkedid, t, d.number_id, d.caller, d.action, d.decided_at, e.answered_at, e.ended_at,
            )  # fmt: skip
        await _zones(world, conn, tenants)
        ended = await conn.fetch(
            "SELECT id FROM calls WHERE tenant_id = ANY($1) AND ended_at IS NOT NULL "
            "AND direction = 'inbound' AND number_id IS NOT NULL ORDER BY id",
            tenants,
        )
        ids = [r["id"] for r in ended]
        # a changed end and answer, twice (the second time nothing changes)
        changed = rng.sample(ids, 25)
        for _ in range(2):
            await conn.execute(
                "UPDATE calls SET answered_at = decided_at + interval '2 seconds', "
                "ended_at = decided_at + interval '95 seconds' WHERE id = ANY($1)",
                changed,
            )
        # one statement updating several calls of the same caller, earliest ones included
        moved = [
            r["call_id"]
            for r in await conn.fetch(
                "SELECT call_id FROM call_analysis_calls WHERE tenant_id = ANY($1) AND first_call "
                "ORDER BY call_id LIMIT 5",
                tenants,
            )
        ] + rng.sample(ids, 5)
        await conn.execute(
            "UPDATE calls SET decided_at = decided_at + interval '9 hours', caller = '13800138000' "
            "WHERE id = ANY($1)",
            moved,
        )
        # an ended call opened again (ended_at cleared), a call moved to another number,
        # an inbound call turned outbound, a record deleted
        await conn.execute("UPDATE calls SET ended_at = NULL WHERE id = $1", ids[3])
        await conn.execute("UPDATE calls SET number_id = $2 WHERE id = $1", ids[4], numbers[a][1])
        await conn.execute("UPDATE calls SET direction = 'outbound' WHERE id = $1", ids[5])
        await conn.execute("DELETE FROM calls WHERE id = $1", ids[6])
        await _zones(world, conn, tenants)
        # a call whose start changed is counted in the zone of when it changed
        for r in await conn.fetch(
            "SELECT c.id, t.timezone FROM calls c JOIN tenants t ON t.id = c.tenant_id WHERE c.id = ANY($1)",
            moved,
        ):
            world.zone_of[r["id"]] = r["timezone"]

        hours, places = await _aggregates(conn, tenants)
        calls = await _calls(conn, tenants)
        expected_hours, expected_places = _oracle(calls, world.zone_of)
        assert hours == expected_hours
        # before placing, a caller not looked up yet is counted under '?'
        known = {
            r["caller"]: (r["province"], r["city"])
            for r in await conn.fetch("SELECT * FROM caller_places WHERE caller = ANY($1)", world.callers)
        }
        assert len(known) < len(world.callers)
        _, before = _oracle(calls, world.zone_of, lambda c: known.get(c, (NOT_PLACED, NOT_PLACED)))
        assert places == before
        assert await place_callers(conn, a) + await place_callers(conn, b) > 0
        hours, places = await _aggregates(conn, tenants)
        assert hours == expected_hours
        assert places == expected_places
        # what is counted per call: one row per counted call, one first call per caller
        counted = [c for c in calls if c["ended_at"] and c["direction"] == "inbound" and c["number_id"]]
        assert await conn.fetchval(
            "SELECT count(*) FROM call_analysis_calls WHERE tenant_id = ANY($1)", tenants
        ) == len(counted)
        assert await conn.fetchval(
            "SELECT count(*) FROM call_analysis_calls WHERE tenant_id = ANY($1) AND first_call", tenants
        ) == len({(c["tenant_id"], c["caller"]) for c in counted})

        # the service's figures for a period: tenant a's first two days of the run
        ctx = Ctx(conn, Principal(None, "test", Role.PLATFORM_ADMIN), FixedClock(START), a)
        first_day = date(2026, 3, 30)
        last_day = first_day + timedelta(days=1)
        got = await call_analysis(ctx, first_day, last_day)
        mine = [(k, v) for k, v in expected_hours.items() if k[0] == a and first_day <= k[1] <= last_day]
        assert got.totals.calls == sum(v for k, v in mine if k[-1] == "calls")
        assert got.totals.answered == sum(v for k, v in mine if k[-1] == "calls" and k[4] == "answered")
        assert got.totals.refused == sum(v for k, v in mine if k[-1] == "calls" and k[4] == "refused")
        assert got.totals.first_time == sum(v for k, v in mine if k[-1] == "first")
        assert got.totals.talk_seconds == sum(v for k, v in mine if k[-1] == "talk")
        for h in got.by_hour:
            assert h.calls == sum(v for k, v in mine if k[-1] == "calls" and k[3] == h.hour)
        for w in got.by_weekday:
            assert w.calls == sum(v for k, v in mine if k[-1] == "calls" and k[1].isoweekday() == w.weekday)
        assert got.totals.calls > 0 and got.totals.not_placed == 0
        by_province: Counter[str] = Counter()
        for k, v in expected_places.items():
            if k[0] == a and first_day <= k[1] <= last_day and k[-1] == "calls":
                by_province[k[3]] += v
        assert {p.province: p.calls for p in got.by_province} == dict(by_province)
        one = numbers[a][0]
        only = await call_analysis(ctx, first_day, last_day, one)
        assert only.totals.calls == sum(v for k, v in mine if k[-1] == "calls" and k[2] == one)
        assert [n.number_id for n in only.by_number] in ([one], [])


async def test_a_call_at_2330_utc_is_the_next_local_day_in_shanghai(pool: asyncpg.Pool) -> None:
    world = World(pool, random.Random(7))
    async with pool.acquire() as conn:
        t = await new_tenant(conn)
        number = await _number(conn, t)
    late = datetime(2026, 5, 31, 23, 30, tzinfo=UTC)  # 2026-06-01 07:30 in Shanghai
    d = world.decision(t, number, late, caller="13800138000", action="dial", direction="inbound")
    await world.writer.write([d])
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM call_analysis_calls WHERE tenant_id = $1", t) == 0
    # ends the next day (after the period's boundary): still counted on its start's day
    await world.writer.write(
        [EndRecord(d.linkedid, late + timedelta(seconds=5), late + timedelta(hours=1), 16)]
    )
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT local_day, local_hour, calls, talk_seconds, first_calls FROM call_analysis_hours "
            "WHERE tenant_id = $1",
            t,
        )
        assert (row["local_day"], row["local_hour"]) == (date(2026, 6, 1), 7)
        assert (row["calls"], row["talk_seconds"], row["first_calls"]) == (1, 3595, 1)
        ctx = Ctx(conn, Principal(None, "test", Role.PLATFORM_ADMIN), FixedClock(late), t)
        may = await call_analysis(ctx, date(2026, 5, 1), date(2026, 5, 31))
        june = await call_analysis(ctx, date(2026, 6, 1), date(2026, 6, 30))
        assert (may.totals.calls, june.totals.calls) == (0, 1)
        assert june.by_weekday[0].calls == 1  # 2026-06-01 is a Monday
        assert [(p.province, p.calls) for p in june.by_province] == [("北京", 1)]
