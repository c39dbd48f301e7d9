"""Issue 16, item 2: the time rules page in a real browser (zh UI). A rule made in the
form and given to the number shows "open now" by the call path's own decision; a holiday
for today added in the page closes it ("closed now") and the next real call (SIPp through
Asterisk) is CLOSED by that holiday in its call record; removing the holiday opens it
again, and the next call rings the destination."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from playwright.sync_api import Page, expect

from scripts.devstack.process import ServiceProcess
from scripts.devstack.sipp import SippUas, run_uac
from softswitch.core.settings import Settings
from tests.e2e.conftest import OWNER, changed, engine_of, mobile, unique_caller
from tests.e2e.portal.conftest import PortalTenant, Shots, api, make_tenant, signed_in

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Generation:
    """Waits until the service's call-path snapshot has reloaded after a change."""

    def __init__(self, service: ServiceProcess) -> None:
        self.service = service
        self.seen = service.metric("softswitch_snapshot_generation")

    def wait(self) -> None:
        deadline = time.monotonic() + 5
        while self.service.metric("softswitch_snapshot_generation") <= self.seen:
            assert time.monotonic() < deadline, "the service did not reload its snapshot within 5 s"
            time.sleep(0.02)


def _call(service: ServiceProcess, settings: Settings, tenant: PortalTenant) -> dict[str, Any]:
    caller = unique_caller()
    run_uac(tenant.number, caller, hold_ms=200, timeout_s=40, target=engine_of(settings, "asterisk").carrier)
    deadline = time.monotonic() + 5
    while True:
        calls = api(service, "GET", f"/v1/tenants/{tenant.id}/calls")["items"]
        mine = [c for c in calls if c["caller"] == caller]
        if mine or time.monotonic() > deadline:
            assert mine, f"no call record for {caller}"
            return mine[-1]
        time.sleep(0.1)


def test_a_holiday_added_today_closes_the_number_and_removing_it_opens_it(
    page: Page,
    service: ServiceProcess,
    settings: Settings,
    destination_carrier: SippUas,
    shot: Shots,
) -> None:
    tenant = make_tenant(service)
    destination = mobile()
    changed(
        service,
        "POST",
        f"/v1/tenants/{tenant.id}/bindings",
        201,
        json={"number_id": tenant.number_id, "destination": destination, **OWNER},
    )
    signed_in(page, tenant.admin)
    page.get_by_test_id("nav-schedules").click()
    expect(page.locator("h1")).to_have_text("时间策略")
    page.get_by_test_id("add-policy").click()
    page.get_by_test_id("field-name").fill("office")
    for day in DAYS:
        page.get_by_test_id(f"rules-0-{day}").check()
    # An end before the start: the service's parser refuses it, shown next to "until".
    page.get_by_test_id("rules-0-start").fill("18:00")
    page.get_by_test_id("rules-0-end").fill("09:00")
    page.get_by_test_id("save").click()
    expect(page.get_by_test_id("error-rules-0-end")).to_have_text("结束时间必须晚于开始时间。")
    expect(page.get_by_test_id("rules-0-end")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_test_id("rules-0-start")).not_to_have_attribute("aria-invalid", "true")
    for day in DAYS:  # what was typed is still there
        expect(page.get_by_test_id(f"rules-0-{day}")).to_be_checked()
    expect(page.get_by_test_id("field-name")).to_have_value("office")
    assert api(service, "GET", f"/v1/tenants/{tenant.id}/time-policies")["items"] == []
    shot(page, "refused")

    # Open every day, all day.
    page.get_by_test_id("rules-0-start").fill("00:00")
    page.get_by_test_id("rules-0-end").fill("24:00")
    snapshot = Generation(service)
    page.get_by_test_id("save").click()
    expect(page.locator("h1")).to_have_text("时间策略 office")
    snapshot.wait()
    expect(page.get_by_test_id("status-now")).to_have_text("营业中")
    expect(page.get_by_test_id("day-sun")).to_contain_text("00:00–24:00")
    snapshot = Generation(service)
    page.get_by_test_id(f"use-{tenant.number}").click()
    expect(page.get_by_test_id("using")).to_contain_text(tenant.number)
    snapshot.wait()
    (policy,) = api(service, "GET", f"/v1/tenants/{tenant.id}/time-policies")["items"]
    number = api(service, "GET", f"/v1/tenants/{tenant.id}/numbers/{tenant.number_id}")
    assert number["time_policy_id"] == policy["id"]

    today = datetime.now(ZoneInfo("Asia/Shanghai")).date().isoformat()  # the tenant's zone
    snapshot = Generation(service)
    page.get_by_test_id("field-holiday_date").fill(today)
    page.get_by_test_id("field-holiday_name").fill("测试假日")
    page.get_by_test_id("add-holiday").click()
    expect(page.get_by_test_id("status-now")).to_have_text("休息中")
    expect(page.get_by_test_id("status-why")).to_contain_text(f"节假日 · {today} 测试假日")
    expect(page.get_by_test_id(f"holiday-{today}")).to_contain_text("测试假日")
    shot(page, "holiday-today")
    snapshot.wait()
    closed = _call(service, settings, tenant)
    assert (closed["reason"], closed["why"]) == ("CLOSED", f"holiday: {today} 测试假日")

    snapshot = Generation(service)
    page.get_by_test_id(f"remove-holiday-{today}").click()
    expect(page.get_by_test_id("status-now")).to_have_text("营业中")
    expect(page.get_by_test_id("no-holidays")).to_be_visible()
    shot(page, "open-again")
    snapshot.wait()
    opened = _call(service, settings, tenant)
    assert (opened["reason"], opened["why"], opened["destinations"]) == ("ROUTED", "weekly", [destination])

    page.get_by_test_id("nav-schedules").click()
    listed = page.get_by_test_id("policy-office")
    expect(listed.get_by_test_id("status-now")).to_have_text("营业中")
    expect(listed).to_contain_text(tenant.number)
