"""Scenarios through the real engines that no other test drives (issue 19, item 4):

- the caller ID as the carrier receives it when a phone claims a number its tenant does
  not own: From and P-Asserted-Identity on the wire carry the tenant's own number, and the
  claimed one appears nowhere in the INVITE;
- trunk failover on 503: the first trunk of a prefix answers 503, the call goes out by
  the second (priority 2), the first got exactly one INVITE;
- a released number no longer routes; assigned to another tenant after its cool-down and
  activated, it routes to that tenant's destination;
- a holiday on a weekday closes, a make-up working day on a Saturday opens (clock pinned);
- the warning before a prepaid hard stop: RFC 4733 '#' events reach the caller's own RTP
  port in the last seconds of its last slice, then the network's BYE.

The number's life cycle and the time policy through Asterisk (see `asterisk`), the rest through both.

Each test has its tenants; the traced carriers are SIPp of their own on 127.0.0.13/14,
their trunks and routes removed at the module's end."""

from __future__ import annotations

import asyncio
import os
import random
import re
import secrets
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from scripts.devstack.process import ServiceProcess
from scripts.devstack.sipp import SippResult, SippUas, render_dtmf, run_uac
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
    ext_call,
    extension,
    mobile,
    outbound_row,
    unique_caller,
)
from tests.e2e.restarts import class_service, restarted_in_turn
from tests.e2e.test_internal_calls import SipMessage, SipTrace, identity
from tests.e2e.test_prepaid import SHORT_SLICES, settled_row
from tests.e2e.test_routing import call_row, dial_legs

pytestmark = pytest.mark.stack

ANSWERING_HOST = "127.0.0.13"  # a carrier that answers (uas_selective.xml), traced
CONGESTED_HOST = "127.0.0.14"  # a carrier that answers 503 to every INVITE, traced
CLI_PREFIX = "1390079"  # outside numbers leaving by the answering carrier
FAILOVER_PREFIX = "1390080"  # outside numbers: the congested carrier first, then the answering one


@pytest.fixture
def asterisk(settings: Settings, stack: LocalStack) -> Engine:
    """For the scenarios whose subject is the control plane's decision (the number's life
    cycle, the time policy), not the engine: they cost several seconds each (the API's
    life cycle, service restarts), and FreeSWITCH's side of the same answers (404 for a
    number not in service, CLOSED's announcement) is driven by test_call_path and
    test_routing already."""
    return engine_of(settings, "asterisk")


@dataclass
class TracedTrunk:
    name: str
    trace: SipTrace

    def invites(self, number: str) -> list[SipMessage]:
        return self.trace.invites(number)


@dataclass
class Carriers:
    answering: TracedTrunk
    congested: TracedTrunk


