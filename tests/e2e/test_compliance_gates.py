"""Issue 15: the compliance gates on real calls. A registered extension of the tenant calls
outside numbers through the platform's carrier trunk (the carrier SIPp answers), through
Asterisk and FreeSWITCH: the per-callee frequency limit, the calling hours in the tenant's
time zone, the daily spend cap that cuts live calls, and one per-callee limit kept by two
service instances at once. Each refusal is what the phone hears (the SIP status), what the
call record keeps (its reason) and what a metric counts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from scripts.devstack.process import ServiceProcess, standby_service
from scripts.devstack.sipp import SippResult, SippUas
from scripts.devstack.stack import LocalStack
from softswitch.core.settings import Settings
from tests.e2e.conftest import (
    Engine,
    engine_of,
    ext_call,
    mobile,
    outbound_row,
    require_freeswitch,
    unique_caller,
)
from tests.e2e.conftest import calling_tenant as _calling_tenant
from tests.e2e.restarts import class_service, restarted_in_turn

pytestmark = pytest.mark.stack

PASSWORD = "gate-secret-7"
SHORT_SLICES = {
    "SOFTSWITCH_PREPAID__SLICE_S": "6",
    "SOFTSWITCH_PREPAID__RENEW_MARGIN_S": "3",
    "SOFTSWITCH_PREPAID__WARNING_S": "2",
}


def calling_tenant(service: ServiceProcess, ext: str) -> tuple[int, dict[str, Any]]:
    return _calling_tenant(service, ext, PASSWORD)


async def tenant_rule(
    db: asyncpg.Connection, service: ServiceProcess, tenant: int, kind: str, params: dict[str, Any]
) -> None:
    """The tenant's own rule of `kind`, live in the service's snapshot when this returns."""
    generation = service.metric("softswitch_snapshot_generation")
    await db.execute(
        "INSERT INTO compliance_rules (tenant_id, kind, params) VALUES ($1, $2, $3::jsonb) "
        "ON CONFLICT (tenant_id, kind) DO UPDATE SET params = EXCLUDED.params",
        tenant,
        kind,
        json.dumps(params),
    )
    deadline = time.monotonic() + 5
    while service.metric("softswitch_snapshot_generation") <= generation:
        assert time.monotonic() < deadline, "the snapshot did not reload"
        await asyncio.sleep(0.02)


async def test_the_next_call_to_the_same_callee_inside_the_window_is_refused(
    db: asyncpg.Connection, service: ServiceProcess, destination_carrier: SippUas, engine: Engine
) -> None:
    tenant, phone = calling_tenant(service, "821")
    await tenant_rule(db, service, tenant, "callee_frequency", {"windows": [[60, 2], [3600, 5]]})
    callee = mobile()
    refused_before = service.metric(
        "softswitch_call_decisions_total", action="reject", reason="CALLEE_FREQUENCY"
    )
    outcomes = []
    for _ in range(3):
        presented = unique_caller()
        result = await asyncio.to_thread(ext_call, phone, PASSWORD, callee, presented, engine.phones)
        row = await outbound_row(db, presented)
        outcomes.append((result.final_status, row["reason"], row["why"]))
    assert outcomes[:2] == [(200, "ROUTED", "outbound+cli_replaced")] * 2, outcomes
    assert outcomes[2] == (403, "CALLEE_FREQUENCY", "60s:2"), outcomes
    # Another callee is not limited by this one's calls.
    presented = unique_caller()
    other = await asyncio.to_thread(ext_call, phone, PASSWORD, mobile(), presented, engine.phones)
    assert other.final_status == 200 and (await outbound_row(db, presented))["reason"] == "ROUTED"
    assert (
        service.metric("softswitch_call_decisions_total", action="reject", reason="CALLEE_FREQUENCY")
        == refused_before + 1
    )
    counted = await db.fetchval(
        "SELECT count(*) FROM outbound_attempts WHERE tenant_id = $1 AND callee = $2", tenant, callee
    )
    assert counted == 2  # the refused call is not counted as a call made


async def test_a_call_at_22_local_time_is_refused_with_08_to_21_calling_hours(
    db: asyncpg.Connection, service: ServiceProcess, destination_carrier: SippUas, settings: Settings
) -> None:
    """Through Asterisk only: two service restarts with a pinned clock for a decision the
    engine takes no part in (FreeSWITCH's refusals are driven by the other gate tests)."""
    engine = engine_of(settings, "asterisk")
    tenant, phone = calling_tenant(service, "822")
    await tenant_rule(db, service, tenant, "calling_hours", {"start": "08:00", "end": "21:00"})
    outcomes = {}
    with restarted_in_turn(service) as pinned:  # the usual service back once, after both
        for when in ("2026-12-03T22:00:00+08:00", "2026-12-03T10:00:00+08:00"):
            pinned(SOFTSWITCH_FIXED_NOW=when)
            presented = unique_caller()
            result = await asyncio.to_thread(ext_call, phone, PASSWORD, mobile(), presented, engine.phones)
            row = await outbound_row(db, presented)
            outcomes[when[11:16]] = (result.final_status, row["reason"], row["why"])
    assert outcomes["22:00"] == (403, "CALLING_HOURS", "08:00-21:00"), outcomes
    assert outcomes["10:00"][:2] == (200, "ROUTED"), outcomes


short_slices = class_service(**SHORT_SLICES)


class TestSpendCap:
    """Both engines' runs on one service restarted with SHORT_SLICES."""

    async def test_the_daily_spend_cap_cuts_the_live_calls_and_refuses_new_ones(
        self,
        db: asyncpg.Connection,
        short_slices: ServiceProcess,
        destination_carrier: SippUas,
        engine: Engine,
    ) -> None:
        """0.12 CNY/min billed 6/6 with 6 s slices: a reservation holds 0.01 for 6 s, 0.02 for
        12 s, 0.04 for 18 s. With a cap of 0.04 two calls start (0.02) and are renewed to 12 s
        (0.04); the next renewal would pass the cap: both calls are cut at once, well before
        the 40 s they want to talk, and the next call is refused."""
        svc = short_slices
        tenant, phone = calling_tenant(svc, "823")
        await db.execute(
            "UPDATE accounts SET balance = 10, channel_cap = 4, rate_per_minute = 0.12, "
            "first_increment_s = 6, increment_s = 6, included_seconds_left = 0 WHERE tenant_id = $1",
            tenant,
        )
        await tenant_rule(db, svc, tenant, "daily_spend_cap", {"amount": "0.04"})
        cuts_before = svc.metric("softswitch_spend_cap_cuts_total")
        long_calls = [
            asyncio.to_thread(ext_call, phone, PASSWORD, mobile(), unique_caller(), engine.phones, 40_000)
            for _ in range(2)
        ]
        results: list[SippResult] = await asyncio.gather(*long_calls)
        for r in results:
            assert r.final_status == 200, r.message_log[-1500:]
            assert "BYE" in r.received_requests  # the platform hung up, not the phone
            assert r.seconds < 25, r.seconds
        await all_settled(db, tenant, 2)
        rows = await db.fetch(
            "SELECT final_reason, billsec, amount FROM calls WHERE tenant_id = $1 AND reason = 'ROUTED'",
            tenant,
        )
        assert [r["final_reason"] for r in rows] == ["SPEND_CAP", "SPEND_CAP"], rows
        assert sum(r["amount"] for r in rows) <= Decimal("0.04")
        assert svc.metric("softswitch_spend_cap_cuts_total") >= cuts_before + 2
        presented = unique_caller()
        refused = await asyncio.to_thread(ext_call, phone, PASSWORD, mobile(), presented, engine.phones)
        assert refused.final_status == 403
        assert (await outbound_row(db, presented))["reason"] == "SPEND_CAP"
        acct = await db.fetchrow("SELECT * FROM accounts WHERE tenant_id = $1", tenant)
        assert (acct["channels_in_use"], acct["reserved"]) == (0, 0)
        assert acct["spent_today"] == sum(r["amount"] for r in rows)


async def all_settled(db: asyncpg.Connection, tenant: int, n: int) -> None:
    deadline = time.monotonic() + 15
    while True:
        done = await db.fetchval(
            "SELECT count(*) FROM calls WHERE tenant_id = $1 AND settled_at IS NOT NULL", tenant
        )
        if done >= n:
            return
        assert time.monotonic() < deadline, f"{done} of {n} calls settled"
        await asyncio.sleep(0.02)


@contextlib.contextmanager
def second_instance(service: ServiceProcess, stack: LocalStack, **env: str) -> Iterator[ServiceProcess]:
    """Another `softswitch serve` on the same database, on the standby's FastAGI, Event
    Socket and HTTP ports (and `env`: more settings of its own); Asterisk's calls go to it
    (its SS_AGI_URL global) while FreeSWITCH's still go to the first instance."""
    s = service.settings
    other = standby_service(
        s, token=service.token, env=env, log_path=service.log_path.with_name("softswitch-e2e-second.log")
    )
    other.log_path.write_bytes(b"")
    other.start()
    try:
        stack.asterisk_cli(f"dialplan set global SS_AGI_URL agi://{s.agi.host}:{s.agi.standby_port}")
        yield other
    finally:
        stack.asterisk_cli(f"dialplan set global SS_AGI_URL agi://{s.agi.host}:{s.agi.port}")
        other.stop()


async def test_two_service_instances_keep_one_per_callee_limit(
    db: asyncpg.Connection, service: ServiceProcess, destination_carrier: SippUas, stack: LocalStack
) -> None:
    """The same callee called at the same moment through Asterisk (served by the second
    instance) and FreeSWITCH (the first): with 1 call a minute allowed, exactly one rings."""
    require_freeswitch(stack)
    asterisk, freeswitch = engine_of(service.settings, "asterisk"), engine_of(service.settings, "freeswitch")
    tenant, phone = calling_tenant(service, "824")
    await tenant_rule(db, service, tenant, "callee_frequency", {"windows": [[60, 1]]})
    with second_instance(service, stack) as other:
        for _ in range(3):
            callee = mobile()
            pair = [
                asyncio.to_thread(ext_call, phone, PASSWORD, callee, unique_caller(), e.phones)
                for e in (asterisk, freeswitch)
            ]
            statuses = sorted(r.final_status or 0 for r in await asyncio.gather(*pair))
            assert statuses == [200, 403], statuses
            reasons = await db.fetch(
                "SELECT reason FROM calls WHERE tenant_id = $1 AND called = $2 ORDER BY reason",
                tenant,
                callee,
            )
            assert [r["reason"] for r in reasons] == ["CALLEE_FREQUENCY", "ROUTED"]
        # The second instance decided every Asterisk call: three, routed or refused.
        routed = other.metric("softswitch_call_decisions_total", action="dial", reason="ROUTED")
        refused = other.metric("softswitch_call_decisions_total", action="reject", reason="CALLEE_FREQUENCY")
        assert routed + refused == 3, (routed, refused)
