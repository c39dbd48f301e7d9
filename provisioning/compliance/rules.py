"""The compliance rules as data (migration 0019): one row per kind for the platform (the
defaults, tenant_id NULL) and optionally one per tenant, which replaces the platform's row
of that kind for that tenant. The call path reloads its snapshot on every change (the
table's trigger NOTIFYs config_changed); the monitors read the same rows.

Who may do what:
  - the platform's rules: operators read and change them;
  - a tenant's rules: operators set and reset (delete) a tenant's own rule of any kind;
    every user of the tenant reads its effective rules (each kind with its value and
    whether it is the tenant's own or the platform's);
  - a tenant's admin may only TIGHTEN: write a rule no looser than the one in force for
    it (see `loosening`), and reset its own rule only when the platform's is no looser.

Every write is audited (entity compliance_rules) with the row before and after, takes the
version one up (optimistic concurrency with If-Match, as elsewhere) and sets updated_at
from the injected clock."""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import asyncpg
from pydantic import ValidationError

from dialplan.compliance import ACTIONS, GATE_KINDS, KINDS, Rule
from dialplan.monitors import throttle_of
from provisioning.compliance.schemas import (
    PARAMS,
    RATIO_KINDS,
    EffectiveRuleRead,
    RuleRead,
    RuleWrite,
)
from provisioning.engine import (
    Ctx,
    Forbidden,
    Invalid,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
    Resource,
    audit,
    authorize,
    db_error,
)
from provisioning.roles import EVERYONE, OPERATORS, TENANT_WRITERS

ENTITY = "compliance_rules"
PLATFORM_RULES = Resource(
    "compliance-rules",
    "compliance_rules",
    RuleRead,
    tenant_scoped=False,
    platform_rows_only=True,
    read_roles=OPERATORS,
    write_roles=OPERATORS,
)
TENANT_RULES = Resource(
    "compliance-rules", "compliance_rules", RuleRead, read_roles=EVERYONE, write_roles=TENANT_WRITERS
)
_SEVERITY = {action: rank for rank, action in enumerate(ACTIONS)}

# How a tenant's admin may move each monitor parameter: "up" (only to a larger value),
# "down" (only smaller) or "same". A longer window counts more (stricter) where the monitor
# counts events; where it measures a share or an average a longer window is neither, so it
# stays. Fewer calls before a monitor judges (min_calls) judge sooner.
_PARAM_DIRECTION: dict[str, dict[str, str]] = {
    # distinct callees of calls that look automated: answer rate below max_answer_rate or
    # average talk below max_avg_talk_s: larger limits count more calls as automated
    "robocall": {"window_s": "up", "max_answer_rate": "up", "max_avg_talk_s": "up", "min_calls": "down"},
    # a longer ring_s counts more abandoned calls as one-ring
    "one_ring": {"window_s": "same", "ring_s": "up", "min_calls": "down"},
    "failed_rate": {"window_s": "same", "min_calls": "down"},
    "avg_duration": {"window_s": "same", "min_calls": "down", "below": "same"},
    "call_frequency": {"window_s": "up"},
    "numbers_in_use": {"window_s": "up"},
    "complaints": {"window_s": "up"},
}


# ---------------------------------------------------------------------------- pure checks
def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise NotFound(f"no compliance rule kind {kind!r} (kinds: {', '.join(KINDS)})", "kind")
    return kind


def _error_field(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc)


