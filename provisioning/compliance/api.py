"""The compliance rules and complaints over HTTP (included in provisioning's /v1 router):

    GET    /v1/compliance/rules                          the platform's rules (operators)
    GET    /v1/compliance/rules/{kind}                   one of them (ETag: its version)
    PUT    /v1/compliance/rules/{kind}                   replace it (operators; If-Match)
    GET    /v1/tenants/{tenant_id}/compliance/rules      the tenant's effective rules, with source
    PUT    /v1/tenants/{tenant_id}/compliance/rules/{kind}     the tenant's own rule
    DELETE /v1/tenants/{tenant_id}/compliance/rules/{kind}     back to the platform's
    POST   /v1/tenants/{tenant_id}/complaints            register one (operators)
    GET    /v1/tenants/{tenant_id}/complaints            list: from, to, number, category, paged
    GET    /v1/tenants/{tenant_id}/complaints/{complaint_id}

Who may do what is in rules.py and complaints.py. A tenant's PUT needs If-Match with the
version of its own row when it has one (none: the row is created). Errors as elsewhere in
/v1: {"detail": [{"loc": [...], "msg": ..., "type": ...}]}; an unknown kind answers 404."""

# No `from __future__ import annotations`: FastAPI reads these handlers' annotations.

import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Header, Path, Query, Response
from pydantic import AwareDatetime

from provisioning.compliance import complaints, rules
from provisioning.compliance.schemas import (
    Category,
    ComplaintCreate,
    ComplaintPage,
    ComplaintRead,
    EffectiveRuleList,
    EffectiveRuleRead,
    RuleList,
    RuleRead,
    RuleWrite,
)
from provisioning.engine import Ctx, Invalid
from provisioning.schemas import MAX_ID
from provisioning.users import principal_for
from softswitch.core.clock import Clock

TenantId = Annotated[int, Path(ge=1, le=MAX_ID)]
ComplaintId = Annotated[int, Path(ge=1, le=MAX_ID)]
Kind = Annotated[str, Path(max_length=64, description="a rule kind; an unknown one answers 404")]
IfMatch = Annotated[str | None, Header(description="the version (ETag) read")]
_ETAG = re.compile(r'^(?:W/)?"?v?(\d{1,9})"?$')


def _if_match(value: str | None) -> int | None:
    if value is None:
        return None
    m = _ETAG.match(value.strip())
    if not m:
        raise Invalid('If-Match must be the ETag you read, e.g. "3"', "If-Match")
    return int(m.group(1))


def _etag(response: Response, out: RuleRead) -> None:
    response.headers["ETag"] = f'"{out.version}"'


def context_dependency(pool: asyncpg.Pool, clock: Clock) -> Any:
    """The compliance routers' Ctx: a connection of the pool and the bearer's principal."""

    async def context(
        authorization: Annotated[str | None, Header(description="Bearer <token>")] = None,
    ) -> AsyncIterator[Ctx]:
        async with pool.acquire() as conn:
            who = await principal_for(conn, authorization, clock.now())
            yield Ctx(conn, who, clock)

    return Annotated[Ctx, Depends(context)]


def build_compliance_router(pool: asyncpg.Pool, clock: Clock) -> APIRouter:
    """Routes relative to /v1 (included in provisioning's router, which has the prefix)."""
    router = APIRouter(tags=["compliance"])
    CtxDep = context_dependency(pool, clock)
    _mount_platform_rules(router, CtxDep)
    _mount_tenant_rules(router, CtxDep)
    _mount_complaints(router, CtxDep)
    return router


def _mount_platform_rules(router: APIRouter, CtxDep: Any) -> None:  # noqa: N803 - a type alias
    @router.get("/compliance/rules", response_model=RuleList, summary="The platform's compliance rules")
    async def list_platform_rules(ctx: CtxDep) -> Any:
        return {"items": await rules.list_platform_rules(ctx)}

    @router.get("/compliance/rules/{kind}", response_model=RuleRead, summary="One platform rule")
    async def get_platform_rule(ctx: CtxDep, kind: Kind, response: Response) -> Any:
        out = await rules.get_platform_rule(ctx, kind)
        _etag(response, out)
        return out

    @router.put(
        "/compliance/rules/{kind}",
        response_model=RuleRead,
        summary="Replace a platform rule: the default of every tenant without its own (If-Match)",
    )
    async def set_platform_rule(
        ctx: CtxDep, kind: Kind, data: RuleWrite, response: Response, if_match: IfMatch = None
    ) -> Any:
        out = await rules.set_platform_rule(ctx, kind, data, _if_match(if_match))
        _etag(response, out)
        return out


