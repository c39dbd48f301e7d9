"""The scheduler inside the service: every ``tick_s`` it looks at each job's recorded runs
(``scheduler_runs``, whichever instance wrote them) and runs the jobs that are due.

Several instances share one database, and each due run happens once: the instance that
runs a job holds the job's PostgreSQL advisory lock (session level, on a connection of its
own) for the whole run, and checks again inside the lock that the job is still due —
an instance that took the lock just after another finished reads that run and does
nothing. Every run is a row: 'running' when it starts, then 'ok' or 'failed' with a
summary of what it did (``detail``). A row still 'running' when the lock is free again
belongs to an instance that stopped mid-run: it is closed as failed. A job that raises is
recorded failed and retried after a backoff; nothing a job does stops the scheduler.
``run_now`` (``softswitch jobs run``) goes through the same lock and is recorded the same
way."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from softswitch.core.clock import Clock
from softswitch.core.metrics import Metrics
from softswitch.jobs.triggers import LastRuns, LocalDayStart, Trigger, due_at, is_due, zones_due

log = logging.getLogger(__name__)

SCHEDULER_ACTOR = "system:scheduler"


@dataclass(frozen=True, slots=True)
class JobRun:
    """What one run of a job is given."""

    pool: asyncpg.Pool
    now: datetime  # the run's start, from the scheduler's clock
    since: datetime | None  # start of the job's last successful run (None: it never ran)
    zones: frozenset[str]  # day-start jobs: the tenant zones whose local day began since then
    actor: str  # who runs it: the scheduler, or the operator of `softswitch jobs run`
    metrics: Metrics


@dataclass(frozen=True, slots=True)
class JobResult:
    """A run's summary (stored as the run's detail); ``ok=False`` records it failed (e.g.
    some tenants failed and were rolled back): it is retried after the backoff."""

    detail: Mapping[str, Any]
    ok: bool = True


@dataclass(frozen=True, slots=True)
class Job:
    name: str
    trigger: Trigger
    run: Callable[[JobRun], Awaitable[JobResult]]
    description: str = ""


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One row of scheduler_runs."""

    id: int
    job: str
    instance: str
    started_at: datetime
    finished_at: datetime | None
    outcome: str  # running | ok | failed | skipped
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class JobStatus:
    """What `softswitch jobs list` shows of a job."""

    job: Job
    last: RunRecord | None
    next_due: datetime | None  # None: never (a day-start job with no tenant)