def _trunk(service: ServiceProcess, host: str, cleanup: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    name = f"scen-{os.getpid()}-{secrets.token_hex(2)}"
    trunk = changed(service, "POST", "/v1/trunks", json={"name": name, "host": host, "port": 5060})
    cleanup.append(("trunks", trunk))
    return trunk


@pytest.fixture(scope="module")
def carriers(service: ServiceProcess) -> Iterator[Carriers]:
    tmp = Path(tempfile.mkdtemp(prefix="scenario-carriers-"))
    cleanup: list[tuple[str, dict[str, Any]]] = []
    answering = TracedTrunk("", SipTrace(tmp / "answering.log"))
    congested = TracedTrunk("", SipTrace(tmp / "congested.log"))
    uas = [
        SippUas(
            "uas_selective.xml",
            local_ip=ANSWERING_HOST,
            extra=("-trace_msg", "-message_file", str(answering.trace.path)),
        ),
        SippUas(
            "uas_503.xml",
            local_ip=CONGESTED_HOST,
            extra=("-trace_msg", "-message_file", str(congested.trace.path)),
        ),
    ]
    try:
        good = _trunk(service, ANSWERING_HOST, cleanup)
        bad = _trunk(service, CONGESTED_HOST, cleanup)
        answering.name, congested.name = good["name"], bad["name"]
        for trunk, prefix, priority in (
            (good, CLI_PREFIX, 1),
            (bad, FAILOVER_PREFIX, 1),
            (good, FAILOVER_PREFIX, 2),
        ):
            route = changed(
                service,
                "POST",
                "/v1/trunk-routes",
                json={"trunk_id": trunk["id"], "prefix": prefix, "priority": priority},
            )
            cleanup.append(("trunk-routes", route))
        for u in uas:
            u.start()
        yield Carriers(answering, congested)
    finally:
        for u in uas:
            u.stop()
        for kind, row in reversed(cleanup):
            service.request("DELETE", f"/v1/{kind}/{row['id']}", headers={"If-Match": f'"{row["version"]}"'})


def outside(prefix: str) -> str:
    """An outside number under `prefix` that the answering carrier answers (not …98/…99)."""
    return (
        prefix + "".join(random.choices("0123456789", k=11 - len(prefix) - 2)) + f"{random.randrange(90):02d}"
    )


def calling_extension(service: ServiceProcess) -> tuple[int, str, dict[str, Any], str]:
    """(tenant, its own number, an extension of it, the extension's password)."""
    tenant, _number_id, number = active_number(service)
    password = f"pw-{secrets.token_hex(6)}"
    ext = extension(service, tenant, str(random.randint(6000, 6999)), "main", password)
    return tenant, number, ext, password


# ---------------------------------------------------------------------------- caller ID
async def test_a_claimed_foreign_number_reaches_the_carrier_as_the_tenants_own(
    db: asyncpg.Connection, service: ServiceProcess, carriers: Carriers, engine: Engine
) -> None:
    tenant, number, ext, password = calling_extension(service)
    called = outside(CLI_PREFIX)
    claimed = unique_caller()  # a number the tenant does not own, in the phone's P-Asserted-Identity

    result = ext_call(ext, password, called, claimed, engine.phones)

    assert result.final_status == 200, result.message_log[-2000:]
    (invite,) = await carriers.answering.trace.wait_for(
        "the INVITE at the carrier",
        lambda m: m.direction == "received" and m.start_line.startswith(f"INVITE sip:{called}@"),
    )
    for header in ("From", "P-Asserted-Identity"):
        values = invite.headers(header)
        assert values, f"no {header} at the carrier:\n{invite.text}"
        for value in values:
            assert identity(value) == ("", number), f"{header}: {value}"
    # Nowhere in the INVITE (any header, the SDP): not the claimed number, not the extension.
    assert claimed not in invite.text, invite.text
    assert ext["endpoint_id"] not in invite.text, invite.text
    row = await outbound_row(db, claimed)
    assert (row["tenant_id"], row["reason"], row["caller_id_shown"], row["why"]) == (
        tenant,
        "ROUTED",
        number,
        "outbound+cli_replaced",
    )


# ---------------------------------------------------------------------------- failover
async def test_a_503_from_the_first_trunk_fails_over_to_the_second(
    db: asyncpg.Connection, service: ServiceProcess, carriers: Carriers, engine: Engine
) -> None:
    tenant, number, ext, password = calling_extension(service)
    called = outside(FAILOVER_PREFIX)
    presented = unique_caller()

    result = ext_call(ext, password, called, presented, engine.phones)

    assert result.final_status == 200, result.message_log[-2000:]
    (answered,) = await carriers.answering.trace.wait_for(
        "the INVITE at the second trunk",
        lambda m: m.direction == "received" and m.start_line.startswith(f"INVITE sip:{called}@"),
    )
    assert [identity(v) for v in answered.headers("P-Asserted-Identity")] == [("", number)], answered.text
    congested = carriers.congested.invites(called)
    assert len(congested) == 1, [m.start_line for m in congested]
    # (SipTrace reads received messages only: SIPp writes the ones it sends another way.)
    assert "SIP/2.0 503 Service Unavailable" in carriers.congested.trace.path.read_text(), "no 503 sent"
    row = await outbound_row(db, presented)
    assert (row["tenant_id"], row["reason"], row["called"]) == (tenant, "ROUTED", called), dict(row)
    # Which trunk carried it, by the engine's own records: the first leg (the 503 trunk)
    # not answered, the second (the answering trunk) answered.
    if engine.is_asterisk:
        legs = await dial_legs(db, row["linkedid"])
        assert [(d.split(",")[0], disposition == "ANSWERED") for d, disposition in legs] == [
            (f"PJSIP/{called}@trunk-{carriers.congested.name}", False),
            (f"PJSIP/{called}@trunk-{carriers.answering.name}", True),
        ], legs
    else:
        fs_legs = await dialled_legs(db, row["linkedid"], engine, expect=2)
        assert fs_legs == [(called, False), (called, True)], fs_legs


# ---------------------------------------------------------------------------- number life cycle
def take_number_live(service: ServiceProcess, tenant: int, number: str) -> int:
    """Assign `number` to `tenant` and take it to active (documents approved), funded."""
    base = f"/v1/tenants/{tenant}"
    number_id = api_ok(
        service.request("POST", f"{base}/numbers", json={"number": number, "kind": "unified_400"}), 201
    )["id"]
    api_ok(service.request("POST", f"{base}/numbers/{number_id}/submit"))
    for doc in api_ok(service.request("GET", f"{base}/documents"))["items"]:
        api_ok(
            service.request(
                "PATCH",
                f"{base}/documents/{doc['id']}",
                json={"status": "approved"},
                headers={"If-Match": f'"{doc["version"]}"'},
            )
        )
    changed(service, "POST", f"{base}/numbers/{number_id}/approve")
    api_ok(
        service.request(
            "POST",
            f"{base}/recharges",
            json={"amount": "100.00", "reference": "e2e"},
            headers={"Idempotency-Key": f"e2e-fund-{tenant}"},
        ),
        201,
    )
    return int(number_id)


def bind(service: ServiceProcess, tenant: int, number_id: int, dest: str) -> None:
    changed(
        service,
        "POST",
        f"/v1/tenants/{tenant}/bindings",
        json={"number_id": number_id, "destination": dest, **OWNER},
    )


def inbound(number: str, caller: str, engine: Engine) -> SippResult:
    return run_uac(number, caller, hold_ms=200, timeout_s=30, target=engine.carrier)


async def test_a_released_number_stops_routing_and_routes_to_its_next_tenant(
    db: asyncpg.Connection, service: ServiceProcess, destination_carrier: SippUas, asterisk: Engine
) -> None:
    engine = asterisk
    first, number_id, number = active_number(service)
    bind(service, first, number_id, mobile())
    before = unique_caller()
    assert inbound(number, before, engine).final_status == 200
    assert (await call_row(db, before))["tenant_id"] == first

    released = changed(service, "POST", f"/v1/tenants/{first}/numbers/{number_id}/release")
    assert (released["state"], released["tenant_id"]) == ("released", None), released
    gone = unique_caller()
    refused = inbound(number, gone, engine)
    assert refused.final_status == 404, refused.message_log[-1500:]  # Q.850 1: not in service
    row = await call_row(db, gone)
    assert (row["reason"], row["tenant_id"], list(row["destinations"] or [])) == (
        "NUMBER_NOT_ACTIVE",
        None,
        [],
    ), dict(row)

    second = api_ok(
        service.request("POST", "/v1/tenants", json={"name": f"e2e next {secrets.token_hex(4)}"}), 201
    )["id"]
    cooling = service.request(
        "POST", f"/v1/tenants/{second}/numbers", json={"number": number, "kind": "unified_400"}
    )
    assert cooling.status_code == 409 and "cooling down" in cooling.text, cooling.text
    # The cool-down (90 days) ends now: by SQL, as if it had passed.
    await db.execute(
        "UPDATE numbers SET available_after = now() - interval '1 minute' WHERE id = $1", number_id
    )
    again = take_number_live(service, second, number)
    assert again == number_id  # the same row, reassigned
    dest = mobile()
    bind(service, second, number_id, dest)
    after = unique_caller()
    assert inbound(number, after, engine).final_status == 200
    row = await call_row(db, after)
    assert (row["tenant_id"], row["reason"], list(row["destinations"])) == (second, "ROUTED", [dest]), dict(
        row
    )


# ---------------------------------------------------------------------------- holidays
async def test_a_weekday_holiday_closes_and_a_makeup_saturday_opens(
    db: asyncpg.Connection, service: ServiceProcess, destination_carrier: SippUas, asterisk: Engine
) -> None:
    engine = asterisk
    tenant, number_id, number = active_number(service)
    dest = mobile()
    bind(service, tenant, number_id, dest)
    policy = changed(
        service,
        "POST",
        f"/v1/tenants/{tenant}/time-policies",
        json={
            "name": "office",
            "definition": {
                "weekly": [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "18:00"}],
                "holidays": [{"date": "2026-10-02", "name": "国庆节"}],  # a Friday
                "workdays": [{"date": "2026-10-10", "as": "fri"}],  # a Saturday worked instead
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
    # the clock pinned to each day in turn (the usual service back once, after)
    with restarted_in_turn(service) as pinned:
        pinned(SOFTSWITCH_FIXED_NOW="2026-10-02T10:00:00+08:00")
        caller = unique_caller()
        closed = inbound(number, caller, engine)
        row = await call_row(db, caller)
        assert (row["reason"], row["why"]) == ("CLOSED", "holiday: 2026-10-02 国庆节"), dict(row)
        assert closed.final_status is not None and closed.final_status >= 400, closed.message_log[-1500:]
        # The caller hears the closed announcement as early media before the refusal.
        assert 183 in closed.statuses, closed.statuses
        pinned(SOFTSWITCH_FIXED_NOW="2026-10-10T10:00:00+08:00")
        caller = unique_caller()
        opened = inbound(number, caller, engine)
        assert opened.final_status == 200, opened.message_log[-1500:]
        row = await call_row(db, caller)
        assert (row["reason"], row["why"], list(row["destinations"])) == (
            "ROUTED",
            "makeup_workday",
            [dest],
        ), dict(row)


# ---------------------------------------------------------------------------- prepaid warning
_TRACE_LINE = re.compile(
    r"^-{20,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\n[^\n]*received[^\n]*\n\s*\n([^\r\n]+)", re.M
)


@dataclass(frozen=True)
class RtpPacket:
    at: float  # epoch seconds it arrived
    payload_type: int
    payload: bytes


class MediaPort:
    """The caller's RTP port: a UDP socket of the test's own, named in the caller's SDP,
    keeping every packet the engine sends there with the time it arrived."""

    def __init__(self, host: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.packets: list[RtpPacket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(2048)
            except TimeoutError:
                continue
            if len(data) >= 12 and data[0] >> 6 == 2:  # RTP version 2
                self.packets.append(RtpPacket(time.time(), data[1] & 0x7F, data[12:]))

    def __enter__(self) -> MediaPort:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def received_at(message_log: str, start: str) -> list[float]:
    """When the caller's SIPp received each message whose start line begins with `start`."""
    return [
        datetime.strptime(when, "%Y-%m-%d %H:%M:%S.%f").timestamp()
        for when, first in _TRACE_LINE.findall(message_log)
        if first.startswith(start)
    ]


short_slices = class_service(**SHORT_SLICES)


class TestWarningTone:
    """Both engines' runs on one service restarted with SHORT_SLICES."""

    async def test_the_caller_hears_the_warning_tone_before_the_prepaid_hard_stop(
        self,
        db: asyncpg.Connection,
        short_slices: ServiceProcess,
        destination_carrier: SippUas,
        engine: Engine,
    ) -> None:
        svc = short_slices
        tenant, number_id, number = active_number(svc)
        bind(svc, tenant, number_id, mobile())  # live in the running service's snapshot on return
        # SHORT_SLICES: 6 s slices renewed 3 s before they end, the warning 2 s before the cut.
        # 0.12/min billed 6/6: 0.01 pays for one 6 s slice and no more: the renewal 3 s in is
        # refused, the warning comes 2 s before the cut, the cut at 6 s.
        await db.execute(
            "UPDATE accounts SET balance = 0.01, first_increment_s = 6, increment_s = 6 WHERE tenant_id = $1",
            tenant,
        )
        caller = unique_caller()
        scenario = Path(tempfile.mkdtemp(prefix="warned-caller-")) / "caller.xml"
        with MediaPort("127.0.0.2") as media:
            text = render_dtmf("", hold_ms=30000)
            assert "m=audio [media_port] " in text
            scenario.write_text(text.replace("m=audio [media_port] ", f"m=audio {media.port} "))
            result = await asyncio.to_thread(
                run_uac,
                number,
                caller,
                scenario=str(scenario),
                hold_ms=30000,
                timeout_s=40,
                target=engine.carrier,
            )
            row = await settled_row(db, caller)

        assert result.final_status == 200, result.message_log[-1500:]
        (answered_at,) = received_at(result.message_log, "SIP/2.0 200")[:1]
        byes = received_at(result.message_log, "BYE")
        assert byes, "the network did not hang up: " + result.message_log[-1500:]
        cut_at = byes[0]
        assert row["final_reason"] == "BALANCE_EXHAUSTED", dict(row)
        assert 4 <= cut_at - answered_at <= 8, cut_at - answered_at
        # The tone: RFC 4733 '#' events (event code 11) in the warning window, none before it.
        tones = [p for p in media.packets if p.payload_type == 101 and p.payload[:1] == b"\x0b"]
        heard = [(p.payload_type, p.payload[:4]) for p in media.packets][:20]
        assert tones, f"no '#' event reached the caller: {heard}"
        assert 0.3 <= cut_at - tones[0].at <= 3.5, (cut_at - tones[0].at, tones[0].at - answered_at)
        assert tones[0].at - answered_at >= 2.5, "the tone came before the last slice's warning window"
