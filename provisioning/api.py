"""The provisioning REST API under /v1 (FastAPI; OpenAPI at /docs and /openapi.json).

Authentication: `Authorization: Bearer <token>`. Tenant data lives under
/v1/tenants/{tenant_id}/...; a tenant's token sees only its own tenant (others answer 404).
Updates and deletes need `If-Match` with the version from the ETag; money operations
need an `Idempotency-Key`. Errors are {"detail": [{"loc": [...], "msg": ..., "type": ...}]}."""

# No `from __future__ import annotations` here: FastAPI reads the handlers' annotations,
# and the generic handlers below annotate with models chosen at mount time.

import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, create_model

from provisioning import cards, catalog, click_to_dial, engine, money, numbers, reports, tenants, users
from provisioning.compliance.api import build_compliance_router
from provisioning.compliance.oversight_api import build_oversight_router
from provisioning.engine import Ctx, ProvisioningError, Resource
from provisioning.notify.api import build_notify_router
from provisioning.orders_api import build_orders_router
from provisioning.roles import Principal
from provisioning.schemas import (
    MAX_ID,
    AccountRead,
    CardBatchCreate,
    CardBatchIssued,
    CardBatchRead,
    CardRedemptionCreate,
    ClickToDialCreate,
    ClickToDialRead,
    LedgerRead,
    LiveCallsRead,
    NumberCreate,
    NumberRead,
    RechargeCreate,
    RechargeRead,
    ReportRead,
    StatementRead,
    TenantCreate,
    TenantRead,
    TenantUpdate,
    TokenCreate,
    TokenIssued,
    TokenRead,
)
from softswitch.core.clock import Clock

IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]
Limit = Annotated[int, Query(ge=1, le=500, description="page size")]
After = Annotated[int | None, Query(ge=0, le=MAX_ID, description="the next_after of the previous page")]
IdempotencyKey = Annotated[str, Header(min_length=8, max_length=200, pattern=r"^[\x21-\x7e]+$")]
FromDate = Annotated[date, Query(alias="from", description="first day, in the tenant's time zone")]
ToDate = Annotated[date, Query(alias="to", description="last day (included), in the tenant's time zone")]
_ETAG = re.compile(r'^(?:W/)?"?v?(\d{1,9})"?$')


@dataclass(frozen=True)
class ApiDeps:
    pool: asyncpg.Pool
    clock: Clock
    settings: Any = None
    # Click-to-dial originates through the engines and follows the call in the registry.
    ami: Any = None
    esl: Any = None
    registry: Any = None


def _if_match(value: str | None) -> int | None:
    if value is None:
        return None
    m = _ETAG.match(value.strip())
    if not m:
        raise engine.Invalid('If-Match must be the ETag you read, e.g. "3"', "If-Match")
    return int(m.group(1))


def _etag(version: int) -> str:
    return f'"{version}"'


def error_response(exc: ProvisioningError) -> JSONResponse:
    loc: list[str | int]
    if exc.field in ("If-Match", "Idempotency-Key"):
        loc = ["header"]
    elif exc.field in ("from", "to"):  # the report and statement periods
        loc = ["query"]
    else:
        loc = ["body"]
    if exc.field:
        # "definition.rules.0.province" names a place inside a field: a path, as pydantic's
        loc += [int(part) if part.isdigit() else part for part in exc.field.split(".")]
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse(
        {"detail": [{"loc": loc, "msg": exc.message, "type": exc.kind}]},
        status_code=exc.status,
        headers=headers,
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProvisioningError)
    async def _provisioning_error(_request: Request, exc: ProvisioningError) -> JSONResponse:
        return error_response(exc)


def _page_model(read: type[BaseModel], name: str) -> type[BaseModel]:
    items: Any = list[read]  # type: ignore[valid-type]  # a model made at run time
    return create_model(f"{name}Page", items=(items, ...), next_after=(int | None, None))


