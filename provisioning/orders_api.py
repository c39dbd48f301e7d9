"""Seed 001's one-off fees over HTTP (included in provisioning's /v1 router): an order of an
installation or a service is charged at once, as one ledger entry of kind ``one_off``.

    GET  /v1/one-off-items                   the price list (debugging 99/次, gateway
                                             installation 199/路, SIP phone 299/台, tone
                                             production 99/次; migration 0023)
    POST /v1/tenants/{tenant_id}/orders      order {item, quantity, reference}: operators,
                                             idempotent on Idempotency-Key (201, a replay 200)
    GET  /v1/tenants/{tenant_id}/orders      the tenant's orders, paged by id

Operators order for a tenant, as they subscribe it to packages: the installer's visit and
the hardware are theirs to confirm. The amount is ``rating.fees.one_off_amount``. One
Idempotency-Key names one order of the tenant: replayed with the same item and quantity it
answers the first order, with another it is a conflict."""

# No `from __future__ import annotations`: FastAPI reads these handlers' annotations.

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Header, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from provisioning import ledger
from provisioning.compliance.api import context_dependency
from provisioning.engine import Conflict, Ctx, Forbidden, Invalid, NotFound, audit
from provisioning.roles import OPERATORS
from provisioning.schemas import MAX_ID
from rating.fees import one_off_amount
from softswitch.core.clock import Clock

TenantId = Annotated[int, Path(ge=1, le=MAX_ID)]
IdempotencyKey = Annotated[str, Header(min_length=8, max_length=200, pattern=r"^[\x21-\x7e]+$")]


class OneOffItem(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    code: str
    name: str
    unit: str = Field(description="what one of quantity is: time, port, unit")
    unit_price: Decimal
    note: str


class OneOffItemList(BaseModel):
    items: list[OneOffItem]


class OrderCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    item: str = Field(min_length=2, max_length=40, description="a code of GET /v1/one-off-items")
    quantity: int = Field(1, ge=1, le=1000)
    reference: str = Field("", max_length=200)


class OrderRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    tenant_id: int
    item_code: str
    quantity: int
    unit_price: Decimal
    amount: Decimal
    reference: str
    ledger_entry_id: int
    balance_after: Decimal
    created_at: datetime


class OrderPage(BaseModel):
    items: list[OrderRead]
    next_after: int | None = None


_ORDER = (
    "SELECT o.*, l.balance_after FROM one_off_orders o JOIN ledger_entries l ON l.id = o.ledger_entry_id "
)


def _tenant(ctx: Ctx) -> int:
    if ctx.tenant_id is None or not ctx.actor.sees_tenant(ctx.tenant_id):
        raise NotFound(f"tenant {ctx.tenant_id} not found", "tenant_id")
    return ctx.tenant_id


async def place_order(ctx: Ctx, data: OrderCreate, idempotency_key: str) -> tuple[OrderRead, bool]:
    """Charge the order now. Returns (the order, placed now?)."""
    tid = _tenant(ctx)
    if not ctx.actor.may(OPERATORS):
        raise Forbidden("only operators order installations and services for a tenant")
    conn = ctx.conn
    async with conn.transaction():
        # The account row lock orders concurrent money operations on one tenant.
        if not await conn.fetchval("SELECT 1 FROM accounts WHERE tenant_id = $1 FOR UPDATE", tid):
            raise NotFound(f"tenant {tid} not found", "tenant_id")
        prior = await conn.fetchrow(
            _ORDER + "WHERE o.tenant_id = $1 AND o.idempotency_key = $2", tid, idempotency_key
        )
        if prior is not None:
            if (prior["item_code"], prior["quantity"]) != (data.item, data.quantity):
                used = f"{prior['quantity']} x {prior['item_code']}"
                raise Conflict(f"Idempotency-Key {idempotency_key!r} was used for {used}", "Idempotency-Key")
            return OrderRead.model_validate(dict(prior)), False
        item = await conn.fetchrow("SELECT * FROM one_off_items WHERE code = $1", data.item)
        if item is None:
            codes = [r["code"] for r in await conn.fetch("SELECT code FROM one_off_items ORDER BY code")]
            raise Invalid(f"unknown item {data.item!r}; one of {', '.join(codes)}", "item")
        amount = one_off_amount(item["unit_price"], data.quantity)
        ref = f"{item['name']} x {data.quantity} at {item['unit_price']}" + (
            f": {data.reference}" if data.reference else ""
        )
        now = ctx.clock.now()
        done = await ledger.post(
            conn, tid, ledger.Kind.ONE_OFF, -amount, f"order:{idempotency_key}", ref, now, ctx.actor.user_id
        )
        if isinstance(done, ledger.AlreadyPosted):  # an order row is written with its entry
            raise Conflict(f"Idempotency-Key {idempotency_key!r} was used", "Idempotency-Key")
        row = await conn.fetchrow(
            "INSERT INTO one_off_orders (tenant_id, item_code, quantity, unit_price, amount, reference, "
            "idempotency_key, ledger_entry_id, actor_user_id, created_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *",
            tid,
            data.item,
            data.quantity,
            item["unit_price"],
            amount,
            data.reference,
            idempotency_key,
            done.entry.id,
            ctx.actor.user_id,
            now,
        )
        assert row is not None
        out = OrderRead.model_validate({**dict(row), "balance_after": done.entry.balance_after})
        await audit(ctx, "one_off_orders", out.id, "create", None, out)
        return out, True


async def list_orders(ctx: Ctx, limit: int, after: int | None) -> OrderPage:
    tid = _tenant(ctx)
    rows = await ctx.conn.fetch(
        _ORDER + "WHERE o.tenant_id = $1 AND o.id > $2 ORDER BY o.id LIMIT $3", tid, after or 0, limit + 1
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return OrderPage(
        items=[OrderRead.model_validate(dict(r)) for r in rows],
        next_after=rows[-1]["id"] if more and rows else None,
    )


def build_orders_router(pool: asyncpg.Pool, clock: Clock) -> APIRouter:
    """Routes relative to /v1 (included in provisioning's router, which has the prefix)."""
    router = APIRouter(tags=["money"])
    _mount(router, context_dependency(pool, clock))
    return router


def _mount(router: APIRouter, CtxDep: Any) -> None:  # noqa: N803 - a type alias
    @router.get("/one-off-items", response_model=OneOffItemList, summary="The one-off fees (seed 001)")
    async def one_off_items(ctx: CtxDep) -> Any:
        rows = await ctx.conn.fetch("SELECT * FROM one_off_items ORDER BY code")
        return {"items": [OneOffItem.model_validate(dict(r)) for r in rows]}

    @router.post(
        "/tenants/{tenant_id}/orders",
        response_model=OrderRead,
        status_code=201,
        summary="Order a one-off item, charged at once (operators; idempotent on Idempotency-Key)",
    )
    async def order(
        ctx: CtxDep,
        tenant_id: TenantId,
        data: OrderCreate,
        response: Response,
        idempotency_key: IdempotencyKey,
    ) -> Any:
        ctx.tenant_id = tenant_id
        out, created = await place_order(ctx, data, idempotency_key)
        if not created:
            response.status_code = 200
        return out

    @router.get(
        "/tenants/{tenant_id}/orders", response_model=OrderPage, summary="The tenant's one-off orders"
    )
    async def orders(
        ctx: CtxDep,
        tenant_id: TenantId,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        after: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None,
    ) -> Any:
        ctx.tenant_id = tenant_id
        return await list_orders(ctx, limit, after)