def lock_key(job: str) -> int:
    """The job's advisory lock: a stable 64-bit key from its name (the same in every
    process, unlike hash())."""
    digest = hashlib.sha256(f"softswitch.jobs:{job}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def default_instance() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


_LAST_RUNS = """
SELECT ok.at AS ok,
       (SELECT started_at FROM scheduler_runs WHERE job = $1 AND outcome IN ('ok', 'failed')
        ORDER BY started_at DESC LIMIT 1) AS attempt,
       (SELECT count(*) FROM scheduler_runs WHERE job = $1 AND outcome = 'failed'
        AND started_at > COALESCE(ok.at, '-infinity')) AS failures
FROM (SELECT (SELECT started_at FROM scheduler_runs WHERE job = $1 AND outcome = 'ok'
              ORDER BY started_at DESC LIMIT 1) AS at) ok
"""
# Only while holding the job's lock: no run of it is in progress anywhere.
_ABANDONED = """
UPDATE scheduler_runs SET outcome = 'failed', finished_at = $2,
       detail = detail || '{"error": "abandoned: the instance running it stopped"}'::jsonb
WHERE job = $1 AND outcome = 'running'
"""
_START = (
    "INSERT INTO scheduler_runs (job, instance, started_at, outcome) VALUES ($1, $2, $3, 'running') "
    "RETURNING id"
)
_FINISH = "UPDATE scheduler_runs SET outcome = $2, finished_at = $3, detail = $4::text::jsonb WHERE id = $1"
_LATEST = (
    "SELECT id, job, instance, started_at, finished_at, outcome, detail::text AS detail "
    "FROM scheduler_runs WHERE job = $1 ORDER BY started_at DESC, id DESC LIMIT 1"
)


async def last_runs(conn: asyncpg.Connection, job: str) -> LastRuns:
    row = await conn.fetchrow(_LAST_RUNS, job)
    assert row is not None
    return LastRuns(row["ok"], row["attempt"], row["failures"])


async def tenant_zones(conn: asyncpg.Connection) -> frozenset[str]:
    """The time zones of the tenants still under contract (one the zone database does not
    know is left out, with a warning: its tenants' day starts are not seen)."""
    rows = await conn.fetch("SELECT DISTINCT timezone FROM tenants WHERE state <> 'terminated'")
    zones = set()
    for r in rows:
        try:
            ZoneInfo(r["timezone"])
        except (ValueError, KeyError):  # ZoneInfoNotFoundError is a KeyError
            log.warning("tenants have an unknown time zone %r: left out of day-start jobs", r["timezone"])
        else:
            zones.add(r["timezone"])
    return frozenset(zones)


def _detail_json(detail: Mapping[str, Any]) -> str:
    return json.dumps(dict(detail), default=str, ensure_ascii=False)


class Scheduler:
    def __init__(
        self,
        pool: asyncpg.Pool,
        jobs: Sequence[Job],
        clock: Clock,
        metrics: Metrics,
        *,
        instance: str = "",
        tick_s: float = 5.0,
        retry_s: float = 60.0,
        retry_max_s: float = 3600.0,
    ) -> None:
        names = [j.name for j in jobs]
        if len(set(names)) != len(names):
            raise ValueError(f"job names must be unique: {names}")
        self._pool = pool
        self.jobs = list(jobs)
        self._clock = clock
        self._metrics = metrics
        self.instance = instance or default_instance()
        self._tick_s = tick_s
        self._retry = (retry_s, retry_max_s)
        self._task: asyncio.Task[None] | None = None
        self._tick_failing = False

    def job(self, name: str) -> Job:
        for j in self.jobs:
            if j.name == name:
                return j
        raise KeyError(f"no job {name!r} (jobs: {', '.join(j.name for j in self.jobs)})")

    # ------------------------------------------------------------------ life cycle
    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="scheduler")

    async def stop(self) -> None:
        """Cancel the loop; a run in progress is cancelled (its row closed as failed)."""
        if self._task is None:
            return
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
                if self._tick_failing:
                    log.info("scheduler: ticks work again")
                self._tick_failing = False
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the database away: the next tick tries again
                if not self._tick_failing:
                    log.exception("scheduler tick failed (retrying every %.1f s)", self._tick_s)
                self._tick_failing = True
            await asyncio.sleep(self._tick_s)

    # ------------------------------------------------------------------ runs
    async def tick(self) -> list[RunRecord]:
        """One pass: each due job run once (by this instance, or skipped because another
        one runs it). Returns the runs this instance made."""
        now = self._clock.now()
        async with self._pool.acquire() as conn:
            zones = await self._zones(conn)
            due = [
                j
                for j in self.jobs
                if is_due(j.trigger, await last_runs(conn, j.name), now, zones, *self._retry)
            ]
        done = []
        for job in due:
            try:
                record = await self._attempt(job, zones, force=False, actor=SCHEDULER_ACTOR)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the other jobs still run; this one at the next tick
                log.exception("scheduler: job %s could not be run", job.name)
                continue
            if record is not None:
                done.append(record)
        return done

    async def run_now(self, name: str, actor: str = SCHEDULER_ACTOR) -> RunRecord | None:
        """Run ``name`` now, due or not (a day-start job for every tenant zone), through the
        job's lock; None when another instance holds it (running it at this moment)."""
        job = self.job(name)
        async with self._pool.acquire() as conn:
            zones = await self._zones(conn, always=True)
        return await self._attempt(job, zones, force=True, actor=actor)

    async def _zones(self, conn: asyncpg.Connection, always: bool = False) -> frozenset[str]:
        if always or any(isinstance(j.trigger, LocalDayStart) for j in self.jobs):
            return await tenant_zones(conn)
        return frozenset()

    async def _attempt(self, job: Job, zones: frozenset[str], *, force: bool, actor: str) -> RunRecord | None:
        key = lock_key(job.name)
        async with self._pool.acquire() as conn:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", key):
                self._metrics.scheduler_runs.labels(job.name, "skipped").inc()
                return None
            try:
                return await self._run_locked(conn, job, zones, force=force, actor=actor)
            finally:
                # A connection that broke took its session's lock with it; the pool's reset
                # of a returned connection unlocks all, too.
                with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                    await conn.execute("SELECT pg_advisory_unlock($1)", key)

    async def _run_locked(
        self, conn: asyncpg.Connection, job: Job, zones: frozenset[str], *, force: bool, actor: str
    ) -> RunRecord | None:
        now = self._clock.now()
        await conn.execute(_ABANDONED, job.name, now)
        last = await last_runs(conn, job.name)
        if not force and not is_due(job.trigger, last, now, zones, *self._retry):
            # Another instance ran it between our look and our lock.
            self._metrics.scheduler_runs.labels(job.name, "skipped").inc()
            return None
        run_zones = zones if force else zones_due(zones, last.ok, now)
        if not isinstance(job.trigger, LocalDayStart):
            run_zones = frozenset()
        run_id = await conn.fetchval(_START, job.name, self.instance, now)
        log.info("scheduler: %s started (run %d)", job.name, run_id)
        try:
            result = await job.run(JobRun(self._pool, now, last.ok, run_zones, actor, self._metrics))
            outcome, detail = ("ok" if result.ok else "failed"), dict(result.detail)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    conn.execute(
                        _FINISH, run_id, "failed", self._clock.now(), _detail_json({"error": "cancelled"})
                    ),
                    2.0,
                )
            self._metrics.scheduler_runs.labels(job.name, "failed").inc()
            raise
        except Exception as exc:  # noqa: BLE001 - recorded, retried after the backoff
            log.exception("scheduler: %s failed (run %d)", job.name, run_id)
            outcome, detail = "failed", {"error": f"{type(exc).__name__}: {exc}"}
        finished = self._clock.now()
        await conn.execute(_FINISH, run_id, outcome, finished, _detail_json(detail))
        self._metrics.scheduler_runs.labels(job.name, outcome).inc()
        if outcome == "ok":
            self._metrics.scheduler_last_success.labels(job.name).set(finished.timestamp())
            log.info(
                "scheduler: %s ok (run %d) in %.1f s", job.name, run_id, (finished - now).total_seconds()
            )
        else:
            log.warning("scheduler: %s failed (run %d): %s", job.name, run_id, _detail_json(detail)[:500])
        return RunRecord(run_id, job.name, self.instance, now, finished, outcome, detail)

    # ------------------------------------------------------------------ reading
    async def status(self) -> list[JobStatus]:
        """Each job with its latest run and when it is next due."""
        out = []
        async with self._pool.acquire() as conn:
            zones = await self._zones(conn)
            for job in self.jobs:
                row = await conn.fetchrow(_LATEST, job.name)
                last = None
                if row is not None:
                    detail = json.loads(row["detail"]) if row["detail"] else {}
                    last = RunRecord(
                        row["id"],
                        row["job"],
                        row["instance"],
                        row["started_at"],
                        row["finished_at"],
                        row["outcome"],
                        detail,
                    )
                runs = await last_runs(conn, job.name)
                out.append(JobStatus(job, last, due_at(job.trigger, runs, zones, *self._retry)))
        return out
