"""Issue 16, item 2: the IVR menus page in a real browser (zh UI). A menu made in the
form is saved through the service layer and listed; a key pointed at a menu that does not
exist is refused by the service's validation of the whole menu set, the error shows next
to that key's target, the other rows keep what was typed, and the stored menu is as it was."""

from __future__ import annotations

import secrets
from typing import Any

from playwright.sync_api import Page, expect

from scripts.devstack.process import ServiceProcess
from tests.e2e.conftest import OWNER, mobile
from tests.e2e.portal.conftest import PortalTenant, PortalWorld, Shots, api, make_tenant, signed_in


def _menus(service: ServiceProcess, tenant: PortalTenant) -> dict[str, Any]:
    items = api(service, "GET", f"/v1/tenants/{tenant.id}/ivr-menus")["items"]
    return {m["name"]: m for m in items}


def test_a_menu_made_in_the_form_is_listed_and_a_dangling_key_is_refused_next_to_its_field(
    page: Page, service: ServiceProcess, shot: Shots
) -> None:
    tenant = make_tenant(service)
    base = f"/v1/tenants/{tenant.id}"
    api(service, "PUT", f"{base}/prompts/welcome/text", json={"text": "销售请按一，挂机请按二。"})
    api(
        service,
        "POST",
        f"{base}/bindings",
        201,
        json={"number_id": tenant.number_id, "destination": mobile(), "group_name": "sales", **OWNER},
    )
    signed_in(page, tenant.admin)
    page.get_by_test_id("nav-ivr").click()
    expect(page.locator("h1")).to_have_text("语音菜单")
    expect(page.get_by_test_id("no-menus")).to_be_visible()
    page.get_by_test_id("add-menu").click()
    page.get_by_test_id("field-name").fill("main")
    page.get_by_test_id("field-prompt").select_option("welcome")
    page.get_by_test_id("keys-0-key").select_option("1")
    page.get_by_test_id("keys-0-action").select_option("group")
    page.get_by_test_id("keys-0-target").fill("sales")
    page.get_by_test_id("keys-1-key").select_option("2")
    page.get_by_test_id("keys-1-action").select_option("hangup")
    expect(page.get_by_test_id("keys-1-target")).to_be_hidden()  # hanging up needs no target
    shot(page, "new-menu")
    page.get_by_test_id("save").click()

    expect(page.locator("h1")).to_have_text("语音菜单")
    row = page.get_by_test_id("menu-main")
    expect(row.get_by_test_id("menu-keys")).to_contain_text("转接到目的组 sales")
    expect(row.get_by_test_id("menu-keys")).to_contain_text("挂机")
    stored = _menus(service, tenant)["main"]
    assert stored["definition"]["prompt"] == "welcome"
    assert stored["definition"]["options"] == {
        "1": {"action": "transfer", "group": "sales"},
        "2": {"action": "hangup"},
    }
    shot(page, "listed")

    # Key 1 to a menu that does not exist: the service refuses the whole set.
    row.get_by_test_id("edit-main").click()
    expect(page.get_by_test_id("keys-0-target")).to_have_value("sales")
    page.get_by_test_id("keys-0-action").select_option("menu")
    page.get_by_test_id("keys-0-target").fill("nowhere")
    page.get_by_test_id("field-timeout").fill("7")
    page.get_by_test_id("save").click()

    error = page.get_by_test_id("error-keys-0-target")
    expect(error).to_have_text("没有名为 nowhere 的菜单。")
    expect(page.get_by_test_id("keys-0-target")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_test_id("keys-0-target")).to_have_value("nowhere")
    expect(page.get_by_test_id("keys-0-action")).to_have_value("menu")
    # nothing else lost, nothing else blamed
    expect(page.get_by_test_id("keys-1-key")).to_have_value("2")
    expect(page.get_by_test_id("keys-1-action")).to_have_value("hangup")
    expect(page.get_by_test_id("keys-1-key")).not_to_have_attribute("aria-invalid", "true")
    expect(page.get_by_test_id("field-name")).to_have_value("main")
    expect(page.get_by_test_id("field-prompt")).to_have_value("welcome")
    expect(page.get_by_test_id("field-timeout")).to_have_value("7")
    expect(page.get_by_test_id("error-form")).to_have_count(0)
    shot(page, "dangling-key")
    assert _menus(service, tenant)["main"] == stored  # the stored menu is unchanged

    # Two rows for one key cannot be one menu: said next to the second row's key.
    page.get_by_test_id("keys-0-action").select_option("voicemail")
    page.get_by_test_id("add-key").click()
    page.get_by_test_id("keys-2-key").select_option("2")
    page.get_by_test_id("keys-2-action").select_option("voicemail")
    page.get_by_test_id("save").click()
    expect(page.get_by_test_id("error-keys-2-key")).to_have_text("按键 2 重复使用。")
    expect(page.get_by_test_id("keys-2-key")).to_have_attribute("aria-invalid", "true")
    assert _menus(service, tenant)["main"] == stored

    # Removing the extra row and saving stores the change.
    page.get_by_test_id("remove-2").click()
    page.get_by_test_id("save").click()
    expect(page.get_by_test_id("menu-main").get_by_test_id("menu-keys")).to_contain_text("语音信箱")
    changed = _menus(service, tenant)["main"]
    assert changed["version"] == stored["version"] + 1
    assert changed["definition"]["options"] == {"1": {"action": "voicemail"}, "2": {"action": "hangup"}}
    assert changed["definition"]["timeout_ms"] == 7000


def test_a_read_only_user_sees_the_menus_but_cannot_change_them(
    page: Page, service: ServiceProcess, portal: PortalWorld
) -> None:
    tenant = portal.b
    base = f"/v1/tenants/{tenant.id}"
    api(service, "PUT", f"{base}/prompts/hello/text", json={"text": "您好。"})
    name = f"ro-{secrets.token_hex(3)}"
    menu = api(
        service,
        "POST",
        f"{base}/ivr-menus",
        201,
        json={"name": name, "definition": {"prompt": "hello", "options": {"0": {"action": "voicemail"}}}},
    )
    signed_in(page, tenant.readonly)
    page.get_by_test_id("nav-ivr").click()
    expect(page.get_by_test_id(f"menu-{name}").get_by_test_id("menu-keys")).to_contain_text("语音信箱")
    expect(page.get_by_test_id("add-menu")).to_have_count(0)
    page.get_by_test_id(f"edit-{name}").click()
    expect(page.get_by_test_id("keys-0-action")).to_have_value("voicemail")
    expect(page.get_by_test_id("save")).to_have_count(0)
    # The service layer refuses the role whatever the page shows.
    csrf = page.locator("input[name=csrf_token]").first.get_attribute("value")
    resp = page.request.post(
        f"/portal/t/{tenant.id}/ivr/{menu['id']}",
        form={"csrf_token": csrf or "", "version": str(menu["version"]), "name": name, "prompt": "hello"},
    )
    assert resp.status == 403
    assert _menus(service, tenant)[name] == menu
