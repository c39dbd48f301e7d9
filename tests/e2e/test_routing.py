"""Routing through the real Asterisk: blacklist, time policy (clock injected), region
policy, sequential failover, ring-all, PIN by RFC 2833 DTMF, extension to extension, and
outbound caller ID. Everything is provisioned through the service's API."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from scripts.devstack.process import ServiceProcess
from scripts.devstack.sipp import SCENARIOS, SippResult, SippUas, phone_args, run_uac
from scripts.devstack.stack import LocalStack
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
from tests.e2e.hangup import ended_when, live_call
from tests.e2e.restarts import restarted_in_turn
from tests.e2e.test_internal_calls import SipTrace, register_accepted

pytestmark = pytest.mark.stack

SHANGHAI_MOBILE = "13917001234"
BEIJING_FIXED = "01062345678"


def bind(service: ServiceProcess, tenant: int, number_id: int, dest: str, **kw: Any) -> dict[str, Any]:
    body = {"number_id": number_id, "destination": dest, **OWNER, **kw}
    return changed(service, "POST", f"/v1/tenants/{tenant}/bindings", json=body)


async def call_row(db: asyncpg.Connection, caller: str, *, direction: str = "inbound") -> asyncpg.Record:
    deadline = time.monotonic() + 5
    while True:
        row = await db.fetchrow(
            "SELECT * FROM calls WHERE caller = $1 AND direction = $2 ORDER BY id DESC LIMIT 1",
            caller,
            direction,
        )
        if row is not None or time.monotonic() > deadline:
            assert row is not None, f"no call record for {caller}"
            return row
        await asyncio.sleep(0.02)


async def dial_legs(db: asyncpg.Connection, linkedid: str, expect: int = 2) -> list[tuple[str, str]]:
    """(what Asterisk dialled, disposition) for each outgoing leg of a call, from its CDRs,
    once `expect` of them are written (each when its leg ends), or after 5 s."""
    deadline = time.monotonic() + 5
    while True:
        rows = await db.fetch(
            "SELECT lastdata, disposition FROM cdr WHERE linkedid = $1 AND lastapp = 'Dial' ORDER BY id",
            linkedid,
        )
        if len(rows) >= expect or time.monotonic() > deadline:
            return [(r["lastdata"], r["disposition"]) for r in rows]
        await asyncio.sleep(0.02)


def call(number: str, caller: str, *, target: str, **kw: Any) -> SippResult:
    return run_uac(number, caller, timeout_s=40, target=target, **kw)


async def test_blacklisted_caller_is_refused(
    db: asyncpg.Connection, service: ServiceProcess, destination_carrier: SippUas, engine: Engine
) -> None:
    tenant, number_id, number = active_number(service)
    bind(service, tenant, number_id, mobile())
    caller = unique_caller()
    changed(
        service,
        "POST",
        f"/v1/tenants/{tenant}/blacklist",
        json={"pattern": caller[:7], "match_kind": "prefix"},
    )
    result = call(number, caller, target=engine.carrier)
    assert result.final_status == 403, result.message_log[-1500:]
    assert (await call_row(db, caller))["reason"] == "BLACKLISTED"
    other = unique_caller()
    assert (
        call(number, "13" + other[2:], hold_ms=200, target=engine.carrier).final_status == 200
    )  # not on the list


async def test_time_policy_sends_out_of_hours_calls_to_the_night_group(
    db: asyncpg.Connection, service: ServiceProcess, destination_carrier: SippUas, engine: Engine
) -> None:
    tenant, number_id, number = active_number(service)
    day, night = mobile(), mobile()
    bind(service, tenant, number_id, day)
    bind(service, tenant, number_id, night, group_name="night")
    policy = changed(
        service,
        "POST",
        f"/v1/tenants/{tenant}/time-policies",
        json={
            "name": "office",
            "definition": {
                "weekly": [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "18:00"}],
                "default": {"kind": "group", "ref": "night"},
            },
        },
    )
    routing = api_ok(service.request("GET", f"/v1/tenants/{tenant}/numbers/{number_id}"))
    changed(
        service,
        "PATCH",
        f"/v1/tenants/{tenant}/numbers/{number_id}",
        json={"time_policy_id": policy["id"]},
        headers={"If-Match": f'"{routing["version"]}"'},
    )
    # the clock pinned at each moment in turn (the usual service back once, after)
    with restarted_in_turn(service) as pinned:
        for when, expected, why in (
            ("2026-11-23T22:30:00+08:00", night, "outside_hours"),  # Monday evening in Shanghai
            ("2026-11-23T10:00:00+08:00", day, "weekly"),
        ):
            pinned(SOFTSWITCH_FIXED_NOW=when)
            caller = unique_caller()
            assert call(number, caller, hold_ms=200, target=engine.carrier).final_status == 200
            row = await call_row(db, caller)
            assert (list(row["destinations"]), row["why"]) == ([expected], why)


async def test_holiday_and_after_hours_closures_are_told_apart_in_the_record(
    db: asyncpg.Connection, service: ServiceProcess, destination_carrier: SippUas, engine: Engine
) -> None:
    """Issue 11, item 5: both are CLOSED, and the record's why says which rule closed it."""
    tenant, number_id, number = active_number(service)
    bind(service, tenant, number_id, mobile())
    policy = changed(
        service,
        "POST",
        f"/v1/tenants/{tenant}/time-policies",
        json={
            "name": "office",
            "definition": {
                "weekly": [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "18:00"}],
                "holidays": [{"date": "2026-10-01", "name": "国庆节"}],
            },
        },
    )
    routing = api_ok(service.request("GET", f"/v1/tenants/{tenant}/numbers/{number_id}"))
    changed(
        service,
        "PATCH",
        f"/v1/tenants/{tenant}/numbers/{number_id}",
        json={"time_policy_id": policy["id"]},
        headers={"If-Match": f'"{routing["version"]}"'},
    )
    # the clock pinned at each moment in turn (the usual service back once, after)
    with restarted_in_turn(service) as pinned:
        for when, why in (
            ("2026-10-01T10:00:00+08:00", "holiday: 2026-10-01 国庆节"),  # a Thursday, office hours
            ("2026-11-23T22:30:00+08:00", "after hours: mon 09:00-18:00"),  # Monday evening
        ):
            pinned(SOFTSWITCH_FIXED_NOW=when)
            caller = unique_caller()
            call(number, caller, hold_ms=200, target=engine.carrier)
            row = await call_row(db, caller)
            assert (row["reason"], row["why"]) == ("CLOSED", why)


