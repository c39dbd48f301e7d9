"""The call registry through a transfer: AMI event sequences as Asterisk 22 sends them for
a blind transfer (#1 / SIP REFER) and an attended one (*2), folded through the Asterisk
adapter. The call keeps its linkedid; the transfer's leg knows when its target answered
and which channel that is; each leg whose answering party leaves while the call goes on is
reported (what settles its reservation), and a call never transferred reports none."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from softswitch.callpath.registry import CallRegistry, LiveCall
from softswitch.core.clock import FixedClock
from softswitch.engines.asterisk.ami.codec import AmiMessage
from softswitch.engines.asterisk.events import AmiChannelEvents

T0 = datetime(2026, 11, 23, 14, 30, tzinfo=UTC)
CALLER = "1763908200.10"  # the carrier's inbound channel (its uniqueid is the linkedid)
DESK = "1763908200.11"  # the extension that answers, then transfers
TARGET = "1763908200.14"  # the bound mobile the caller is transferred to
LOCAL1, LOCAL2 = "1763908200.12", "1763908200.13"  # an attended transfer's Local channel


def ev(event: str, **headers: str) -> AmiMessage:
    return AmiMessage(headers=(("Event", event), *headers.items()))


class Call:
    def __init__(self) -> None:
        self.clock = FixedClock(T0)
        self.registry = CallRegistry(self.clock)
        self.events = AmiChannelEvents(self.registry)
        self.legs_ended: list[str] = []
        self.ended: list[LiveCall] = []
        self.registry.add_leg_end_listener(lambda call, leg: self.legs_ended.append(leg))
        self.registry.add_end_listener(self.ended.append)

    def at(self, seconds: float) -> Call:
        self.clock.at = T0 + timedelta(seconds=seconds)
        return self

    def send(self, event: str, uid: str, **headers: str) -> None:
        self.events.on_event(ev(event, Uniqueid=uid, Linkedid=CALLER, **headers))

    def channel(self, uid: str, name: str) -> None:
        self.send("Newchannel", uid, Channel=name, ChannelState="0", CallerIDNum="13900001111", Exten="s")

    def up(self, uid: str) -> None:
        self.send("Newstate", uid, ChannelState="6", ChannelStateDesc="Up")

    def answered_dial(self, dest: str, name: str) -> None:
        self.send(
            "DialEnd", CALLER, DialStatus="ANSWER", DestUniqueid=dest, DestLinkedid=CALLER, DestChannel=name
        )

    def hangup(self, uid: str) -> None:
        self.send("Hangup", uid, Cause="16", **{"Cause-txt": "Normal Clearing"})

    def first_leg(self) -> None:
        """The caller reaches the extension, which answers."""
        self.channel(CALLER, "PJSIP/carrier-in-00000001")
        self.channel(DESK, "PJSIP/t7x8001-00000002")
        self.at(2).up(DESK)
        self.answered_dial(DESK, "PJSIP/t7x8001-00000002")
        self.up(CALLER)
        self.send("BridgeEnter", DESK, BridgeUniqueid="b1", BridgeNumChannels="2")

    @property
    def call(self) -> LiveCall:
        found = self.registry.get(CALLER)
        assert found is not None
        return found


def test_a_blind_transfer_keeps_the_call_and_follows_the_new_leg() -> None:
    c = Call()
    c.first_leg()
    leg = c.at(10).registry.transfer_started(CALLER, "blind")
    assert leg is not None and leg.call_id == f"{CALLER}~x1"
    c.hangup(DESK)  # Asterisk hangs the transferor up
    assert c.legs_ended == [CALLER]  # the first leg ended: the extension left
    assert c.call.callee_left_at == T0 + timedelta(seconds=10)
    assert c.registry.is_live(CALLER) and not c.ended
    c.channel(TARGET, "PJSIP/carrier-out-00000003")
    assert leg.answered_at is None
    c.at(13).up(TARGET)
    c.answered_dial(TARGET, "PJSIP/carrier-out-00000003")
    assert leg.answered_at == T0 + timedelta(seconds=13)
    assert (leg.channel, leg.uniqueid) == ("PJSIP/carrier-out-00000003", TARGET)
    # the first leg's own answer and hard-stop channel are untouched by the new leg's
    assert c.call.answered_at == T0 + timedelta(seconds=2)
    assert c.call.callee_channel == "PJSIP/t7x8001-00000002"
    assert c.call.as_dict()["transfers"] == [
        {
            "call_id": f"{CALLER}~x1",
            "kind": "blind",
            "started_at": (T0 + timedelta(seconds=10)).isoformat(),
            "answered_at": (T0 + timedelta(seconds=13)).isoformat(),
        }
    ]
    c.at(40).hangup(CALLER)
    c.hangup(TARGET)
    assert c.legs_ended == [CALLER]  # the last channel ends the call, not a leg
    assert len(c.ended) == 1 and c.ended[0].ended_at == T0 + timedelta(seconds=40)
    assert "transferred:blind" in [step for _, step in c.ended[0].lifecycle]


def test_the_target_hanging_up_first_ends_its_leg() -> None:
    c = Call()
    c.first_leg()
    leg = c.at(10).registry.transfer_started(CALLER, "refer")
    assert leg is not None
    c.hangup(DESK)
    c.channel(TARGET, "PJSIP/carrier-out-00000003")
    c.at(12).up(TARGET)
    c.answered_dial(TARGET, "PJSIP/carrier-out-00000003")
    c.at(30).hangup(TARGET)
    assert c.legs_ended == [CALLER, f"{CALLER}~x1"] and leg.ended_at == T0 + timedelta(seconds=30)
    c.hangup(CALLER)
    assert len(c.ended) == 1


def test_an_attended_transfer_s_consultation_is_a_leg_until_the_transferor_leaves() -> None:
    c = Call()
    c.first_leg()
    # *2: Asterisk dials a Local channel for the transferor; its ;2 half runs the AGI
    c.at(5).channel(LOCAL1, "Local/13800000001@ss-transfer-00000001;1")
    c.channel(LOCAL2, "Local/13800000001@ss-transfer-00000001;2")
    leg = c.registry.transfer_started(CALLER, "attended")
    assert leg is not None
    # the transferor "dials" the Local channel (DialBegin/DialEnd of its own)
    c.send(
        "DialEnd",
        DESK,
        DialStatus="ANSWER",
        DestUniqueid=LOCAL1,
        DestLinkedid=CALLER,
        DestChannel="Local/13800000001@ss-transfer-00000001;1",
    )
    c.channel(TARGET, "PJSIP/carrier-out-00000003")
    c.at(8).up(TARGET)
    c.send(
        "DialEnd",
        LOCAL2,
        DialStatus="ANSWER",
        DestUniqueid=TARGET,
        DestLinkedid=CALLER,
        DestChannel="PJSIP/carrier-out-00000003",
    )
    c.up(LOCAL2)
    c.up(LOCAL1)
    assert leg.answered_at == T0 + timedelta(seconds=8) and leg.uniqueid == TARGET
    assert c.call.callee_uniqueid == DESK  # the first leg's party is still the transferor
    assert c.legs_ended == []  # consulting: both legs are talked
    c.at(20).hangup(DESK)  # the transferor completes the transfer
    c.hangup(LOCAL1)
    c.hangup(LOCAL2)
    assert c.legs_ended == [CALLER] and c.call.callee_left_at == T0 + timedelta(seconds=20)
    c.at(50).hangup(TARGET)
    c.hangup(CALLER)
    assert len(c.ended) == 1


def test_a_call_never_transferred_reports_no_leg() -> None:
    c = Call()
    c.first_leg()
    c.at(30).hangup(DESK)
    c.hangup(CALLER)
    assert c.legs_ended == [] and len(c.ended) == 1
    assert c.ended[0].as_dict()["transfers"] == []


def test_a_transfer_of_a_call_the_registry_does_not_know_is_none() -> None:
    assert CallRegistry(FixedClock(T0)).transfer_started("nope", "blind") is None
