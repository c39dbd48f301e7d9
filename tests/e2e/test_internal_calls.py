"""Calls from a tenant's own SIP extensions through the real Asterisk, seen from both ends
of the wire (SIPp message traces):

- an extension dialling its own company's unified number (or the IVR behind it) is
  handled inside the platform as an inbound call to that number: the number's policy,
  menu and bound destinations apply, the call record says "internal", and no INVITE for
  the number reaches an outbound trunk (issue 11, item 7);
- an extension's call to an outside number reaches the carrier presenting only what the
  tenant owns: no display name carrying the extension, the owned number in From,
  P-Asserted-Identity and Remote-Party-ID (issue 11, item 8)."""

from __future__ import annotations

import asyncio
import os
import random
import re
import secrets
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from scripts.devstack.process import ServiceProcess
from scripts.devstack.sipp import SCENARIOS, SippResult, SippUas, phone_args, run_uac
from tests.e2e.conftest import OWNER, Engine, active_number, api_ok, changed, dialled_legs

pytestmark = pytest.mark.stack

# A carrier trunk of our own, so that what reaches it can be traced without disturbing the
# session's destination carrier on 127.0.0.3:5060: the same host, another port.
TRACED_HOST, TRACED_PORT = "127.0.0.3", 5062
# Outside numbers with this prefix leave through the traced trunk (longest prefix wins).
TRACED_PREFIX = "1390077"
PHONE_IP, PHONE_PORT = "127.0.0.6", 5072


# ---------------------------------------------------------------------------- SIP traces
@dataclass(frozen=True)
class SipMessage:
    direction: str  # received | sent
    text: str

    @property
    def start_line(self) -> str:
        return self.text.split("\n", 1)[0].strip()

    def headers(self, name: str) -> list[str]:
        head = self.text.split("\n\n", 1)[0]
        out = []
        for line in head.splitlines()[1:]:
            key, sep, value = line.partition(":")
            if sep and key.strip().lower() == name.lower():
                out.append(value.strip())
        return out


_BLOCK = re.compile(r"UDP message (received|sent) \[\d+\] bytes :\s*\n\s*\n(.*?)(?=\n-{20,}|\Z)", re.S)


class SipTrace:
    """A SIPp -trace_msg file, read as the messages it holds."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def messages(self) -> list[SipMessage]:
        text = self.path.read_text(errors="replace") if self.path.exists() else ""
        return [SipMessage(d, m.replace("\r\n", "\n")) for d, m in _BLOCK.findall(text)]

    def invites(self, called: str = "") -> list[SipMessage]:
        return [
            m
            for m in self.messages()
            if m.direction == "received" and m.start_line.startswith(f"INVITE sip:{called}")
        ]

    async def wait_for(self, what: str, test: Any, budget: float = 10.0) -> list[SipMessage]:
        deadline = time.monotonic() + budget
        while True:
            found = [m for m in self.messages() if test(m)]
            if found:
                return found
            assert time.monotonic() < deadline, f"{what} not seen within {budget} s in {self.path}"
            await asyncio.sleep(0.05)


def register_accepted(m: SipMessage) -> bool:
    """The registrar's 200 to a phone's REGISTER."""
    return (
        m.direction == "received"
        and m.start_line.startswith("SIP/2.0 200")
        and any("REGISTER" in v for v in m.headers("CSeq"))
    )


_NAME_ADDR = re.compile(r'^\s*(?:"(?P<quoted>[^"]*)"|(?P<token>[^<"]*?))\s*<sip:(?P<user>[^@;>]*)@')


def identity(value: str) -> tuple[str, str]:
    """(display name, user part) of a From / P-Asserted-Identity / Remote-Party-ID value."""
    m = _NAME_ADDR.match(value)
    assert m is not None, f"not a name-addr: {value!r}"
    return (m.group("quoted") if m.group("quoted") is not None else m.group("token") or ""), m.group("user")


# ---------------------------------------------------------------------------- fixtures
@dataclass
class TracedTrunk:
    trace: SipTrace
    trunk_id: int


@pytest.fixture(scope="module")
def traced_trunk(service: ServiceProcess) -> Iterator[TracedTrunk]:
    """A carrier trunk answering at 127.0.0.3:5062 with its messages traced; outside
    numbers starting with TRACED_PREFIX, and 400 numbers, are routed to it — so an
    extension's call to a 400 number that were sent out through a trunk would land here."""
    tmp = Path(tempfile.mkdtemp(prefix="traced-trunk-"))
    trace = SipTrace(tmp / "messages.log")
    trunk = changed(
        service,
        "POST",
        "/v1/trunks",
        json={
            "name": f"traced-{os.getpid()}-{secrets.token_hex(2)}",
            "host": TRACED_HOST,
            "port": TRACED_PORT,
        },
    )
    routes = [
        changed(
            service, "POST", "/v1/trunk-routes", json={"trunk_id": trunk["id"], "prefix": p, "priority": 1}
        )
        for p in (TRACED_PREFIX, "400")
    ]
    uas = SippUas(
        "uas_selective.xml",
        local_ip=TRACED_HOST,
        port=TRACED_PORT,
        extra=("-trace_msg", "-message_file", str(trace.path)),
    )
    try:
        with uas:
            yield TracedTrunk(trace, trunk["id"])
    finally:
        for r in routes:
            service.request(
                "DELETE", f"/v1/trunk-routes/{r['id']}", headers={"If-Match": f'"{r["version"]}"'}
            )
        service.request("DELETE", f"/v1/trunks/{trunk['id']}", headers={"If-Match": f'"{trunk["version"]}"'})


