"""The provisioning service layer: create/read/update/delete of any declared Resource, with
tenant scoping, role checks, optimistic concurrency (a version per row), an audit entry
for every change in the same transaction, and database constraint failures turned into
errors that name the field. The REST API and the CLI both call these functions."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from pydantic import BaseModel

from provisioning import audit as audit_log
from provisioning.roles import EVERYONE, TENANT_WRITERS, Principal, Role
from softswitch.core.clock import Clock

_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")


# ---------------------------------------------------------------------------- errors
class ProvisioningError(Exception):
    status = 400
    kind = "bad_request"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class Unauthorized(ProvisioningError):
    status, kind = 401, "unauthorized"


class NotFound(ProvisioningError):
    status, kind = 404, "not_found"


class Forbidden(ProvisioningError):
    status, kind = 403, "forbidden"


class Conflict(ProvisioningError):
    status, kind = 409, "conflict"


class Invalid(ProvisioningError):
    status, kind = 422, "invalid"


class PreconditionFailed(ProvisioningError):
    status, kind = 412, "version_mismatch"


class PreconditionRequired(ProvisioningError):
    status, kind = 428, "if_match_required"


# ---------------------------------------------------------------------------- resources
@dataclass
class Ctx:
    """What a service call acts with: one connection (inside its transaction), who acts,
    which tenant the call is scoped to, and the injected clock."""

    conn: asyncpg.Connection
    actor: Principal
    clock: Clock
    tenant_id: int | None = None
    settings: Any = None


Values = dict[str, Any]
PrepareHook = Callable[[Ctx, Values, Mapping[str, Any] | None], Awaitable[Values]]
AfterHook = Callable[[Ctx, str, Mapping[str, Any] | None, Mapping[str, Any] | None], Awaitable[None]]


@dataclass(frozen=True)
class Resource:
    name: str  # URL segment and audit entity
    table: str
    read_model: type[BaseModel]
    create_model: type[BaseModel] | None = None  # None: not creatable through the engine
    update_model: type[BaseModel] | None = None  # None: not updatable
    deletable: bool = True
    tenant_scoped: bool = True  # rows carry tenant_id; URLs live under /v1/tenants/{tid}/
    platform_rows_only: bool = False  # a platform view of a table tenants share (tenant_id NULL)
    read_roles: frozenset[Role] = EVERYONE
    write_roles: frozenset[Role] = TENANT_WRITERS
    filters: tuple[str, ...] = ()
    masks: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)
    prepare: PrepareHook | None = None  # validate/transform input inside the transaction
    after_write: AfterHook | None = None  # side effects inside the transaction
    order_by: str = "id"

    def __post_init__(self) -> None:
        for name in (self.table, *self.filters, self.order_by):
            assert _IDENT.match(name), name


def _check_columns(values: Mapping[str, Any]) -> None:
    for key in values:
        if not _IDENT.match(key):  # column names come from models, never from input
            raise AssertionError(f"not a column name: {key!r}")


def present(res: Resource, row: Mapping[str, Any]) -> BaseModel:
    data = dict(row)
    for key, mask in res.masks.items():
        if key in data:
            data[key] = mask(data[key])
    return res.read_model.model_validate(data)


async def audit(
    ctx: Ctx,
    entity: str,
    entity_id: object,
    action: str,
    before: BaseModel | Mapping[str, Any] | None,
    after: BaseModel | Mapping[str, Any] | None,
    tenant_id: int | None = None,
) -> None:
    """``provisioning.audit.record`` for a service call: its clock, its actor, its tenant."""
    await audit_log.record(
        ctx.conn,
        at=ctx.clock.now(),
        actor=ctx.actor.name,
        actor_user_id=ctx.actor.user_id,
        tenant_id=tenant_id if tenant_id is not None else ctx.tenant_id,
        entity=entity,
        entity_id=entity_id,
        action=action,
        before=before,
        after=after,
    )


async def authorize(ctx: Ctx, res: Resource, write: bool) -> None:
    actor = ctx.actor
    if res.tenant_scoped:
        # Another tenant's data is not there, as far as a tenant's token can tell.
        if ctx.tenant_id is None or not actor.sees_tenant(ctx.tenant_id):
            raise NotFound(f"tenant {ctx.tenant_id} not found", "tenant_id")
        if not await ctx.conn.fetchval("SELECT 1 FROM tenants WHERE id = $1", ctx.tenant_id):
            raise NotFound(f"tenant {ctx.tenant_id} not found", "tenant_id")
    if not actor.may(res.read_roles):
        raise Forbidden(f"role {actor.role.value} may not read {res.name}")
    if write and not actor.may(res.write_roles):
        raise Forbidden(f"role {actor.role.value} may not change {res.name}")


def _scope_sql(res: Resource, ctx: Ctx, first_param: int) -> tuple[str, list[Any]]:
    if res.tenant_scoped:
        return f" AND tenant_id = ${first_param}", [ctx.tenant_id]
    if res.platform_rows_only:
        return " AND tenant_id IS NULL", []
    return "", []


def db_error(exc: asyncpg.PostgresError) -> ProvisioningError:
    """Constraint failures name what was wrong; anything else is not ours to explain."""
    detail = getattr(exc, "detail", None) or ""
    constraint = getattr(exc, "constraint_name", None) or ""
    column = getattr(exc, "column_name", None)
    m = re.search(r"Key \(([^)]+)\)=", detail)
    fld = column or (m.group(1).split(",")[-1].strip() if m else None) or constraint or None
    if isinstance(exc, asyncpg.UniqueViolationError):
        return Conflict(f"already exists: {detail or constraint}", fld)
    if isinstance(exc, asyncpg.ForeignKeyViolationError):
        return Invalid(f"refers to something that does not exist: {detail or constraint}", fld)
    if isinstance(exc, asyncpg.CheckViolationError):
        return Invalid(f"violates rule {constraint}", fld)
    if isinstance(exc, asyncpg.NotNullViolationError):
        return Invalid(f"{column} is required", column)
    if isinstance(exc, asyncpg.DataError):
        return Invalid(f"invalid value: {exc}", fld)
    raise exc


NO_VALUE = object()


async def keyset_page(
    conn: asyncpg.Connection, table: str, clauses: list[tuple[str, Any]], limit: int, after: int | None
) -> tuple[list[asyncpg.Record], int | None]:
    """One page of `table` by id: `clauses` are SQL conditions with a `{}` for their value
    (NO_VALUE: a condition without one); `after` is the previous page's next_after."""
    where, params = ["true"], []
    for clause, value in clauses:
        if value is NO_VALUE:
            where.append(clause)
        else:
            params.append(value)
            where.append(clause.format(f"${len(params)}"))
    if after is not None:
        params.append(after)
        where.append(f"id > ${len(params)}")
    params.append(limit + 1)
    rows = await conn.fetch(
        f"SELECT * FROM {table} WHERE {' AND '.join(where)} ORDER BY id LIMIT ${len(params)}", *params
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1]["id"] if more and rows else None)


