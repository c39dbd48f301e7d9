"""The enterprise's money pages: the statement of a period (opening balance, each ledger
entry, closing balance, as `reports.statement` reads them in one snapshot), the daily and
monthly call reports (`reports.call_report`), the recharge records with recharging by
card (`cards.redeem_for`), and the package and rates the account is charged by.

Periods are local days of the tenant's time zone; the page only picks the default period
(this month, or this year by month) from the service clock's today in that zone. Every
figure is the service layer's; the page formats it."""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations, and
# `PageDep` is a type chosen when the portal mounts the module.

import calendar
import secrets
from datetime import date
from typing import Annotated, Any, Literal
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, Query
from fastapi.responses import HTMLResponse, Response

from provisioning import cards, catalog, money, reports
from provisioning.engine import Conflict, Invalid, ProvisioningError, get_row, list_rows
from provisioning.portal.i18n import Translate
from provisioning.portal.web import NavItem, Page, field_errors
from provisioning.roles import TENANT_WRITERS
from provisioning.schemas import MAX_ID, PackageRead, SubscriptionRead

NAV = (
    NavItem("tenant", "statement", "Statement", 20),
    NavItem("tenant", "reports", "Reports", 22),
    NavItem("tenant", "recharges", "Recharges", 24),
    NavItem("tenant", "package", "Package & rates", 26),
)

STATEMENT_PAGE = 200
RECHARGE_PAGE = 50
After = Annotated[int | None, Query(ge=1, le=MAX_ID)]
DateText = Annotated[str, Query(max_length=40)]
_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


def kind_labels(_: Translate) -> dict[str, str]:
    """What each kind of ledger entry is, in the page's language (ledger.Kind)."""
    return {
        "recharge": _("Recharge"),
        "call": _("Call charge"),
        "rent": _("Monthly rent"),
        "minimum": _("Minimum consumption"),
        "late_fee": _("Late fee"),
        "adjustment": _("Adjustment"),
        "fee": _("Fee"),
    }


def _today(page: Page) -> date:
    return page.ctx.clock.now().astimezone(ZoneInfo(page.tz)).date()


def _period(
    page: Page, from_: str, to: str, default: tuple[date, date]
) -> tuple[date, date, dict[str, str], dict[str, str]]:
    """(from, to, errors, form values): a field left empty takes the default period's end;
    a value that is not a date is an error next to its field."""
    errors: dict[str, str] = {}
    out = []
    for name, text, fallback in (("from", from_, default[0]), ("to", to, default[1])):
        try:
            out.append(date.fromisoformat(text) if text else fallback)
        except ValueError:
            errors[name] = page._("Enter a date as YYYY-MM-DD.")
            out.append(fallback)
    return out[0], out[1], errors, {"from": out[0].isoformat(), "to": out[1].isoformat()}


def _range_errors(page: Page, exc: ProvisioningError) -> dict[str, str]:
    """The service layer's refusal of a period, said in the page's language."""
    _ = page._
    said = {
        "from": _("Choose a date between 1970 and 9998."),
        "to": _("The end date is before the start date, or the period is too long."),
    }
    return {k: said.get(k, v) for k, v in field_errors(exc).items()}


def _month(today: date) -> tuple[date, date]:
    return today.replace(day=1), today.replace(day=calendar.monthrange(today.year, today.month)[1])


def _key() -> str:
    return secrets.token_urlsafe(18)


