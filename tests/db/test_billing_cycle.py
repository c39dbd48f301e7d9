"""The billing cycle on the real database: rent and allowance by the month (first month
prorated), expiry, monthly minimum, the unanswered-calls penalty, late fees, the prepaid
life cycle and the notices — each written once however often the job runs."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import asyncpg

from provisioning.billing_cycle import CycleReport, add_months, run_billing_cycle
from provisioning.catalog import SUBSCRIPTIONS
from provisioning.engine import Ctx, create_row
from provisioning.money import recharge
from provisioning.roles import Principal, Role
from provisioning.schemas import RechargeCreate, SubscriptionCreate
from provisioning.tenants import change_tenant_state
from softswitch.core.clock import FixedClock
from tests.db.conftest import new_tenant

SH = ZoneInfo("Asia/Shanghai")


def at(y: int, m: int, d: int, hh: int = 9, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=SH)


async def _package_id(conn: asyncpg.Connection, code: str) -> int:
    return await conn.fetchval("SELECT id FROM packages WHERE code = $1", code)


async def _subscribe(
    conn: asyncpg.Connection, tenant: int, code: str, starts_on: date, ends_on: date | None = None
) -> int:
    return await conn.fetchval(
        "INSERT INTO subscriptions (tenant_id, package_id, starts_on, ends_on) VALUES ($1, $2, $3, $4) "
        "RETURNING id",
        tenant,
        await _package_id(conn, code),
        starts_on,
        ends_on,
    )


async def _calls(
    conn: asyncpg.Connection,
    tenant: int,
    n: int,
    decided_at: datetime,
    ring_s: int = 20,
    answered: bool = False,
    amount: Decimal | None = None,
) -> None:
    tag = f"{tenant}-{random.getrandbits(40):x}"
    await conn.executemany(
        "INSERT INTO calls (linkedid, uniqueid, tenant_id, caller, called, action, reason, decided_at, "
        "answered_at, ended_at, direction, amount) VALUES ($1, $1, $2, '13800138000', '4008001234', "
        "'dial', 'routed', $3, $4, $5, 'inbound', $6)",
        [
            (
                f"bc-{tag}-{i}",
                tenant,
                decided_at + timedelta(seconds=i),
                decided_at + timedelta(seconds=i + 5) if answered else None,
                decided_at + timedelta(seconds=i + ring_s),
                amount,
            )
            for i in range(n)
        ],
    )


async def _ledger(conn: asyncpg.Connection, tenant: int) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM ledger_entries WHERE tenant_id = $1 ORDER BY id", tenant)


async def _account(conn: asyncpg.Connection, tenant: int) -> asyncpg.Record:
    return await conn.fetchrow("SELECT * FROM accounts WHERE tenant_id = $1", tenant)


async def _run(pool: asyncpg.Pool, tenant: int, now: datetime) -> CycleReport:
    report = await run_billing_cycle(pool, now, tenant_ids=[tenant])
    assert report.errors == {}
    assert report.tenants == [tenant]
    return report


async def _balance_consistent(conn: asyncpg.Connection, tenant: int, opening: Decimal) -> None:
    entries = await _ledger(conn, tenant)
    acct = await _account(conn, tenant)
    assert opening + sum(e["amount"] for e in entries) == acct["balance"]
    if entries:
        assert entries[-1]["balance_after"] == acct["balance"]


async def test_first_month_prorated_rerun_and_next_month(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn, balance=Decimal("200"))
        sub = await _subscribe(conn, tenant, "A59", date(2026, 11, 16))

    # 01:00 in Shanghai on the 16th is still the 15th in UTC: the tenant's day counts.
    first = await _run(pool, tenant, at(2026, 11, 16, 1, 0))
    async with pool.acquire() as conn:
        [rent] = await _ledger(conn, tenant)
        assert (rent["kind"], rent["amount"], rent["idempotency_key"]) == (
            "rent",
            Decimal("-29.50"),
            f"rent:{sub}:2026-11",
        )
        acct = await _account(conn, tenant)
        assert acct["balance"] == Decimal("170.50")
        assert acct["included_seconds_left"] == 149 * 60
        assert acct["rate_per_minute"] == Decimal("0.12")
        assert acct["channel_cap"] == 1
    assert [a.kind for a in first.of("ledger")] == ["rent"]

    again = await _run(pool, tenant, at(2026, 11, 16, 1, 0))
    later_same_month = await _run(pool, tenant, at(2026, 11, 28))
    assert again.of("ledger") == later_same_month.of("ledger") == []
    async with pool.acquire() as conn:
        assert len(await _ledger(conn, tenant)) == 1
        # used 8940 - 1000 s of the bundle in November
        await conn.execute("UPDATE accounts SET included_seconds_left = 1000 WHERE tenant_id = $1", tenant)

    # 2026-11-30T17:00Z is 1 December in Shanghai: the new month.
    await _run(pool, tenant, datetime(2026, 11, 30, 17, 0, tzinfo=UTC))
    await _run(pool, tenant, datetime(2026, 11, 30, 18, 0, tzinfo=UTC))
    async with pool.acquire() as conn:
        entries = await _ledger(conn, tenant)
        assert [(e["kind"], e["amount"], e["idempotency_key"]) for e in entries[1:]] == [
            ("rent", Decimal("-59.00"), f"rent:{sub}:2026-12"),
            ("adjustment", Decimal("0"), f"expired:{tenant}:2026-11"),
        ]
        assert entries[2]["reference"] == "expired 1000 s of 2026-11"
        acct = await _account(conn, tenant)
        assert acct["included_seconds_left"] == 299 * 60
        assert acct["balance"] == Decimal("111.50")
        await _balance_consistent(conn, tenant, Decimal("200"))


async def _outbox(conn: asyncpg.Connection, tenant: int) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM outbox WHERE tenant_id = $1 ORDER BY id", tenant)


async def test_issue_11_a_run_for_a_past_month_leaves_the_current_month_alone(pool: asyncpg.Pool) -> None:
    """Issue 11, item 2, exactly: on 2026-12-02 a subscription to A4-269 from 2026-11-11 is
    created (its billing posts December's rent 269.00 and 2399 minutes); then
    ``billing run --at 2026-11-11T09:00+08:00`` posts November's prorated rent (179.33) —
    and must leave December's allowance, ledger entries and notices as they were."""
    december = FixedClock(at(2026, 12, 2, 10))
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn, balance=Decimal("460"))
        admin = Ctx(conn, Principal(None, "test", Role.PLATFORM_ADMIN), december, tenant)
        sub = (
            await create_row(
                admin,
                SUBSCRIPTIONS,
                SubscriptionCreate(
                    package_id=await _package_id(conn, "A4-269"), starts_on=date(2026, 11, 11)
                ),
            )
        ).id  # type: ignore[attr-defined]
        before = await _account(conn, tenant)
        ledger_before = await _ledger(conn, tenant)
        outbox_before = await _outbox(conn, tenant)
    assert [(e["idempotency_key"], e["amount"]) for e in ledger_before] == [
        (f"rent:{sub}:2026-12", Decimal("-269.00"))
    ]
    assert before["included_seconds_left"] == 2399 * 60
    assert before["allowance_month"] == date(2026, 12, 1)

    report = await _run(pool, tenant, datetime.fromisoformat("2026-11-11T09:00+08:00"))

    async with pool.acquire() as conn:
        after = await _account(conn, tenant)
        ledger = await _ledger(conn, tenant)
        outbox = await _outbox(conn, tenant)
    # December's allowance, tariff and channels: untouched.
    for column in (
        "included_seconds_left",
        "included_reserved_s",
        "allowance_month",
        "rate_per_minute",
        "first_increment_s",
        "increment_s",
        "channel_cap",
    ):
        assert after[column] == before[column], column
    # December's ledger entries are as they were; what was added is November's.
    assert ledger[: len(ledger_before)] == ledger_before
    added = [
        (e["kind"], e["amount"], e["idempotency_key"], e["reference"]) for e in ledger[len(ledger_before) :]
    ]
    assert added == [
        (
            "rent",
            Decimal("-179.33"),
            f"rent:{sub}:2026-11",
            "rent A4-269 2026-11 (from 11, 1599 min included)",
        ),
        # November's allowance was never usable: it is recorded as expired, OF NOVEMBER
        ("adjustment", Decimal("0"), f"expired:{tenant}:2026-11", "expired 95940 s of 2026-11"),
    ]
    assert not any("2026-10" in e["reference"] or "2026-10" in e["idempotency_key"] for e in ledger)
    assert after["balance"] == Decimal("11.67")  # 460 - 269 - 179.33
    # No notice (a "low balance" of 11 November from today's balance, ...) and no state change.
    assert outbox == outbox_before
    assert report.of("notice") == report.of("state") == report.of("allowance") == []
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT state FROM tenants WHERE id = $1", tenant) == "active"
        await _balance_consistent(conn, tenant, Decimal("460"))

    # The current period's own run then sees the low balance, as of today.
    live = await _run(pool, tenant, at(2026, 12, 2, 11))
    assert [(a.kind, a.key) for a in live.of("notice")] == [
        ("low_balance", f"low_balance:{tenant}:2026-12-02")
    ]
    assert live.of("ledger") == []


