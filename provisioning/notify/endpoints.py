"""A tenant's notification endpoints and the delivery log, as the API and the CLI act on
them: a tenant's admin for its own tenant, operators for every tenant (a tenant's
read-only users see neither: a webhook URL can carry the receiver's own credentials).

A webhook's signing key is generated here and answered once, when the endpoint is made
or its key rotated; it is never read back and never audited. Disabling or removing an
endpoint gives up its open deliveries (dead, ENDPOINT_DISABLED) in the same transaction;
a removed endpoint stays in the log. A dead or failed delivery can be sent again (retry):
its attempts start over. Every change is audited."""

from __future__ import annotations

from typing import Any

import asyncpg

from provisioning.engine import (
    NO_VALUE,
    Conflict,
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
    keyset_page,
)
from provisioning.notify.schemas import (
    DeliveryRead,
    EndpointCreate,
    EndpointCreated,
    EndpointRead,
    EndpointUpdate,
    NoticeDeliveries,
    check_address,
)
from provisioning.roles import OPERATORS, TENANT_WRITERS
from softswitch.notify.retry import ENDPOINT_DISABLED
from softswitch.notify.signing import new_secret
from softswitch.notify.store import CHANNEL

ENTITY = "notice_endpoints"
ENDPOINTS = Resource(
    "notice-endpoints",
    "notice_endpoints",
    EndpointRead,
    read_roles=TENANT_WRITERS,
    write_roles=TENANT_WRITERS,
)
DELIVERIES = Resource(
    "notice-deliveries",
    "notice_deliveries",
    DeliveryRead,
    read_roles=TENANT_WRITERS,
    write_roles=TENANT_WRITERS,
)

_DELIVERY = """
SELECT d.*, e.channel, e.address FROM notice_deliveries d JOIN notice_endpoints e ON e.id = d.endpoint_id
"""
_GIVE_UP = """
UPDATE notice_deliveries SET state = 'dead', last_reason = $2, last_error = $3
WHERE endpoint_id = $1 AND state IN ('pending', 'failed')
"""


def _version(if_match: int | None) -> int:
    if if_match is None:
        raise PreconditionRequired("send If-Match with the version (ETag) you read", "If-Match")
    return if_match


def _check_version(endpoint_id: int, row: asyncpg.Record, version: int) -> None:
    if row["version"] != version:
        raise PreconditionFailed(
            f"notice endpoint {endpoint_id} is at version {row['version']}, not {version}", "If-Match"
        )


async def _row(ctx: Ctx, endpoint_id: int, for_update: bool = False) -> asyncpg.Record:
    row = await ctx.conn.fetchrow(
        "SELECT * FROM notice_endpoints WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL"
        + (" FOR UPDATE" if for_update else ""),
        endpoint_id,
        ctx.tenant_id,
    )
    if row is None:
        raise NotFound(f"notice endpoint {endpoint_id} not found", "id")
    return row


def _read(row: Any) -> EndpointRead:
    return EndpointRead.model_validate(dict(row))


async def create_endpoint(ctx: Ctx, data: EndpointCreate) -> EndpointCreated:
    await authorize(ctx, ENDPOINTS, write=True)
    secret = new_secret() if data.channel == "webhook" else None
    now = ctx.clock.now()
    try:
        async with ctx.conn.transaction():
            row = await ctx.conn.fetchrow(
                "INSERT INTO notice_endpoints (tenant_id, channel, address, secret, kinds, language, "
                "enabled, timeout_s, description, created_at, updated_at) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING *",
                ctx.tenant_id,
                data.channel,
                data.address,
                secret,
                data.kinds,
                data.language,
                data.enabled,
                data.timeout_s,
                data.description,
                now,
            )
            out = _read(row)
            await audit(ctx, ENTITY, out.id, "create", None, out)  # the key is not in it
    except asyncpg.PostgresError as exc:
        raise db_error(exc) from exc
    return EndpointCreated(**out.model_dump(), secret=secret)


