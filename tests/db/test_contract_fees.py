"""Golden tests of the contracts' fees: the real billing cycle on the real PostgreSQL with an
injected clock, each fee read back as the statement's lines (provisioning.reports.statement,
what GET /v1/tenants/{id}/statement answers). Each test quotes the clause it checks, from the
seed contracts in ../shared/seeds/; amounts are exact."""

from __future__ import annotations

import random
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from provisioning.billing_cycle import CycleReport, run_billing_cycle
from provisioning.catalog import SUBSCRIPTIONS
from provisioning.engine import Ctx, Invalid, create_row, update_row
from provisioning.reports import statement
from provisioning.roles import Principal, Role
from provisioning.schemas import SubscriptionCreate, SubscriptionUpdate
from provisioning.tenants import change_tenant_state
from softswitch.core.clock import FixedClock
from softswitch.core.metrics import Metrics
from softswitch.jobs.catalogue import billing_cycle
from softswitch.jobs.scheduler import JobRun
from tests.db.conftest import new_tenant

SH = ZoneInfo("Asia/Shanghai")
D = Decimal
README = Path(__file__).resolve().parents[2] / "README.md"
FEE_KINDS = ("platform_fee", "prestored", "annual_minimum", "early_termination", "one_off", "expiry")


def at(y: int, m: int, d: int, hh: int = 9) -> datetime:
    return datetime(y, m, d, hh, tzinfo=SH)


def operator(conn: asyncpg.Connection, now: datetime, tenant: int | None = None) -> Ctx:
    return Ctx(conn, Principal(None, "db-test-operator", Role.PLATFORM_ADMIN), FixedClock(now), tenant)


async def subscribe(
    conn: asyncpg.Connection, tenant: int, code: str, starts_on: date, ends_on: date | None = None
) -> int:
    return await conn.fetchval(
        "INSERT INTO subscriptions (tenant_id, package_id, starts_on, ends_on) "
        "VALUES ($1, (SELECT id FROM packages WHERE code = $2), $3, $4) RETURNING id",
        tenant,
        code,
        starts_on,
        ends_on,
    )


async def cycle(pool: asyncpg.Pool, tenant: int, now: datetime) -> CycleReport:
    report = await run_billing_cycle(pool, now, tenant_ids=[tenant])
    assert report.errors == {}
    return report


async def calls_costing(conn: asyncpg.Connection, tenant: int, amount: Decimal, on: datetime) -> None:
    """One settled call of ``amount`` decided at ``on``."""
    await conn.execute(
        "INSERT INTO calls (linkedid, uniqueid, tenant_id, caller, called, action, reason, decided_at, "
        "answered_at, ended_at, direction, amount) VALUES ($1, $1, $2, '13800138000', '4008001234', "
        "'dial', 'routed', $3::timestamptz, $3::timestamptz, $3::timestamptz + interval '60 seconds', "
        "'inbound', $4)",
        f"cf-{tenant}-{random.getrandbits(40):x}",
        tenant,
        on,
        amount,
    )


async def fee_lines(
    conn: asyncpg.Connection, tenant: int, first: date, last: date, kinds: tuple[str, ...] = FEE_KINDS
) -> list[tuple[str, Decimal, str]]:
    """The statement's lines of these kinds for the period: (kind, amount, reference)."""
    read = await statement(operator(conn, at(2030, 1, 1), tenant), first, last, 5000, None)
    return [(e.kind, e.amount, e.reference) for e in read.entries if e.kind in kinds]


async def by_kind(conn: asyncpg.Connection, tenant: int, first: date, last: date) -> dict[str, Decimal]:
    read = await statement(operator(conn, at(2030, 1, 1), tenant), first, last, 5000, None)
    return {k.kind: k.total for k in read.by_kind}