async def list_rows(
    ctx: Ctx, res: Resource, filters: Mapping[str, str], limit: int, after: int | None
) -> tuple[list[BaseModel], int | None]:
    await authorize(ctx, res, write=False)
    clauses: list[tuple[str, Any]] = []
    if res.tenant_scoped:
        clauses.append(("tenant_id = {}", ctx.tenant_id))
    elif res.platform_rows_only:
        clauses.append(("tenant_id IS NULL", NO_VALUE))
    clauses += [(f"{key}::text = {{}}", value) for key, value in filters.items() if key in res.filters]
    rows, next_after = await keyset_page(ctx.conn, res.table, clauses, limit, after)
    return [present(res, r) for r in rows], next_after


async def fetch_row(ctx: Ctx, res: Resource, row_id: int, for_update: bool = False) -> asyncpg.Record:
    where, params = _scope_sql(res, ctx, 2)
    lock = " FOR UPDATE" if for_update else ""
    row = await ctx.conn.fetchrow(f"SELECT * FROM {res.table} WHERE id = $1{where}{lock}", row_id, *params)
    if row is None:
        raise NotFound(f"{res.name} {row_id} not found", "id")
    return row


async def get_row(ctx: Ctx, res: Resource, row_id: int) -> BaseModel:
    await authorize(ctx, res, write=False)
    return present(res, await fetch_row(ctx, res, row_id))


