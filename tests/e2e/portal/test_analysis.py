"""The call analysis page in a real browser (zh UI, phone width): a new enterprise gets one
real call through Asterisk (SIPp carrier -> engine -> this service -> the bound destination,
answered) and call records written through the call path's own record writer
(CallRecordWriter: decision, then end) at chosen local hours, from callers of known
provinces, today and five weeks ago. The page shows this month by default: the counts by
hour, province and answered/missed are those of the calls made; the quarter preset and a
chosen period change them; each chart's canvas has its Chart.js instance with the same
data; another number chosen shows no calls; the JSON API returns the same figures."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Page, expect

from dialplan.region import region_of
from scripts.devstack.process import ServiceProcess
from scripts.devstack.sipp import SippUas, run_uac
from softswitch.callpath.records import CallRecordWriter, DecisionRecord, EndRecord
from softswitch.core.db import create_pool
from softswitch.core.metrics import Metrics
from softswitch.core.settings import Settings
from tests.e2e.conftest import OWNER, changed, engine_of, mobile, unique_caller
from tests.e2e.portal.conftest import PortalTenant, Shots, api, make_tenant, signed_in

pytestmark = pytest.mark.stack

ZONE = ZoneInfo("Asia/Shanghai")
# caller -> province as the region step reads it
BEIJING, SHANGHAI, SHENZHEN = "13800138000", "02161234567", "075512345678"


def _in_thread(coro: Any) -> Any:
    """Run a coroutine on its own loop (Playwright's sync API owns this thread's)."""
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(asyncio.run(coro)))
    t.start()
    t.join()
    return out[0]


async def _write(
    settings: Settings, tenant: PortalTenant, calls: list[tuple[datetime, str, bool, str]]
) -> None:
    """Call records through the call path's writer: (start, caller, answered, action)."""
    pool = await create_pool(settings)
    try:
        writer = CallRecordWriter(pool, Metrics())
        tag = f"{random.getrandbits(40):x}"
        decisions, ends = [], []
        for i, (start, caller, answered, action) in enumerate(calls):
            d = DecisionRecord(f"ana-{tag}-{i}", f"ana-{tag}-{i}", tenant.id, tenant.number_id, caller,
                               tenant.number, action, "ROUTED", (), start, 100)  # fmt: skip
            decisions.append(d)
            up = start + timedelta(seconds=4) if answered else None
            ends.append(EndRecord(d.linkedid, up, start + timedelta(seconds=64), 16))
        await writer.write(list(decisions))
        await writer.write(list(ends))
    finally:
        await pool.close()


async def _ended_start(settings: Settings, caller: str) -> datetime:
    pool = await create_pool(settings)
    try:
        deadline = time.monotonic() + 10
        while True:
            row = await pool.fetchrow(
                "SELECT decided_at, ended_at, answered_at FROM calls WHERE caller = $1 "
                "ORDER BY id DESC LIMIT 1",
                caller,
            )
            if row is not None and row["ended_at"] is not None:
                assert row["answered_at"] is not None
                return row["decided_at"]
            assert time.monotonic() < deadline, "the real call's record never got its end"
            await asyncio.sleep(0.1)  # polling the call record writer
    finally:
        await pool.close()


def _chart(page: Page, name: str) -> Any:
    return page.evaluate(
        "(n) => { const c = Chart.getChart(document.querySelector(`[data-testid=chart-${n}]`));"
        " return c && {type: c.config.type, labels: c.data.labels,"
        " data: c.data.datasets.map(d => d.data)}; }",
        name,
    )