# ---------------------------------------------------------------------------- seed 000
async def test_seed_000_the_platform_fee_is_1000_a_contract_year_charged_once(pool: asyncpg.Pool) -> None:
    """Seed 000 §1.3: "企业通信平台 … 年费 … 按合同期 1000元"; §2.3: "本合同有效期为壹年 …
    服务期限将续展，续展期与本合同服务期相同". A contract signed 15 March 2026 pays 1000 CNY
    on that day and on each anniversary; running the cycle again charges nothing more."""
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn, balance=D("2500"))
        await subscribe(conn, tenant, "P000-PLATFORM", date(2026, 3, 15))
    for now in (at(2026, 3, 15), at(2026, 3, 15, 18), at(2026, 6, 1), at(2027, 3, 14)):
        await cycle(pool, tenant, now)
    await cycle(pool, tenant, at(2027, 3, 15))
    await cycle(pool, tenant, at(2027, 3, 16))
    async with pool.acquire() as conn:
        assert await fee_lines(conn, tenant, date(2026, 3, 1), date(2027, 3, 31)) == [
            (
                "platform_fee",
                D("-1000.00"),
                "platform fee P000-PLATFORM contract year 1 (2026-03-15..2027-03-14)",
            ),
            (
                "platform_fee",
                D("-1000.00"),
                "platform fee P000-PLATFORM contract year 2 (2027-03-15..2028-03-14)",
            ),
        ]
        assert (await by_kind(conn, tenant, date(2027, 3, 1), date(2027, 3, 31)))["platform_fee"] == D(
            "-1000.00"
        )
        assert await conn.fetchval("SELECT balance FROM accounts WHERE tenant_id = $1", tenant) == D("500.00")


async def test_seed_000_call_credit_left_at_the_contracts_end_is_forfeited(pool: asyncpg.Pool) -> None:
    """Seed 000 §3.10: "合同期结束剩余通话时间将清零"; §2.4: "当业务套餐到期 … 系统会自动停断通信
    服务 … 通信服务停断7天仍未续费 … 本合同自动终止". A one-year contract (2026) not renewed:
    service stops on 1 January 2027, the contract ends 7 days later, and the 300 CNY of call
    credit left expire then — once."""
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn, balance=D("1300"))
        await subscribe(conn, tenant, "P000-PLATFORM", date(2026, 1, 1), date(2026, 12, 31))
    await cycle(pool, tenant, at(2026, 1, 1))
    suspended = await cycle(pool, tenant, at(2027, 1, 1))
    assert [(a.kind, a.detail) for a in suspended.of("state")] == [("suspended", "contract_ended")]
    await cycle(pool, tenant, at(2027, 1, 8, 8))  # 7 days not yet over: nothing expires
    async with pool.acquire() as conn:
        assert await fee_lines(conn, tenant, date(2027, 1, 1), date(2027, 1, 31)) == []
    ended = await cycle(pool, tenant, at(2027, 1, 8, 10))
    assert [a.kind for a in ended.of("state")] == ["terminated"]
    await run_billing_cycle(pool, at(2027, 1, 9), tenant_ids=[tenant])
    async with pool.acquire() as conn:
        assert await fee_lines(conn, tenant, date(2026, 1, 1), date(2027, 1, 31)) == [
            (
                "platform_fee",
                D("-1000.00"),
                "platform fee P000-PLATFORM contract year 1 (2026-01-01..2026-12-31)",
            ),
            (
                "expiry",
                D("-300.00"),
                "unused at the contract's end (2027-01-08): call credit 300.00, 0 s included",
            ),
        ]
        assert await conn.fetchval("SELECT balance FROM accounts WHERE tenant_id = $1", tenant) == D("0")


async def test_seed_000_a_renewal_within_the_grace_keeps_the_credit(pool: asyncpg.Pool) -> None:
    """Seed 000 §2.4: "通信服务停断7天仍未续费 … 本合同自动终止" — renewed on day 3 of the stop,
    the contract goes on: the renewal year pays its platform fee, service resumes, and the
    credit left (2300 - 1000 - 1000) is not forfeited."""
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn, balance=D("2300"))
        await subscribe(conn, tenant, "P000-PLATFORM", date(2026, 1, 1), date(2026, 12, 31))
    await cycle(pool, tenant, at(2026, 1, 1))
    await cycle(pool, tenant, at(2027, 1, 1))
    async with pool.acquire() as conn:
        renewal = SubscriptionCreate.model_validate(
            {
                "package_id": await conn.fetchval("SELECT id FROM packages WHERE code = 'P000-PLATFORM'"),
                "starts_on": "2027-01-03",
                "ends_on": "2028-01-02",
            }
        )
        await create_row(operator(conn, at(2027, 1, 3), tenant), SUBSCRIPTIONS, renewal)
    await cycle(pool, tenant, at(2027, 1, 3, 10))
    await cycle(pool, tenant, at(2027, 1, 20))
    async with pool.acquire() as conn:
        assert [k for k, _, _ in await fee_lines(conn, tenant, date(2027, 1, 1), date(2027, 1, 31))] == [
            "platform_fee"
        ]
        assert await conn.fetchval("SELECT state FROM tenants WHERE id = $1", tenant) == "active"
        assert await conn.fetchval("SELECT balance FROM accounts WHERE tenant_id = $1", tenant) == D("300.00")


