"""Complaints against an enterprise's outbound calls (MISSION.md "Compliance duties":
complaint volume per enterprise). They come from carriers and regulators, so operators
register them; the tenant's own users read them, the complainant's number masked
(138****8000): an enterprise is not handed the number of the person who complained.

The number complained of must be the tenant's: one of its numbers (any state), or a
caller ID its outbound calls presented (outbound_attempts), so a number released since
still counts against the enterprise that used it. Anything else is refused (422 naming
`number`): a complaint counted against the wrong enterprise could suspend it.

Registering one NOTIFYs compliance_complaint with the tenant's id, in the same
transaction, so the compliance monitors re-evaluate that tenant at once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from provisioning.compliance.schemas import ComplaintCreate, ComplaintRead
from provisioning.engine import (
    Ctx,
    Invalid,
    NotFound,
    Resource,
    audit,
    authorize,
    db_error,
    keyset_page,
)
from provisioning.roles import EVERYONE, OPERATORS
from softswitch.core.masking import mask_number

ENTITY = "complaints"
CHANNEL = "compliance_complaint"
COMPLAINTS = Resource("complaints", "complaints", ComplaintRead, read_roles=EVERYONE, write_roles=OPERATORS)


@dataclass(frozen=True, slots=True)
class ComplaintSearch:
    """occurred_at in [since, until); number and category exactly."""

    since: datetime | None = None
    until: datetime | None = None
    number: str | None = None
    category: str | None = None


def present(ctx: Ctx, row: Any) -> ComplaintRead:
    out = ComplaintRead.model_validate(dict(row))
    if not ctx.actor.is_operator:
        out = out.model_copy(update={"callee": mask_number(out.callee)})
    return out


async def _tenant_used(conn: asyncpg.Connection, tenant_id: int, number: str) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM numbers WHERE tenant_id = $1 AND number = $2) "
            "OR EXISTS (SELECT 1 FROM outbound_attempts WHERE tenant_id = $1 AND caller_id = $2)",
            tenant_id,
            number,
        )
    )


async def register_complaint(ctx: Ctx, data: ComplaintCreate) -> ComplaintRead:
    """Record a complaint against the tenant (ctx.tenant_id); operators only."""
    await authorize(ctx, COMPLAINTS, write=True)
    assert ctx.tenant_id is not None
    now = ctx.clock.now()
    if data.occurred_at > now:
        raise Invalid(f"occurred_at {data.occurred_at.isoformat()} is in the future", "occurred_at")
    if not await _tenant_used(ctx.conn, ctx.tenant_id, data.number):
        raise Invalid(
            f"{mask_number(data.number)} is not a number of tenant {ctx.tenant_id} nor a caller ID "
            "its outbound calls presented",
            "number",
        )
    try:
        async with ctx.conn.transaction():
            row = await ctx.conn.fetchrow(
                "INSERT INTO complaints (tenant_id, number, callee, category, occurred_at, note, created_at, "
                "created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *",
                ctx.tenant_id,
                data.number,
                data.callee,
                data.category,
                data.occurred_at,
                data.note,
                now,
                ctx.actor.user_id,
            )
            assert row is not None
            out = ComplaintRead.model_validate(dict(row))
            # the audit log is the tenant's to read: the complainant stays masked there too
            logged = out.model_copy(update={"callee": mask_number(out.callee)})
            await audit(ctx, ENTITY, out.id, "create", None, logged, ctx.tenant_id)
            await ctx.conn.execute("SELECT pg_notify($1, $2)", CHANNEL, str(ctx.tenant_id))
            return out
    except asyncpg.PostgresError as exc:
        raise db_error(exc) from exc


async def list_complaints(
    ctx: Ctx, search: ComplaintSearch, limit: int, after: int | None
) -> tuple[list[ComplaintRead], int | None]:
    """The tenant's complaints, by id, paged like every list (next_after)."""
    await authorize(ctx, COMPLAINTS, write=False)
    clauses: list[tuple[str, Any]] = [("tenant_id = {}", ctx.tenant_id)]
    if search.since is not None:
        clauses.append(("occurred_at >= {}", search.since))
    if search.until is not None:
        clauses.append(("occurred_at < {}", search.until))
    if search.number is not None:
        clauses.append(("number = {}", search.number))
    if search.category is not None:
        clauses.append(("category = {}", search.category))
    rows, next_after = await keyset_page(ctx.conn, "complaints", clauses, limit, after)
    return [present(ctx, r) for r in rows], next_after


async def get_complaint(ctx: Ctx, complaint_id: int) -> ComplaintRead:
    await authorize(ctx, COMPLAINTS, write=False)
    row = await ctx.conn.fetchrow(
        "SELECT * FROM complaints WHERE id = $1 AND tenant_id = $2", complaint_id, ctx.tenant_id
    )
    if row is None:
        raise NotFound(f"complaint {complaint_id} not found", "id")
    return present(ctx, row)


async def complaints_in_window(
    conn: asyncpg.Connection, tenant_id: int, since: datetime, until: datetime
) -> int:
    """Complaints against the tenant about calls made in [since, until) (occurred_at: the
    enterprise's conduct in the window, whenever the complaint reached us)."""
    count = await conn.fetchval(
        "SELECT count(*) FROM complaints WHERE tenant_id = $1 AND occurred_at >= $2 AND occurred_at < $3",
        tenant_id,
        since,
        until,
    )
    return int(count)
