"""Money in real time, through SIPp and the real Asterisk: channel caps and balances under
contention, a call cut when the money runs out, billing exactly once across a kill -9 of
the service, and calls refused (fail closed) while the database is down."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from decimal import Decimal

import asyncpg
import pytest

from softswitch.process import ServiceProcess
from softswitch.sipp import SippResult, SippUas, run_uac
from softswitch.stack import LocalStack
from tests.e2e.conftest import OWNER, active_number, api_ok, mobile, restarted, unique_caller

pytestmark = pytest.mark.stack


def fund(service: ServiceProcess, tenant: int, number_id: int) -> None:
    resp = service.request(
        "POST",
        f"/v1/tenants/{tenant}/bindings",
        json={"number_id": number_id, "destination": mobile(), **OWNER},
    )
    api_ok(resp, 201)


async def wait_reload(service: ServiceProcess, before: float) -> None:
    deadline = time.monotonic() + 3
    while service.metric("softswitch_snapshot_generation") <= before:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)


async def account(db: asyncpg.Connection, tenant: int) -> asyncpg.Record:
    acct = await db.fetchrow("SELECT * FROM accounts WHERE tenant_id = $1", tenant)
    assert acct["balance"] - acct["reserved"] >= -acct["credit_limit"]
    assert 0 <= acct["channels_in_use"] <= acct["channel_cap"]
    return acct


async def settled_calls(db: asyncpg.Connection, tenant: int) -> None:
    """Ledger = call records: every call charged once, and the sums agree."""
    ledger = await db.fetch(
        "SELECT idempotency_key, amount FROM ledger_entries WHERE tenant_id = $1 AND kind = 'call'", tenant
    )
    keys = [r["idempotency_key"] for r in ledger]
    assert len(keys) == len(set(keys))
    calls = await db.fetch(
        "SELECT linkedid, amount FROM calls WHERE tenant_id = $1 AND settled_at IS NOT NULL", tenant
    )
    assert {r["linkedid"] for r in calls} == set(keys)
    assert -sum((r["amount"] for r in ledger), Decimal(0)) == sum((r["amount"] for r in calls), Decimal(0))


async def test_200_simultaneous_calls_on_a_4_channel_package(
    db: asyncpg.Connection, service: ServiceProcess, destination_carrier: SippUas
) -> None:
    tenant, number_id, number = active_number(service)
    before = service.metric("softswitch_snapshot_generation")
    fund(service, tenant, number_id)
    await wait_reload(service, before)
    await db.execute("UPDATE accounts SET channel_cap = 4 WHERE tenant_id = $1", tenant)

    result = await asyncio.to_thread(
        run_uac, number, unique_caller(), calls=200, rate=100, limit=200, hold_ms=4000, timeout_s=60
    )
    assert int(result.stats.get("TotalCallCreated", 0)) == 200
    await asyncio.sleep(1.0)  # hang-ups settle
    outcomes = dict(
        await db.fetch("SELECT reason, count(*) FROM calls WHERE tenant_id = $1 GROUP BY reason", tenant)
    )
    assert outcomes == {"ROUTED": 4, "CHANNEL_LIMIT": 196}, outcomes
    # Never more than 4 answered at once, by Asterisk's own records of the answered legs.
    legs = await db.fetch(
        'SELECT answer, "end" FROM cdr d'
        " JOIN calls c ON c.linkedid = d.linkedid "
        "WHERE c.tenant_id = $1 AND d.disposition = 'ANSWERED' AND d.lastapp = 'Dial'",
        tenant,
    )
    edges = sorted([(r["answer"], 1) for r in legs] + [(r["end"], -1) for r in legs])
    up = peak = 0
    for _, step in edges:
        up += step
        peak = max(peak, up)
    assert len(legs) == 4 and peak <= 4
    acct = await account(db, tenant)
    assert (acct["channels_in_use"], acct["reserved"]) == (0, 0)
    await settled_calls(db, tenant)


async def test_the_call_is_cut_within_one_slice_when_the_money_runs_out(
    db: asyncpg.Connection, service: ServiceProcess, destination_carrier: SippUas
) -> None:
    tenant, number_id, number = active_number(service)
    fund(service, tenant, number_id)
    # 6 s slices at 0.12/min, 6/6 billing: each slice reserves 0.02 (0.012 rounded up).
    # 0.05 pays for two slices: the call is renewed once, then cut at about 12 s.
    await db.execute(
        "UPDATE accounts SET balance = 0.05, first_increment_s = 6, increment_s = 6 WHERE tenant_id = $1",
        tenant,
    )
    with restarted(
        service,
        SOFTSWITCH_PREPAID__SLICE_S="6",
        SOFTSWITCH_PREPAID__RENEW_MARGIN_S="3",
        SOFTSWITCH_PREPAID__WARNING_S="2",
    ) as svc:
        caller = unique_caller()
        result = await asyncio.to_thread(run_uac, number, caller, dtmf="", hold_ms=40000, timeout_s=60)
        assert result.final_status == 200
        assert "BYE sip:" in result.message_log  # the network hung up, not the caller
        assert 11 <= result.seconds <= 17, result.seconds
        await asyncio.sleep(1.0)
        row = await db.fetchrow("SELECT * FROM calls WHERE caller = $1", caller)
        assert row["final_reason"] == "BALANCE_EXHAUSTED"
        assert 10 <= row["billsec"] <= 12
        acct = await account(db, tenant)
        assert acct["balance"] >= 0 and acct["balance"] == Decimal("0.05") - row["amount"]
        assert svc.metric("softswitch_prepaid_reservations_total", result="renewed") >= 1


async def test_kill_9_during_live_calls_bills_every_call_exactly_once(
    db: asyncpg.Connection, service: ServiceProcess, destination_carrier: SippUas
) -> None:
    tenant, number_id, number = active_number(service)
    fund(service, tenant, number_id)
    await db.execute("UPDATE accounts SET channel_cap = 4 WHERE tenant_id = $1", tenant)
    with restarted(service, SOFTSWITCH_PREPAID__RECONCILE_INTERVAL_S="1") as svc:
        results: list[SippResult] = []
        callers = [unique_caller() for _ in range(3)]
        threads = [
            threading.Thread(
                target=lambda c=c: results.append(run_uac(number, c, hold_ms=6000, timeout_s=40))
            )
            for c in callers
        ]
        for t in threads:
            t.start()
        await asyncio.sleep(2.5)  # all three answered and talking
        open_now = await db.fetchval(
            "SELECT count(*) FROM reservations WHERE tenant_id = $1 AND state = 'open'", tenant
        )
        assert open_now == 3
        svc.stop(signal.SIGKILL)
        svc.start()  # the calls go on in Asterisk meanwhile
        for t in threads:
            await asyncio.to_thread(t.join, 30)
        assert [r.final_status for r in results] == [200, 200, 200]
        deadline = time.monotonic() + 30
        while await db.fetchval(
            "SELECT count(*) FROM reservations WHERE tenant_id = $1 AND state = 'open'", tenant
        ):
            assert time.monotonic() < deadline, "orphaned reservations were not reconciled"
            await asyncio.sleep(0.5)
    rows = await db.fetch(
        "SELECT r.state, r.close_reason, c.billsec, c.amount FROM reservations r "
        "JOIN calls c ON c.linkedid = r.call_id WHERE r.tenant_id = $1",
        tenant,
    )
    assert len(rows) == 3 and all(r["state"] == "settled" for r in rows)
    assert all(5 <= r["billsec"] <= 7 and r["amount"] == Decimal("0.12") for r in rows)
    acct = await account(db, tenant)
    assert (acct["channels_in_use"], acct["reserved"]) == (0, 0)
    await settled_calls(db, tenant)


async def test_database_down_refuses_new_calls_promptly(
    service: ServiceProcess, stack: LocalStack, destination_carrier: SippUas
) -> None:
    tenant, number_id, number = active_number(service)
    before = service.metric("softswitch_snapshot_generation")
    fund(service, tenant, number_id)
    await wait_reload(service, before)
    refused_before = service.metric("softswitch_prepaid_reservations_total", result="unavailable")
    stack.pg_down()
    try:
        result = await asyncio.to_thread(run_uac, number, unique_caller(), timeout_s=20)
        assert result.final_status == 503, result.message_log[-1500:]
        assert 183 in result.statuses  # "all circuits are busy", then congestion
        assert result.seconds < 6
        assert (
            service.metric("softswitch_prepaid_reservations_total", result="unavailable")
            == refused_before + 1
        )
    finally:
        stack.pg_up()
    service.wait_ready(timeout=30)
