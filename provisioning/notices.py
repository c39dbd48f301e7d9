"""The platform's notices (the outbox) as the operator reads them: newest first, across
every tenant, with delivery state. Tenants read their own through the NOTICES resource."""

from __future__ import annotations

from typing import Any

from provisioning.engine import Ctx, Forbidden
from provisioning.roles import OPERATORS


async def platform_notices(
    ctx: Ctx, kind: str | None = None, limit: int = 50, before_id: int | None = None
) -> tuple[list[dict[str, Any]], int | None]:
    """One page of notices, newest first, each with its tenant's name; the second value is
    the `before_id` of the next (older) page, or None."""
    if not ctx.actor.may(OPERATORS):
        raise Forbidden("only operators read every tenant's notices")
    rows = await ctx.conn.fetch(
        """SELECT o.id, o.tenant_id, t.name AS tenant_name, o.kind, o.payload::text AS payload,
                  o.created_at, o.delivered_at
           FROM outbox o LEFT JOIN tenants t ON t.id = o.tenant_id
           WHERE ($1::text IS NULL OR o.kind = $1) AND ($2::bigint IS NULL OR o.id < $2)
           ORDER BY o.id DESC LIMIT $3""",
        kind or None,
        before_id,
        limit + 1,
    )
    items = [dict(r) for r in rows[:limit]]
    return items, (items[-1]["id"] if len(rows) > limit else None)


async def notice_kinds(ctx: Ctx) -> list[str]:
    if not ctx.actor.may(OPERATORS):
        raise Forbidden("only operators read every tenant's notices")
    return [r["kind"] for r in await ctx.conn.fetch("SELECT DISTINCT kind FROM outbox ORDER BY kind")]
