"""The scheduler on the real database: two instances, one run per due period; every run a
row of scheduler_runs; a failing job recorded failed and retried after its backoff while
the scheduler goes on; a run left 'running' by a stopped instance closed; stopping
cancels cleanly and frees the lock; `run_now` through the same lock; the outbound-attempt
purge and the billing job of the catalogue.

Job names are unique per test: the shared database keeps every earlier run."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta

import asyncpg

from softswitch.core.clock import FixedClock, SystemClock
from softswitch.core.metrics import Metrics
from softswitch.core.settings import Settings
from softswitch.jobs.catalogue import billing_cycle, delete_attempts_before, outbound_attempts_purge
from softswitch.jobs.scheduler import Job, JobResult, JobRun, Scheduler, lock_key
from softswitch.jobs.triggers import Every, LocalDayStart
from tests.db.conftest import new_tenant

T0 = datetime(2026, 12, 3, 1, 0, tzinfo=UTC)


def job_name(what: str) -> str:
    return f"test_{what}_{secrets.token_hex(4)}"


async def _rows(pool: asyncpg.Pool, job: str) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return await conn.fetch(
            "SELECT instance, started_at, finished_at, outcome, detail::text AS detail FROM scheduler_runs "
            "WHERE job = $1 ORDER BY started_at, id",
            job,
        )


async def wait_for(check: Callable[[], Awaitable[bool]], what: str, budget: float = 5.0) -> None:
    deadline = time.monotonic() + budget
    while not await check():
        assert time.monotonic() < deadline, f"{what} within {budget} s"
        await asyncio.sleep(0.02)


def runs_metric(metrics: Metrics, job: str, outcome: str) -> float | None:
    return metrics.registry.get_sample_value(
        "softswitch_scheduler_runs_total", {"job": job, "outcome": outcome}
    )


def counter(name: str, runs: list[datetime], gate: asyncio.Event | None = None) -> Job:
    async def run(r: JobRun) -> JobResult:
        runs.append(r.now)
        if gate is not None:
            await gate.wait()
        return JobResult({"n": len(runs)})

    return Job(name, Every(60), run)


async def test_two_instances_run_each_due_period_exactly_once(pool: asyncpg.Pool) -> None:
    name = job_name("counted")
    runs: list[datetime] = []
    gate = asyncio.Event()
    clock = FixedClock(T0)
    job = counter(name, runs, gate)
    a = Scheduler(pool, [job], clock, Metrics(), instance="a")
    b_metrics = Metrics()
    b = Scheduler(pool, [job], clock, b_metrics, instance="b")

    # A runs it (and holds the lock while it runs): B finds the lock taken.
    first = asyncio.create_task(a.tick())
    await wait_for(lambda: _true(bool(runs)), "A started the job")
    assert await b.tick() == []
    assert runs_metric(b_metrics, name, "skipped") == 1
    gate.set()
    [record] = await first
    assert (record.instance, record.outcome, dict(record.detail)) == ("a", "ok", {"n": 1})
    # Once it is done, the period's run is the one A made: B does nothing.
    assert await b.tick() == []

    # Period after period, both instances at once: one run per period.
    for period in range(1, 9):
        clock.at = T0 + timedelta(seconds=60 * period)
        done = (
            await asyncio.gather(a.tick(), b.tick())
            if period % 2
            else await asyncio.gather(b.tick(), a.tick())
        )
        assert sum(len(d) for d in done) == 1, done
        assert await a.tick() == [] and await b.tick() == []
    assert runs == [T0 + timedelta(seconds=60 * p) for p in range(9)]

    rows = await _rows(pool, name)
    assert [r["outcome"] for r in rows] == ["ok"] * 9
    assert [r["started_at"] for r in rows] == runs
    assert all(r["finished_at"] is not None and r["instance"] in ("a", "b") for r in rows)
    assert json.loads(rows[0]["detail"]) == {"n": 1}


async def _true(value: bool) -> bool:
    return value


async def test_an_instance_that_looked_before_another_ran_checks_again_inside_the_lock(
    pool: asyncpg.Pool,
) -> None:
    """B sees the job due, but reaches its lock only after A ran it: B skips it."""
    name = job_name("rechecked")
    runs: list[datetime] = []
    clock = FixedClock(T0)
    shared = counter(name, runs)
    hold = asyncio.Event()
    held: list[datetime] = []
    # B's own job comes first in its list: B's tick looks at both, then waits in it.
    slow = counter(job_name("slow"), held, hold)
    a = Scheduler(pool, [shared], clock, Metrics(), instance="a")
    b = Scheduler(pool, [slow, shared], clock, Metrics(), instance="b")
    b_tick = asyncio.create_task(b.tick())
    await wait_for(lambda: _true(bool(held)), "B is in its first job")
    assert [r.job for r in await a.tick()] == [name]
    hold.set()
    assert [r.job for r in await b_tick] == [slow.name]
    assert len(runs) == 1 and len(await _rows(pool, name)) == 1


async def test_a_failing_job_is_recorded_failed_and_retried_after_the_backoff(pool: asyncpg.Pool) -> None:
    name = job_name("flaky")
    calls: list[datetime] = []

    async def flaky(r: JobRun) -> JobResult:
        calls.append(r.now)
        if len(calls) == 1:
            raise RuntimeError("the carrier's API is down")
        if len(calls) == 2:
            return JobResult({"errors": {"7": "rolled back"}}, ok=False)
        return JobResult({"done": True})

    clock = FixedClock(T0)
    metrics = Metrics()
    s = Scheduler(pool, [Job(name, Every(3600), flaky)], clock, metrics, instance="x", retry_s=30)
    [failed] = await s.tick()  # the exception stays inside the run
    assert failed.outcome == "failed" and "RuntimeError: the carrier's API is down" in failed.detail["error"]
    clock.at = T0 + timedelta(seconds=29)
    assert await s.tick() == []  # not at every tick: after the backoff
    clock.at = T0 + timedelta(seconds=30)
    [partial] = await s.tick()
    assert partial.outcome == "failed"  # the job said so (some tenants failed)
    clock.at = T0 + timedelta(seconds=30 + 59)
    assert await s.tick() == []  # the second failure doubles the backoff
    clock.at = T0 + timedelta(seconds=30 + 60)
    [ok] = await s.tick()
    assert ok.outcome == "ok"
    clock.at = T0 + timedelta(seconds=30 + 60 + 1)
    assert await s.tick() == []  # an hourly job again
    rows = await _rows(pool, name)
    assert [r["outcome"] for r in rows] == ["failed", "failed", "ok"]
    assert json.loads(rows[1]["detail"]) == {"errors": {"7": "rolled back"}}
    assert runs_metric(metrics, name, "failed") == 2 and runs_metric(metrics, name, "ok") == 1
    assert ok.finished_at is not None
    last = metrics.registry.get_sample_value(
        "softswitch_scheduler_last_success_timestamp_seconds", {"job": name}
    )
    assert last == ok.finished_at.timestamp()


async def test_the_running_scheduler_outlives_a_job_that_always_fails_and_stops_cleanly(
    pool: asyncpg.Pool,
) -> None:
    name = job_name("broken")

    async def broken(r: JobRun) -> JobResult:
        raise ValueError("bad data")

    s = Scheduler(pool, [Job(name, Every(3600), broken)], SystemClock(), Metrics(), tick_s=0.02, retry_s=0.05)
    await s.start()
    try:

        async def failed_twice() -> bool:
            return [r["outcome"] for r in await _rows(pool, name)][:2] == ["failed", "failed"]

        await wait_for(failed_twice, "two failed runs")
        assert s._task is not None and not s._task.done()
    finally:
        await s.stop()
    assert s._task is None


async def test_stopping_cancels_a_run_in_progress_closes_its_row_and_frees_the_lock(
    pool: asyncpg.Pool,
) -> None:
    name = job_name("endless")
    started = asyncio.Event()

    async def endless(r: JobRun) -> JobResult:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("never")

    s = Scheduler(pool, [Job(name, Every(60), endless)], FixedClock(T0), Metrics(), tick_s=0.02)
    await s.start()
    await asyncio.wait_for(started.wait(), 5)
    await s.stop()
    [row] = await _rows(pool, name)
    assert row["outcome"] == "failed" and json.loads(row["detail"]) == {"error": "cancelled"}
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT pg_try_advisory_lock($1)", lock_key(name))
        await conn.execute("SELECT pg_advisory_unlock($1)", lock_key(name))


async def test_a_run_left_running_by_a_stopped_instance_is_closed_by_the_next_lock_holder(
    pool: asyncpg.Pool,
) -> None:
    name = job_name("orphan")
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO scheduler_runs (job, instance, started_at) VALUES ($1, 'gone:1', $2)",
            name,
            T0 - timedelta(hours=1),
        )
    runs: list[datetime] = []
    [record] = await Scheduler(pool, [counter(name, runs)], FixedClock(T0), Metrics(), instance="y").tick()
    rows = await _rows(pool, name)
    assert [(r["instance"], r["outcome"]) for r in rows] == [("gone:1", "failed"), ("y", "ok")]
    assert "abandoned" in json.loads(rows[0]["detail"])["error"]
    assert rows[0]["finished_at"] == T0


async def test_run_now_runs_a_job_that_is_not_due_through_the_same_lock(pool: asyncpg.Pool) -> None:
    name = job_name("manual")
    runs: list[datetime] = []
    gate = asyncio.Event()
    clock = FixedClock(T0)
    job = counter(name, runs, gate)
    a = Scheduler(pool, [job], clock, Metrics(), instance="a")
    cli = Scheduler(pool, [job], clock, Metrics(), instance="cli")
    first = asyncio.create_task(a.tick())
    await wait_for(lambda: _true(bool(runs)), "A started the job")
    assert await cli.run_now(name, actor="cli:test") is None  # A is running it
    gate.set()
    await first
    record = await cli.run_now(name, actor="cli:test")  # not due (just ran): run anyway
    assert record is not None and record.outcome == "ok" and record.instance == "cli"
    assert len(runs) == 2 and len(await _rows(pool, name)) == 2
    [status] = await cli.status()
    assert status.last is not None and status.last.instance == "cli"
    assert status.next_due == T0 + timedelta(seconds=60)


async def test_the_attempt_purge_keeps_the_longest_window(pool: asyncpg.Pool) -> None:
    # Pinned far in the past: no run of this test touches another test's attempts.
    now = datetime(2001, 6, 1, tzinfo=UTC)
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn)
        old, recent = "13800000001", "13800000002"
        await conn.executemany(
            "INSERT INTO outbound_attempts (tenant_id, callee, call_id, at) VALUES ($1, $2, $3, $4)",
            [(tenant, old, f"old-{i}", now - timedelta(days=400, seconds=i)) for i in range(7)]
            + [(tenant, recent, "recent", now - timedelta(hours=1))],
        )
        assert await delete_attempts_before(conn, now - timedelta(days=365), batch=3) == 7
        await conn.executemany(
            "INSERT INTO outbound_attempts (tenant_id, callee, call_id, at) VALUES ($1, $2, 'old', $3)",
            [(tenant, old, now - timedelta(days=400))],
        )
    result = await outbound_attempts_purge(Settings()).run(
        JobRun(pool, now, None, frozenset(), "system:scheduler", Metrics())
    )
    assert result.ok and result.detail["kept_s"] >= 86400 and result.detail["deleted"] >= 1
    async with pool.acquire() as conn:
        left = await conn.fetch("SELECT callee FROM outbound_attempts WHERE tenant_id = $1", tenant)
    assert [r["callee"] for r in left] == [recent]


async def test_the_billing_job_bills_the_tenants_whose_local_day_began(pool: asyncpg.Pool) -> None:
    # A zone of its own, so the job touches only this test's tenants.
    zone = "Pacific/Chatham"
    async with pool.acquire() as conn:
        billed = await new_tenant(conn, balance=100)
        other = await new_tenant(conn, balance=100)
        await conn.execute("UPDATE tenants SET timezone = $2 WHERE id = $1", billed, zone)
        package = await conn.fetchval("SELECT id FROM packages WHERE code = 'A39'")
        for t in (billed, other):
            await conn.execute(
                "INSERT INTO subscriptions (tenant_id, package_id, starts_on) VALUES ($1, $2, $3)",
                t,
                package,
                date(2001, 1, 1),
            )
    now = datetime(2001, 3, 1, 0, 0, 5, tzinfo=UTC)
    result = await billing_cycle(JobRun(pool, now, None, frozenset({zone}), "system:scheduler", Metrics()))
    assert result.ok and result.detail["zones"] == [zone] and result.detail["ledger_entries"] >= 1
    async with pool.acquire() as conn:
        rent = await conn.fetch(
            "SELECT tenant_id FROM ledger_entries WHERE kind = 'rent' AND tenant_id = ANY($1)",
            [billed, other],
        )
    assert {r["tenant_id"] for r in rent} == {billed}
    # A day job with no zone whose day began does nothing.
    assert (await billing_cycle(JobRun(pool, now, now, frozenset(), "s", Metrics()))).detail["tenants"] == 0


async def test_a_day_start_job_gets_the_zones_whose_day_began(pool: asyncpg.Pool) -> None:
    name = job_name("daily")
    seen: list[frozenset[str]] = []

    async def daily(r: JobRun) -> JobResult:
        seen.append(r.zones)
        return JobResult({})

    clock = FixedClock(T0)
    s = Scheduler(pool, [Job(name, LocalDayStart(), daily)], clock, Metrics())
    [first] = await s.tick()  # never ran: at once, for every tenant zone
    async with pool.acquire() as conn:
        zones = {
            r["timezone"]
            for r in await conn.fetch("SELECT DISTINCT timezone FROM tenants WHERE state <> 'terminated'")
        }
    assert seen[0] == zones and "Asia/Shanghai" in zones
    clock.at = T0 + timedelta(hours=1)
    assert await s.tick() == []
    # The next Shanghai midnight (16:00 UTC): Shanghai's tenants, not London's.
    clock.at = datetime(2026, 12, 3, 16, 0, 1, tzinfo=UTC)
    await s.tick()
    assert "Asia/Shanghai" in seen[1] and "Europe/London" not in seen[1]
