"""The customers page in a real browser (zh UI, phone screen): a customer made with a first
note is found by name and by digits of its number; a bad number is refused next to the
phone field with what was typed kept; a read-only user sees customers but no Call button;
and "Call" on a number places a real click-to-dial call — the page says the agent's phone
is ringing, then that the customer is connected showing the enterprise's number, then
that the call has ended — with the agent's SIP phone and the customer's carrier played by
SIPp (tests/e2e/click_to_dial_support.py)."""

from __future__ import annotations

import re
import secrets

import pytest
from playwright.sync_api import Page, expect

from scripts.devstack.process import ServiceProcess
from tests.e2e.click_to_dial_support import agent_phone, customer_number, enterprise, traced_carrier
from tests.e2e.portal.conftest import PortalWorld, Shots, api, signed_in

pytestmark = pytest.mark.stack


def _add_customer(page: Page, name: str, phones: str, note: str = "", tags: str = "") -> None:
    page.get_by_test_id("nav-customers").click()
    page.get_by_test_id("add-customer").click()
    page.get_by_test_id("field-name").fill(name)
    page.get_by_test_id("field-company").fill("华东贸易有限公司")
    page.get_by_test_id("field-phones").fill(phones)
    page.get_by_test_id("field-tags").fill(tags)
    page.get_by_test_id("field-note").fill(note)
    page.get_by_test_id("save").click()


def test_a_customer_with_a_note_is_found_by_name_and_number(
    page: Page, portal: PortalWorld, service: ServiceProcess, shot: Shots
) -> None:
    signed_in(page, portal.a.admin)
    name = f"李雷{secrets.token_hex(2)}"
    digits = customer_number()
    _add_customer(
        page, name, digits[:3] + " " + digits[3:7] + " " + digits[7:], "首次联系：想了解套餐", "vip, 华东"
    )

    expect(page.get_by_test_id("customer-name")).to_have_text(name)
    expect(page.get_by_test_id(f"phone-+86{digits}")).to_have_text(f"+86{digits}")  # stored E.164
    expect(page.get_by_test_id("note-body")).to_have_text("首次联系：想了解套餐")
    expect(page.get_by_test_id("note-meta")).to_contain_text(portal.a.admin.username)
    shot(page, "card")

    page.get_by_test_id("back-to-list").click()
    for query in (name, digits[3:9]):
        page.get_by_test_id("search").fill(query)
        page.get_by_test_id("search-go").click()
        rows = page.get_by_test_id("customers").locator("tbody tr")
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text(name)
    page.get_by_test_id("search").fill(f"无此客户{secrets.token_hex(3)}")
    page.get_by_test_id("search-go").click()
    expect(page.get_by_test_id("no-customers")).to_have_text("没有匹配的客户。")
    shot(page, "search")

    # Another enterprise's customers are not there
    other = api(service, "GET", f"/v1/tenants/{portal.b.id}/customers")
    assert all(c["name"] != name for c in other["items"])


def test_a_bad_number_is_refused_next_to_the_phone_field(
    page: Page, portal: PortalWorld, shot: Shots
) -> None:
    signed_in(page, portal.a.admin)
    _add_customer(page, "韩梅梅", "12345")

    phones = page.get_by_test_id("field-phones")
    expect(phones).to_have_attribute("aria-invalid", "true")
    expect(phones).to_have_value("12345")
    expect(page.get_by_test_id("error-phones")).to_have_text("不是有效的电话号码：12345")
    expect(page.get_by_test_id("field-name")).to_have_value("韩梅梅")
    expect(page.get_by_test_id("error-name")).to_have_count(0)
    shot(page, "bad-number")


