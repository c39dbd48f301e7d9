"""Reservations hold their invariants under contention, on the real database."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg

from provisioning.ledger import Grant, Refusal, open_reservation, release_reservation, renew_reservation
from tests.db.conftest import new_tenant

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


async def _attempt(pool: asyncpg.Pool, tenant_id: int, i: int, slice_s: int = 60) -> Grant | Refusal:
    async with pool.acquire() as conn:
        return await open_reservation(
            conn, tenant_id, f"c-{tenant_id}-{i}-{random.getrandbits(32)}", "", slice_s, NOW
        )


async def _invariants(conn: asyncpg.Connection, tenant_id: int) -> asyncpg.Record:
    acct = await conn.fetchrow("SELECT * FROM accounts WHERE tenant_id = $1", tenant_id)
    open_sum = await conn.fetchrow(
        "SELECT count(*) AS n, COALESCE(sum(amount), 0) AS amount, COALESCE(sum(included_s), 0) AS inc "
        "FROM reservations WHERE tenant_id = $1 AND state = 'open'",
        tenant_id,
    )
    assert acct["channels_in_use"] == open_sum["n"] <= acct["channel_cap"]
    assert acct["reserved"] == open_sum["amount"]
    assert acct["included_reserved_s"] == open_sum["inc"] <= acct["included_seconds_left"]
    assert acct["balance"] - acct["reserved"] >= -acct["credit_limit"]
    return acct


async def test_200_simultaneous_attempts_on_a_4_channel_package(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn, balance=Decimal("100"), channel_cap=4)
    results = await asyncio.gather(*(_attempt(pool, tenant, i) for i in range(200)))
    grants = [r for r in results if isinstance(r, Grant)]
    assert len(grants) == 4
    assert {r for r in results if not isinstance(r, Grant)} == {Refusal.CHANNEL_LIMIT}
    async with pool.acquire() as conn:
        acct = await _invariants(conn, tenant)
    assert acct["reserved"] == Decimal("0.48")  # 4 x one minute at 0.12


async def test_money_bounds_the_calls_before_the_channels_do(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn, balance=Decimal("0.30"), channel_cap=8)
    results = await asyncio.gather(*(_attempt(pool, tenant, i) for i in range(50)))
    assert sum(isinstance(r, Grant) for r in results) == 2  # 0.24 reserved, 0.06 left
    assert Refusal.NO_BALANCE in results
    async with pool.acquire() as conn:
        await _invariants(conn, tenant)


async def test_credit_limit_and_included_minutes(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        tenant = await new_tenant(
            conn, balance=Decimal("0"), credit_limit=Decimal("0.12"), channel_cap=8, included_seconds_left=90
        )
        # 90 included seconds: the first minute is free, the second half free, then money
        g1 = await open_reservation(conn, tenant, f"i1-{tenant}", "", 60, NOW)
        g2 = await open_reservation(conn, tenant, f"i2-{tenant}", "", 60, NOW)
        assert isinstance(g1, Grant) and (g1.included_s, g1.amount) == (60, Decimal("0"))
        assert isinstance(g2, Grant) and (g2.included_s, g2.amount) == (30, Decimal("0.06"))
        g3 = await open_reservation(conn, tenant, f"i3-{tenant}", "", 60, NOW)
        assert g3 == Refusal.NO_BALANCE  # 0.06 + 0.12 would pass the 0.12 credit limit
        await _invariants(conn, tenant)


async def test_renewal_until_the_money_runs_out_then_release(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn, balance=Decimal("0.50"), channel_cap=1)
        call = f"r-{tenant}"
        assert isinstance(await open_reservation(conn, tenant, call, "", 60, NOW), Grant)
        renewals = 0
        while await renew_reservation(conn, call, 60, NOW) is not None:
            renewals += 1
        assert renewals == 3  # 4 x 0.12 = 0.48 <= 0.50 < 5 x 0.12
        acct = await _invariants(conn, tenant)
        assert acct["reserved"] == Decimal("0.48")
        assert await open_reservation(conn, tenant, call + "b", "", 60, NOW) == Refusal.CHANNEL_LIMIT
        assert await release_reservation(conn, call, NOW, "not connected")
        assert not await release_reservation(conn, call, NOW, "again")  # idempotent
        acct = await _invariants(conn, tenant)
        assert (acct["reserved"], acct["channels_in_use"], acct["balance"]) == (0, 0, Decimal("0.50"))


async def test_the_same_call_cannot_reserve_twice(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn, balance=Decimal("10"), channel_cap=4)
    call = f"dup-{tenant}"

    async def once() -> Grant | Refusal:
        async with pool.acquire() as conn:
            return await open_reservation(conn, tenant, call, "", 60, NOW)

    results = await asyncio.gather(*(once() for _ in range(10)))
    assert sum(isinstance(r, Grant) for r in results) == 1
    async with pool.acquire() as conn:
        acct = await _invariants(conn, tenant)
    assert acct["channels_in_use"] == 1


async def test_settlement_charges_once_and_balances_agree(pool: asyncpg.Pool) -> None:
    from provisioning.ledger import settle_reservation

    async with pool.acquire() as conn:
        tenant = await new_tenant(conn, balance=Decimal("1.00"), channel_cap=2, included_seconds_left=30)
        call = f"s-{tenant}"
        grant = await open_reservation(conn, tenant, call, "", 120, NOW)
        assert isinstance(grant, Grant) and (grant.included_s, grant.amount) == (30, Decimal("0.18"))
        await conn.execute(
            "INSERT INTO calls (linkedid, uniqueid, tenant_id, caller, called, action, reason, decided_at) "
            "VALUES ($1, $1, $2, '1', '2', 'dial', 'ROUTED', $3)",
            call,
            tenant,
            NOW,
        )
        # 75 s at 60/60: 120 billable s, 30 s from the bundle, 90 s at 0.12/min = 0.18
        first = await settle_reservation(conn, call, 75, NOW)
        again = await settle_reservation(conn, call, 75, NOW)
        assert first is not None and again is None  # a duplicate hang-up charges nothing
        assert (first.charge.amount, first.charge.included_used_s, first.charge.minutes) == (
            Decimal("0.18"),
            30,
            2,
        )
        acct = await _invariants(conn, tenant)
        assert (acct["balance"], acct["reserved"], acct["channels_in_use"]) == (Decimal("0.82"), 0, 0)
        assert acct["included_seconds_left"] == 0
        ledger = await conn.fetch(
            "SELECT amount, balance_after FROM ledger_entries WHERE idempotency_key = $1", call
        )
        assert [(r["amount"], r["balance_after"]) for r in ledger] == [(Decimal("-0.18"), Decimal("0.82"))]
        row = await conn.fetchrow("SELECT amount, minutes, billsec FROM calls WHERE linkedid = $1", call)
        assert (row["amount"], row["minutes"], row["billsec"]) == (Decimal("0.18"), 2, 75)


async def test_concurrent_duplicate_settlements_charge_once(pool: asyncpg.Pool) -> None:
    from provisioning.ledger import settle_reservation

    async with pool.acquire() as conn:
        tenant = await new_tenant(conn, balance=Decimal("5"), channel_cap=1)
        call = f"d-{tenant}"
        assert isinstance(await open_reservation(conn, tenant, call, "", 60, NOW), Grant)

    async def settle() -> object:
        async with pool.acquire() as c:
            return await settle_reservation(c, call, 30, NOW)

    results = await asyncio.gather(*(settle() for _ in range(8)))
    assert sum(r is not None for r in results) == 1
    async with pool.acquire() as conn:
        acct = await _invariants(conn, tenant)
        assert acct["balance"] == Decimal("4.88")
        assert (
            await conn.fetchval("SELECT count(*) FROM ledger_entries WHERE idempotency_key = $1", call) == 1
        )
