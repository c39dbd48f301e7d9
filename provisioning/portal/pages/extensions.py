"""The enterprise's SIP extensions: the list with each phone's live registration (what
Asterisk and FreeSWITCH know right now), and adding, changing and deleting an extension
through the service layer (catalog.EXTENSIONS) with the API's own validation.

The SIP password is never stored (only its digest HA1) and never listed: a password the
portal generates is shown once, on the page that answers the creation."""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations, and
# `PageDep` is a type chosen when the portal mounts the module.

import secrets
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ValidationError

from provisioning import catalog, registrations
from provisioning.engine import (
    Conflict,
    Invalid,
    PreconditionFailed,
    ProvisioningError,
    create_row,
    delete_row,
    get_row,
    list_rows,
    update_row,
)
from provisioning.portal.i18n import Translate
from provisioning.portal.web import NavItem, Page, field_errors, validation_errors
from provisioning.schemas import MAX_ID, ExtensionCreate, ExtensionUpdate

ExtId = Annotated[int, PathParam(ge=1, le=MAX_ID)]

NAV = (NavItem("tenant", "extensions", "Extensions", 60),)

RES = catalog.EXTENSIONS
# What a form answers next to its fields; anything else (not allowed, not found) is a page
# of its own.
FORM_ERRORS = (Invalid, Conflict, PreconditionFailed)
PAGE_SIZE = 200
_FIELDS = ("extension", "display_name", "site", "device_kind", "outbound_caller_id", "recording_policy")


def _hints(_: Translate) -> dict[str, str]:
    """What each field accepts, said in the page's language (the models' rules)."""
    return {
        "extension": _("2 to 6 digits."),
        "display_name": _("At most 80 characters, without quotes, angle brackets or backslashes."),
        "site": _("Lower-case letters, digits, - and _ (at most 40)."),
        "device_kind": _("Choose phone or gateway."),
        "password": _("10 to 128 visible characters, no spaces."),
        "outbound_caller_id": _("Digits only, at most 20."),
        "recording_policy": _("Choose a recording policy."),
    }


def _refusal(page: Page, exc: ProvisioningError, values: Mapping[str, Any]) -> dict[str, str]:
    _ = page._
    # (tenant_id, extension) is unique, and so is the account name made from them
    if isinstance(exc, Conflict) and exc.field in ("extension", "endpoint_id"):
        return {
            "extension": _("Extension {extension} already exists.", extension=values.get("extension", ""))
        }
    fax_refused = exc.field == "fax_allowed" or (exc.field or "").endswith("_check")
    if isinstance(exc, Invalid) and fax_refused and values.get("fax_allowed"):
        return {"fax_allowed": _("A voice gateway carries no fax.")}  # the tariff, and the table's CHECK
    errors = field_errors(exc)
    known = {*_FIELDS, "password", "fax_allowed"}
    return {(k if k in known else ""): v for k, v in errors.items()}


async def _form(page: Page) -> dict[str, str]:
    form = await page.request.form()
    return {k: str(v) for k, v in form.items() if isinstance(v, str)}