async def _recharges_page(
    page: Page,
    after: int | None,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    key: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    items, next_after = await reports.recharges(page.ctx, RECHARGE_PAGE, after)
    done = page.request.query_params.get("done", "")
    done_entry = next((i for i in items if str(i.id) == done), None)
    return page.render(
        "tenant/recharges.html",
        status=status,
        items=items,
        next_link=f"?{urlencode({'after': next_after})}" if next_after else None,
        may_recharge=page.who.may(TENANT_WRITERS),
        errors=errors or {},
        values=values or {},
        idempotency_key=key or _key(),
        done=done_entry,
        done_id=int(done) if done.isdigit() and len(done) < 17 else None,
        account=await money.get_account(page.ctx),
    )


def mount_tenant(router: APIRouter, PageDep: Any) -> None:  # noqa: N803 - a type alias
    @router.get("/statement", response_class=HTMLResponse)
    async def statement(
        page: PageDep,
        from_: Annotated[str, Query(alias="from", max_length=40)] = "",
        to: DateText = "",
        after: After = None,
    ) -> HTMLResponse:
        start, stop, errors, values = _period(page, from_, to, _month(_today(page)))
        st = None
        if not errors:
            try:
                st = await reports.statement(page.ctx, start, stop, STATEMENT_PAGE, after)
            except Invalid as exc:
                errors = _range_errors(page, exc)
        next_link = None
        if st is not None and st.next_after is not None:
            next_link = f"?{urlencode({**values, 'after': st.next_after})}"
        return page.render(
            "tenant/statement.html",
            status=422 if errors else 200,
            st=st,
            errors=errors,
            values=values,
            kinds=kind_labels(page._),
            next_link=next_link,
            paged=after is not None,
        )

    @router.get("/reports", response_class=HTMLResponse)
    async def call_reports(
        page: PageDep,
        granularity: Annotated[str, Query(max_length=10)] = "day",
        from_: Annotated[str, Query(alias="from", max_length=40)] = "",
        to: DateText = "",
    ) -> HTMLResponse:
        today = _today(page)
        unit: Literal["day", "month"] = "month" if granularity == "month" else "day"
        default = (
            _month(today)
            if unit == "day"
            else (today.replace(month=1, day=1), today.replace(month=12, day=31))
        )
        start, stop, errors, values = _period(page, from_, to, default)
        values["granularity"] = unit
        report = None
        if not errors:
            try:
                report = await reports.call_report(page.ctx, unit, start, stop)
            except Invalid as exc:
                errors = _range_errors(page, exc)
        chart = None
        if report is not None:
            fmt = "%Y-%m" if unit == "month" else "%m-%d"
            chart = {
                "labels": [r.period.strftime(fmt) for r in report.rows],
                "offered": [r.offered for r in report.rows],
                "answered": [r.answered for r in report.rows],
                "offered_label": page._("Calls offered"),
                "answered_label": page._("Calls answered"),
            }
        return page.render(
            "tenant/reports.html",
            status=422 if errors else 200,
            report=report,
            errors=errors,
            values=values,
            chart=chart,
        )

    @router.get("/recharges", response_class=HTMLResponse)
    async def recharge_list(page: PageDep, after: After = None) -> HTMLResponse:
        return await _recharges_page(page, after)

    @router.post("/recharges", response_class=HTMLResponse)
    async def recharge_by_card(
        page: PageDep,
        card_number: Annotated[str, Form(max_length=40)] = "",
        pin: Annotated[str, Form(max_length=40)] = "",
        idempotency_key: Annotated[str, Form(max_length=64)] = "",
    ) -> Response:
        """Redeem a card. The form carries the key it was rendered with, so the same form
        sent twice (a double click, a resend) recharges once: the service answers the
        second time with the first entry. Spaces in the card number are formatting."""
        number = "".join(card_number.split())
        values = {"card_number": card_number}
        if not idempotency_key or not set(idempotency_key) <= _KEY_CHARS:
            # Not a form this page rendered: a fresh form, nothing redeemed.
            errors = {"": page._("The form expired; reload the page.")}
            return await _recharges_page(page, None, errors=errors, values=values, status=422)
        try:
            entry, _created = await cards.redeem_for(page.ctx, number, pin.strip(), idempotency_key)
        except (Invalid, Conflict, cards.CardRefused) as exc:
            errors = field_errors(exc)
            if isinstance(exc, Conflict):
                # This form's key already recharged another card: a stale form.
                errors = {"": page._("This form was already used for another card; reload the page.")}
            elif isinstance(exc, cards.CardRefused):
                # The service says which pair was refused, never which half: a guesser
                # must not learn that a card number exists.
                errors = {"card_number": page._("The card number or PIN is not valid, or the card was used.")}
            # A refused card is not redeemed: the same key may be tried again with the
            # corrected number (the service keeps no entry under it).
            key = None if isinstance(exc, Conflict) else idempotency_key
            return await _recharges_page(page, None, errors=errors, values=values, key=key, status=422)
        return page.redirect(f"{page.base}/recharges?done={entry.id}")

    @router.get("/package", response_class=HTMLResponse)
    async def package(page: PageDep) -> HTMLResponse:
        subs, _next = await list_rows(page.ctx, catalog.SUBSCRIPTIONS, {"state": "active"}, 20, None)
        plans: list[tuple[SubscriptionRead, PackageRead]] = []
        for sub in subs:
            assert isinstance(sub, SubscriptionRead)
            pkg = await get_row(page.ctx, catalog.PACKAGES, sub.package_id)
            assert isinstance(pkg, PackageRead)
            plans.append((sub, pkg))
        plans.sort(key=lambda p: p[0].starts_on, reverse=True)
        return page.render("tenant/package.html", plans=plans, account=await money.get_account(page.ctx))
