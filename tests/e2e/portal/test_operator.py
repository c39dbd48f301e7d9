"""Issue 16, item 5: the operator's console in a real browser — a new enterprise through
onboarding (documents reviewed against the 7-day deadline, then its number approved),
suspension and resumption with their notices, the package catalogue."""

from __future__ import annotations

import random
import secrets
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from playwright.sync_api import Page, expect

from scripts.devstack.process import ServiceProcess
from tests.e2e.portal.conftest import PortalWorld, Shots, api, signed_in


def _number_for(service: ServiceProcess, tenant_id: int) -> tuple[int, str]:
    for _ in range(5):
        number = "400" + "".join(random.choices("0123456789", k=7))
        resp = service.request(
            "POST", f"/v1/tenants/{tenant_id}/numbers", json={"number": number, "kind": "unified_400"}
        )
        if resp.status_code != 409:
            break
    assert resp.status_code == 201, resp.text
    number_id = resp.json()["id"]
    api(service, "POST", f"/v1/tenants/{tenant_id}/numbers/{number_id}/submit")
    return number_id, number


def test_an_operator_onboards_an_enterprise_documents_first_then_its_number(
    page: Page, service: ServiceProcess, portal: PortalWorld, shot: Shots
) -> None:
    signed_in(page, portal.operator)
    page.get_by_test_id("nav-tenants").click()
    name = f"新企业 {secrets.token_hex(3)}"
    page.get_by_test_id("new-name").fill(name)
    page.get_by_test_id("new-paid").check()
    page.get_by_test_id("create-tenant").click()
    expect(page.get_by_test_id("tenant-title")).to_have_text(name)
    tenant_id = int(page.url.rstrip("/").split("/")[-1])
    tenant = api(service, "GET", f"/v1/tenants/{tenant_id}")
    # The deadline shown is the payment plus 7 days, in the enterprise's time zone.
    due = datetime.fromisoformat(tenant["paid_at"]) + timedelta(days=7)
    local_due = due.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M")
    expect(page.get_by_test_id("deadline")).to_have_text(f"截止 {local_due}")
    docs = api(service, "GET", f"/v1/tenants/{tenant_id}/documents")["items"]
    expect(page.get_by_test_id("documents").locator("tbody tr")).to_have_count(len(docs))
    expect(page.get_by_test_id("document-business_licence").get_by_test_id("status")).to_have_text("未提交")

    # The enterprise sends its documents and asks for a number (through the API).
    for d in docs:
        api(
            service,
            "PATCH",
            f"/v1/tenants/{tenant_id}/documents/{d['id']}",
            json={"status": "submitted", "reference": f"ref-{d['kind']}"},
            headers={"If-Match": f'"{d["version"]}"'},
        )
    number_id, number = _number_for(service, tenant_id)
    page.reload()
    row = page.get_by_test_id(f"number-{number}")
    expect(row.get_by_test_id("number-state")).to_have_text("待审核")
    # Approving the number before the documents is refused by the service, said at the row.
    row.get_by_test_id("number-approve").click()
    expect(page.get_by_test_id(f"number-{number}").get_by_test_id("error-number")).to_contain_text(
        "onboarding documents not approved yet"
    )
    shot(page, "number-refused")
    assert api(service, "GET", f"/v1/tenants/{tenant_id}/numbers/{number_id}")["state"] == "pending_approval"

    for d in docs:
        page.get_by_test_id(f"document-{d['kind']}").get_by_test_id("approve").click()
        expect(page.get_by_test_id(f"document-{d['kind']}").get_by_test_id("status")).to_have_text("已通过")
    expect(page.get_by_test_id("deadline")).to_have_text("资料齐全")
    assert {d["status"] for d in api(service, "GET", f"/v1/tenants/{tenant_id}/documents")["items"]} == {
        "approved"
    }

    # The approval queue lists the number; approving it there makes it live.
    page.get_by_test_id("nav-numbers").click()
    pending = page.get_by_test_id(f"pending-{number}")
    expect(pending.get_by_test_id("deadline")).to_have_text("资料齐全")
    shot(page, "approval-queue")
    pending.get_by_test_id("approve-number").click()
    expect(page.get_by_test_id(f"pending-{number}")).to_have_count(0)
    assert api(service, "GET", f"/v1/tenants/{tenant_id}/numbers/{number_id}")["state"] == "active"
    audit = api(service, "GET", f"/v1/tenants/{tenant_id}/audit")["items"]
    assert any(e["entity"] == "numbers" and e["action"] == "approve" for e in audit)