async def _state(conn: asyncpg.Connection, tenant: int) -> tuple[object, ...]:
    """Everything a billing run may change, without ids, order, running balances or when
    an entry was written (November's expiry is written by whichever run comes second)."""
    acct = await _account(conn, tenant)
    entries = await _ledger(conn, tenant)
    notices = await _outbox(conn, tenant)
    return (
        tuple(
            acct[c]
            for c in (
                "balance",
                "reserved",
                "included_seconds_left",
                "included_reserved_s",
                "allowance_month",
                "rate_per_minute",
                "channel_cap",
            )
        ),
        await conn.fetchval("SELECT state FROM tenants WHERE id = $1", tenant),
        sorted((e["kind"], e["amount"], e["idempotency_key"], e["reference"]) for e in entries),
        sorted((n["kind"], n["dedupe_key"], n["payload"]) for n in notices),
    )


async def test_runs_for_a_past_and_the_current_month_in_any_order_end_in_one_state(
    pool: asyncpg.Pool,
) -> None:
    """November (past) and December (current), each once or twice, in every order: the
    same account, ledger, notices and tenant state."""
    nov, dec = at(2026, 11, 11), at(2026, 12, 2)
    orders = (
        [nov, dec],
        [dec, nov],
        [nov, nov, dec, dec],
        [dec, dec, nov, nov],
        [nov, dec, nov, dec],
        [dec, nov, dec, nov],
    )
    states = []
    for order in orders:
        async with pool.acquire() as conn:
            tenant = await new_tenant(conn, balance=Decimal("1000"))
            sub = await _subscribe(conn, tenant, "A4-269", date(2026, 11, 11))
        for when in order:
            await _run(pool, tenant, when)
        async with pool.acquire() as conn:
            state = await _state(conn, tenant)
            await _balance_consistent(conn, tenant, Decimal("1000"))
        ledger = sorted(
            (kind, amount, key.replace(f":{sub}:", ":S:").replace(f":{tenant}:", ":T:"), ref)
            for kind, amount, key, ref in state[2]
        )
        states.append(
            (state[0], state[1], ledger, [(k, d.replace(str(tenant), "T"), p) for k, d, p in state[3]])
        )
    assert states[0][0] == (
        Decimal("551.67"),  # 1000 - 269 - 179.33
        Decimal("0"),
        2399 * 60,
        0,
        date(2026, 12, 1),
        Decimal("0.12"),
        4,
    )
    assert [(kind, amount, key) for kind, amount, key, _ in states[0][2]] == [
        ("adjustment", Decimal("0"), "expired:T:2026-11"),
        ("rent", Decimal("-269.00"), "rent:S:2026-12"),
        ("rent", Decimal("-179.33"), "rent:S:2026-11"),
    ]
    for order, state in zip(orders, states, strict=True):
        assert state == states[0], [w.date().isoformat() for w in order]


