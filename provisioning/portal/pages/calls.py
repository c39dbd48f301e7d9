"""The enterprise's call list (实时通话清单): the calls live now on top, the finished calls
below (newest first, filtered by local days, direction, outcome and number digits, paged
by id), and the same list as a CSV file for Excel.

The list is the service layer's (`reports.finished_calls`: the calls resource's roles and
masks, the tenant's time zone for the days); the page only reads and formats it."""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations, and
# `PageDep` is a type chosen when the portal mounts the module.

import csv
import io
from collections.abc import AsyncIterator
from datetime import date
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from provisioning import reports
from provisioning.engine import Ctx, Invalid
from provisioning.portal.i18n import Translate
from provisioning.portal.web import NavItem, Page, field_errors, local_time
from provisioning.schemas import MAX_ID, CallRead
from softswitch.core.masking import mask_number

NAV = (NavItem("tenant", "calls", "Calls", 10),)

PAGE_SIZE = 50
CSV_BATCH = 500
Text = Annotated[str, Query(max_length=40)]
Before = Annotated[int | None, Query(ge=1, le=MAX_ID)]


def reason_labels(_: Translate) -> dict[str, str]:
    """What each decision reason code means, in the page's language."""
    return {
        "ROUTED": _("Connected to a destination"),
        "UNKNOWN_NUMBER": _("Unknown number"),
        "NUMBER_NOT_ACTIVE": _("Number not in service"),
        "TENANT_SUSPENDED": _("Service suspended"),
        "NO_DESTINATION": _("No destination"),
        "ALL_DESTINATIONS_FAILED": _("No destination answered"),
        "BLACKLISTED": _("Blacklisted"),
        "PIN_FAILED": _("Wrong PIN"),
        "REGION_DENIED": _("Region not allowed"),
        "CLOSED": _("Outside working hours"),
        "VOICEMAIL": _("Voicemail"),
        "IVR": _("Voice menu"),
        "EXTENSION_NOT_FOUND": _("No such extension"),
        "NO_ROUTE": _("No route"),
        "CALLER_ID_NOT_OWNED": _("Caller ID not owned"),
        "EXTENSION_UNKNOWN": _("Unknown extension"),
        "NO_BALANCE": _("Insufficient balance"),
        "CHANNEL_LIMIT": _("All channels busy"),
        "BILLING_UNAVAILABLE": _("Billing unavailable"),
        "BALANCE_EXHAUSTED": _("Cut off: balance used up"),
        "CONTROL_PLANE_UNAVAILABLE": _("Platform unavailable"),
    }


def direction_labels(_: Translate) -> dict[str, str]:
    return {"inbound": _("inbound"), "outbound": _("outbound"), "internal": _("internal")}


def _day(value: str, name: str, errors: dict[str, str], _: Translate) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        errors[name] = _("Enter a date as YYYY-MM-DD.")
        return None


def _filter(
    page: Page, from_: str, to: str, direction: str, reason: str, number: str
) -> tuple[reports.CallFilter, dict[str, str]]:
    """The form's values as the service layer's filter; what cannot even be read (a date
    that is not one) is an error next to its field. Spaces and dashes in a number are
    the user's formatting, not digits."""
    _ = page._
    errors: dict[str, str] = {}
    f = reports.CallFilter(
        from_date=_day(from_, "from", errors, _),
        to_date=_day(to, "to", errors, _),
        direction=direction or None,
        reason=reason or None,
        number="".join(ch for ch in number if ch not in " -") or None,
    )
    return f, errors


def _refusal(_: Translate, name: str, message: str) -> str:
    """The service layer's refusal of a filter, said in the page's language."""
    said = {
        "from": _("Choose a date between 1970 and 9998."),
        "to": _("The end date is before the start date, or out of range."),
        "direction": _("Choose a direction from the list."),
        "reason": _("Choose an outcome from the list."),
        "number": _("Digits only, at most 20."),
    }
    return said.get(name, message)


def _form_values(from_: str, to: str, direction: str, reason: str, number: str) -> dict[str, str]:
    return {"from": from_, "to": to, "direction": direction, "reason": reason, "number": number}