def _context(deps: ApiDeps) -> Any:
    """The `Ctx` dependency: a connection and the principal its bearer token names."""

    async def context(
        authorization: Annotated[str | None, Header(description="Bearer <token>")] = None,
    ) -> AsyncIterator[Ctx]:
        async with deps.pool.acquire() as conn:
            principal = await users.principal_for(conn, authorization, deps.clock.now())
            yield Ctx(conn, principal, deps.clock, settings=deps.settings)

    return Annotated[Ctx, Depends(context)]


def _scoped(ctx: Ctx, tenant_id: int | None) -> Ctx:
    ctx.tenant_id = tenant_id
    return ctx


def build_router(deps: ApiDeps) -> APIRouter:
    router = APIRouter(prefix="/v1")
    CtxDep = _context(deps)
    _mount_whoami(router, CtxDep)
    _mount_tenants(router, CtxDep)
    _mount_numbers(router, CtxDep)
    _mount_money(router, CtxDep)
    _mount_statement_and_reports(router, CtxDep)
    _mount_live_calls(router, CtxDep)
    _mount_cards(router, CtxDep)
    _mount_tokens(router, CtxDep)
    _mount_click_to_dial(router, CtxDep, deps)
    for res in catalog.TENANT_RESOURCES + catalog.PLATFORM_RESOURCES:
        _mount(router, res, CtxDep)
    router.include_router(build_compliance_router(deps.pool, deps.clock))
    router.include_router(build_oversight_router(deps.pool, deps.clock))
    router.include_router(build_notify_router(deps.pool, deps.clock))
    router.include_router(build_orders_router(deps.pool, deps.clock))
    return router


# ---------------------------------------------------------------------- who am I
class WhoAmI(BaseModel):
    user_id: int | None
    name: str
    role: str
    tenant_id: int | None


def _mount_whoami(router: APIRouter, CtxDep: Any) -> None:  # noqa: N803 - a type alias
    @router.get("/whoami", response_model=WhoAmI, tags=["auth"])
    async def whoami(ctx: CtxDep) -> WhoAmI:
        p: Principal = ctx.actor
        return WhoAmI(user_id=p.user_id, name=p.name, role=p.role.value, tenant_id=p.tenant_id)


# ---------------------------------------------------------------------- tenants
def _mount_tenants(router: APIRouter, CtxDep: Any) -> None:  # noqa: N803 - a type alias
    TenantPage = _page_model(TenantRead, "Tenant")

    @router.get("/tenants", response_model=TenantPage, tags=["tenants"])
    async def list_tenants(
        ctx: CtxDep, limit: Limit = 50, after: After = None, state: str | None = None
    ) -> Any:
        items, nxt = await tenants.list_tenants(ctx, limit, after, state)
        return {"items": items, "next_after": nxt}

    @router.post("/tenants", response_model=TenantRead, status_code=201, tags=["tenants"])
    async def create_tenant(ctx: CtxDep, data: TenantCreate, response: Response) -> Any:
        out = await tenants.create_tenant(ctx, data)
        response.headers["ETag"] = _etag(out.version)
        return out

    @router.get("/tenants/{tenant_id}", response_model=TenantRead, tags=["tenants"])
    async def get_tenant(ctx: CtxDep, tenant_id: IdPath, response: Response) -> Any:
        out = await tenants.get_tenant(ctx, tenant_id)
        response.headers["ETag"] = _etag(out.version)
        return out

    @router.patch("/tenants/{tenant_id}", response_model=TenantRead, tags=["tenants"])
    async def update_tenant(
        ctx: CtxDep,
        tenant_id: IdPath,
        data: TenantUpdate,
        response: Response,
        if_match: Annotated[str | None, Header()] = None,
    ) -> Any:
        out = await tenants.update_tenant(ctx, tenant_id, data, _if_match(if_match))
        response.headers["ETag"] = _etag(out.version)
        return out

    for action in tenants.TENANT_TRANSITIONS:

        def _make(action: str) -> Callable[..., Any]:
            async def change_state(ctx: CtxDep, tenant_id: IdPath) -> Any:
                return await tenants.change_tenant_state(ctx, tenant_id, action)

            change_state.__name__ = f"{action}_tenant"
            return change_state

        router.add_api_route(
            f"/tenants/{{tenant_id}}/{action}",
            _make(action),
            methods=["POST"],
            response_model=TenantRead,
            tags=["tenants"],
            summary=f"{action.capitalize()} a tenant",
        )


