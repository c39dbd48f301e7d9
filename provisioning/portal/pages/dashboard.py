"""The enterprise's dashboard (balance, package use, calls live now) and the operator
console's home (platform totals, live calls across every tenant)."""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations, and
# `PageDep` is a type chosen when the portal mounts the module.

from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from provisioning import money, reports
from provisioning.portal.web import NavItem, Page

NAV = (
    NavItem("tenant", "", "Dashboard", 0),
    NavItem("ops", "", "Console", 0),
)


async def _package(page: Page) -> Any:
    return await page.ctx.conn.fetchrow(
        """SELECT p.code, p.name, p.monthly_rent, p.channels, p.included_minutes, p.overage_rate,
                  s.starts_on, s.ends_on
           FROM subscriptions s JOIN packages p ON p.id = s.package_id
           WHERE s.tenant_id = $1 AND s.state = 'active'
           ORDER BY s.starts_on DESC LIMIT 1""",
        page.ctx.tenant_id,
    )


def mount_tenant(router: APIRouter, PageDep: Any) -> None:  # noqa: N803 - a type alias
    @router.get("/", response_class=HTMLResponse)
    async def dashboard(page: PageDep) -> HTMLResponse:
        account = await money.get_account(page.ctx)
        live = await reports.live_calls(page.ctx)
        return page.render("tenant/dashboard.html", account=account, live=live, package=await _package(page))

    @router.get("/live-calls", response_class=HTMLResponse)
    async def live_panel(page: PageDep) -> HTMLResponse:
        """The dashboard's live-calls panel, refreshed in place every few seconds (htmx)."""
        return page.render("tenant/_live_calls.html", live=await reports.live_calls(page.ctx))


def mount_ops(router: APIRouter, PageDep: Any) -> None:  # noqa: N803 - a type alias
    @router.get("/", response_class=HTMLResponse)
    async def console(page: PageDep) -> HTMLResponse:
        counts = await page.ctx.conn.fetchrow(
            """SELECT (SELECT count(*) FROM tenants) AS tenants,
                      (SELECT count(*) FROM tenants WHERE state = 'active') AS active_tenants,
                      (SELECT count(*) FROM numbers WHERE state = 'pending_approval') AS pending_numbers,
                      (SELECT count(*) FROM tenant_documents WHERE status = 'submitted')
                        AS documents_to_review"""
        )
        registry = page.deps.registry
        live = registry.live() if registry is not None else []
        return page.render("ops/console.html", counts=counts, live=live)
