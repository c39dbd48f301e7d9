"""Split billing of 400 numbers (issue 17, item 4; rating/split.py), through both engines.

Two tenants, each on a 400 package an operator defines through the API. The packages are
the same but for split billing: 0.60 CNY/min by the second, so a charge shows every second.
Each number answers with a greeting, and the destination rings 2 s more before it answers.
The caller's time with the platform alone is then over 3 s. The split-billing tenant pays
only the forwarded leg, as long as the destination's own SIPp saw it. The other pays the
whole call, as long as the caller's SIPp saw it. Both are read from the call records and
the statement through the API."""

from __future__ import annotations

import asyncio
import contextlib
import re
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from scripts.devstack.process import ServiceProcess
from scripts.devstack.sipp import SippUas, run_uac
from tests.e2e.conftest import OWNER, Engine, active_number, api_ok, changed, mobile, unique_caller

pytestmark = pytest.mark.stack

GREETING = "hello-world"  # 1.4 s (Asterisk's prompt; FreeSWITCH plays its WAV rendering)
RING_MS = 2000  # the destination rings this long after the greeting
HOLD_MS = 7000  # the caller hangs up this long after the platform answered
RATE = Decimal("0.60")  # CNY/min, by the second: one second costs 0.01
_MESSAGE = re.compile(
    r"-{20,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\s*\n"
    r"\s*UDP message (received|sent)[^\n]*\n\s*\n(.*?)(?=\n-{20,}|\Z)",
    re.S,
)


def _messages(trace: str) -> list[tuple[datetime, str, str]]:
    """(when, received|sent, text) of each SIP message of a SIPp -trace_msg log."""
    return [(datetime.fromisoformat(w), d, t.replace("\r\n", "\n")) for w, d, t in _MESSAGE.findall(trace)]


def _call_id(text: str) -> str:
    m = re.search(r"^(?:Call-ID|i)\s*:\s*(\S+)", text, re.M | re.I)
    return m.group(1) if m else ""


def _talk_s(trace: str, answered: str, hung_up: str, call_id: str | None = None) -> float:
    """Seconds from the INVITE's 200 OK (`answered`: sent or received) to the BYE
    (`hung_up`) in a SIPp trace, of the dialog `call_id` (default: the only one)."""
    msgs = [m for m in _messages(trace) if call_id is None or _call_id(m[2]) == call_id]
    ok = next(w for w, d, t in msgs if d == answered and t.startswith("SIP/2.0 200") and "INVITE" in t)
    bye = next(w for w, d, t in msgs if d == hung_up and t.startswith("BYE "))
    return (bye - ok).total_seconds()


@contextlib.contextmanager
def ringing_destinations(carrier: SippUas) -> Iterator[Path]:
    """The session's destination carrier replaced, for one test, by one that rings
    RING_MS before it answers and traces its messages."""
    carrier.pause()
    path = Path(tempfile.mkdtemp(prefix="split-dest-")) / "messages.log"
    try:
        with SippUas("uas_selective.xml", ring_ms=RING_MS, extra=("-trace_msg", "-message_file", str(path))):
            yield path
    finally:
        carrier.start()


def _package(service: ServiceProcess, split: bool) -> int:
    """The operator's 400 package for these tests (made once, kept in the catalogue)."""
    code = "E2E-400-SPLIT" if split else "E2E-400-WHOLE"
    found = api_ok(service.request("GET", "/v1/packages", params={"code": code}))["items"]
    if found:
        return int(found[0]["id"])
    body = {
        "code": code,
        "name": f"e2e 400 package, split billing {'on' if split else 'off'}",
        "kind": "unified_400",
        "channels": 4,
        "overage_rate": str(RATE),
        "first_increment_s": 1,
        "increment_s": 1,
        "split_billing": split,
        "note": "e2e tests/e2e/test_split_billing.py",
    }
    return int(api_ok(service.request("POST", "/v1/packages", json=body), 201)["id"])


def _number_with_greeting(service: ServiceProcess, package_id: int) -> tuple[int, str, str]:
    """(tenant, number, destination): a funded tenant subscribed to the package, its 400
    number bound to a destination and answering with the greeting."""
    tenant, number_id, number = active_number(service)
    base = f"/v1/tenants/{tenant}"
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date().isoformat()
    api_ok(
        service.request("POST", f"{base}/subscriptions", json={"package_id": package_id, "starts_on": today}),
        201,
    )
    destination = mobile()
    api_ok(
        service.request(
            "POST", f"{base}/bindings", json={"number_id": number_id, "destination": destination, **OWNER}
        ),
        201,
    )
    current = api_ok(service.request("GET", f"{base}/numbers/{number_id}"))
    changed(
        service,
        "PATCH",
        f"{base}/numbers/{number_id}",
        json={"greeting_prompt": GREETING},
        headers={"If-Match": f'"{current["version"]}"'},
    )
    return tenant, number, destination


