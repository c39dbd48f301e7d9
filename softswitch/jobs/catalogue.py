"""The periodic jobs of the service, each a thin edge over the service function that does
the work (the same one the CLI calls): the billing cycle at each tenant's local day start,
the recordings' and voicemail's retention purges, the onboarding document deadlines, the purge of
outbound attempts past the longest per-callee window and the compliance monitors' sweep."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

import asyncpg

from dialplan.compliance import Rule, outbound_rules
from provisioning.billing_cycle import run_billing_cycle
from provisioning.compliance.watch import load_rules, sweep
from provisioning.onboarding import apply_deadlines
from provisioning.recordings import purge_recordings
from provisioning.voicemail import VoicemailSpool, purge_voicemail
from softswitch.core.clock import Clock
from softswitch.core.metrics import Metrics
from softswitch.core.settings import Settings
from softswitch.jobs.scheduler import Job, JobResult, JobRun, Scheduler
from softswitch.jobs.triggers import Every, LocalDayStart

# Outbound attempts are kept at least this long, whatever the rules' windows.
MIN_ATTEMPTS_RETENTION = timedelta(hours=24)


# ---------------------------------------------------------------------------- billing
async def billing_cycle(run: JobRun) -> JobResult:
    """provisioning.billing_cycle for the tenants whose local day began since the last run
    (all of them after a catch-up: the cycle is idempotent per period)."""
    if not run.zones:
        return JobResult({"zones": [], "tenants": 0})
    async with run.pool.acquire() as conn:
        rows = await conn.fetch(
            # A terminated tenant whose subscriptions still run has a contract to close (its
            # early-termination fee, seed 001): the cycle does that too.
            "SELECT id FROM tenants t WHERE timezone = ANY($1::text[]) AND (state <> 'terminated' "
            "OR EXISTS (SELECT 1 FROM subscriptions s WHERE s.tenant_id = t.id AND s.state <> 'ended')) "
            "ORDER BY id",
            sorted(run.zones),
        )
    ids = [r["id"] for r in rows]
    report = await run_billing_cycle(run.pool, run.now, tenant_ids=ids)
    detail = {
        "zones": sorted(run.zones),
        "tenants": len(report.tenants),
        "ledger_entries": len(report.of("ledger")),
        "notices": len(report.of("notice")),
        "state_changes": len(report.of("state")),
        "errors": {str(k): v for k, v in report.errors.items()},
    }
    return JobResult(detail, ok=not report.errors)


# ---------------------------------------------------------------------------- recordings
def recording_purge(settings: Settings) -> Job:
    async def run_purge(run: JobRun) -> JobResult:
        r = settings.recording
        async with run.pool.acquire() as conn:
            report = await purge_recordings(
                conn,
                run.now,
                settings.asterisk.chroot,
                r.spool,
                batch=r.purge_batch,
                actor=run.actor,
                metrics=run.metrics,
            )
        detail = {k: v for k, v in report.as_dict().items() if k != "ids"}
        return JobResult(detail, ok=not report.errors)

    return Job(
        "recording_purge",
        Every(settings.recording.purge_interval_s),
        run_purge,
        "recordings past their tenant's retention (legal holds stay)",
    )


# ---------------------------------------------------------------------------- voicemail
def voicemail_purge(settings: Settings) -> Job:
    async def run_purge(run: JobRun) -> JobResult:
        v = settings.voicemail
        async with run.pool.acquire() as conn:
            report = await purge_voicemail(
                conn,
                run.now,
                VoicemailSpool(settings.asterisk.chroot, v.spool),
                batch=v.purge_batch,
                actor=run.actor,
                metrics=run.metrics,
            )
        detail = {k: v for k, v in report.as_dict().items() if k != "ids"}
        return JobResult(detail, ok=not report.errors)

    return Job(
        "voicemail_purge",
        Every(settings.voicemail.purge_interval_s),
        run_purge,
        "voicemail messages past their tenant's retention (its local days)",
    )


# ---------------------------------------------------------------------------- onboarding
async def onboarding_deadlines(run: JobRun) -> JobResult:
    report = await apply_deadlines(run.pool, run.now, actor=run.actor)
    return JobResult(report.as_dict(), ok=not report.errors)


# ---------------------------------------------------------------------------- outbound attempts
def attempts_retention(rules: Iterable[Rule]) -> timedelta:
    """How long outbound attempts are kept: the longest per-callee window of any
    callee_frequency rule (the platform's or a tenant's, enabled or not: one switched on
    again counts its whole window), at least MIN_ATTEMPTS_RETENTION. A rule whose windows
    cannot be read raises: better no purge than one shorter than a window."""
    longest = max((outbound_rules({r.kind: r}).longest_window_s for r in rules), default=0)
    return max(timedelta(seconds=longest), MIN_ATTEMPTS_RETENTION)


async def delete_attempts_before(conn: asyncpg.Connection, before: datetime, batch: int) -> int:
    """Delete the attempts older than ``before``, ``batch`` rows per statement (each its
    own short transaction, so the call path's inserts never wait long)."""
    total = 0
    while True:
        status = await conn.execute(
            "DELETE FROM outbound_attempts WHERE id IN "
            "(SELECT id FROM outbound_attempts WHERE at < $1 LIMIT $2)",
            before,
            batch,
        )
        deleted = int(status.split()[-1])
        total += deleted
        if deleted < batch:
            return total


def outbound_attempts_purge(settings: Settings) -> Job:
    async def run_purge(run: JobRun) -> JobResult:
        async with run.pool.acquire() as conn:
            every = await load_rules(conn)
            rules = [r for own in (every.platform, *every.tenants.values()) for r in own.values()]
            keep = attempts_retention(r for r in rules if r.kind == "callee_frequency")
            before = run.now - keep
            deleted = await delete_attempts_before(conn, before, settings.scheduler.attempts_purge_batch)
        return JobResult(
            {"kept_s": int(keep.total_seconds()), "before": before.isoformat(), "deleted": deleted}
        )

    return Job(
        "outbound_attempts_purge",
        Every(settings.scheduler.attempts_purge_interval_s),
        run_purge,
        "outbound attempts older than the longest per-callee window (at least 24 h)",
    )


# ---------------------------------------------------------------------------- compliance
async def compliance_monitors(run: JobRun) -> JobResult:
    """Every tenant with recent outbound calls, complaints or a raised level judged once."""
    return JobResult(await sweep(run.pool, run.now))


# ---------------------------------------------------------------------------- the list
def all_jobs(settings: Settings) -> list[Job]:
    """Every periodic job of the service. A new job is one more entry here."""
    s = settings.scheduler
    return [
        Job(
            "billing_cycle",
            LocalDayStart(),
            billing_cycle,
            "the billing cycle at each tenant's local day start",
        ),
        recording_purge(settings),
        voicemail_purge(settings),
        Job(
            "onboarding_deadlines",
            Every(s.onboarding_interval_s),
            onboarding_deadlines,
            "onboarding documents: reminders 2 and 1 days before, numbers released at 7 days",
        ),
        outbound_attempts_purge(settings),
        Job(
            "compliance_monitors",
            Every(s.monitors_interval_s),
            compliance_monitors,
            "the compliance monitors over every active tenant (beside their run as calls end)",
        ),
    ]


def selected(jobs: Sequence[Job], names: Sequence[str]) -> list[Job]:
    """The jobs named (settings scheduler.jobs), all of them when none is."""
    if not names:
        return list(jobs)
    known = {j.name for j in jobs}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(
            f"scheduler.jobs: no job {', '.join(map(repr, unknown))} (jobs: {', '.join(sorted(known))})"
        )
    return [j for j in jobs if j.name in names]


def build_scheduler(
    settings: Settings,
    pool: asyncpg.Pool,
    clock: Clock,
    metrics: Metrics,
    *,
    every_job: bool = False,
    instance: str = "",
) -> Scheduler:
    """The scheduler of the settings' jobs (``every_job``: all of them, for the CLI)."""
    s = settings.scheduler
    jobs = all_jobs(settings) if every_job else selected(all_jobs(settings), s.jobs)
    return Scheduler(
        pool,
        jobs,
        clock,
        metrics,
        instance=instance or s.instance,
        tick_s=s.tick_s,
        retry_s=s.retry_s,
        retry_max_s=s.retry_max_s,
    )
