"""The recordings page in a real browser (zh UI), on a real recorded call: the caller
speaks for 3 s through the real Asterisk, MixMonitor writes the WAV, and the page's search
finds it; its <audio> loads the very file (audio/wav, RIFF, as long as the call); the
download gives the same bytes; a legal hold is placed and lifted by the admin and refused
to the read-only user; another enterprise's session gets 404 for it."""

from __future__ import annotations

import json
import time
import wave
from io import BytesIO
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from scripts.devstack.process import ServiceProcess
from scripts.devstack.sipp import SippUas
from softswitch.core.settings import Settings
from tests.e2e.conftest import OWNER, changed, engine_of, mobile, unique_caller
from tests.e2e.portal.conftest import PHONE, PortalTenant, PortalWorld, Shots, api, make_tenant, signed_in
from tests.e2e.test_recording import _speaking_call

pytestmark = pytest.mark.stack

HOLD_MS = 3000


def _recorded(service: ServiceProcess, tenant_id: int, caller: str, budget: float = 15.0) -> dict[str, Any]:
    """The stored recording of the call from `caller`, once the service has written it."""
    deadline = time.monotonic() + budget
    while True:
        items = api(service, "GET", f"/v1/tenants/{tenant_id}/recordings", params={"caller": caller})["items"]
        if items and items[0]["status"] == "stored":
            return items[0]
        assert time.monotonic() < deadline, f"no stored recording of the call from {caller}"
        time.sleep(0.2)  # polling the API for the recorder's hang-up work


@pytest.fixture(scope="module")
def recorded(
    service: ServiceProcess, settings: Settings, destination_carrier: SippUas
) -> tuple[PortalTenant, dict[str, Any], bytes]:
    """A new enterprise that records every call, one real call to its 400 number, its
    recording's metadata and its WAV as the API serves it."""
    tenant = make_tenant(service)
    base = f"/v1/tenants/{tenant.id}"
    binding = {"number_id": tenant.number_id, "destination": mobile(), **OWNER}
    changed(service, "POST", f"{base}/bindings", json=binding)
    t = api(service, "GET", base)
    # the call path sees the policy with the service's next snapshot: changed() waits for it
    changed(
        service, "PATCH", base, json={"recording_policy": "all"}, headers={"If-Match": f'"{t["version"]}"'}
    )
    caller = unique_caller()
    result: Any = _speaking_call(tenant.number, caller, HOLD_MS, engine_of(settings, "asterisk").carrier)
    assert result.final_status == 200, result.message_log[-2000:]
    rec = _recorded(service, tenant.id, caller)
    audio = service.request("GET", f"{base}/recordings/{rec['id']}/audio")
    assert audio.status_code == 200, audio.text
    return tenant, rec, audio.content


def _csrf(page: Page) -> str:
    attr = page.locator("body").get_attribute("hx-headers")
    assert attr
    return str(json.loads(attr)["X-CSRF-Token"])


def test_the_search_finds_a_recorded_call_and_the_page_plays_and_downloads_it(
    page: Page, service: ServiceProcess, recorded: tuple[PortalTenant, dict[str, Any], bytes], shot: Shots
) -> None:
    tenant, rec, wav = recorded
    rid = rec["id"]
    tenant_zone = api(service, "GET", f"/v1/tenants/{tenant.id}")["timezone"]
    signed_in(page, tenant.admin)
    page.get_by_test_id("nav-recordings").click()
    expect(page.locator("h1")).to_have_text("通话录音")

    # a bad call id is refused next to its field
    page.get_by_test_id("q-call_id").fill("../../etc/passwd")
    page.get_by_test_id("search").click()
    expect(page.get_by_test_id("error-call_id")).to_have_text("不是有效的通话编号。")
    expect(page.get_by_test_id("q-call_id")).to_have_attribute("aria-invalid", "true")

    # nothing on a day without calls
    page.goto(f"/portal/t/{tenant.id}/recordings?caller={rec['caller']}&from=2099-01-01")
    expect(page.get_by_test_id("no-recordings")).to_have_text("没有符合条件的录音。")

    # the day of the call, in the enterprise's time zone, and the caller
    day = page.evaluate(
        "([iso, tz]) => new Date(iso).toLocaleDateString('sv-SE', {timeZone: tz})",
        [rec["started_at"], tenant_zone],
    )
    page.get_by_test_id("q-from").fill(day)
    page.get_by_test_id("q-to").fill(day)
    page.get_by_test_id("q-caller").fill(rec["caller"])
    page.get_by_test_id("search").click()
    row = page.get_by_test_id(f"recording-{rid}")
    expect(row).to_be_visible()
    expect(page.locator("tbody tr")).to_have_count(1)
    expect(row.get_by_test_id("call-id")).to_have_text(rec["call_id"])
    expect(row).to_contain_text(rec["caller"][:3] + "****" + rec["caller"][-4:])  # the caller masked
    assert rec["caller"] not in row.inner_text()

    # the <audio> element loads the file and knows its length
    audio = page.get_by_test_id(f"audio-{rid}")
    expect(audio).to_have_attribute("preload", "none")
    duration = audio.evaluate(
        """a => new Promise((ok, fail) => {
             a.addEventListener('loadedmetadata', () => ok(a.duration), {once: true});
             a.addEventListener('error', () => fail(new Error('audio error ' + (a.error && a.error.code))),
                                {once: true});
             a.load();
           })"""
    )
    with wave.open(BytesIO(wav)) as w:
        seconds = w.getnframes() / w.getframerate()
    assert duration > 0
    assert abs(duration - seconds) < 0.05, (duration, seconds)
    assert abs(duration - HOLD_MS / 1000) <= 1.0

    # its source is the WAV itself, with the session's cookie
    src = audio.get_attribute("src")
    assert src
    played = page.request.get(src)
    assert played.status == 200 and played.headers["content-type"] == "audio/wav"
    assert played.body()[:4] == b"RIFF" and played.body() == wav

    # the download gives the same bytes
    with page.expect_download() as dl:
        row.get_by_test_id(f"download-{rid}").click()
    assert dl.value.suggested_filename == f"recording-{rid}-{rec['call_id']}.wav"
    path = dl.value.path()
    assert path is not None and path.read_bytes() == wav
    shot(page, "found")