async def _settled_record(service: ServiceProcess, tenant: int, caller: str) -> dict[str, Any]:
    """The caller's call record through the API once it is settled."""
    deadline = time.monotonic() + 10
    while True:
        items = api_ok(service.request("GET", f"/v1/tenants/{tenant}/calls", params={"limit": 10}))["items"]
        mine = [c for c in items if c["caller"] == caller]
        if mine and mine[0]["settled_at"] is not None:
            record: dict[str, Any] = mine[0]
            return record
        assert time.monotonic() < deadline, f"the call was not settled within 10 s: {mine}"
        await asyncio.sleep(0.05)


def _dialog_of(trace: str, destination: str) -> str:
    """The Call-ID of the INVITE the destination carrier received for `destination`."""
    for _, d, text in _messages(trace):
        if d == "received" and text.startswith(f"INVITE sip:{destination}@"):
            return _call_id(text)
    raise AssertionError(f"the destination carrier saw no INVITE for {destination}")


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


async def _destination_trace(path: Path, *destinations: str) -> str:
    """The destination carrier's trace once it shows the BYE of every destination's call
    (SIPp writes it buffered)."""
    deadline = time.monotonic() + 5
    while True:
        trace = _read(path)
        byes = {_call_id(t) for _, d, t in _messages(trace) if d == "received" and t.startswith("BYE ")}
        with contextlib.suppress(AssertionError):
            if all(_dialog_of(trace, dest) in byes for dest in destinations):
                return trace
        assert time.monotonic() < deadline, "the destination carrier's trace lacks a BYE"
        await asyncio.sleep(0.1)


async def test_split_billing_charges_the_forwarded_leg_and_a_number_without_it_the_whole_call(
    service: ServiceProcess, destination_carrier: SippUas, engine: Engine, db: asyncpg.Connection
) -> None:
    split_tenant, split_number, split_dest = _number_with_greeting(service, _package(service, True))
    whole_tenant, whole_number, whole_dest = _number_with_greeting(service, _package(service, False))
    split_caller, whole_caller = unique_caller(), unique_caller()

    def call(number: str, caller: str) -> Any:
        return run_uac(number, caller, hold_ms=HOLD_MS, timeout_s=30, target=engine.carrier)

    with ringing_destinations(destination_carrier) as dest_log:
        split_call, whole_call = await asyncio.gather(
            asyncio.to_thread(call, split_number, split_caller),
            asyncio.to_thread(call, whole_number, whole_caller),
        )
        assert split_call.final_status == 200, split_call.message_log[-2000:]
        assert whole_call.final_status == 200, whole_call.message_log[-2000:]
        dest_trace = await _destination_trace(dest_log, split_dest, whole_dest)

    split = await _settled_record(service, split_tenant, split_caller)
    whole = await _settled_record(service, whole_tenant, whole_caller)
    for record, sipp in ((split, split_call), (whole, whole_call)):
        # the caller's part: what the caller's SIPp talked, greeting and ringing included
        assert abs(record["talk_s"] - _talk_s(sipp.message_log, "received", "sent")) <= 1.0, record
        assert record["forwarded_answered_at"] is not None, record
        alone = datetime.fromisoformat(record["forwarded_answered_at"]) - datetime.fromisoformat(
            record["answered_at"]
        )
        assert alone.total_seconds() >= 1.4 + RING_MS / 1000 - 0.5, record  # the greeting, the ringing
    forwarded = {
        dest: _talk_s(dest_trace, "sent", "received", _dialog_of(dest_trace, dest))
        for dest in (split_dest, whole_dest)
    }

    # split billing: the enterprise pays what its destination talked, at the package's rate
    assert split["billed_leg"] == "forwarded", split
    assert abs(split["billsec"] - forwarded[split_dest]) <= 1.0, (split, forwarded)
    assert split["talk_s"] - split["billsec"] >= 3, split
    # without it: the whole call, as configured
    assert whole["billed_leg"] == "call", whole
    assert whole["billsec"] == whole["talk_s"], whole
    assert whole["billsec"] - forwarded[whole_dest] >= 3, (whole, forwarded)

    for tenant, record in ((split_tenant, split), (whole_tenant, whole)):
        cost = RATE * record["billsec"] / 60
        assert Decimal(record["amount"]) == cost, record
        ledger = await db.fetchval(
            "SELECT amount FROM ledger_entries "
            "WHERE tenant_id = $1 AND kind = 'call' AND idempotency_key = $2",
            tenant,
            record["linkedid"],
        )
        assert ledger == -cost, (ledger, record)
        today = datetime.now(ZoneInfo("Asia/Shanghai")).date().isoformat()
        statement = api_ok(
            service.request("GET", f"/v1/tenants/{tenant}/statement", params={"from": today, "to": today})
        )
        (entry,) = [e for e in statement["entries"] if e["kind"] == "call"]
        assert Decimal(entry["amount"]) == -cost, entry
        assert entry["call"] == {
            "billed_leg": record["billed_leg"],
            "billsec": record["billsec"],
            "talk_s": record["talk_s"],
            "minutes": record["minutes"],
        }, entry
