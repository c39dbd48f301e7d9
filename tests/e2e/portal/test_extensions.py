"""The extensions and bound-destinations pages in a real browser (zh UI): a real SIP phone
(SIPp) registering an extension shows as registered in the list with its address and
user agent, and as not registered once it unregisters (Expires: 0), on each engine; an
extension made in the page registers with the password the page showed once; a bad or
duplicate number is refused next to its field; a binding's owner ID number is masked."""

from __future__ import annotations

import json
import random
import re
import secrets
import tempfile
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from scripts.devstack.process import ServiceProcess
from scripts.devstack.sipp import SCENARIOS, run_register
from tests.e2e.conftest import Engine, mobile
from tests.e2e.portal.conftest import PHONE, PortalWorld, Shots, api, signed_in

pytestmark = pytest.mark.stack

POLL = 15_000  # the list refreshes itself every 5 s


def _extension(service: ServiceProcess, tenant_id: int, password: str) -> dict[str, object]:
    for _ in range(5):
        number = str(random.randint(6000, 6999))
        resp = service.request(
            "POST",
            f"/v1/tenants/{tenant_id}/extensions",
            json={"extension": number, "display_name": "Portal phone", "password": password},
        )
        if resp.status_code != 409:
            assert resp.status_code == 201, resp.text
            return resp.json()
    raise AssertionError("no free extension number")


def _phone_ip(engine: Engine) -> str:
    # loopback addresses no carrier uses (see sipp-scenarios/uac_register.xml)
    return "127.0.0.5" if engine.is_asterisk else "127.0.0.6"


def _register(engine: Engine, username: str, password: str, port: int, expires: int = 60) -> int | None:
    """One REGISTER from a fixed port (so that an unregistration names the same contact)."""
    with tempfile.TemporaryDirectory(prefix="sipp-reg-") as tmp:
        scenario = Path(tmp) / "register.xml"
        text = (SCENARIOS / "uac_register.xml").read_text()
        assert text.count("Expires: 60") == 2
        scenario.write_text(text.replace("Expires: 60", f"Expires: {expires}"))
        result = run_register(
            username,
            password,
            scenario=str(scenario),
            local_ip=_phone_ip(engine),
            target=engine.phones,
            extra=("-p", str(port)),
        )
    assert result.statuses, f"no answer to REGISTER (rc={result.returncode})"
    return result.final_status


def test_a_registering_phone_shows_as_registered_until_it_unregisters(
    page: Page, portal: PortalWorld, service: ServiceProcess, engine: Engine, shot: Shots
) -> None:
    password = secrets.token_hex(8)
    ext = _extension(service, portal.a.id, password)
    number, eid = str(ext["extension"]), str(ext["endpoint_id"])
    signed_in(page, portal.a.admin)
    page.get_by_test_id("nav-extensions").click()
    expect(page.locator("h1")).to_have_text("分机")
    state = page.get_by_test_id(f"reg-state-{number}")
    expect(state).to_have_text("未注册")
    expect(page.get_by_test_id(f"extension-{number}")).to_contain_text(eid)

    port = random.randint(41000, 41999)
    assert _register(engine, eid, password, port) == 200
    expect(state).to_have_text("已注册", timeout=POLL)  # no reload: the list refreshes itself
    contact = page.get_by_test_id(f"reg-contact-{number}")
    expect(contact).to_contain_text(f"{_phone_ip(engine)}:{port}")
    expect(contact).to_contain_text("softswitch-sipp-phone")
    expect(contact).to_contain_text(re.compile(r"\d{2}:\d{2}:\d{2} 到期"))
    shot(page, "registered")
    # The password is never in the list.
    assert password not in page.content()

    assert _register(engine, eid, password, port, expires=0) == 200
    expect(state).to_have_text("未注册", timeout=POLL)
    expect(page.get_by_test_id(f"reg-contact-{number}")).to_have_count(0)
    shot(page, "unregistered")