# ---------------------------------------------------------------------- numbers
def _mount_numbers(router: APIRouter, CtxDep: Any) -> None:  # noqa: N803 - a type alias
    @router.post(
        "/tenants/{tenant_id}/numbers",
        response_model=NumberRead,
        status_code=201,
        tags=["numbers"],
        summary="Assign a number (from the pool or new); it starts reserved",
    )
    async def assign_number(ctx: CtxDep, tenant_id: IdPath, data: NumberCreate) -> Any:
        return await numbers.assign_number(_scoped(ctx, tenant_id), data)

    @router.post(
        "/tenants/{tenant_id}/numbers/{number_id}/{action}",
        response_model=NumberRead,
        tags=["numbers"],
        summary="Life cycle: submit, approve, suspend, resume, release",
    )
    async def number_action(
        ctx: CtxDep,
        tenant_id: IdPath,
        number_id: IdPath,
        action: Annotated[str, Path(pattern="^(submit|approve|suspend|resume|release)$")],
    ) -> Any:
        return await numbers.number_action(_scoped(ctx, tenant_id), number_id, action)


# ---------------------------------------------------------------------- money
def _mount_money(router: APIRouter, CtxDep: Any) -> None:  # noqa: N803 - a type alias
    @router.get(
        "/tenants/{tenant_id}/account",
        response_model=AccountRead,
        tags=["money"],
        summary="The prepaid account: balance, credit, reserved money, channels and included seconds",
    )
    async def get_account(ctx: CtxDep, tenant_id: IdPath) -> Any:
        return await money.get_account(_scoped(ctx, tenant_id))

    @router.post(
        "/tenants/{tenant_id}/recharges",
        response_model=LedgerRead,
        status_code=201,
        tags=["money"],
        summary="Credit the prepaid account (idempotent on Idempotency-Key)",
    )
    async def recharge(
        ctx: CtxDep,
        tenant_id: IdPath,
        data: RechargeCreate,
        response: Response,
        idempotency_key: IdempotencyKey,
    ) -> Any:
        entry, created = await money.recharge(_scoped(ctx, tenant_id), data, idempotency_key)
        if not created:
            response.status_code = 200
        return entry

    RechargePage = _page_model(RechargeRead, "Recharge")

    @router.get(
        "/tenants/{tenant_id}/recharges",
        response_model=RechargePage,
        tags=["money"],
        summary="Recharge records: the ledger's recharge entries, by card or by an operator",
    )
    async def list_recharges(ctx: CtxDep, tenant_id: IdPath, limit: Limit = 50, after: After = None) -> Any:
        items, nxt = await reports.recharges(_scoped(ctx, tenant_id), limit, after)
        return {"items": items, "next_after": nxt}

    @router.post(
        "/tenants/{tenant_id}/card-redemptions",
        response_model=LedgerRead,
        status_code=201,
        tags=["money"],
        summary="Redeem a recharge card into the account (idempotent on Idempotency-Key)",
        description='A refused card answers 422 `card_refused`: "card invalid or already used".',
    )
    async def redeem_card(
        ctx: CtxDep,
        tenant_id: IdPath,
        data: CardRedemptionCreate,
        response: Response,
        idempotency_key: IdempotencyKey,
    ) -> Any:
        entry, created = await cards.redeem_for(
            _scoped(ctx, tenant_id), data.card_number, data.pin, idempotency_key
        )
        if not created:
            response.status_code = 200
        return entry