def extension(service: ServiceProcess, tenant: int, ext: str) -> tuple[dict[str, Any], str]:
    password = f"pw-{secrets.token_hex(6)}"
    row = changed(
        service,
        "POST",
        f"/v1/tenants/{tenant}/extensions",
        json={"extension": ext, "site": "main", "password": password},
    )
    return row, password


def plain_phone_scenario() -> Path:
    """uac_extension.xml as most desk phones send it: the extension as the From display
    name ([caller]) and no P-Asserted-Identity, so the caller ID is the endpoint's own."""
    text = (SCENARIOS / "uac_extension.xml").read_text()
    text = text.replace("      P-Asserted-Identity: <sip:[caller]@[local_ip]>\n", "")
    text = text.replace("From: <sip:[ext]@", 'From: "[caller]" <sip:[ext]@')
    assert "P-Asserted-Identity" not in text.split("<scenario", 1)[1]
    path = Path(tempfile.mkdtemp(prefix="plain-phone-")) / "uac_extension_plain.xml"
    path.write_text(text)
    return path


def ext_call(
    a: dict[str, Any],
    password: str,
    dialled: str,
    presented: str,
    hold_ms: int = 300,
    *,
    pai: bool = True,
    target: str = "127.0.0.1:5060",
) -> SippResult:
    """Extension `a` (at 127.0.0.5, digest auth) dials `dialled`, presenting `presented` in
    P-Asserted-Identity as some phones do, or (pai=False) only as its From display name."""
    return run_uac(
        dialled,
        presented,
        scenario="uac_extension.xml" if pai else str(plain_phone_scenario()),
        local_ip="127.0.0.5",
        hold_ms=hold_ms,
        extra=("-key", "ext", a["endpoint_id"], "-au", a["endpoint_id"], "-ap", password),
        timeout_s=40,
        target=target,
    )


@dataclass
class Phone:
    endpoint_id: str
    trace: SipTrace

    def rang(self) -> list[SipMessage]:
        return self.trace.invites()