async def create_row(ctx: Ctx, res: Resource, data: BaseModel) -> BaseModel:
    await authorize(ctx, res, write=True)
    if res.create_model is None:
        raise Forbidden(f"{res.name} cannot be created this way")
    values: Values = data.model_dump()
    if res.tenant_scoped:
        values["tenant_id"] = ctx.tenant_id
    try:
        async with ctx.conn.transaction():
            if res.prepare is not None:
                values = await res.prepare(ctx, values, None)
            _check_columns(values)
            cols = ", ".join(values)
            marks = ", ".join(f"${i}" for i in range(1, len(values) + 1))
            row = await ctx.conn.fetchrow(
                f"INSERT INTO {res.table} ({cols}) VALUES ({marks}) RETURNING *", *values.values()
            )
            assert row is not None
            if res.after_write is not None:
                await res.after_write(ctx, "create", None, row)
            out = present(res, row)
            await audit(ctx, res.name, row["id"], "create", None, out, row.get("tenant_id"))
            return out
    except asyncpg.PostgresError as exc:
        raise db_error(exc) from exc


async def update_row(
    ctx: Ctx, res: Resource, row_id: int, data: BaseModel, if_match: int | None
) -> BaseModel:
    await authorize(ctx, res, write=True)
    if res.update_model is None:
        raise Forbidden(f"{res.name} cannot be changed this way")
    if if_match is None:
        raise PreconditionRequired("send If-Match with the version (ETag) you read", "If-Match")
    values: Values = data.model_dump(exclude_unset=True)
    try:
        async with ctx.conn.transaction():
            before = await fetch_row(ctx, res, row_id, for_update=True)
            if before["version"] != if_match:
                raise PreconditionFailed(
                    f"{res.name} {row_id} is at version {before['version']}, not {if_match}",
                    "If-Match",
                )
            if res.prepare is not None:
                values = await res.prepare(ctx, values, before)
            _check_columns(values)
            sets = ", ".join(f"{k} = ${i}" for i, k in enumerate(values, start=2))
            sets = f"{sets}, version = version + 1" if sets else "version = version + 1"
            row = await ctx.conn.fetchrow(
                f"UPDATE {res.table} SET {sets} WHERE id = $1 RETURNING *", row_id, *values.values()
            )
            assert row is not None
            if res.after_write is not None:
                await res.after_write(ctx, "update", before, row)
            out = present(res, row)
            await audit(ctx, res.name, row_id, "update", present(res, before), out, row.get("tenant_id"))
            return out
    except asyncpg.PostgresError as exc:
        raise db_error(exc) from exc


async def delete_row(ctx: Ctx, res: Resource, row_id: int, if_match: int | None) -> None:
    await authorize(ctx, res, write=True)
    if not res.deletable:
        raise Forbidden(f"{res.name} cannot be deleted")
    if if_match is None:
        raise PreconditionRequired("send If-Match with the version (ETag) you read", "If-Match")
    try:
        async with ctx.conn.transaction():
            before = await fetch_row(ctx, res, row_id, for_update=True)
            if before["version"] != if_match:
                raise PreconditionFailed(
                    f"{res.name} {row_id} is at version {before['version']}, not {if_match}",
                    "If-Match",
                )
            await ctx.conn.execute(f"DELETE FROM {res.table} WHERE id = $1", row_id)
            if res.after_write is not None:
                await res.after_write(ctx, "delete", before, None)
            await audit(ctx, res.name, row_id, "delete", present(res, before), None, before.get("tenant_id"))
    except asyncpg.PostgresError as exc:
        raise db_error(exc) from exc
