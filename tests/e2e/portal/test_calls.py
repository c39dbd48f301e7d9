"""The call list in a real browser (zh UI), on real calls: SIPp (the carrier) calls a new
enterprise's 400 number twice through the real Asterisk, the bound destination answers,
the service settles both calls; the page lists them with their talk time, outcome and
charge as the API has them, the filters narrow the list, the keyset page link reaches
the older call, the CSV download holds the same rows and amounts (UTF-8 with a BOM,
times with their UTC offset), and the daily report counts the calls."""

from __future__ import annotations

import csv
import io
import time
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Page, expect

from provisioning.portal.web import duration, money
from scripts.devstack.process import ServiceProcess
from scripts.devstack.sipp import SippUas, run_uac
from softswitch.core.settings import Settings
from tests.e2e.conftest import OWNER, changed, engine_of, mobile, unique_caller
from tests.e2e.portal.conftest import PortalTenant, Shots, api, make_tenant, signed_in

pytestmark = pytest.mark.stack


def _settled(service: ServiceProcess, tenant_id: int, caller: str, budget: float = 15.0) -> dict[str, Any]:
    """The call record of the call from `caller`, once the service has charged it."""
    deadline = time.monotonic() + budget
    while True:
        items = api(service, "GET", f"/v1/tenants/{tenant_id}/calls", params={"limit": 200})["items"]
        mine = [c for c in items if c["caller"] == caller]
        if mine and mine[0]["settled_at"] is not None:
            return dict(mine[0])
        assert time.monotonic() < deadline, f"the call from {caller} was not settled"
        time.sleep(0.2)  # polling the API for the hang-up's settlement


@pytest.fixture(scope="module")
def called(
    service: ServiceProcess, settings: Settings, destination_carrier: SippUas
) -> tuple[PortalTenant, list[dict[str, Any]]]:
    """A new enterprise whose 400 number rings a bound mobile, and two answered calls to it
    (the older first), as the API lists them once settled."""
    tenant = make_tenant(service)
    binding = {"number_id": tenant.number_id, "destination": mobile(), **OWNER}
    changed(service, "POST", f"/v1/tenants/{tenant.id}/bindings", json=binding)
    carrier = engine_of(settings, "asterisk").carrier
    calls = []
    for hold_ms in (2000, 1000):
        caller = unique_caller()
        result = run_uac(tenant.number, caller, hold_ms=hold_ms, target=carrier)
        assert result.final_status == 200, result.message_log[-2000:]
        calls.append(_settled(service, tenant.id, caller))
    return tenant, calls


def _masked(number: str) -> str:
    return number[:3] + "*" * (len(number) - 7) + number[-4:]


def test_the_call_list_shows_real_calls_and_its_filters_narrow_it(
    page: Page, service: ServiceProcess, called: tuple[PortalTenant, list[dict[str, Any]]], shot: Shots
) -> None:
    tenant, (first, second) = called
    zone = ZoneInfo(api(service, "GET", f"/v1/tenants/{tenant.id}")["timezone"])
    signed_in(page, tenant.admin)
    page.get_by_test_id("nav-calls").click()
    expect(page.locator("h1")).to_have_text("通话清单")
    expect(page.get_by_test_id("no-live-calls")).to_be_visible()

    for call in (first, second):
        row = page.get_by_test_id(f"call-{call['id']}")
        expect(row).to_be_visible()
        started = datetime.fromisoformat(call["decided_at"]).astimezone(zone)
        expect(row.get_by_test_id("started")).to_have_text(started.strftime("%Y-%m-%d %H:%M:%S"))
        expect(row.get_by_test_id("direction")).to_have_text("呼入")
        expect(row.get_by_test_id("caller")).to_have_text(_masked(call["caller"]))
        expect(row.get_by_test_id("called")).to_have_text(tenant.number)
        assert call["billsec"] is not None and call["billsec"] >= 1
        expect(row.get_by_test_id("duration")).to_have_text(duration(call["billsec"]))
        expect(row.get_by_test_id("outcome")).to_have_text("已接通目的号码 ROUTED")
        assert Decimal(call["amount"]) > 0  # no package: every started minute at the account's rate
        expect(row.get_by_test_id("charge")).to_have_text(money(Decimal(call["amount"])))
    # newest first
    expect(page.locator("tbody tr").first).to_have_attribute("data-testid", f"call-{second['id']}")
    shot(page, "list")

    # the first caller's number narrows the list to that call
    page.get_by_test_id("q-number").fill(first["caller"])
    page.get_by_test_id("search").click()
    expect(page.get_by_test_id(f"call-{first['id']}")).to_be_visible()
    expect(page.locator("tbody tr")).to_have_count(1)
    # the outcome filter keeps it, the outbound direction has nothing
    page.get_by_test_id("q-reason").select_option("ROUTED")
    page.get_by_test_id("search").click()
    expect(page.locator("tbody tr")).to_have_count(1)
    page.get_by_test_id("q-direction").select_option("outbound")
    page.get_by_test_id("search").click()
    expect(page.get_by_test_id("no-calls")).to_have_text("没有符合条件的通话。")
    # a day after the calls has none of them; the calls' day has both
    day = datetime.fromisoformat(first["decided_at"]).astimezone(zone).date()
    page.goto(f"/portal/t/{tenant.id}/calls?from={day.replace(year=day.year + 1)}")
    expect(page.get_by_test_id("no-calls")).to_be_visible()
    page.goto(f"/portal/t/{tenant.id}/calls?from={day}&to={day}")
    expect(page.locator("tbody tr")).to_have_count(2)
    # the keyset link: the calls older than the second are the first
    page.goto(f"/portal/t/{tenant.id}/calls?before={second['id']}")
    expect(page.locator("tbody tr")).to_have_count(1)
    expect(page.get_by_test_id(f"call-{first['id']}")).to_be_visible()
    expect(page.get_by_test_id("first-page")).to_be_visible()

    # what the service refuses is said next to its field
    page.goto(f"/portal/t/{tenant.id}/calls")
    page.get_by_test_id("q-number").fill("13x")
    page.get_by_test_id("search").click()
    expect(page.get_by_test_id("error-number")).to_have_text("仅限数字，最多 20 位。")
    expect(page.get_by_test_id("q-number")).to_have_attribute("aria-invalid", "true")
    page.get_by_test_id("q-number").fill("")
    page.get_by_test_id("q-to").fill("2020-01-01")
    page.get_by_test_id("q-from").fill("2020-02-01")
    page.get_by_test_id("search").click()
    expect(page.get_by_test_id("error-to")).to_have_text("结束日期早于开始日期，或超出范围。")
    shot(page, "refused")


