"""Transfers through the real Asterisk (issue 17, item 2), each seen from the wire (SIPp)
and from the service (its API, metrics and records):

- a caller reaches a 400 number, an extension (a registered SIPp phone) answers and keys
  #1 and a mobile bound to the number: the caller is put through to that mobile, the new
  leg is decided by the control plane (its transfer script), reserved and billed as a leg
  of its own, and the tenant's one-channel package carries it — its channel count reads 1
  while the transferred call is up and 0 after, and each leg is charged for its own talk;
- a target the rules refuse (an extension number the tenant does not have) is refused with
  its reason: the caller is hung up, the transfer's record and the metric name the reason,
  and the leg the transferor left is charged;
- an attended transfer (*2): the caller on hold while the extension consults the mobile
  holds two of the package's channels, one once the extension leaves (which completes the
  transfer), each leg charged for its own talk;
- a SIP REFER sent by the phone in the dialog: a blind transfer by another road, the same
  decision, reservation and record (kind refer).

Through FreeSWITCH, the REFER (sofia's blind transfer into the control plane's
[ss-transfer] context), #1 (bind_digit_action on the caller for the answering party's
digits, ss-features' ss_blind into the same context) and *2 (ss_attended: the answering
party's own channel comes to the control plane, whose decision att_xfer carries out)."""

from __future__ import annotations

import asyncio
import secrets
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from scripts.devstack.dtmf_pcap import digit_pcaps
from scripts.devstack.process import ServiceProcess
from scripts.devstack.sipp import SCENARIOS, SippResult, SippUas, phone_args, run_uac
from scripts.devstack.stack import LocalStack
from softswitch.core.settings import Settings
from tests.e2e.conftest import (
    OWNER,
    Engine,
    active_number,
    api_ok,
    changed,
    dialled_legs,
    engine_of,
    extension,
    mobile,
    require_freeswitch,
    unique_caller,
)
from tests.e2e.test_internal_calls import SipTrace, register_accepted

pytestmark = pytest.mark.stack

# The transferring phone's address (no other test's SIPp uses it).
PHONE_IP, PHONE_PORT = "127.0.0.9", 5076
DIGIT_GAP_MS = 250


REFER = """  <send retrans="500">
    <![CDATA[
      REFER [$remote_contact] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[service]@[local_ip]:[local_port]>;tag=[pid]SIPpTag01[call_number]
      To:[$remote_from]
      Call-ID: [call_id]
      CSeq: 10 REFER
      Contact: <sip:[service]@[local_ip]:[local_port];transport=[transport]>
      Refer-To: <sip:@@TARGET@@>
      Referred-By: <sip:[service]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="202"/>"""


def transferring_scenario(
    directory: Path, *, talk_ms: int, transfer: str = "", refer_to: str = "", leave_ms: int = 8000
) -> Path:
    """uas_transfer.xml with what the phone does to transfer rendered in. ``transfer``:
    DTMF digits, ',' a one-second pause (as dialers write it); ``refer_to``: the
    user@host of an in-dialog REFER sent instead."""
    keys = [d for d in transfer if d != ","]
    pcaps = iter(digit_pcaps("".join(keys), directory, DIGIT_GAP_MS))
    lines = []
    for d in transfer:
        if d == ",":
            lines.append('  <pause milliseconds="1000"/>')
            continue
        lines.append(f'  <nop><action><exec play_pcap_audio="{next(pcaps)}"/></action></nop>')
        lines.append(f'  <pause milliseconds="{DIGIT_GAP_MS}"/>')
    if refer_to:
        lines.append(REFER.replace("@@TARGET@@", refer_to))
    text = (SCENARIOS / "uas_transfer.xml").read_text()
    text = text.replace("@@TRANSFER@@", "\n".join(lines)).replace("@@TALK_MS@@", str(talk_ms))
    path = directory / "transfer.xml"
    path.write_text(text.replace("@@LEAVE_MS@@", str(leave_ms)))
    return path


PhoneFactory = Callable[..., Awaitable[SipTrace]]


