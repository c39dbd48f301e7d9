"""What the click-to-dial tests (tests/e2e/test_click_to_dial.py, the portal's
tests/e2e/portal/test_customers.py) share: a funded enterprise with an extension, the
agent's SIP phone (SIPp, registered as that extension: it rings, answers, talks, hangs up)
and a traced carrier trunk standing for the customer's side (SIPp, the destination
carrier's scenario on another port, its messages written to a file so the test reads
what the customer's network received: the called number, From and P-Asserted-Identity).

A carrier of our own rather than the session's destination carrier (127.0.0.3:5060):
that one keeps no message trace, and the caller ID the customer sees is what is tested."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from scripts.devstack.process import ServiceProcess
from scripts.devstack.sipp import SCENARIOS, SippUas, phone_args
from tests.e2e.conftest import active_number, api_ok, changed
from tests.e2e.test_internal_calls import SipMessage, SipTrace, identity

CARRIER_HOST, CARRIER_PORT = "127.0.0.3", 5064
# Customers' numbers with this prefix leave through the traced carrier (longest prefix).
CUSTOMER_PREFIX = "1390078"
AGENT_IP, AGENT_PORT = "127.0.0.8", 5074

# The agent's phone, for calls to it (SIPp -oocsf): rings @@RING_MS@@, answers, talks
# @@TALK_MS@@ and hangs up (BYE from the phone, as a user putting the handset down).
AGENT_SCENARIO = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="agent answers, talks, hangs up">
  <recv request="INVITE" crlf="true" rrs="true">
    <action>
      <ereg regexp="&lt;sip:.*" search_in="hdr" header="From:" check_it="true" assign_to="remote"/>
      <ereg regexp="&lt;sip:[^&gt;]*&gt;" search_in="hdr" header="To:" check_it="true" assign_to="me"/>
    </action>
  </recv>
  <send>
    <![CDATA[
      SIP/2.0 180 Ringing
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0
    ]]>
  </send>
  <pause milliseconds="@@RING_MS@@"/>
  <send retrans="500">
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000
    ]]>
  </send>
  <recv request="ACK" crlf="true"/>
  <pause milliseconds="@@TALK_MS@@"/>
  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: [$me];tag=[pid]SIPpTag01[call_number]
      To: [$remote]
      Call-ID: [call_id]
      CSeq: 1 BYE
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="200"/>
</scenario>
"""


@dataclass
class Enterprise:
    tenant_id: int
    number_id: int
    number: str  # its active 400 number: the caller ID its calls out present
    extension: dict[str, Any]
    password: str

    @property
    def base(self) -> str:
        return f"/v1/tenants/{self.tenant_id}"


def enterprise(service: ServiceProcess, tenant: tuple[int, int, str] | None = None) -> Enterprise:
    """A funded enterprise (the API's active_number, or the one given) with a new extension."""
    tenant_id, number_id, number = tenant or active_number(service)
    password = f"pw-{secrets.token_hex(6)}"
    for _ in range(5):
        ext = str(random.randint(7000, 7999))
        resp = service.request(
            "POST",
            f"/v1/tenants/{tenant_id}/extensions",
            json={"extension": ext, "display_name": "Agent", "password": password},
        )
        if resp.status_code != 409:
            break
    row = api_ok(resp, 201)
    return Enterprise(tenant_id, number_id, number, row, password)


def customer_number() -> str:
    """A customer's mobile that the traced carrier answers (not ending in 98/99)."""
    return CUSTOMER_PREFIX + "".join(random.choices("0123456789", k=2)) + f"{random.randrange(90):02d}"


@dataclass
class Carrier:
    trace: SipTrace

    async def invite_for(self, number: str, budget: float = 15.0) -> SipMessage:
        (invite, *_) = await self.trace.wait_for(
            f"the carrier's INVITE for {number}",
            lambda m: m.direction == "received" and m.start_line.startswith(f"INVITE sip:{number}@"),
            budget,
        )
        return invite