async def test_seed_000_a_renewal_shorter_than_the_original_is_refused(pool: asyncpg.Pool) -> None:
    """Seed 000 §2.4: "续费周期不低于12月" — after a 12-month contract, a 6-month renewal (a new
    subscription) and a 3-month extension (a later end date) are refused naming ``ends_on``;
    12 months are accepted."""
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn, balance=D("3000"))
        package = await conn.fetchval("SELECT id FROM packages WHERE code = 'P000-PLATFORM'")
        ctx = operator(conn, at(2026, 12, 1), tenant)
        original = await create_row(
            ctx,
            SUBSCRIPTIONS,
            SubscriptionCreate(package_id=package, starts_on=date(2026, 1, 1), ends_on=date(2026, 12, 31)),
        )
        short = SubscriptionCreate(package_id=package, starts_on=date(2027, 1, 1), ends_on=date(2027, 6, 30))
        with pytest.raises(Invalid, match="12 months, this one 6") as refused:
            await create_row(ctx, SUBSCRIPTIONS, short)
        assert refused.value.field == "ends_on"
        version = original.version  # type: ignore[attr-defined]
        with pytest.raises(Invalid, match="12 months, this one 3") as refused:
            await update_row(
                ctx, SUBSCRIPTIONS, original.id, SubscriptionUpdate(ends_on=date(2027, 3, 31)), version
            )  # type: ignore[attr-defined]
        assert refused.value.field == "ends_on"
        year = SubscriptionCreate(package_id=package, starts_on=date(2027, 1, 1), ends_on=date(2027, 12, 31))
        assert (await create_row(ctx, SUBSCRIPTIONS, year)).ends_on == date(2027, 12, 31)  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------- seed 003
async def test_seed_003_prestored_12000_and_a_year_under_2000_topped_up(pool: asyncpg.Pool) -> None:
    """Seed 003 §4.2: "合同套餐：预存话费：12000元，最低消费：2000元/1年，计费标准为：0.12元/分钟".
    The 12000 CNY paid on signing become call credit; 2026's calls cost 812.34, so the year
    is topped up by 1187.66 on its end; 2027's cost 2100.00, over the minimum: nothing."""
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn)
        await subscribe(conn, tenant, "P003-PRESTORED", date(2026, 1, 1))
    await cycle(pool, tenant, at(2026, 1, 1))
    async with pool.acquire() as conn:
        await calls_costing(conn, tenant, D("800.00"), at(2026, 5, 4))
        await calls_costing(conn, tenant, D("12.34"), at(2026, 12, 31, 23))
        await calls_costing(conn, tenant, D("2100.00"), at(2027, 1, 1, 1))  # the next year's
    for now in (at(2026, 12, 31), at(2027, 1, 1), at(2027, 1, 2), at(2028, 1, 1)):
        await cycle(pool, tenant, now)
    async with pool.acquire() as conn:
        assert await fee_lines(conn, tenant, date(2026, 1, 1), date(2028, 1, 31)) == [
            (
                "prestored",
                D("12000.00"),
                "prestored call credit P003-PRESTORED 12000.00, contract from 2026-01-01",
            ),
            (
                "annual_minimum",
                D("-1187.66"),
                "annual minimum P003-PRESTORED contract year 1 (2026-01-01..2026-12-31): "
                "usage 812.34 of 2000.00",
            ),
        ]