@pytest.fixture
async def transferring_phone() -> AsyncIterator[PhoneFactory]:
    """A factory: a SIP phone registered as an extension on Asterisk, answering the calls to
    it with the given scenario (it stays registered 20 s: start it right before the call)."""
    phones: list[SippUas] = []

    async def register(
        ext: dict[str, Any], password: str, scenario: Path, engine: str = "asterisk"
    ) -> SipTrace:
        trace = SipTrace(scenario.parent / "messages.log")
        target = engine_of(Settings(), engine).phones
        uas = SippUas(
            "uas_phone.xml",
            local_ip=PHONE_IP,
            port=PHONE_PORT,
            ring_ms=200,
            extra=phone_args(ext["endpoint_id"], password, scenario, target, trace.path),
        )
        phones.append(uas.start())
        await trace.wait_for("the phone's registration accepted", register_accepted)
        return trace

    try:
        yield register
    finally:
        for uas in phones:
            uas.stop()


def desk_and_mobile(service: ServiceProcess) -> tuple[int, str, dict[str, Any], str, str]:
    """A prepaid tenant on the default one-channel package, its 400 number ringing its
    extension 801 first and a mobile second: (tenant, number, extension, its password,
    the mobile)."""
    tenant, number_id, number = active_number(service)
    password = "pw-" + secrets.token_hex(8)
    ext = extension(service, tenant, "801", "main", password)
    target = mobile()
    base = f"/v1/tenants/{tenant}/bindings"
    for position, (destination, kind) in enumerate(((ext["extension"], "extension"), (target, "mobile"))):
        body = {"number_id": number_id, "destination": destination, "kind": kind, "position": position}
        changed(service, "POST", base, json={**body, **OWNER})
    return tenant, number, ext, password, target


