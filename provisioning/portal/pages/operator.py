"""The operator's console beyond its home: tenants and their onboarding documents against
the 7-day deadline (review, approve, reject), number approval, tenant suspension, the
package catalogue and the platform's notices. Every action is the service layer's own
(tenants.py, numbers.py, engine.update_row on DOCUMENTS), so the API's rules and audit
apply unchanged."""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations, and
# `PageDep` is a type chosen when the portal mounts the module.

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Query
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from provisioning import catalog, money, notices, numbers, tenants
from provisioning.engine import ProvisioningError, list_rows, update_row
from provisioning.portal.web import NavItem, Page, field_errors, validation_errors
from provisioning.schemas import MAX_ID, DocumentUpdate, TenantCreate

NAV = (
    NavItem("ops", "tenants", "Tenants", 10),
    NavItem("ops", "numbers", "Number approval", 20),
    NavItem("ops", "packages", "Packages", 30),
    NavItem("ops", "notices", "Notices", 40),
)

After = Annotated[int | None, Query(ge=1, le=MAX_ID)]


def _scoped(page: Page, tenant_id: int) -> Page:
    page.ctx.tenant_id = tenant_id
    return page


async def _tenant_view(
    page: Page, tenant_id: int, errors: dict[str, str] | None = None, status: int = 200
) -> Any:
    tenant = await tenants.get_tenant(page.ctx, tenant_id)
    _scoped(page, tenant_id)
    docs, _next = await list_rows(page.ctx, catalog.DOCUMENTS, {}, 100, None)
    nums, _next = await list_rows(page.ctx, numbers.TENANT_NUMBERS, {}, 100, None)
    tenant_notices, _next = await list_rows(page.ctx, catalog.NOTICES, {}, 20, None)
    board = (await tenants.onboarding(page.ctx, [tenant_id])).get(tenant_id)
    return page.render(
        "ops/tenant.html",
        status=status,
        tenant=tenant,
        account=await money.get_account(page.ctx),
        documents=docs,
        numbers=nums,
        notices=list(reversed(tenant_notices)),
        board=board,
        errors=errors or {},
    )


