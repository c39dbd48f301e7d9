"""The enterprise's bound destinations: the mobiles, landlines and extensions a 400 number
rings (catalog.BINDINGS), with their owners' real-name data as the API shows it (the ID
number masked by the service layer), and adding or removing a binding with the API's own
validation."""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations, and
# `PageDep` is a type chosen when the portal mounts the module.

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ValidationError

from provisioning import catalog
from provisioning.engine import Conflict, create_row, delete_row, list_rows
from provisioning.numbers import TENANT_NUMBERS
from provisioning.portal.i18n import Translate
from provisioning.portal.pages.extensions import FORM_ERRORS
from provisioning.portal.web import NavItem, Page, field_errors, validation_errors
from provisioning.schemas import MAX_ID, BindingCreate

NAV = (NavItem("tenant", "bindings", "Destinations", 50),)

RES = catalog.BINDINGS
BindingId = Annotated[int, PathParam(ge=1, le=MAX_ID)]
_FIELDS = (
    "number_id",
    "destination",
    "kind",
    "position",
    "ring_timeout_s",
    "owner_name",
    "owner_id_number",
    "group_name",
    "weight",
)
_ECHOED = tuple(f for f in _FIELDS if f != "owner_id_number")  # an ID number is typed again, never echoed
_LIST_MAX = 500


def _hints(_: Translate) -> dict[str, str]:
    return {
        "number_id": _("Choose one of your numbers."),
        "destination": _("2 to 20 digits."),
        "kind": _("Choose mobile, landline or extension."),
        "position": _("A whole number from 0 to 1000."),
        "ring_timeout_s": _("5 to 300 seconds."),
        "owner_name": _("The owner's real name (at most 100 characters)."),
        "owner_id_number": _("6 to 30 letters or digits."),
        "group_name": _("Lower-case letters, digits, - and _ (at most 40)."),
        "weight": _("A whole number from 1 to 1000."),
    }


async def _all(page: Page, res: Any, filters: Mapping[str, str]) -> list[Any]:
    out: list[Any] = []
    after = None
    while True:
        items, after = await list_rows(page.ctx, res, filters, 200, after)
        out += items
        if after is None or len(out) >= _LIST_MAX:
            return out


async def _render(
    page: Page, values: Mapping[str, Any], errors: Mapping[str, str], status: int = 200, number: str = ""
) -> HTMLResponse:
    numbers = await _all(page, TENANT_NUMBERS, {})
    filters = {"number_id": number} if number.isdigit() else {}
    items = await _all(page, RES, filters)
    return page.render(
        "tenant/bindings.html",
        status=status,
        items=items,
        numbers={n.id: n.number for n in numbers},
        values=values,
        errors=errors,
        hints=_hints(page._),
        number_filter=number,
        may_write=page.who.may(RES.write_roles),
    )


def mount_tenant(router: APIRouter, PageDep: Any) -> None:  # noqa: N803 - a type alias
    @router.get("/bindings", response_class=HTMLResponse)
    async def bindings(page: PageDep, number_id: str = "") -> HTMLResponse:
        values = {"kind": "mobile", "position": 0, "ring_timeout_s": 30, "group_name": "default", "weight": 1}
        return await _render(page, values, {}, number=number_id[:20])

    @router.post("/bindings", response_class=HTMLResponse)
    async def add_binding(page: PageDep) -> Response:
        form = {k: str(v) for k, v in (await page.request.form()).items() if isinstance(v, str)}
        data = {k: form[k] for k in _FIELDS if k in form and form[k] != ""}
        errors: dict[str, str] = {}
        try:
            model: BaseModel = BindingCreate.model_validate(data)
        except ValidationError as exc:
            errors = validation_errors(exc, _hints(page._))
        else:
            try:
                await create_row(page.ctx, RES, model)
            except FORM_ERRORS as exc:
                errors = {(k if k in _FIELDS else ""): v for k, v in field_errors(exc).items()}
                if "number_id" in errors:
                    errors["number_id"] = _hints(page._)["number_id"]
                if isinstance(exc, Conflict) and "destination" in errors:  # unique per number
                    errors["destination"] = page._(
                        "{destination} is already bound to this number.",
                        destination=form.get("destination", ""),
                    )
            else:
                return page.redirect(f"{page.base}/bindings")
        echoed = {k: form.get(k, "") for k in _ECHOED}
        return await _render(page, echoed, errors, status=422)

    @router.post("/bindings/{binding_id}/delete", response_class=HTMLResponse)
    async def remove_binding(page: PageDep, binding_id: BindingId) -> Response:
        form = await page.request.form()
        v = str(form.get("version") or "")
        await delete_row(page.ctx, RES, binding_id, int(v) if v.isdigit() and len(v) < 10 else None)
        return page.redirect(f"{page.base}/bindings")