async def test_region_policy_routes_shanghai_mobiles_to_the_shanghai_group(
    db: asyncpg.Connection, service: ServiceProcess, destination_carrier: SippUas, engine: Engine
) -> None:
    tenant, number_id, number = active_number(service)
    default, shanghai = mobile(), mobile()
    bind(service, tenant, number_id, default)
    bind(service, tenant, number_id, shanghai, group_name="shanghai")
    policy = changed(
        service,
        "POST",
        f"/v1/tenants/{tenant}/region-policies",
        json={
            "name": "east",
            "definition": {"rules": [{"province": "上海", "group": "shanghai"}], "unknown": "allow"},
        },
    )
    routing = api_ok(service.request("GET", f"/v1/tenants/{tenant}/numbers/{number_id}"))
    changed(
        service,
        "PATCH",
        f"/v1/tenants/{tenant}/numbers/{number_id}",
        json={"region_policy_id": policy["id"]},
        headers={"If-Match": f'"{routing["version"]}"'},
    )
    for caller, expected in ((SHANGHAI_MOBILE, shanghai), (BEIJING_FIXED, default)):
        assert call(number, caller, hold_ms=200, target=engine.carrier).final_status == 200
        row = await call_row(db, caller)
        assert list(row["destinations"]) == [expected], caller


