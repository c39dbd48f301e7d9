"""What the monitors did to a tenant, over HTTP (included in provisioning's /v1 router):

    GET  /v1/tenants/{tenant_id}/compliance/report?from=&to=   the period's report
    POST /v1/tenants/{tenant_id}/compliance/lift               lift a suspension or throttle

A tenant's users read their own report; only operators lift (audited, with the reason).
Lifting what is not there answers 409."""

# No `from __future__ import annotations`: FastAPI reads these handlers' annotations.

from datetime import date
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from provisioning.compliance.api import context_dependency
from provisioning.compliance.report import ComplianceReport, compliance_report
from provisioning.compliance.watch import Lifted, operator_lift
from provisioning.schemas import MAX_ID
from softswitch.core.clock import Clock

TenantId = Annotated[int, Path(ge=1, le=MAX_ID)]


class LiftRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    what: Literal["suspension", "throttle", "all"] = "all"
    reason: str = Field(min_length=3, max_length=500, description="why: kept in the audit log and the event")


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
        response_model=Lifted,
        summary="Lift the tenant's outbound suspension or throttle (operators; audited)",
    )
    async def lift_restriction(ctx: CtxDep, tenant_id: TenantId, data: LiftRequest) -> Any:
        return await operator_lift(ctx, tenant_id, data.what, data.reason)