def test_a_legal_hold_is_placed_and_lifted_by_the_admin_only(
    page: Page,
    browser: Browser,
    service: ServiceProcess,
    portal: PortalWorld,
    recorded: tuple[PortalTenant, dict[str, Any], bytes],
    shot: Shots,
) -> None:
    tenant, rec, _ = recorded
    rid = rec["id"]
    url = f"/portal/t/{tenant.id}/recordings?call_id={rec['call_id']}"
    signed_in(page, tenant.admin)
    page.goto(url)
    state = page.get_by_test_id(f"hold-state-{rid}")
    expect(state).to_have_text("未保全")

    page.get_by_test_id(f"place-hold-{rid}").click()  # no reason
    expect(page.get_by_test_id("error-reason")).to_have_text("请填写保全原因。")
    page.get_by_test_id(f"hold-reason-{rid}").fill("诉讼证据")
    page.get_by_test_id(f"place-hold-{rid}").click()
    expect(state).to_have_text("已法律保全")
    expect(page.get_by_test_id(f"hold-{rid}")).to_contain_text("诉讼证据")
    expect(page.get_by_test_id(f"hold-{rid}")).to_contain_text(tenant.admin.username)
    held = api(service, "GET", f"/v1/tenants/{tenant.id}/recordings/{rid}")
    assert (held["legal_hold"], held["legal_hold_reason"], held["legal_hold_by"]) == (
        True,
        "诉讼证据",
        tenant.admin.username,
    )
    page.reload()
    expect(state).to_have_text("已法律保全")  # kept, not just shown
    shot(page, "held")

    # the read-only user sees the hold, has no button, and the service refuses the request
    ctx = browser.new_context(base_url=portal.base_url, viewport=PHONE, locale="zh-CN")
    try:
        ro = signed_in(ctx.new_page(), tenant.readonly)
        ro.goto(url)
        expect(ro.get_by_test_id(f"hold-state-{rid}")).to_have_text("已法律保全")
        expect(ro.get_by_test_id(f"lift-hold-{rid}")).to_have_count(0)
        refused = ro.request.post(
            f"/portal/t/{tenant.id}/recordings/{rid}/release", headers={"X-CSRF-Token": _csrf(ro)}
        )
        assert refused.status == 403
    finally:
        ctx.close()
    assert api(service, "GET", f"/v1/tenants/{tenant.id}/recordings/{rid}")["legal_hold"] is True

    page.get_by_test_id(f"lift-hold-{rid}").click()
    expect(state).to_have_text("未保全")
    assert api(service, "GET", f"/v1/tenants/{tenant.id}/recordings/{rid}")["legal_hold"] is False


def test_another_enterprise_gets_404_for_the_recording(
    page: Page, portal: PortalWorld, recorded: tuple[PortalTenant, dict[str, Any], bytes]
) -> None:
    tenant, rec, _ = recorded
    rid = rec["id"]
    signed_in(page, portal.b.admin)
    for path in (
        f"/portal/t/{tenant.id}/recordings/{rid}/audio",  # the other enterprise's pages
        f"/portal/t/{tenant.id}/recordings/{rid}/download",
        f"/portal/t/{portal.b.id}/recordings/{rid}/audio",  # its own pages, the other's id
        f"/portal/t/{portal.b.id}/recordings/{rid}/download",
    ):
        resp = page.request.get(path)
        assert resp.status == 404, path
        assert b"RIFF" not in resp.body()
    page.goto(f"/portal/t/{portal.b.id}/recordings?call_id={rec['call_id']}")
    expect(page.get_by_test_id("no-recordings")).to_be_visible()
    resp = page.request.post(
        f"/portal/t/{portal.b.id}/recordings/{rid}/hold",
        headers={"X-CSRF-Token": _csrf(page)},
        form={"reason": "x"},
    )
    assert resp.status == 404
