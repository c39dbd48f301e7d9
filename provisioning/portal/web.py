"""The portal's HTTP plumbing: sign-in and sign-out, the session and CSRF checks, the
`Page` a handler works with (a service-layer `Ctx` for the signed-in principal, the
language, a render helper), HTML error pages, and the static files.

Feature pages live in `provisioning/portal/pages/<feature>.py`; each declares its
navigation entries and mounts its routes on the router this module builds:
  /portal/t/{tenant_id}/...   an enterprise's pages (a tenant's users see only their own)
  /portal/ops/...             the operator's console (operator roles only)"""

# No `from __future__ import annotations`: FastAPI reads the dependencies' annotations,
# which name functions made inside build_portal.

import secrets
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

import asyncpg
from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from provisioning.api import error_response
from provisioning.engine import Ctx, NotFound, ProvisioningError
from provisioning.portal import auth
from provisioning.portal.i18n import LANGUAGES, Translate, pick_language, translator
from provisioning.roles import Principal
from softswitch.core.clock import Clock
from softswitch.core.masking import mask_number

PREFIX = "/portal"
HERE = Path(__file__).parent
SESSION_COOKIE = "ss_portal"
LANG_COOKIE = "ss_lang"
LOGIN_CSRF_COOKIE = "ss_login_csrf"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class PortalDeps:
    """What the portal's pages act with (the composition root builds it)."""

    pool: asyncpg.Pool
    clock: Clock
    settings: Any = None
    registry: Any = None  # softswitch.callpath.registry.CallRegistry: live calls, platform-wide
    ami: Any = None  # the AMI client (click-to-dial originates through Asterisk)
    esl: Any = None  # the Event Socket client, when FreeSWITCH is driven

    @property
    def secure_cookies(self) -> bool:
        http = getattr(self.settings, "http", None)
        return bool(getattr(http, "secure_cookies", False))


@dataclass(frozen=True)
class NavItem:
    """One entry of the menu: `scope` "tenant" (under /portal/t/{id}/) or "ops" (under
    /portal/ops/); `path` is relative to it; `label` an English source string."""

    scope: str
    path: str
    label: str
    order: int = 100


# ------------------------------------------------------------------------ formatting
def money(value: Decimal | int | float | str | None) -> str:
    """CNY with two decimals and thousands separators; the value is never rounded twice:
    amounts reach the page already rounded by the ledger."""
    if value is None:
        return "—"
    d = Decimal(str(value))
    return f"¥{d:,.2f}" if d >= 0 else f"-¥{-d:,.2f}"