@pytest.fixture
async def registered_phone(engine: Engine) -> Any:
    """A factory: a SIP phone registered as an extension (on the test's engine), answering
    calls to it."""
    phones: list[SippUas] = []

    async def register(ext: dict[str, Any], password: str) -> Phone:
        path = Path(tempfile.mkdtemp(prefix="phone-")) / "messages.log"
        uas = SippUas(
            "uas_phone.xml",
            local_ip=PHONE_IP,
            port=PHONE_PORT,
            ring_ms=200,
            extra=phone_args(ext["endpoint_id"], password, SCENARIOS / "uas_answer.xml", engine.phones, path),
        )
        phones.append(uas.start())
        phone = Phone(ext["endpoint_id"], SipTrace(path))
        await phone.trace.wait_for("the phone's registration accepted", register_accepted)
        return phone

    try:
        yield register
    finally:
        for uas in phones:
            uas.stop()


async def call_row(db: asyncpg.Connection, caller: str, called: str, budget: float = 5.0) -> asyncpg.Record:
    """The call record of the latest call from `caller` to `called` once it is decided
    (an IVR's first decision is followed by the menu's outcome)."""
    deadline = time.monotonic() + budget
    while True:
        row = await db.fetchrow(
            "SELECT * FROM calls WHERE caller = $1 AND called = $2 ORDER BY id DESC LIMIT 1", caller, called
        )
        if row is not None and row["action"] != "ivr":
            return row
        assert time.monotonic() < deadline, f"no decided call record for {caller} -> {called}: {row}"
        await asyncio.sleep(0.05)


def bind_extension(
    service: ServiceProcess, tenant: int, number_id: int, ext: str, group: str = "default"
) -> None:
    changed(
        service,
        "POST",
        f"/v1/tenants/{tenant}/bindings",
        json={"number_id": number_id, "destination": ext, "kind": "extension", "group_name": group, **OWNER},
    )


def send_to_ivr(service: ServiceProcess, tenant: int, number_id: int) -> None:
    """The number's calls go to a menu that, on silence, transfers to the default group."""
    base = f"/v1/tenants/{tenant}"
    api_ok(service.request("PUT", f"{base}/prompts/welcome/text", json={"text": "您好。"}))
    changed(
        service,
        "POST",
        f"{base}/ivr-menus",
        201,
        json={
            "name": "main",
            "definition": {
                "prompt": "welcome",
                "timeout_ms": 1000,
                "retries": 0,
                "options": {"1": {"action": "hangup"}},
                "default": {"action": "transfer", "group": "default"},
            },
        },
    )
    policy = changed(
        service,
        "POST",
        f"{base}/time-policies",
        201,
        json={"name": "ivr", "definition": {"default": {"kind": "ivr", "ref": "main"}}},
    )
    num = api_ok(service.request("GET", f"{base}/numbers/{number_id}"))
    changed(
        service,
        "PATCH",
        f"{base}/numbers/{number_id}",
        json={"time_policy_id": policy["id"]},
        headers={"If-Match": f'"{num["version"]}"'},
    )


# ---------------------------------------------------------------------------- item 7
async def test_an_extension_calling_its_own_400_number_rings_the_bound_destination_inside(
    db: asyncpg.Connection,
    service: ServiceProcess,
    traced_trunk: TracedTrunk,
    registered_phone: Any,
    engine: Engine,
) -> None:
    tenant, number_id, number = active_number(service)
    a, pw_a = extension(service, tenant, "8101")
    b, pw_b = extension(service, tenant, "8102")
    bind_extension(service, tenant, number_id, "8102")
    phone_b = await registered_phone(b, pw_b)

    result = await asyncio.to_thread(ext_call, a, pw_a, number, a["endpoint_id"], 500, target=engine.phones)

    assert traced_trunk.trace.invites(number) == [], "the call to the own 400 number went out through a trunk"
    assert result.final_status == 200, result.message_log[-2000:]
    assert len(phone_b.rang()) == 1, "the number's bound extension did not ring"
    row = await call_row(db, a["endpoint_id"], number)
    assert (row["direction"], row["action"], row["reason"], row["number_id"], row["tenant_id"]) == (
        "internal",
        "dial",
        "ROUTED",
        number_id,
        tenant,
    )
    assert list(row["destinations"]) == [b["endpoint_id"]]
    # one leg, to the extension's own endpoint (no trunk in the dial string), answered
    legs = await dialled_legs(db, row["linkedid"], engine)
    own = f"PJSIP/{b['endpoint_id']}" if engine.is_asterisk else b["endpoint_id"]
    # Asterisk's Dial string "PJSIP/<endpoint>,<timeout>,…"; FreeSWITCH's "<endpoint>%<realm>"
    assert [(re.split("[,%]", d)[0], answered) for d, answered in legs] == [(own, True)], legs