def test_call_rings_the_agents_phone_then_connects_the_customer(
    page: Page, portal: PortalWorld, service: ServiceProcess, shot: Shots
) -> None:
    ent = enterprise(service, (portal.a.id, portal.a.number_id, portal.a.number))
    digits = customer_number()
    customer = api(
        service,
        "POST",
        f"/v1/tenants/{portal.a.id}/customers",
        201,
        json={"name": "张伟", "phones": [digits]},
    )
    number = customer["phones"][0]
    signed_in(page, portal.a.admin)
    with (
        traced_carrier(service) as carrier,
        agent_phone(ent.extension, ent.password, ring_ms=2000, talk_ms=4000),
    ):
        page.goto(f"/portal/t/{portal.a.id}/customers/{customer['id']}")
        page.get_by_test_id("agent-extension").select_option(ent.extension["extension"])
        page.get_by_test_id(f"call-{number}").click()

        state = page.get_by_test_id("call-state")
        expect(state).to_have_attribute("data-state", "ringing_agent")
        expect(state).to_contain_text(f"正在呼叫您的话机（{ent.extension['extension']}）")
        shot(page, "ringing")
        expect(state).to_have_attribute("data-state", "connected", timeout=15_000)
        expect(state).to_contain_text(f"客户看到的号码是 {portal.a.number}")
        shot(page, "connected")
        assert carrier.trace.invites(digits), "the customer's carrier received no INVITE"
        expect(state).to_have_attribute("data-state", "ended", timeout=15_000)
        expect(state).to_contain_text("通话已结束")
        call_id = state.get_attribute("data-call-id")
    assert call_id
    final = api(service, "GET", f"/v1/tenants/{portal.a.id}/click-to-dial/{call_id}")
    assert (final["state"], final["reason"], final["extension"]) == (
        "ended",
        "ROUTED",
        ent.extension["extension"],
    )
    # the call is in the enterprise's call list like any call out
    calls = api(service, "GET", f"/v1/tenants/{portal.a.id}/calls", params={"direction": "outbound"})
    assert any(c["linkedid"] == call_id and c["called"] == digits for c in calls["items"])
    # the extension chosen is remembered as the user's phone
    page.reload()
    expect(page.get_by_test_id("agent-extension")).to_have_value(ent.extension["extension"])


def test_a_refusal_shows_its_reason(page: Page, portal: PortalWorld, service: ServiceProcess) -> None:
    ent = enterprise(service, (portal.a.id, portal.a.number_id, portal.a.number))
    customer = api(
        service,
        "POST",
        f"/v1/tenants/{portal.a.id}/customers",
        201,
        json={"name": "未注册", "phones": [customer_number()]},
    )
    signed_in(page, portal.a.admin)
    page.goto(f"/portal/t/{portal.a.id}/customers/{customer['id']}")
    page.get_by_test_id("agent-extension").select_option(ent.extension["extension"])  # no phone registered
    page.get_by_test_id(f"call-{customer['phones'][0]}").click()
    state = page.get_by_test_id("call-state")
    expect(state).to_have_attribute("data-state", "refused")
    expect(state).to_contain_text("被拒绝：您的话机未注册")
    expect(page.get_by_test_id("call-reason")).to_have_text("EXTENSION_NOT_REGISTERED")


def test_a_read_only_user_sees_customers_but_cannot_call(
    page: Page, portal: PortalWorld, service: ServiceProcess
) -> None:
    customer = api(
        service,
        "POST",
        f"/v1/tenants/{portal.a.id}/customers",
        201,
        json={"name": "只读可见", "phones": [customer_number()]},
    )
    signed_in(page, portal.a.readonly)
    page.goto(f"/portal/t/{portal.a.id}/customers/{customer['id']}")
    expect(page.get_by_test_id("customer-name")).to_have_text("只读可见")
    expect(page.get_by_test_id(f"phone-{customer['phones'][0]}")).to_be_visible()
    expect(page.get_by_test_id(f"call-{customer['phones'][0]}")).to_have_count(0)
    expect(page.get_by_test_id("note-form")).to_have_count(0)
    expect(page.locator("body")).not_to_contain_text(re.compile("编辑客户"))