def _cell(text: str) -> str:
    """A caller ID is whatever the far end sent: one that starts like a formula is kept as
    text, so a spreadsheet never runs it (CSV injection)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _csv_row(c: CallRead, tz: str, labels: dict[str, str], directions: dict[str, str]) -> list[str]:
    def iso(v: Any) -> str:
        return "" if v is None else str(v.astimezone(ZoneInfo(tz)).isoformat(timespec="seconds"))

    return [
        str(c.id),
        iso(c.decided_at),
        iso(c.answered_at),
        iso(c.ended_at),
        directions.get(c.direction, c.direction),
        _cell(mask_number(c.caller)),
        _cell(c.called),
        "" if c.billsec is None else str(c.billsec),
        c.reason,
        labels.get(c.reason, c.reason),
        "" if c.amount is None else format(c.amount, "f"),
    ]


def mount_tenant(router: APIRouter, PageDep: Any) -> None:  # noqa: N803 - a type alias
    @router.get("/calls", response_class=HTMLResponse)
    async def call_list(
        page: PageDep,
        from_: Annotated[str, Query(alias="from", max_length=40)] = "",
        to: Text = "",
        direction: Text = "",
        reason: Text = "",
        number: Text = "",
        before: Before = None,
    ) -> HTMLResponse:
        f, errors = _filter(page, from_, to, direction, reason, number)
        values = _form_values(from_, to, direction, reason, number)
        items: list[CallRead] = []
        next_before = None
        if not errors:
            try:
                items, next_before = await reports.finished_calls(page.ctx, f, PAGE_SIZE, before)
            except Invalid as exc:
                errors = {k: _refusal(page._, k, v) for k, v in field_errors(exc).items()}
        query = {k: v for k, v in values.items() if v}
        return page.render(
            "tenant/calls.html",
            status=422 if errors else 200,
            live=await reports.live_calls(page.ctx),
            items=items,
            errors=errors,
            values=values,
            labels=reason_labels(page._),
            directions=direction_labels(page._),
            next_link=f"?{urlencode({**query, 'before': next_before})}" if next_before else None,
            first_link=f"?{urlencode(query)}" if before is not None else None,
            csv_link=f"{page.base}/calls.csv" + (f"?{urlencode(query)}" if query else ""),
        )

    @router.get("/calls.csv")
    async def call_list_csv(
        page: PageDep,
        from_: Annotated[str, Query(alias="from", max_length=40)] = "",
        to: Text = "",
        direction: Text = "",
        reason: Text = "",
        number: Text = "",
    ) -> Response:
        """Every call the filters select, as CSV: UTF-8 with a BOM (Excel then reads the
        Chinese right), times in the tenant's zone with their offset, amounts as plain
        decimals. The first batch is read before answering (a refused filter is a 422
        page); the rest stream from a connection of the export's own."""
        f, errors = _filter(page, from_, to, direction, reason, number)
        if errors:
            raise Invalid(next(iter(errors.values())), next(iter(errors)))
        first, next_before = await reports.finished_calls(page.ctx, f, CSV_BATCH, None)
        _ = page._
        tz = page.tz
        labels, directions = reason_labels(_), direction_labels(_)
        actor, clock, tenant_id, settings = (
            page.ctx.actor,
            page.ctx.clock,
            page.ctx.tenant_id,
            page.ctx.settings,
        )
        pool = page.deps.pool
        header = [
            _("Call ID"),
            _("Started"),
            _("Answered at"),
            _("Ended"),
            _("Direction"),
            _("Caller"),
            _("Called"),
            _("Duration (s)"),
            _("Outcome code"),
            _("Outcome"),
            _("Charge (CNY)"),
        ]

        def lines(rows: list[list[str]]) -> str:
            out = io.StringIO()
            csv.writer(out, lineterminator="\r\n").writerows(rows)
            return out.getvalue()

        async def body() -> AsyncIterator[str]:
            yield "\ufeff" + lines([header, *(_csv_row(c, tz, labels, directions) for c in first)])
            before = next_before
            if before is None:
                return
            async with pool.acquire() as conn:
                ctx = Ctx(conn, actor, clock, tenant_id=tenant_id, settings=settings)
                while before is not None:
                    items, before = await reports.finished_calls(ctx, f, CSV_BATCH, before)
                    yield lines([_csv_row(c, tz, labels, directions) for c in items])

        name = f"calls-{tenant_id}-{local_time(clock.now(), tz, '%Y%m%d-%H%M%S')}.csv"
        return StreamingResponse(
            body(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
