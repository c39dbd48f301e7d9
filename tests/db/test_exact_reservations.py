"""What a reservation holds covers what settlement charges, whatever the slice, the tariff's
increments and the balance — on the real database, through the statements the call path
uses (issue 11: 20 s slices of a 60/60 tariff overdrew the account)."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provisioning.ledger import (
    Grant,
    Refusal,
    open_reservation,
    renew_reservation,
    settle_reservation,
)
from rating.prepaid import reserved_for
from rating.rate import rate_call
from rating.tariff import Tariff, billable_seconds
from tests.db.conftest import new_tenant

NOW = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)
DB_EXAMPLES = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

rates = st.decimals(min_value=0, max_value=5, places=4)
increments = st.one_of(st.sampled_from([1, 6, 30, 60]), st.integers(1, 300))
tariffs = st.builds(Tariff, rates, increments, increments)
slices = st.one_of(st.sampled_from([6, 10, 20, 30, 60]), st.integers(6, 300))


def _call_id() -> str:
    return f"exact-{random.getrandbits(64):x}"


async def _account(conn: asyncpg.Connection, tenant: int) -> asyncpg.Record:
    acct = await conn.fetchrow("SELECT * FROM accounts WHERE tenant_id = $1", tenant)
    assert acct["balance"] - acct["reserved"] >= -acct["credit_limit"]
    assert 0 <= acct["channels_in_use"] <= acct["channel_cap"]
    return acct


@DB_EXAMPLES
@given(st.lists(st.tuples(tariffs, st.integers(0, 5000), st.integers(0, 3000)), min_size=30, max_size=30))
async def test_the_sql_rates_as_rating_does(pool: asyncpg.Pool, cases: list[tuple[Tariff, int, int]]) -> None:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT billable_seconds(t, f, s) AS b, rated_amount(billable_seconds(t, f, s), i, r) AS amount "
            "FROM unnest($1::int[], $2::int[], $3::int[], $4::int[], $5::numeric[]) AS c(t, f, s, i, r)",
            [talk for _, talk, _ in cases],
            [t.first_increment_s for t, _, _ in cases],
            [t.increment_s for t, _, _ in cases],
            [inc for _, _, inc in cases],
            [t.rate_per_minute for t, _, _ in cases],
        )
    for (tariff, talk, included), row in zip(cases, rows, strict=True):
        assert row["b"] == billable_seconds(talk, tariff)
        assert (
            row["amount"] == rate_call(talk, tariff, included).amount == reserved_for(talk, tariff, included)
        )


async def test_short_slices_of_a_per_minute_tariff_never_overdraw(pool: asyncpg.Pool) -> None:
    """The reported case: 0.12 CNY/min billed 60/60, balance 0.30, 20 s slices, three
    simultaneous calls that want to talk 200 s. Two are taken (0.12 each for their first
    minute), the third is refused for money; each talks its minute and is cut there."""
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn, balance=Decimal("0.30"), channel_cap=8)
        calls = [_call_id() for _ in range(3)]
        opened = [await open_reservation(conn, tenant, c, "", 20, NOW) for c in calls]
        assert [type(o) for o in opened] == [Grant, Grant, Refusal]
        assert opened[2] == Refusal.NO_BALANCE
        granted = {c: 20 for c in calls[:2]}
        for _ in range(10):  # renew every live call until none can go on
            for c in list(granted):
                grant = await renew_reservation(conn, c, 20, NOW)
                if grant is None:
                    continue
                granted[c] += 20
        assert granted == {calls[0]: 60, calls[1]: 60}  # the first minute, reserved once, covers 3 slices
        for c in granted:
            settled = await settle_reservation(conn, c, 200, NOW)  # talked on past the stop
            assert settled is not None and settled.charge.amount == Decimal("0.12")
        acct = await _account(conn, tenant)
    assert acct["balance"] == Decimal("0.06") and acct["reserved"] == 0


@DB_EXAMPLES
@given(
    tariffs,
    slices,
    st.decimals(min_value=0, max_value=3, places=2),
    st.sampled_from([Decimal(0), Decimal("0.50")]),
    st.integers(0, 600),
    st.integers(1, 4),
    st.data(),
)
async def test_reserved_covers_charged_for_every_granted_time(
    pool: asyncpg.Pool,
    tariff: Tariff,
    slice_s: int,
    balance: Decimal,
    credit: Decimal,
    included: int,
    n_calls: int,
    data: st.DataObject,
) -> None:
    async with pool.acquire() as conn:
        tenant = await new_tenant(
            conn,
            balance=balance,
            credit_limit=credit,
            channel_cap=8,
            rate_per_minute=tariff.rate_per_minute,
            first_increment_s=tariff.first_increment_s,
            increment_s=tariff.increment_s,
            included_seconds_left=included,
        )
        granted: dict[str, int] = {}
        for _ in range(n_calls):
            c = _call_id()
            if isinstance(await open_reservation(conn, tenant, c, "", slice_s, NOW), Grant):
                granted[c] = slice_s
        live = set(granted)
        for _ in range(6):
            for c in sorted(live):
                if await renew_reservation(conn, c, slice_s, NOW) is None:
                    live.discard(c)
                else:
                    granted[c] += slice_s
            await _account(conn, tenant)
        for c, g in granted.items():
            held = await conn.fetchrow("SELECT amount, included_s FROM reservations WHERE call_id = $1", c)
            assert held["amount"] == reserved_for(g, tariff, held["included_s"])
            billsec = data.draw(st.integers(0, g + slice_s), label="billsec")  # may overrun the stop
            settled = await settle_reservation(conn, c, billsec, NOW)
            assert settled is not None
            assert settled.charge.amount <= held["amount"], (g, billsec, settled.charge, held)
        acct = await _account(conn, tenant)
    assert acct["reserved"] == 0 and acct["channels_in_use"] == 0
    assert acct["balance"] >= -credit


async def test_the_refusal_is_the_limit_that_refused_while_others_come_and_go(pool: asyncpg.Pool) -> None:
    """At the cap under churn the reason is read from the row the statement locked: a rich
    account refused at its cap is CHANNEL_LIMIT, never NO_BALANCE (issue 11, item 10)."""
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn, balance=Decimal("99000"), channel_cap=3)

    async def churn(i: int) -> list[Refusal]:
        refusals = []
        async with pool.acquire() as conn:
            for _ in range(15):
                c = _call_id()
                got = await open_reservation(conn, tenant, c, "", 60, NOW)
                if isinstance(got, Grant):
                    await settle_reservation(conn, c, random.randrange(0, 3), NOW)
                else:
                    refusals.append(got)
        return refusals

    refusals = [r for rs in await asyncio.gather(*(churn(i) for i in range(12))) for r in rs]
    assert refusals and set(refusals) == {Refusal.CHANNEL_LIMIT}
