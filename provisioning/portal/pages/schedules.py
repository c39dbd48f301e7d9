"""The enterprise's time rules (catalog.TIME_POLICIES): working hours per weekday, holidays,
and where calls go outside them, shown as a week in the rule's time zone with whether the
number is open right now — decided by the call path's own pure function
(dialplan.time_policy.TimePolicy.match_at at the service's clock), never by a copy of it.

Changes go through the service layer (create_row / update_row) with the API's validation;
a refusal is shown next to the field that caused it: the rule is parsed again piece by
piece by the same parser (TimePolicy.parse) to find which row and field it was. Make-up
working days and one-off exceptions, which the form does not draw, are kept as they are
and can be edited in the JSON editor."""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations, and
# `PageDep` is a type chosen when the portal mounts the module.

import json
import re
from collections.abc import Mapping
from typing import Annotated, Any, cast

from fastapi import APIRouter
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ValidationError

from dialplan.targets import Target
from dialplan.time_policy import DAYS, TimeMatch, TimePolicy, TimeRule
from provisioning import catalog
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
from provisioning.numbers import TENANT_NUMBERS
from provisioning.portal.i18n import Translate
from provisioning.portal.web import NavItem, Page, local_time, validation_errors
from provisioning.schemas import (
    MAX_ID,
    NumberRead,
    NumberRoutingUpdate,
    PolicyCreate,
    PolicyRead,
    PolicyUpdate,
)

PolicyId = Annotated[int, PathParam(ge=1, le=MAX_ID)]

NAV = (NavItem("tenant", "schedules", "Time rules", 35),)

RES = catalog.TIME_POLICIES
FORM_ERRORS = (Invalid, Conflict, PreconditionFailed)
PAGE_SIZE = 500
KINDS = ("group", "ivr", "voicemail", "announcement")
_RULE_FIELD = re.compile(r"^w-(\d{1,4})-(days|start|end|kind|ref)$")
_PARSE_ERRORS = (ValueError, KeyError, TypeError, AttributeError)


def _day_names(_: Translate) -> dict[str, str]:
    return {
        "mon": _("Monday"),
        "tue": _("Tuesday"),
        "wed": _("Wednesday"),
        "thu": _("Thursday"),
        "fri": _("Friday"),
        "sat": _("Saturday"),
        "sun": _("Sunday"),
    }


def _short_days(_: Translate) -> dict[str, str]:
    return {
        "mon": _("Mon"),
        "tue": _("Tue"),
        "wed": _("Wed"),
        "thu": _("Thu"),
        "fri": _("Fri"),
        "sat": _("Sat"),
        "sun": _("Sun"),
    }


def _kind_labels(_: Translate) -> dict[str, str]:
    return {
        "group": _("Destination group"),
        "ivr": _("IVR menu"),
        "voicemail": _("Voicemail"),
        "announcement": _("Closed: play an announcement"),
    }


def _rule_labels(_: Translate) -> dict[str, str]:
    return {
        TimeRule.EXCEPTION.value: _("Special hours"),
        TimeRule.HOLIDAY.value: _("Holiday"),
        TimeRule.MAKEUP_WORKDAY.value: _("Make-up working day"),
        TimeRule.WEEKLY.value: _("Working hours"),
        TimeRule.OUTSIDE_HOURS.value: _("Outside working hours"),
    }


def _target_text(target: Target, _: Translate) -> str:
    if target.kind == "group":
        return _("Destination group {name}", name=target.ref)
    if target.kind == "ivr":
        return _("IVR menu {name}", name=target.ref)
    if target.kind == "voicemail":
        return _("Voicemail")
    return _("Closed (announcement {name})", name=target.ref)


# ---------------------------------------------------------------------- the rule now
def _parsed(page: Page, definition: Mapping[str, Any]) -> TimePolicy | None:
    try:
        return TimePolicy.parse(definition, page.tz)
    except _PARSE_ERRORS:
        return None


def _now(page: Page, policy: TimePolicy | None) -> dict[str, Any] | None:
    """Open or closed at the service's clock, by the call path's own decision: a call the
    policy sends to an announcement is CLOSED (dialplan.inbound), any other target rings."""
    if policy is None:
        return None
    now = page.ctx.clock.now()
    match: TimeMatch = policy.match_at(now)
    return {
        "open": match.target.kind != "announcement",
        "rule": _rule_labels(page._)[match.rule.value],
        "detail": match.detail,
        "target": _target_text(match.target, page._),
        "local": local_time(now, policy.timezone, "%Y-%m-%d %H:%M"),
        "timezone": policy.timezone,
    }


