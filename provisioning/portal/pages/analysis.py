"""Incoming-call analysis (来电分析): the figures of provisioning/analysis.py for a period
(this month by default; presets 7 days / month / quarter, or any dates) and all numbers
or one, as Chart.js charts fed from a JSON script tag and as tables with the same numbers."""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations, and
# `PageDep` is a type chosen when the portal mounts the module.

from datetime import date
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from provisioning import analysis
from provisioning.engine import ProvisioningError
from provisioning.portal.web import NavItem, Page, field_errors

NAV = (NavItem("tenant", "analysis", "Call analysis", 15),)


def _date(raw: str) -> date | None:
    try:
        return date.fromisoformat(raw) if raw else None
    except ValueError:
        return None


def _place(page: Page, name: str) -> str:
    if name == analysis.NOT_PLACED:
        return page._("Not yet placed")
    return name or page._("Unknown region")


def _weekdays(page: Page) -> list[str]:
    _ = page._
    return [_("Mon"), _("Tue"), _("Wed"), _("Thu"), _("Fri"), _("Sat"), _("Sun")]


def _chart_data(page: Page, got: analysis.AnalysisRead) -> dict[str, Any]:
    _ = page._
    top = got.by_province[: analysis.TOP_PROVINCES]
    return {
        "province": {"labels": [_place(page, p.province) for p in top], "calls": [p.calls for p in top]},
        "hour": {
            "labels": [f"{h.hour:02d}" for h in got.by_hour],
            "answered": [h.answered for h in got.by_hour],
            "missed": [h.missed for h in got.by_hour],
        },
        "weekday": {
            "labels": _weekdays(page),
            "answered": [w.answered for w in got.by_weekday],
            "missed": [w.missed for w in got.by_weekday],
        },
        "outcome": {
            "labels": [_("Answered"), _("Missed")],
            "calls": [got.totals.answered, got.totals.missed],
        },
        "callers": {
            "labels": [_("First-time"), _("Repeat")],
            "calls": [got.totals.first_time, got.totals.repeat],
        },
        "text": {"calls": _("Number of calls"), "answered": _("Answered"), "missed": _("Missed")},
    }


def mount_tenant(router: APIRouter, PageDep: Any) -> None:  # noqa: N803 - a type alias
    @router.get("/analysis", response_class=HTMLResponse)
    async def analysis_page(page: PageDep, preset: str = "", to: str = "", number: str = "") -> HTMLResponse:
        raw_from, raw_to = page.request.query_params.get("from", ""), to
        today = analysis.local_today(page.ctx.clock.now(), page.tz)
        presets = analysis.presets(today)
        chosen = preset if preset in presets else ""
        start, end = presets["month"]
        if chosen:
            start, end = presets[chosen]
        elif raw_from or raw_to:
            start, end = _date(raw_from) or start, _date(raw_to) or end
        else:
            chosen = "month"
        numbers = await analysis.numbers(page.ctx)
        number_id = int(number) if number.isdigit() and any(n.id == int(number) for n in numbers) else None
        errors: dict[str, str] = {}
        got = None
        try:
            got = await analysis.call_analysis(page.ctx, start, end, number_id)
        except ProvisioningError as exc:
            errors = field_errors(exc)
        return page.render(
            "tenant/analysis.html",
            status=422 if errors else 200,
            got=got,
            charts=_chart_data(page, got) if got else None,
            numbers=numbers,
            number_id=number_id,
            start=start,
            end=end,
            preset=chosen,
            errors=errors,
            weekdays=_weekdays(page),
            place=lambda name: _place(page, name),
        )