def test_an_extension_made_in_the_page_registers_with_the_password_shown_once(
    page: Page, portal: PortalWorld, service: ServiceProcess, shot: Shots
) -> None:
    signed_in(page, portal.a.admin)
    page.goto(f"/portal/t/{portal.a.id}/extensions")
    page.get_by_test_id("add-extension").click()

    # not digits: refused next to the field, in Chinese
    page.get_by_test_id("field-extension").fill("12a")
    page.get_by_test_id("save").click()
    expect(page.get_by_test_id("error-extension")).to_have_text("2 至 6 位数字。")
    expect(page.get_by_test_id("field-extension")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_test_id("error-password")).to_have_count(0)  # the other fields were fine
    shot(page, "bad-number")

    # a password too short: refused next to the password, the number kept in its field
    number = str(random.randint(7000, 7999))
    page.get_by_test_id("field-extension").fill(number)
    page.get_by_test_id("field-password").fill("short")
    page.get_by_test_id("save").click()
    expect(page.get_by_test_id("error-password")).to_be_visible()
    expect(page.get_by_test_id("field-password")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_test_id("field-extension")).to_have_value(number)

    # no password: the portal makes one and shows it this once
    page.get_by_test_id("field-display_name").fill("前台")
    page.get_by_test_id("field-password").fill("")
    page.get_by_test_id("save").click()
    expect(page.locator("h1")).to_have_text(f"分机 {number} 已创建")
    eid = f"t{portal.a.id}x{number}"
    expect(page.get_by_test_id("created-username")).to_have_text(eid)
    password = page.get_by_test_id("created-password").inner_text()
    assert len(password) >= 10
    shot(page, "created")

    # that password is the account's: the real Asterisk accepts it
    registered = run_register(eid, password)
    assert registered.final_status == 200, registered.message_log[-2000:]

    # the list has it, without the password
    page.get_by_test_id("back-to-list").click()
    row = page.get_by_test_id(f"extension-{number}")
    expect(row).to_contain_text("前台")
    assert password not in page.content()

    # the same number again: the service's refusal, next to the number
    page.get_by_test_id("add-extension").click()
    page.get_by_test_id("field-extension").fill(number)
    page.get_by_test_id("field-password").fill(secrets.token_hex(8))
    page.get_by_test_id("save").click()
    expect(page.get_by_test_id("error-extension")).to_have_text(f"分机 {number} 已存在。")
    expect(page.get_by_test_id("field-extension")).to_have_attribute("aria-invalid", "true")
    shot(page, "duplicate")

    # a voice gateway with fax: the table's rule, said next to the fax box
    page.get_by_test_id("field-extension").fill(str(int(number) + 1000))
    page.get_by_test_id("field-device_kind").select_option("gateway")
    page.get_by_test_id("field-fax_allowed").check()
    page.get_by_test_id("field-password").fill(secrets.token_hex(8))
    page.get_by_test_id("save").click()
    expect(page.get_by_test_id("error-fax_allowed")).to_have_text("语音网关不支持传真。")

    # change it, then delete it
    page.goto(f"/portal/t/{portal.a.id}/extensions")
    page.get_by_test_id(f"edit-{number}").click()
    page.get_by_test_id("field-display_name").fill("大堂")
    page.get_by_test_id("save").click()
    expect(page.get_by_test_id(f"extension-{number}")).to_contain_text("大堂")
    stored = api(service, "GET", f"/v1/tenants/{portal.a.id}/extensions", params={"extension": number})
    assert [e["display_name"] for e in stored["items"]] == ["大堂"]

    page.get_by_test_id(f"edit-{number}").click()
    page.once("dialog", lambda d: d.accept())
    page.get_by_test_id("delete").click()
    expect(page.get_by_test_id(f"extension-{number}")).to_have_count(0)
    gone = api(service, "GET", f"/v1/tenants/{portal.a.id}/extensions", params={"extension": number})
    assert gone["items"] == []


def test_a_read_only_user_sees_extensions_but_cannot_change_them(
    browser: Browser, portal: PortalWorld, service: ServiceProcess
) -> None:
    ext = _extension(service, portal.a.id, secrets.token_hex(8))
    ctx = browser.new_context(base_url=portal.base_url, viewport=PHONE, locale="zh-CN")
    try:
        page = signed_in(ctx.new_page(), portal.a.readonly)
        page.goto(f"/portal/t/{portal.a.id}/extensions")
        expect(page.get_by_test_id(f"extension-{ext['extension']}")).to_be_visible()
        expect(page.get_by_test_id("add-extension")).to_have_count(0)
        expect(page.get_by_test_id(f"edit-{ext['extension']}")).to_have_count(0)
        # the service refuses, whatever the page shows
        csrf = _csrf(page)
        resp = page.request.post(
            f"/portal/t/{portal.a.id}/extensions/new",
            headers={"X-CSRF-Token": csrf},
            form={"extension": "6999", "password": secrets.token_hex(8), "site": "main"},
        )
        assert resp.status == 403
    finally:
        ctx.close()