# ---------------------------------------------------------------------------- seed 001
async def test_seed_001_terminated_in_month_3_pays_4_months_rent(pool: asyncpg.Pool) -> None:
    """Seed 001 §6.3: "套餐协议期六个月，不含申请当月。使用未满 6 个月拆机的，补足剩余月份的套餐月
    租费"; §7.2: "违约金金额=套餐月租费乘以剩余协议期（月）". An A39 applied for on 10 January
    (term February-July), terminated by the operator on 5 March: March's rent is paid, April
    to July are owed — 4 x 39.00 — once, and the subscription ends."""
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn, balance=D("500"))
        sub = await subscribe(conn, tenant, "A39", date(2026, 1, 10))
    for now in (at(2026, 1, 10), at(2026, 2, 1), at(2026, 3, 1)):
        await cycle(pool, tenant, now)
    async with pool.acquire() as conn:
        await change_tenant_state(operator(conn, at(2026, 3, 5), tenant), tenant, "terminate")
    await cycle(pool, tenant, at(2026, 3, 6))
    await cycle(pool, tenant, at(2026, 3, 7))
    async with pool.acquire() as conn:
        assert await fee_lines(conn, tenant, date(2026, 1, 1), date(2026, 3, 31), ("rent", *FEE_KINDS)) == [
            ("rent", D("-27.68"), "rent A39 2026-01 (from 10, 70 min included)"),
            ("rent", D("-39.00"), "rent A39 2026-02"),
            ("rent", D("-39.00"), "rent A39 2026-03"),
            (
                "early_termination",
                D("-156.00"),
                "early termination A39 on 2026-03-05: 4 of 6 term months left x 39.00",
            ),
        ]
        assert await conn.fetchval("SELECT state FROM subscriptions WHERE id = $1", sub) == "ended"


async def test_seed_001_the_scheduled_cycle_closes_a_contract_the_operator_terminated(
    pool: asyncpg.Pool,
) -> None:
    """Seed 001 §6.3 through the scheduler's billing job (the local day start of the tenant's
    zone): an A39 of 10 January terminated by the operator on 10 February (term month 1
    paid) owes March to July, 5 x 39.00, at the next day's run."""
    zone = "Pacific/Marquesas"  # a zone of its own, so the job touches only this test's tenants
    local = ZoneInfo(zone)
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn, balance=D("300"))
        await conn.execute("UPDATE tenants SET timezone = $2 WHERE id = $1", tenant, zone)
        await subscribe(conn, tenant, "A39", date(2026, 1, 10))
    await cycle(pool, tenant, datetime(2026, 1, 10, 9, tzinfo=local))
    await cycle(pool, tenant, datetime(2026, 2, 1, 9, tzinfo=local))
    async with pool.acquire() as conn:
        ctx = operator(conn, datetime(2026, 2, 10, 17, tzinfo=local), tenant)
        await change_tenant_state(ctx, tenant, "terminate")
    run = JobRun(pool, datetime(2026, 2, 11, 0, 0, 5, tzinfo=local), None, frozenset({zone}), "s", Metrics())
    assert (await billing_cycle(run)).ok
    async with pool.acquire() as conn:
        assert await fee_lines(conn, tenant, date(2026, 2, 1), date(2026, 2, 28)) == [
            (
                "early_termination",
                D("-195.00"),
                "early termination A39 on 2026-02-10: 5 of 6 term months left x 39.00",
            ),
        ]


async def test_seed_001_suspended_for_debt_in_the_application_month_pays_the_whole_term(
    pool: asyncpg.Pool,
) -> None:
    """Seed 001 §7.1 (not paying is a breach) and §7.2: "若甲方违约导致合同提前终止 … 违约金金额
    =套餐月租费乘以剩余协议期（月）". An A59 that never paid, terminated by the cycle after 7 days
    suspended, still in its application month: the 6 term months, 6 x 59.00."""
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn)
        await subscribe(conn, tenant, "A59", date(2026, 4, 2))
    await cycle(pool, tenant, at(2026, 4, 2))
    await cycle(pool, tenant, at(2026, 4, 9, 10))
    async with pool.acquire() as conn:
        assert await fee_lines(conn, tenant, date(2026, 4, 1), date(2026, 4, 30)) == [
            (
                "early_termination",
                D("-354.00"),
                "early termination A59 on 2026-04-09: 6 of 6 term months left x 59.00",
            ),
        ]


