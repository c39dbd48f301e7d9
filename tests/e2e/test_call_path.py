"""The backbone through the real stack: SIPp (carrier) -> Asterisk 22 -> FastAGI -> this
service -> Dial -> SIPp (destination)."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import httpx
import pytest

from scripts.devstack.sipp import SippUas, run_uac
from scripts.devstack.stack import LocalStack
from tests.e2e.conftest import Engine, ServiceProcess, provision, unique_caller

pytestmark = pytest.mark.stack


async def _eventually(fetch, timeout: float = 5.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = await fetch()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.02)


async def _call_row(db: asyncpg.Connection, caller: str, ended: bool = False) -> asyncpg.Record | None:
    async def fetch() -> asyncpg.Record | None:
        row = await db.fetchrow("SELECT * FROM calls WHERE caller = $1 ORDER BY id DESC LIMIT 1", caller)
        return row if row is not None and (not ended or row["ended_at"] is not None) else None

    return await _eventually(fetch)


async def _cdr_row(db: asyncpg.Connection, caller: str) -> asyncpg.Record | None:
    return await _eventually(
        lambda: db.fetchrow("SELECT * FROM cdr WHERE src = $1 ORDER BY id DESC LIMIT 1", caller)
    )


async def test_routed_call_is_answered_and_its_life_cycle_is_tracked(
    db: asyncpg.Connection, service: ServiceProcess, destination_carrier: SippUas, engine: Engine
) -> None:
    num = await provision(db, service)
    caller = unique_caller()
    result = await asyncio.to_thread(run_uac, num.number, caller, hold_ms=1000, target=engine.carrier)

    assert result.returncode == 0, result.message_log[-2000:]
    assert result.final_status == 200
    assert 180 in result.statuses

    async def ended_call() -> list[dict[str, object]]:
        # The engine reports the hang-up over its event stream, which may reach the
        # service a moment after SIPp has its 200 for the BYE.
        recent = service.get("/v1/calls/recent").json()
        return [c for c in recent if c["caller"] == caller and "hung_up" in c["lifecycle"]]

    live = await _eventually(ended_call)
    assert len(live) == 1
    call = live[0]
    assert call["lifecycle"] == ["created", "answered", "bridged", "hung_up"]
    assert call["called"] == num.number
    assert call["hangup_cause"] == 16  # normal clearing: the caller hung up

    row = await _call_row(db, caller, ended=True)
    assert row is not None
    assert (row["action"], row["reason"], row["tenant_id"]) == ("dial", "ROUTED", num.tenant_id)
    assert row["destinations"] == ["13800138000"]
    assert row["answered_at"] is not None and row["linkedid"] == call["linkedid"]
    assert (row["ended_at"] - row["answered_at"]).total_seconds() >= 0.9
    if not engine.is_asterisk:
        return
    cdr = await _cdr_row(db, caller)
    assert cdr is not None
    assert (cdr["disposition"], cdr["userfield"]) == ("ANSWERED", "ROUTED")
    assert cdr["billsec"] >= 1


@pytest.mark.parametrize(
    ("case", "status", "reason"),
    [
        ("unknown", 404, "UNKNOWN_NUMBER"),
        ("tenant_suspended", 403, "TENANT_SUSPENDED"),
        ("number_pending_approval", 404, "NUMBER_NOT_ACTIVE"),
    ],
)
async def test_refused_call_hears_its_reason(
    db: asyncpg.Connection, service: ServiceProcess, case: str, status: int, reason: str, engine: Engine
) -> None:
    if case == "unknown":
        number = "4009" + unique_caller()[-6:]
    elif case == "tenant_suspended":
        number = (await provision(db, service, tenant_state="suspended")).number
    else:
        number = (await provision(db, service, number_state="pending_approval")).number
    counted_before = service.metric("softswitch_call_decisions_total", action="reject", reason=reason)
    caller = unique_caller()
    result = await asyncio.to_thread(run_uac, number, caller, target=engine.carrier)

    assert result.final_status == status, result.message_log[-2000:]
    assert 183 in result.statuses  # the announcement is played as early media first
    row = await _call_row(db, caller)
    assert row is not None and (row["action"], row["reason"]) == ("reject", reason)
    if engine.is_asterisk:
        cdr = await _cdr_row(db, caller)
        assert cdr is not None and cdr["userfield"] == reason
    assert (
        service.metric("softswitch_call_decisions_total", action="reject", reason=reason)
        == counted_before + 1
    )


async def test_service_down_gives_the_caller_the_fallback_promptly(
    db: asyncpg.Connection, service: ServiceProcess, engine: Engine
) -> None:
    num = await provision(db, service)
    service.stop()
    try:
        caller = unique_caller()
        result = await asyncio.to_thread(run_uac, num.number, caller, timeout_s=20, target=engine.carrier)
        assert result.final_status == 503, result.message_log[-2000:]
        assert 183 in result.statuses  # a short announcement, then congestion
        assert result.seconds < 6.0
        if not engine.is_asterisk:
            return
        cdr = await _cdr_row(db, caller)
        assert cdr is not None and cdr["userfield"] == "CONTROL_PLANE_UNAVAILABLE"
    finally:
        service.start()


async def test_engine_restart_the_event_connection_comes_back_and_the_next_call_routes(
    db: asyncpg.Connection,
    service: ServiceProcess,
    stack: LocalStack,
    destination_carrier: SippUas,
    engine: Engine,
) -> None:
    """AMI for Asterisk, the inbound Event Socket for FreeSWITCH: supervised alike, back by
    themselves after the engine restarts, and the next call routes."""
    num = await provision(db, service)
    proto, field = ("ami", "ami") if engine.is_asterisk else ("esl", "freeswitch")
    down, up = (
        (stack.asterisk_down, stack.asterisk_up) if engine.is_asterisk else (stack.fs_down, stack.fs_up)
    )
    reconnects = service.metric(f"softswitch_{proto}_reconnects_total")
    down()
    deadline = time.monotonic() + 10
    while service.get("/readyz").status_code == 200:
        assert time.monotonic() < deadline, f"service still ready with {engine.name} down"
        await asyncio.sleep(0.1)
    assert service.metric(f"softswitch_{proto}_connected") == 0.0
    assert service.get("/readyz").json()[field].startswith("disconnected")

    up()
    service.wait_ready(timeout=30)
    assert service.metric(f"softswitch_{proto}_reconnects_total") == reconnects + 1
    assert service.metric(f"softswitch_{proto}_connected") == 1.0

    caller = unique_caller()
    result = await asyncio.to_thread(run_uac, num.number, caller, hold_ms=300, target=engine.carrier)
    assert result.final_status == 200, result.message_log[-2000:]


def test_health_and_metrics_endpoints(service: ServiceProcess) -> None:
    assert service.get("/healthz").json() == {"status": "ok"}
    assert service.get("/readyz").json()["ready"] is True
    text = service.metrics()
    for name in (
        "softswitch_decision_seconds_bucket",
        "softswitch_ami_connected",
        "softswitch_calls_active",
        "softswitch_snapshot_generation",
    ):
        assert name in text
    assert httpx.get(service.base_url + "/v1/calls/recent", timeout=2).status_code == 401
    assert service.get("/v1/calls/nope").status_code == 404