def validate_rule(kind: str, data: RuleWrite) -> Rule:
    """The rule `data` describes for `kind`, its params normalised; Invalid names the field
    (params.windows.1, critical, ...) otherwise."""
    check_kind(kind)
    try:
        # JSON and strict: 60 is a number of seconds, "60" or true is not
        params = PARAMS[kind].model_validate_json(json.dumps(data.params), strict=True)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = _error_field(err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise Invalid(f"{kind}: {msg}", f"params.{where}" if where else "params") from None
    normalised = params.model_dump(mode="json", exclude_none=True)
    warning, critical = data.warning, data.critical
    if kind in GATE_KINDS:
        for name, value in (("warning", warning), ("critical", critical)):
            if value is not None:
                raise Invalid(f"{kind} is a gate: it has no {name} level (leave it null)", name)
    else:
        if warning is None:
            raise Invalid(f"{kind} is a monitor: give its warning level", "warning")
        if critical is None:
            raise Invalid(f"{kind} is a monitor: give its critical level", "critical")
        if kind in RATIO_KINDS:
            for name, value in (("warning", warning), ("critical", critical)):
                if value > 1:
                    raise Invalid(f"{kind} levels are shares of calls, 0 to 1, not {value}", name)
        if normalised.get("below"):
            if critical > warning:
                raise Invalid(
                    f"{kind} is reached below its levels: critical ({critical}) must be <= warning "
                    f"({warning})",
                    "critical",
                )
        elif critical < warning:
            raise Invalid(f"critical ({critical}) must be >= warning ({warning})", "critical")
    return Rule(kind, normalised, warning, critical, data.action, data.enabled)


def _minutes(params: Mapping[str, Any]) -> set[int]:
    """The minutes of the local day a calling_hours span lets calls through."""

    def minute(text: str) -> int:
        hh, mm = text.split(":")
        return int(hh) * 60 + int(mm)

    start, end = minute(params["start"]), minute(params["end"])
    if start <= end:
        return set(range(start, end))
    return set(range(start, 24 * 60)) | set(range(end))


def loosening(kind: str, current: Rule | None, new: Rule) -> tuple[str, str] | None:
    """How `new` would be looser than `current`, the rule in force: (field, why), or None
    when `new` is at least as tight. At least as tight means:

    - a rule not in force (none, or disabled) may be replaced by anything; one in force may
      not be disabled;
    - callee_frequency: every current window [s, n] is covered by a new one at least as long
      with no more calls ([s', n'] with s' >= s and n' <= n);
    - calling_hours: the new span lies within the current one (minute by minute, spans past
      midnight included);
    - daily_spend_cap: the new amount is no higher;
    - monitors: the warning and critical levels are reached no later (no higher; no lower
      for avg_duration, reached below its levels), the action is no milder (notice < alert
      < throttle < suspend), a throttle allows no more calls a minute, and each parameter
      moves only as _PARAM_DIRECTION says."""
    if current is None or not current.enabled:
        return None
    if not new.enabled:
        return "enabled", f"{kind} is in force; it may not be switched off"
    cur, nxt = current.params, new.params
    if kind == "callee_frequency":
        for seconds, max_calls in cur.get("windows", ()):
            if not any(s >= seconds and n <= max_calls for s, n in nxt.get("windows", ())):
                return "params.windows", (
                    f"the limit of {max_calls} call(s) per {seconds}s to one callee would be loosened"
                )
        return None
    if kind == "calling_hours":
        if not _minutes(nxt) <= _minutes(cur):
            return "params", f"the hours must lie within {cur['start']}-{cur['end']}"
        return None
    if kind == "daily_spend_cap":
        if Decimal(nxt["amount"]) > Decimal(cur["amount"]):
            return "params.amount", f"the cap may not rise above {cur['amount']}"
        return None
    for name, direction in _PARAM_DIRECTION.get(kind, {}).items():
        before, after = cur.get(name), nxt.get(name)
        if before is None:
            continue
        if (
            (direction == "up" and after < before)
            or (direction == "down" and after > before)
            or (direction == "same" and after != before)
        ):
            need = {"up": "lower than", "down": "higher than", "same": "other than"}[direction]
            return f"params.{name}", f"{name} may not be {need} {before}"
    below = bool(nxt.get("below"))
    for name, before_level, after_level in (
        ("warning", current.warning, new.warning),
        ("critical", current.critical, new.critical),
    ):
        if before_level is None or after_level is None:
            continue
        if (after_level < before_level) if below else (after_level > before_level):
            side = "lower" if below else "higher"
            return name, f"{name} may not be {side} than {before_level}"
    if _SEVERITY[new.action] < _SEVERITY[current.action]:
        return "action", f"the action may not be milder than {current.action}"
    if new.action == current.action == "throttle" and throttle_of(new) > throttle_of(current):
        return "params.throttle_per_min", f"the throttle may not allow more than {throttle_of(current)}/min"
    return None


# ---------------------------------------------------------------------------- rows
def _params(value: Any) -> dict[str, Any]:
    # A dict through the pool's jsonb codec, the JSON text without one; a row written as a
    # JSON string holding the object (text passed through the codec) is read all the same.
    while isinstance(value, str | bytes):
        value = json.loads(value)
    return dict(value)


def read_model(row: Mapping[str, Any]) -> RuleRead:
    return RuleRead.model_validate({**dict(row), "params": _params(row["params"])})


def as_rule(row: RuleRead) -> Rule:
    return Rule(row.kind, row.params, row.warning, row.critical, row.action, row.enabled, row.tenant_id)


async def _rows(conn: asyncpg.Connection, tenant_id: int | None) -> dict[str, RuleRead]:
    rows = await conn.fetch(
        "SELECT * FROM compliance_rules WHERE tenant_id IS NOT DISTINCT FROM $1::bigint", tenant_id
    )
    return {r["kind"]: read_model(r) for r in rows}


def effective_view(platform: Mapping[str, RuleRead], own: Mapping[str, RuleRead]) -> list[EffectiveRuleRead]:
    """Each kind (in KINDS order): the tenant's own row if it has one, else the platform's,
    disabled ones included (they say the kind is off)."""
    out = []
    for kind in KINDS:
        row, source = (own[kind], "tenant") if kind in own else (platform.get(kind), "platform")
        if row is not None:
            out.append(EffectiveRuleRead.model_validate({**row.model_dump(), "source": source}))
    return out


# ---------------------------------------------------------------------------- services
async def list_platform_rules(ctx: Ctx) -> list[RuleRead]:
    ctx.tenant_id = None
    await authorize(ctx, PLATFORM_RULES, write=False)
    rows = await _rows(ctx.conn, None)
    return [rows[k] for k in KINDS if k in rows]


async def get_platform_rule(ctx: Ctx, kind: str) -> RuleRead:
    ctx.tenant_id = None
    await authorize(ctx, PLATFORM_RULES, write=False)
    row = (await _rows(ctx.conn, None)).get(check_kind(kind))
    if row is None:
        raise NotFound(f"the platform has no {kind} rule", "kind")
    return row


async def set_platform_rule(ctx: Ctx, kind: str, data: RuleWrite, if_match: int | None) -> RuleRead:
    """Replace the platform's rule of `kind` (If-Match: the version read)."""
    ctx.tenant_id = None
    await authorize(ctx, PLATFORM_RULES, write=True)
    rule = validate_rule(kind, data)
    return await _write(ctx, None, rule, if_match, check=None)


async def effective_rules(ctx: Ctx) -> list[EffectiveRuleRead]:
    """The tenant's rules (ctx.tenant_id), kind by kind, with where each comes from."""
    await authorize(ctx, TENANT_RULES, write=False)
    assert ctx.tenant_id is not None
    return effective_view(await _rows(ctx.conn, None), await _rows(ctx.conn, ctx.tenant_id))


async def set_tenant_rule(ctx: Ctx, kind: str, data: RuleWrite, if_match: int | None) -> EffectiveRuleRead:
    """Set the tenant's own rule of `kind`, replacing the platform's for it. If-Match: the
    version of the tenant's own row, when it has one (none: the row is created)."""
    await authorize(ctx, TENANT_RULES, write=True)
    assert ctx.tenant_id is not None
    rule = validate_rule(kind, data)
    check = None if ctx.actor.may(OPERATORS) else _tightening
    out = await _write(ctx, ctx.tenant_id, rule, if_match, check)
    return EffectiveRuleRead.model_validate({**out.model_dump(), "source": "tenant"})


async def reset_tenant_rule(ctx: Ctx, kind: str, if_match: int | None) -> EffectiveRuleRead | None:
    """Delete the tenant's own rule of `kind`: the platform's applies again (returned; None
    when the platform has none). A tenant's admin may reset only to a platform rule no
    looser than its own."""
    await authorize(ctx, TENANT_RULES, write=True)
    assert ctx.tenant_id is not None
    check_kind(kind)
    if if_match is None:
        raise PreconditionRequired("send If-Match with the version (ETag) you read", "If-Match")
    try:
        async with ctx.conn.transaction():
            before = await _locked(ctx.conn, ctx.tenant_id, kind)
            if before is None:
                raise NotFound(f"tenant {ctx.tenant_id} has no {kind} rule of its own", "kind")
            _match(before, if_match)
            platform = (await _rows(ctx.conn, None)).get(kind)
            if not ctx.actor.may(OPERATORS):
                why = (
                    loosening(kind, as_rule(before), as_rule(platform))
                    if platform is not None
                    else ("kind", f"without it no {kind} rule would apply")
                )
                if why is not None:
                    raise Forbidden(f"resetting {kind} would loosen it: {why[1]}; ask the operator", why[0])
            await ctx.conn.execute("DELETE FROM compliance_rules WHERE id = $1", before.id)
            await audit(ctx, ENTITY, before.id, "delete", before, None, ctx.tenant_id)
    except asyncpg.PostgresError as exc:
        raise db_error(exc) from exc
    if platform is None:
        return None
    return EffectiveRuleRead.model_validate({**platform.model_dump(), "source": "platform"})


async def _tightening(ctx: Ctx, kind: str, new: Rule) -> None:
    """A tenant's admin: the new rule must be no looser than the one in force for it."""
    assert ctx.tenant_id is not None
    current = (await _rows(ctx.conn, ctx.tenant_id)).get(kind) or (await _rows(ctx.conn, None)).get(kind)
    why = loosening(kind, as_rule(current) if current else None, new)
    if why is not None:
        field, reason = why
        raise Forbidden(f"a tenant may only tighten its rules: {reason}", field)


async def _locked(conn: asyncpg.Connection, tenant_id: int | None, kind: str) -> RuleRead | None:
    row = await conn.fetchrow(
        "SELECT * FROM compliance_rules WHERE tenant_id IS NOT DISTINCT FROM $1::bigint AND kind = $2 "
        "FOR UPDATE",
        tenant_id,
        kind,
    )
    return read_model(row) if row is not None else None


def _match(before: RuleRead, if_match: int) -> None:
    if before.version != if_match:
        raise PreconditionFailed(
            f"the {before.kind} rule is at version {before.version}, not {if_match}", "If-Match"
        )


async def _write(ctx: Ctx, tenant_id: int | None, rule: Rule, if_match: int | None, check: Any) -> RuleRead:
    now = ctx.clock.now()
    try:
        async with ctx.conn.transaction():
            before = await _locked(ctx.conn, tenant_id, rule.kind)
            if before is not None:
                if if_match is None:
                    raise PreconditionRequired(
                        f"the {rule.kind} rule exists: send If-Match with the version (ETag) you read",
                        "If-Match",
                    )
                _match(before, if_match)
            elif if_match is not None:
                raise PreconditionFailed(
                    f"there is no {rule.kind} rule of this scope to match; send no If-Match to create it",
                    "If-Match",
                )
            if check is not None:
                await check(ctx, rule.kind, rule)
            values = (json.dumps(rule.params), rule.warning, rule.critical, rule.action, rule.enabled, now)
            if before is None:
                row = await ctx.conn.fetchrow(
                    "INSERT INTO compliance_rules (tenant_id, kind, params, warning, critical, action, "
                    "enabled, updated_at) VALUES ($1, $2, $3::text::jsonb, $4, $5, $6, $7, $8) RETURNING *",
                    tenant_id,
                    rule.kind,
                    *values,
                )
            else:
                row = await ctx.conn.fetchrow(
                    "UPDATE compliance_rules SET params = $2::text::jsonb, warning = $3, critical = $4, "
                    "action = $5, enabled = $6, updated_at = $7, version = version + 1 "
                    "WHERE id = $1 RETURNING *",
                    before.id,
                    *values,
                )
            assert row is not None
            out = read_model(row)
            await audit(ctx, ENTITY, out.id, "create" if before is None else "update", before, out, tenant_id)
            return out
    except asyncpg.PostgresError as exc:
        raise db_error(exc) from exc
