"""The money pages in a real browser (zh UI): an operator makes a batch of recharge cards
through the API; the enterprise's admin redeems one on the recharges page — a wrong PIN
is refused next to the card, the balance on the dashboard rises by the card's value, the
recharge records and the statement show the entry, and the statement's closing balance
is its opening balance plus its entries; the same form sent again recharges nothing.
The read-only user reads the statement but gets no recharge form, and the service
refuses the recharge if that user sends one anyway. The package page shows the active
package and the account's rates."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Page, expect

from provisioning.cards import luhn_digit, mask_card
from provisioning.portal.web import money
from scripts.devstack.process import ServiceProcess
from tests.e2e.portal.conftest import PortalTenant, Shots, api, make_tenant, signed_in

pytestmark = pytest.mark.stack

FACE_VALUE = Decimal("50.00")


@pytest.fixture(scope="module")
def tenant(service: ServiceProcess) -> PortalTenant:
    """An enterprise of this module's own (its balance moves only here)."""
    return make_tenant(service)


@pytest.fixture(scope="module")
def batch(service: ServiceProcess) -> list[dict[str, Any]]:
    expires = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    issued = api(
        service,
        "POST",
        "/v1/recharge-card-batches",
        201,
        json={"count": 2, "face_value": str(FACE_VALUE), "expires_at": expires, "note": "portal e2e"},
    )
    return list(issued["cards"])


def _amount(text: str) -> Decimal:
    """A figure the money filter wrote: ¥1,234.50 or -¥0.12."""
    m = re.fullmatch(r"(-?)¥([\d,]+\.\d\d)", text.strip())
    assert m, text
    return Decimal(m.group(1) + m.group(2).replace(",", ""))


def _csrf(page: Page) -> str:
    attr = page.locator("body").get_attribute("hx-headers")
    assert attr
    return str(json.loads(attr)["X-CSRF-Token"])


def _balance(service: ServiceProcess, tenant_id: int) -> Decimal:
    return Decimal(api(service, "GET", f"/v1/tenants/{tenant_id}/account")["balance"])


def test_a_card_recharges_once_and_the_statement_adds_up(
    page: Page, service: ServiceProcess, tenant: PortalTenant, batch: list[dict[str, Any]], shot: Shots
) -> None:
    card = batch[0]
    before = _balance(service, tenant.id)
    signed_in(page, tenant.admin)
    expect(page.get_by_test_id("balance")).to_have_text(money(before))
    page.get_by_test_id("nav-recharges").click()
    expect(page.locator("h1")).to_have_text("充值记录")

    # a wrong PIN: refused next to the card (never saying which half was wrong)
    page.get_by_test_id("field-card_number").fill(card["card_number"])
    page.get_by_test_id("field-pin").fill("0" * 8 if card["pin"] != "0" * 8 else "1" * 8)
    page.get_by_test_id("redeem").click()
    expect(page.get_by_test_id("error-card_number")).to_have_text("卡号或密码无效，或该卡已被使用。")
    expect(page.get_by_test_id("field-card_number")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_test_id("field-pin")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_test_id("field-pin")).to_have_value("")  # a PIN is never sent back
    shot(page, "wrong-pin")
    # an unknown card (a valid check digit, not issued): the same answer
    first = "8" if card["card_number"][0] == "9" else "9"  # another card than the one issued
    body = first + card["card_number"][1:-1]
    page.get_by_test_id("field-card_number").fill(body + luhn_digit(body))
    page.get_by_test_id("field-pin").fill(card["pin"])
    page.get_by_test_id("redeem").click()
    expect(page.get_by_test_id("error-card_number")).to_have_text("卡号或密码无效，或该卡已被使用。")
    assert _balance(service, tenant.id) == before

    # the right card and PIN
    page.get_by_test_id("field-card_number").fill(card["card_number"])
    page.get_by_test_id("field-pin").fill(card["pin"])
    form = {
        "csrf_token": _csrf(page),
        "idempotency_key": page.get_by_test_id("idempotency-key").input_value(),
        "card_number": card["card_number"],
        "pin": card["pin"],
    }
    page.get_by_test_id("redeem").click()
    masked = mask_card(card["card_number"])
    expect(page.get_by_test_id("recharged")).to_have_text(f"已用充值卡 {masked} 充值 {money(FACE_VALUE)}。")
    expect(page.get_by_test_id("balance")).to_have_text(money(before + FACE_VALUE))
    rows = page.get_by_test_id("recharges").locator("tbody tr").filter(has_text=masked)
    expect(rows).to_have_count(1)
    expect(rows.get_by_test_id("amount")).to_have_text(money(FACE_VALUE))
    expect(rows.get_by_test_id("balance-after")).to_have_text(money(before + FACE_VALUE))
    shot(page, "recharged")

    # the same form sent again (a double click, a resend): the first recharge, not a second
    again = page.request.post(f"/portal/t/{tenant.id}/recharges", form=form)
    assert again.ok, again.status
    assert again.url == page.url  # answered with the first recharge: recharges?done=<its entry>
    assert _balance(service, tenant.id) == before + FACE_VALUE
    records = api(service, "GET", f"/v1/tenants/{tenant.id}/recharges")["items"]
    assert [r["card_number"] for r in records if r["source"] == "card"] == [masked]
    page.reload()
    expect(page.get_by_test_id("recharges").locator("tbody tr").filter(has_text=masked)).to_have_count(1)

    # the dashboard's balance rose by the card's value
    page.get_by_test_id("nav-home").click()
    expect(page.get_by_test_id("balance")).to_have_text(money(before + FACE_VALUE))

    # this month's statement: the card's entry; closing = opening + every entry
    page.get_by_test_id("nav-statement").click()
    expect(page.locator("h1")).to_have_text("对账单")
    entry = page.get_by_test_id("entries").locator("tbody tr").filter(has_text=masked)
    expect(entry).to_have_count(1)
    expect(entry.get_by_test_id("kind")).to_have_text("充值")
    expect(entry.get_by_test_id("amount")).to_have_text(money(FACE_VALUE))
    opening = _amount(page.get_by_test_id("opening-balance").inner_text())
    closing = _amount(page.get_by_test_id("closing-balance").inner_text())
    amounts = [_amount(t) for t in page.get_by_test_id("entries").get_by_test_id("amount").all_inner_texts()]
    assert closing == opening + sum(amounts)
    assert closing == _balance(service, tenant.id)
    assert _amount(page.get_by_test_id("credits").inner_text()) == sum(a for a in amounts if a > 0)
    shot(page, "statement")

    # a period before the tenant existed: no entries, and nothing moved its balance
    page.get_by_test_id("q-from").fill("2020-01-01")
    page.get_by_test_id("q-to").fill("2020-01-31")
    page.get_by_test_id("show").click()
    expect(page.get_by_test_id("no-entries")).to_have_text("此期间没有账目。")
    expect(page.get_by_test_id("closing-balance")).to_have_text(
        page.get_by_test_id("opening-balance").inner_text()
    )
    # an end before the start is refused next to it
    page.get_by_test_id("q-to").fill("2019-12-31")
    page.get_by_test_id("show").click()
    expect(page.get_by_test_id("error-to")).to_have_text("结束日期早于开始日期，或时间段过长。")


