"""A standby control-plane instance (issue 18, item 1): both engines are configured with a
second instance's address (agi.standby_port, freeswitch.socket_standby_port: Asterisk's
[ss-route] asks it when AGISTATUS is FAILURE, FreeSWITCH's socket application tries the
hosts in turn). While the first instance answers, the standby decides nothing; killed
with SIGKILL, the first leaves every new call, through either engine, to the standby,
which routes it as the first would have."""

from __future__ import annotations

import asyncio
import signal
import time

import asyncpg
import pytest

from scripts.devstack.process import ServiceProcess, standby_service
from scripts.devstack.sipp import SippUas, run_uac
from scripts.devstack.stack import LocalStack
from softswitch.core.settings import Settings
from tests.e2e.conftest import (
    OWNER,
    active_number,
    changed,
    engine_of,
    mobile,
    require_freeswitch,
    unique_caller,
)

pytestmark = pytest.mark.stack

ROUTED = {"action": "dial", "reason": "ROUTED"}


async def answered(db: asyncpg.Connection, caller: str) -> bool:
    deadline = time.monotonic() + 10
    while not await db.fetchval(
        "SELECT answered_at IS NOT NULL FROM calls WHERE caller = $1 AND reason = 'ROUTED'", caller
    ):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


async def test_the_engines_ask_the_standby_once_the_first_instance_is_killed(
    db: asyncpg.Connection,
    service: ServiceProcess,
    destination_carrier: SippUas,
    settings: Settings,
    stack: LocalStack,
) -> None:
    require_freeswitch(stack)
    assert settings.agi.standby_port and settings.freeswitch.socket_standby_port
    tenant, number_id, number = active_number(service)
    body = {"number_id": number_id, "destination": mobile(), **OWNER}
    changed(service, "POST", f"/v1/tenants/{tenant}/bindings", json=body)
    engines = [engine_of(settings, name) for name in ("asterisk", "freeswitch")]
    standby = standby_service(
        service.settings,
        token=service.token,
        log_path=service.log_path.with_name("softswitch-e2e-standby.log"),
    )
    standby.log_path.write_bytes(b"")
    standby.start()
    try:
        # both up: the engines ask the first instance; the standby decides nothing
        for e in engines:
            caller = unique_caller()
            result = await asyncio.to_thread(run_uac, number, caller, target=e.carrier, timeout_s=20)
            assert result.final_status == 200, (e.name, result.message_log[-1500:])
            assert await answered(db, caller)
        assert standby.metric("softswitch_call_decisions_total", **ROUTED) == 0

        service.stop(signal.SIGKILL)
        try:
            for e in engines:
                caller = unique_caller()
                result = await asyncio.to_thread(run_uac, number, caller, target=e.carrier, timeout_s=20)
                assert result.final_status == 200, (e.name, result.message_log[-1500:])
                assert await answered(db, caller), e.name
            assert standby.metric("softswitch_call_decisions_total", **ROUTED) == 2
        finally:
            service.start()
    finally:
        standby.stop()