async def list_endpoints(
    ctx: Ctx, limit: int, after: int | None, channel: str | None = None
) -> tuple[list[EndpointRead], int | None]:
    await authorize(ctx, ENDPOINTS, write=False)
    clauses: list[tuple[str, Any]] = [("tenant_id = {}", ctx.tenant_id), ("deleted_at IS NULL", NO_VALUE)]
    if channel is not None:
        clauses.append(("channel = {}", channel))
    rows, next_after = await keyset_page(ctx.conn, "notice_endpoints", clauses, limit, after)
    return [_read(r) for r in rows], next_after


async def get_endpoint(ctx: Ctx, endpoint_id: int) -> EndpointRead:
    await authorize(ctx, ENDPOINTS, write=False)
    return _read(await _row(ctx, endpoint_id))


async def update_endpoint(
    ctx: Ctx, endpoint_id: int, data: EndpointUpdate, if_match: int | None
) -> EndpointRead:
    await authorize(ctx, ENDPOINTS, write=True)
    version = _version(if_match)
    changes = {k: v for k, v in data.model_dump(exclude_unset=True).items() if v is not None}
    try:
        async with ctx.conn.transaction():
            before = await _row(ctx, endpoint_id, for_update=True)
            _check_version(endpoint_id, before, version)
            if "address" in changes:
                try:
                    check_address(before["channel"], changes["address"])
                except ValueError as exc:
                    raise Invalid(str(exc), "address") from None
            sets = ", ".join(f"{k} = ${i}" for i, k in enumerate(changes, start=3))
            row = await ctx.conn.fetchrow(
                f"UPDATE notice_endpoints SET {sets + ', ' if sets else ''}version = version + 1, "
                f"updated_at = ${len(changes) + 3} WHERE id = $1 AND tenant_id = $2 RETURNING *",
                endpoint_id,
                ctx.tenant_id,
                *changes.values(),
                ctx.clock.now(),
            )
            if before["enabled"] and changes.get("enabled") is False:
                await ctx.conn.execute(_GIVE_UP, endpoint_id, ENDPOINT_DISABLED, "the endpoint was disabled")
            out = _read(row)
            await audit(ctx, ENTITY, endpoint_id, "update", _read(before), out)
            return out
    except asyncpg.PostgresError as exc:
        raise db_error(exc) from exc


async def delete_endpoint(ctx: Ctx, endpoint_id: int, if_match: int | None) -> None:
    """Removed from the tenant's endpoints; kept for the delivery log."""
    await authorize(ctx, ENDPOINTS, write=True)
    version = _version(if_match)
    async with ctx.conn.transaction():
        before = await _row(ctx, endpoint_id, for_update=True)
        _check_version(endpoint_id, before, version)
        await ctx.conn.execute(
            "UPDATE notice_endpoints SET deleted_at = $2, enabled = false, version = version + 1, "
            "updated_at = $2 WHERE id = $1",
            endpoint_id,
            ctx.clock.now(),
        )
        await ctx.conn.execute(_GIVE_UP, endpoint_id, ENDPOINT_DISABLED, "the endpoint was removed")
        await audit(ctx, ENTITY, endpoint_id, "delete", _read(before), None)


async def rotate_secret(ctx: Ctx, endpoint_id: int) -> EndpointCreated:
    """A new signing key for a webhook, answered once; the old one signs nothing more."""
    await authorize(ctx, ENDPOINTS, write=True)
    async with ctx.conn.transaction():
        before = await _row(ctx, endpoint_id, for_update=True)
        if before["channel"] != "webhook":
            raise Invalid("only a webhook has a signing key", "channel")
        secret = new_secret()
        row = await ctx.conn.fetchrow(
            "UPDATE notice_endpoints SET secret = $2, version = version + 1, updated_at = $3 "
            "WHERE id = $1 RETURNING *",
            endpoint_id,
            secret,
            ctx.clock.now(),
        )
        out = _read(row)
        await audit(ctx, ENTITY, endpoint_id, "rotate_secret", _read(before), out)
    return EndpointCreated(**out.model_dump(), secret=secret)


