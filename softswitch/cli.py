"""The `softswitch` command: serve, database migrations, billing and retention jobs, and
the operator's daily tasks. (The local development stack and the demo are
`python -m scripts.devstack`: development tooling, not the runtime.)"""

from __future__ import annotations

import asyncio
import getpass
import json
import logging
from datetime import datetime
from typing import Annotated

import typer

from provisioning.backup_cli import register_backup
from provisioning.billing_cycle import CycleReport, run_billing_cycle
from provisioning.cli import register
from provisioning.compliance.cli import compliance_app
from provisioning.compliance.oversight_cli import register_oversight
from provisioning.notify.cli import notices_app
from provisioning.recordings import PurgeReport, purge_recordings
from softswitch.core.clock import clock_from_setting
from softswitch.core.db import connect, migrate_and_grant
from softswitch.core.settings import Settings, load_settings
from softswitch.jobs.cli import jobs_app
from softswitch.service import run_service

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
db_app = typer.Typer(no_args_is_help=True, help="Database schema, backup and restore.")
register_backup(db_app)
billing_app = typer.Typer(no_args_is_help=True, help="The billing cycle (rent, minimums, fees, life cycle).")
app.add_typer(db_app, name="db")
app.add_typer(billing_app, name="billing")
recordings_app = typer.Typer(no_args_is_help=True, help="Call recordings (retention).")
app.add_typer(recordings_app, name="recordings")
app.add_typer(jobs_app, name="jobs")


def _operator_commands() -> None:
    """The operator's daily tasks (tenants, numbers, extensions, money, calls, users)."""

    register(app)
    register_oversight(compliance_app)
    app.add_typer(compliance_app, name="compliance")
    app.add_typer(notices_app, name="notices")


_operator_commands()


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@app.command()
def serve() -> None:
    """Run the control plane: FastAGI server, AMI client, HTTP (/healthz /readyz /metrics)."""

    settings = load_settings()
    configure_logging(settings.log_level)
    run_service(settings)


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply pending SQL migrations (recorded in schema_migrations)."""

    done = asyncio.run(migrate_and_grant(load_settings()))
    for mig in done:
        typer.echo(f"applied {mig.version:04d}_{mig.name}")
    typer.echo(f"{len(done)} migration(s) applied")


def _moment(at: str, settings: Settings) -> datetime:
    """--at (ISO 8601 with a UTC offset), or the service clock's now."""

    try:
        now = datetime.fromisoformat(at) if at else clock_from_setting(settings.fixed_now).now()
    except ValueError as exc:
        typer.echo(f"error: {exc} (--at)", err=True)
        raise typer.Exit(2) from None
    if now.tzinfo is None:
        typer.echo("error: --at needs a UTC offset, e.g. 2026-12-01T00:05+08:00 (--at)", err=True)
        raise typer.Exit(2)
    return now


@billing_app.command("run")
def billing_run(
    at: str = typer.Option("", "--at", help="Run as of this ISO 8601 time (default: now)."),
    tenant: Annotated[
        list[int] | None, typer.Option("--tenant", help="Only these tenants (repeatable).")
    ] = None,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Run the billing cycle once (idempotent: re-running the same period changes nothing)."""

    settings = load_settings()
    now = _moment(at, settings)

    async def _run() -> CycleReport:
        conn = await connect(settings)
        try:
            return await run_billing_cycle(conn, now, tenant_ids=tenant or None)
        finally:
            await conn.close()

    report = asyncio.run(_run())
    typer.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=2) if as_json else report.as_table())
    if report.errors:
        raise typer.Exit(1)


@recordings_app.command("purge")
def recordings_purge(
    at: str = typer.Option("", "--at", help="Purge as of this ISO 8601 time (default: now)."),
    tenant: Annotated[
        list[int] | None, typer.Option("--tenant", help="Only these tenants (repeatable).")
    ] = None,
) -> None:
    """Delete recordings past their tenant's retention (legal holds stay; idempotent)."""

    settings = load_settings()
    now = _moment(at, settings)

    async def _run() -> PurgeReport:
        conn = await connect(settings)
        try:
            r = settings.recording
            return await purge_recordings(
                conn,
                now,
                settings.asterisk.chroot,
                r.spool,
                batch=r.purge_batch,
                tenant_ids=tenant or None,
                actor=f"cli:{getpass.getuser()}",
            )
        finally:
            await conn.close()

    report = asyncio.run(_run())
    typer.echo(json.dumps(report.as_dict(), indent=2))
    if report.errors:
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