def _mount_statement_and_reports(router: APIRouter, CtxDep: Any) -> None:  # noqa: N803 - a type alias
    @router.get(
        "/tenants/{tenant_id}/statement",
        response_model=StatementRead,
        tags=["money"],
        summary="Statement of a period: ledger entries, opening and closing balance, sums by kind",
        description="Days in the tenant's time zone; entries are paged with limit/after.",
    )
    async def get_statement(
        ctx: CtxDep,
        tenant_id: IdPath,
        from_date: FromDate,
        to_date: ToDate,
        limit: Annotated[int, Query(ge=1, le=5000, description="entries per page")] = 500,
        after: After = None,
    ) -> Any:
        return await reports.statement(_scoped(ctx, tenant_id), from_date, to_date, limit, after)

    for granularity, path in (("day", "daily"), ("month", "monthly")):

        def _report(granularity: Literal["day", "month"], path: str) -> Callable[..., Any]:
            async def report(ctx: CtxDep, tenant_id: IdPath, from_date: FromDate, to_date: ToDate) -> Any:
                return await reports.call_report(_scoped(ctx, tenant_id), granularity, from_date, to_date)

            report.__name__ = f"{path}_report"
            return report

        router.add_api_route(
            f"/tenants/{{tenant_id}}/reports/{path}",
            _report(granularity, path),  # type: ignore[arg-type]
            methods=["GET"],
            response_model=ReportRead,
            tags=["reports"],
            summary=f"Calls, minutes, amount, ASR and ACD per {granularity} (the tenant's time zone)",
            description=f"At most {reports.MAX_DAYS[granularity]} days from `from` to `to`.",
        )


# ---------------------------------------------------------------------- live calls
def _mount_live_calls(router: APIRouter, CtxDep: Any) -> None:  # noqa: N803 - a type alias
    # Before the generic /calls/{item_id}, which would take "live" for an id.
    @router.get(
        "/tenants/{tenant_id}/calls/live",
        response_model=LiveCallsRead,
        tags=["calls"],
        summary="The tenant's calls not ended yet (decided within the last 6 hours)",
    )
    async def live_calls(ctx: CtxDep, tenant_id: IdPath) -> Any:
        return await reports.live_calls(_scoped(ctx, tenant_id))


# ---------------------------------------------------------------------- recharge cards
def _mount_cards(router: APIRouter, CtxDep: Any) -> None:  # noqa: N803 - a type alias
    CardBatchPage = _page_model(CardBatchRead, "CardBatch")

    @router.post(
        "/recharge-card-batches",
        response_model=CardBatchIssued,
        status_code=201,
        tags=["recharge cards"],
        summary="Generate a batch of recharge cards; the PINs are in this response only",
    )
    async def create_card_batch(ctx: CtxDep, data: CardBatchCreate) -> Any:
        batch, issued = await cards.generate_batch(
            ctx, data.count, data.face_value, data.expires_at, data.note
        )
        return {**batch.model_dump(), "cards": [{"card_number": n, "pin": p} for n, p in issued]}

    @router.get(
        "/recharge-card-batches",
        response_model=CardBatchPage,
        tags=["recharge cards"],
        summary="List batches",
    )
    async def list_card_batches(ctx: CtxDep, limit: Limit = 50, after: After = None) -> Any:
        items, nxt = await cards.list_batches(ctx, limit, after)
        return {"items": items, "next_after": nxt}


