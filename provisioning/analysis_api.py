"""Incoming-call analysis over HTTP: ``GET /v1/tenants/{tenant_id}/analysis?from=&to=&number_id=``
returns the figures the portal's analysis page shows (provisioning/analysis.py defines them).
``from``/``to`` are local dates of the tenant, both included (default: this month so far);
a tenant's token sees only its own tenant (another tenant answers 404), operators every tenant."""

# No `from __future__ import annotations`: FastAPI reads these handlers' annotations.

from datetime import date
from typing import Annotated

import asyncpg
from fastapi import APIRouter, Header, Query
from fastapi import Path as PathParam

from provisioning import analysis
from provisioning.engine import Ctx
from provisioning.schemas import MAX_ID
from provisioning.users import principal_for
from softswitch.core.clock import Clock


def build_analysis_router(pool: asyncpg.Pool, clock: Clock) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["analysis"])

    @router.get(
        "/tenants/{tenant_id}/analysis", response_model=analysis.AnalysisRead, response_model_by_alias=True
    )
    async def get_analysis(
        tenant_id: Annotated[int, PathParam(ge=1, le=MAX_ID)],
        from_: Annotated[date | None, Query(alias="from")] = None,
        to: Annotated[date | None, Query()] = None,
        number_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
        authorization: Annotated[str | None, Header()] = None,
    ) -> analysis.AnalysisRead:
        async with pool.acquire() as conn:
            who = await principal_for(conn, authorization, clock.now(), tenant_id)
            ctx = Ctx(conn, who, clock, tenant_id)
            if from_ is None or to is None:
                start, end = await analysis.default_period(ctx)
                from_, to = from_ or start, to or end
            return await analysis.call_analysis(ctx, from_, to, number_id)

    return router
