"""One package, two engines (issue 13, item 6): a tenant's channel cap and money hold across
Asterisk and FreeSWITCH at once, because both hand their calls to the same control plane
and the reservations live in PostgreSQL, not in either engine."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections import Counter
from decimal import Decimal

import asyncpg
import pytest

from scripts.devstack.process import ServiceProcess
from scripts.devstack.sipp import SippResult, SippUas, run_uac
from scripts.devstack.stack import LocalStack
from softswitch.core.settings import Settings
from tests.e2e.conftest import Engine, active_number, engine_of, require_freeswitch, restarted, unique_caller
from tests.e2e.test_prepaid import (
    SHORT_SLICES,
    account,
    all_reservations_closed,
    answered_legs,
    fund,
    fund_live,
    heard_busy_at_once,
    most_at_once,
    settled_calls,
)

pytestmark = pytest.mark.stack
FS_UUID = "^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$"  # FreeSWITCH's channel ids; Asterisk's are 1733.12


@pytest.fixture
def both(stack: LocalStack, settings: Settings) -> tuple[Engine, Engine]:
    require_freeswitch(stack)
    return engine_of(settings, "asterisk"), engine_of(settings, "freeswitch")


def _at_once(*calls: dict[str, object]) -> list[SippResult]:
    """Several SIPp runs started together, each in its own thread."""
    results: list[SippResult | None] = [None] * len(calls)

    def run(i: int, kw: dict[str, object]) -> None:
        results[i] = run_uac(**kw)  # type: ignore[arg-type]

    threads = [threading.Thread(target=run, args=(i, kw)) for i, kw in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert all(r is not None for r in results), "a SIPp run did not finish"
    return [r for r in results if r is not None]


async def test_a_4_channel_package_holds_across_both_engines(
    db: asyncpg.Connection, service: ServiceProcess, destination_carrier: SippUas, both: tuple[Engine, Engine]
) -> None:
    """100 simultaneous calls, 50 through each engine, to one tenant with 4 channels (and
    one more through each while they are held): exactly 4 are up, the other 98 refused
    with CHANNEL_LIMIT, heard as busy on both engines."""
    tenant, number_id, number = active_number(service)
    await fund_live(service, tenant, number_id)
    await db.execute("UPDATE accounts SET channel_cap = 4 WHERE tenant_id = $1", tenant)
    refused_before = service.metric(
        "softswitch_call_decisions_total", action="reject", reason="CHANNEL_LIMIT"
    )

    common = {
        "called": number,
        "calls": 50,
        "rate": 50,
        "limit": 50,
        "hold_ms": 6000,
        "timeout_s": 60,
        "trace": True,  # what each caller heard, call by call
    }
    burst = asyncio.create_task(
        asyncio.to_thread(
            _at_once,
            {**common, "caller": unique_caller(), "target": both[0].carrier},
            {**common, "caller": unique_caller(), "target": both[1].carrier},
        )
    )
    # While the 4 channels are held, one more call through each engine: the caller hears
    # busy (486, Q.850 17), whichever engine carries it.
    deadline = time.monotonic() + 10
    while (await account(db, tenant))["channels_in_use"] < 4:
        assert time.monotonic() < deadline, "the burst never held the 4 channels"
        await asyncio.sleep(0.05)
    for e in both:
        busy = await asyncio.to_thread(run_uac, number, unique_caller(), target=e.carrier, timeout_s=20)
        assert busy.final_status == 486, (e.name, busy.message_log[-1500:])
    results = await burst
    assert [int(r.stats.get("TotalCallCreated", 0)) for r in results] == [50, 50]
    deadline = time.monotonic() + 10
    while await db.fetchval(
        "SELECT count(*) FROM calls WHERE tenant_id = $1 AND (ended_at IS NULL OR settled_at IS NULL) "
        "AND reason = 'ROUTED'",
        tenant,
    ):
        assert time.monotonic() < deadline, "the routed calls were not all settled"
        await asyncio.sleep(0.05)
    outcomes = dict(
        await db.fetch("SELECT reason, count(*) FROM calls WHERE tenant_id = $1 GROUP BY reason", tenant)
    )
    assert outcomes == {"ROUTED": 4, "CHANNEL_LIMIT": 98}, outcomes
    # Each caller of the burst heard its outcome: 4 answered, the other 96 busy at once.
    calls = [c for r in results for c in r.calls.values()]
    assert len(calls) == 100, len(calls)
    assert Counter(c.final_status for c in calls) == {200: 4, 486: 96}
    heard_busy_at_once([c for c in calls if c.final_status == 486])
    # Both engines took part: each refused some.
    by_engine = dict(
        await db.fetch(
            f"SELECT uniqueid ~ '{FS_UUID}' AS fs, count(*) FROM calls "
            "WHERE tenant_id = $1 AND reason = 'CHANNEL_LIMIT' GROUP BY 1",
            tenant,
        )
    )
    assert by_engine.get(True, 0) > 0 and by_engine.get(False, 0) > 0, by_engine
    assert (
        service.metric("softswitch_call_decisions_total", action="reject", reason="CHANNEL_LIMIT")
        == refused_before + 98
    )
    # 4 answered legs (never more: the count says it) and all 4 talking at the same moment,
    # across both engines, by the engines' own records: the cap was shared, not split.
    legs = await answered_legs(db, tenant, *both)
    assert len(legs) == 4, legs
    assert most_at_once(legs) == 4, legs
    acct = await account(db, tenant)
    assert (acct["channels_in_use"], acct["reserved"]) == (0, 0)
    await settled_calls(db, tenant)


async def test_a_small_balance_drained_from_both_engines_never_goes_below_its_limit(
    db: asyncpg.Connection, service: ServiceProcess, destination_carrier: SippUas, both: tuple[Engine, Engine]
) -> None:
    """0.05 CNY at 0.12/min in 6 s steps (0.012 a step, rounded up to the fen): four calls
    that want to talk 40 s, two through each engine, share it. They are cut as the money
    runs out; at no moment does the balance net of reservations go below the credit limit,
    and what is charged is exactly what left the balance."""
    tenant, number_id, number = active_number(service)
    fund(service, tenant, number_id)
    await db.execute(
        "UPDATE accounts SET balance = 0.05, channel_cap = 8, rate_per_minute = 0.12, "
        "first_increment_s = 6, increment_s = 6, included_seconds_left = 0 WHERE tenant_id = $1",
        tenant,
    )
    with restarted(service, **SHORT_SLICES):
        common = {"called": number, "calls": 2, "rate": 10, "limit": 2, "hold_ms": 40_000, "timeout_s": 90}
        runner = asyncio.create_task(
            asyncio.to_thread(
                _at_once,
                {**common, "caller": unique_caller(), "target": both[0].carrier},
                {**common, "caller": unique_caller(), "target": both[1].carrier},
            )
        )
        while not runner.done():  # the invariant, sampled all along
            await account(db, tenant)
            await asyncio.sleep(0.2)
        results = await runner
        # Every answered call was hung up by the network (a BYE it received), on both engines.
        answered = [[c for c in r.calls.values() if c.final_status == 200] for r in results]
        assert all(answered), [[c.statuses for c in r.calls.values()] for r in results]
        assert all("BYE" in c.received_requests for per_engine in answered for c in per_engine)
        await all_reservations_closed(db, tenant)
    rows = await db.fetch("SELECT uniqueid, reason, billsec, amount FROM calls WHERE tenant_id = $1", tenant)
    routed = [r for r in rows if r["reason"] == "ROUTED"]
    assert {bool(re.match(FS_UUID, r["uniqueid"])) for r in routed} == {True, False}, (
        rows
    )  # both engines carried calls
    assert all(r["billsec"] < 40 for r in routed), rows  # every call was cut, none talked its 40 s
    acct = await account(db, tenant)
    charged = sum((r["amount"] or Decimal(0) for r in rows), Decimal(0))
    assert acct["balance"] >= -acct["credit_limit"]
    assert acct["balance"] == Decimal("0.05") - charged, (acct["balance"], charged)
    assert (acct["channels_in_use"], acct["reserved"]) == (0, 0)
    await settled_calls(db, tenant)
