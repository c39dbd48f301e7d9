"""A customer's own PBX attached as a trunk (issue 20, items 1-4), through the real Asterisk
and FreeSWITCH, with SIPp playing the PBX (digest REGISTER, then answering what it is sent):

- provisioned through the API within the tenant's TRUNK and EXT-16 subscriptions;
- the carrier's call to a number bound to the PBX reaches it with that number in the
  Request-URI; a platform extension's call to an extension behind it (another site)
  reaches it with that extension, and the PBX's caller reaches the platform's extension,
  both on-net (internal: nothing reserved or charged);
- the PBX calls out through the platform's trunk showing the enterprise's number, prepaid
  from the trunk package's included minutes;
- once the PBX unregisters, the number's call fails over to its bound mobile with reason
  PBX_UNREGISTERED on the call record;
- a call answered at the platform's extension and transferred (#1) to an extension behind
  the PBX reaches the PBX, decided like any transfer (internal, not billed)."""

from __future__ import annotations

import asyncio
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from scripts.devstack.process import ServiceProcess
from scripts.devstack.sipp import SCENARIOS, SippUas, phone_args, run_register, run_uac
from tests.e2e.conftest import (
    OWNER,
    Engine,
    active_number,
    api_ok,
    carrier_trunk,
    changed,
    dialled_legs,
    ext_call,
    extension,
    mobile,
    unique_caller,
)
from tests.e2e.test_internal_calls import SipTrace, call_row, register_accepted
from tests.e2e.test_transfers import (
    PhoneFactory,
    caller_holding,
    transferring_phone,  # noqa: F401 - the fixture, used by name
    transferring_scenario,
)

pytestmark = pytest.mark.stack

PBX_IP, PBX_PORT = "127.0.0.21", 5081
DESK_IP, DESK_PORT = "127.0.0.22", 5082  # the platform's own extension 6001


def subscribe(service: ServiceProcess, tenant: int, *codes: str) -> None:
    packages = {p["code"]: p["id"] for p in api_ok(service.request("GET", "/v1/packages?limit=500"))["items"]}
    since = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    # the modules' first rents are charged at once (TRUNK 29 + EXT-16 159 CNY, prorated)
    api_ok(
        service.request(
            "POST",
            f"/v1/tenants/{tenant}/recharges",
            json={"amount": "500.00", "reference": "e2e pbx"},
            headers={"Idempotency-Key": f"e2e-pbx-{tenant}"},
        ),
        201,
    )
    for code in codes:
        body = {"package_id": packages[code], "starts_on": since}
        api_ok(service.request("POST", f"/v1/tenants/{tenant}/subscriptions", json=body), 201)


def pbx_trunk(service: ServiceProcess, tenant: int, password: str) -> dict[str, Any]:
    """The tenant's PBX trunk 8000 at site beijing, owning extensions 8100-8115."""
    body = {
        "extension": "8000",
        "site": "beijing",
        "device_kind": "pbx",
        "range_first": "8100",
        "range_last": "8115",
        "password": password,
    }
    return changed(service, "POST", f"/v1/tenants/{tenant}/extensions", json=body)


def pbx_phone(pbx: dict[str, Any], password: str, engine: Engine) -> tuple[SipTrace, SippUas]:
    """SIPp as the PBX (not started): it registers with the account and answers what it is sent."""
    trace = SipTrace(Path(tempfile.mkdtemp(prefix="pbx-")) / "messages.log")
    extra = phone_args(pbx["endpoint_id"], password, SCENARIOS / "uas_answer.xml", engine.phones, trace.path)
    return trace, SippUas("uas_phone.xml", local_ip=PBX_IP, port=PBX_PORT, ring_ms=200, extra=extra)


def unregister_scenario() -> Path:
    """uac_register.xml removing the contact (Expires: 0) instead of adding one."""
    text = (SCENARIOS / "uac_register.xml").read_text().replace("Expires: 60", "Expires: 0")
    path = Path(tempfile.mkdtemp(prefix="pbx-unregister-")) / "uac_unregister.xml"
    path.write_text(text)
    return path


