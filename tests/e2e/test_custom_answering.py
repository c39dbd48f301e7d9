"""Custom answering (issue 13, item 4), on both engines: a unified number with a greeting
answers the caller and plays it before anything rings, and with caller-ID mode
"unified" the bound destination sees the 400 number, not the caller's. Observed at both
ends of the call: the caller's SIPp and a traced destination carrier."""

from __future__ import annotations

import asyncio
import contextlib
import re
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from scripts.devstack.process import ServiceProcess
from scripts.devstack.sipp import SippUas, run_uac
from scripts.devstack.stack import LocalStack
from tests.e2e.conftest import OWNER, Engine, active_number, api_ok, changed, mobile, unique_caller
from tests.e2e.hangup import ended_when, holding_caller, live_call

pytestmark = pytest.mark.stack

GREETING, GREETING_S = "hello-world", 1.4  # Asterisk's prompt (FreeSWITCH plays its WAV rendering)
_MESSAGE = re.compile(
    r"-{20,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\s*\n"
    r"\s*UDP message (received|sent)[^\n]*\n\s*\n(.*?)(?=\n-{20,}|\Z)",
    re.S,
)


def messages(trace: str) -> list[tuple[datetime, str, str]]:
    """(when, received|sent, text) of each SIP message in a SIPp -trace_msg log."""
    return [
        (datetime.fromisoformat(when), direction, text.replace("\r\n", "\n"))
        for when, direction, text in _MESSAGE.findall(trace)
    ]


@contextlib.contextmanager
def traced_destinations(carrier: SippUas) -> Iterator[Path]:
    """The session's destination carrier (127.0.0.3:5060) replaced, for one test, by one
    that traces its messages."""
    carrier.pause()
    path = Path(tempfile.mkdtemp(prefix="traced-dest-")) / "messages.log"
    try:
        with SippUas("uas_selective.xml", extra=("-trace_msg", "-message_file", str(path))):
            yield path
    finally:
        carrier.start()


async def test_a_greeting_answers_first_and_the_destination_sees_the_unified_number(
    service: ServiceProcess, destination_carrier: SippUas, engine: Engine, stack: LocalStack
) -> None:
    tenant, number_id, number = active_number(service)
    destination = mobile()
    changed(
        service,
        "POST",
        f"/v1/tenants/{tenant}/bindings",
        json={"number_id": number_id, "destination": destination, **OWNER},
    )
    current = api_ok(service.request("GET", f"/v1/tenants/{tenant}/numbers/{number_id}"))
    changed(
        service,
        "PATCH",
        f"/v1/tenants/{tenant}/numbers/{number_id}",
        json={"greeting_prompt": GREETING, "caller_id_mode": "unified"},
        headers={"If-Match": f'"{current["version"]}"'},
    )
    caller = unique_caller()
    with traced_destinations(destination_carrier) as trace:
        call = asyncio.create_task(
            asyncio.to_thread(
                run_uac,
                number,
                caller,
                scenario=holding_caller(4000),
                hold_ms=4000,
                timeout_s=30,
                target=engine.carrier,
            )
        )

        async def bridged() -> str | None:  # greeted, then put through: the engine ends it
            live = live_call(service, caller, "bridged")
            return live["linkedid"] if live else None

        result = await ended_when(call, bridged, stack, engine, budget=10)
        assert result.final_status == 200, result.message_log[-2000:]
        deadline = time.monotonic() + 5
        while True:  # SIPp writes its trace as it goes, buffered
            invites = [
                (when, text)
                for when, d, text in messages(trace.read_text(errors="replace"))
                if d == "received" and text.startswith(f"INVITE sip:{destination}@")
            ]
            if invites or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
    assert invites, "the destination carrier saw no INVITE"
    invite_when, invite = invites[0]
    answered = next(
        when
        for when, d, text in messages(result.message_log)
        if d == "received" and text.startswith("SIP/2.0 200")
    )
    # the caller was answered and heard the greeting before the destination was called
    assert (invite_when - answered).total_seconds() >= GREETING_S - 0.3, (answered, invite_when)
    from_user = re.search(r"^From:[^\n]*<sip:([^@>;]+)@", invite, re.M | re.I)
    assert from_user is not None and from_user.group(1) == number, invite
    assert caller not in invite.split("\n\n", 1)[0], invite  # the caller's number is not shown
