"""Money in real time, through SIPp and the real Asterisk: channel caps and balances under
contention, a call cut when the money runs out, billing exactly once across a kill -9 of
the service, and calls refused (fail closed) while the database is down."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections import Counter
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from scripts.devstack.process import ServiceProcess
from scripts.devstack.sipp import SippCall, SippResult, SippUas, run_uac
from scripts.devstack.stack import LocalStack
from tests.e2e.conftest import OWNER, Engine, active_number, api_ok, mobile, unique_caller
from tests.e2e.restarts import class_service

pytestmark = pytest.mark.stack


def fund(service: ServiceProcess, tenant: int, number_id: int) -> None:
    resp = service.request(
        "POST",
        f"/v1/tenants/{tenant}/bindings",
        json={"number_id": number_id, "destination": mobile(), **OWNER},
    )
    api_ok(resp, 201)


async def fund_live(service: ServiceProcess, tenant: int, number_id: int) -> None:
    """The number bound to a mobile (fund), live in the service's snapshot on return."""
    before = service.metric("softswitch_snapshot_generation")
    fund(service, tenant, number_id)
    await wait_reload(service, before)


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


# 6 s slices renewed 3 s before they end, the warning tone 2 s before the cut.
SHORT_SLICES = {
    "SOFTSWITCH_PREPAID__SLICE_S": "6",
    "SOFTSWITCH_PREPAID__RENEW_MARGIN_S": "3",
    "SOFTSWITCH_PREPAID__WARNING_S": "2",
}


short_slices = class_service(**SHORT_SLICES)
tight_slices = class_service(
    SOFTSWITCH_PREPAID__SLICE_S="6", SOFTSWITCH_PREPAID__RENEW_MARGIN_S="2", SOFTSWITCH_PREPAID__WARNING_S="1"
)
pinned_clock = class_service(SOFTSWITCH_FIXED_NOW="2026-11-23T10:00:00+08:00")
reconciling = class_service(SOFTSWITCH_PREPAID__RECONCILE_INTERVAL_S="1")


async def all_reservations_closed(db: asyncpg.Connection, tenant: int, budget_s: float = 10) -> None:
    deadline = time.monotonic() + budget_s
    while await db.fetchval(
        "SELECT count(*) FROM reservations WHERE tenant_id = $1 AND state = 'open'", tenant
    ):
        assert time.monotonic() < deadline, "reservations left open"
        await asyncio.sleep(0.05)


async def settled_row(db: asyncpg.Connection, caller: str, budget_s: float = 10) -> asyncpg.Record:
    """The call record of `caller`'s call once it is settled (ended and charged)."""
    deadline = time.monotonic() + budget_s
    while (row := await db.fetchrow("SELECT * FROM calls WHERE caller = $1", caller)) is None or (
        row["settled_at"] is None
    ):
        assert time.monotonic() < deadline, f"the call was not settled within {budget_s} s: {row}"
        await asyncio.sleep(0.02)
    return row


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


# The answered destination legs of a tenant's calls, (answer, end), as each engine
# recorded them: Asterisk's cdr, FreeSWITCH's freeswitch_cdr (mod_cdr_pg_csv).
_ANSWERED_LEGS = {
    "asterisk": (
        'SELECT answer, "end" FROM cdr d JOIN calls c ON c.linkedid = d.linkedid '
        "WHERE c.tenant_id = $1 AND d.disposition = 'ANSWERED' AND d.lastapp = 'Dial'"
    ),
    "freeswitch": (
        'SELECT to_timestamp(answer_epoch) AS answer, to_timestamp(end_epoch) AS "end" '
        "FROM freeswitch_cdr d JOIN calls c ON c.linkedid = d.call_uuid "
        "WHERE c.tenant_id = $1 AND d.answer_epoch > 0 AND d.uuid <> d.call_uuid"
    ),
}


async def answered_legs(
    db: asyncpg.Connection, tenant: int, *engines: Engine, expect: int = 4
) -> list[asyncpg.Record]:
    """The answered destination legs of a tenant's calls on these engines, once `expect`
    of them are recorded (each leg's record is written at its hang-up) or after 5 s."""
    query = " UNION ALL ".join(_ANSWERED_LEGS[e.name] for e in engines)
    deadline = time.monotonic() + 5
    while True:
        rows = await db.fetch(query, tenant)
        if len(rows) >= expect or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.05)


def most_at_once(legs: list[asyncpg.Record]) -> int:
    """The most legs up at the same moment."""
    edges = sorted([(r["answer"], 1) for r in legs] + [(r["end"], -1) for r in legs])
    up = peak = 0
    for _, step in edges:
        up += step
        peak = max(peak, up)
    return peak


