"""What the monitors did to a tenant, over HTTP (included in provisioning's /v1 router):

    GET  /v1/tenants/{tenant_id}/compliance/report?from=&to=   the period's report
    POST /v1/tenants/{tenant_id}/compliance/lift               lift a suspension or throttle

A tenant's users read their own report; only operators lift (audited, with the reason).
Lifting what is not there answers 409."""

# No `from __future__ import annotations`: FastAPI reads these handlers' annotations.

from datetime import date, datetime
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from provisioning.compliance.api import context_dependency
from provisioning.compliance.report import ComplianceReport, compliance_report
from provisioning.compliance.watch import NothingToLift, lift
from provisioning.engine import Conflict, Forbidden, NotFound
from provisioning.schemas import MAX_ID
from softswitch.core.clock import Clock

TenantId = Annotated[int, Path(ge=1, le=MAX_ID)]


class LiftRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    what: Literal["suspension", "throttle", "all"] = "all"
    reason: str = Field(min_length=3, max_length=500, description="why: kept in the audit log and the event")


class LiftResult(BaseModel):
    tenant_id: int
    suspension_lifted: bool
    throttle_lifted: bool
    suspended_rule: str | None
    throttled_rule: str | None
    at: datetime


def build_oversight_router(pool: asyncpg.Pool, clock: Clock) -> APIRouter:
    """Routes relative to /v1 (included in provisioning's router, which has the prefix)."""
    router = APIRouter(tags=["compliance"])
    _mount(router, context_dependency(pool, clock), clock)
    return router


def _mount(router: APIRouter, CtxDep: Any, clock: Clock) -> None:  # noqa: N803 - a type alias

    @router.get(
        "/tenants/{tenant_id}/compliance/report",
        response_model=ComplianceReport,
        summary="The tenant's compliance metrics of a period beside the thresholds, and every action",
    )
    async def report(
        ctx: CtxDep,
        tenant_id: TenantId,
        from_date: Annotated[date, Query(alias="from", description="first local day")],
        to_date: Annotated[date, Query(alias="to", description="last local day (included)")],
    ) -> Any:
        return await compliance_report(ctx, tenant_id, from_date, to_date)

    @router.post(
        "/tenants/{tenant_id}/compliance/lift",
        response_model=LiftResult,
        summary="Lift the tenant's outbound suspension or throttle (operators; audited)",
    )
    async def lift_restriction(ctx: CtxDep, tenant_id: TenantId, data: LiftRequest) -> Any:
        if not ctx.actor.is_operator:
            raise Forbidden("only an operator lifts a compliance suspension or throttle", "tenant_id")
        if await ctx.conn.fetchval("SELECT 1 FROM tenants WHERE id = $1", tenant_id) is None:
            raise NotFound(f"tenant {tenant_id} not found", "tenant_id")
        try:
            done = await lift(
                ctx.conn,
                tenant_id,
                data.what,
                actor=ctx.actor.name,
                actor_user_id=ctx.actor.user_id,
                reason=data.reason,
                now=clock.now(),
            )
        except NothingToLift as exc:
            raise Conflict(str(exc), "what") from exc
        return LiftResult(
            tenant_id=done.tenant_id,
            suspension_lifted=done.suspension_lifted,
            throttle_lifted=done.throttle_lifted,
            suspended_rule=done.suspended_rule,
            throttled_rule=done.throttled_rule,
            at=done.at,
        )