async def test_an_extension_calling_its_own_ivr_number_hears_the_menu_then_reaches_the_group(
    db: asyncpg.Connection,
    service: ServiceProcess,
    traced_trunk: TracedTrunk,
    registered_phone: Any,
    engine: Engine,
) -> None:
    tenant, number_id, number = active_number(service)
    a, pw_a = extension(service, tenant, "8201")
    b, pw_b = extension(service, tenant, "8202")
    bind_extension(service, tenant, number_id, "8202")
    send_to_ivr(service, tenant, number_id)
    phone_b = await registered_phone(b, pw_b)

    # The menu answers, says its prompt, hears nothing and transfers to the default group;
    # the caller stays on the line meanwhile (SIPp hangs up after hold_ms from the answer).
    result = await asyncio.to_thread(ext_call, a, pw_a, number, a["endpoint_id"], 9000, target=engine.phones)

    assert traced_trunk.trace.invites(number) == [], "the call to the own IVR number went out through a trunk"
    assert result.final_status == 200, result.message_log[-2000:]
    row = await call_row(db, a["endpoint_id"], number, budget=15)
    assert (row["direction"], row["action"], row["why"], row["number_id"]) == (
        "internal",
        "dial",
        "ivr",
        number_id,
    )
    assert list(row["destinations"]) == [b["endpoint_id"]]
    assert len(phone_b.rang()) == 1, "the menu's transfer did not ring the group's extension"


# ---------------------------------------------------------------------------- item 8
@pytest.mark.parametrize("pai", [False, True], ids=["phone-without-pai", "phone-presenting-its-extension"])
async def test_the_carrier_sees_only_the_owned_number_not_the_extension(
    db: asyncpg.Connection, service: ServiceProcess, traced_trunk: TracedTrunk, pai: bool, engine: Engine
) -> None:
    tenant, _number_id, number = active_number(service)
    a, pw = extension(service, tenant, "8301")
    outside = TRACED_PREFIX + "".join(random.choices("0123456789", k=2)) + f"{random.randrange(90):02d}"

    # The phone claims no outside number: it presents its own extension, in its From display
    # name (most phones) or in P-Asserted-Identity.
    result = await asyncio.to_thread(ext_call, a, pw, outside, "8301", pai=pai, target=engine.phones)

    assert result.final_status == 200, result.message_log[-2000:]
    (invite,) = await traced_trunk.trace.wait_for(
        "the INVITE at the carrier",
        lambda m: m.direction == "received" and m.start_line.startswith(f"INVITE sip:{outside}@"),
    )
    shown = {name: invite.headers(name) for name in ("From", "P-Asserted-Identity", "Remote-Party-ID")}
    # Asterisk's trunk sends all three (send_pai, send_rpid), FreeSWITCH's carrier profile
    # From and PAI (caller-id-type pid): each must carry only the owned number
    required = shown if engine.is_asterisk else {k: shown[k] for k in ("From", "P-Asserted-Identity")}
    assert all(required.values()), invite.text
    for name, values in shown.items():
        for value in values:
            assert identity(value) == ("", number), f"{name}: {value}"
            assert "8301" not in value and a["endpoint_id"] not in value, f"{name}: {value}"