# Busy carries no announcement: the caller hears 486 as soon as the service has refused the
# call. A refusal that rang, or took an announcement's length, would be another outcome.
BUSY_WITHIN_S = 2.0


def heard_busy_at_once(calls: list[SippCall]) -> None:
    """Each of these calls was answered busy (486, Q.850 17) promptly, without ringing."""
    slow = [(c.call_id, c.statuses, c.final_after_s) for c in calls if not _busy_at_once(c)]
    assert not slow, f"{len(slow)} of {len(calls)} refused calls not busy at once: {slow[:5]}"


def _busy_at_once(call: SippCall) -> bool:
    after = call.final_after_s
    rang = 180 in call.statuses
    return call.final_status == 486 and not rang and after is not None and after < BUSY_WITHIN_S


async def test_200_simultaneous_calls_on_a_4_channel_package(
    db: asyncpg.Connection, service: ServiceProcess, destination_carrier: SippUas, engine: Engine
) -> None:
    tenant, number_id, number = active_number(service)
    await fund_live(service, tenant, number_id)
    await db.execute("UPDATE accounts SET channel_cap = 4 WHERE tenant_id = $1", tenant)

    # 200 calls over 4 s, each held 1 s once answered: a slot frees about every 1.5 s and is
    # taken again, so more than 4 calls are routed in all and "never more than 4 at once"
    # is measured on overlapping calls rather than implied by a count of 4.
    result = await asyncio.to_thread(
        run_uac,
        number,
        unique_caller(),
        calls=200,
        rate=50,
        limit=200,
        hold_ms=1000,
        timeout_s=60,
        target=engine.carrier,
        trace=True,
    )
    assert int(result.stats.get("TotalCallCreated", 0)) == 200
    calls = list(result.calls.values())
    assert len(calls) == 200, len(calls)
    await all_reservations_closed(db, tenant)  # every call has hung up and released its slot
    outcomes = dict(
        await db.fetch("SELECT reason, count(*) FROM calls WHERE tenant_id = $1 GROUP BY reason", tenant)
    )
    # The cap's promise is "never more than 4 at once", not an exact number routed: on a
    # loaded machine a routed call can fail to connect and free its slot for a later caller,
    # and a reservation past its deadline is refused closed (BILLING_UNAVAILABLE). Both were
    # seen once on a loaded machine (ROUTED 7, CHANNEL_LIMIT 183, BILLING_UNAVAILABLE 10).
    assert set(outcomes) <= {"ROUTED", "CHANNEL_LIMIT", "BILLING_UNAVAILABLE"}, outcomes
    assert outcomes.get("ROUTED", 0) > 4 and outcomes.get("CHANNEL_LIMIT", 0) >= 100, outcomes
    deadline = time.monotonic() + 10
    while True:  # each routed call's slot, from its decision to its recorded end
        routed = await db.fetch(
            'SELECT decided_at AS answer, ended_at AS "end", answered_at FROM calls '
            "WHERE tenant_id = $1 AND reason = 'ROUTED'",
            tenant,
        )
        if all(r["end"] is not None for r in routed):
            break
        assert time.monotonic() < deadline, routed
        await asyncio.sleep(0.05)
    answered = sum(r["answered_at"] is not None for r in routed)
    # What each caller heard, call by call: the refused ones busy at once, never ringing;
    # as many answered as the service recorded answered; nothing left without an answer.
    heard = Counter(c.final_status for c in calls)
    assert None not in heard, [c for c in calls if c.final_status is None][:3]
    assert heard[486] == outcomes["CHANNEL_LIMIT"], (heard, outcomes)
    heard_busy_at_once([c for c in calls if c.final_status == 486])
    assert heard[200] == answered, (heard, outcomes)
    others = 200 - heard[486] - heard[200]
    assert others == outcomes.get("BILLING_UNAVAILABLE", 0) + len(routed) - answered, (heard, outcomes)
    # The 4 channels were all in use at once, and never more, by the decision-to-end spans
    # of the routed calls and by the engine's own records of the answered legs.
    assert most_at_once(routed) == 4, routed
    legs = await answered_legs(db, tenant, engine, expect=answered)
    assert len(legs) == answered > 4 and most_at_once(legs) <= 4, legs
    acct = await account(db, tenant)
    assert (acct["channels_in_use"], acct["reserved"]) == (0, 0)
    await settled_calls(db, tenant)