def _week(policy: TimePolicy, _: Translate) -> list[dict[str, Any]]:
    names = _day_names(_)
    week = []
    for d in DAYS:
        windows = sorted(policy.weekly.get(d, ()), key=lambda w: (w.start, w.end))
        week.append(
            {
                "day": d,
                "name": names[d],
                "windows": [
                    {"hours": str(w).replace("-", "–"), "target": _target_text(w.target, _)} for w in windows
                ],
            }
        )
    return week


# ---------------------------------------------------------------------- form <-> rule
def _target_form(raw: Any, default_kind: str = "") -> tuple[str, str]:
    if not isinstance(raw, Mapping):
        return default_kind, ""
    return str(raw.get("kind") or ""), str(raw.get("ref") or "")


def _target_of(kind: str, ref: str) -> dict[str, str] | None:
    if not kind:
        return None
    if kind == "voicemail":
        return {"kind": "voicemail"}
    if kind == "group" and not ref:
        return {"kind": "group", "ref": "default"}
    return {"kind": kind, "ref": ref}


def _form_of_policy(name: str, enabled: bool, definition: Mapping[str, Any]) -> dict[str, Any]:
    rules = []
    for rule in definition.get("weekly", []) or []:
        if not isinstance(rule, Mapping):
            continue
        kind, ref = _target_form(rule.get("target"), "group")
        rules.append(
            {
                "days": [str(d) for d in rule.get("days", []) or []],
                "start": str(rule.get("start", "")),
                "end": str(rule.get("end", "")),
                "kind": kind,
                "ref": ref or ("default" if kind == "group" else ""),
            }
        )
    def_kind, def_ref = _target_form(definition.get("default"), "announcement")
    hol_kind, hol_ref = _target_form(definition.get("holiday_target"))
    return {
        "name": name,
        "enabled": enabled,
        "rules": rules,
        "def_kind": def_kind,
        "def_ref": def_ref or ("closed" if def_kind == "announcement" else ""),
        "hol_kind": hol_kind,
        "hol_ref": hol_ref,
    }


def _form_values(form: Any) -> dict[str, Any]:
    rules: dict[str, dict[str, Any]] = {}
    for name, value in form.multi_items():
        m = _RULE_FIELD.match(name)
        if not m or not isinstance(value, str):
            continue
        rule = rules.setdefault(m.group(1), {"days": [], "start": "", "end": "", "kind": "", "ref": ""})
        if m.group(2) == "days":
            rule["days"].append(value)
        else:
            rule[m.group(2)] = value.strip()

    def text(name: str) -> str:
        value = form.get(name)
        return value.strip() if isinstance(value, str) else ""

    return {
        "name": text("name"),
        "enabled": form.get("enabled") == "on",
        "rules": [r for r in rules.values() if r["days"] or r["start"] or r["end"]],
        "def_kind": text("def_kind"),
        "def_ref": text("def_ref"),
        "hol_kind": text("hol_kind"),
        "hol_ref": text("hol_ref"),
    }


def _definition(values: Mapping[str, Any], before: Mapping[str, Any]) -> dict[str, Any]:
    """The rule the form describes; what the form does not draw (holidays, make-up days,
    exceptions, a time zone of its own) is kept from the stored rule."""
    definition = {k: v for k, v in before.items() if k not in ("weekly", "default", "holiday_target")}
    weekly = []
    for r in values["rules"]:
        rule: dict[str, Any] = {"days": r["days"], "start": r["start"], "end": r["end"]}
        target = _target_of(r["kind"], r["ref"])
        if target is not None and target != {"kind": "group", "ref": "default"}:
            rule["target"] = target
        weekly.append(rule)
    definition["weekly"] = weekly
    default = _target_of(values["def_kind"], values["def_ref"])
    if default is not None:
        definition["default"] = default
    holiday = _target_of(values["hol_kind"], values["hol_ref"])
    if holiday is not None:
        definition["holiday_target"] = holiday
    return definition


# ---------------------------------------------------------------------- the refusal
def _fails(raw: Mapping[str, Any]) -> bool:
    try:
        TimePolicy.parse(raw)
    except _PARSE_ERRORS:
        return True
    return False


def _time_ok(value: Any) -> bool:
    # an exception window's times are read like any window's, without the start < end check
    return not _fails({"exceptions": [{"date": "2000-01-03", "start": value, "end": value}]})


