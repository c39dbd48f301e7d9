"""Issue 15: the compliance monitors on real calls, through Asterisk and FreeSWITCH. A
tenant's extension dials outside numbers through the platform's carrier trunk:

  * a burst of 50 short calls to distinct callees trips the robocall rule: the service
    suspends the tenant's outbound calls by itself, the next call is refused with
    OUTBOUND_SUSPENDED (the phone hears 403, the record keeps the reason, a metric counts
    it), the operator's lift through the API lets calls through again;
  * a one-ring pattern (the caller gives up 1.5 s after the callee's phone rang) trips the
    one-ring rule, whose action here is a throttle: the tenant's pace is cut to 2 calls a
    minute and the third call of the minute is refused with OUTBOUND_THROTTLED.

The rules are the tenant's own, set through the API (the platform's defaults need 200
distinct callees in 10 minutes)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from scripts.devstack.process import ServiceProcess
from scripts.devstack.sipp import SippResult, SippUas, run_uac
from tests.e2e.conftest import (
    Engine,
    active_number,
    api_ok,
    calling_tenant,
    ext_call,
    mobile,
    outbound_row,
    unique_caller,
)

pytestmark = pytest.mark.stack

PASSWORD = "monitor-secret-9"


def own_rule(service: ServiceProcess, tenant: int, kind: str, body: dict[str, Any]) -> None:
    api_ok(service.request("PUT", f"/v1/tenants/{tenant}/compliance/rules/{kind}", json=body))


async def restriction(
    db: asyncpg.Connection, tenant: int, column: str, timeout_s: float = 20
) -> asyncpg.Record:
    """The tenant's compliance row once `column` is set by the monitors."""
    deadline = time.monotonic() + timeout_s
    while True:
        row = await db.fetchrow("SELECT * FROM tenant_compliance WHERE tenant_id = $1", tenant)
        if row is not None and row[column] is not None:
            return row
        assert time.monotonic() < deadline, f"tenant {tenant}: {column} still unset after {timeout_s} s"
        await asyncio.sleep(0.02)


async def burst(calls: list[Any], parallel: int) -> list[SippResult]:
    gate = asyncio.Semaphore(parallel)

    async def one(call: Any) -> SippResult:
        async with gate:
            return await call()

    return await asyncio.gather(*(one(c) for c in calls))


async def test_a_burst_of_short_calls_to_distinct_callees_suspends_outbound(
    db: asyncpg.Connection, service: ServiceProcess, destination_carrier: SippUas, engine: Engine
) -> None:
    tenant, phone = calling_tenant(service, "831", PASSWORD)
    await db.execute("UPDATE accounts SET balance = 100, channel_cap = 8 WHERE tenant_id = $1", tenant)
    own_rule(
        service,
        tenant,
        "robocall",
        {
            "params": {"window_s": 600, "max_answer_rate": 0.3, "max_avg_talk_s": 10, "min_calls": 20},
            "warning": "20",
            "critical": "40",
            "action": "suspend",
        },
    )
    suspended_before = service.metric(
        "softswitch_call_decisions_total", action="reject", reason="OUTBOUND_SUSPENDED"
    )
    actions_before = service.metric("softswitch_compliance_actions_total", rule="robocall", action="suspend")
    callees = [mobile() for _ in range(50)]
    # Answered after 200 ms of ringing, held 300 ms: short calls, as a robocaller's.
    results = await burst(
        [
            lambda c=c: asyncio.to_thread(ext_call, phone, PASSWORD, c, unique_caller(), engine.phones)
            for c in callees
        ],
        parallel=6,
    )
    statuses = [r.final_status for r in results]
    # The monitors judge the calls as their records end; calls already ringing when the
    # suspension lands finish, later ones are refused: at least 40 went through.
    assert statuses.count(200) >= 40, statuses
    assert set(statuses) <= {200, 403}, statuses
    row = await restriction(db, tenant, "outbound_suspended_at")
    assert row["suspended_rule"] == "robocall"
    event = await db.fetchrow(
        "SELECT level, value, threshold, action FROM compliance_events "
        "WHERE tenant_id = $1 AND rule = 'robocall' AND level = 'critical'",
        tenant,
    )
    assert event is not None and event["action"] == "suspend" and event["value"] >= 40, event
    assert (
        service.metric("softswitch_compliance_actions_total", rule="robocall", action="suspend")
        == actions_before + 1
    )
    assert service.metric("softswitch_compliance_level", tenant=str(tenant), rule="robocall") == 2

    presented = unique_caller()
    refused = await asyncio.to_thread(ext_call, phone, PASSWORD, mobile(), presented, engine.phones)
    assert refused.final_status == 403, refused.message_log[-1500:]
    assert (await outbound_row(db, presented))["reason"] == "OUTBOUND_SUSPENDED"
    assert service.metric(
        "softswitch_call_decisions_total", action="reject", reason="OUTBOUND_SUSPENDED"
    ) == suspended_before + 1 + statuses.count(403)

    lifted = api_ok(
        service.request(
            "POST",
            f"/v1/tenants/{tenant}/compliance/lift",
            json={"what": "suspension", "reason": "e2e: verified"},
        )
    )
    assert lifted["suspended_rule"] == "robocall"
    presented = unique_caller()
    again = await asyncio.to_thread(ext_call, phone, PASSWORD, mobile(), presented, engine.phones)
    assert again.final_status == 200 and (await outbound_row(db, presented))["reason"] == "ROUTED"


