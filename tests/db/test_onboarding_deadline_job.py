"""The 7-day onboarding deadline on the real database, driven by an injected clock: the
reminders on day 5 and day 6, on day 7 the reserved numbers go back to the pool through
their release action (audited, bindings gone, the cool-down set) while a number in
service stays; every step once however often the job runs.

The runs are pinned to 2001 and to the test's own tenants: the shared database holds
other tests' tenants, whose numbers no run of this test may release."""

from __future__ import annotations

import asyncio
import random
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg

from provisioning.engine import Ctx
from provisioning.numbers import assign_number, number_action
from provisioning.onboarding import RELEASED_KIND, REMINDER_KIND, apply_deadlines
from provisioning.roles import Principal, Role
from provisioning.rules import NUMBER_COOLDOWN
from provisioning.schemas import NumberCreate, TenantCreate
from provisioning.tenants import create_tenant
from softswitch.core.clock import FixedClock
from softswitch.core.metrics import Metrics
from softswitch.jobs.catalogue import onboarding_deadlines
from softswitch.jobs.scheduler import JobRun

SH = ZoneInfo("Asia/Shanghai")
PAID = datetime(2001, 3, 1, 10, 0, tzinfo=SH)
OPERATOR = Principal(None, "db-test", Role.PLATFORM_ADMIN)


def day(n: int, hours: int = 0) -> datetime:
    return PAID + timedelta(days=n, hours=hours)


async def _free_number(conn: asyncpg.Connection) -> str:
    while True:
        number = "400" + "".join(random.choices("0123456789", k=7))
        if not await conn.fetchval("SELECT 1 FROM numbers WHERE number = $1", number):
            return number


async def _tenant(conn: asyncpg.Connection, paid: datetime | None = PAID) -> int:
    ctx = Ctx(conn, OPERATOR, FixedClock(PAID))
    t = await create_tenant(ctx, TenantCreate(name=f"deadline {random.getrandbits(40):x}", paid_at=paid))
    return t.id


async def _assign(conn: asyncpg.Connection, tenant_id: int) -> int:
    ctx = Ctx(conn, OPERATOR, FixedClock(PAID), tenant_id)
    n = await assign_number(ctx, NumberCreate(number=await _free_number(conn), kind="unified_400"))
    await conn.execute(
        "INSERT INTO destination_bindings (number_id, tenant_id, destination) VALUES ($1, $2, '13800138000')",
        n.id,
        tenant_id,
    )
    return n.id


async def _notices(conn: asyncpg.Connection, tenant_id: int) -> list[tuple[str, str]]:
    rows = await conn.fetch(
        "SELECT kind, dedupe_key FROM outbox WHERE tenant_id = $1 AND kind = ANY($2::text[]) ORDER BY id",
        tenant_id,
        [REMINDER_KIND, RELEASED_KIND],
    )
    return [(r["kind"], r["dedupe_key"].rsplit(":", 1)[1]) for r in rows]


