"""Numbers: a platform pool, assignment to a tenant, and the life cycle
reserved -> pending_approval -> active <-> suspended -> released (with a cool-down before
a released number can be assigned again). A number is unusable until approved, and an
operator approves it only when the tenant's onboarding documents are approved."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import asyncpg

from provisioning.engine import (
    Conflict,
    Ctx,
    Forbidden,
    Invalid,
    NotFound,
    Resource,
    Values,
    audit,
    authorize,
    db_error,
    present,
)
from provisioning.roles import OPERATORS, TENANT_WRITERS
from provisioning.rules import NUMBER_COOLDOWN, next_number_state
from provisioning.schemas import NumberCreate, NumberRead, NumberRoutingUpdate

# Who may take each step: a tenant submits its reserved number for approval; the rest is
# the operator's.
ACTION_ROLES = {
    "submit": TENANT_WRITERS,
    "approve": OPERATORS,
    "suspend": OPERATORS,
    "resume": OPERATORS,
    "release": OPERATORS,
}


async def _number_routing(ctx: Ctx, values: Values, before: Mapping[str, Any] | None) -> Values:
    for key, table in (("time_policy_id", "time_policies"), ("region_policy_id", "region_policies")):
        if values.get(key) is not None and not await ctx.conn.fetchval(
            f"SELECT 1 FROM {table} WHERE id = $1 AND tenant_id = $2", values[key], ctx.tenant_id
        ):
            raise Invalid(f"{key} {values[key]} is not a policy of this tenant", key)
    return values


# Numbers are assigned and moved through their life cycle by their own actions; a tenant's
# admin sets how they route.
TENANT_NUMBERS = Resource(
    "numbers",
    "numbers",
    NumberRead,
    None,
    NumberRoutingUpdate,
    deletable=False,
    filters=("state", "kind"),
    prepare=_number_routing,
)


async def assign_number(ctx: Ctx, data: NumberCreate) -> NumberRead:
    """Give the tenant a number: from the pool if it is there and out of its cool-down,
    else a new one. It starts reserved."""
    res = TENANT_NUMBERS
    await authorize(ctx, res, write=True)
    if not ctx.actor.may(OPERATORS):
        raise Forbidden("only operators assign numbers")
    now = ctx.clock.now()
    try:
        async with ctx.conn.transaction():
            row = await ctx.conn.fetchrow("SELECT * FROM numbers WHERE number = $1 FOR UPDATE", data.number)
            if row is None:
                row = await ctx.conn.fetchrow(
                    "INSERT INTO numbers (number, kind, tenant_id, state) VALUES ($1, $2, $3, 'reserved') "
                    "RETURNING *",
                    data.number,
                    data.kind,
                    ctx.tenant_id,
                )
            else:
                if row["tenant_id"] is not None:
                    raise Conflict(f"number {data.number} is already assigned", "number")
                if row["available_after"] is not None and row["available_after"] > now:
                    raise Conflict(
                        f"number {data.number} is cooling down until {row['available_after'].isoformat()}",
                        "number",
                    )
                row = await ctx.conn.fetchrow(
                    "UPDATE numbers SET tenant_id = $2, kind = $3, state = 'reserved', released_at = NULL, "
                    "available_after = NULL, approved_at = NULL, version = version + 1 "
                    "WHERE id = $1 RETURNING *",
                    row["id"],
                    ctx.tenant_id,
                    data.kind,
                )
            assert row is not None
            out = present(res, row)
            await audit(ctx, "numbers", row["id"], "assign", None, out)
            return out  # type: ignore[return-value]
    except asyncpg.PostgresError as exc:
        raise db_error(exc) from exc


async def missing_documents(conn: asyncpg.Connection, tenant_id: int) -> list[str]:
    rows = await conn.fetch(
        "SELECT kind FROM tenant_documents WHERE tenant_id = $1 AND status <> 'approved' ORDER BY kind",
        tenant_id,
    )
    return [r["kind"] for r in rows]


async def number_action(ctx: Ctx, number_id: int, action: str) -> NumberRead:
    res = TENANT_NUMBERS
    await authorize(ctx, res, write=False)
    if action not in ACTION_ROLES:
        raise NotFound(f"no action {action!r} on numbers", "action")
    if not ctx.actor.may(ACTION_ROLES[action]):
        raise Forbidden(f"role {ctx.actor.role.value} may not {action} a number")
    async with ctx.conn.transaction():
        before = await ctx.conn.fetchrow(
            "SELECT * FROM numbers WHERE id = $1 AND tenant_id = $2 FOR UPDATE", number_id, ctx.tenant_id
        )
        if before is None:
            raise NotFound(f"number {number_id} not found", "id")
        target = next_number_state(action, before["state"])
        if target is None:
            raise Conflict(f"a {before['state']} number cannot be {action}d", "state")
        if action == "approve":
            missing = await missing_documents(ctx.conn, before["tenant_id"])
            if missing:
                raise Invalid("onboarding documents not approved yet: " + ", ".join(missing), "documents")
            tenant_state = await ctx.conn.fetchval(
                "SELECT state FROM tenants WHERE id = $1", before["tenant_id"]
            )
            if tenant_state != "active":
                raise Conflict(f"the tenant is {tenant_state}", "tenant_id")
        now = ctx.clock.now()
        if target == "released":
            row = await _release(ctx, number_id, now)
        else:
            stamp = ", approved_at = $3" if action == "approve" else ""
            params = [number_id, target] + ([now] if action == "approve" else [])
            row = await ctx.conn.fetchrow(
                f"UPDATE numbers SET state = $2, version = version + 1{stamp} WHERE id = $1 RETURNING *",
                *params,
            )
        assert row is not None
        out = present(res, row)
        await audit(ctx, "numbers", number_id, action, present(res, before), out, before["tenant_id"])
        return out  # type: ignore[return-value]


async def _release(ctx: Ctx, number_id: int, now) -> asyncpg.Record:  # type: ignore[no-untyped-def]
    cooldown: timedelta = NUMBER_COOLDOWN
    await ctx.conn.execute("DELETE FROM destination_bindings WHERE number_id = $1", number_id)
    await ctx.conn.execute("DELETE FROM number_pins WHERE number_id = $1", number_id)
    return await ctx.conn.fetchrow(
        "UPDATE numbers SET state = 'released', tenant_id = NULL, released_at = $2, "
        "available_after = $3, version = version + 1 WHERE id = $1 RETURNING *",
        number_id,
        now,
        now + cooldown,
    )


async def release_all_numbers(ctx: Ctx, tenant_id: int) -> int:
    now = ctx.clock.now()
    ids = await ctx.conn.fetch(
        "SELECT id FROM numbers WHERE tenant_id = $1 AND state <> 'released' FOR UPDATE", tenant_id
    )
    for r in ids:
        await _release(ctx, r["id"], now)
    return len(ids)
