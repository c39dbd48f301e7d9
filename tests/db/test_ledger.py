"""The one ledger writer: a balance moves only with the entry recording it, once per key."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg

from provisioning import ledger
from tests.db.conftest import new_tenant

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


async def _balance_and_version(conn: asyncpg.Connection, tenant: int) -> tuple[Decimal, int]:
    row = await conn.fetchrow("SELECT balance, version FROM accounts WHERE tenant_id = $1", tenant)
    return row["balance"], row["version"]


async def test_post_moves_the_balance_with_its_entry_once_per_key(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn, balance=Decimal("10"))
        first = await ledger.post(conn, tenant, ledger.Kind.FEE, Decimal("-2.50"), "k1", "a fee", NOW)
        assert isinstance(first, ledger.Posted)
        assert (first.entry.amount, first.entry.balance_after) == (Decimal("-2.50"), Decimal("7.50"))
        assert (first.entry.kind, first.entry.idempotency_key, first.entry.reference) == (
            "fee",
            "k1",
            "a fee",
        )
        balance, version = await _balance_and_version(conn, tenant)
        assert balance == Decimal("7.50")

        again = await ledger.post(conn, tenant, ledger.Kind.FEE, Decimal("-2.50"), "k1", "a fee", NOW)
        assert again == ledger.AlreadyPosted(first.entry)
        assert await _balance_and_version(conn, tenant) == (balance, version)
        # The key is per kind: the same key of another kind is another entry.
        other = await ledger.post(conn, tenant, ledger.Kind.RECHARGE, Decimal("1"), "k1", "", NOW)
        assert isinstance(other, ledger.Posted) and other.entry.balance_after == Decimal("8.50")
        assert await ledger.posted_under(conn, tenant, ledger.Kind.FEE, "k1") == first.entry


async def test_a_zero_entry_is_a_marker_that_leaves_the_account_row_as_it_was(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn, balance=Decimal("10"))
        before = await _balance_and_version(conn, tenant)
        done = await ledger.post(conn, tenant, ledger.Kind.ADJUSTMENT, Decimal(0), "marker", "", NOW)
        assert isinstance(done, ledger.Posted) and done.entry.balance_after == Decimal("10")
        assert await _balance_and_version(conn, tenant) == before


async def test_concurrent_posts_of_one_key_under_the_account_lock_post_once(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn, balance=Decimal("0"))

    async def attempt() -> ledger.Posted | ledger.AlreadyPosted:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT 1 FROM accounts WHERE tenant_id = $1 FOR UPDATE", tenant)
            return await ledger.post(conn, tenant, ledger.Kind.RECHARGE, Decimal("5"), "once", "", NOW)

    results = await asyncio.gather(*(attempt() for _ in range(20)))
    assert sum(isinstance(r, ledger.Posted) for r in results) == 1
    async with pool.acquire() as conn:
        assert (await _balance_and_version(conn, tenant))[0] == Decimal("5")
        entries = await conn.fetch("SELECT balance_after FROM ledger_entries WHERE tenant_id = $1", tenant)
        assert [e["balance_after"] for e in entries] == [Decimal("5")]


async def test_post_for_a_tenant_without_an_account_raises(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        try:
            await ledger.post(conn, 2**52, ledger.Kind.FEE, Decimal("-1"), "none", "", NOW)
        except LookupError:
            pass
        else:
            raise AssertionError("posted to an account that does not exist")