async def test_a_customer_pbx_trunk(
    db: asyncpg.Connection, service: ServiceProcess, destination_carrier: SippUas, engine: Engine
) -> None:
    tenant, number_id, number = active_number(service)
    carrier_trunk(service)
    subscribe(service, tenant, "TRUNK", "EXT-16")
    password = "pbx-secret-0123"
    pbx = pbx_trunk(service, tenant, password)
    assert (pbx["channels"], pbx["range_first"], pbx["range_last"]) == (1, "8100", "8115")
    fallback = mobile("71")
    for position, (dest, kind) in enumerate(((pbx["extension"], "pbx"), (fallback, "mobile"))):
        changed(
            service,
            "POST",
            f"/v1/tenants/{tenant}/bindings",
            json={"number_id": number_id, "destination": dest, "kind": kind, "position": position, **OWNER},
        )
    desk = extension(service, tenant, "6001", "main", "desk-secret-0123")

    trace, uas = pbx_phone(pbx, password, engine)
    with uas:
        await trace.wait_for("the PBX's registration accepted", register_accepted)

        # 2. the carrier's call to the number: delivered to the PBX with the number
        result = await asyncio.to_thread(run_uac, number, "13912340001", target=engine.carrier)
        assert result.final_status == 200, result.message_log[-2000:]
        invites = await trace.wait_for("the number's INVITE at the PBX", lambda m: m in trace.invites(number))
        assert invites[0].start_line.startswith(f"INVITE sip:{number}@{PBX_IP}:{PBX_PORT}")
        row = await call_row(db, "13912340001", number)
        assert (row["direction"], row["action"], row["reason"]) == ("inbound", "dial", "ROUTED")
        if engine.is_asterisk:
            legs = await dialled_legs(db, row["linkedid"], engine)
            assert [(dialled.split(",")[0], answered) for dialled, answered in legs] == [
                (f"PJSIP/{number}@{pbx['endpoint_id']}", True)
            ]

        # 4. another site's extension, dialled by a platform extension: on-net
        result = await asyncio.to_thread(ext_call, desk, "desk-secret-0123", "8105", "6001", engine.phones)
        assert result.final_status == 200, result.message_log[-2000:]
        await trace.wait_for("8105's INVITE at the PBX", lambda m: m in trace.invites("8105"))
        row = await call_row(db, "6001", "8105")
        assert (row["direction"], row["reason"], row["caller_id_shown"]) == ("internal", "ROUTED", "6001")

        # ... and the PBX's caller dials the platform's extension 6001 (registered): on-net
        desk_trace = SipTrace(Path(tempfile.mkdtemp(prefix="pbx-desk-")) / "messages.log")
        desk_args = phone_args(
            desk["endpoint_id"],
            "desk-secret-0123",
            SCENARIOS / "uas_answer.xml",
            engine.phones,
            desk_trace.path,
        )
        with SippUas("uas_phone.xml", local_ip=DESK_IP, port=DESK_PORT, ring_ms=200, extra=desk_args):
            await desk_trace.wait_for("the desk phone's registration accepted", register_accepted)
            result = await asyncio.to_thread(ext_call, pbx, password, "6001", "8101", engine.phones)
            assert result.final_status == 200, result.message_log[-2000:]
            await desk_trace.wait_for("the PBX's INVITE at 6001", lambda m: m in desk_trace.invites())
        row = await call_row(db, "8101", "6001")
        assert (row["direction"], row["reason"], row["caller_id_shown"]) == ("internal", "ROUTED", "8101")

        # 3. the PBX's own caller calls out: the enterprise's number, the trunk's minutes
        callee = mobile("72")
        result = await asyncio.to_thread(ext_call, pbx, password, callee, "8101", engine.phones, 1500)
        assert result.final_status == 200, result.message_log[-2000:]
        row = await _settled(db, "8101", callee)
        assert (row["direction"], row["caller_id_shown"]) == ("outbound", number)
        assert row["included_used_s"] > 0 and row["amount"] == 0, dict(row)

    # the PBX leaves: its contact is removed, and the number's next call fails over
    gone = await asyncio.to_thread(
        run_register,
        pbx["endpoint_id"],
        password,
        scenario=str(unregister_scenario()),
        local_ip=PBX_IP,
        target=engine.phones,
        extra=("-p", str(PBX_PORT)),
    )
    assert gone.final_status == 200, gone.message_log[-2000:]
    result = await asyncio.to_thread(run_uac, number, "13912340002", target=engine.carrier)
    assert result.final_status == 200, result.message_log[-2000:]
    row = await call_row(db, "13912340002", number)
    failed_over = (row["action"], row["reason"], list(row["destinations"]))
    assert failed_over == ("dial", "PBX_UNREGISTERED", [fallback])
    assert "pbx_unregistered" in row["why"]


