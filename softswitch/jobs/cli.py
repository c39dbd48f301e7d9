"""`softswitch jobs list` and `softswitch jobs run <job>`: the scheduler's jobs from the
command line, through the same lock and records as the service's scheduler."""

from __future__ import annotations

import asyncio
import getpass
import json
import socket
from datetime import datetime

import asyncpg
import typer

from softswitch.core.clock import clock_from_setting
from softswitch.core.db import create_pool
from softswitch.core.metrics import Metrics
from softswitch.core.settings import Settings, load_settings
from softswitch.jobs.catalogue import all_jobs, build_scheduler
from softswitch.jobs.scheduler import JobStatus, RunRecord, Scheduler
from softswitch.jobs.triggers import SINCE_EVER

jobs_app = typer.Typer(no_args_is_help=True, help="The periodic jobs the service's scheduler runs.")


async def _pool(settings: Settings) -> asyncpg.Pool:
    """A small pool whose statements may take as long as a job's do from the command line."""
    db = settings.database.model_copy(
        update={"pool_min": 1, "command_timeout": max(60.0, settings.database.command_timeout)}
    )
    return await create_pool(settings.model_copy(update={"database": db}))


def _scheduler(settings: Settings, pool: asyncpg.Pool) -> Scheduler:
    clock = clock_from_setting(settings.fixed_now)
    return build_scheduler(settings, pool, clock, Metrics(), every_job=True, instance=_instance())


def _instance() -> str:
    return f"cli:{getpass.getuser()}@{socket.gethostname()}"


def _when(at: datetime | None, now: datetime) -> str:
    if at is None:
        return "-"
    if at == SINCE_EVER or at <= now:
        return "now"
    return at.isoformat(timespec="seconds")


def status_table(rows: list[JobStatus], now: datetime) -> str:
    table = [["JOB", "TRIGGER", "LAST RUN", "OUTCOME", "INSTANCE", "NEXT DUE"]]
    for st in rows:
        last = st.last
        table.append(
            [
                st.job.name,
                st.job.trigger.describe(),
                last.started_at.isoformat(timespec="seconds") if last else "never",
                last.outcome if last else "-",
                last.instance if last else "-",
                _when(st.next_due, now),
            ]
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table)


def _record_dict(r: RunRecord) -> dict[str, object]:
    return {
        "id": r.id,
        "job": r.job,
        "instance": r.instance,
        "started_at": r.started_at.isoformat(),
        "finished_at": r.finished_at.isoformat() if r.finished_at else None,
        "outcome": r.outcome,
        "detail": dict(r.detail),
    }


@jobs_app.command("list")
def jobs_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """Each job: its trigger, its last run (any instance), the outcome and when it is next due."""
    settings = load_settings()

    async def _run() -> tuple[list[JobStatus], datetime]:
        pool = await _pool(settings)
        try:
            scheduler = _scheduler(settings, pool)
            return await scheduler.status(), clock_from_setting(settings.fixed_now).now()
        finally:
            await pool.close()

    rows, now = asyncio.run(_run())
    if as_json:
        out = [
            {
                "job": st.job.name,
                "trigger": st.job.trigger.describe(),
                "last": _record_dict(st.last) if st.last else None,
                "next_due": _when(st.next_due, now),
            }
            for st in rows
        ]
        typer.echo(json.dumps(out, ensure_ascii=False, indent=2, default=str))
    else:
        typer.echo(status_table(rows, now))


@jobs_app.command("run")
def jobs_run(job: str = typer.Argument(..., help="The job's name (see `softswitch jobs list`).")) -> None:
    """Run a job now, due or not, under its lock (refused while another instance runs it);
    the run is recorded like the scheduler's."""
    settings = load_settings()
    names = [j.name for j in all_jobs(settings)]
    if job not in names:
        typer.echo(f"error: no job {job!r} (jobs: {', '.join(names)}) (job)", err=True)
        raise typer.Exit(2)
    user = f"cli:{getpass.getuser()}"

    async def _run() -> RunRecord | None:
        pool = await _pool(settings)
        try:
            return await _scheduler(settings, pool).run_now(job, actor=user)
        finally:
            await pool.close()

    record = asyncio.run(_run())
    if record is None:
        typer.echo(f"error: job {job} is running in another instance now; try again later (job)", err=True)
        raise typer.Exit(1)
    typer.echo(json.dumps(_record_dict(record), ensure_ascii=False, indent=2, default=str))
    if record.outcome != "ok":
        raise typer.Exit(1)