async def notice_deliveries(ctx: Ctx, notice_id: int) -> NoticeDeliveries:
    await authorize(ctx, DELIVERIES, write=False)
    notice = await ctx.conn.fetchrow(
        "SELECT id, kind, created_at, delivered_at FROM outbox WHERE id = $1 AND tenant_id = $2",
        notice_id,
        ctx.tenant_id,
    )
    if notice is None:
        raise NotFound(f"notice {notice_id} not found", "notice_id")
    rows = await ctx.conn.fetch(_DELIVERY + " WHERE d.notice_id = $1 ORDER BY d.id", notice_id)
    return NoticeDeliveries(
        notice_id=notice["id"],
        kind=notice["kind"],
        created_at=notice["created_at"],
        delivered_at=notice["delivered_at"],
        items=[DeliveryRead.model_validate(dict(r)) for r in rows],
    )


async def list_deliveries(
    ctx: Ctx, state: str | None, endpoint_id: int | None, limit: int, after: int | None
) -> tuple[list[DeliveryRead], int | None]:
    """The tenant's delivery log, oldest first, by state and endpoint."""
    await authorize(ctx, DELIVERIES, write=False)
    rows = await ctx.conn.fetch(
        _DELIVERY + " WHERE d.tenant_id = $1 AND ($2::text IS NULL OR d.state = $2) "
        "AND ($3::bigint IS NULL OR d.endpoint_id = $3) AND ($4::bigint IS NULL OR d.id > $4) "
        "ORDER BY d.id LIMIT $5",
        ctx.tenant_id,
        state,
        endpoint_id,
        after,
        limit + 1,
    )
    items = [DeliveryRead.model_validate(dict(r)) for r in rows[:limit]]
    return items, (items[-1].id if len(rows) > limit else None)


async def platform_deliveries(
    ctx: Ctx, state: str | None, tenant_id: int | None, limit: int, after: int | None
) -> tuple[list[DeliveryRead], int | None]:
    """Every tenant's delivery log (operators: e.g. the dead ones, to call the tenants
    whose systems stopped taking notices), newest first; `after` pages to older ones."""
    if not ctx.actor.may(OPERATORS):
        raise Forbidden("only operators read every tenant's deliveries")
    rows = await ctx.conn.fetch(
        _DELIVERY + " WHERE ($1::text IS NULL OR d.state = $1) AND ($2::bigint IS NULL OR d.tenant_id = $2) "
        "AND ($3::bigint IS NULL OR d.id < $3) ORDER BY d.id DESC LIMIT $4",
        state,
        tenant_id,
        after,
        limit + 1,
    )
    items = [DeliveryRead.model_validate(dict(r)) for r in rows[:limit]]
    return items, (items[-1].id if len(rows) > limit else None)


async def retry_delivery(ctx: Ctx, notice_id: int, delivery_id: int) -> DeliveryRead:
    """Send a dead or failed delivery again now, its attempts counted from zero."""
    await authorize(ctx, DELIVERIES, write=True)
    async with ctx.conn.transaction():
        row = await ctx.conn.fetchrow(
            _DELIVERY + " WHERE d.id = $1 AND d.notice_id = $2 AND d.tenant_id = $3 FOR UPDATE OF d",
            delivery_id,
            notice_id,
            ctx.tenant_id,
        )
        if row is None:
            raise NotFound(f"delivery {delivery_id} of notice {notice_id} not found", "delivery_id")
        if row["state"] not in ("dead", "failed"):
            raise Conflict(
                f"delivery {delivery_id} is {row['state']}: only dead or failed ones are retried", "state"
            )
        usable = await ctx.conn.fetchval(
            "SELECT enabled AND deleted_at IS NULL FROM notice_endpoints WHERE id = $1", row["endpoint_id"]
        )
        if not usable:
            raise Conflict(f"endpoint {row['endpoint_id']} is disabled or removed", "endpoint_id")
        await ctx.conn.execute(
            "UPDATE notice_deliveries SET state = 'pending', attempts = 0, next_attempt_at = $2 "
            "WHERE id = $1",
            delivery_id,
            ctx.clock.now(),
        )
        await ctx.conn.execute("SELECT pg_notify($1, '')", CHANNEL)
        before = DeliveryRead.model_validate(dict(row))
        after = await ctx.conn.fetchrow(_DELIVERY + " WHERE d.id = $1", delivery_id)
        out = DeliveryRead.model_validate(dict(after))
        await audit(ctx, "notice_deliveries", delivery_id, "retry", before, out)
        return out