def mount_ops(router: APIRouter, PageDep: Any) -> None:  # noqa: N803 - a type alias
    @router.get("/tenants", response_class=HTMLResponse)
    async def tenant_list(
        page: PageDep,
        state: Literal["", "active", "suspended", "terminated"] = "",
        q: Annotated[str, Query(max_length=100)] = "",
        after: After = None,
    ) -> HTMLResponse:
        rows, next_after = await tenants.list_tenants(page.ctx, 50, after, state or None, q.strip() or None)
        board = await tenants.onboarding(page.ctx, [t.id for t in rows])
        return page.render(
            "ops/tenants.html",
            tenants=rows,
            board=board,
            state=state,
            next_after=next_after,
            errors={},
            form={},
        )

    @router.post("/tenants", response_class=HTMLResponse)
    async def tenant_create(
        page: PageDep,
        name: Annotated[str, Form(max_length=300)] = "",
        timezone: Annotated[str, Form(max_length=64)] = "Asia/Shanghai",
        business_category: Annotated[str, Form(max_length=60)] = "general",
        paid: Annotated[str, Form(max_length=5)] = "",
    ) -> Response:
        form = {"name": name, "timezone": timezone, "business_category": business_category, "paid": paid}
        try:
            data = TenantCreate(
                name=name,
                timezone=timezone,
                business_category=business_category,
                paid_at=page.ctx.clock.now() if paid else None,
            )
            created = await tenants.create_tenant(page.ctx, data)
        except ValidationError as exc:
            errors = validation_errors(exc)
        except ProvisioningError as exc:
            errors = field_errors(exc)
        else:
            return page.redirect(f"{page.base}/tenants/{created.id}")
        rows, next_after = await tenants.list_tenants(page.ctx, 50, None, None)
        board = await tenants.onboarding(page.ctx, [t.id for t in rows])
        return page.render(
            "ops/tenants.html",
            status=422,
            tenants=rows,
            board=board,
            state="",
            q="",
            next_after=next_after,
            errors=errors,
            form=form,
        )

    @router.get("/tenants/{tenant_id}", response_class=HTMLResponse)
    async def tenant_detail(page: PageDep, tenant_id: int) -> HTMLResponse:
        return await _tenant_view(page, tenant_id)

    @router.post("/tenants/{tenant_id}/state/{action}", response_class=HTMLResponse)
    async def tenant_state(
        page: PageDep, tenant_id: int, action: Literal["suspend", "resume", "terminate"]
    ) -> Response:
        try:
            await tenants.change_tenant_state(page.ctx, tenant_id, action)
        except ProvisioningError as exc:
            return await _tenant_view(page, tenant_id, {"state": exc.message}, exc.status)
        return page.redirect(f"{page.base}/tenants/{tenant_id}")

    @router.post("/tenants/{tenant_id}/documents/{document_id}", response_class=HTMLResponse)
    async def review_document(
        page: PageDep,
        tenant_id: int,
        document_id: int,
        status: Annotated[Literal["approved", "rejected"], Form()],
        version: Annotated[int, Form(ge=1)],
        note: Annotated[str, Form(max_length=500)] = "",
    ) -> Response:
        _scoped(page, tenant_id)
        change = DocumentUpdate(status=status, note=note) if note else DocumentUpdate(status=status)
        try:
            await update_row(page.ctx, catalog.DOCUMENTS, document_id, change, version)
        except ProvisioningError as exc:
            return await _tenant_view(page, tenant_id, {f"document-{document_id}": exc.message}, exc.status)
        return page.redirect(f"{page.base}/tenants/{tenant_id}")

    @router.post("/tenants/{tenant_id}/numbers/{number_id}/{action}", response_class=HTMLResponse)
    async def number_action(
        page: PageDep,
        tenant_id: int,
        number_id: int,
        action: Literal["approve", "suspend", "resume"],
        back: Annotated[str, Form(max_length=20)] = "",
    ) -> Response:
        _scoped(page, tenant_id)
        try:
            await numbers.number_action(page.ctx, number_id, action)
        except ProvisioningError as exc:
            if back == "numbers":
                return await _pending_view(page, {f"number-{number_id}": exc.message}, exc.status)
            return await _tenant_view(page, tenant_id, {f"number-{number_id}": exc.message}, exc.status)
        target = f"{page.base}/numbers" if back == "numbers" else f"{page.base}/tenants/{tenant_id}"
        return page.redirect(target)

    async def _pending_view(page: Page, errors: dict[str, str] | None = None, status: int = 200) -> Any:
        page.ctx.tenant_id = None
        rows, _next = await list_rows(
            page.ctx, catalog.POOL_NUMBERS, {"state": "pending_approval"}, 100, None
        )
        ids = sorted({r.tenant_id for r in rows if r.tenant_id is not None})  # type: ignore[attr-defined]
        board = await tenants.onboarding(page.ctx, ids)
        names = {
            r["id"]: r["name"]
            for r in await page.ctx.conn.fetch(
                "SELECT id, name FROM tenants WHERE id = ANY($1::bigint[])", ids
            )
        }
        return page.render(
            "ops/numbers.html", status=status, numbers=rows, board=board, names=names, errors=errors or {}
        )

    @router.get("/numbers", response_class=HTMLResponse)
    async def pending_numbers(page: PageDep) -> HTMLResponse:
        return await _pending_view(page)

    @router.get("/packages", response_class=HTMLResponse)
    async def package_list(page: PageDep) -> HTMLResponse:
        rows, _next = await list_rows(page.ctx, catalog.PACKAGES, {}, 200, None)
        return page.render("ops/packages.html", packages=rows)

    @router.get("/notices", response_class=HTMLResponse)
    async def notice_list(
        page: PageDep, kind: Annotated[str, Query(max_length=60)] = "", before: After = None
    ) -> HTMLResponse:
        items, older = await notices.platform_notices(page.ctx, kind or None, 50, before)
        return page.render(
            "ops/notices.html",
            notices=items,
            kinds=await notices.notice_kinds(page.ctx),
            kind=kind,
            older=older,
            now=page.ctx.clock.now(),
        )