async def test_reminders_on_day_5_and_6_then_the_reserved_number_is_released_once(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        tid = await _tenant(conn)
        reserved = await _assign(conn, tid)
        pending = await _assign(conn, tid)
        await number_action(Ctx(conn, OPERATOR, FixedClock(PAID), tid), pending, "submit")

    async def run(at: datetime) -> None:
        report = await apply_deadlines(pool, at, tenant_ids=[tid])
        assert report.errors == {}

    await run(day(4, 23))  # more than two days before: nothing
    async with pool.acquire() as conn:
        assert await _notices(conn, tid) == []

    await run(day(5))  # due_soon: two days left
    await run(day(5, 12))
    async with pool.acquire() as conn:
        assert await _notices(conn, tid) == [(REMINDER_KIND, "2d")]

    await run(day(6))  # one day left
    await run(day(6, 23))
    async with pool.acquire() as conn:
        assert await _notices(conn, tid) == [(REMINDER_KIND, "2d"), (REMINDER_KIND, "1d")]
        states = await conn.fetch(
            "SELECT state FROM numbers WHERE id = ANY($1::bigint[])", [reserved, pending]
        )
        assert {r["state"] for r in states} == {"reserved", "pending_approval"}

    # The deadline: three runs at once (the CLI beside the scheduler), then later runs.
    await asyncio.gather(run(day(7)), run(day(7)), run(day(7)))
    await run(day(7, 1))
    await run(day(9))
    async with pool.acquire() as conn:
        assert await _notices(conn, tid) == [
            (REMINDER_KIND, "2d"),
            (REMINDER_KIND, "1d"),
            (RELEASED_KIND, "release"),
        ]
        rows = await conn.fetch(
            "SELECT id, state, tenant_id, released_at, available_after FROM numbers "
            "WHERE id = ANY($1::bigint[]) ORDER BY id",
            [reserved, pending],
        )
        for r in rows:
            assert (r["state"], r["tenant_id"]) == ("released", None)
            assert r["released_at"] == day(7)
            assert r["available_after"] == day(7) + NUMBER_COOLDOWN
        assert not await conn.fetchval(
            "SELECT count(*) FROM destination_bindings WHERE number_id = ANY($1::bigint[])",
            [reserved, pending],
        )
        # Each number released once, by the numbers' own action, and the tenant's entry.
        releases = await conn.fetch(
            "SELECT entity_id, actor FROM audit_log WHERE entity = 'numbers' AND action = 'release' "
            "AND entity_id = ANY($1::text[])",
            [str(reserved), str(pending)],
        )
        assert sorted(r["entity_id"] for r in releases) == sorted([str(reserved), str(pending)])
        assert {r["actor"] for r in releases} == {"system:onboarding"}
        entries = await conn.fetch(
            "SELECT after::text FROM audit_log WHERE entity = 'tenants' AND entity_id = $1 "
            "AND action = 'onboarding_deadline'",
            str(tid),
        )
        assert len(entries) == 1
        notice = await conn.fetchval(
            "SELECT payload::text FROM outbox WHERE tenant_id = $1 AND kind = $2", tid, RELEASED_KIND
        )
        assert "signed_contract" in notice


async def test_a_number_in_service_stays_and_complete_or_unpaid_tenants_are_left_alone(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn:
        late = await _tenant(conn)
        active = await _assign(conn, late)
        await conn.execute("UPDATE numbers SET state = 'active' WHERE id = $1", active)
        complete = await _tenant(conn)
        kept = await _assign(conn, complete)
        await conn.execute("UPDATE tenant_documents SET status = 'approved' WHERE tenant_id = $1", complete)
        unpaid = await _tenant(conn, paid=None)
        unpaid_number = await _assign(conn, unpaid)

    report = await apply_deadlines(pool, day(8), tenant_ids=[late, complete, unpaid])
    assert report.errors == {}
    assert report.released == {late: []}
    async with pool.acquire() as conn:
        states = dict(
            await conn.fetch(
                "SELECT id, state FROM numbers WHERE id = ANY($1::bigint[])", [active, kept, unpaid_number]
            )
        )
        assert states == {active: "active", kept: "reserved", unpaid_number: "reserved"}
        assert await _notices(conn, complete) == [] and await _notices(conn, unpaid) == []
        assert await _notices(conn, late) == [(RELEASED_KIND, "release")]


async def test_a_tenant_first_seen_past_its_deadline_gets_the_release_and_the_summary_masks_numbers(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn:
        tid = await _tenant(conn)
        nid = await _assign(conn, tid)
        number = await conn.fetchval("SELECT number FROM numbers WHERE id = $1", nid)
    result = await apply_deadlines(pool, day(10), tenant_ids=[tid])
    assert result.released == {tid: [number]}
    shown = result.as_dict()["released"][str(tid)]
    assert shown != [number] and shown[0][:3] == number[:3] and shown[0][-4:] == number[-4:]
    async with pool.acquire() as conn:
        assert await _notices(conn, tid) == [(RELEASED_KIND, "release")]


async def test_the_scheduler_job_runs_the_deadlines(pool: asyncpg.Pool) -> None:
    """The job as the scheduler calls it (every tenant: pinned to 2001, only this test's
    tenant is paid that long ago with documents missing)."""
    async with pool.acquire() as conn:
        tid = await _tenant(conn, paid=datetime(2000, 6, 1, tzinfo=SH))
        nid = await _assign(conn, tid)
    result = await onboarding_deadlines(
        JobRun(pool, datetime(2000, 6, 8, 1, tzinfo=SH), None, frozenset(), "system:scheduler", Metrics())
    )
    assert result.ok and str(tid) in result.detail["released"]
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT state FROM numbers WHERE id = $1", nid) == "released"