async def test_sequential_failover_when_the_first_destination_does_not_answer(
    db: asyncpg.Connection,
    service: ServiceProcess,
    destination_carrier: SippUas,
    engine: Engine,
) -> None:
    tenant, number_id, number = active_number(service)
    silent, answers = mobile("99"), mobile()
    bind(service, tenant, number_id, silent, ring_timeout_s=5, position=0)
    bind(service, tenant, number_id, answers, position=1)
    caller = unique_caller()
    result = call(number, caller, hold_ms=300, target=engine.carrier)
    assert result.final_status == 200, result.message_log[-1500:]
    assert result.seconds > 5  # the first destination rang out its 5 s
    row = await call_row(db, caller)
    if not engine.is_asterisk:
        legs_fs = await dialled_legs(db, row["linkedid"], engine, expect=2)
        assert legs_fs == [(silent, False), (answers, True)]
        return
    legs = await dial_legs(db, row["linkedid"])
    assert [(silent in d, answers in d, disp) for d, disp in legs] == [
        (True, False, "NO ANSWER"),
        (False, True, "ANSWERED"),
    ]


async def test_ring_all_the_second_destination_answers(
    db: asyncpg.Connection,
    service: ServiceProcess,
    destination_carrier: SippUas,
    engine: Engine,
) -> None:
    tenant, number_id, number = active_number(service)
    silent, answers = mobile("99"), mobile()
    bind(service, tenant, number_id, silent, ring_timeout_s=20)
    bind(service, tenant, number_id, answers, ring_timeout_s=20)
    routing = api_ok(service.request("GET", f"/v1/tenants/{tenant}/numbers/{number_id}"))
    changed(
        service,
        "PATCH",
        f"/v1/tenants/{tenant}/numbers/{number_id}",
        json={"distribution": "simultaneous"},
        headers={"If-Match": f'"{routing["version"]}"'},
    )
    caller = unique_caller()
    result = call(number, caller, hold_ms=300, target=engine.carrier)
    assert result.final_status == 200
    assert result.seconds < 5  # answered by the second while the first still rang
    row = await call_row(db, caller)
    if not engine.is_asterisk:
        legs_fs = await dialled_legs(db, row["linkedid"], engine, expect=2)
        assert sorted(legs_fs) == sorted([(silent, False), (answers, True)])
        return
    legs = await dial_legs(db, row["linkedid"])
    # One Dial rang both at once: each leg has its CDR with the same two-destination string.
    assert all(silent in d and answers in d and "&" in d for d, _ in legs)
    assert sorted(disp for _, disp in legs) == ["ANSWERED", "NO ANSWER"]


async def test_pin_accepted_and_refused_by_rfc2833_dtmf(
    db: asyncpg.Connection,
    service: ServiceProcess,
    destination_carrier: SippUas,
    engine: Engine,
    stack: LocalStack,
) -> None:
    tenant, number_id, number = active_number(service)
    bind(service, tenant, number_id, mobile())
    changed(
        service,
        "POST",
        f"/v1/tenants/{tenant}/pins",
        json={"number_id": number_id, "pin": "2468", "max_attempts": 1},
    )
    good = unique_caller()
    placed = asyncio.create_task(
        asyncio.to_thread(call, number, good, dtmf="2468#", hold_ms=1500, target=engine.carrier)
    )

    async def put_through() -> str | None:  # the PIN taken, the destination answered
        live = live_call(service, good, "bridged")
        return live["linkedid"] if live else None

    ok = await ended_when(placed, put_through, stack, engine, budget=10)
    assert ok.final_status == 200, ok.message_log[-1500:]
    assert (await call_row(db, good))["reason"] == "ROUTED"
    bad = unique_caller()
    refused = call(number, bad, dtmf="1111#", hold_ms=8000, target=engine.carrier)
    # The engine hung up on the wrong PIN: a BYE reached the caller (not only its own).
    assert "BYE" in refused.received_requests, refused.message_log[-1500:]
    assert (await call_row(db, bad))["reason"] == "PIN_FAILED"


