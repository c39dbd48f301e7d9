"""The development tooling's command: the local stack (PostgreSQL, Asterisk, FreeSWITCH)
and the demo.

.venv/bin/python -m scripts.devstack stack up [--cluster]|down|status|restart-asterisk
.venv/bin/python -m scripts.devstack demo seed|run
"""

from __future__ import annotations

import asyncio
import json

import typer

from scripts.devstack.demo import place_demo_calls, seed, seed_users
from scripts.devstack.edge import KamailioEdge
from scripts.devstack.stack import ComponentStatus, LocalStack, exclusive_use
from softswitch.cli import configure_logging
from softswitch.core.db import connect
from softswitch.core.settings import load_settings
from softswitch.service import run_service

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
stack_app = typer.Typer(no_args_is_help=True, help="The local PostgreSQL + Asterisk stack.")
demo_app = typer.Typer(no_args_is_help=True, help="Demo data and demo calls.")
app.add_typer(stack_app, name="stack")
app.add_typer(demo_app, name="demo")


@stack_app.command("up")
def stack_up(
    cluster: bool = typer.Option(
        False, "--cluster", help="also the SIP edge (Kamailio) before the engines (README: Cluster layout)"
    ),
) -> None:
    """Start PostgreSQL, Asterisk and FreeSWITCH (idempotent; re-renders their config).
    Waits while a test session or benchmark holds the stack."""
    settings = load_settings()
    with exclusive_use(settings):
        st = LocalStack(settings)
        st.up()
        if cluster:
            KamailioEdge(st).up()
    stack_status(as_json=False)


@stack_app.command("down")
def stack_down() -> None:
    """Stop Asterisk and PostgreSQL by their recorded PIDs (once no one else holds the stack)."""
    settings = load_settings()
    with exclusive_use(settings):
        st = LocalStack(settings)
        KamailioEdge(st).down()
        st.down()
    stack_status(as_json=False)


@stack_app.command("restart-asterisk")
def stack_restart_asterisk() -> None:
    settings = load_settings()
    with exclusive_use(settings):
        st = LocalStack(settings)
        st.asterisk_down()
        st.asterisk_up()
    stack_status(as_json=False)


@stack_app.command("status")
def stack_status(as_json: bool = typer.Option(False, "--json")) -> None:
    st = LocalStack(load_settings())
    rows = st.status()
    edge = KamailioEdge(st)
    pid = edge.pid()
    if pid is not None or edge.installed():
        e = st.s.edge
        detail = f"kamailio sip={e.host}:{e.port} (--cluster)"
        rows.append(ComponentStatus("edge", pid is not None, pid, detail))
    if as_json:
        typer.echo(json.dumps([r.__dict__ for r in rows]))
        return
    for r in rows:
        state = f"running pid={r.pid}" if r.running else "stopped"
        typer.echo(f"{r.name:<11} {state:<20} {r.detail}")


@demo_app.command("seed")
def demo_seed() -> None:
    """Load the demo enterprises and numbers (idempotent)."""

    async def _run() -> None:
        conn = await connect(load_settings())
        try:
            await seed(conn)
            await seed_users(conn)
        finally:
            await conn.close()

    asyncio.run(_run())
    typer.echo("demo data loaded")


@demo_app.command("run")
def demo_run() -> None:
    """Run the service, place the demo calls through Asterisk, then keep serving."""
    settings = load_settings()
    configure_logging(settings.log_level)
    with exclusive_use(settings):  # tests and benchmarks wait while the demo runs
        run_service(settings, after_start=place_demo_calls)


if __name__ == "__main__":
    app()