def _blame(definition: Mapping[str, Any], _: Translate) -> dict[str, str]:
    """Which field of the form made TimePolicy.parse refuse the rule: each part is parsed
    alone by the same parser."""
    errors: dict[str, str] = {}
    for i, rule in enumerate(definition.get("weekly", []) or []):
        if not isinstance(rule, Mapping):
            continue
        whole_day = {"days": ["mon"], "start": "00:00", "end": "24:00"}
        if _fails({"weekly": [{**whole_day, "days": rule.get("days")}]}):
            errors[f"weekly.{i}.days"] = _("Choose at least one day.")
        for part in ("start", "end"):
            if not _time_ok(rule.get(part)):
                errors[f"weekly.{i}.{part}"] = _("Enter a time as HH:MM, from 00:00 to 24:00.")
        if _fails({"weekly": [{**whole_day, "target": rule.get("target")}]}):
            errors[f"weekly.{i}.ref"] = _("Enter where these calls go.")
        if not any(k.startswith(f"weekly.{i}.") for k in errors) and _fails({"weekly": [rule]}):
            errors[f"weekly.{i}.end"] = _("The end must be after the start.")
    for key, field in (("default", "def_ref"), ("holiday_target", "hol_ref")):
        if definition.get(key) is not None and _fails({key: definition[key]}):
            errors[field] = _("Enter where these calls go.")
    for i, holiday in enumerate(definition.get("holidays", []) or []):
        if _fails({"holidays": [holiday]}):
            errors[f"holidays.{i}"] = _("Enter a date.")
    if "timezone" in definition and _fails({"timezone": definition["timezone"]}):
        errors["timezone"] = _("Unknown time zone.")
    return errors


def _refusal(
    exc: ProvisioningError, values: Mapping[str, Any], sent: Mapping[str, Any], _: Translate
) -> dict[str, str]:
    if isinstance(exc, Conflict):
        return {"name": _("A time rule named {name} already exists.", name=values.get("name", ""))}
    if isinstance(exc, PreconditionFailed):
        return {"": _("Someone changed this time rule meanwhile: reload the page to see it.")}
    field = (exc.field or "").split(".")[0]
    if field == "definition":
        found = _blame(sent, _)
        return found or {"": exc.message.removeprefix("definition: ")}
    if field == "name":
        return {"name": exc.message}
    return {"": exc.message}


# ---------------------------------------------------------------------- pages
async def _policies(page: Page) -> list[PolicyRead]:
    items, _next = await list_rows(page.ctx, RES, {}, PAGE_SIZE, None)
    return sorted(cast(list[PolicyRead], items), key=lambda p: p.name)


async def _numbers(page: Page) -> list[NumberRead]:
    items, _next = await list_rows(page.ctx, TENANT_NUMBERS, {}, PAGE_SIZE, None)
    return cast(list[NumberRead], items)


async def _suggestions(page: Page) -> dict[str, list[str]]:
    groups = await page.ctx.conn.fetch(
        "SELECT DISTINCT group_name FROM destination_bindings WHERE tenant_id = $1 ORDER BY 1",
        page.ctx.tenant_id,
    )
    menus, _next = await list_rows(page.ctx, catalog.IVR_MENUS, {}, PAGE_SIZE, None)
    return {
        "group": sorted({"default", *(r["group_name"] for r in groups)}),
        "ivr": sorted(str(getattr(m, "name", "")) for m in menus),
        "announcement": ["closed"],
    }


def _may_write(page: Page) -> bool:
    return page.who.may(RES.write_roles)


async def _form_page(
    page: Page,
    policy: PolicyRead | None,
    values: Mapping[str, Any],
    errors: Mapping[str, str],
    status: int = 200,
    raw: str | None = None,
) -> HTMLResponse:
    definition = policy.definition if policy is not None else {}
    return page.render(
        "tenant/schedules_form.html",
        status=status,
        policy=policy,
        values=values,
        errors=errors,
        raw=raw if raw is not None else json.dumps(definition, ensure_ascii=False, indent=2),
        kinds=KINDS,
        kind_labels=_kind_labels(page._),
        days=DAYS,
        short_days=_short_days(page._),
        suggestions=await _suggestions(page),
        may_write=_may_write(page),
    )


async def _detail_page(
    page: Page,
    policy: PolicyRead,
    errors: Mapping[str, str] | None = None,
    holiday: Mapping[str, str] | None = None,
    status: int = 200,
) -> HTMLResponse:
    parsed = _parsed(page, policy.definition)
    numbers = await _numbers(page)
    return page.render(
        "tenant/schedules_detail.html",
        status=status,
        policy=policy,
        now=_now(page, parsed),
        week=_week(parsed, page._) if parsed is not None else [],
        holidays=sorted(parsed.holidays.items()) if parsed is not None else [],
        workdays=sorted(parsed.workdays.items()) if parsed is not None else [],
        exceptions=sorted(parsed.exceptions.items()) if parsed is not None else [],
        outside=_target_text(parsed.default, page._) if parsed is not None else "",
        on_holidays=_target_text(parsed.holiday_target, page._) if parsed is not None else "",
        day_names=_day_names(page._),
        using=[n for n in numbers if n.time_policy_id == policy.id],
        others=[n for n in numbers if n.time_policy_id != policy.id],
        errors=errors or {},
        holiday=holiday or {},
        may_write=_may_write(page),
    )