# ---------------------------------------------------------------------- tokens
def _mount_tokens(router: APIRouter, CtxDep: Any) -> None:  # noqa: N803 - a type alias
    @router.post("/users/{user_id}/tokens", response_model=TokenIssued, status_code=201, tags=["users"])
    async def issue_token(ctx: CtxDep, user_id: IdPath, data: TokenCreate) -> Any:
        return await users.issue_token(ctx, user_id, data)

    @router.delete("/tokens/{token_id}", response_model=TokenRead, tags=["users"])
    async def revoke_token(ctx: CtxDep, token_id: IdPath) -> Any:
        return await users.revoke_token(ctx, token_id)


# ---------------------------------------------------------------------- click-to-dial
CallId = Annotated[str, Path(pattern=r"^c2d-[0-9]{1,16}-[0-9a-f]{16}$")]


def _mount_click_to_dial(router: APIRouter, CtxDep: Any, deps: ApiDeps) -> None:  # noqa: N803 - a type alias
    profile = getattr(getattr(deps.settings, "freeswitch", None), "phones_profile", "phones")

    @router.post(
        "/tenants/{tenant_id}/click-to-dial",
        response_model=ClickToDialRead,
        status_code=202,
        tags=["customers"],
        summary="Click-to-dial: ring the agent's extension, then the customer through the outbound path",
        description="Answers at once (the call is placed asynchronously); follow it with GET "
        "…/click-to-dial/{call_id}. A refusal names its reason code in `type` (EXTENSION_UNKNOWN, "
        "EXTENSION_NOT_REGISTERED, TENANT_SUSPENDED, NO_BALANCE, CHANNEL_LIMIT, INVALID_NUMBER, "
        "BLACKLISTED, ENGINE_UNAVAILABLE, ...).",
    )
    async def place_call(ctx: CtxDep, tenant_id: IdPath, data: ClickToDialCreate) -> Any:
        return await click_to_dial.place_call(
            _scoped(ctx, tenant_id), deps.ami, data, deps.esl, profile, deps.registry
        )

    @router.get(
        "/tenants/{tenant_id}/click-to-dial/{call_id}",
        response_model=ClickToDialRead,
        tags=["customers"],
        summary="Where a click-to-dial call stands (ringing_agent, calling_customer, connected, ended, "
        "agent_no_answer, refused with the call path's reason, failed)",
    )
    async def call_state(ctx: CtxDep, tenant_id: IdPath, call_id: CallId) -> Any:
        return await click_to_dial.call_state(_scoped(ctx, tenant_id), deps.registry, call_id)


# ---------------------------------------------------------------------- generic resources
@dataclass(frozen=True)
class _Mounting:
    """Where a catalog resource's routes go: its base path and the name its page model and
    routes carry. Its tenant scope (a dependency) is passed alongside, as `Scope`."""

    res: Resource
    base: str
    page_name: str


def _mounting(res: Resource) -> tuple[_Mounting, Any]:
    if res.tenant_scoped:
        base = f"/tenants/{{tenant_id}}/{res.name}"
        page_name = f"Tenant{res.read_model.__name__}{res.name.title().replace('-', '')}"

        def tenant_scope(tenant_id: IdPath) -> int | None:
            return tenant_id

        return _Mounting(res, base, page_name), Annotated[int | None, Depends(tenant_scope)]
    base = f"/{res.name}"
    page_name = f"Platform{res.read_model.__name__}{res.name.title().replace('-', '')}"

    def platform_scope() -> int | None:
        return None

    return _Mounting(res, base, page_name), Annotated[int | None, Depends(platform_scope)]


def _mount(router: APIRouter, res: Resource, CtxDep: Any) -> None:  # noqa: N803 - a type alias
    m, Scope = _mounting(res)
    _mount_reads(router, m, CtxDep, Scope)
    if res.create_model is not None:
        _mount_create(router, m, CtxDep, Scope)
    if res.update_model is not None:
        _mount_update(router, m, CtxDep, Scope)
    if res.deletable and res.create_model is not None:
        _mount_delete(router, m, CtxDep, Scope)