def one_ring_call(phone: dict[str, Any], callee: str, presented: str, target: str) -> SippResult:
    """The extension calls `callee` and gives up 1.5 s after its phone starts ringing."""
    return run_uac(
        callee,
        presented,
        scenario="uac_extension_one_ring.xml",
        local_ip="127.0.0.5",
        target=target,
        hold_ms=1500,
        extra=("-key", "ext", phone["endpoint_id"], "-au", phone["endpoint_id"], "-ap", PASSWORD),
        timeout_s=30,
    )


async def test_one_ring_calls_trip_their_rule_and_throttle_the_tenant(
    db: asyncpg.Connection, service: ServiceProcess, destination_carrier: SippUas, engine: Engine
) -> None:
    tenant, phone = calling_tenant(service, "832", PASSWORD)
    await db.execute("UPDATE accounts SET balance = 100, channel_cap = 8 WHERE tenant_id = $1", tenant)
    own_rule(
        service,
        tenant,
        "one_ring",
        {
            "params": {"window_s": 3600, "ring_s": 4, "min_calls": 10, "throttle_per_min": 2},
            "warning": "0.3",
            "critical": "0.5",
            "action": "throttle",
        },
    )
    # Callees ending in 99 ring and never answer (uas_selective.xml): the caller hangs up.
    callees = [mobile()[:-2] + "99" for _ in range(12)]
    results = await burst(
        [
            lambda c=c: asyncio.to_thread(one_ring_call, phone, c, unique_caller(), engine.phones)
            for c in callees
        ],
        parallel=4,
    )
    assert [r.final_status for r in results].count(487) >= 10, [r.final_status for r in results]
    assert all(180 in r.statuses or 183 in r.statuses for r in results if r.final_status == 487)
    row = await restriction(db, tenant, "throttle_per_min")
    assert (row["throttle_per_min"], row["throttled_rule"], row["outbound_suspended_at"]) == (
        2,
        "one_ring",
        None,
    )
    event = await db.fetchrow(
        "SELECT value, action FROM compliance_events "
        "WHERE tenant_id = $1 AND rule = 'one_ring' AND level = 'critical'",
        tenant,
    )
    assert event is not None and event["action"] == "throttle" and event["value"] >= 0.5, event
    rows = await db.fetch(
        "SELECT alerted_at, answered_at FROM calls WHERE tenant_id = $1 AND called = ANY($2::text[])",
        tenant,
        callees,
    )
    assert rows and all(r["alerted_at"] is not None and r["answered_at"] is None for r in rows)

    # The throttle allows 2 calls a minute; the gate counts the tenant's calls let through
    # in the last 60 s, and the burst's 12 already pass that: the next call is refused,
    # with Q.850 cause 34 (no circuit): the phone hears 503.
    presented = unique_caller()
    refused = await asyncio.to_thread(ext_call, phone, PASSWORD, mobile(), presented, engine.phones)
    assert refused.final_status == 503, refused.message_log[-1500:]
    record = await outbound_row(db, presented)
    assert (record["reason"], record["why"]) == ("OUTBOUND_THROTTLED", "2/min")
    assert service.metric("softswitch_compliance_level", tenant=str(tenant), rule="one_ring") == 2
    api_ok(
        service.request(
            "POST",
            f"/v1/tenants/{tenant}/compliance/lift",
            json={"what": "throttle", "reason": "e2e: verified"},
        )
    )
    presented = unique_caller()
    again = await asyncio.to_thread(ext_call, phone, PASSWORD, mobile(), presented, engine.phones)
    assert again.final_status == 200 and (await outbound_row(db, presented))["reason"] == "ROUTED"


async def test_complaints_registered_through_the_api_suspend_the_tenant_in_the_running_service(
    db: asyncpg.Connection, service: ServiceProcess, destination_carrier: SippUas
) -> None:
    """The platform's complaints rule (5 in 30 days: suspend): the service hears each
    complaint (NOTIFY compliance_complaint) and judges the tenant at once; the
    complaints gauge counts them by category."""
    tenant, _number_id, number = active_number(service)
    fraud_before = service.metric("softswitch_complaints_30d", category="fraud")
    when = datetime.now(UTC) - timedelta(hours=1)
    for i in range(5):
        body = {
            "number": number,
            "callee": mobile(),
            "category": "fraud",
            "occurred_at": (when + timedelta(minutes=i)).isoformat(),
            "note": "e2e",
        }
        api_ok(service.request("POST", f"/v1/tenants/{tenant}/complaints", json=body), 201)
    row = await restriction(db, tenant, "outbound_suspended_at", timeout_s=10)
    assert row["suspended_rule"] == "complaints"
    deadline = time.monotonic() + 10  # the gauge is exported every 5 s
    while service.metric("softswitch_complaints_30d", category="fraud") < fraud_before + 5:
        assert time.monotonic() < deadline, "the complaints gauge did not count the five complaints"
        await asyncio.sleep(0.2)
    first, last = when.date() - timedelta(days=1), when.date() + timedelta(days=1)
    report = api_ok(service.request("GET", f"/v1/tenants/{tenant}/compliance/report?from={first}&to={last}"))
    assert report["metrics"]["complaints"] == 5
    # The service may have judged the tenant at the third complaint too (the warning level:
    # a notice) before the fifth; the suspension comes once, at critical.
    acted = [(a["rule"], a["level"], a["action"]) for a in report["actions"]]
    assert acted[-1] == ("complaints", "critical", "suspend"), acted
    assert set(acted[:-1]) <= {("complaints", "warning", "notice")}, acted