def test_the_csv_export_holds_the_filtered_calls_with_their_amounts(
    page: Page, service: ServiceProcess, called: tuple[PortalTenant, list[dict[str, Any]]]
) -> None:
    tenant, (first, second) = called
    zone = ZoneInfo(api(service, "GET", f"/v1/tenants/{tenant.id}")["timezone"])
    signed_in(page, tenant.admin)
    page.goto(f"/portal/t/{tenant.id}/calls")

    def export() -> tuple[str, list[list[str]]]:
        with page.expect_download() as dl:
            page.get_by_test_id("export-csv").click()
        path = dl.value.path()
        assert path is not None
        raw = path.read_bytes()
        assert raw.startswith(b"\xef\xbb\xbf")  # the BOM: Excel reads UTF-8
        return dl.value.suggested_filename, list(csv.reader(io.StringIO(raw[3:].decode("utf-8"))))

    name, rows = export()
    assert name.startswith(f"calls-{tenant.id}-") and name.endswith(".csv")
    header, *data = rows
    assert header[:2] == ["通话编号", "开始时间"] and header[-1] == "费用（元）"
    by_id = {r[0]: r for r in data}
    assert set(by_id) == {str(first["id"]), str(second["id"])}
    for call in (first, second):
        row = by_id[str(call["id"])]
        assert Decimal(row[-1]) == Decimal(call["amount"])
        started = datetime.fromisoformat(call["decided_at"]).replace(microsecond=0)
        assert row[1] == started.astimezone(zone).isoformat()  # local, with its offset: +08:00
        assert datetime.fromisoformat(row[1]) == started
        assert row[5] == _masked(call["caller"]) and row[6] == tenant.number
        assert (row[7], row[8], row[9]) == (str(call["billsec"]), "ROUTED", "已接通目的号码")

    # the same filters as the list: one caller's calls only
    page.get_by_test_id("q-number").fill(second["caller"])
    page.get_by_test_id("search").click()
    expect(page.locator("tbody tr")).to_have_count(1)
    _, rows = export()
    assert [r[0] for r in rows[1:]] == [str(second["id"])]


def test_the_daily_report_counts_the_calls(
    page: Page, service: ServiceProcess, called: tuple[PortalTenant, list[dict[str, Any]]], shot: Shots
) -> None:
    tenant, calls = called
    zone = ZoneInfo(api(service, "GET", f"/v1/tenants/{tenant.id}")["timezone"])
    day = datetime.fromisoformat(calls[0]["decided_at"]).astimezone(zone).date()
    signed_in(page, tenant.admin)
    page.get_by_test_id("nav-reports").click()
    expect(page.locator("h1")).to_have_text("日报月报")
    page.get_by_test_id("q-from").fill(day.isoformat())
    page.get_by_test_id("q-to").fill(day.isoformat())
    page.get_by_test_id("show").click()
    row = page.get_by_test_id(f"period-{day.isoformat()}")
    expect(row.get_by_test_id("offered")).to_have_text("2")
    expect(row.get_by_test_id("answered")).to_have_text("2")
    total = sum(Decimal(c["amount"]) for c in calls)
    expect(row.get_by_test_id("amount")).to_have_text(money(total))
    expect(page.get_by_test_id("total-amount")).to_have_text(money(total))
    expect(page.get_by_test_id("report-chart")).to_be_visible()
    shot(page, "daily")
    page.get_by_test_id("q-granularity").select_option("month")
    page.get_by_test_id("q-from").fill(day.replace(day=1).isoformat())
    page.get_by_test_id("show").click()
    month = page.get_by_test_id(f"period-{day.replace(day=1).isoformat()}")
    expect(month.get_by_test_id("offered")).to_have_text("2")