async def test_seed_001_a_subscription_ended_after_month_7_owes_nothing(pool: asyncpg.Pool) -> None:
    """Seed 001 §7.2: "协议期超过 7 个月的，此条款不适用" — ended in its 8th month (August for a
    January application), no fee; ended in its application month, the fee is charged at once."""
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn, balance=D("1000"))
        late = await subscribe(conn, tenant, "EXT-4", date(2026, 1, 10))
        await cycle(pool, tenant, at(2026, 1, 10))
        before = await conn.fetchval("SELECT version FROM subscriptions WHERE id = $1", late)
        ctx = operator(conn, at(2026, 8, 3), tenant)
        await update_row(ctx, SUBSCRIPTIONS, late, SubscriptionUpdate(state="ended"), before)
        early = await subscribe(conn, tenant, "EXT-8", date(2026, 8, 3))
        await cycle(pool, tenant, at(2026, 8, 3))
        version = await conn.fetchval("SELECT version FROM subscriptions WHERE id = $1", early)
        await update_row(ctx, SUBSCRIPTIONS, early, SubscriptionUpdate(state="ended"), version)
        assert await fee_lines(conn, tenant, date(2026, 1, 1), date(2026, 8, 31)) == [
            (
                "early_termination",
                D("-534.00"),
                "early termination EXT-8 on 2026-08-03: 6 of 6 term months left x 89.00",
            ),
        ]


async def test_seed_001_the_crm_seat_is_9_a_month_prorated_by_day(pool: asyncpg.Pool) -> None:
    """Seed 001's tariff: "商企云通 CRM 坐席费 9 元/月 客户关系管理，点击拨号，当月按天" — a seat
    from 21 April pays 10 of April's 30 days, 3.00; May a whole 9.00."""
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn, balance=D("200"))
        await subscribe(conn, tenant, "A39", date(2026, 4, 1))
        await subscribe(conn, tenant, "CRM", date(2026, 4, 21))
    for now in (at(2026, 4, 1), at(2026, 4, 21), at(2026, 5, 1)):
        await cycle(pool, tenant, now)
    async with pool.acquire() as conn:
        lines = await fee_lines(conn, tenant, date(2026, 4, 1), date(2026, 5, 31), ("rent",))
        assert [(a, r) for _, a, r in lines if "CRM" in r] == [
            (D("-3.00"), "rent CRM 2026-04 (from 21, 0 min included)"),
            (D("-9.00"), "rent CRM 2026-05"),
        ]


# ---------------------------------------------------------------------------- README
def _readme_table() -> list[list[str]]:
    text = README.read_text()
    start = text.index("<!-- package-charges:begin -->")
    end = text.index("<!-- package-charges:end -->")
    rows = [line for line in text[start:end].splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[1:]]


def _minute(rate: Decimal) -> str:
    return f"{rate:.2f}" if rate else "—"


async def test_the_readme_table_of_package_charges_is_the_catalogue(pool: asyncpg.Pool) -> None:
    """README "What each package charges" lists every seed package as migration 0004 loads it."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT * FROM packages WHERE note LIKE 'seed 00%' AND code = ANY($1::text[]) ORDER BY id",
            [r[0] for r in _readme_table()],
        )
    expected = []
    for p in rows:
        tariff = p["kind"] not in ("addon", "extension_module")
        inbound = _minute(p["overage_rate"]) if tariff else "—"
        if tariff and p["split_billing"]:
            inbound += " (forwarded leg)"
        expected.append(
            [
                p["code"],
                f"{p['monthly_rent']:.2f}" if p["monthly_rent"] else "—",
                str(p["included_minutes"]) if p["included_minutes"] else "—",
                inbound,
                _minute(p["overage_rate"]) if tariff else "—",
                "yes" if p["split_billing"] else "no",
                _other_fees(p),
            ]
        )
    table = _readme_table()
    assert len(table) == 23 and len(rows) == 23
    assert [r[:6] for r in table] == [e[:6] for e in expected]
    assert [r[6] for r in table] == [e[6] for e in expected]


def _other_fees(p: asyncpg.Record) -> str:
    fees = []
    if p["annual_fee"]:
        fees.append(f"{p['annual_fee']:.2f}/year")
    if p["package_total"]:
        minimum = p["package_total"] / p["period_months"]
        fees.append(f"{p['package_total']:.2f} over {p['period_months']} months, minimum {minimum:.2f}/month")
    if p["prestored_amount"]:
        fees.append(f"prestored {p['prestored_amount']:.2f}, minimum {p['annual_minimum']:.2f}/year")
    if p["min_term_months"] and p["monthly_rent"]:
        fees.append(f"term {p['min_term_months']} months")
    return "; ".join(fees) or "—"
