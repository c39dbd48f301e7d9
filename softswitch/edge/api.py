"""The SIP edge's bans over HTTP (softswitch/edge/bans.py; migration 0032), for operators:

    GET    /v1/sip-bans              the bans, newest first (?active=true: in force only);
                                     the edge's latest are read first
    DELETE /v1/sip-bans/{ban_id}     lift a ban in force now (the edge lets the address or
                                     account in again); audited. 404: none in force; 409:
                                     this service does not drive the edge; 503: the edge
                                     did not answer

Each ban was made by the edge itself (a flood, failed digest authentication) and expires by
itself after edge.ban_s; the control plane keeps the record and may lift it earlier."""

# No `from __future__ import annotations`: FastAPI reads these handlers' annotations.

from datetime import datetime
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Query
from fastapi import Path as PathParam
from pydantic import BaseModel

from provisioning.compliance.api import context_dependency
from provisioning.engine import Conflict, Ctx, Forbidden, NotFound, ProvisioningError
from provisioning.schemas import MAX_ID
from softswitch.core.clock import Clock
from softswitch.edge.bans import EdgeBans, EdgeUnavailable

BanId = Annotated[int, PathParam(ge=1, le=MAX_ID)]


class EdgeDown(ProvisioningError):
    status, kind = 503, "edge_unavailable"


class BanRead(BaseModel):
    id: int
    kind: str  # address | account
    subject: str
    reason: str  # flood | auth_failures
    banned_at: datetime
    expires_at: datetime
    lifted_at: datetime | None
    lifted_by: str | None
    active: bool


class BanList(BaseModel):
    items: list[BanRead]
    edge_read: bool  # False: the edge did not answer; what the record holds is listed


def _operator(ctx: Ctx) -> None:
    if not ctx.actor.is_operator:
        raise Forbidden("the SIP edge's bans are for operators")


def _read(row: asyncpg.Record, now: datetime) -> BanRead:
    return BanRead(**dict(row), active=row["lifted_at"] is None and row["expires_at"] > now)


def build_bans_router(pool: asyncpg.Pool, clock: Clock, bans: EdgeBans | None) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["edge"])
    _mount(router, context_dependency(pool, clock), clock, bans)
    return router


def _mount(router: APIRouter, CtxDep: Any, clock: Clock, bans: EdgeBans | None) -> None:  # noqa: N803 - a type alias
    @router.get("/sip-bans", response_model=BanList, summary="The SIP edge's bans, newest first")
    async def list_bans(
        ctx: CtxDep,
        active: Annotated[bool, Query(description="in force only")] = False,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> Any:
        _operator(ctx)
        read = False
        if bans is not None:
            try:
                await bans.sync(ctx.conn)
                read = True
            except EdgeUnavailable:
                read = False
        now = clock.now()
        if active:
            rows = await ctx.conn.fetch(
                "SELECT * FROM sip_bans WHERE lifted_at IS NULL AND expires_at > $2 "
                "ORDER BY banned_at DESC, id DESC LIMIT $1",
                limit,
                now,
            )
        else:
            rows = await ctx.conn.fetch(
                "SELECT * FROM sip_bans ORDER BY banned_at DESC, id DESC LIMIT $1", limit
            )
        return BanList(items=[_read(r, now) for r in rows], edge_read=read)

    @router.delete("/sip-bans/{ban_id}", response_model=BanRead, summary="Lift a ban in force now")
    async def lift_ban(ctx: CtxDep, ban_id: BanId) -> Any:
        _operator(ctx)
        if bans is None:
            held = await ctx.conn.fetchval(
                "SELECT id FROM sip_bans WHERE id = $1 AND lifted_at IS NULL AND expires_at > $2",
                ban_id,
                clock.now(),
            )
            if held is None:
                raise NotFound(f"no ban {ban_id} in force")
            raise Conflict("this service does not drive the SIP edge (edge.enabled is false)")
        try:
            row = await bans.lift(ctx.conn, ban_id, ctx.actor.name)
        except EdgeUnavailable as exc:
            raise EdgeDown(f"the SIP edge did not answer: {exc}") from None
        if row is None:
            raise NotFound(f"no ban {ban_id} in force")
        return _read(row, clock.now())