async def test_monthly_minimum_waived_in_month_one_charged_from_month_two(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn, balance=Decimal("1000"))
        sub = await _subscribe(conn, tenant, "P002-400-2400", date(2026, 10, 5))
        await _calls(conn, tenant, 5, at(2026, 10, 20), answered=True, amount=Decimal("10"))
        await _calls(conn, tenant, 6, at(2026, 11, 20), answered=True, amount=Decimal("20"))
        # 23:30 on 30 November in Shanghai is still November there (UTC: the 30th, 15:30)
        await _calls(conn, tenant, 1, at(2026, 11, 30, 23, 30), answered=True, amount=Decimal("5"))

    await _run(pool, tenant, at(2026, 11, 1, 0, 10))  # month 1 (October): no minimum
    async with pool.acquire() as conn:
        assert [e["kind"] for e in await _ledger(conn, tenant)] == ["rent"]  # the 0.00 month marker

    for _ in range(2):
        await _run(pool, tenant, at(2026, 12, 1, 0, 10))  # month 2 (November): 200 - 125
    async with pool.acquire() as conn:
        minimum = [e for e in await _ledger(conn, tenant) if e["kind"] == "minimum"]
        assert [(e["amount"], e["idempotency_key"]) for e in minimum] == [
            (Decimal("-75.00"), f"minimum:{sub}:2026-11")
        ]
        assert (await _account(conn, tenant))["balance"] == Decimal("925.00")
        await _balance_consistent(conn, tenant, Decimal("1000"))


