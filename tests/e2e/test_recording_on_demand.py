"""On-demand recording and the per-number / per-extension recording overrides, through the
real engines and the API (issue 17, item 3):

- a tenant whose policy is on_demand: the caller keys *3 (Asterisk: features.conf
  automixmon; FreeSWITCH: bind_digit_action on the caller, the ss-features context's
  record_session), speaks, keys *3 again, through each engine; the API lists the call's
  recording segment, on_demand, about as long as what was said between the two codes;
- an override 'all' on one number records that number's calls though the tenant records
  none; an override 'none' on one extension leaves its calls unrecorded though the tenant
  records all (another extension of the tenant, without an override, is recorded).

The names in the issue ('always', 'never') are the API's 'all' and 'none'."""

from __future__ import annotations

import asyncio
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from scripts.devstack.dtmf_pcap import digit_pcaps
from scripts.devstack.process import ServiceProcess
from scripts.devstack.sipp import SCENARIOS, SippResult, SippUas, run_uac
from tests.e2e.conftest import (
    OWNER,
    Engine,
    active_number,
    api_ok,
    carrier_trunk,
    changed,
    ext_call,
    extension,
    mobile,
    unique_caller,
)
from tests.e2e.test_recording import _speaking_call, _voice_pcap

pytestmark = pytest.mark.stack

SPOKEN_MS = 3000


def patch(service: ServiceProcess, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """PATCH with the row's version (If-Match), then wait for the snapshot to reload."""
    current = api_ok(service.request("GET", path))
    return changed(service, "PATCH", path, json=body, headers={"If-Match": f'"{current["version"]}"'})


def bound_number(service: ServiceProcess, tenant_policy: str) -> tuple[int, int, str, str]:
    """A tenant recording by `tenant_policy`, its active number bound to a mobile:
    (tenant, number id, number, the tenant's API base)."""
    tenant, number_id, number = active_number(service)
    base = f"/v1/tenants/{tenant}"
    changed(
        service, "POST", f"{base}/bindings", json={"number_id": number_id, "destination": mobile(), **OWNER}
    )
    patch(service, base, {"recording_policy": tenant_policy})
    return tenant, number_id, number, base


def on_demand_call(number: str, caller: str, target: str) -> SippResult:
    """The caller keys *3, speaks SPOKEN_MS, keys *3 again, waits and hangs up."""
    with tempfile.TemporaryDirectory(prefix="sipp-ondemand-") as tmp:
        directory = Path(tmp)
        star, three, star2, three2 = digit_pcaps("*3*3", directory, 250)
        voice = directory / "voice.pcap"
        _voice_pcap(voice, SPOKEN_MS)

        def play(pcap: Path, then_ms: int) -> str:
            exec_ = f'  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>'
            return f'{exec_}\n  <pause milliseconds="{then_ms}"/>'

        lines = [
            play(star, 250),
            play(three, 800),  # Asterisk starts MixMonitor (and beeps), FreeSWITCH record_session
            play(voice, SPOKEN_MS),
            play(star2, 250),
            play(three2, 800),  # ... and stops it
        ]
        text = (SCENARIOS / "uac_dtmf.xml").read_text().replace("@@DTMF@@", "\n".join(lines))
        scenario = directory / "on-demand.xml"
        scenario.write_text(text.replace("@@HOLD_MS@@", "1500"))
        return run_uac(number, caller, scenario=str(scenario), hold_ms=1500, timeout_s=40, target=target)


async def eventually(probe: Any, budget: float = 10.0) -> Any:
    deadline = time.monotonic() + budget
    while True:
        value = await probe()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.05)


