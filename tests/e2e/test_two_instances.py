"""Two service instances on one database (issue 19, item 2). A second `softswitch serve`
decides every Asterisk call (its SS_AGI_URL) while the first decides FreeSWITCH's; each
instance watches both engines and runs its own reconciler. What they share is PostgreSQL:

  * one 4-channel package, 40 calls at once through both instances: exactly 4 up;
  * a billing-cycle run (`softswitch billing run`, a third process) while calls are live:
    the rent is charged once, the calls talk to their end and are settled once, and the
    balance is exactly the sum of its ledger entries;
  * the crash reconciler racing the normal hang-up settlement: the second instance
    reconciles every 0.1 s while calls end on both; every call is settled exactly once;
  * a tenant suspended mid-call. The choice, named: its live calls run to their natural end
    (the money for them is already reserved and renewed as usual; cutting a customer's
    conversation for a change of account state would hurt the caller, not the tenant),
    and every new call is refused at once with TENANT_SUSPENDED."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from scripts.devstack.process import ServiceProcess
from scripts.devstack.sipp import SippResult, SippUas, run_uac
from scripts.devstack.stack import LocalStack
from softswitch.core.settings import Settings
from tests.e2e.conftest import (
    Engine,
    active_number,
    api_ok,
    engine_of,
    require_freeswitch,
    restarted,
    unique_caller,
)
from tests.e2e.test_compliance_gates import second_instance
from tests.e2e.test_prepaid import (
    account,
    all_reservations_closed,
    answered_legs,
    fund_live,
    most_at_once,
    settled_calls,
    wait_reload,
)
from tests.e2e.test_two_engines import FS_UUID

pytestmark = pytest.mark.stack
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def both(stack: LocalStack, settings: Settings) -> tuple[Engine, Engine]:
    require_freeswitch(stack)
    return engine_of(settings, "asterisk"), engine_of(settings, "freeswitch")


async def funded(service: ServiceProcess, db: asyncpg.Connection, cap: int) -> tuple[int, str]:
    tenant, number_id, number = active_number(service)
    await fund_live(service, tenant, number_id)
    await db.execute("UPDATE accounts SET channel_cap = $2 WHERE tenant_id = $1", tenant, cap)
    return tenant, number


def calls_through(both: tuple[Engine, Engine], number: str, **kw: object) -> list[asyncio.Future[SippResult]]:
    """One SIPp run through each engine, started together."""
    return [
        asyncio.ensure_future(asyncio.to_thread(run_uac, number, unique_caller(), target=e.carrier, **kw))  # type: ignore[arg-type]
        for e in both
    ]


def decided(instance: ServiceProcess, reason: str, action: str = "dial") -> float:
    return instance.metric("softswitch_call_decisions_total", action=action, reason=reason)


async def until_channels(db: asyncpg.Connection, tenant: int, n: int, budget_s: float = 15) -> None:
    deadline = time.monotonic() + budget_s
    while (await account(db, tenant))["channels_in_use"] < n:
        assert time.monotonic() < deadline, f"{n} channels never held"
        await asyncio.sleep(0.05)


async def test_one_package_across_two_instances_holds_its_4_channels(
    db: asyncpg.Connection,
    service: ServiceProcess,
    destination_carrier: SippUas,
    stack: LocalStack,
    both: tuple[Engine, Engine],
) -> None:
    tenant, number = await funded(service, db, 4)
    with second_instance(service, stack) as other:
        mine = (decided(service, "ROUTED"), decided(service, "CHANNEL_LIMIT", "reject"))
        theirs = (decided(other, "ROUTED"), decided(other, "CHANNEL_LIMIT", "reject"))
        runs = calls_through(
            both, number, calls=20, rate=40, limit=20, hold_ms=4000, timeout_s=60, trace=True
        )
        results = await asyncio.gather(*runs)
        await all_reservations_closed(db, tenant)
        calls = [c for r in results for c in r.calls.values()]
        assert len(calls) == 40
        assert Counter(c.final_status for c in calls) == {200: 4, 486: 36}, Counter(
            c.final_status for c in calls
        )
        # Both instances decided calls, and each refused some: the cap was one, not two.
        for inst, (routed0, refused0) in ((service, mine), (other, theirs)):
            routed = decided(inst, "ROUTED") - routed0
            refused = decided(inst, "CHANNEL_LIMIT", "reject") - refused0
            assert refused > 0 and routed + refused == 20, (inst.log_path, routed, refused)
    legs = await answered_legs(db, tenant, *both)
    assert len(legs) == 4 and most_at_once(legs) == 4, legs
    await books_closed(db, tenant)


def billing_run(tenant: int, at: str) -> dict[str, object]:
    """`softswitch billing run --tenant N --at T --json` as an operator runs it: another process."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "softswitch.cli",
            "billing",
            "run",
            "--tenant",
            str(tenant),
            "--at",
            at,
            "--json",
        ],
        cwd=ROOT,
        env={**os.environ, "SOFTSWITCH_SCHEDULER__ENABLED": "false"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(out.stdout)


async def opening(db: asyncpg.Connection, tenant: int) -> tuple[Decimal, int]:
    """The balance now and the last ledger entry so far."""
    last = await db.fetchval("SELECT coalesce(max(id), 0) FROM ledger_entries WHERE tenant_id = $1", tenant)
    return (await account(db, tenant))["balance"], last


async def books_closed(
    db: asyncpg.Connection, tenant: int, start: tuple[Decimal, int] | None = None
) -> list[asyncpg.Record]:
    """After the calls: no slot or money held, every call charged once (one ledger entry
    per call, the sums agree) and, from `start`, the balance moved by its ledger alone."""
    acct = await account(db, tenant)
    assert (acct["channels_in_use"], acct["reserved"]) == (0, 0)
    await settled_calls(db, tenant)
    return await ledger_matches_balance(db, tenant, start) if start is not None else []


async def ledger_matches_balance(
    db: asyncpg.Connection, tenant: int, start: tuple[Decimal, int]
) -> list[asyncpg.Record]:
    """The entries since `start`, whose sum is exactly what the balance moved."""
    rows = await db.fetch(
        "SELECT kind, amount FROM ledger_entries WHERE tenant_id = $1 AND id > $2 ORDER BY id",
        tenant,
        start[1],
    )
    acct = await account(db, tenant)
    assert acct["balance"] == start[0] + sum((r["amount"] for r in rows), Decimal(0)), (acct["balance"], rows)
    return rows


async def test_a_billing_cycle_run_during_live_calls_charges_once_and_leaves_them_talking(
    db: asyncpg.Connection,
    service: ServiceProcess,
    destination_carrier: SippUas,
    stack: LocalStack,
    settings: Settings,
    both: tuple[Engine, Engine],
) -> None:
    tenant, number = await funded(service, db, 4)
    api_ok(
        service.request(
            "POST",
            f"/v1/tenants/{tenant}/recharges",
            json={"amount": "1000.00", "reference": "e2e two instances"},
            headers={"Idempotency-Key": f"two-instances-{tenant}"},
        ),
        201,
    )
    package = await db.fetchval(
        "SELECT id FROM packages WHERE monthly_rent > 0 AND channels >= 4 ORDER BY id LIMIT 1"
    )
    api_ok(
        service.request(
            "POST",
            f"/v1/tenants/{tenant}/subscriptions",
            json={"package_id": package, "starts_on": time.strftime("%Y-%m-%d")},
        ),
        201,
    )
    start = await opening(db, tenant)
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    next_month = (today.replace(day=1) + timedelta(days=32)).replace(day=1).isoformat() + "T00:05:00+08:00"
    with second_instance(service, stack):
        runs = calls_through(both, number, hold_ms=8000, timeout_s=60)
        await until_channels(db, tenant, 2)
        held = await db.fetchval(
            "SELECT count(*) FROM reservations WHERE tenant_id = $1 AND state = 'open'", tenant
        )
        assert held == 2
        # The next month's run (its rent, the allowance reset) while the calls hold included
        # seconds of this month's allowance; run twice: the same period changes nothing more.
        first = await asyncio.to_thread(billing_run, tenant, next_month)
        again = await asyncio.to_thread(billing_run, tenant, next_month)
        assert (await account(db, tenant))["channels_in_use"] == 2  # the calls are still up
        results = await asyncio.gather(*runs)
    for r in results:
        assert r.final_status == 200, r.message_log[-1500:]
        assert "BYE" not in r.received_requests  # the caller hung up at its 8 s: nobody cut it
    await all_reservations_closed(db, tenant)
    rows = await books_closed(db, tenant, start)
    kinds = Counter(r["kind"] for r in rows)
    assert kinds["rent"] == 1 and kinds["call"] == 2, (kinds, first, again)


async def test_the_reconcilers_racing_hang_up_settlements_bill_every_call_once(
    db: asyncpg.Connection,
    service: ServiceProcess,
    destination_carrier: SippUas,
    stack: LocalStack,
    both: tuple[Engine, Engine],
) -> None:
    """Both instances reconcile every 0.1 s. 10 calls through each engine; the first
    instance (FreeSWITCH's) is killed with -9 while they talk and started again. Its calls
    end while it is down or starting: the second instance's reconciler and the restarted
    one's both find them and settle them from the CDR, while the second instance settles
    its own Asterisk calls at their hang-up with the restarted reconciler running beside it.
    Every call is settled exactly once, and the ledger says exactly what the balance says."""
    tenant, number = await funded(service, db, 25)
    start = await opening(db, tenant)
    fast = {"SOFTSWITCH_PREPAID__RECONCILE_INTERVAL_S": "0.1"}
    with restarted(service, **fast) as first, second_instance(first, stack, **fast):
        runs = calls_through(both, number, calls=10, rate=20, limit=10, hold_ms=5000, timeout_s=60)
        await until_channels(db, tenant, 20)
        first.stop(signal.SIGKILL)
        first.start()
        results = await asyncio.gather(*runs)
        assert [int(r.stats.get("SuccessfulCall(C)", 0)) for r in results] == [10, 10], [
            r.stats for r in results
        ]
        await all_reservations_closed(db, tenant, budget_s=40)
    rows = await db.fetch(
        "SELECT r.call_id, r.state, r.close_reason, c.uniqueid FROM reservations r "
        "JOIN calls c ON c.linkedid = r.call_id WHERE r.tenant_id = $1",
        tenant,
    )
    assert len(rows) == 20 and {r["state"] for r in rows} == {"settled"}, rows
    by_engine = Counter(
        ("freeswitch" if re.match(FS_UUID, r["uniqueid"]) else "asterisk", r["close_reason"]) for r in rows
    )
    # FreeSWITCH's calls lost their instance: a reconciler settled them from the CDR.
    assert all(
        reason == "reconciled from CDR" for (engine, reason) in by_engine.elements() if engine == "freeswitch"
    ), by_engine
    await books_closed(db, tenant, start)


async def test_a_tenant_suspended_mid_call_keeps_its_live_calls_and_takes_no_new_ones(
    db: asyncpg.Connection,
    service: ServiceProcess,
    destination_carrier: SippUas,
    stack: LocalStack,
    both: tuple[Engine, Engine],
) -> None:
    tenant, number = await funded(service, db, 4)
    with second_instance(service, stack) as other:
        runs = calls_through(both, number, hold_ms=20_000, timeout_s=60)
        await until_channels(db, tenant, 2)
        before = (
            service.metric("softswitch_snapshot_generation"),
            other.metric("softswitch_snapshot_generation"),
        )
        api_ok(other.request("POST", f"/v1/tenants/{tenant}/suspend"))  # through the second instance
        await wait_reload(service, before[0])
        await wait_reload(other, before[1])
        refused = [
            await asyncio.to_thread(run_uac, number, unique_caller(), target=e.carrier, timeout_s=20)
            for e in both
        ]
        assert [r.final_status for r in refused] == [403, 403], [r.message_log[-800:] for r in refused]
        assert (await account(db, tenant))["channels_in_use"] == 2  # still talking
        results = await asyncio.gather(*runs)
    for r in results:
        assert r.final_status == 200 and "BYE" not in r.received_requests, r.message_log[-1500:]
        assert r.seconds >= 20, r.seconds
    reasons = Counter(
        r["reason"] for r in await db.fetch("SELECT reason FROM calls WHERE tenant_id = $1", tenant)
    )
    assert reasons == {"ROUTED": 2, "TENANT_SUSPENDED": 2}, reasons
    await all_reservations_closed(db, tenant)
    await settled_calls(db, tenant)
    billsecs = [
        r["billsec"]
        for r in await db.fetch(
            "SELECT billsec FROM calls WHERE tenant_id = $1 AND reason = 'ROUTED'", tenant
        )
    ]
    assert all(b >= 19 for b in billsecs), billsecs  # billed for what was talked after the suspension
