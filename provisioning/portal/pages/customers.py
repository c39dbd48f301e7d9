"""The enterprise's customers (CRM, seed 001): the list with search, a customer's card
(create and edit with the API's own validation, errors next to the field), its notes, and
a Call button per number that places a click-to-dial call (provisioning.click_to_dial:
the user's own phone rings first, then the customer through the outbound path) and
follows it (ringing your phone → calling the customer → connected → ended, or the
refusal's reason), by htmx.

Everything goes through the service layer: catalog.CUSTOMERS / CUSTOMER_NOTES with the
engine (roles, tenant scope, audit), customers.search, click_to_dial.place_call and
call_state."""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations, and
# `PageDep` is a type chosen when the portal mounts the module.

import re
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from provisioning import catalog, click_to_dial, customers
from provisioning.engine import (
    Conflict,
    Invalid,
    PreconditionFailed,
    ProvisioningError,
    create_row,
    get_row,
    list_rows,
    update_row,
)
from provisioning.portal.i18n import Translate
from provisioning.portal.web import NavItem, Page, field_errors, validation_errors
from provisioning.schemas import (
    MAX_ID,
    ClickToDialCreate,
    ClickToDialRead,
    CustomerCreate,
    CustomerNoteCreate,
    CustomerUpdate,
    e164,
)

CustomerId = Annotated[int, PathParam(ge=1, le=MAX_ID)]
CallId = Annotated[str, PathParam(pattern=r"^c2d-[0-9]{1,16}-[0-9a-f]{16}$")]

NAV = (NavItem("tenant", "customers", "Customers", 45),)

RES = customers.CUSTOMERS
FORM_ERRORS = (Invalid, Conflict, PreconditionFailed)
PAGE_SIZE = 50
_FIELDS = ("name", "company", "phones", "email", "tags")
# States after which the page stops asking
FINAL_STATES = frozenset({"ended", "agent_no_answer", "refused", "failed"})


def _hints(_: Translate) -> dict[str, str]:
    return {
        "name": _("1 to 100 characters."),
        "company": _("At most 200 characters."),
        "phones": _("One number per line: a mobile, a fixed line with its area code, or +country code."),
        "email": _("An email address, or empty."),
        "tags": _("Separated by commas, each at most 30 characters."),
    }


def _reason_text(_: Translate, reason: str) -> str:
    """What a refusal's reason code means, in the page's language (the code is shown too)."""
    texts = {
        "EXTENSION_NOT_REGISTERED": _("your phone is not registered"),
        "EXTENSION_UNKNOWN": _("the extension is not one of this enterprise's"),
        "TENANT_SUSPENDED": _("the enterprise is suspended"),
        "NO_BALANCE": _("no balance left"),
        "CHANNEL_LIMIT": _("all channels of the package are in use"),
        "INVALID_NUMBER": _("not a valid phone number"),
        "BLACKLISTED": _("the number is on a blacklist"),
        "CALLER_ID_NOT_OWNED": _("no caller ID the enterprise owns"),
        "NO_ROUTE": _("no route to the number"),
        "ENGINE_UNAVAILABLE": _("the switch is not reachable"),
        "ORIGINATE_FAILED": _("the switch refused the call"),
        "BILLING_UNAVAILABLE": _("billing is not reachable"),
        "NOT_STARTED": _("the switch never started the call"),
    }
    return texts.get(reason, "")


