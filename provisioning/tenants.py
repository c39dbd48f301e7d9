"""Enterprises: onboarding rules (forbidden categories, required documents and their
7-day deadline), and state changes with their side effects on SIP accounts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg

from provisioning.engine import (
    Conflict,
    Ctx,
    Forbidden,
    Invalid,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
    Values,
    audit,
    db_error,
    keyset_page,
)
from provisioning.numbers import release_all_numbers
from provisioning.roles import OPERATORS
from provisioning.rules import (
    category_refusal,
    deadline_state,
    documents_due,
    hash_pin,
    mask_id_number,
    required_documents,
)
from provisioning.schemas import TenantCreate, TenantRead, TenantUpdate
from provisioning.sip import sync_tenant_accounts

TENANT_MASKS = {"legal_person_id_number": mask_id_number}


def present_tenant(row: Mapping[str, Any]) -> TenantRead:
    data = dict(row)
    data["legal_person_id_number"] = mask_id_number(data["legal_person_id_number"])
    return TenantRead.model_validate(data)


def _check_category(values: Mapping[str, Any], before: Mapping[str, Any] | None) -> None:
    merged = {**(before or {}), **values}
    refusal = category_refusal(
        merged.get("business_category", "general"), bool(merged.get("after_sales_line", False))
    )
    if refusal:
        raise Invalid(refusal, "business_category")


async def _row(ctx: Ctx, tenant_id: int, for_update: bool = False) -> asyncpg.Record:
    if not ctx.actor.sees_tenant(tenant_id):
        raise NotFound(f"tenant {tenant_id} not found", "tenant_id")
    lock = " FOR UPDATE" if for_update else ""
    row = await ctx.conn.fetchrow(f"SELECT * FROM tenants WHERE id = $1{lock}", tenant_id)
    if row is None:
        raise NotFound(f"tenant {tenant_id} not found", "tenant_id")
    return row


async def create_tenant(ctx: Ctx, data: TenantCreate) -> TenantRead:
    if not ctx.actor.may(OPERATORS):
        raise Forbidden("only operators create tenants")
    values: Values = data.model_dump()
    _check_category(values, None)
    try:
        async with ctx.conn.transaction():
            cols = ", ".join(values)
            marks = ", ".join(f"${i}" for i in range(1, len(values) + 1))
            row = await ctx.conn.fetchrow(
                f"INSERT INTO tenants ({cols}) VALUES ({marks}) RETURNING *", *values.values()
            )
            assert row is not None
            due = documents_due(row["paid_at"])
            for kind in required_documents(row["entity_kind"], row["business_category"]):
                await ctx.conn.execute(
                    "INSERT INTO tenant_documents (tenant_id, kind, due_at) VALUES ($1, $2, $3)",
                    row["id"],
                    kind,
                    due,
                )
            await ctx.conn.execute("INSERT INTO accounts (tenant_id) VALUES ($1)", row["id"])
            out = present_tenant(row)
            await audit(ctx, "tenants", row["id"], "create", None, out, row["id"])
            return out
    except asyncpg.PostgresError as exc:
        raise db_error(exc) from exc


async def list_tenants(
    ctx: Ctx, limit: int, after: int | None, state: str | None, name: str | None = None
) -> tuple[list[TenantRead], int | None]:
    """`name`: part of the name, any case (the console's search box)."""
    clauses: list[tuple[str, Any]] = []
    if not ctx.actor.is_operator:
        clauses.append(("id = {}", ctx.actor.tenant_id))
    if state:
        clauses.append(("state = {}", state))
    if name:
        escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        clauses.append(("name ILIKE {}", f"%{escaped}%"))
    rows, next_after = await keyset_page(ctx.conn, "tenants", clauses, limit, after)
    return [present_tenant(r) for r in rows], next_after


async def get_tenant(ctx: Ctx, tenant_id: int) -> TenantRead:
    return present_tenant(await _row(ctx, tenant_id))


async def update_tenant(ctx: Ctx, tenant_id: int, data: TenantUpdate, if_match: int | None) -> TenantRead:

    await _row(ctx, tenant_id)
    # A tenant's admin keeps contact data current; legal identity is the operator's to change.
    values: Values = data.model_dump(exclude_unset=True)
    tenant_editable = {
        "emergency_contact_name",
        "emergency_contact_phone",
        "timezone",
        "selfservice_password",
        # whether the enterprise records its calls is its own choice; how long the platform
        # keeps them (retention) is the operator's, by contract
        "recording_policy",
        "recording_announce",
    }
    if not ctx.actor.is_operator:
        if ctx.actor.role.value != "tenant_admin":
            raise Forbidden(f"role {ctx.actor.role.value} may not change tenants")
        denied = sorted(set(values) - tenant_editable)
        if denied:
            raise Forbidden(f"only an operator may change {', '.join(denied)}", denied[0])
    if if_match is None:
        raise PreconditionRequired("send If-Match with the version (ETag) you read", "If-Match")
    try:
        async with ctx.conn.transaction():
            before = await _row(ctx, tenant_id, for_update=True)
            if before["version"] != if_match:
                raise PreconditionFailed(f"tenant {tenant_id} is at version {before['version']}", "If-Match")
            _check_category(values, before)
            if "selfservice_password" in values:
                # Setting the password also lifts a lock-out from wrong passwords.
                values["selfservice_password_hash"] = hash_pin(values.pop("selfservice_password"))
                values["selfservice_locked_at"] = None
            sets = ", ".join(f"{k} = ${i}" for i, k in enumerate(values, start=2))
            sets = f"{sets}, version = version + 1" if sets else "version = version + 1"
            row = await ctx.conn.fetchrow(
                f"UPDATE tenants SET {sets} WHERE id = $1 RETURNING *", tenant_id, *values.values()
            )
            assert row is not None
            out = present_tenant(row)
            await audit(ctx, "tenants", tenant_id, "update", present_tenant(before), out, tenant_id)
            return out
    except asyncpg.PostgresError as exc:
        raise db_error(exc) from exc


TENANT_TRANSITIONS = {
    "suspend": ({"active"}, "suspended"),
    "resume": ({"suspended"}, "active"),
    "terminate": ({"active", "suspended"}, "terminated"),
}


async def change_tenant_state(ctx: Ctx, tenant_id: int, action: str) -> TenantRead:
    if not ctx.actor.may(OPERATORS):
        raise Forbidden("only operators suspend, resume or terminate tenants")
    allowed, target = TENANT_TRANSITIONS[action]
    async with ctx.conn.transaction():
        before = await _row(ctx, tenant_id, for_update=True)
        if before["state"] not in allowed:
            raise Conflict(f"a {before['state']} tenant cannot be {target}", "state")
        now = ctx.clock.now()
        stamp = {"suspended": "suspended_at", "terminated": "terminated_at"}.get(target)
        extra = f", {stamp} = $3" if stamp else ""
        params: list[Any] = [tenant_id, target] + ([now] if stamp else [])
        row = await ctx.conn.fetchrow(
            f"UPDATE tenants SET state = $2, version = version + 1{extra} WHERE id = $1 RETURNING *",
            *params,
        )
        assert row is not None
        await sync_tenant_accounts(ctx.conn, tenant_id, active=(target == "active"))
        if target == "terminated":
            # The contract ends: numbers go back to the pool after the cool-down.

            await release_all_numbers(ctx, tenant_id)
        out = present_tenant(row)
        await audit(ctx, "tenants", tenant_id, action, present_tenant(before), out, tenant_id)
        return out


async def onboarding(ctx: Ctx, tenant_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Each tenant's onboarding documents against the deadline, for the operator's review:
    {tenant_id: {"approved", "submitted", "outstanding", "total", "due_at", "state"}}."""
    if not ctx.actor.may(OPERATORS):
        raise Forbidden("only operators review onboarding")
    rows = await ctx.conn.fetch(
        """SELECT tenant_id,
                  count(*) FILTER (WHERE status = 'approved') AS approved,
                  count(*) FILTER (WHERE status = 'submitted') AS submitted,
                  count(*) FILTER (WHERE status <> 'approved') AS outstanding,
                  count(*) AS total,
                  min(due_at) FILTER (WHERE status <> 'approved') AS due_at
           FROM tenant_documents WHERE tenant_id = ANY($1::bigint[]) GROUP BY tenant_id""",
        tenant_ids,
    )
    now = ctx.clock.now()
    out: dict[int, dict[str, Any]] = {}
    for r in rows:
        item = dict(r)
        item["state"] = deadline_state(r["due_at"], r["outstanding"], now)
        out[r["tenant_id"]] = item
    return out
