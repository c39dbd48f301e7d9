"""`softswitch compliance report|lift`: what the monitors found and did, and an operator's
lift, from the shell — the same service functions as the API (audited the same way).

    softswitch compliance report --tenant N --from 2026-11-01 --to 2026-11-30 [--json]
    softswitch compliance lift --tenant N [--what suspension|throttle|all] --reason TEXT"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import date
from typing import Annotated

import typer

from provisioning.cli import Json, _fail, run, show
from provisioning.compliance.report import ComplianceReport, compliance_report
from provisioning.compliance.watch import LIFTABLE, operator_lift

RULE_COLUMNS = (
    "rule",
    "source",
    "window_s",
    "warning",
    "critical",
    "action",
    "period_value",
    "peak_value",
    "worst_level",
    "events",
)
RequiredTenant = Annotated[int, typer.Option("--tenant", min=1, help="The tenant's id.")]


def _day(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        _fail(f"not a date (YYYY-MM-DD): {text!r}", option, code=2)


def print_report(r: ComplianceReport) -> None:
    m = r.metrics
    typer.echo(f"tenant {r.tenant_id}  {r.from_date} .. {r.to_date}  ({r.timezone})")
    typer.echo(
        f"outbound calls {m.outbound_calls}  answered {m.answered} ({m.answer_rate})  "
        f"failed rate {m.failed_rate}  average talk {m.avg_talk_s} s"
    )
    typer.echo(
        f"distinct callees {m.distinct_callees}  one-ring {m.one_ring_calls} ({m.one_ring_share})  "
        f"numbers in use {m.caller_numbers_in_use}  busiest number {m.busiest_caller_calls} calls  "
        f"complaints {m.complaints}"
    )
    typer.echo("refused: " + ", ".join(f"{k} {v}" for k, v in m.refused.items()))
    typer.echo("")
    show(r.rules, False, RULE_COLUMNS)
    typer.echo("")
    show(r.actions, False, ("at", "rule", "subject", "level", "value", "threshold", "action", "actor"))
    s = r.state
    typer.echo("")
    typer.echo(
        f"now: suspended {s.suspended_at or '-'} ({s.suspended_rule or '-'})  "
        f"throttle {s.throttle_per_min or '-'}/min ({s.throttled_rule or '-'})  "
        f"last lift {s.lifted_at or '-'} by {s.lifted_by or '-'}"
    )


def register_oversight(app: typer.Typer) -> None:
    """Add `report` and `lift` to the `softswitch compliance` group."""

    @app.command("report")
    def report(
        tenant: RequiredTenant,
        from_: Annotated[str, typer.Option("--from", help="First local day (YYYY-MM-DD).")],
        to: Annotated[str, typer.Option(help="Last local day, included (YYYY-MM-DD).")],
        as_json: Json = False,
    ) -> None:
        """The enterprise's compliance report: metrics beside thresholds, every action."""
        first, last = _day(from_, "from"), _day(to, "to")
        got = run(lambda ctx: compliance_report(ctx, tenant, first, last), tenant)
        if as_json:
            show(got, True)
        else:
            print_report(got)

    @app.command("lift")
    def lift_restriction(
        tenant: RequiredTenant,
        reason: Annotated[str, typer.Option(help="Why (kept in the audit log).")],
        what: Annotated[str, typer.Option(help="suspension, throttle or all.")] = "all",
        as_json: Json = False,
    ) -> None:
        """Lift the tenant's outbound suspension or throttle (audited)."""
        if what not in LIFTABLE:
            _fail(f"--what must be one of {', '.join(LIFTABLE)}", "what", code=2)
        if len(reason.strip()) < 3:
            _fail("give a --reason of at least 3 characters", "reason", code=2)

        done = run(lambda ctx: operator_lift(ctx, tenant, what, reason), tenant)
        out = {**asdict(done), "at": done.at.isoformat()}
        if as_json:
            typer.echo(json.dumps(out, indent=2))
        else:
            for key, value in out.items():
                typer.echo(f"{key:<18} {value}")