async def test_star_3_records_what_is_said_between_the_two_codes(
    db: asyncpg.Connection, service: ServiceProcess, destination_carrier: SippUas, engine: Engine
) -> None:
    _tenant, _number_id, number, base = bound_number(service, "on_demand")
    caller = unique_caller()
    result = await asyncio.to_thread(on_demand_call, number, caller, engine.carrier)
    assert result.final_status == 200, result.message_log[-2000:]
    call = await eventually(
        lambda: db.fetchrow(
            "SELECT * FROM calls WHERE caller = $1 AND recording_id IS NOT NULL ORDER BY id DESC LIMIT 1",
            caller,
        )
    )
    assert call is not None, "no recording linked to the call record"
    page = api_ok(service.request("GET", f"{base}/recordings", params={"call_id": call["linkedid"]}))
    segments = page["items"]
    assert [(s["segment"], s["mode"], s["status"]) for s in segments] == [(0, "on_demand", "stored")], (
        segments
    )
    # what was said between the two codes; not the whole call (answered ~1.2 + 1.05 + 3 +
    # 1.05 + 1.5 s)
    assert abs(segments[0]["duration_s"] - SPOKEN_MS / 1000) <= 1.0, segments
    answered_s = (call["ended_at"] - call["answered_at"]).total_seconds()
    assert answered_s - segments[0]["duration_s"] >= 2.0, (answered_s, segments)


async def test_a_number_override_records_where_the_tenant_records_nothing(
    db: asyncpg.Connection, service: ServiceProcess, destination_carrier: SippUas, engine: Engine
) -> None:
    tenant, number_id, number, base = bound_number(service, "none")

    async def ended_call(hold_ms: int) -> asyncpg.Record:
        caller = unique_caller()
        result = await asyncio.to_thread(_speaking_call, number, caller, hold_ms, engine.carrier)
        assert result.final_status == 200, result.message_log[-2000:]  # type: ignore[attr-defined]
        row = await eventually(
            lambda: db.fetchrow("SELECT * FROM calls WHERE caller = $1 AND ended_at IS NOT NULL", caller)
        )
        assert row is not None and row["answered_at"] is not None
        return row

    plain = await ended_call(1000)  # the tenant's 'none'
    read = patch(service, f"{base}/numbers/{number_id}", {"recording_policy": "all"})
    assert read["recording_policy"] == "all"
    assert api_ok(service.request("GET", base))["recording_policy"] == "none"
    overridden = await ended_call(2000)
    rec = await eventually(
        lambda: db.fetchrow("SELECT * FROM recordings WHERE call_linkedid = $1", overridden["linkedid"])
    )
    assert rec is not None, "the number's override did not record the call"
    assert (rec["tenant_id"], rec["mode"], rec["status"], rec["direction"]) == (
        tenant,
        "record",
        "stored",
        "inbound",
    )
    # stored after the earlier call ended, which left nothing
    assert (
        await db.fetchval("SELECT count(*) FROM recordings WHERE call_linkedid = $1", plain["linkedid"]) == 0
    )
    assert plain["recording_id"] is None


async def test_an_extension_override_none_leaves_its_calls_unrecorded(
    db: asyncpg.Connection, service: ServiceProcess, destination_carrier: SippUas, engine: Engine
) -> None:
    tenant, _number_id, _number, base = bound_number(service, "all")
    carrier_trunk(service)
    password = "pw-" + secrets.token_hex(8)
    quiet = extension(service, tenant, "801", "main", password)
    loud = extension(service, tenant, "802", "main", password)
    read = patch(service, f"{base}/extensions/{quiet['id']}", {"recording_policy": "none"})
    assert read["recording_policy"] == "none"

    async def outbound_call(ext: dict[str, Any]) -> asyncpg.Record:
        presented = unique_caller()
        result = await asyncio.to_thread(ext_call, ext, password, mobile(), presented, engine.phones, 2000)
        assert result.final_status == 200, result.message_log[-2000:]
        row = await eventually(
            lambda: db.fetchrow(
                "SELECT * FROM calls WHERE caller = $1 AND direction = 'outbound' AND ended_at IS NOT NULL",
                presented,
            )
        )
        assert row is not None and row["answered_at"] is not None
        return row

    unrecorded = await outbound_call(quiet)
    recorded = await outbound_call(loud)
    rec = await eventually(
        lambda: db.fetchrow("SELECT * FROM recordings WHERE call_linkedid = $1", recorded["linkedid"])
    )
    assert rec is not None and rec["direction"] == "outbound", "the tenant's 'all' did not record 802"
    # 802's call, placed after 801's ended, is stored: 801's left nothing
    count = await db.fetchval(
        "SELECT count(*) FROM recordings WHERE call_linkedid = $1", unrecorded["linkedid"]
    )
    assert count == 0
    assert unrecorded["recording_id"] is None