def _version(form: Any, name: str = "version") -> int | None:
    v = form.get(name)
    return int(v) if isinstance(v, str) and v.isdigit() and len(v) < 10 else None


def _holiday_date(raw: Any) -> str:
    if isinstance(raw, Mapping):
        return str(raw.get("date", ""))
    return str(raw)


def mount_tenant(router: APIRouter, PageDep: Any) -> None:  # noqa: N803 - a type alias
    @router.get("/schedules", response_class=HTMLResponse)
    async def policies(page: PageDep) -> HTMLResponse:
        items = await _policies(page)
        numbers = await _numbers(page)
        return page.render(
            "tenant/schedules.html",
            items=items,
            statuses={p.id: _now(page, _parsed(page, p.definition)) for p in items},
            numbers={p.id: [n.number for n in numbers if n.time_policy_id == p.id] for p in items},
            may_write=_may_write(page),
        )

    @router.get("/schedules/new", response_class=HTMLResponse)
    async def new_policy(page: PageDep) -> HTMLResponse:
        start = {
            "weekly": [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "18:00"}],
            "default": {"kind": "announcement", "ref": "closed"},
        }
        return await _form_page(page, None, _form_of_policy("", True, start), {})

    @router.post("/schedules/new", response_class=HTMLResponse)
    async def create_policy(page: PageDep) -> Response:
        values = _form_values(await page.request.form())
        definition = _definition(values, {})
        errors: dict[str, str] = {}
        try:
            model: BaseModel = PolicyCreate.model_validate(
                {"name": values["name"], "enabled": values["enabled"], "definition": definition}
            )
        except ValidationError as exc:
            errors = validation_errors(
                exc, {"name": page._("Enter a name of 1 to 100 characters.")}, ("name",)
            )
        else:
            try:
                created = await create_row(page.ctx, RES, model)
            except FORM_ERRORS as exc:
                errors = _refusal(exc, values, definition, page._)
            else:
                return page.redirect(f"{page.base}/schedules/{getattr(created, 'id', '')}")
        return await _form_page(page, None, values, errors, 422)

    @router.get("/schedules/{policy_id}", response_class=HTMLResponse)
    async def policy_detail(page: PageDep, policy_id: PolicyId) -> HTMLResponse:
        policy = cast(PolicyRead, await get_row(page.ctx, RES, policy_id))
        return await _detail_page(page, policy)

    @router.get("/schedules/{policy_id}/edit", response_class=HTMLResponse)
    async def edit_policy(page: PageDep, policy_id: PolicyId) -> HTMLResponse:
        policy = cast(PolicyRead, await get_row(page.ctx, RES, policy_id))
        return await _form_page(
            page, policy, _form_of_policy(policy.name, policy.enabled, policy.definition), {}
        )

    @router.post("/schedules/{policy_id}/edit", response_class=HTMLResponse)
    async def change_policy(page: PageDep, policy_id: PolicyId) -> Response:
        policy = cast(PolicyRead, await get_row(page.ctx, RES, policy_id))
        form = await page.request.form()
        values = _form_values(form)
        definition = _definition(values, policy.definition)
        errors: dict[str, str] = {}
        try:
            model: BaseModel = PolicyUpdate.model_validate(
                {"name": values["name"], "enabled": values["enabled"], "definition": definition}
            )
        except ValidationError as exc:
            errors = validation_errors(
                exc, {"name": page._("Enter a name of 1 to 100 characters.")}, ("name",)
            )
        else:
            try:
                await update_row(page.ctx, RES, policy_id, model, _version(form))
            except FORM_ERRORS as exc:
                errors = _refusal(exc, values, definition, page._)
            else:
                return page.redirect(f"{page.base}/schedules/{policy_id}")
        return await _form_page(page, policy, values, errors, 422)

    @router.post("/schedules/{policy_id}/json", response_class=HTMLResponse)
    async def change_policy_json(page: PageDep, policy_id: PolicyId) -> Response:
        """The fallback for what the form does not draw (make-up days, exceptions)."""
        policy = cast(PolicyRead, await get_row(page.ctx, RES, policy_id))
        form = await page.request.form()
        text = form.get("definition")
        raw = text if isinstance(text, str) else ""
        _ = page._
        values = _form_of_policy(policy.name, policy.enabled, policy.definition)
        try:
            definition = json.loads(raw)
        except ValueError as exc:
            return await _form_page(
                page, policy, values, {"json": _("Not valid JSON: {error}", error=str(exc))}, 422, raw
            )
        if not isinstance(definition, dict):
            return await _form_page(page, policy, values, {"json": _("The rule is a JSON object.")}, 422, raw)
        try:
            await update_row(page.ctx, RES, policy_id, PolicyUpdate(definition=definition), _version(form))
        except FORM_ERRORS as exc:
            message = exc.message.removeprefix("definition: ")
            if isinstance(exc, PreconditionFailed):
                message = _refusal(exc, values, definition, page._)[""]
            return await _form_page(page, policy, values, {"json": message}, 422, raw)
        return page.redirect(f"{page.base}/schedules/{policy_id}")

    @router.post("/schedules/{policy_id}/holidays", response_class=HTMLResponse)
    async def add_holiday(page: PageDep, policy_id: PolicyId) -> Response:
        policy = cast(PolicyRead, await get_row(page.ctx, RES, policy_id))
        form = await page.request.form()
        day = str(form.get("holiday_date") or "").strip()
        name = str(form.get("holiday_name") or "").strip()
        typed = {"date": day, "name": name}
        _ = page._
        holidays = list(policy.definition.get("holidays", []) or [])
        if day and any(_holiday_date(h) == day for h in holidays):
            return await _detail_page(
                page, policy, {"holiday_date": _("{date} is a holiday already.", date=day)}, typed, 422
            )
        definition = {**policy.definition, "holidays": [*holidays, {"date": day, "name": name}]}
        try:
            await update_row(page.ctx, RES, policy_id, PolicyUpdate(definition=definition), _version(form))
        except FORM_ERRORS as exc:
            errors = _refusal(exc, {"name": policy.name}, definition, _)
            if f"holidays.{len(holidays)}" in errors:
                errors = {"holiday_date": _("Enter a date.")}
            return await _detail_page(page, policy, errors, typed, 422)
        return page.redirect(f"{page.base}/schedules/{policy_id}")

    @router.post("/schedules/{policy_id}/holidays/remove", response_class=HTMLResponse)
    async def remove_holiday(page: PageDep, policy_id: PolicyId) -> Response:
        policy = cast(PolicyRead, await get_row(page.ctx, RES, policy_id))
        form = await page.request.form()
        day = str(form.get("date") or "")
        holidays = [h for h in policy.definition.get("holidays", []) or [] if _holiday_date(h) != day]
        definition = {**policy.definition, "holidays": holidays}
        try:
            await update_row(page.ctx, RES, policy_id, PolicyUpdate(definition=definition), _version(form))
        except FORM_ERRORS as exc:
            return await _detail_page(
                page, policy, _refusal(exc, {"name": policy.name}, definition, page._), None, 422
            )
        return page.redirect(f"{page.base}/schedules/{policy_id}")

    @router.post("/schedules/{policy_id}/numbers", response_class=HTMLResponse)
    async def use_for_number(page: PageDep, policy_id: PolicyId) -> Response:
        """A number follows this rule (use=1) or none (use=0): the number's routing, as
        PATCH /v1/tenants/{t}/numbers/{id} sets it."""
        policy = cast(PolicyRead, await get_row(page.ctx, RES, policy_id))
        form = await page.request.form()
        number = str(form.get("number_id") or "")
        if not number.isdigit() or len(number) > 18:
            return await _detail_page(page, policy, {"number_id": page._("Choose a number.")}, None, 422)
        update = NumberRoutingUpdate(time_policy_id=policy_id if form.get("use") == "1" else None)
        try:
            await update_row(page.ctx, TENANT_NUMBERS, int(number), update, _version(form, "number_version"))
        except FORM_ERRORS as exc:
            message = exc.message
            if isinstance(exc, PreconditionFailed):
                message = page._("Someone changed this number meanwhile: reload the page to see it.")
            return await _detail_page(page, policy, {"number_id": message}, None, 422)
        return page.redirect(f"{page.base}/schedules/{policy_id}")

    @router.post("/schedules/{policy_id}/delete", response_class=HTMLResponse)
    async def remove_policy(page: PageDep, policy_id: PolicyId) -> Response:
        form = await page.request.form()
        await delete_row(page.ctx, RES, policy_id, _version(form))
        return page.redirect(f"{page.base}/schedules")
