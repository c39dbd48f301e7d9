"""Notification endpoints and the delivery log over HTTP (included in provisioning's /v1
router):

    GET    /v1/tenants/{tenant_id}/notice-endpoints                 list (channel=, paged)
    POST   /v1/tenants/{tenant_id}/notice-endpoints                 add one (a webhook's key: answered once)
    GET    /v1/tenants/{tenant_id}/notice-endpoints/{endpoint_id}   one (ETag: its version)
    PATCH  /v1/tenants/{tenant_id}/notice-endpoints/{endpoint_id}   change it (If-Match)
    DELETE /v1/tenants/{tenant_id}/notice-endpoints/{endpoint_id}   remove it (If-Match)
    POST   /v1/tenants/{tenant_id}/notice-endpoints/{endpoint_id}/rotate-secret   a new key, once
    GET    /v1/tenants/{tenant_id}/notice-deliveries                the log (state=, endpoint_id=, paged)
    GET    /v1/notice-deliveries                                    every tenant's, newest first (operators)
    GET    /v1/tenants/{tenant_id}/notices/{notice_id}/deliveries   one notice's delivery state
    POST   /v1/tenants/{tenant_id}/notices/{notice_id}/deliveries/{delivery_id}/retry

Who may: a tenant's admin for its own tenant, operators for every tenant (others: 404 as
for any tenant they do not see, or 403). Errors as elsewhere in /v1."""

# No `from __future__ import annotations`: FastAPI reads these handlers' annotations.

from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Path, Query, Response

from provisioning.compliance.api import IfMatch, _if_match, context_dependency
from provisioning.notify import endpoints
from provisioning.notify.schemas import (
    Channel,
    DeliveryPage,
    DeliveryRead,
    DeliveryState,
    EndpointCreate,
    EndpointCreated,
    EndpointPage,
    EndpointRead,
    EndpointUpdate,
    NoticeDeliveries,
)
from provisioning.schemas import MAX_ID
from softswitch.core.clock import Clock

TenantId = Annotated[int, Path(ge=1, le=MAX_ID)]
EndpointId = Annotated[int, Path(ge=1, le=MAX_ID)]
NoticeId = Annotated[int, Path(ge=1, le=MAX_ID)]
DeliveryId = Annotated[int, Path(ge=1, le=MAX_ID)]
Limit = Annotated[int, Query(ge=1, le=500, description="page size")]
After = Annotated[int | None, Query(ge=0, le=MAX_ID, description="next_after of the last page")]
BASE = "/tenants/{tenant_id}/notice-endpoints"


def _etag(response: Response, out: EndpointRead) -> None:
    response.headers["ETag"] = f'"{out.version}"'


def build_notify_router(pool: asyncpg.Pool, clock: Clock) -> APIRouter:
    """Routes relative to /v1 (included in provisioning's router, which has the prefix)."""
    router = APIRouter(tags=["notices"])
    CtxDep = context_dependency(pool, clock)
    _mount_endpoints(router, CtxDep)
    _mount_deliveries(router, CtxDep)
    return router


