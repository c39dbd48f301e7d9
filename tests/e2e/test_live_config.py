"""Configuration is live: a binding changed through the API routes the very next call to
the new destination, within a second, through the real Asterisk — measured from the API's
answer to the service's snapshot generation, and proven by where the call was dialled."""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from typing import Any

import asyncpg
import pytest

from softswitch.sipp import SippUas, run_uac
from tests.e2e.conftest import ServiceProcess, unique_caller

pytestmark = pytest.mark.stack

PROPAGATION_BUDGET_S = 1.0
OWNER = {"owner_name": "Zhang San", "owner_id_number": "310101199001011234"}


def _ok(response: Any, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return response.json()


def _mobile() -> str:
    return "1380013" + "".join(random.choices("0123456789", k=4))


def _active_number(service: ServiceProcess) -> tuple[int, int, str]:
    """A new tenant and a 400 number taken through its life cycle to active, by the API."""
    tenant_id = _ok(
        service.request("POST", "/v1/tenants", json={"name": f"e2e live {secrets.token_hex(4)}"}), 201
    )["id"]
    number = "400" + "".join(random.choices("0123456789", k=7))
    base = f"/v1/tenants/{tenant_id}"
    number_id = _ok(
        service.request("POST", f"{base}/numbers", json={"number": number, "kind": "unified_400"}), 201
    )["id"]
    assert _ok(service.request("POST", f"{base}/numbers/{number_id}/submit"))["state"] == "pending_approval"
    docs = _ok(service.request("GET", f"{base}/documents"))["items"]
    assert docs, "a new tenant has onboarding documents to approve"
    for doc in docs:
        _ok(
            service.request(
                "PATCH",
                f"{base}/documents/{doc['id']}",
                json={"status": "approved"},
                headers={"If-Match": f'"{doc["version"]}"'},
            )
        )
    assert _ok(service.request("POST", f"{base}/numbers/{number_id}/approve"))["state"] == "active"
    return tenant_id, number_id, number


async def _wait_generation_above(service: ServiceProcess, generation: float, budget: float) -> float:
    """Seconds until the service's snapshot generation passes `generation` (fails past budget)."""
    started = time.monotonic()
    while service.metric("softswitch_snapshot_generation") <= generation:
        elapsed = time.monotonic() - started
        assert elapsed < budget, f"the service's snapshot did not reload within {budget} s"
        await asyncio.sleep(0.01)
    return time.monotonic() - started


async def _dialled(db: asyncpg.Connection, caller: str) -> tuple[list[str], str]:
    """What the service decided for the caller's call, and what Asterisk dialled."""
    deadline = time.monotonic() + 5
    while True:
        call = await db.fetchrow("SELECT * FROM calls WHERE caller = $1 ORDER BY id DESC LIMIT 1", caller)
        cdr = await db.fetchrow(
            "SELECT * FROM cdr WHERE src = $1 AND lastapp = 'Dial' ORDER BY id DESC LIMIT 1", caller
        )
        if call is not None and cdr is not None:
            assert (call["action"], call["reason"]) == ("dial", "ROUTED")
            return list(call["destinations"]), cdr["lastdata"]
        assert time.monotonic() < deadline, f"no call record or CDR for {caller}"
        await asyncio.sleep(0.05)


async def _call(service: ServiceProcess, number: str) -> str:
    caller = unique_caller()
    result = await asyncio.to_thread(run_uac, number, caller, hold_ms=100, timeout_s=15)
    assert result.final_status == 200, result.message_log[-2000:]
    return caller


async def test_binding_change_routes_the_next_call_to_the_new_destination_within_a_second(
    db: asyncpg.Connection, service: ServiceProcess, destination_carrier: SippUas
) -> None:
    tenant_id, number_id, number = _active_number(service)
    dest_a, dest_b = _mobile(), _mobile()
    while dest_b == dest_a:
        dest_b = _mobile()

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
    caller = await _call(service, number)
    destinations, lastdata = await _dialled(db, caller)
    assert destinations == [dest_a]
    assert lastdata.startswith(f"PJSIP/{dest_a}@carrier-out"), lastdata

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

    caller = await _call(service, number)
    destinations, lastdata = await _dialled(db, caller)
    assert destinations == [dest_b]
    assert lastdata.startswith(f"PJSIP/{dest_b}@carrier-out"), lastdata