async def test_extension_to_extension_across_sites(
    db: asyncpg.Connection, service: ServiceProcess, engine: Engine
) -> None:
    tenant, _number_id, _number = active_number(service)
    pw_a, pw_b = "alpha-secret-1", "bravo-secret-2"
    a = extension(service, tenant, "801", "shanghai-hq", pw_a)
    b = extension(service, tenant, "802", "beijing-branch", pw_b)
    # Phone B registers as extension 802 and answers calls to it (out-of-call scenario).
    trace = Path(tempfile.mkdtemp(prefix="phone-")) / "messages.log"
    phone_b = SippUas(
        "uas_phone.xml",
        local_ip="127.0.0.6",
        port=5070,
        ring_ms=200,
        extra=phone_args(b["endpoint_id"], pw_b, SCENARIOS / "uas_answer.xml", engine.phones, trace),
    )
    with phone_b:
        await SipTrace(trace).wait_for("phone B's registration accepted", register_accepted)
        result = ext_call(a, pw_a, "802", a["endpoint_id"], engine.phones)
    assert result.final_status == 200, result.message_log[-1500:]
    row = await call_row(db, a["endpoint_id"], direction="internal")
    assert (list(row["destinations"]), row["caller_id_shown"]) == ([b["endpoint_id"]], "801")


async def test_outbound_caller_id_must_be_the_tenants(
    db: asyncpg.Connection, service: ServiceProcess, destination_carrier: SippUas, engine: Engine
) -> None:
    tenant, _number_id, number = active_number(service)
    pw = "charlie-secret-3"
    a = extension(service, tenant, "803", "main", pw)
    carrier_trunk(service)
    outside = mobile()
    replaced = ext_call(a, pw, outside, "13999999999", engine.phones)  # a number the tenant does not own
    assert replaced.final_status == 200, replaced.message_log[-1500:]
    row = await call_row(db, "13999999999", direction="outbound")
    assert (row["reason"], row["caller_id_shown"], row["why"]) == ("ROUTED", number, "outbound+cli_replaced")

    tenant_row = api_ok(service.request("GET", f"/v1/tenants/{tenant}"))
    changed(
        service,
        "PATCH",
        f"/v1/tenants/{tenant}",
        json={"outbound_cli_policy": "refuse"},
        headers={"If-Match": f'"{tenant_row["version"]}"'},
    )
    refused = ext_call(a, pw, outside, "13988888888", engine.phones)
    assert refused.final_status == 403
    assert (await call_row(db, "13988888888", direction="outbound"))["reason"] == "CALLER_ID_NOT_OWNED"


async def test_nobody_answers_the_caller_is_released_and_a_missed_call_notice_is_written(
    db: asyncpg.Connection, service: ServiceProcess, destination_carrier: SippUas, engine: Engine
) -> None:
    tenant, number_id, number = active_number(service)
    bind(service, tenant, number_id, mobile("99"), ring_timeout_s=5)
    caller = unique_caller()
    result = call(number, caller, target=engine.carrier)
    assert result.final_status == 480, result.message_log[-1500:]  # Q.850 19: no answer
    row = await call_row(db, caller)
    deadline = time.monotonic() + 5
    notice = None
    while notice is None and time.monotonic() < deadline:
        notice = await db.fetchrow(
            "SELECT * FROM outbox WHERE kind = 'missed_call' AND dedupe_key = $1", row["linkedid"]
        )
        await asyncio.sleep(0.02)
    assert notice is not None and notice["tenant_id"] == tenant
    payload = (
        notice["payload"]
        if isinstance(notice["payload"], dict)
        else __import__("json").loads(notice["payload"])
    )
    assert payload["caller"] == caller and payload["called"] == number
    if not engine.is_asterisk:
        return
    cdr = await db.fetchrow("SELECT * FROM cdr WHERE linkedid = $1 AND lastapp = 'Hangup'", row["linkedid"])
    assert cdr is not None and cdr["userfield"] == "ALL_DESTINATIONS_FAILED"