def test_the_page_counts_the_calls_by_hour_province_and_answer(
    service: ServiceProcess, settings: Settings, destination_carrier: SippUas, page: Page, shot: Shots
) -> None:
    tenant = make_tenant(service)
    changed(
        service, "POST", f"/v1/tenants/{tenant.id}/bindings",
        json={"number_id": tenant.number_id, "destination": mobile(), **OWNER},
    )  # fmt: skip
    # one real call, answered by the bound destination
    caller = unique_caller()
    result = run_uac(tenant.number, caller, hold_ms=800, target=engine_of(settings, "asterisk").carrier)
    assert result.final_status == 200, result.message_log[-2000:]
    real_start = _in_thread(_ended_start(settings, caller)).astimezone(ZONE)

    today = datetime.now(ZONE).replace(minute=10, second=0, microsecond=0)
    earlier = today - timedelta(days=35)
    seeded = [
        (today.replace(hour=3), BEIJING, True, "dial"),
        (today.replace(hour=3), BEIJING, False, "dial"),
        (today.replace(hour=9), SHANGHAI, True, "dial"),
        (today.replace(hour=9), SHENZHEN, False, "reject"),
        (today.replace(hour=21), SHENZHEN, False, "dial"),
        (earlier.replace(hour=14), SHANGHAI, True, "dial"),
        (earlier.replace(hour=14), SHANGHAI, True, "dial"),
    ]
    _in_thread(_write(settings, tenant, seeded))
    month = [s for s in seeded if s[0].date() == today.date()]
    hours = Counter(s[0].hour for s in month) + Counter([real_start.hour])
    answered = Counter(s[0].hour for s in month if s[2] and s[3] == "dial") + Counter([real_start.hour])

    signed_in(page, tenant.admin)
    page.goto(f"/portal/t/{tenant.id}/analysis")
    expect(page.get_by_role("heading", name="来电分析")).to_be_visible()
    expect(page.get_by_test_id("preset-month")).to_have_attribute("aria-current", "true")
    expect(page.get_by_test_id("total-calls")).to_have_text(str(len(month) + 1))
    expect(page.get_by_test_id("total-answered")).to_have_text(str(sum(answered.values())))
    expect(page.get_by_test_id("total-missed")).to_have_text(str(len(month) + 1 - sum(answered.values())))
    expect(page.get_by_test_id("total-refused")).to_have_text("1")
    for hour, n in hours.items():
        expect(page.get_by_test_id(f"hour-{hour}-calls")).to_have_text(str(n))
        expect(page.get_by_test_id(f"hour-{hour}-answered")).to_have_text(str(answered[hour]))
    real_province = region_of(caller).province or "未知地区"
    provinces = Counter({"北京": 2, "上海": 1, "广东": 2}) + Counter([real_province])
    for name, n in provinces.items():
        expect(page.get_by_test_id(f"province-{name}-calls")).to_have_text(str(n))
    expect(page.get_by_test_id("city-广东-深圳-calls")).to_have_text("2")
    expect(page.get_by_test_id(f"weekday-{today.isoweekday()}-calls")).to_have_text(
        str(len(month) + (real_start.date() == today.date()))
    )
    expect(page.get_by_test_id(f"number-{tenant.number_id}-calls")).to_have_text(str(len(month) + 1))
    # every chart is drawn by Chart.js from the same figures
    by_hour = _chart(page, "hour")
    assert by_hour["type"] == "bar" and by_hour["labels"][9] == "09"
    assert by_hour["data"][0] == [answered[h] for h in range(24)]
    assert [a + m for a, m in zip(*by_hour["data"], strict=True)] == [hours[h] for h in range(24)]
    assert _chart(page, "outcome") == {
        "type": "doughnut", "labels": ["已接", "未接"],
        "data": [[sum(answered.values()), len(month) + 1 - sum(answered.values())]],
    }  # fmt: skip
    province = _chart(page, "province")
    assert dict(zip(province["labels"], province["data"][0], strict=True)) == dict(provinces)
    weekday = _chart(page, "weekday")
    assert sum(weekday["data"][0]) + sum(weekday["data"][1]) == len(month) + 1
    callers = _chart(page, "callers")
    assert callers["type"] == "doughnut" and sum(callers["data"][0]) == len(month) + 1
    # first-time calls this month: the real caller's, Beijing's first and Shenzhen's first;
    # Shanghai first called five weeks ago (before this month), so today's call is a repeat
    assert callers["data"][0] == [3, len(month) + 1 - 3]
    shot(page, "month")

    # the quarter includes the calls of five weeks ago when they are in it
    page.get_by_test_id("preset-quarter").click()
    expect(page.get_by_test_id("preset-quarter")).to_have_attribute("aria-current", "true")
    q_month = 3 * ((today.month - 1) // 3) + 1
    in_quarter = earlier.date() >= today.date().replace(month=q_month, day=1)
    expect(page.get_by_test_id("total-calls")).to_have_text(str(len(month) + 1 + 2 * in_quarter))

    # a chosen period: the day of five weeks ago only
    page.get_by_test_id("from").fill(earlier.date().isoformat())
    page.get_by_test_id("to").fill(earlier.date().isoformat())
    page.get_by_test_id("show").click()
    expect(page.get_by_test_id("total-calls")).to_have_text("2")
    expect(page.get_by_test_id("hour-14-calls")).to_have_text("2")
    expect(page.get_by_test_id("province-上海-calls")).to_have_text("2")
    expect(page.get_by_test_id("hour-3-calls")).to_have_count(0)
    assert _chart(page, "hour")["data"][0][14] == 2
    shot(page, "period")

    # the JSON API gives the same figures
    got = api(
        service, "GET", f"/v1/tenants/{tenant.id}/analysis",
        params={"from": earlier.date().isoformat(), "to": today.date().isoformat()},
    )  # fmt: skip
    assert got["totals"]["calls"] == len(seeded) + 1
    assert got["from"] == earlier.date().isoformat()
    assert {p["province"]: p["calls"] for p in got["by_province"]}["上海"] == 3 + (real_province == "上海")
    # another enterprise's analysis does not exist for this one's users
    other = make_tenant(service)
    page.goto(f"/portal/t/{other.id}/analysis")
    expect(page.get_by_test_id("total-calls")).to_have_count(0)
