"""Golden tests of seed 001's switchboard extension modules and trunk fee (issue 20, item 6):
the real billing cycle on the real PostgreSQL with an injected clock, each rent read back as
the statement's lines (provisioning.reports.statement, what GET /v1/tenants/{id}/statement
answers), the trunk's included minutes used by real reservations and settlements. Each test
quotes the tariff line or clause it checks (../shared/seeds/001_*.txt); amounts are exact."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import asyncpg

from provisioning.ledger import Grant, open_reservation, settle_reservation
from provisioning.reports import statement
from tests.db.conftest import new_tenant
from tests.db.test_contract_fees import cycle, operator, subscribe

SH = ZoneInfo("Asia/Shanghai")
D = Decimal


def at(y: int, m: int, d: int, hh: int = 9) -> datetime:
    return datetime(y, m, d, hh, tzinfo=SH)


async def lines(
    conn: asyncpg.Connection, tenant: int, first: date, last: date, kinds: tuple[str, ...]
) -> list[tuple[str, Decimal, str]]:
    read = await statement(operator(conn, at(2030, 1, 1), tenant), first, last, 5000, None)
    return [(e.kind, e.amount, e.reference) for e in read.entries if e.kind in kinds]


async def included_left_s(conn: asyncpg.Connection, tenant: int) -> int:
    left: int = await conn.fetchval("SELECT included_seconds_left FROM accounts WHERE tenant_id = $1", tenant)
    return left


async def talk(pool: asyncpg.Pool, tenant: int, call_id: str, seconds: int, start: datetime) -> Decimal:
    """One call reserved and settled as the call path does; returns what it was charged."""
    async with pool.acquire() as conn:
        grant = await open_reservation(conn, tenant, call_id, f"PJSIP/{call_id}", seconds, start)
        assert isinstance(grant, Grant), grant
        settled = await settle_reservation(conn, call_id, seconds, start)
        assert settled is not None
        return settled.charge.amount


async def test_seed_001_ext_8_and_the_trunk_first_month_by_day_then_whole_months(pool: asyncpg.Pool) -> None:
    """Seed 001's tariff: "企业总机 008 路分机模块 89 元/月 8 个分机号码" and "商企云通中继费 29 元/月
    1 路并发，89 分钟通话费"; §6.3: "申请当月按天计算套餐月租费，按天赠送对应的套餐内容；次月 …
    按月赠送对应的套餐内容". Applied for on 11 April 2026 (20 of April's 30 days): EXT-8 pays
    89 × 20/30 = 59.33, the trunk 29 × 20/30 = 19.33 and gets 89 × 20/30 = 59 whole minutes;
    May and June pay 89.00 and 29.00 each and get 89 minutes each. The trunk's minutes are
    used first, then 0.12 CNY a started minute; what April left (39 min) expires at May's reset,
    re-runs charge nothing more, and each rent line names its package."""
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn, balance=D("500"))
        await subscribe(conn, tenant, "EXT-8", date(2026, 4, 11))
        await subscribe(conn, tenant, "TRUNK", date(2026, 4, 11))
    await cycle(pool, tenant, at(2026, 4, 11))
    await cycle(pool, tenant, at(2026, 4, 11, 18))  # a re-run: nothing twice
    async with pool.acquire() as conn:
        assert await included_left_s(conn, tenant) == 59 * 60
        channel_cap = await conn.fetchval("SELECT channel_cap FROM accounts WHERE tenant_id = $1", tenant)
        assert channel_cap == 1  # "1 路并发"
    # 20 minutes in April, from the included ones: free
    assert await talk(pool, tenant, f"mt-{tenant}-apr", 20 * 60, at(2026, 4, 20)) == D("0.00")
    async with pool.acquire() as conn:
        assert await included_left_s(conn, tenant) == 39 * 60

    await cycle(pool, tenant, at(2026, 5, 1))
    await cycle(pool, tenant, at(2026, 5, 2))
    async with pool.acquire() as conn:
        assert await included_left_s(conn, tenant) == 89 * 60  # reset, not 89 + 39
    # 100 minutes in May: 89 included, 11 at 0.12
    assert await talk(pool, tenant, f"mt-{tenant}-may", 100 * 60, at(2026, 5, 20)) == D("1.32")
    await cycle(pool, tenant, at(2026, 6, 1))
    async with pool.acquire() as conn:
        assert await included_left_s(conn, tenant) == 89 * 60
        assert await lines(
            conn, tenant, date(2026, 4, 1), date(2026, 6, 30), ("rent", "adjustment", "call")
        ) == [
            ("rent", D("-59.33"), "rent EXT-8 2026-04 (from 11, 0 min included)"),
            ("rent", D("-19.33"), "rent TRUNK 2026-04 (from 11, 59 min included)"),
            ("call", D("0.00"), f"call mt-{tenant}-apr: 1200 s billable, 1200 s included"),
            ("rent", D("-89.00"), "rent EXT-8 2026-05"),
            ("rent", D("-29.00"), "rent TRUNK 2026-05"),
            ("adjustment", D("0"), "expired 2340 s of 2026-04"),
            ("call", D("-1.32"), f"call mt-{tenant}-may: 6000 s billable, 5340 s included"),
            ("rent", D("-89.00"), "rent EXT-8 2026-06"),
            ("rent", D("-29.00"), "rent TRUNK 2026-06"),
        ]
        read = await statement(
            operator(conn, at(2030, 1, 1), tenant), date(2026, 4, 1), date(2026, 6, 30), 50, None
        )
        assert {k.kind: k.total for k in read.by_kind}["rent"] == D("-314.66")
        assert read.opening_balance == D("500") and read.closing_balance == D("184.02")


async def test_seed_001_every_extension_module_charges_its_tariff_rent(pool: asyncpg.Pool) -> None:
    """Seed 001's tariff: "企业总机 001/004/008/016/032/064/128 路分机模块 19/49/89/159/289/519/899
    元/月". Each module applied for on 17 May 2026 (15 of May's 31 days) pays rent × 15/31,
    rounded once to the fen, and its whole rent in June; none brings minutes or a rate of its own."""
    rents = {
        "EXT-1": 19,
        "EXT-4": 49,
        "EXT-8": 89,
        "EXT-16": 159,
        "EXT-32": 289,
        "EXT-64": 519,
        "EXT-128": 899,
    }
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn, balance=D("5000"))
        for code in rents:
            await subscribe(conn, tenant, code, date(2026, 5, 17))
    await cycle(pool, tenant, at(2026, 5, 17))
    await cycle(pool, tenant, at(2026, 6, 1))
    async with pool.acquire() as conn:
        got = await lines(conn, tenant, date(2026, 5, 1), date(2026, 6, 30), ("rent",))
        assert await included_left_s(conn, tenant) == 0
    may = {"EXT-1": "9.19", "EXT-4": "23.71", "EXT-8": "43.06", "EXT-16": "76.94"}
    may |= {"EXT-32": "139.84", "EXT-64": "251.13", "EXT-128": "435.00"}
    assert got == [
        *[("rent", -D(may[code]), f"rent {code} 2026-05 (from 17, 0 min included)") for code in rents],
        *[("rent", -D(rent).quantize(D("0.01")), f"rent {code} 2026-06") for code, rent in rents.items()],
    ]