async def _settled(db: asyncpg.Connection, caller: str, called: str) -> asyncpg.Record:
    for _ in range(100):
        row = await db.fetchrow(
            "SELECT * FROM calls WHERE caller = $1 AND called = $2 ORDER BY id DESC LIMIT 1", caller, called
        )
        if row is not None and row["settled_at"] is not None:
            return row
        await asyncio.sleep(0.1)
    raise AssertionError(f"the call {caller} -> {called} was not settled: {row}")


async def test_a_call_answered_at_the_platform_is_transferred_to_an_extension_behind_the_pbx(
    db: asyncpg.Connection,
    service: ServiceProcess,
    destination_carrier: SippUas,
    engine: Engine,
    transferring_phone: PhoneFactory,  # noqa: F811 - the fixture imported above
) -> None:
    """Item 4's transfers across sites: the platform's extension 801 answers the number's
    call and keys #1 8105; the caller is put through to 8105 behind the PBX (another site),
    the transfer decided by the control plane like any (internal: on-net, not billed)."""
    tenant, number_id, number = active_number(service)
    subscribe(service, tenant, "TRUNK", "EXT-16")
    password = "pbx-secret-4567"
    pbx = pbx_trunk(service, tenant, password)
    desk_password = "desk-secret-4567"
    desk = extension(service, tenant, "801", "main", desk_password)
    body = {"number_id": number_id, "destination": "801", "kind": "extension", **OWNER}
    changed(service, "POST", f"/v1/tenants/{tenant}/bindings", json=body)
    trace, uas = pbx_phone(pbx, password, engine)
    with uas:
        await trace.wait_for("the PBX's registration accepted", register_accepted)
        scenario = transferring_scenario(
            Path(tempfile.mkdtemp(prefix="pbx-xfer-desk-")), talk_ms=800, transfer="#1,8105"
        )
        await transferring_phone(desk, desk_password, scenario, engine.name)
        caller = unique_caller()
        placed = asyncio.create_task(asyncio.to_thread(caller_holding, number, caller, 9000, engine))
        invites = await trace.wait_for(
            "the transferred caller's INVITE for 8105 at the PBX", lambda m: m in trace.invites("8105"), 20.0
        )
        assert invites[0].start_line.startswith(f"INVITE sip:8105@{PBX_IP}:{PBX_PORT}")
        result = await placed
    assert result.final_status == 200, result.message_log[-2000:]
    linkedid = (await call_row(db, caller, number))["linkedid"]
    record = await db.fetchrow("SELECT * FROM call_transfers WHERE linkedid = $1", linkedid)
    assert record is not None
    assert (record["kind"], record["transferor"], record["target"], record["reason"], record["billable"]) == (
        "blind",
        desk["endpoint_id"],
        "8105",
        "ROUTED",
        False,
    )
