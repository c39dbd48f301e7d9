"""Fax (T.38) per account kind on FreeSWITCH (issue 20, item 5; seed 001's tariff: a SIP
phone "支持传真", a voice gateway "不支持传真"): the directory's user variables of a
fax-capable extension and of any other account, and the leg variables the control plane
dials with — a fax-capable extension's leg may take the caller's T.38 offer (and pass its
own back when the caller may fax); any other leg answering a fax-capable caller makes the
engine refuse the caller's offer."""

from __future__ import annotations

import asyncio
from pathlib import Path
from xml.etree import ElementTree

from dialplan.distribution import DialStep, Member
from provisioning.freeswitch_directory import user_document, user_variables
from softswitch.engines.freeswitch.channel import FsActions, FsPlan

A = "0a1b2c3d-0000-4000-8000-00000000000a"
PLAN = FsPlan("127.0.0.3:5060", "phones", "softswitch", Path("/s"), Path("/c"), Path("/r"))
NAMED = f"api_on_answer='uuid_setvar {A} ss_answered_by"
REFUSE = f"api_on_answer_t38='uuid_setvar {A} refuse_t38 true'"


def _variables(fax: bool) -> dict[str, str]:
    doc = ElementTree.fromstring(user_document("softswitch", "t5x8001", "0" * 32, user_variables(fax)))
    return {v.get("name", ""): v.get("value", "") for v in doc.iter("variable")}


def test_the_directory_lets_a_fax_phone_offer_t38_and_refuses_it_for_anyone_else() -> None:
    assert _variables(True) == {"fax_enable_t38": "true", "t38_passthru": "true", "refuse_t38": "false"}
    assert _variables(False) == {"fax_enable_t38": "false", "t38_passthru": "false", "refuse_t38": "true"}
    # the digest is still the only param
    doc = ElementTree.fromstring(user_document("softswitch", "t5x8001", "f" * 32, user_variables(False)))
    assert [(p.get("name"), p.get("value")) for p in doc.iter("param")] == [("a1-hash", "f" * 32)]


def _legs(dial: str) -> list[str]:
    return dial.split("}", 1)[1].split(",[")


def test_a_fax_phones_leg_takes_t38_and_any_other_leg_refuses_a_fax_callers_offer() -> None:
    actions = FsActions(PLAN, ivr=lambda _c: asyncio.sleep(0))
    fax = Member("t5x8002", 20, kind="extension", fax=True)
    gateway = Member("t5x8003", 20, kind="extension")
    mobile = Member("13800138000", 20)
    step = DialStep((fax, gateway, mobile), 20)

    from_fax_phone = _legs(actions.dial_string(step, A, 0, a_leg=A, caller_fax=True))
    assert from_fax_phone == [
        f"[{NAMED} t5x8002',fax_enable_t38=true,t38_passthru=true]sofia/phones/t5x8002%softswitch",
        f"{NAMED} t5x8003',{REFUSE}]sofia/phones/t5x8003%softswitch",
        f"{NAMED} 13800138000',{REFUSE}]sofia/carrier/13800138000@127.0.0.3:5060",
    ]
    # a caller that may not fax (a gateway, the carrier's caller): the fax phone may take an
    # offer but its own is not passed on; nobody needs to refuse what the caller cannot send
    from_gateway = _legs(actions.dial_string(step, A, 0, a_leg=A))
    assert from_gateway == [
        f"[{NAMED} t5x8002',fax_enable_t38=true]sofia/phones/t5x8002%softswitch",
        f"{NAMED} t5x8003']sofia/phones/t5x8003%softswitch",
        f"{NAMED} 13800138000']sofia/carrier/13800138000@127.0.0.3:5060",
    ]
