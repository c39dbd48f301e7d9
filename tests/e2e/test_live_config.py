"""Configuration is live: a binding changed through the API routes the very next call to
the new destination, within a second, through the real Asterisk — measured from the API's
answer to the service's snapshot generation, and proven by where the call was dialled."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from scripts.devstack.sipp import SippUas, run_uac
from tests.e2e.conftest import (
    OWNER,
    Engine,
    ServiceProcess,
    dialled_legs,
    mobile,
    unique_caller,
)
from tests.e2e.conftest import (
    active_number as _active_number,
)
from tests.e2e.conftest import (
    api_ok as _ok,
)
from tests.e2e.conftest import (
    wait_generation_above as _wait_generation_above,
)

pytestmark = pytest.mark.stack

PROPAGATION_BUDGET_S = 1.0


async def _dialled(db: asyncpg.Connection, caller: str, engine: Engine) -> tuple[list[str], str]:
    """What the service decided for the caller's call, and what the engine dialled."""
    deadline = time.monotonic() + 5
    while True:
        call = await db.fetchrow("SELECT * FROM calls WHERE caller = $1 ORDER BY id DESC LIMIT 1", caller)
        if call is not None:
            assert (call["action"], call["reason"]) == ("dial", "ROUTED")
            legs = await dialled_legs(db, call["linkedid"], engine)
            if legs:
                return list(call["destinations"]), legs[-1][0]
        assert time.monotonic() < deadline, f"no call record or engine record for {caller}"
        await asyncio.sleep(0.05)


async def _call(service: ServiceProcess, number: str, engine: Engine) -> str:
    caller = unique_caller()
    result = await asyncio.to_thread(
        run_uac, number, caller, hold_ms=100, timeout_s=15, target=engine.carrier
    )
    assert result.final_status == 200, result.message_log[-2000:]
    return caller


async def test_binding_change_routes_the_next_call_to_the_new_destination_within_a_second(
    db: asyncpg.Connection, service: ServiceProcess, destination_carrier: SippUas, engine: Engine
) -> None:
    tenant_id, number_id, number = _active_number(service)
    dest_a, dest_b = mobile(), mobile()
    while dest_b == dest_a:
        dest_b = mobile()

    generation = service.metric("softswitch_snapshot_generation")
    binding = _ok(
        service.request(
            "POST",
            f"/v1/tenants/{tenant_id}/bindings",
            json={"number_id": number_id, "destination": dest_a, "ring_timeout_s": 10, **OWNER},
        ),
        201,
    )
    await _wait_generation_above(service, generation, PROPAGATION_BUDGET_S)
    caller = await _call(service, number, engine)
    destinations, dialled = await _dialled(db, caller, engine)
    assert destinations == [dest_a]
    if engine.is_asterisk:
        assert dialled.startswith(f"PJSIP/{dest_a}@carrier-out"), dialled
    else:
        assert dialled == dest_a, dialled

    generation = service.metric("softswitch_snapshot_generation")
    changed = _ok(
        service.request(
            "PATCH",
            f"/v1/tenants/{tenant_id}/bindings/{binding['id']}",
            json={"destination": dest_b},
            headers={"If-Match": f'"{binding["version"]}"'},
        )
    )
    assert changed["destination"] == dest_b
    propagation = await _wait_generation_above(service, generation, PROPAGATION_BUDGET_S)
    assert propagation < PROPAGATION_BUDGET_S

    caller = await _call(service, number, engine)
    destinations, dialled = await _dialled(db, caller, engine)
    assert destinations == [dest_b]
    if engine.is_asterisk:
        assert dialled.startswith(f"PJSIP/{dest_b}@carrier-out"), dialled
    else:
        assert dialled == dest_b, dialled
