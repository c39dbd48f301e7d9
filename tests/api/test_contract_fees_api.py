"""The contracts' fees as the tenant reads them: ordered, charged and listed through the real
HTTP server (the production app), the statement read back with GET …/statement. Each test
quotes the clause it checks, from the seed contracts in ../shared/seeds/."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest

from provisioning.billing_cycle import run_billing_cycle
from rating.cycle import add_months
from softswitch.core.clock import FixedClock
from tests.api.conftest import World, bearer, expect, make_tenant, make_user, suffix

pytestmark = pytest.mark.asyncio(loop_scope="session")

D = Decimal
SH = ZoneInfo("Asia/Shanghai")


def _today(clock: FixedClock) -> date:
    return clock.now().astimezone(SH).date()


async def _tenant(client: httpx.AsyncClient, world: World, balance: str) -> int:
    tenant = await make_tenant(client, world.admin, f"api-fees {suffix()}")
    expect(
        await client.post(
            f"/v1/tenants/{tenant['id']}/recharges",
            headers={**world.admin, "Idempotency-Key": f"fees-{uuid.uuid4()}"},
            json={"amount": balance, "reference": "contract payment"},
        ),
        201,
    )
    return int(tenant["id"])


async def _package(client: httpx.AsyncClient, world: World, code: str) -> int:
    items = expect(await client.get("/v1/packages", headers=world.admin, params={"code": code}), 200)["items"]
    return int(items[0]["id"])


async def _statement(client: httpx.AsyncClient, headers: dict[str, str], tenant: int, day: date) -> Any:
    params = {"from": day.isoformat(), "to": day.isoformat()}
    return expect(await client.get(f"/v1/tenants/{tenant}/statement", headers=headers, params=params), 200)


def _lines(statement: Any, kind: str) -> list[tuple[Decimal, str]]:
    return [(D(e["amount"]), e["reference"]) for e in statement["entries"] if e["kind"] == kind]


def _total(statement: Any, kind: str) -> Decimal:
    return next(D(k["total"]) for k in statement["by_kind"] if k["kind"] == kind)


async def _order(
    client: httpx.AsyncClient, headers: dict[str, str], tenant: int, key: str, item: str, quantity: int
) -> httpx.Response:
    return await client.post(
        f"/v1/tenants/{tenant}/orders",
        headers={**headers, "Idempotency-Key": key},
        json={"item": item, "quantity": quantity},
    )


async def test_one_off_fees_are_charged_at_the_order_and_listed_on_the_statement(
    client: httpx.AsyncClient, world: World, clock: FixedClock
) -> None:
    """Seed 001's tariff: "调测费 99 元/次", "安装费 语音网关 199 元/路", "SIP 话机 299 元/台",
    "铃音制作费 99 元/次". Four orders cost 99 + 4 × 199 + 2 × 299 + 99 = 1592.00, each a
    statement line of its own; a retried order (same Idempotency-Key) is charged once."""
    tenant = await _tenant(client, world, "2000.00")
    keys = {
        item: f"order-{uuid.uuid4()}"
        for item in ("debugging", "gateway_port", "sip_phone", "tone_production")
    }
    quantities = {"debugging": 1, "gateway_port": 4, "sip_phone": 2, "tone_production": 1}
    for item, quantity in quantities.items():
        placed = expect(await _order(client, world.admin, tenant, keys[item], item, quantity), 201)
        assert (placed["item_code"], placed["quantity"]) == (item, quantity)
    replay = expect(await _order(client, world.admin, tenant, keys["sip_phone"], "sip_phone", 2), 200)
    assert (D(replay["amount"]), D(replay["balance_after"])) == (D("598.00"), D("507.00"))

    statement = await _statement(client, world.admin, tenant, _today(clock))
    assert _lines(statement, "one_off") == [
        (D("-99.00"), "Debugging (standard SIP account) x 1 at 99.00"),
        (D("-796.00"), "Voice gateway installation x 4 at 199.00"),
        (D("-598.00"), "SIP phone installation x 2 at 299.00"),
        (D("-99.00"), "Ringback tone production x 1 at 99.00"),
    ]
    assert _total(statement, "one_off") == D("-1592.00")
    assert D(statement["closing_balance"]) == D("408.00")
    orders = expect(await client.get(f"/v1/tenants/{tenant}/orders", headers=world.admin), 200)["items"]
    assert [(o["item_code"], D(o["amount"])) for o in orders] == [
        ("debugging", D("99.00")),
        ("gateway_port", D("796.00")),
        ("sip_phone", D("598.00")),
        ("tone_production", D("99.00")),
    ]


async def test_an_order_is_refused_with_the_reason(
    client: httpx.AsyncClient, world: World, clock: FixedClock
) -> None:
    """An unknown item and a quantity of 0 are 422 naming the field; a key reused for another
    order is 409; a tenant's own users may not order (403) and another tenant's is not found."""
    tenant = await _tenant(client, world, "500.00")
    unknown = expect(await _order(client, world.admin, tenant, f"o-{uuid.uuid4()}", "fax_machine", 1), 422)
    assert unknown["detail"][0]["loc"][-1] == "item" and "sip_phone" in unknown["detail"][0]["msg"]
    zero = expect(await _order(client, world.admin, tenant, f"o-{uuid.uuid4()}", "sip_phone", 0), 422)
    assert zero["detail"][0]["loc"][-1] == "quantity"
    key = f"o-{uuid.uuid4()}"
    expect(await _order(client, world.admin, tenant, key, "sip_phone", 1), 201)
    reused = expect(await _order(client, world.admin, tenant, key, "sip_phone", 3), 409)
    assert reused["detail"][0]["loc"][-1] == "Idempotency-Key"
    _, admin_token = await make_user(client, world.admin, "tenant_admin", tenant, world.tag)
    own = bearer(admin_token)
    expect(await _order(client, own, tenant, f"o-{uuid.uuid4()}", "sip_phone", 1), 403)
    expect(
        await _order(
            client, bearer(world.a.tokens["tenant_admin"]), tenant, f"o-{uuid.uuid4()}", "sip_phone", 1
        ),
        404,
    )
    statement = await _statement(client, own, tenant, _today(clock))
    assert _lines(statement, "one_off") == [(D("-299.00"), "SIP phone installation x 1 at 299.00")]


async def test_the_platform_fee_and_early_termination_show_on_the_statement(
    client: httpx.AsyncClient, world: World, clock: FixedClock
) -> None:
    """Seed 000 §1.3 ("年费 … 1000元"): subscribing the platform charges its first year at once.
    Seed 001 §6.3 ("使用未满 6 个月拆机的，补足剩余月份的套餐月租费"): an A39 ended in its
    application month owes the 6 term months, 6 × 39.00 = 234.00, charged when it is ended."""
    tenant = await _tenant(client, world, "1500.00")
    today = _today(clock)
    base = f"/v1/tenants/{tenant}/subscriptions"
    expect(
        await client.post(
            base,
            headers=world.admin,
            json={
                "package_id": await _package(client, world, "P000-PLATFORM"),
                "starts_on": today.isoformat(),
            },
        ),
        201,
    )
    line = expect(
        await client.post(
            base,
            headers=world.admin,
            json={"package_id": await _package(client, world, "A39"), "starts_on": today.isoformat()},
        ),
        201,
    )
    ended = await client.patch(
        f"{base}/{line['id']}",
        headers={**world.admin, "If-Match": f'"{line["version"]}"'},
        json={"state": "ended"},
    )
    expect(ended, 200)
    statement = await _statement(client, world.admin, tenant, today)
    year_end = add_months(today, 12) - timedelta(days=1)
    assert _lines(statement, "platform_fee") == [
        (D("-1000.00"), f"platform fee P000-PLATFORM contract year 1 ({today}..{year_end})")
    ]
    assert _lines(statement, "early_termination") == [
        (D("-234.00"), f"early termination A39 on {today}: 6 of 6 term months left x 39.00")
    ]
    again = expect(await client.get(f"{base}/{line['id']}", headers=world.admin), 200)
    assert again["state"] == "ended"


async def test_a_renewal_shorter_than_the_original_is_a_422_naming_ends_on(
    client: httpx.AsyncClient, world: World
) -> None:
    """Seed 000 §2.4: "续费周期不低于12月" — after a year's contract, renewing for 6 months is
    refused naming ``ends_on``; a year is accepted."""
    tenant = await _tenant(client, world, "3000.00")
    base = f"/v1/tenants/{tenant}/subscriptions"
    package = await _package(client, world, "P000-PLATFORM")
    expect(
        await client.post(
            base,
            headers=world.admin,
            json={"package_id": package, "starts_on": "2020-01-01", "ends_on": "2020-12-31"},
        ),
        201,
    )
    short = expect(
        await client.post(
            base,
            headers=world.admin,
            json={"package_id": package, "starts_on": "2021-01-01", "ends_on": "2021-06-30"},
        ),
        422,
    )
    assert short["detail"][0]["loc"][-1] == "ends_on"
    assert "12 months, this one 6" in short["detail"][0]["msg"]
    expect(
        await client.post(
            base,
            headers=world.admin,
            json={"package_id": package, "starts_on": "2021-01-01", "ends_on": "2021-12-31"},
        ),
        201,
    )


async def test_a_tenant_terminated_by_the_operator_pays_the_term_left_on_its_statement(
    client: httpx.AsyncClient, pool: asyncpg.Pool, world: World, clock: FixedClock
) -> None:
    """Seed 001 §7.2: "违约金金额=套餐月租费乘以剩余协议期（月）". A C1-4 (69 CNY/month) taken today
    and the tenant terminated today (POST …/terminate): the billing cycle closes the contract
    and the statement shows 6 × 69.00 = 414.00, once however often the cycle runs."""
    tenant = await _tenant(client, world, "100.00")
    today = _today(clock)
    package = await _package(client, world, "C1-4")
    body = {"package_id": package, "starts_on": today.isoformat()}
    sub = expect(
        await client.post(f"/v1/tenants/{tenant}/subscriptions", headers=world.admin, json=body), 201
    )
    expect(await client.post(f"/v1/tenants/{tenant}/terminate", headers=world.admin), 200)
    for _ in range(2):
        report = await run_billing_cycle(pool, clock.now(), tenant_ids=[tenant])
        assert report.errors == {}
    statement = await _statement(client, world.admin, tenant, today)
    assert _lines(statement, "early_termination") == [
        (D("-414.00"), f"early termination C1-4 on {today}: 6 of 6 term months left x 69.00")
    ]
    ended = expect(
        await client.get(f"/v1/tenants/{tenant}/subscriptions/{sub['id']}", headers=world.admin), 200
    )
    assert ended["state"] == "ended"