def _mount_reads(router: APIRouter, m: _Mounting, CtxDep: Any, Scope: Any) -> None:  # noqa: N803 - type aliases
    res = m.res
    Read = res.read_model
    Page = _page_model(Read, m.page_name)
    filters_doc = f"Filters (exact match): {', '.join(res.filters)}." if res.filters else ""

    async def list_(
        ctx: CtxDep, request: Request, tenant_id: Scope, limit: Limit = 50, after: After = None
    ) -> Any:
        ctx.tenant_id = tenant_id
        items, nxt = await engine.list_rows(ctx, res, dict(request.query_params), limit, after)
        return {"items": items, "next_after": nxt}

    async def get_(ctx: CtxDep, tenant_id: Scope, item_id: IdPath, response: Response) -> Any:
        ctx.tenant_id = tenant_id
        out = await engine.get_row(ctx, res, item_id)
        if hasattr(out, "version"):
            response.headers["ETag"] = _etag(out.version)
        return out

    router.add_api_route(
        m.base,
        list_,
        methods=["GET"],
        response_model=Page,
        tags=[res.name],
        summary=f"List {res.name}",
        description=filters_doc,
        name=f"list_{m.page_name}",
    )
    router.add_api_route(
        f"{m.base}/{{item_id}}",
        get_,
        methods=["GET"],
        response_model=Read,
        tags=[res.name],
        summary=f"Read one of {res.name}",
        name=f"get_{m.page_name}",
    )


def _mount_create(router: APIRouter, m: _Mounting, CtxDep: Any, Scope: Any) -> None:  # noqa: N803 - type aliases
    res = m.res
    CreateModel = res.create_model

    async def create_(ctx: CtxDep, tenant_id: Scope, data: CreateModel, response: Response) -> Any:  # type: ignore[valid-type]
        ctx.tenant_id = tenant_id
        out = await engine.create_row(ctx, res, data)
        response.headers["ETag"] = _etag(out.version)  # type: ignore[attr-defined]
        return out

    router.add_api_route(
        m.base,
        create_,
        methods=["POST"],
        response_model=res.read_model,
        status_code=201,
        tags=[res.name],
        summary=f"Create one of {res.name}",
        name=f"create_{m.page_name}",
    )


def _mount_update(router: APIRouter, m: _Mounting, CtxDep: Any, Scope: Any) -> None:  # noqa: N803 - type aliases
    res = m.res
    UpdateModel = res.update_model

    async def update_(
        ctx: CtxDep,
        tenant_id: Scope,
        item_id: IdPath,
        data: UpdateModel,  # type: ignore[valid-type]
        response: Response,
        if_match: Annotated[str | None, Header()] = None,
    ) -> Any:
        ctx.tenant_id = tenant_id
        out = await engine.update_row(ctx, res, item_id, data, _if_match(if_match))
        response.headers["ETag"] = _etag(out.version)  # type: ignore[attr-defined]
        return out

    router.add_api_route(
        f"{m.base}/{{item_id}}",
        update_,
        methods=["PATCH"],
        response_model=res.read_model,
        tags=[res.name],
        summary=f"Change one of {res.name} (If-Match required)",
        name=f"update_{m.page_name}",
    )


def _mount_delete(router: APIRouter, m: _Mounting, CtxDep: Any, Scope: Any) -> None:  # noqa: N803 - type aliases
    res = m.res

    async def delete_(
        ctx: CtxDep, tenant_id: Scope, item_id: IdPath, if_match: Annotated[str | None, Header()] = None
    ) -> Response:
        ctx.tenant_id = tenant_id
        await engine.delete_row(ctx, res, item_id, _if_match(if_match))
        return Response(status_code=204)

    router.add_api_route(
        f"{m.base}/{{item_id}}",
        delete_,
        methods=["DELETE"],
        status_code=204,
        tags=[res.name],
        summary=f"Delete one of {res.name} (If-Match required)",
        name=f"delete_{m.page_name}",
        response_class=Response,
    )