def _mount_endpoints(router: APIRouter, CtxDep: Any) -> None:  # noqa: N803 - a type alias
    @router.get(BASE, response_model=EndpointPage, summary="The tenant's notification endpoints")
    async def list_notice_endpoints(
        ctx: CtxDep,
        tenant_id: TenantId,
        channel: Annotated[Channel | None, Query()] = None,
        limit: Limit = 50,
        after: After = None,
    ) -> Any:
        ctx.tenant_id = tenant_id
        items, next_after = await endpoints.list_endpoints(ctx, limit, after, channel)
        return {"items": items, "next_after": next_after}

    @router.post(
        BASE,
        response_model=EndpointCreated,
        status_code=201,
        summary="Add an e-mail address or a webhook; a webhook's signing key is in this answer only",
    )
    async def create_notice_endpoint(
        ctx: CtxDep, tenant_id: TenantId, data: EndpointCreate, response: Response
    ) -> Any:
        ctx.tenant_id = tenant_id
        out = await endpoints.create_endpoint(ctx, data)
        _etag(response, out)
        response.headers["Cache-Control"] = "no-store"
        return out

    @router.get(BASE + "/{endpoint_id}", response_model=EndpointRead, summary="One notification endpoint")
    async def get_notice_endpoint(
        ctx: CtxDep, tenant_id: TenantId, endpoint_id: EndpointId, response: Response
    ) -> Any:
        ctx.tenant_id = tenant_id
        out = await endpoints.get_endpoint(ctx, endpoint_id)
        _etag(response, out)
        return out

    @router.patch(
        BASE + "/{endpoint_id}",
        response_model=EndpointRead,
        summary="Change an endpoint (If-Match); disabling it gives up its open deliveries",
    )
    async def update_notice_endpoint(
        ctx: CtxDep,
        tenant_id: TenantId,
        endpoint_id: EndpointId,
        data: EndpointUpdate,
        response: Response,
        if_match: IfMatch = None,
    ) -> Any:
        ctx.tenant_id = tenant_id
        out = await endpoints.update_endpoint(ctx, endpoint_id, data, _if_match(if_match))
        _etag(response, out)
        return out

    @router.delete(
        BASE + "/{endpoint_id}",
        status_code=204,
        summary="Remove an endpoint (If-Match); its deliveries stay in the log",
    )
    async def delete_notice_endpoint(
        ctx: CtxDep, tenant_id: TenantId, endpoint_id: EndpointId, if_match: IfMatch = None
    ) -> Response:
        ctx.tenant_id = tenant_id
        await endpoints.delete_endpoint(ctx, endpoint_id, _if_match(if_match))
        return Response(status_code=204)

    @router.post(
        BASE + "/{endpoint_id}/rotate-secret",
        response_model=EndpointCreated,
        summary="A new signing key for a webhook, in this answer only",
    )
    async def rotate_notice_endpoint_secret(
        ctx: CtxDep, tenant_id: TenantId, endpoint_id: EndpointId, response: Response
    ) -> Any:
        ctx.tenant_id = tenant_id
        out = await endpoints.rotate_secret(ctx, endpoint_id)
        _etag(response, out)
        response.headers["Cache-Control"] = "no-store"
        return out


def _mount_deliveries(router: APIRouter, CtxDep: Any) -> None:  # noqa: N803 - a type alias
    @router.get(
        "/tenants/{tenant_id}/notice-deliveries",
        response_model=DeliveryPage,
        summary="The tenant's delivery log: one row per notice and endpoint",
    )
    async def list_notice_deliveries(
        ctx: CtxDep,
        tenant_id: TenantId,
        state: Annotated[DeliveryState | None, Query()] = None,
        endpoint_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
        limit: Limit = 50,
        after: After = None,
    ) -> Any:
        ctx.tenant_id = tenant_id
        items, next_after = await endpoints.list_deliveries(ctx, state, endpoint_id, limit, after)
        return {"items": items, "next_after": next_after}

    @router.get(
        "/notice-deliveries",
        response_model=DeliveryPage,
        summary="Every tenant's delivery log, newest first (operators); next_after pages to older",
    )
    async def list_platform_notice_deliveries(
        ctx: CtxDep,
        state: Annotated[DeliveryState | None, Query()] = None,
        tenant_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
        limit: Limit = 50,
        after: After = None,
    ) -> Any:
        items, next_after = await endpoints.platform_deliveries(ctx, state, tenant_id, limit, after)
        return {"items": items, "next_after": next_after}

    @router.get(
        "/tenants/{tenant_id}/notices/{notice_id}/deliveries",
        response_model=NoticeDeliveries,
        summary="Where one notice went: its delivery to each endpoint",
    )
    async def get_notice_deliveries(ctx: CtxDep, tenant_id: TenantId, notice_id: NoticeId) -> Any:
        ctx.tenant_id = tenant_id
        return await endpoints.notice_deliveries(ctx, notice_id)

    @router.post(
        "/tenants/{tenant_id}/notices/{notice_id}/deliveries/{delivery_id}/retry",
        response_model=DeliveryRead,
        summary="Send a dead or failed delivery again now (its attempts start over)",
    )
    async def retry_notice_delivery(
        ctx: CtxDep, tenant_id: TenantId, notice_id: NoticeId, delivery_id: DeliveryId
    ) -> Any:
        ctx.tenant_id = tenant_id
        return await endpoints.retry_delivery(ctx, notice_id, delivery_id)
