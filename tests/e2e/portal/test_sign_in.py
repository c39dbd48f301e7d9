"""Issue 16, items 1 and 7: sign-in with a password, lockout, cookies, CSRF, sign-out,
the language switch, and tenant scoping by URL — in a real browser."""

from __future__ import annotations

from playwright.sync_api import BrowserContext, Page, expect

from provisioning.portal.web import money
from scripts.devstack.process import ServiceProcess
from tests.e2e.portal.conftest import PortalWorld, Shots, api, make_user, sign_in, signed_in


def test_an_enterprise_admin_signs_in_to_the_dashboard_in_chinese_and_switches_to_english(
    page: Page, service: ServiceProcess, portal: PortalWorld, shot: Shots
) -> None:
    sign_in(page, portal.a.admin)
    expect(page).to_have_url(f"{portal.base_url}/portal/t/{portal.a.id}/")
    expect(page.locator("h1")).to_have_text("概览")
    account = api(service, "GET", f"/v1/tenants/{portal.a.id}/account")
    expect(page.get_by_test_id("balance")).to_have_text(money(account["balance"]))
    expect(page.get_by_test_id("channels")).to_have_text(f"0 / {account['channel_cap']}")
    expect(page.get_by_test_id("no-live-calls")).to_be_visible()
    shot(page, "dashboard-zh")
    page.get_by_test_id("lang-switch").click()
    expect(page.locator("h1")).to_have_text("Dashboard")
    expect(page.get_by_test_id("lang-switch")).to_have_text("中文")
    shot(page, "dashboard-en")


def test_the_session_cookie_is_httponly_and_samesite_strict_and_logout_ends_it(
    page: Page, context: BrowserContext, portal: PortalWorld
) -> None:
    signed_in(page, portal.a.admin)
    cookie = next(c for c in context.cookies() if c["name"] == "ss_portal")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/portal"
    assert page.evaluate("document.cookie").find("ss_portal") == -1  # scripts cannot read it
    stolen = cookie["value"]
    page.get_by_test_id("logout").click()
    expect(page).to_have_url(f"{portal.base_url}/portal/login")
    # The old cookie, replayed, opens nothing: the session ended on the server.
    context.add_cookies([{**cookie, "value": stolen}])
    page.goto(f"/portal/t/{portal.a.id}/")
    expect(page).to_have_url(f"{portal.base_url}/portal/login?next=/portal/t/{portal.a.id}/")


def test_a_post_without_the_csrf_token_is_refused(
    page: Page, context: BrowserContext, portal: PortalWorld
) -> None:
    signed_in(page, portal.a.admin)
    # Same cookies, no token: as a forged cross-site form would arrive.
    resp = context.request.post("/portal/logout", form={"csrf_token": "forged"}, max_redirects=0)
    assert resp.status == 403
    page.reload()
    expect(page.get_by_test_id("who")).to_have_text(portal.a.admin.username)  # still signed in


def test_five_wrong_passwords_lock_the_account_until_an_admin_sets_a_new_one(
    page: Page, service: ServiceProcess, portal: PortalWorld, shot: Shots
) -> None:
    user = make_user(service, "tenant_readonly", portal.a.id)
    for _ in range(4):
        sign_in(page, user, "not-the-password-1")
        expect(page.get_by_test_id("login-error")).to_have_text("用户名或密码错误。")
    sign_in(page, user, "not-the-password-1")
    expect(page.get_by_test_id("login-error")).to_contain_text("已锁定")
    # Locked: even the right password is refused now.
    sign_in(page, user)
    expect(page.get_by_test_id("login-error")).to_contain_text("已锁定")
    shot(page, "locked")
    read = api(service, "GET", f"/v1/users/{user.user_id}")
    assert read["locked_until"] is not None
    api(
        service,
        "PATCH",
        f"/v1/users/{user.user_id}",
        json={"password": "A-new-password-77"},
        headers={"If-Match": f'"{read["version"]}"'},
    )
    sign_in(page, user, "A-new-password-77")
    expect(page.get_by_test_id("who")).to_have_text(user.username)


def test_an_enterprise_cannot_reach_another_enterprise_or_the_console_by_editing_urls(
    page: Page, portal: PortalWorld, shot: Shots
) -> None:
    signed_in(page, portal.a.admin)
    for path in (f"/portal/t/{portal.b.id}/", f"/portal/t/{portal.b.id}/live-calls", "/portal/ops/"):
        resp = page.goto(path)
        assert resp is not None and resp.status == 404, path
        expect(page.get_by_test_id("error-status")).to_have_text("404")
    shot(page, "other-tenant-404")


def test_the_operator_lands_on_the_console_and_sees_every_enterprise(
    page: Page, service: ServiceProcess, portal: PortalWorld, shot: Shots
) -> None:
    signed_in(page, portal.operator)
    expect(page).to_have_url(f"{portal.base_url}/portal/ops/")
    expect(page.locator("h1")).to_have_text("运营控制台")
    shot(page, "console")
    for tenant in (portal.a, portal.b):
        resp = page.goto(f"/portal/t/{tenant.id}/")
        assert resp is not None and resp.status == 200
        account = api(service, "GET", f"/v1/tenants/{tenant.id}/account")
        expect(page.get_by_test_id("balance")).to_have_text(money(account["balance"]))