def test_the_read_only_user_reads_the_statement_but_may_not_recharge(
    page: Page, service: ServiceProcess, tenant: PortalTenant, batch: list[dict[str, Any]], shot: Shots
) -> None:
    card = batch[1]
    before = _balance(service, tenant.id)
    signed_in(page, tenant.readonly)
    page.get_by_test_id("nav-statement").click()
    expect(page.get_by_test_id("closing-balance")).to_have_text(money(before))
    page.get_by_test_id("nav-recharges").click()
    expect(page.get_by_test_id("recharges")).to_be_visible()
    expect(page.get_by_test_id("recharge-form")).to_have_count(0)
    shot(page, "read-only")
    # sent anyway, with the session's own CSRF token: the service layer refuses it
    refused = page.request.post(
        f"/portal/t/{tenant.id}/recharges",
        form={
            "csrf_token": _csrf(page),
            "idempotency_key": "read-only-try-1",
            "card_number": card["card_number"],
            "pin": card["pin"],
        },
    )
    assert refused.status == 403
    assert _balance(service, tenant.id) == before


def test_the_package_page_shows_the_active_package_and_the_rates(
    page: Page, service: ServiceProcess, shot: Shots
) -> None:
    other = make_tenant(service)  # a subscription posts rent: not on the other tests' tenant
    signed_in(page, other.admin)
    page.get_by_test_id("nav-package").click()
    expect(page.locator("h1")).to_have_text("套餐与资费")
    expect(page.get_by_test_id("no-package")).to_be_visible()
    account = api(service, "GET", f"/v1/tenants/{other.id}/account")
    expect(page.get_by_test_id("rate")).to_have_text(money(Decimal(account["rate_per_minute"])))

    (pkg,) = api(service, "GET", "/v1/packages", params={"code": "A59"})["items"]  # seed 001's
    zone = ZoneInfo(api(service, "GET", f"/v1/tenants/{other.id}")["timezone"])
    today = datetime.now(zone).date()
    api(
        service,
        "POST",
        f"/v1/tenants/{other.id}/subscriptions",
        201,
        json={"package_id": pkg["id"], "starts_on": today.isoformat()},
    )
    page.reload()
    card = page.get_by_test_id(f"package-{pkg['code']}")
    expect(card.get_by_test_id("package-name")).to_have_text(pkg["name"])
    expect(card.get_by_test_id("monthly-rent")).to_have_text(money(Decimal(pkg["monthly_rent"])))
    expect(card.get_by_test_id("channels")).to_have_text(str(pkg["channels"]))
    expect(card.get_by_test_id("included-minutes")).to_have_text(str(pkg["included_minutes"]))
    expect(card.get_by_test_id("overage-rate")).to_have_text(f"{money(Decimal(pkg['overage_rate']))}/分钟")
    expect(card.get_by_test_id("term")).to_contain_text(today.isoformat())
    account = api(service, "GET", f"/v1/tenants/{other.id}/account")
    expect(page.get_by_test_id("rate")).to_have_text(money(Decimal(account["rate_per_minute"])))
    expect(page.get_by_test_id("increments")).to_have_text(
        f"首 {account['first_increment_s']} 秒，之后每 {account['increment_s']} 秒"
    )
    expect(page.get_by_test_id("included-left")).to_have_text(str(account["included_minutes_free"]))
    shot(page, "package")
