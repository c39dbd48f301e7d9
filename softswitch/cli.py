"""The `softswitch` command: serve, database migrations, the local stack, demo data."""

from __future__ import annotations

import asyncio
import getpass
import json
import logging
from datetime import datetime
from typing import Annotated

import typer

from softswitch.settings import Settings, load_settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
stack_app = typer.Typer(no_args_is_help=True, help="The local PostgreSQL + Asterisk stack.")
demo_app = typer.Typer(no_args_is_help=True, help="Demo data and demo calls.")
billing_app = typer.Typer(no_args_is_help=True, help="The billing cycle (rent, minimums, fees, life cycle).")
app.add_typer(db_app, name="db")
app.add_typer(stack_app, name="stack")
app.add_typer(demo_app, name="demo")
app.add_typer(billing_app, name="billing")
recordings_app = typer.Typer(no_args_is_help=True, help="Call recordings (retention).")
app.add_typer(recordings_app, name="recordings")


def _operator_commands() -> None:
    """The operator's daily tasks (tenants, numbers, extensions, money, calls, users)."""
    from provisioning.cli import register

    register(app)


_operator_commands()


def _logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@app.command()
def serve() -> None:
    """Run the control plane: FastAGI server, AMI client, HTTP (/healthz /readyz /metrics)."""
    from softswitch.service import run_service

    settings = load_settings()
    _logging(settings.log_level)
    run_service(settings)


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply pending SQL migrations (recorded in schema_migrations)."""
    from softswitch.db import migrate_and_grant

    done = asyncio.run(migrate_and_grant(load_settings()))
    for mig in done:
        typer.echo(f"applied {mig.version:04d}_{mig.name}")
    typer.echo(f"{len(done)} migration(s) applied")


@stack_app.command("up")
def stack_up() -> None:
    """Start PostgreSQL and Asterisk (idempotent; re-renders Asterisk's config)."""
    from softswitch.stack import LocalStack

    LocalStack(load_settings()).up()
    stack_status(as_json=False)


@stack_app.command("down")
def stack_down() -> None:
    """Stop Asterisk and PostgreSQL by their recorded PIDs."""
    from softswitch.stack import LocalStack

    LocalStack(load_settings()).down()
    stack_status(as_json=False)


@stack_app.command("restart-asterisk")
def stack_restart_asterisk() -> None:
    from softswitch.stack import LocalStack

    st = LocalStack(load_settings())
    st.asterisk_down()
    st.asterisk_up()
    stack_status(as_json=False)


@stack_app.command("status")
def stack_status(as_json: bool = typer.Option(False, "--json")) -> None:
    from softswitch.stack import LocalStack

    rows = LocalStack(load_settings()).status()
    if as_json:
        typer.echo(json.dumps([r.__dict__ for r in rows]))
        return
    for r in rows:
        state = f"running pid={r.pid}" if r.running else "stopped"
        typer.echo(f"{r.name:<11} {state:<20} {r.detail}")


@demo_app.command("seed")
def demo_seed() -> None:
    """Load the demo enterprises and numbers (idempotent)."""
    from softswitch.db import connect
    from softswitch.demo import seed

    async def _run() -> None:
        conn = await connect(load_settings())
        try:
            await seed(conn)
        finally:
            await conn.close()

    asyncio.run(_run())
    typer.echo("demo data loaded")


@demo_app.command("run")
def demo_run() -> None:
    """Run the service, place the demo calls through Asterisk, then keep serving."""
    from softswitch.demo import place_demo_calls
    from softswitch.service import run_service
    from softswitch.stack import exclusive_use

    settings = load_settings()
    _logging(settings.log_level)
    with exclusive_use(settings):  # tests and benchmarks wait while the demo runs
        run_service(settings, after_start=place_demo_calls)


def _moment(at: str, settings: Settings) -> datetime:
    """--at (ISO 8601 with a UTC offset), or the service clock's now."""
    from softswitch.clock import clock_from_setting

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
    from softswitch.billing_cycle import CycleReport, run_billing_cycle
    from softswitch.db import connect

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
    from softswitch.db import connect
    from softswitch.recordings import PurgeReport, purge_recordings

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