def _csrf(page: Page) -> str:
    attr = page.locator("body").get_attribute("hx-headers")
    assert attr
    return str(json.loads(attr)["X-CSRF-Token"])


def test_bindings_show_the_owner_id_masked_and_refuse_bad_input_by_field(
    page: Page, portal: PortalWorld, service: ServiceProcess, shot: Shots
) -> None:
    signed_in(page, portal.a.admin)
    page.get_by_test_id("nav-bindings").click()
    expect(page.locator("h1")).to_have_text("绑定号码")

    # bad destination and a too short ID number: each refused next to its own field
    page.get_by_test_id("field-destination").fill("12x")
    page.get_by_test_id("field-owner_name").fill("张三")
    page.get_by_test_id("field-owner_id_number").fill("12")
    page.get_by_test_id("add-binding").click()
    expect(page.get_by_test_id("error-destination")).to_have_text("2 至 20 位数字。")
    expect(page.get_by_test_id("field-destination")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_test_id("field-owner_name")).to_have_value("张三")
    shot(page, "bad-destination")

    page.get_by_test_id("field-destination").fill(mobile())
    page.get_by_test_id("field-owner_id_number").fill("12")
    page.get_by_test_id("add-binding").click()
    expect(page.get_by_test_id("error-owner_id_number")).to_have_text("6 至 30 位字母或数字。")
    expect(page.get_by_test_id("field-owner_id_number")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_test_id("error-destination")).to_have_count(0)

    destination = mobile()
    id_number = "3101011990" + "".join(random.choices("0123456789", k=8))
    page.get_by_test_id("field-destination").fill(destination)
    page.get_by_test_id("field-owner_id_number").fill(id_number)
    page.get_by_test_id("add-binding").click()
    row = page.locator("tr", has=page.get_by_text(destination, exact=True))
    expect(row).to_have_count(1)
    expect(row.get_by_test_id("binding-owner-id")).to_have_text(f"{id_number[:4]}{'*' * 10}{id_number[-4:]}")
    expect(row).to_contain_text("张三")
    expect(row).to_contain_text(portal.a.number)
    assert id_number not in page.content()  # never whole in the page
    shot(page, "added")
    stored = [
        b
        for b in api(service, "GET", f"/v1/tenants/{portal.a.id}/bindings")["items"]
        if b["destination"] == destination
    ]
    assert len(stored) == 1 and stored[0]["owner_name"] == "张三"

    # the same destination on the same number again: refused next to the destination
    page.get_by_test_id("field-destination").fill(destination)
    page.get_by_test_id("field-owner_name").fill("李四")
    page.get_by_test_id("field-owner_id_number").fill(id_number)
    page.get_by_test_id("add-binding").click()
    expect(page.get_by_test_id("error-destination")).to_have_text(f"{destination} 已绑定到该号码。")
    expect(page.get_by_test_id("field-owner_id_number")).to_have_value("")  # an ID number is not echoed
    assert id_number not in page.content()

    page.once("dialog", lambda d: d.accept())
    row.get_by_test_id(f"remove-{stored[0]['id']}").click()
    expect(page.locator("tr", has=page.get_by_text(destination, exact=True))).to_have_count(0)
    left = api(service, "GET", f"/v1/tenants/{portal.a.id}/bindings")["items"]
    assert destination not in [b["destination"] for b in left]


def test_another_tenants_extensions_page_does_not_exist(
    page: Page, portal: PortalWorld, service: ServiceProcess
) -> None:
    signed_in(page, portal.b.admin)
    assert page.request.get(f"/portal/t/{portal.a.id}/extensions").status == 404
    assert page.request.get(f"/portal/t/{portal.a.id}/bindings").status == 404