async def test_one_hundred_unanswered_calls_in_a_day_are_charged_ninety_nine_are_not(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn, balance=Decimal("500"))
        await _subscribe(conn, tenant, "A59", date(2026, 11, 1))
        await _calls(conn, tenant, 99, at(2026, 11, 20, 10), ring_s=20)
        await _calls(conn, tenant, 1, at(2026, 11, 20, 23, 50), ring_s=61)  # 2 started minutes
        await _calls(conn, tenant, 99, at(2026, 11, 21, 10), ring_s=20)
        await _calls(conn, tenant, 30, at(2026, 11, 21, 11), answered=True)  # answered: not counted

    for _ in range(2):
        await _run(pool, tenant, at(2026, 11, 22, 9))
    async with pool.acquire() as conn:
        fees = [e for e in await _ledger(conn, tenant) if e["kind"] == "fee"]
        assert [(e["amount"], e["idempotency_key"], e["reference"]) for e in fees] == [
            (
                Decimal("-12.12"),  # 101 minutes at 0.12
                f"unanswered:{tenant}:2026-11-20",
                "unanswered calls 2026-11-20: 100 calls, 101 min at 0.1200",
            )
        ]
        await _balance_consistent(conn, tenant, Decimal("500"))


async def test_late_fee_three_per_mille_a_day_simple_interest(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn, balance=Decimal("-100"))
        await _subscribe(conn, tenant, "P002-400-2400", date(2026, 11, 1))

    for _ in range(2):
        await _run(pool, tenant, at(2026, 11, 10, 8))
    await _run(pool, tenant, at(2026, 11, 11, 8))
    async with pool.acquire() as conn:
        fees = [e for e in await _ledger(conn, tenant) if e["kind"] == "late_fee"]
        # 3‰ of 100 each day; the first day's fee bears no fee itself
        assert [(e["amount"], e["idempotency_key"]) for e in fees] == [
            (Decimal("-0.30"), f"late:{tenant}:2026-11-10"),
            (Decimal("-0.30"), f"late:{tenant}:2026-11-11"),
        ]
        assert (await _account(conn, tenant))["balance"] == Decimal("-100.60")


async def test_exhaustion_suspends_then_terminates_after_seven_days(pool: asyncpg.Pool) -> None:
    number = f"4008{random.randrange(10**6):06d}"
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn, balance=Decimal("10"))
        sub = await _subscribe(conn, tenant, "A59", date(2026, 11, 1))
        await conn.execute("DELETE FROM numbers WHERE number = $1 AND tenant_id IS NULL", number)
        number_id = await conn.fetchval(
            "INSERT INTO numbers (number, kind, tenant_id, state) VALUES ($1, 'unified_400', $2, 'active') "
            "RETURNING id",
            number,
            tenant,
        )

    suspended_at = at(2026, 11, 2, 0, 5)
    report = await _run(pool, tenant, suspended_at)  # rent 59 > 10: a debt
    assert [a.kind for a in report.of("state")] == ["suspended"]
    assert {a.kind for a in report.of("notice")} >= {"suspended", "low_balance"}
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT state, suspended_at FROM tenants WHERE id = $1", tenant)
        assert (row["state"], row["suspended_at"]) == ("suspended", suspended_at)
        actor = await conn.fetchval(
            "SELECT actor FROM audit_log WHERE tenant_id = $1 AND action = 'suspend'", tenant
        )
        assert actor == "system:billing"

    report = await _run(pool, tenant, suspended_at + timedelta(days=6, hours=23))
    assert report.of("state") == []
    report = await _run(pool, tenant, suspended_at + timedelta(days=7))
    assert [a.kind for a in report.of("state")] == ["terminated"]
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT state FROM tenants WHERE id = $1", tenant) == "terminated"
        n = await conn.fetchrow("SELECT * FROM numbers WHERE id = $1", number_id)
        assert (n["state"], n["tenant_id"]) == ("released", None)
        assert n["available_after"] == suspended_at + timedelta(days=7 + 90)
        assert await conn.fetchval("SELECT state FROM subscriptions WHERE id = $1", sub) == "ended"
        kinds = await conn.fetch("SELECT kind FROM outbox WHERE tenant_id = $1 ORDER BY id", tenant)
        assert [k["kind"] for k in kinds].count("terminated") == 1
    # terminated tenants are no longer billed
    assert (await run_billing_cycle(pool, at(2026, 12, 1), tenant_ids=[tenant])).tenants == []