def _values(form: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {k: form.get(k, "") for k in ("name", "company", "email")}
    values["phones"] = [line.strip() for line in re.split(r"[\n;]", form.get("phones", "")) if line.strip()]
    values["tags"] = [t.strip() for t in re.split(r"[,，]", form.get("tags", "")) if t.strip()]
    return values


def _shown(values: Mapping[str, Any]) -> dict[str, Any]:
    """Values as the form's inputs show them (lists as lines / comma lists)."""
    out = dict(values)
    out["phones"] = "\n".join(values.get("phones") or [])
    out["tags"] = ", ".join(values.get("tags") or [])
    return out


def _form_errors(page: Page, exc: ValidationError, values: Mapping[str, Any]) -> dict[str, str]:
    """The model's refusal by field; a bad phone number is named (which of the lines)."""
    errors = validation_errors(exc, _hints(page._), _FIELDS)
    if "phones" in errors:
        for number in values.get("phones") or []:
            try:
                e164(number)
            except ValueError:
                errors["phones"] = page._("Not a valid phone number: {number}", number=number)
                break
    return errors


def _refusal(exc: ProvisioningError) -> dict[str, str]:
    errors = field_errors(exc)
    return {(k if k in _FIELDS else ""): v for k, v in errors.items()}


async def _form(page: Page) -> dict[str, str]:
    form = await page.request.form()
    return {k: str(v) for k, v in form.items() if isinstance(v, str)}


def _may_write(page: Page) -> bool:
    return page.who.may(RES.write_roles)


async def _agent(page: Page) -> dict[str, Any]:
    """The extensions a user may call from and the one they call from now."""
    if not _may_write(page):
        return {"extensions": [], "mine": None}
    items, _next = await list_rows(page.ctx, catalog.EXTENSIONS, {}, 500, None)
    return {"extensions": items, "mine": await click_to_dial.my_extension(page.ctx)}


def _version(form: Mapping[str, str]) -> int | None:
    v = form.get("version", "")
    return int(v) if v.isdigit() and len(v) < 10 else None


def mount_tenant(router: APIRouter, PageDep: Any) -> None:  # noqa: N803 - a type alias
    @router.get("/customers", response_class=HTMLResponse)
    async def customer_list(page: PageDep, q: str = "", after: int | None = None) -> HTMLResponse:
        after = after if after is not None and 0 <= after <= MAX_ID else None
        items, next_after = await customers.search(page.ctx, q[:100], PAGE_SIZE, after)
        return page.render(
            "tenant/customers.html",
            items=items,
            next_after=next_after,
            q=q[:100],
            may_write=_may_write(page),
            **await _agent(page),
        )

    @router.get("/customers/new", response_class=HTMLResponse)
    async def new_customer(page: PageDep) -> HTMLResponse:
        return page.render(
            "tenant/customers_form.html", customer=None, values={}, errors={}, hints=_hints(page._)
        )

    @router.post("/customers/new", response_class=HTMLResponse)
    async def create_customer(page: PageDep) -> Response:
        form = await _form(page)
        values = _values(form)
        errors: dict[str, str] = {}
        try:
            model = CustomerCreate.model_validate(values)
        except ValidationError as exc:
            errors = _form_errors(page, exc, values)
        else:
            try:
                created = await create_row(page.ctx, RES, model)
            except FORM_ERRORS as exc:
                errors = _refusal(exc)
            else:
                note = form.get("note", "").strip()
                if note:
                    await create_row(
                        page.ctx,
                        customers.CUSTOMER_NOTES,
                        CustomerNoteCreate(customer_id=created.id, body=note[:2000]),  # type: ignore[attr-defined]
                    )
                return page.redirect(f"{page.base}/customers/{created.id}")  # type: ignore[attr-defined]
        return page.render(
            "tenant/customers_form.html",
            status=422,
            customer=None,
            values={**_shown(values), "note": form.get("note", "")},
            errors=errors,
            hints=_hints(page._),
        )

    @router.get("/customers/calls/{call_id}", response_class=HTMLResponse)
    async def call_progress(page: PageDep, call_id: CallId) -> HTMLResponse:
        state = await click_to_dial.call_state(page.ctx, page.deps.registry, call_id)
        return _call_state(page, state)

    @router.get("/customers/{customer_id}", response_class=HTMLResponse)
    async def customer_card(page: PageDep, customer_id: CustomerId) -> HTMLResponse:
        customer = await get_row(page.ctx, RES, customer_id)
        return await _card(page, customer, _shown(customer.model_dump()), {})

    @router.post("/customers/{customer_id}", response_class=HTMLResponse)
    async def change_customer(page: PageDep, customer_id: CustomerId) -> Response:
        customer = await get_row(page.ctx, RES, customer_id)
        form = await _form(page)
        values = _values(form)
        errors: dict[str, str] = {}
        try:
            model = CustomerUpdate.model_validate(values)
        except ValidationError as exc:
            errors = _form_errors(page, exc, values)
        else:
            try:
                await update_row(page.ctx, RES, customer_id, model, _version(form))
            except FORM_ERRORS as exc:
                errors = _refusal(exc)
            else:
                return page.redirect(f"{page.base}/customers/{customer_id}")
        return await _card(page, customer, _shown(values), errors, status=422)

    @router.post("/customers/{customer_id}/notes", response_class=HTMLResponse)
    async def add_note(page: PageDep, customer_id: CustomerId) -> Response:
        customer = await get_row(page.ctx, RES, customer_id)
        form = await _form(page)
        try:
            note = CustomerNoteCreate.model_validate(
                {"customer_id": customer_id, "body": form.get("body", "")}
            )
        except ValidationError:
            errors = {"body": page._("Write 1 to 2000 characters.")}
        else:
            await create_row(page.ctx, customers.CUSTOMER_NOTES, note)
            return page.redirect(f"{page.base}/customers/{customer_id}")
        return await _card(page, customer, _shown(customer.model_dump()), errors, status=422)

    @router.post("/customers/{customer_id}/call", response_class=HTMLResponse)
    async def call_customer(page: PageDep, customer_id: CustomerId) -> HTMLResponse:
        customer = await get_row(page.ctx, RES, customer_id)
        form = await _form(page)
        number = form.get("number", "")
        extension = form.get("extension", "") or None
        if number not in customer.phones:  # type: ignore[attr-defined]
            return _refused(page, "INVALID_NUMBER", page._("not one of this customer's numbers"))
        try:
            data = ClickToDialCreate(number=number, extension=extension, customer_id=customer_id)
        except ValidationError:
            return _refused(page, "EXTENSION_UNKNOWN", page._("choose your extension"))
        try:
            if extension and extension != await click_to_dial.my_extension(page.ctx):
                await click_to_dial.set_my_extension(page.ctx, extension)  # remembered as the user's phone
            state = await click_to_dial.place_call(
                page.ctx, page.deps.ami, data, page.deps.esl, _phones_profile(page), page.deps.registry
            )
        except click_to_dial.ClickToDialRefused as exc:
            return _refused(page, exc.reason, _reason_text(page._, exc.reason) or exc.message)
        except Invalid as exc:
            if exc.field == "extension":
                return _refused(page, "EXTENSION_UNKNOWN", page._("choose your extension"))
            raise
        return _call_state(page, state)


def _phones_profile(page: Page) -> str:
    return str(getattr(getattr(page.deps.settings, "freeswitch", None), "phones_profile", "phones"))


def _call_state(page: Page, state: ClickToDialRead) -> HTMLResponse:
    return page.render(
        "tenant/_customers_call.html",
        call=state,
        final=state.state in FINAL_STATES,
        reason_text=_reason_text(page._, state.reason) if state.state in ("refused", "failed") else "",
    )


def _refused(page: Page, reason: str, text: str) -> HTMLResponse:
    return page.render("tenant/_customers_call.html", call=None, final=True, reason=reason, reason_text=text)


async def _card(
    page: Page, customer: Any, values: Mapping[str, Any], errors: Mapping[str, str], status: int = 200
) -> HTMLResponse:
    notes = await customers.notes_of(page.ctx, customer.id)
    return page.render(
        "tenant/customers_detail.html",
        status=status,
        customer=customer,
        values=values,
        errors=errors,
        hints=_hints(page._),
        notes=notes,
        may_write=_may_write(page),
        **await _agent(page),
    )
