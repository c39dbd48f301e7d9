"""`softswitch compliance ...`: the compliance rules and complaints from the operator's
shell, through the same service functions as the API (checked and audited the same way).

    softswitch compliance rules list [--tenant N]
    softswitch compliance rules set KIND [--tenant N] [--params JSON] [--warning X]
                                         [--critical Y] [--action A] [--enabled/--disabled]
    softswitch compliance rules reset KIND --tenant N
    softswitch compliance complaints add --tenant N --number ... --callee ... --category ...
    softswitch compliance complaints list --tenant N [--from ... --to ... --number ... --category ...]

`rules set` starts from the rule in force (the tenant's own or the platform's) and changes
only what is given: --params keys replace those keys. `compliance_app` is the group; more
commands (report, lift) join it from their own modules."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

import typer

from provisioning.cli import Json, _fail, _model, run, show
from provisioning.compliance import complaints, rules
from provisioning.compliance.schemas import ComplaintCreate, RuleRead, RuleWrite
from provisioning.engine import Ctx, NotFound

compliance_app = typer.Typer(no_args_is_help=True, help="Compliance: rules (gates, monitors) and complaints.")
rules_app = typer.Typer(no_args_is_help=True, help="Compliance rules: the platform's and a tenant's own.")
complaints_app = typer.Typer(no_args_is_help=True, help="Complaints against an enterprise's calls.")
compliance_app.add_typer(rules_app, name="rules")
compliance_app.add_typer(complaints_app, name="complaints")

Tenant = Annotated[int | None, typer.Option("--tenant", min=1, help="The tenant's id (none: the platform).")]
RequiredTenant = Annotated[int, typer.Option("--tenant", min=1, help="The tenant's id.")]
Kind = Annotated[str, typer.Argument(help="The rule's kind, e.g. calling_hours, callee_frequency.")]
RULE_COLUMNS = ("kind", "params", "warning", "critical", "action", "enabled", "version", "updated_at")
COMPLAINT_COLUMNS = ("id", "number", "callee", "category", "occurred_at", "note", "created_at")


def _when(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        _fail(f"not an ISO 8601 time: {text!r}", option, code=2)
    if value.tzinfo is None:
        _fail(
            f"give --{option.replace('_', '-')} with its UTC offset, e.g. 2024-05-01T10:00+08:00", option, 2
        )
    return value


def _decimal(text: str | None, option: str) -> Decimal | None:
    if text is None:
        return None
    try:
        return Decimal(text)
    except InvalidOperation:
        _fail(f"not a number: {text!r}", option, code=2)


# ---------------------------------------------------------------------------- rules
@rules_app.command("list")
def rules_list(tenant: Tenant = None, as_json: Json = False) -> None:
    """The platform's rules, or with --tenant the tenant's effective ones (SOURCE: its own
    or the platform's)."""
    if tenant is None:
        show(run(rules.list_platform_rules), as_json, RULE_COLUMNS)
    else:
        show(run(rules.effective_rules, tenant), as_json, ("kind", "source", *RULE_COLUMNS[1:]))


@rules_app.command("set")
def rules_set(
    kind: Kind,
    tenant: Tenant = None,
    params: Annotated[
        str | None, typer.Option(help='JSON object; its keys replace the rule\'s, e.g. \'{"end": "22:00"}\'.')
    ] = None,
    warning: Annotated[str | None, typer.Option(help="The warning level (monitors).")] = None,
    critical: Annotated[str | None, typer.Option(help="The critical level (monitors).")] = None,
    action: Annotated[
        str | None, typer.Option(help="At critical: notice, alert, throttle or suspend.")
    ] = None,
    enabled: Annotated[
        bool | None, typer.Option("--enabled/--disabled", help="Switch the rule on or off.")
    ] = None,
    as_json: Json = False,
) -> None:
    """Change the platform's rule of KIND, or with --tenant set the tenant's own (which
    replaces the platform's for it). What is not given stays as in the rule in force."""
    changes: dict[str, Any] = {}
    if params is not None:
        try:
            given = json.loads(params)
        except json.JSONDecodeError as exc:
            _fail(f"--params is not JSON: {exc}", "params", code=2)
        if not isinstance(given, dict):
            _fail("--params must be a JSON object", "params", code=2)
        changes["params"] = given
    for name, value in (
        ("warning", _decimal(warning, "warning")),
        ("critical", _decimal(critical, "critical")),
    ):
        if value is not None:
            changes[name] = value
    if action is not None:
        changes["action"] = action
    if enabled is not None:
        changes["enabled"] = enabled

    async def work(ctx: Ctx) -> RuleRead:
        if tenant is None:
            current: RuleRead = await rules.get_platform_rule(ctx, kind)
            data = _write_model(current, changes)
            return await rules.set_platform_rule(ctx, kind, data, current.version)
        rules.check_kind(kind)
        in_force = {r.kind: r for r in await rules.effective_rules(ctx)}.get(kind)
        if in_force is None:
            raise NotFound(f"no {kind} rule to start from; give the whole rule through the API", "kind")
        data = _write_model(in_force, changes)
        own_version = in_force.version if in_force.source == "tenant" else None
        return await rules.set_tenant_rule(ctx, kind, data, own_version)

    show(run(work, tenant), as_json)


def _write_model(current: RuleRead, changes: dict[str, Any]) -> RuleWrite:
    values: dict[str, Any] = {
        "params": {**current.params, **changes.get("params", {})},
        "warning": changes.get("warning", current.warning),
        "critical": changes.get("critical", current.critical),
        "action": changes.get("action", current.action),
        "enabled": changes.get("enabled", current.enabled),
    }
    return _model(RuleWrite, **values)


@rules_app.command("reset")
def rules_reset(kind: Kind, tenant: RequiredTenant, as_json: Json = False) -> None:
    """Delete the tenant's own rule of KIND: the platform's applies again (shown)."""

    async def work(ctx: Ctx) -> Any:
        rules.check_kind(kind)
        own = {r.kind: r for r in await rules.effective_rules(ctx) if r.source == "tenant"}.get(kind)
        if own is None:
            raise NotFound(f"tenant {tenant} has no {kind} rule of its own", "kind")
        return await rules.reset_tenant_rule(ctx, kind, own.version)

    out = run(work, tenant)
    if out is None:
        typer.echo("(no platform rule of this kind: none applies now)")
    else:
        show(out, as_json)


# ---------------------------------------------------------------------------- complaints
@complaints_app.command("add")
def complaints_add(
    tenant: RequiredTenant,
    number: Annotated[str, typer.Option(help="The enterprise's caller number complained of.")],
    callee: Annotated[str, typer.Option(help="Who complained (the called party).")],
    category: Annotated[str, typer.Option(help="harassment, robocall, one_ring, fraud, caller_id or other.")],
    occurred_at: Annotated[str, typer.Option(help="When the call was made (ISO 8601, with offset).")],
    note: Annotated[str, typer.Option(help="Where the complaint came from, what it says.")] = "",
    as_json: Json = False,
) -> None:
    """Register a complaint against the tenant (the monitors re-evaluate it at once)."""
    data = _model(
        ComplaintCreate,
        number=number,
        callee=callee,
        category=category,
        occurred_at=_when(occurred_at, "occurred_at"),
        note=note,
    )
    show(run(lambda ctx: complaints.register_complaint(ctx, data), tenant), as_json)


@complaints_app.command("list")
def complaints_list(
    tenant: RequiredTenant,
    from_: Annotated[str | None, typer.Option("--from", help="Calls at or after (ISO 8601).")] = None,
    to: Annotated[str | None, typer.Option(help="Calls before (ISO 8601).")] = None,
    number: Annotated[str | None, typer.Option(help="Only complaints of this number.")] = None,
    category: Annotated[str | None, typer.Option(help="Only this category.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 100,
    after: Annotated[int | None, typer.Option(min=0, help="Show complaints after this id.")] = None,
    as_json: Json = False,
) -> None:
    """List the tenant's complaints (by id; page on with --after)."""
    search = complaints.ComplaintSearch(_when(from_, "from"), _when(to, "to"), number, category)
    items, nxt = run(lambda ctx: complaints.list_complaints(ctx, search, limit, after), tenant)
    show(items, as_json, COMPLAINT_COLUMNS)
    if nxt is not None and not as_json:
        typer.echo(f"(more: --after {nxt})", err=True)