class TestShortSlices:
    """Both engines' runs on one service restarted with SHORT_SLICES."""

    async def test_the_call_is_cut_within_one_slice_when_the_money_runs_out(
        self,
        db: asyncpg.Connection,
        short_slices: ServiceProcess,
        destination_carrier: SippUas,
        engine: Engine,
    ) -> None:
        svc = short_slices
        tenant, number_id, number = active_number(svc)
        await fund_live(svc, tenant, number_id)
        # 6 s slices at 0.12/min, 6/6 billing: a reservation holds the charge of the time it
        # granted: 6 s 0.01, 12 s 0.02, 18 s 0.04. 0.03 pays for two slices: the call is
        # renewed once, then cut at about 12 s.
        await db.execute(
            "UPDATE accounts SET balance = 0.03, first_increment_s = 6, increment_s = 6 WHERE tenant_id = $1",
            tenant,
        )
        renewed_before = svc.metric("softswitch_prepaid_reservations_total", result="renewed")
        caller = unique_caller()
        result = await asyncio.to_thread(
            run_uac, number, caller, dtmf="", hold_ms=40000, timeout_s=60, target=engine.carrier
        )
        assert result.final_status == 200
        assert "BYE" in result.received_requests  # the network hung up, not the caller
        assert 11 <= result.seconds <= 17, result.seconds
        row = await settled_row(db, caller)
        assert row["final_reason"] == "BALANCE_EXHAUSTED"
        assert 10 <= row["billsec"] <= 12
        acct = await account(db, tenant)
        assert acct["balance"] >= 0 and acct["balance"] == Decimal("0.03") - row["amount"]
        assert svc.metric("softswitch_prepaid_reservations_total", result="renewed") >= renewed_before + 1


class TestSlicesShorterThanTheIncrement:
    """Both engines' runs on one service restarted with 6 s slices renewed 2 s before their end."""

    async def test_slices_shorter_than_the_increment_never_overdraw(
        self,
        db: asyncpg.Connection,
        tight_slices: ServiceProcess,
        destination_carrier: SippUas,
        engine: Engine,
    ) -> None:
        """Issue 11, item 1: 0.60 CNY/min billed 12/12 (0.12 an increment), balance 0.30,
        6 s slices; three simultaneous calls that want to talk 60 s. Two ring (each holds its
        first increment, 0.12), the third is refused for money; both are cut at the end of
        their increment: 0.24 charged. (The contracts bill by the minute; a 12 s increment
        keeps the same arithmetic, slice < increment, in a fifth of the time.)"""
        svc = tight_slices
        tenant, number_id, number = active_number(svc)
        await fund_live(svc, tenant, number_id)
        await db.execute(
            "UPDATE accounts SET balance = 0.30, channel_cap = 8, rate_per_minute = 0.60, "
            "first_increment_s = 12, increment_s = 12, included_seconds_left = 0 WHERE tenant_id = $1",
            tenant,
        )
        result = await asyncio.to_thread(
            run_uac,
            number,
            unique_caller(),
            calls=3,
            rate=10,
            limit=3,
            hold_ms=60_000,
            timeout_s=60,
            dtmf="",
            target=engine.carrier,
        )
        assert int(result.stats.get("TotalCallCreated", 0)) == 3
        await all_reservations_closed(db, tenant)
        rows = await db.fetch(
            "SELECT reason, final_reason, billsec, amount FROM calls WHERE tenant_id = $1 ORDER BY reason",
            tenant,
        )
        assert [r["reason"] for r in rows] == ["NO_BALANCE", "ROUTED", "ROUTED"], rows
        routed = [r for r in rows if r["reason"] == "ROUTED"]
        assert all(9 <= r["billsec"] <= 12 and r["amount"] == Decimal("0.12") for r in routed), routed
        assert all(r["final_reason"] == "BALANCE_EXHAUSTED" for r in routed)
        acct = await account(db, tenant)
        assert acct["balance"] == Decimal("0.06") and (acct["channels_in_use"], acct["reserved"]) == (0, 0)
        await settled_calls(db, tenant)


class TestPinnedClock:
    """Both engines' runs on one service restarted with its clock pinned (it runs on from there)."""

    async def test_a_pinned_clock_still_bills_what_was_talked(
        self,
        db: asyncpg.Connection,
        pinned_clock: ServiceProcess,
        destination_carrier: SippUas,
        engine: Engine,
    ) -> None:
        """Issue 11, item 4: with the service clock pinned (a demo date), a 3 s call is billed
        3 s, not 0 s: the pinned clock starts at the date and runs on."""
        svc = pinned_clock
        tenant, number_id, number = active_number(svc)
        await fund_live(svc, tenant, number_id)
        caller = unique_caller()
        result = await asyncio.to_thread(
            run_uac, number, caller, hold_ms=3000, timeout_s=30, target=engine.carrier
        )
        assert result.final_status == 200
        row = await settled_row(db, caller)
        assert row["decided_at"].date().isoformat() == "2026-11-23"
        cdr_billsec = await db.fetchval(  # the engine's own record of the call (both engines')
            "SELECT max(billsec) FROM engine_cdr WHERE linkedid = $1 AND disposition = 'ANSWERED'",
            row["linkedid"],
        )
        assert 2 <= row["billsec"] <= 4 and abs(row["billsec"] - cdr_billsec) <= 1, (
            row["billsec"],
            cdr_billsec,
        )
        assert row["amount"] == Decimal("0.12")