def _values(form: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {k: form.get(k, "") for k in _FIELDS if k in form}
    values["recording_policy"] = form.get("recording_policy") or None
    values["fax_allowed"] = form.get("fax_allowed") == "on"
    return values


async def _registrations(page: Page, endpoint_ids: list[str]) -> registrations.Registrations:
    settings = page.deps.settings
    profile = getattr(getattr(settings, "freeswitch", None), "phones_profile", "phones")
    return await registrations.of_endpoints(
        page.deps.ami, page.deps.esl, endpoint_ids, page.ctx.clock.now(), profile
    )


async def _listing(page: Page, after: int | None) -> dict[str, Any]:
    items, next_after = await list_rows(page.ctx, RES, {}, PAGE_SIZE, after)
    regs = await _registrations(page, [str(getattr(e, "endpoint_id", "")) for e in items])
    return {"items": items, "next_after": next_after, "regs": regs, "after": after}


def _may_write(page: Page) -> bool:
    return page.who.may(RES.write_roles)


def mount_tenant(router: APIRouter, PageDep: Any) -> None:  # noqa: N803 - a type alias
    @router.get("/extensions", response_class=HTMLResponse)
    async def extensions(page: PageDep, after: int | None = None) -> HTMLResponse:
        after = after if after is not None and 0 <= after <= MAX_ID else None
        return page.render(
            "tenant/extensions.html", may_write=_may_write(page), **await _listing(page, after)
        )

    @router.get("/extensions/table", response_class=HTMLResponse)
    async def extensions_table(page: PageDep, after: int | None = None) -> HTMLResponse:
        """The list with its registrations, refreshed in place every few seconds (htmx)."""
        after = after if after is not None and 0 <= after <= MAX_ID else None
        return page.render(
            "tenant/_extensions_table.html", may_write=_may_write(page), **await _listing(page, after)
        )

    @router.get("/extensions/new", response_class=HTMLResponse)
    async def new_extension(page: PageDep) -> HTMLResponse:
        values = {"site": "main", "device_kind": "phone"}
        return page.render(
            "tenant/extensions_form.html", ext=None, values=values, errors={}, hints=_hints(page._)
        )

    @router.post("/extensions/new", response_class=HTMLResponse)
    async def create_extension(page: PageDep) -> Response:
        form = await _form(page)
        values = _values(form)
        password = form.get("password", "")
        generated = not password
        data: dict[str, Any] = {**values, "password": password or secrets.token_urlsafe(12)}
        errors: dict[str, str] = {}
        try:
            model: BaseModel = ExtensionCreate.model_validate(data)
        except ValidationError as exc:
            errors = validation_errors(exc, _hints(page._))
        else:
            try:
                created = await create_row(page.ctx, RES, model)
            except FORM_ERRORS as exc:
                errors = _refusal(page, exc, values)
            else:
                # The password's one showing: it is kept only as a digest from now on.
                return page.render(
                    "tenant/extensions_created.html",
                    status=201,
                    ext=created,
                    password=data["password"] if generated else None,
                )
        return page.render(
            "tenant/extensions_form.html",
            status=422,
            ext=None,
            values=values,
            errors=errors,
            hints=_hints(page._),
        )

    @router.get("/extensions/{ext_id}", response_class=HTMLResponse)
    async def edit_extension(page: PageDep, ext_id: ExtId) -> HTMLResponse:
        ext = await get_row(page.ctx, RES, ext_id)
        return page.render(
            "tenant/extensions_form.html", ext=ext, values=ext.model_dump(), errors={}, hints=_hints(page._)
        )

    @router.post("/extensions/{ext_id}", response_class=HTMLResponse)
    async def change_extension(page: PageDep, ext_id: ExtId) -> Response:
        ext = await get_row(page.ctx, RES, ext_id)
        form = await _form(page)
        values = _values(form)
        data = {k: v for k, v in values.items() if k != "extension"}  # the number is the account's name
        if form.get("password"):
            data["password"] = form["password"]
        errors: dict[str, str] = {}
        try:
            model: BaseModel = ExtensionUpdate.model_validate(data)
        except ValidationError as exc:
            errors = validation_errors(exc, _hints(page._))
        else:
            try:
                await update_row(page.ctx, RES, ext_id, model, _version(form))
            except FORM_ERRORS as exc:
                errors = _refusal(page, exc, values)
            else:
                return page.redirect(f"{page.base}/extensions")
        shown = {**ext.model_dump(), **values}
        return page.render(
            "tenant/extensions_form.html",
            status=422,
            ext=ext,
            values=shown,
            errors=errors,
            hints=_hints(page._),
        )

    @router.post("/extensions/{ext_id}/delete", response_class=HTMLResponse)
    async def remove_extension(page: PageDep, ext_id: ExtId) -> Response:
        form = await _form(page)
        await delete_row(page.ctx, RES, ext_id, _version(form))
        return page.redirect(f"{page.base}/extensions")


def _version(form: Mapping[str, str]) -> int | None:
    v = form.get("version", "")
    return int(v) if v.isdigit() and len(v) < 10 else None
