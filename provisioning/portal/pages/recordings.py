"""The enterprise's call recordings: search (dates in the enterprise's time zone, caller,
called number, call id), listen in the page, download, and place or lift a legal hold.
Every file is found by the recording's id through provisioning/recordings.py, as the
API finds it (another enterprise's recording does not exist here: 404), and every
listening or download is audited there."""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations, and
# `PageDep` is a type chosen when the portal mounts the module.

import re
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, Response
from pydantic import ValidationError

from provisioning import recordings
from provisioning.engine import ProvisioningError
from provisioning.portal.web import NavItem, Page, field_errors
from provisioning.recordings import CALL_ID, RecordingSearch, RecordingSpool
from provisioning.recordings_api import HoldCreate
from provisioning.roles import TENANT_WRITERS
from provisioning.schemas import MAX_ID

NAV = (NavItem("tenant", "recordings", "Recordings", 40),)

RecId = Annotated[int, PathParam(ge=1, le=MAX_ID)]
PAGE_SIZE = 50
_DIGITS = re.compile(r"^[0-9]{1,20}$")  # as the API's query parameters


def _spool(page: Page) -> RecordingSpool:
    s = page.deps.settings
    return RecordingSpool(s.asterisk.chroot, s.recording.spool)


def _may_hold(page: Page) -> bool:
    # The service layer decides (set_legal_hold refuses others); the page only hides it.
    return page.who.may(TENANT_WRITERS)


def _search_of(page: Page, q: dict[str, str]) -> tuple[RecordingSearch, dict[str, str]]:
    """The form's fields as a search: dates are the enterprise's local days (`to` is
    inclusive), numbers and the call id as the API accepts them."""
    _ = page._
    errors: dict[str, str] = {}
    tz = ZoneInfo(page.tz)
    days: dict[str, date] = {}
    for name in ("from", "to"):
        if q.get(name):
            try:
                days[name] = date.fromisoformat(q[name])
            except ValueError:
                errors[name] = _("Enter a date like 2026-01-31.")
    if "from" in days and "to" in days and days["to"] < days["from"]:
        errors["to"] = _("The end date is before the start date.")
    for name in ("caller", "called"):
        if q.get(name) and not _DIGITS.match(q[name]):
            errors[name] = _("Digits only, at most 20.")
    if q.get("call_id") and not CALL_ID.match(q["call_id"]):
        errors["call_id"] = _("Not a call id.")
    start = datetime.combine(days["from"], time(), tz) if "from" in days else None
    end = datetime.combine(days["to"] + timedelta(days=1), time(), tz) if "to" in days else None
    search = RecordingSearch(
        start, end, q.get("caller") or None, q.get("called") or None, q.get("call_id") or None
    )
    return search, errors


def _row(page: Page, rec: Any, error: str = "", status: int = 200) -> HTMLResponse:
    return page.render(
        "tenant/_recordings_row.html", status=status, r=rec, may_hold=_may_hold(page), row_error=error
    )


def mount_tenant(router: APIRouter, PageDep: Any) -> None:  # noqa: N803 - a type alias
    @router.get("/recordings", response_class=HTMLResponse)
    async def search(page: PageDep) -> HTMLResponse:
        fields = ("from", "to", "caller", "called", "call_id", "after")
        q = {k: str(page.request.query_params.get(k, "")).strip()[:80] for k in fields}
        query, errors = _search_of(page, q)
        after = int(q["after"]) if q["after"].isdigit() and int(q["after"]) <= MAX_ID else None
        items: list[Any] = []
        next_after = None
        searched = any(q[k] for k in fields)
        if not errors:
            try:
                items, next_after = await recordings.search(page.ctx, query, PAGE_SIZE, after)
            except ProvisioningError as exc:
                errors = field_errors(exc)
        more = {k: v for k, v in q.items() if v and k != "after"}
        return page.render(
            "tenant/recordings.html",
            status=422 if errors else 200,
            q=q,
            errors=errors,
            items=items,
            next_after=next_after,
            more=more,
            searched=searched,
            may_hold=_may_hold(page),
        )

    @router.get("/recordings/{recording_id}/audio")
    async def listen(page: PageDep, recording_id: RecId) -> FileResponse:
        """The WAV for the page's <audio> (inline; byte ranges served for seeking)."""
        path, call_id = await recordings.audio_for_download(page.ctx, _spool(page), recording_id)
        return FileResponse(
            path,
            media_type="audio/wav",
            filename=f"recording-{recording_id}-{call_id}.wav",
            content_disposition_type="inline",
            headers={"Cache-Control": "private, no-store"},
        )

    @router.get("/recordings/{recording_id}/download")
    async def download(page: PageDep, recording_id: RecId) -> FileResponse:
        path, call_id = await recordings.audio_for_download(page.ctx, _spool(page), recording_id)
        return FileResponse(
            path,
            media_type="audio/wav",
            filename=f"recording-{recording_id}-{call_id}.wav",
            headers={"Cache-Control": "private, no-store"},
        )

    @router.post("/recordings/{recording_id}/hold", response_class=HTMLResponse)
    async def place_hold(page: PageDep, recording_id: RecId) -> Response:
        form = await page.request.form()
        try:
            reason = HoldCreate(reason=str(form.get("reason") or "")).reason
        except ValidationError:
            rec = await recordings.get_recording(page.ctx, recording_id)
            # htmx swaps only a 2xx answer: the row comes back with the message in it.
            return _row(
                page, rec, page._("Give the reason for the hold."), status=200 if page.is_htmx else 422
            )
        rec = await recordings.set_legal_hold(page.ctx, recording_id, reason)
        return (
            _row(page, rec)
            if page.is_htmx
            else page.redirect(f"{page.base}/recordings?call_id={rec.call_id}")
        )

    @router.post("/recordings/{recording_id}/release", response_class=HTMLResponse)
    async def lift_hold(page: PageDep, recording_id: RecId) -> Response:
        rec = await recordings.set_legal_hold(page.ctx, recording_id, None)
        return (
            _row(page, rec)
            if page.is_htmx
            else page.redirect(f"{page.base}/recordings?call_id={rec.call_id}")
        )
