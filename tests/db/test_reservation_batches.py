"""Group-committed money (issue 14, item 5; migration 0025, softswitch/callpath/money_batch):
a batch is exactly its calls one by one, and the batcher keeps every limit under load."""

from __future__ import annotations

import asyncio
import random
import secrets
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg

from provisioning.ledger import (
    Grant,
    OpenRequest,
    Refusal,
    SettleRequest,
    open_reservation,
    open_reservations,
    settle_reservation,
    settle_reservations,
)
from softswitch.callpath.money_batch import MoneyBatches
from tests.db.conftest import new_tenant
from tests.db.test_reservations import _invariants

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
ACCOUNT_COLUMNS = (
    "balance, reserved, channels_in_use, included_seconds_left, included_reserved_s, spent_today"
)


async def _twin_accounts(conn: asyncpg.Connection, rng: random.Random) -> tuple[list[int], list[int]]:
    """Three accounts, twice over (same money, caps, tariffs, bundles)."""
    left: list[int] = []
    right: list[int] = []
    for _ in range(3):
        account = {
            "balance": Decimal(rng.choice(["0.30", "0.50", "1.00"])),
            "channel_cap": rng.choice([1, 2, 4]),
            "rate_per_minute": Decimal(rng.choice(["0.12", "0.20"])),
            "first_increment_s": rng.choice([6, 60]),
            "increment_s": rng.choice([6, 60]),
            "included_seconds_left": rng.choice([0, 30, 90]),
        }
        left.append(await new_tenant(conn, **account))
        right.append(await new_tenant(conn, **account))
    return left, right


def _outcome(result: object) -> object:
    return (result.amount, result.included_s, result.seconds) if isinstance(result, Grant) else result


async def _accounts(conn: asyncpg.Connection, tenants: list[int]) -> list[tuple[object, ...]]:
    rows = await conn.fetch(
        f"SELECT tenant_id, {ACCOUNT_COLUMNS} FROM accounts WHERE tenant_id = ANY($1)", tenants
    )
    by_id = {r["tenant_id"]: tuple(r)[1:] for r in rows}
    return [by_id[t] for t in tenants]


async def test_a_batch_opens_and_settles_exactly_as_its_calls_one_by_one(pool: asyncpg.Pool) -> None:
    rng = random.Random(14)
    async with pool.acquire() as conn:
        for round_ in range(4):
            left, right = await _twin_accounts(conn, rng)
            plan = [(rng.randrange(3), rng.choice([6, 30, 60]), rng.randint(0, 200)) for _ in range(30)]
            # the plan is the seed's; the call ids are this run's own (the database keeps
            # every earlier run's reservations, and a call id opens once)
            tag = f"{round_}-{secrets.token_hex(4)}"
            batch = await open_reservations(
                conn,
                [OpenRequest(left[a], f"bl-{tag}-{i}", "", s, NOW) for i, (a, s, _) in enumerate(plan)],
            )
            single = [
                await open_reservation(conn, right[a], f"br-{tag}-{i}", "", s, NOW)
                for i, (a, s, _) in enumerate(plan)
            ]
            assert [_outcome(r) for r in batch] == [_outcome(r) for r in single]
            assert {type(r) for r in batch} == {Grant, Refusal}  # the plan reaches the limits
            assert await _accounts(conn, left) == await _accounts(conn, right)

            later = NOW + timedelta(minutes=3)
            granted = [i for i, r in enumerate(batch) if isinstance(r, Grant)]
            settled_batch = await settle_reservations(
                conn,
                [SettleRequest(f"bl-{tag}-{i}", plan[i][2], later, "") for i in granted]
                + [SettleRequest(f"bl-{tag}-{granted[0]}", 5, later, "")],  # a duplicate hang-up
            )
            settled_single = [
                await settle_reservation(conn, f"br-{tag}-{i}", plan[i][2], later) for i in granted
            ]
            assert settled_batch[-1] is None  # the duplicate settled nothing
            assert [(s.billsec, s.charge) for s in settled_batch[:-1] if s] == [
                (s.billsec, s.charge) for s in settled_single if s
            ]
            assert all(settled_batch[:-1]) and all(settled_single)
            assert await _accounts(conn, left) == await _accounts(conn, right)
            for t in left + right:
                acct = await _invariants(conn, t)
                assert acct["channels_in_use"] == 0 and acct["reserved"] == 0
            ledgers = await conn.fetch(
                "SELECT tenant_id, amount, balance_after FROM ledger_entries "
                "WHERE tenant_id = ANY($1) AND kind = 'call' ORDER BY id",
                left,
            )
            assert sum(r["amount"] for r in ledgers) == sum(-s.charge.amount for s in settled_batch if s)


async def test_the_batcher_keeps_a_4_channel_cap_and_the_money_with_64_callers(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        capped = await new_tenant(conn, balance=Decimal("100"), channel_cap=4)
        poor = await new_tenant(conn, balance=Decimal("0.30"), channel_cap=8)
    batches = MoneyBatches(pool)
    batches.start()
    try:
        tag = f"{random.getrandbits(32):x}"
        results = await asyncio.gather(
            *(batches.open(OpenRequest(capped, f"cap-{tag}-{i}", "", 60, NOW)) for i in range(64)),
            *(batches.open(OpenRequest(poor, f"poor-{tag}-{i}", "", 60, NOW)) for i in range(64)),
        )
        assert batches.opens.batches < 128  # they were group-committed, not one by one
        capped_results, poor_results = results[:64], results[64:]
        assert sum(isinstance(r, Grant) for r in capped_results) == 4
        assert {r for r in capped_results if not isinstance(r, Grant)} == {Refusal.CHANNEL_LIMIT}
        assert sum(isinstance(r, Grant) for r in poor_results) == 2  # 0.24 held, 0.06 left
        async with pool.acquire() as conn:
            await _invariants(conn, capped)
            await _invariants(conn, poor)
        calls = [f"cap-{tag}-{i}" for i, r in enumerate(capped_results) if isinstance(r, Grant)]
        settled = await asyncio.gather(
            *(batches.settle(SettleRequest(c, 61, NOW + timedelta(minutes=2))) for c in calls + calls)
        )
        assert sum(s is not None for s in settled) == 4  # each call charged once
        async with pool.acquire() as conn:
            acct = await _invariants(conn, capped)
        assert acct["balance"] == Decimal("100") - 4 * Decimal("0.12") and acct["channels_in_use"] == 0
    finally:
        await batches.stop()


async def test_a_call_opened_twice_in_one_batch_is_already_open(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn, balance=Decimal("10"), channel_cap=8)
        call = f"twice-{random.getrandbits(32):x}"
        first, second = await open_reservations(
            conn, [OpenRequest(tenant, call, "", 60, NOW), OpenRequest(tenant, call, "", 60, NOW)]
        )
        assert isinstance(first, Grant) and second is Refusal.ALREADY_OPEN
        acct = await _invariants(conn, tenant)
        assert acct["channels_in_use"] == 1