def local_time(value: datetime | None, tz: str, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    if value is None:
        return "—"
    return value.astimezone(ZoneInfo(tz)).strftime(fmt)


def duration(seconds: int | None) -> str:
    if seconds is None:
        return "—"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.filters["money"] = money
templates.env.filters["duration"] = duration
templates.env.filters["masked"] = mask_number
templates.env.autoescape = True


# ------------------------------------------------------------------------ the page
@dataclass
class Page:
    """A signed-in request: the service layer's `Ctx` (its connection, the principal, the
    clock; `tenant_id` set on tenant pages), the session's CSRF token and the language."""

    request: Request
    ctx: Ctx
    session: auth.ActiveSession
    lang: str
    deps: PortalDeps
    nav: list[NavItem]
    tenant: Any = None  # the tenant row on tenant pages

    @property
    def _(self) -> Translate:
        return translator(self.lang)

    @property
    def who(self) -> Principal:
        return self.ctx.actor

    @property
    def tz(self) -> str:
        return str(self.tenant["timezone"]) if self.tenant is not None else "Asia/Shanghai"

    @property
    def base(self) -> str:
        """Where this page's scope lives: /portal/t/{id} or /portal/ops."""
        return f"{PREFIX}/t/{self.ctx.tenant_id}" if self.tenant is not None else f"{PREFIX}/ops"

    @property
    def is_htmx(self) -> bool:
        return self.request.headers.get("hx-request") == "true"

    def render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        scope = "tenant" if self.tenant is not None else "ops"
        menu = [n for n in self.nav if n.scope == scope]
        return templates.TemplateResponse(
            self.request,
            template,
            {
                "page": self,
                "_": self._,
                "lang": self.lang,
                "csrf": self.session.csrf,
                "menu": sorted(menu, key=lambda n: n.order),
                "tz": self.tz,
                "at": lambda v, fmt="%Y-%m-%d %H:%M:%S": local_time(v, self.tz, fmt),
                **context,
            },
            status_code=status,
        )

    def redirect(self, path: str) -> Response:
        """After a successful POST: see the result (303); htmx follows HX-Redirect."""
        if self.is_htmx:
            return Response(status_code=204, headers={"HX-Redirect": path})
        return RedirectResponse(path, status_code=303)


def validation_errors(
    exc: ValidationError, hints: Mapping[str, str] | None = None, fields: Collection[str] | None = None
) -> dict[str, str]:
    """A form model's refusal as {field: message}, the first problem of each field; `hints`
    replace pydantic's English with the page's words; a field not in `fields` (when given)
    goes under "" (the form's own error line)."""
    out: dict[str, str] = {}
    for err in exc.errors():
        name = str(err["loc"][0]) if err["loc"] else ""
        if fields is not None and name not in fields:
            name = ""
        out.setdefault(name, (hints or {}).get(name, err["msg"]))
    return out


def field_errors(exc: ProvisioningError) -> dict[str, str]:
    """A service-layer refusal as {field: message} for the form that caused it
    ("definition.rules.0.province" -> "definition"); unnamed problems go under ""."""
    name = (exc.field or "").split(".")[0]
    return {name: exc.message}


# ------------------------------------------------------------------------ plumbing
class _SignIn(Exception):
    """No valid session: go to the login page (and come back)."""


class _CsrfRefused(Exception):
    pass


def _safe_next(value: str | None) -> str:
    """Only a path of this portal: never an open redirect."""
    if not value or not value.startswith(PREFIX + "/") or value.startswith("//"):
        return PREFIX + "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return PREFIX + "/"
    return value


def _language(request: Request) -> str:
    return pick_language(request.cookies.get(LANG_COOKIE), request.headers.get("accept-language"))


def _error_page(request: Request, status: int, message: str) -> HTMLResponse:
    lang = _language(request)
    return templates.TemplateResponse(
        request,
        "error.html",
        {"_": translator(lang), "lang": lang, "status": status, "message": message, "page": None},
        status_code=status,
    )


def build_portal(deps: PortalDeps, modules: tuple[Any, ...]) -> APIRouter:
    router = APIRouter(prefix=PREFIX, include_in_schema=False)
    nav = [item for m in modules for item in getattr(m, "NAV", ())]

    async def signed_in(request: Request) -> AsyncIterator[Page]:
        async with deps.pool.acquire() as conn:
            now = deps.clock.now()
            session = await auth.session_of(conn, request.cookies.get(SESSION_COOKIE), now)
            if session is None:
                raise _SignIn()
            if request.method not in _SAFE_METHODS:
                sent = request.headers.get(CSRF_HEADER)
                if sent is None and "form" in request.headers.get("content-type", ""):
                    sent = str((await request.form()).get(CSRF_FIELD) or "")
                if not auth.csrf_ok(session.csrf, sent):
                    raise _CsrfRefused()
            ctx = Ctx(conn, session.principal, deps.clock, settings=deps.settings)
            yield Page(request, ctx, session, _language(request), deps, nav)

    async def tenant_page(tenant_id: int, page: Annotated[Page, Depends(signed_in)]) -> Page:
        # Another tenant's pages do not exist, as far as a tenant's user can tell.
        if not page.who.sees_tenant(tenant_id):
            raise NotFound(f"tenant {tenant_id} not found", "tenant_id")
        row = await page.ctx.conn.fetchrow("SELECT * FROM tenants WHERE id = $1", tenant_id)
        if row is None:
            raise NotFound(f"tenant {tenant_id} not found", "tenant_id")
        page.ctx.tenant_id = tenant_id
        page.tenant = row
        return page

    async def ops_page(page: Annotated[Page, Depends(signed_in)]) -> Page:
        if not page.who.is_operator:
            raise NotFound("no such page", "path")
        return page

    _mount_sign_in(router, deps, signed_in)
    tenant_router = APIRouter(prefix="/t/{tenant_id}")
    ops_router = APIRouter(prefix="/ops")
    for module in modules:
        if hasattr(module, "mount_tenant"):
            module.mount_tenant(tenant_router, Annotated[Page, Depends(tenant_page)])
        if hasattr(module, "mount_ops"):
            module.mount_ops(ops_router, Annotated[Page, Depends(ops_page)])
    router.include_router(tenant_router)
    router.include_router(ops_router)
    return router


def _mount_sign_in(router: APIRouter, deps: PortalDeps, signed_in: Callable[..., Any]) -> None:
    def login_form(request: Request, error: str = "", status: int = 200, username: str = "") -> HTMLResponse:
        lang = _language(request)
        token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)
        resp = templates.TemplateResponse(
            request,
            "login.html",
            {
                "_": translator(lang),
                "lang": lang,
                "page": None,
                "error": error,
                "username": username,
                "login_csrf": token,
                "next": _safe_next(request.query_params.get("next")),
            },
            status_code=status,
        )
        resp.set_cookie(
            LOGIN_CSRF_COOKIE,
            token,
            httponly=True,
            samesite="strict",
            secure=deps.secure_cookies,
            path=PREFIX,
        )
        return resp

    @router.get("/login")
    async def login_page(request: Request) -> HTMLResponse:
        return login_form(request)

    @router.post("/login")
    async def login(
        request: Request,
        username: Annotated[str, Form(max_length=64)] = "",
        password: Annotated[str, Form(max_length=200)] = "",
        login_csrf: Annotated[str, Form(max_length=100)] = "",
        next: Annotated[str, Form(max_length=500)] = "",  # noqa: A002 - the form's field
    ) -> Response:
        _ = translator(_language(request))
        if not auth.csrf_ok(request.cookies.get(LOGIN_CSRF_COOKIE, ""), login_csrf):
            return login_form(request, _("The form expired; please sign in again."), 403, username)
        if not username or not password:
            return login_form(request, _("Enter your username and password."), 422, username)
        async with deps.pool.acquire() as conn:
            try:
                session = await auth.login(conn, username, password, deps.clock.now())
            except auth.LoginRefused as exc:
                if exc.reason == "locked" and exc.until is not None:
                    until = local_time(exc.until, "Asia/Shanghai", "%H:%M")
                    msg = _("Too many failed attempts: this account is locked until {until}.", until=until)
                    return login_form(request, msg, 429, username)
                if exc.reason == "disabled":
                    return login_form(request, _("This account is disabled."), 403, username)
                return login_form(request, _("Wrong username or password."), 401, username)
        who = session.principal
        target = _safe_next(next)
        if target == PREFIX + "/":
            target = home_of(who)
        resp = RedirectResponse(target, status_code=303)
        resp.set_cookie(
            SESSION_COOKIE,
            session.token,
            max_age=int(auth.SESSION_LIFETIME.total_seconds()),
            httponly=True,
            samesite="strict",
            secure=deps.secure_cookies,
            path=PREFIX,
        )
        resp.delete_cookie(LOGIN_CSRF_COOKIE, path=PREFIX)
        return resp

    @router.post("/logout")
    async def logout(page: Annotated[Page, Depends(signed_in)]) -> Response:
        await auth.logout(page.ctx.conn, page.session.id, deps.clock.now())
        resp = RedirectResponse(PREFIX + "/login", status_code=303)
        resp.delete_cookie(SESSION_COOKIE, path=PREFIX)
        return resp

    @router.get("/")
    async def home(page: Annotated[Page, Depends(signed_in)]) -> Response:
        return RedirectResponse(home_of(page.who), status_code=303)

    @router.get("/lang/{lang}")
    async def switch_language(request: Request, lang: str) -> Response:
        if lang not in LANGUAGES:
            return _error_page(request, 404, "no such language")
        back = _safe_next(request.query_params.get("next"))
        resp = RedirectResponse(back, status_code=303)
        resp.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="lax", path=PREFIX)
        return resp