@contextlib.contextmanager
def traced_carrier(service: ServiceProcess) -> Iterator[Carrier]:
    """A carrier trunk at CARRIER_HOST:CARRIER_PORT, its messages traced; customers'
    numbers starting with CUSTOMER_PREFIX leave through it."""
    tmp = Path(tempfile.mkdtemp(prefix="c2d-carrier-"))
    trace = SipTrace(tmp / "messages.log")
    trunk = changed(
        service,
        "POST",
        "/v1/trunks",
        json={
            "name": f"c2d-{os.getpid()}-{secrets.token_hex(2)}",
            "host": CARRIER_HOST,
            "port": CARRIER_PORT,
        },
    )
    route = changed(
        service,
        "POST",
        "/v1/trunk-routes",
        json={"trunk_id": trunk["id"], "prefix": CUSTOMER_PREFIX, "priority": 1},
    )
    uas = SippUas(
        "uas_selective.xml",
        local_ip=CARRIER_HOST,
        port=CARRIER_PORT,
        extra=("-trace_msg", "-message_file", str(trace.path)),
    )
    try:
        with uas:
            yield Carrier(trace)
    finally:
        service.request(
            "DELETE", f"/v1/trunk-routes/{route['id']}", headers={"If-Match": f'"{route["version"]}"'}
        )
        service.request("DELETE", f"/v1/trunks/{trunk['id']}", headers={"If-Match": f'"{trunk["version"]}"'})


@dataclass
class AgentPhone:
    endpoint_id: str
    trace: SipTrace

    def invites(self) -> list[SipMessage]:
        return self.trace.invites()

    async def wait_rung(self, budget: float = 10.0) -> SipMessage:
        (invite, *_) = await self.trace.wait_for(
            "the INVITE at the agent's phone",
            lambda m: m.direction == "received" and m.start_line.startswith("INVITE "),
            budget,
        )
        return invite


@contextlib.contextmanager
def agent_phone(
    ext: dict[str, Any],
    password: str,
    ring_ms: int = 1500,
    talk_ms: int = 2500,
    target: str = "127.0.0.1:5060",
) -> Iterator[AgentPhone]:
    """The extension's SIP phone, registered on Asterisk until the block ends; a call to it
    rings `ring_ms`, is answered, lasts `talk_ms` and is hung up by the phone."""
    tmp = Path(tempfile.mkdtemp(prefix="c2d-agent-"))
    scenario = tmp / "agent.xml"
    scenario.write_text(
        AGENT_SCENARIO.replace("@@RING_MS@@", str(ring_ms)).replace("@@TALK_MS@@", str(talk_ms))
    )
    register = tmp / "register.xml"
    text = (SCENARIOS / "uas_phone.xml").read_text()
    assert '<pause milliseconds="20000"/>' in text
    register.write_text(text.replace('<pause milliseconds="20000"/>', '<pause milliseconds="120000"/>'))
    trace = SipTrace(tmp / "messages.log")
    uas = SippUas(
        str(register),
        local_ip=AGENT_IP,
        port=AGENT_PORT,
        # target: the engine the phone registers on (Asterisk by default)
        extra=phone_args(ext["endpoint_id"], password, scenario, target, trace.path),
    )
    with uas:
        phone = AgentPhone(ext["endpoint_id"], trace)
        deadline = time.monotonic() + 10
        while not any(
            m.direction == "received"
            and m.start_line.startswith("SIP/2.0 200")
            and any("REGISTER" in v for v in m.headers("CSeq"))
            for m in trace.messages()
        ):
            assert time.monotonic() < deadline, f"the agent's phone did not register: {trace.path}"
            time.sleep(0.05)
        yield phone


def wait_state(
    service: ServiceProcess, ent: Enterprise, call_id: str, states: set[str], budget: float = 20.0
) -> dict[str, Any]:
    """The click-to-dial call's state by the API, once it is one of `states`."""
    deadline = time.monotonic() + budget
    while True:
        state = api_ok(service.request("GET", f"{ent.base}/click-to-dial/{call_id}"))
        if state["state"] in states:
            return state
        assert time.monotonic() < deadline, f"click-to-dial {call_id} still {state} after {budget} s"
        time.sleep(0.05)


async def settled_record(db: asyncpg.Connection, call_id: str, budget: float = 15.0) -> asyncpg.Record:
    """The call record of `call_id` once it is ended and settled."""
    deadline = time.monotonic() + budget
    while True:
        row = await db.fetchrow("SELECT * FROM calls WHERE linkedid = $1", call_id)
        if row is not None and row["ended_at"] is not None and row["settled_at"] is not None:
            return row
        assert time.monotonic() < deadline, f"call {call_id} not ended and settled: {row and dict(row)}"
        await asyncio.sleep(0.02)


__all__ = ["identity"]
