"""The compliance counters on the real database: the daily spend cap inside the reservation
statements (the tenant's local day), and the per-callee gate taken under the account lock
so that concurrent attempts — as from several service instances — let exactly the limit
through."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg

from dialplan.compliance import OutboundRules, Refused, Window
from dialplan.reasons import Reason
from provisioning.ledger import Grant, Refusal, open_reservation, renew_reservation, settle_reservation
from softswitch.callpath.outbound_gate import OutboundAttempt, gated_reservation
from tests.db.conftest import new_tenant

# 23:30 in Shanghai on 23 November; 00:30 on the 24th is an hour later.
LATE = datetime(2026, 11, 23, 15, 30, tzinfo=UTC)


def call_id() -> str:
    return f"cc-{random.getrandbits(48)}"


async def test_the_cap_counts_the_days_charges_and_every_open_reservation(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn, balance=Decimal("100"), channel_cap=8)
        cap = Decimal("0.30")
        first, second = call_id(), call_id()
        assert isinstance(await open_reservation(conn, tenant, first, "", 60, LATE, cap), Grant)  # 0.12
        assert isinstance(await open_reservation(conn, tenant, second, "", 60, LATE, cap), Grant)  # 0.24
        assert await open_reservation(conn, tenant, call_id(), "", 60, LATE, cap) == Refusal.SPEND_CAP
        assert await renew_reservation(conn, first, 60, LATE, cap) is None  # 0.36 > 0.30
        settled = await settle_reservation(conn, first, 60, LATE + timedelta(seconds=60))
        assert settled is not None and settled.charge.amount == Decimal("0.12")
        acct = await conn.fetchrow("SELECT spent_day, spent_today FROM accounts WHERE tenant_id = $1", tenant)
        assert (str(acct["spent_day"]), acct["spent_today"]) == ("2026-11-23", Decimal("0.12"))
        # 0.12 spent + 0.12 held + 0.12 wanted = 0.36: still past the cap.
        assert await open_reservation(conn, tenant, call_id(), "", 60, LATE, cap) == Refusal.SPEND_CAP
        # Past local midnight the day's charges no longer count, only what is held (0.12).
        next_day = LATE + timedelta(hours=1)
        assert isinstance(await open_reservation(conn, tenant, call_id(), "", 60, next_day, cap), Grant)
        assert await open_reservation(conn, tenant, call_id(), "", 60, next_day, cap) == Refusal.SPEND_CAP
        # Without a cap the same account takes calls as before.
        assert isinstance(await open_reservation(conn, tenant, call_id(), "", 60, next_day), Grant)


async def test_money_is_refused_for_money_before_the_cap_is_named(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn, balance=Decimal("0.10"), channel_cap=8)
        got = await open_reservation(conn, tenant, call_id(), "", 60, LATE, Decimal("0.05"))
    assert got == Refusal.NO_BALANCE


async def test_concurrent_attempts_to_one_callee_let_exactly_the_limit_through(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn, balance=Decimal("100"), channel_cap=64)
    rules = OutboundRules((Window(60, 1), Window(3600, 3)))
    attempt = OutboundAttempt("13800138000", "4001234567", rules)

    async def one(at: datetime) -> Grant | Refusal | Refused:
        async with pool.acquire() as conn:
            return await gated_reservation(conn, attempt, tenant, call_id(), "", 60, at, None)

    results = await asyncio.gather(*(one(LATE) for _ in range(20)))
    assert sum(isinstance(r, Grant) for r in results) == 1
    assert {r for r in results if not isinstance(r, Grant)} == {Refused(Reason.CALLEE_FREQUENCY, "60s:1")}
    # Two minutes later: the hour's limit (3) stops the third.
    later = [await one(LATE + timedelta(minutes=m)) for m in (2, 4, 6)]
    assert [isinstance(r, Grant) for r in later] == [True, True, False]
    assert later[2] == Refused(Reason.CALLEE_FREQUENCY, "3600s:3")
    async with pool.acquire() as conn:
        counted = await conn.fetchval("SELECT count(*) FROM outbound_attempts WHERE tenant_id = $1", tenant)
    assert counted == 3


async def test_a_suspended_tenant_takes_no_reservation(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn, balance=Decimal("100"), channel_cap=4)
        await conn.execute(
            "INSERT INTO tenant_compliance (tenant_id, outbound_suspended_at, suspended_rule) "
            "VALUES ($1, $2, 'robocall')",
            tenant,
            LATE,
        )
        attempt = OutboundAttempt("13800138000", "", OutboundRules())
        got = await gated_reservation(conn, attempt, tenant, call_id(), "", 60, LATE, None)
        assert got == Refused(Reason.OUTBOUND_SUSPENDED)
        acct = await conn.fetchrow(
            "SELECT channels_in_use, reserved FROM accounts WHERE tenant_id = $1", tenant
        )
    assert (acct["channels_in_use"], acct["reserved"]) == (0, 0)