def home_of(who: Principal) -> str:
    if who.is_operator:
        return f"{PREFIX}/ops/"
    return f"{PREFIX}/t/{who.tenant_id}/"


def install(app: FastAPI, deps: PortalDeps, modules: tuple[Any, ...]) -> None:
    """Mount the portal on the service's app: its router, its static files, and error
    handlers that answer HTML under /portal and the API's JSON everywhere else."""
    app.include_router(build_portal(deps, modules))
    app.mount(f"{PREFIX}/static", StaticFiles(directory=str(HERE / "static")), name="portal-static")

    def portal(request: Request) -> bool:
        return request.url.path == PREFIX or request.url.path.startswith(PREFIX + "/")

    async def provisioning_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ProvisioningError)
        if not portal(request):
            return error_response(exc)
        return _error_page(request, exc.status, exc.message)

    async def sign_in(request: Request, exc: Exception) -> Response:
        target = f"{PREFIX}/login?next={quote(request.url.path)}"
        if request.headers.get("hx-request") == "true":
            return Response(status_code=204, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    async def csrf_refused(request: Request, exc: Exception) -> Response:
        return _error_page(request, 403, translator(_language(request))("The form expired; reload the page."))

    async def http_error(request: Request, exc: Exception) -> Response:
        if portal(request) and isinstance(exc, StarletteHTTPException):
            return _error_page(request, exc.status_code, str(exc.detail))
        assert isinstance(exc, StarletteHTTPException)
        return await http_exception_handler(request, exc)

    async def validation_error(request: Request, exc: Exception) -> Response:
        if portal(request) and isinstance(exc, RequestValidationError):
            # A malformed id in a URL is a page that does not exist; a bad form field says which.
            errs = exc.errors()
            if errs and errs[0].get("loc", ("",))[0] == "path":
                return _error_page(request, 404, "no such page")
            names = ", ".join(str(e.get("loc", ("", "?"))[-1]) for e in errs)
            return _error_page(request, 422, f"invalid: {names}")
        assert isinstance(exc, RequestValidationError)
        return await request_validation_exception_handler(request, exc)

    app.add_exception_handler(ProvisioningError, provisioning_error)
    app.add_exception_handler(_SignIn, sign_in)
    app.add_exception_handler(_CsrfRefused, csrf_refused)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
