"""Fax per account kind through the real engines (issue 20, item 5). Seed 001's tariff: a SIP
phone "支持传真" (fax), a voice gateway "不支持传真" (no fax). A registered extension calls
another one (a fax-capable phone, SIPp answering with uas_fax.xml) and, once bridged, sends
a T.38 re-INVITE (m=image udptl t38, sipp-scenarios/uac_fax.xml), as a fax terminal does:

- from a fax-capable phone it is passed on to the far end, which accepts, and the caller
  gets 200 with m=image (Asterisk: the endpoint's t38_udptl=yes; FreeSWITCH: the directory
  user's t38_passthru=true);
- from a voice gateway, or to one, the engine refuses it (488 Not Acceptable Here) and the
  far end is never asked (the SIPp answering would accept it); the call itself goes on and
  ends normally."""

from __future__ import annotations

import asyncio
import secrets
import tempfile
from pathlib import Path
from typing import Any

import pytest

from scripts.devstack.process import ServiceProcess
from scripts.devstack.sipp import SCENARIOS, SippResult, SippUas, phone_args, run_uac
from tests.e2e.conftest import Engine, active_number, changed
from tests.e2e.test_internal_calls import SipMessage, SipTrace, register_accepted

pytestmark = pytest.mark.stack

# The far end's address (no other test's SIPp uses it); the caller is 127.0.0.5, as in
# the other extension calls.
PHONE_IP, PHONE_PORT = "127.0.0.15", 5078


def _extension(service: ServiceProcess, tenant: int, ext: str, **kind: Any) -> tuple[dict[str, Any], str]:
    password = f"pw-{secrets.token_hex(6)}"
    row = changed(
        service,
        "POST",
        f"/v1/tenants/{tenant}/extensions",
        json={"extension": ext, "site": "main", "password": password, **kind},
    )
    return row, password


def _t38_reinvite(m: SipMessage) -> bool:
    return m.start_line.startswith("INVITE ") and "m=image" in m.text and "udptl t38" in m.text.lower()


def _answer_to_reinvite(result: SippResult) -> SipMessage:
    """The engine's final answer to the caller's T.38 re-INVITE (CSeq 3)."""
    log = SipTrace(Path(tempfile.mkdtemp(prefix="fax-uac-")) / "messages.log")
    log.path.write_text(result.message_log)
    finals = [
        m
        for m in log.messages()
        if m.direction == "received"
        and m.start_line.startswith("SIP/2.0 ")
        and not m.start_line.startswith("SIP/2.0 1")
        and m.headers("CSeq") == ["3 INVITE"]
    ]
    assert finals, f"no answer to the T.38 re-INVITE:\n{result.message_log[-3000:]}"
    return finals[0]


FAX_PHONE = {"device_kind": "phone", "fax_allowed": True}
GATEWAY = {"device_kind": "gateway"}


@pytest.mark.parametrize(
    ("caller_kind", "callee_kind", "accepted"),
    [(FAX_PHONE, FAX_PHONE, True), (GATEWAY, FAX_PHONE, False), (FAX_PHONE, GATEWAY, False)],
    ids=["fax-phone-to-fax-phone", "gateway-to-fax-phone", "fax-phone-to-gateway"],
)
async def test_a_t38_offer_is_passed_between_fax_phones_and_refused_with_a_gateway(
    service: ServiceProcess,
    engine: Engine,
    caller_kind: dict[str, Any],
    callee_kind: dict[str, Any],
    accepted: bool,
) -> None:
    tenant, _number_id, _number = active_number(service)
    caller, caller_pw = _extension(service, tenant, "8601", **caller_kind)
    callee, callee_pw = _extension(service, tenant, "8602", **callee_kind)
    trace = SipTrace(Path(tempfile.mkdtemp(prefix="fax-phone-")) / "messages.log")
    answers = SCENARIOS / "uas_fax.xml"
    with SippUas(
        "uas_phone.xml",
        local_ip=PHONE_IP,
        port=PHONE_PORT,
        ring_ms=100,
        extra=phone_args(callee["endpoint_id"], callee_pw, answers, engine.phones, trace.path),
    ):
        await trace.wait_for("the far end's registration accepted", register_accepted)
        result = await asyncio.to_thread(
            run_uac,
            "8602",
            caller["endpoint_id"],
            scenario="uac_fax.xml",
            local_ip="127.0.0.5",
            hold_ms=300,
            extra=("-key", "ext", caller["endpoint_id"], "-au", caller["endpoint_id"], "-ap", caller_pw),
            timeout_s=30,
            target=engine.phones,
        )
        answer = _answer_to_reinvite(result)
        offered_on = [m for m in trace.messages() if m.direction == "received" and _t38_reinvite(m)]

    assert result.returncode == 0, result.message_log[-3000:]  # the call answered, and ended by its BYE
    if accepted:
        assert answer.start_line.startswith("SIP/2.0 200"), answer.text
        body = answer.text.split("\n\n", 1)[1]
        assert "m=image" in body and "udptl t38" in body.lower(), answer.text
        assert len(offered_on) == 1, "the far end was not offered T.38"
    else:
        assert answer.start_line.startswith("SIP/2.0 488"), answer.text
        assert offered_on == [], "T.38 was offered to the far end"