def test_an_enterprise_past_its_deadline_shows_overdue_and_a_rejection_keeps_the_note(
    page: Page, service: ServiceProcess, portal: PortalWorld
) -> None:
    paid = datetime.now(UTC) - timedelta(days=8)
    tenant = api(
        service,
        "POST",
        "/v1/tenants",
        201,
        json={"name": f"late {secrets.token_hex(3)}", "paid_at": paid.isoformat()},
    )
    signed_in(page, portal.operator)
    page.goto(f"/portal/ops/tenants/{tenant['id']}")
    expect(page.get_by_test_id("deadline")).to_contain_text("逾期")
    expect(page.get_by_test_id("deadline")).to_have_class("badge deadline-overdue")
    page.get_by_test_id("nav-tenants").click()
    page.get_by_test_id("tenant-search").fill(tenant["name"].upper())
    page.get_by_test_id("search").click()
    expect(page.get_by_test_id("tenants").locator("tbody tr")).to_have_count(1)
    expect(page.get_by_test_id(f"tenant-{tenant['id']}").get_by_test_id("deadline")).to_contain_text("逾期")
    page.goto(f"/portal/ops/tenants/{tenant['id']}")
    row = page.get_by_test_id("document-signed_contract")
    row.get_by_test_id("reject").click()
    expect(page.get_by_test_id("document-signed_contract").get_by_test_id("status")).to_have_text("已驳回")
    doc = next(
        d
        for d in api(service, "GET", f"/v1/tenants/{tenant['id']}/documents")["items"]
        if d["kind"] == "signed_contract"
    )
    assert doc["status"] == "rejected"


def test_suspending_an_enterprise_shows_on_its_page_and_in_the_api(
    page: Page, service: ServiceProcess, portal: PortalWorld
) -> None:
    tenant = api(service, "POST", "/v1/tenants", 201, json={"name": f"pause {secrets.token_hex(3)}"})
    signed_in(page, portal.operator)
    page.goto(f"/portal/ops/tenants/{tenant['id']}")
    page.get_by_test_id("suspend").click()
    expect(page.get_by_test_id("tenant-state")).to_have_text("已暂停")
    assert api(service, "GET", f"/v1/tenants/{tenant['id']}")["state"] == "suspended"
    page.get_by_test_id("resume").click()
    expect(page.get_by_test_id("tenant-state")).to_have_text("正常")
    assert api(service, "GET", f"/v1/tenants/{tenant['id']}")["state"] == "active"


def test_the_notices_the_billing_cycle_writes_show_in_the_console_newest_first(
    page: Page, service: ServiceProcess, portal: PortalWorld, shot: Shots
) -> None:
    # A package taken on an empty account: the cycle charges the rent and warns of the balance.
    tenant = api(service, "POST", "/v1/tenants", 201, json={"name": f"broke {secrets.token_hex(3)}"})
    package = next(
        p for p in api(service, "GET", "/v1/packages?limit=200")["items"] if p["monthly_rent"] != "0"
    )
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    api(
        service,
        "POST",
        f"/v1/tenants/{tenant['id']}/subscriptions",
        201,
        json={"package_id": package["id"], "starts_on": today.isoformat()},
    )
    written = api(service, "GET", f"/v1/tenants/{tenant['id']}/notices")["items"]
    assert written, "the billing cycle wrote a notice for the empty account"
    signed_in(page, portal.operator)
    page.get_by_test_id("nav-notices").click()
    rows = page.get_by_test_id("notices").locator("tbody tr", has_text=tenant["name"])
    expect(rows).to_have_count(len(written))
    newest = max(written, key=lambda n: n["id"])
    expect(page.get_by_test_id(f"notice-{newest['id']}")).to_contain_text(newest["kind"])
    shot(page, "notices")
    # The kind filter keeps only that kind.
    page.get_by_test_id("kind-filter").select_option(newest["kind"])
    expect(page.get_by_test_id("notices").locator("tbody tr").first).to_contain_text(newest["kind"])
    kinds = page.get_by_test_id("notices").locator("tbody tr td:nth-child(3)").all_inner_texts()
    assert set(kinds) == {newest["kind"]}
    # And the enterprise's page lists them too.
    page.goto(f"/portal/ops/tenants/{tenant['id']}")
    expect(page.get_by_test_id("tenant-notices").locator("li")).to_have_count(len(written))


def test_the_package_catalogue_lists_every_package_with_its_prices(
    page: Page, service: ServiceProcess, portal: PortalWorld
) -> None:
    packages = api(service, "GET", "/v1/packages?limit=200")["items"]
    assert packages
    signed_in(page, portal.operator)
    page.get_by_test_id("nav-packages").click()
    expect(page.get_by_test_id("packages").locator("tbody tr")).to_have_count(len(packages))
    sample = packages[0]
    row = page.get_by_test_id(f"package-{sample['code']}")
    expect(row).to_contain_text(f"¥{float(sample['monthly_rent']):,.2f}")
    expect(row).to_contain_text(str(sample["channels"]))