def _mount_tenant_rules(router: APIRouter, CtxDep: Any) -> None:  # noqa: N803 - a type alias
    @router.get(
        "/tenants/{tenant_id}/compliance/rules",
        response_model=EffectiveRuleList,
        summary="The tenant's effective rules: each kind, its own or the platform's",
    )
    async def tenant_rules(ctx: CtxDep, tenant_id: TenantId) -> Any:
        ctx.tenant_id = tenant_id
        return {"items": await rules.effective_rules(ctx)}

    @router.put(
        "/tenants/{tenant_id}/compliance/rules/{kind}",
        response_model=EffectiveRuleRead,
        summary="Set the tenant's own rule of a kind (a tenant's admin may only tighten)",
        description="If-Match: the version of the tenant's own row, when it has one.",
    )
    async def set_tenant_rule(
        ctx: CtxDep,
        tenant_id: TenantId,
        kind: Kind,
        data: RuleWrite,
        response: Response,
        if_match: IfMatch = None,
    ) -> Any:
        ctx.tenant_id = tenant_id
        out = await rules.set_tenant_rule(ctx, kind, data, _if_match(if_match))
        _etag(response, out)
        return out

    @router.delete(
        "/tenants/{tenant_id}/compliance/rules/{kind}",
        response_model=EffectiveRuleRead,
        summary="Delete the tenant's own rule: the platform's applies again (returned; 204 if none)",
    )
    async def reset_tenant_rule(
        ctx: CtxDep, tenant_id: TenantId, kind: Kind, response: Response, if_match: IfMatch = None
    ) -> Any:
        ctx.tenant_id = tenant_id
        out = await rules.reset_tenant_rule(ctx, kind, _if_match(if_match))
        if out is None:
            return Response(status_code=204)
        _etag(response, out)
        return out


def _mount_complaints(router: APIRouter, CtxDep: Any) -> None:  # noqa: N803 - a type alias
    @router.post(
        "/tenants/{tenant_id}/complaints",
        response_model=ComplaintRead,
        status_code=201,
        summary="Register a complaint against the tenant (operators: from carriers, regulators)",
    )
    async def register_complaint(ctx: CtxDep, tenant_id: TenantId, data: ComplaintCreate) -> Any:
        ctx.tenant_id = tenant_id
        return await complaints.register_complaint(ctx, data)

    @router.get(
        "/tenants/{tenant_id}/complaints",
        response_model=ComplaintPage,
        summary="The tenant's complaints: by the time of the call, number and category; paged",
    )
    async def list_complaints(
        ctx: CtxDep,
        tenant_id: TenantId,
        from_: Annotated[AwareDatetime | None, Query(alias="from", description="calls at or after")] = None,
        to: Annotated[AwareDatetime | None, Query(description="calls before")] = None,
        number: Annotated[str | None, Query(pattern=r"^[0-9]{3,20}$")] = None,
        category: Annotated[Category | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=500, description="page size")] = 50,
        after: Annotated[
            int | None, Query(ge=0, le=MAX_ID, description="next_after of the last page")
        ] = None,
    ) -> Any:
        ctx.tenant_id = tenant_id
        search = complaints.ComplaintSearch(from_, to, number, category)
        items, next_after = await complaints.list_complaints(ctx, search, limit, after)
        return {"items": items, "next_after": next_after}

    @router.get(
        "/tenants/{tenant_id}/complaints/{complaint_id}",
        response_model=ComplaintRead,
        summary="One complaint",
    )
    async def get_complaint(ctx: CtxDep, tenant_id: TenantId, complaint_id: ComplaintId) -> Any:
        ctx.tenant_id = tenant_id
        return await complaints.get_complaint(ctx, complaint_id)