class TestKill9:
    """Both engines' runs on one service restarted to reconcile every second (each run kills it with -9)."""

    async def test_kill_9_during_live_calls_bills_every_call_exactly_once(
        self,
        db: asyncpg.Connection,
        reconciling: ServiceProcess,
        destination_carrier: SippUas,
        engine: Engine,
    ) -> None:
        """20 answered calls, kill -9 of the service, restart: every call is billed once from
        Asterisk's CDR, and (issue 11, item 3) its record says it was answered and ended, the
        tenant's live list is empty and the daily report counts 20 of 20 answered."""
        svc = reconciling
        tenant, number_id, number = active_number(svc)
        await fund_live(svc, tenant, number_id)
        await db.execute("UPDATE accounts SET channel_cap = 25 WHERE tenant_id = $1", tenant)
        outcome: list[SippResult] = []
        sipp = threading.Thread(
            target=lambda: outcome.append(
                run_uac(
                    number,
                    unique_caller(),
                    calls=20,
                    rate=40,
                    limit=20,
                    hold_ms=8000,
                    timeout_s=60,
                    target=engine.carrier,
                )
            )
        )
        sipp.start()
        deadline = time.monotonic() + 15
        while sum(c["state"] != "ringing" for c in api_ok(svc.request("GET", "/v1/calls/live"))) < 20:
            assert time.monotonic() < deadline, "the 20 calls were not all answered"
            await asyncio.sleep(0.05)
        assert (
            await db.fetchval(
                "SELECT count(*) FROM reservations WHERE tenant_id = $1 AND state = 'open'", tenant
            )
            == 20
        )
        svc.stop(signal.SIGKILL)
        svc.start()  # the calls go on in Asterisk meanwhile, and end while it starts
        await asyncio.to_thread(sipp.join, 60)
        [result] = outcome
        assert int(result.stats.get("SuccessfulCall(C)", 0)) == 20, result.stats
        deadline = time.monotonic() + 30
        while await db.fetchval(
            "SELECT count(*) FROM reservations WHERE tenant_id = $1 AND state = 'open'", tenant
        ) or await db.fetchval(
            "SELECT count(*) FROM calls WHERE tenant_id = $1 AND ended_at IS NULL", tenant
        ):
            assert time.monotonic() < deadline, "orphaned reservations or call records were not reconciled"
            await asyncio.sleep(0.1)
        live = api_ok(svc.request("GET", f"/v1/tenants/{tenant}/calls/live"))
        today = datetime.now(ZoneInfo("Asia/Shanghai")).date().isoformat()
        report = api_ok(
            svc.request("GET", f"/v1/tenants/{tenant}/reports/daily", params={"from": today, "to": today})
        )
        assert svc.metric("softswitch_engine_audit_corrections_total", kind="record_completed") >= 20
        rows = await db.fetch(
            "SELECT r.state, r.close_reason, c.billsec, c.amount, c.answered_at, c.ended_at "
            "FROM reservations r JOIN calls c ON c.linkedid = r.call_id WHERE r.tenant_id = $1",
            tenant,
        )
        assert len(rows) == 20 and all(r["state"] == "settled" for r in rows)
        assert all(7 <= r["billsec"] <= 9 and r["amount"] == Decimal("0.12") for r in rows), rows
        assert all(r["answered_at"] is not None and r["ended_at"] > r["answered_at"] for r in rows)
        assert live["items"] == []
        assert (report["totals"]["offered"], report["totals"]["answered"]) == (20, 20), report["totals"]
        assert Decimal(report["totals"]["asr"]) == 1
        acct = await account(db, tenant)
        assert (acct["channels_in_use"], acct["reserved"]) == (0, 0)
        await settled_calls(db, tenant)


async def test_database_down_refuses_new_calls_promptly(
    service: ServiceProcess, stack: LocalStack, destination_carrier: SippUas, engine: Engine
) -> None:
    tenant, number_id, number = active_number(service)
    await fund_live(service, tenant, number_id)
    refused_before = service.metric("softswitch_prepaid_reservations_total", result="unavailable")
    stack.pg_down()
    try:
        result = await asyncio.to_thread(
            run_uac, number, unique_caller(), timeout_s=20, target=engine.carrier
        )
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
