"""FreeSWITCH's side of transfers (dialplan transfers): every leg the control plane dials
writes, when it answers, which destination it is on the caller's channel (one variable
group per leg with the hard stop); a caller sofia transferred into [ss-transfer] (REFER,
#1) is handed to the call path as a transfer by that destination, with the call's tenant
and number; an answering party consulting a target (*2) is one by itself."""

from __future__ import annotations

import asyncio
from pathlib import Path
from xml.etree import ElementTree

from dialplan.distribution import DialStep, Member
from dialplan.inbound import Route
from softswitch.engines.freeswitch.channel import (
    FEATURES_CONTEXT,
    TRANSFER_CONTEXT,
    FsActions,
    FsPlan,
    facts_of,
    feature_bindings,
)

A = "0a1b2c3d-0000-4000-8000-00000000000a"
PLAN = FsPlan("127.0.0.3:5060", "phones", "softswitch", Path("/s"), Path("/c"), Path("/r"))


class Session:
    def __init__(self, data: dict[str, str]) -> None:
        self.data, self.uuid = data, data["Unique-ID"]

    def var(self, name: str) -> str:
        return self.data.get(f"variable_{name}", "")


def test_each_leg_names_itself_on_the_caller_when_it_answers() -> None:
    actions = FsActions(PLAN, ivr=lambda _c: asyncio.sleep(0))
    step = DialStep((Member("13800138000", 20), Member("t5x8002", 20, kind="extension")), 20)
    stop = "execute_on_answer='sched_hangup +60 ALLOTTED_TIMEOUT'"
    named = f"api_on_answer='uuid_setvar {A} ss_answered_by"
    assert actions.dial_string(step, A, 60, a_leg=A) == (
        f"{{call_uuid={A},ss_call_id={A},call_timeout=20,leg_timeout=20}}"
        f"[{stop},{named} 13800138000']sofia/carrier/13800138000@127.0.0.3:5060,"
        f"[{stop},{named} t5x8002']sofia/phones/t5x8002%softswitch"
    )
    # no money: no hard stop, still named; no caller given: as before
    assert actions.dial_string(step, A, 0, a_leg=A).endswith(
        f"[{named} t5x8002']sofia/phones/t5x8002%softswitch"
    )
    assert "api_on_answer" not in actions.dial_string(step, A, 60)


def test_a_caller_transferred_by_refer_is_a_transfer_by_the_leg_that_answered() -> None:
    session = Session(
        {
            "Unique-ID": A,
            "Caller-Context": TRANSFER_CONTEXT,
            "Caller-Caller-ID-Number": "13900139000",
            "Caller-Destination-Number": "13800131234",
            "variable_call_uuid": A,
            "variable_ss_answered_by": "t5x8001",
            "variable_ss_tenant_id": "5",
            "variable_ss_xfer_number": "4008001234",
            # what the REFER itself says is not believed
            "variable_sip_h_Referred-By": "<sip:t5x8009@127.0.0.9>",
        }
    )
    f = facts_of(session)  # type: ignore[arg-type]
    assert (f.linkedid, f.called, f.endpoint, f.caller) == (A, "13800131234", "t5x8001", "13900139000")
    assert f.args == ("5", "4008001234", "refer", "")


def test_a_caller_transferred_by_its_answering_party_s_hash_1_is_a_blind_transfer() -> None:
    session = Session(
        {
            "Unique-ID": A,
            "Caller-Context": TRANSFER_CONTEXT,
            "Caller-Destination-Number": "13800131234",
            "variable_call_uuid": A,
            "variable_ss_answered_by": "t5x8001",
            "variable_ss_tenant_id": "5",
            "variable_ss_xfer_number": "4008001234",
            "variable_ss_xfer_kind": "blind",  # ss-features' ss_blind
        }
    )
    assert facts_of(session).args == ("5", "4008001234", "blind", "")  # type: ignore[arg-type]


B = "0a1b2c3d-0000-4000-8000-00000000000b"


def test_an_answering_party_consulting_with_star_2_is_an_attended_transfer_by_itself() -> None:
    # ss_attended's socket session runs on the answering party's own channel (the phones
    # profile: context default, which would otherwise be an extension's own call)
    session = Session(
        {
            "Unique-ID": B,
            "Caller-Context": "default",
            "Caller-Destination-Number": "t5x8001",  # the leg's own destination
            "variable_call_uuid": A,
            "variable_ss_call_id": A,
            "variable_ss_consult": "attended",
            "variable_ss_xfer_digits": "13800131234",
            "variable_ss_answered_by": "t5x8001",
            "variable_ss_tenant_id": "5",
            "variable_ss_xfer_number": "4008001234",
            "variable_sip_auth_username": "t5x8001",
        }
    )
    f = facts_of(session)  # type: ignore[arg-type]
    assert (f.linkedid, f.uniqueid, f.called, f.endpoint) == (A, B, "13800131234", "t5x8001")
    assert f.args == ("5", "4008001234", "attended", f"freeswitch/{B}")


def test_a_consultation_dials_the_route_s_steps_in_turn() -> None:
    actions = FsActions(PLAN, ivr=lambda _c: asyncio.sleep(0))
    mobile = DialStep((Member("13800138000", 20),), 20)
    desk = DialStep((Member("t5x8002", 15, kind="extension"),), 15)
    route = Route(
        (mobile, desk),
        5,
        None,
        limit_s=60,
    )
    stop = "execute_on_answer='sched_hangup +60 ALLOTTED_TIMEOUT'"
    assert actions.consult_string(route, A) == (
        f"{{call_uuid={A},ss_call_id={A},call_timeout=20,leg_timeout=20}}"
        f"[{stop}]sofia/carrier/13800138000@127.0.0.3:5060"
        f"|[{stop},leg_timeout=15]sofia/phones/t5x8002%softswitch"
    )


DIALPLAN = Path(__file__).resolve().parents[2] / "docker" / "freeswitch" / "dialplan.xml"


def test_feature_codes_are_bound_for_whom_they_are_offered_and_run_what_the_dialplan_has() -> None:
    assert feature_bindings(False, False) == []
    record = f"exec[H]:execute_extension,ss_record XML {FEATURES_CONTEXT}"
    blind = f"exec:execute_extension,ss_blind XML {FEATURES_CONTEXT}"
    # *3: the caller's own digits and the answering party's, run on the caller (self);
    # #1: the answering party's digits only, run on that party's channel (peer)
    assert feature_bindings(True, False) == [f"ss,*3,{record},self,self", f"ss,*3,{record},peer,self"]
    attended = f"exec:execute_extension,ss_attended XML {FEATURES_CONTEXT}"
    assert feature_bindings(False, True) == [f"ss,#1,{blind},peer,peer", f"ss,*2,{attended},peer,peer"]
    # bind_digit_action splits its data on ',' into at most 6 fields
    assert all(len(b.split(",")) == 6 for b in feature_bindings(True, True))
    tree = ElementTree.parse(DIALPLAN)
    context = tree.find(f".//context[@name='{FEATURES_CONTEXT}']")
    assert context is not None
    patterns = [
        c.get("expression") for c in context.iter("condition") if c.get("field") == "destination_number"
    ]
    for name in ("ss_record", "ss_blind", "ss_blind_to", "ss_attended", "ss_attended_to", "ss_consult_go"):
        assert f"^{name}$" in patterns