async def test_recharge_resumes_a_tenant_the_cycle_suspended(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn, balance=Decimal("10"))
        await _subscribe(conn, tenant, "A59", date(2026, 11, 1))
        operator_suspended = await new_tenant(conn, balance=Decimal("100"))
        await _subscribe(conn, operator_suspended, "A59", date(2026, 11, 1))
        await conn.execute(
            "UPDATE tenants SET state = 'suspended', suspended_at = $2 WHERE id = $1",
            operator_suspended,
            at(2026, 11, 1),
        )

    await _run(pool, tenant, at(2026, 11, 2))
    async with pool.acquire() as conn:
        ctx = Ctx(conn, Principal(None, "test", Role.PLATFORM_ADMIN), FixedClock(at(2026, 11, 3)), tenant)
        await recharge(ctx, RechargeCreate(amount=Decimal("100")), f"rc-{tenant}")
    report = await _run(pool, tenant, at(2026, 11, 3, 9, 5))
    assert [a.kind for a in report.of("state")] == ["active"]
    assert [a.kind for a in report.of("notice")] == ["resumed"]
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT state FROM tenants WHERE id = $1", tenant) == "active"
        # 10 - 59 rent - 0.15 late fee (3‰ of 49 on 2 Nov) + 100
        assert (await _account(conn, tenant))["balance"] == Decimal("50.85")

    # A suspension the cycle did not make is not lifted (nor turned into a termination).
    report = await _run(pool, operator_suspended, at(2026, 11, 20))
    assert report.of("state") == []


async def test_who_suspended_is_the_tenant_s_data_not_the_audit_log_s(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn, balance=Decimal("10"))
        await _subscribe(conn, tenant, "A59", date(2026, 11, 1))
    await _run(pool, tenant, at(2026, 11, 2))
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT state, suspended_by FROM tenants WHERE id = $1", tenant)
        assert (row["state"], row["suspended_by"]) == ("suspended", "system:billing")
        # An operator lifts the cycle's suspension, then suspends the tenant again: that
        # suspension is the operator's, whoever suspended before.
        ctx = Ctx(conn, Principal(None, "ops", Role.PLATFORM_ADMIN), FixedClock(at(2026, 11, 3)), tenant)
        await change_tenant_state(ctx, tenant, "resume")
        assert await conn.fetchval("SELECT suspended_by FROM tenants WHERE id = $1", tenant) is None
        await recharge(ctx, RechargeCreate(amount=Decimal("100")), f"rc-{tenant}")
        await change_tenant_state(ctx, tenant, "suspend")
        assert await conn.fetchval("SELECT suspended_by FROM tenants WHERE id = $1", tenant) == "operator"
    report = await _run(pool, tenant, at(2026, 11, 4))
    assert report.of("state") == []


async def test_contract_expiry_notices_three_months_and_one_month_ahead_once_each(
    pool: asyncpg.Pool,
) -> None:
    ends = date(2027, 2, 15)
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn, balance=Decimal("1000"))
        sub = await _subscribe(conn, tenant, "A59", date(2026, 6, 1), ends)

    async def expiring() -> list[str]:
        async with pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT dedupe_key FROM outbox WHERE tenant_id = $1 AND kind = 'contract_expiring' "
                "ORDER BY id",
                tenant,
            )
        return [r["dedupe_key"] for r in rows]

    await _run(pool, tenant, at(2026, 11, 10))
    assert await expiring() == []
    for day in (at(2026, 11, 20), at(2026, 11, 25), at(2026, 12, 20)):
        await _run(pool, tenant, day)
    assert await expiring() == [f"contract_expiring:{sub}:{ends}:3m"]
    for day in (at(2027, 1, 20), at(2027, 1, 25), at(2027, 2, 14)):
        await _run(pool, tenant, day)
    assert await expiring() == [f"contract_expiring:{sub}:{ends}:3m", f"contract_expiring:{sub}:{ends}:1m"]


def test_add_months_clamps_to_the_month_end() -> None:
    assert add_months(date(2026, 11, 30), 3) == date(2027, 2, 28)
    assert add_months(date(2027, 1, 31), -2) == date(2026, 11, 30)
    assert add_months(date(2026, 12, 1), 1) == date(2027, 1, 1)