async def live_call(service: ServiceProcess, caller: str, budget: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + budget
    while True:
        calls = [c for c in api_ok(service.request("GET", "/v1/calls/live")) if c["caller"] == caller]
        if calls:
            return calls[0]
        assert time.monotonic() < deadline, f"no live call from {caller}"
        await asyncio.sleep(0.05)


async def until(what: str, probe: Callable[[], Awaitable[Any]], budget: float = 15.0) -> Any:
    deadline = time.monotonic() + budget
    while True:
        value = await probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {budget} s"
        await asyncio.sleep(0.05)


def account(service: ServiceProcess, tenant: int) -> dict[str, Any]:
    return api_ok(service.request("GET", f"/v1/tenants/{tenant}/account"))


def caller_holding(number: str, caller: str, hold_ms: int, engine: Engine) -> SippResult:
    """The carrier's caller: stays on the line `hold_ms` after the answer unless Asterisk
    hangs it up first (then BYE is among the requests it received)."""
    return run_uac(number, caller, dtmf="", hold_ms=hold_ms, timeout_s=45, target=engine.carrier)


async def test_a_blind_transfer_to_a_bound_mobile_is_reserved_and_billed_as_its_own_leg(
    db: asyncpg.Connection,
    service: ServiceProcess,
    destination_carrier: SippUas,
    engine: Engine,
    transferring_phone: PhoneFactory,
) -> None:
    """Through each engine: Asterisk's features.conf blindxfer, FreeSWITCH's #1 bound on
    the caller for the answering party's digits (ss-features' ss_blind)."""
    tenant, number, ext, password, target = desk_and_mobile(service)
    assert account(service, tenant)["channel_cap"] == 1
    routed_before = service.metric("softswitch_transfers_total", kind="blind", reason="ROUTED")
    tmp = Path(tempfile.mkdtemp(prefix="xfer-blind-"))
    scenario = transferring_scenario(tmp, talk_ms=1000, transfer=f"#1,{target}")
    await transferring_phone(ext, password, scenario, engine.name)
    caller = unique_caller()
    placed = asyncio.create_task(asyncio.to_thread(caller_holding, number, caller, 15000, engine))

    call = await live_call(service, caller)
    linkedid = call["linkedid"]
    assert account(service, tenant)["channels_in_use"] == 1  # the extension's leg

    async def transferred_and_answered() -> dict[str, Any] | None:
        now = api_ok(service.request("GET", f"/v1/calls/{linkedid}"))
        legs = now["transfers"]
        return now if legs and legs[0]["answered_at"] else None

    during = await until("the transfer's target answered", transferred_and_answered)
    assert during["state"] != "ended" and [t["kind"] for t in during["transfers"]] == ["blind"]
    leg_id = during["transfers"][0]["call_id"]
    assert leg_id == f"{linkedid}~x1"
    # while the caller talks to the mobile: one channel held, by the new leg; the leg the
    # extension left is already settled
    assert account(service, tenant)["channels_in_use"] == 1
    held = await db.fetch(
        "SELECT call_id, state FROM reservations WHERE call_id = ANY($1)", [linkedid, leg_id]
    )
    assert {r["call_id"]: r["state"] for r in held} == {linkedid: "settled", leg_id: "open"}
    assert service.metric("softswitch_transfers_total", kind="blind", reason="ROUTED") == routed_before + 1

    result = await placed
    assert result.final_status == 200, result.message_log[-3000:]
    assert "BYE" not in result.received_requests  # the caller stayed on, then hung up itself
    # what the engine dialled: the extension, then (from the caller's channel) the mobile
    legs = await dialled_legs(db, linkedid, engine, expect=2)
    assert any(ext["endpoint_id"] in d for d, _ in legs) and any(target in d and a for d, a in legs), legs

    async def both_settled() -> list[asyncpg.Record] | None:
        rows = await db.fetch(
            "SELECT call_id, state, billsec, charged FROM reservations WHERE call_id = ANY($1) ORDER BY id",
            [linkedid, leg_id],
        )
        return rows if all(r["state"] == "settled" for r in rows) and len(rows) == 2 else None

    first, second = await until("both legs settled", both_settled)
    # the extension talked ~1 s + the digits + the engine's 3 s digit timeout; the mobile
    # the rest of the caller's 15 s (+1.2 s before it starts counting)
    assert 4 <= first["billsec"] <= 12, first
    assert 3 <= second["billsec"] <= 14, second
    assert 14 <= first["billsec"] + second["billsec"] <= 18, (first, second)
    after = account(service, tenant)
    assert (after["channels_in_use"], Decimal(str(after["reserved"]))) == (0, 0)
    entries = await db.fetch(
        "SELECT idempotency_key, amount FROM ledger_entries "
        "WHERE tenant_id = $1 AND kind = 'call' ORDER BY id",
        tenant,
    )
    assert [(e["idempotency_key"], -e["amount"]) for e in entries] == [
        (linkedid, first["charged"]),
        (leg_id, second["charged"]),
    ]
    record = await db.fetchrow("SELECT * FROM call_transfers WHERE leg_call_id = $1", leg_id)
    assert record is not None
    assert (record["kind"], record["transferor"], record["target"], record["action"], record["reason"]) == (
        "blind",
        ext["endpoint_id"],
        target,
        "dial",
        "ROUTED",
    )
    assert (record["direction"], record["billable"], record["tenant_id"]) == ("inbound", True, tenant)


async def test_a_transfer_to_a_target_the_rules_refuse_is_refused_with_its_reason(
    db: asyncpg.Connection,
    service: ServiceProcess,
    destination_carrier: SippUas,
    engine: Engine,
    transferring_phone: PhoneFactory,
) -> None:
    tenant, number, ext, password, _target = desk_and_mobile(service)
    refused_before = service.metric("softswitch_transfers_total", kind="blind", reason="EXTENSION_NOT_FOUND")
    tmp = Path(tempfile.mkdtemp(prefix="xfer-refused-"))
    # 999: no extension of the tenant, too short for an outside number
    await transferring_phone(
        ext, password, transferring_scenario(tmp, talk_ms=1000, transfer="#1,999"), engine.name
    )
    caller = unique_caller()
    started = time.monotonic()
    result = await asyncio.to_thread(caller_holding, number, caller, 20000, engine)
    assert result.final_status == 200, result.message_log[-3000:]
    # the caller hears the refusal and is hung up, long before it would have hung up itself
    assert "BYE" in result.received_requests and time.monotonic() - started < 18
    row = await until(
        "the refused transfer's record",
        lambda: db.fetchrow(
            "SELECT t.* FROM call_transfers t JOIN calls c ON c.linkedid = t.linkedid WHERE c.caller = $1",
            caller,
        ),
    )
    assert (row["action"], row["reason"], row["target"], row["billable"]) == (
        "reject",
        "EXTENSION_NOT_FOUND",
        "999",
        False,
    )
    assert (
        service.metric("softswitch_transfers_total", kind="blind", reason="EXTENSION_NOT_FOUND")
        == refused_before + 1
    )
    first = await until(
        "the first leg settled",
        lambda: db.fetchrow(
            "SELECT * FROM reservations WHERE call_id = $1 AND state = 'settled'", row["linkedid"]
        ),
    )
    assert first["billsec"] >= 3 and first["charged"] > 0
    assert (
        await db.fetchval("SELECT count(*) FROM reservations WHERE call_id LIKE $1", row["linkedid"] + "~%")
        == 0
    )
    assert account(service, tenant)["channels_in_use"] == 0


async def test_an_attended_transfer_holds_a_second_channel_while_the_transferor_consults(
    db: asyncpg.Connection,
    service: ServiceProcess,
    destination_carrier: SippUas,
    engine: Engine,
    transferring_phone: PhoneFactory,
) -> None:
    """*2 and the mobile: the caller waits on hold while the extension talks to the mobile
    (two conversations: two of the package's channels), then the extension hangs up, which
    completes the transfer — the caller talks to the mobile on one channel."""
    tenant, number, ext, password, target = desk_and_mobile(service)
    await db.execute("UPDATE accounts SET channel_cap = 2 WHERE tenant_id = $1", tenant)
    tmp = Path(tempfile.mkdtemp(prefix="xfer-attended-"))
    # after the digits: the engine's 3 s digit timeout, the mobile rings 0.2 s, then the
    # extension consults it until it leaves, 7 s after its last digit
    scenario = transferring_scenario(tmp, talk_ms=1000, transfer=f"*2,{target}", leave_ms=7000)
    await transferring_phone(ext, password, scenario, engine.name)
    caller = unique_caller()
    placed = asyncio.create_task(asyncio.to_thread(caller_holding, number, caller, 18000, engine))
    linkedid = (await live_call(service, caller))["linkedid"]

    async def consulting() -> dict[str, Any] | None:
        legs = api_ok(service.request("GET", f"/v1/calls/{linkedid}"))["transfers"]
        return legs[0] if legs and legs[0]["answered_at"] else None

    leg = await until("the consulted target answered", consulting)
    assert leg["kind"] == "attended"
    assert account(service, tenant)["channels_in_use"] == 2  # the caller on hold, the consultation
    held = await db.fetch(
        "SELECT call_id, state FROM reservations WHERE call_id = ANY($1)", [linkedid, leg["call_id"]]
    )
    assert {r["call_id"]: r["state"] for r in held} == {linkedid: "open", leg["call_id"]: "open"}

    async def first_leg_settled() -> asyncpg.Record | None:
        return await db.fetchrow(
            "SELECT * FROM reservations WHERE call_id = $1 AND state = 'settled'", linkedid
        )

    first = await until("the transferor left (its leg settled)", first_leg_settled)
    during = api_ok(service.request("GET", f"/v1/calls/{linkedid}"))
    assert during["state"] != "ended" and account(service, tenant)["channels_in_use"] == 1

    result = await placed
    assert result.final_status == 200, result.message_log[-3000:]
    assert "BYE" not in result.received_requests  # the caller was put through, then hung up
    second = await until(
        "the transfer leg settled",
        lambda: db.fetchrow(
            "SELECT * FROM reservations WHERE call_id = $1 AND state = 'settled'", leg["call_id"]
        ),
    )
    # the extension: ~1 s + digits + 3 s + the consultation; the mobile: from its answer
    assert 8 <= first["billsec"] <= 16, first
    assert second["billsec"] >= 5 and second["charged"] > 0, second
    assert account(service, tenant)["channels_in_use"] == 0
    record = await db.fetchrow("SELECT * FROM call_transfers WHERE leg_call_id = $1", leg["call_id"])
    assert (record["kind"], record["transferor"], record["target"], record["reason"]) == (
        "attended",
        ext["endpoint_id"],
        target,
        "ROUTED",
    )


async def test_a_sip_refer_from_the_phone_transfers_like_a_blind_transfer(
    db: asyncpg.Connection,
    service: ServiceProcess,
    destination_carrier: SippUas,
    settings: Settings,
    transferring_phone: PhoneFactory,
) -> None:
    """The phone sends REFER (Refer-To the mobile) in the dialog: Asterisk accepts it (202),
    the caller goes to the mobile through the same decision, reserved and billed as its
    own leg on the one-channel package."""
    engine = engine_of(settings, "asterisk")
    tenant, number, ext, password, target = desk_and_mobile(service)
    refer_before = service.metric("softswitch_transfers_total", kind="refer", reason="ROUTED")
    tmp = Path(tempfile.mkdtemp(prefix="xfer-refer-"))
    host = engine.phones
    await transferring_phone(
        ext, password, transferring_scenario(tmp, talk_ms=2000, refer_to=f"{target}@{host}", leave_ms=4000)
    )
    caller = unique_caller()
    placed = asyncio.create_task(asyncio.to_thread(caller_holding, number, caller, 10000, engine))
    linkedid = (await live_call(service, caller))["linkedid"]

    async def transferred() -> dict[str, Any] | None:
        legs = api_ok(service.request("GET", f"/v1/calls/{linkedid}"))["transfers"]
        return legs[0] if legs and legs[0]["answered_at"] else None

    leg = await until("the REFER's target answered", transferred)
    assert leg["kind"] == "refer"
    assert account(service, tenant)["channels_in_use"] == 1
    result = await placed
    assert result.final_status == 200, result.message_log[-3000:]
    assert "BYE" not in result.received_requests
    record = await until(
        "the REFER's record",
        lambda: db.fetchrow("SELECT * FROM call_transfers WHERE leg_call_id = $1", leg["call_id"]),
    )
    assert (record["kind"], record["transferor"], record["target"], record["action"]) == (
        "refer",
        ext["endpoint_id"],
        target,
        "dial",
    )

    async def both_settled() -> list[asyncpg.Record] | None:
        rows = await db.fetch(
            "SELECT call_id, billsec FROM reservations WHERE call_id = ANY($1) AND state = 'settled'",
            [linkedid, leg["call_id"]],
        )
        return rows if len(rows) == 2 else None

    settled = {r["call_id"]: r["billsec"] for r in await until("both legs settled", both_settled)}
    assert settled[linkedid] >= 1 and settled[leg["call_id"]] >= 3, settled
    assert service.metric("softswitch_transfers_total", kind="refer", reason="ROUTED") == refer_before + 1
    assert account(service, tenant)["channels_in_use"] == 0


async def test_a_sip_refer_through_freeswitch_is_decided_reserved_and_billed_the_same(
    db: asyncpg.Connection,
    service: ServiceProcess,
    destination_carrier: SippUas,
    settings: Settings,
    stack: LocalStack,
    transferring_phone: PhoneFactory,
) -> None:
    """FreeSWITCH: the phone's REFER makes sofia transfer the caller into [ss-transfer],
    whose socket session is the control plane's transfer decision; the leg the phone
    answered is settled, the new one reserved on the one-channel package and billed."""
    require_freeswitch(stack)
    engine = engine_of(settings, "freeswitch")
    tenant, number, ext, password, target = desk_and_mobile(service)
    tmp = Path(tempfile.mkdtemp(prefix="xfer-fs-refer-"))
    scenario = transferring_scenario(tmp, talk_ms=2000, refer_to=f"{target}@{engine.phones}", leave_ms=4000)
    await transferring_phone(ext, password, scenario, "freeswitch")
    caller = unique_caller()
    placed = asyncio.create_task(asyncio.to_thread(caller_holding, number, caller, 10000, engine))
    linkedid = (await live_call(service, caller))["linkedid"]

    async def transferred() -> dict[str, Any] | None:
        legs = api_ok(service.request("GET", f"/v1/calls/{linkedid}"))["transfers"]
        return legs[0] if legs and legs[0]["answered_at"] else None

    leg = await until("the REFER's target answered", transferred)
    assert leg["kind"] == "refer"
    assert account(service, tenant)["channels_in_use"] == 1
    result = await placed
    assert result.final_status == 200, result.message_log[-3000:]
    assert "BYE" not in result.received_requests
    legs = await dialled_legs(db, linkedid, engine, expect=2)
    assert any(target in d and a for d, a in legs), legs
    record = await until(
        "the REFER's record",
        lambda: db.fetchrow("SELECT * FROM call_transfers WHERE leg_call_id = $1", leg["call_id"]),
    )
    assert (record["kind"], record["transferor"], record["target"], record["action"]) == (
        "refer",
        ext["endpoint_id"],
        target,
        "dial",
    )

    async def both_settled() -> list[asyncpg.Record] | None:
        rows = await db.fetch(
            "SELECT call_id, billsec FROM reservations WHERE call_id = ANY($1) AND state = 'settled'",
            [linkedid, leg["call_id"]],
        )
        return rows if len(rows) == 2 else None

    settled = {r["call_id"]: r["billsec"] for r in await until("both legs settled", both_settled)}
    assert settled[linkedid] >= 1 and settled[leg["call_id"]] >= 3, settled
    assert account(service, tenant)["channels_in_use"] == 0


async def test_the_carrier_s_caller_cannot_transfer(
    db: asyncpg.Connection,
    service: ServiceProcess,
    destination_carrier: SippUas,
    engine: Engine,
    transferring_phone: PhoneFactory,
) -> None:
    """The caller of an inbound call keys #1 and a number: Asterisk was not given the
    caller's transfer option (SS_TRANSFER 't' only), FreeSWITCH binds #1 to the answering
    party's digits only (the caller's peer digit machine), so nothing happens — the call stays
    between the caller and the extension, no transfer is decided or recorded."""
    _tenant, number, ext, password, target = desk_and_mobile(service)
    tmp = Path(tempfile.mkdtemp(prefix="xfer-caller-"))
    await transferring_phone(
        ext, password, transferring_scenario(tmp, talk_ms=500, leave_ms=15000), engine.name
    )
    caller = unique_caller()
    result = await asyncio.to_thread(
        run_uac,
        number,
        caller,
        dtmf=f"#1,{target}",
        dtmf_gap_ms=DIGIT_GAP_MS,
        hold_ms=5000,
        timeout_s=45,
        target=engine.carrier,
    )
    assert result.final_status == 200, result.message_log[-3000:]
    assert "BYE" not in result.received_requests  # the call stayed up until the caller left
    row = await until(
        "the call's record",
        lambda: db.fetchrow("SELECT * FROM calls WHERE caller = $1 AND ended_at IS NOT NULL", caller),
    )
    assert await db.fetchval("SELECT count(*) FROM call_transfers WHERE linkedid = $1", row["linkedid"]) == 0
    legs = await dialled_legs(db, row["linkedid"], engine, expect=1)
    assert not any(target in d for d, _ in legs), legs  # the mobile was never dialled
    recent = [
        c for c in api_ok(service.request("GET", "/v1/calls/recent")) if c["linkedid"] == row["linkedid"]
    ]
    assert recent and recent[0]["transfers"] == []
