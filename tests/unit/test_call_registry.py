"""CallRegistry golden tests: AMI event sequences as Asterisk 22 sends them, folded into
calls through the Asterisk adapter (softswitch.engines.asterisk.events). Each sequence is
written out as the data it is."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from softswitch.callpath.registry import CallRegistry, LiveCall, LiveChannel
from softswitch.core.clock import FixedClock
from softswitch.engines.asterisk.ami.codec import AmiMessage
from softswitch.engines.asterisk.control import live_channel_of
from softswitch.engines.asterisk.events import AmiChannelEvents

T0 = datetime(2026, 11, 23, 14, 30, tzinfo=UTC)

CALLER = "1763908200.10"  # the carrier's inbound channel: its uniqueid is the linkedid
CALLEE = "1763908200.11"  # the outbound PJSIP leg to the bound destination


def ev(event: str, **headers: str) -> AmiMessage:
    return AmiMessage(headers=(("Event", event), *headers.items()))


def newchannel(uid: str, linkedid: str, channel: str, caller: str, exten: str) -> AmiMessage:
    return ev(
        "Newchannel",
        Channel=channel,
        ChannelState="0",
        ChannelStateDesc="Down",
        CallerIDNum=caller,
        Exten=exten,
        Context="from-carrier",
        Uniqueid=uid,
        Linkedid=linkedid,
    )


def newstate(uid: str, linkedid: str, state: str, desc: str) -> AmiMessage:
    return ev("Newstate", ChannelState=state, ChannelStateDesc=desc, Uniqueid=uid, Linkedid=linkedid)


def bridge_enter(uid: str, linkedid: str, count: int) -> AmiMessage:
    return ev(
        "BridgeEnter",
        BridgeUniqueid="b7c0d9f2",
        BridgeType="basic",
        BridgeNumChannels=str(count),
        Uniqueid=uid,
        Linkedid=linkedid,
    )


def listed(*uids: str, linkedid: str = "", state: str = "6") -> list[LiveChannel]:
    """CoreShowChannel entries, as Asterisk lists its live channels, read as LiveChannels."""
    return [
        live_channel_of(
            ev(
                "CoreShowChannel",
                Channel=f"PJSIP/x-{uid}",
                Uniqueid=uid,
                Linkedid=linkedid or uid.split(".")[0] + ".1",
                ChannelState=state,
                CallerIDNum="139",
                Exten="4001",
            )
        )
        for uid in uids
    ]


def hangup(uid: str, linkedid: str, cause: int, text: str) -> AmiMessage:
    return ev("Hangup", Cause=str(cause), **{"Cause-txt": text}, Uniqueid=uid, Linkedid=linkedid)


ROUTED_CALL = [
    newchannel(CALLER, CALLER, "PJSIP/carrier-in-00000001", "13900139000", "4001234567"),
    newchannel(CALLEE, CALLER, "PJSIP/carrier-out-00000002", "13900139000", "s"),
    newstate(CALLEE, CALLER, "5", "Ringing"),
    newstate(CALLEE, CALLER, "6", "Up"),
    newstate(CALLER, CALLER, "6", "Up"),
    bridge_enter(CALLEE, CALLER, 1),
    bridge_enter(CALLER, CALLER, 2),
    hangup(CALLEE, CALLER, 16, "Normal Clearing"),
    hangup(CALLER, CALLER, 16, "Normal Clearing"),
]

REFUSED_CALL = [
    newchannel("1763908300.20", "1763908300.20", "PJSIP/carrier-in-00000003", "13900139000", "4009999999"),
    hangup("1763908300.20", "1763908300.20", 1, "Unallocated (unassigned) number"),
]


class TickingClock(FixedClock):
    """A FixedClock the test moves forward by one second per event."""

    def tick(self) -> None:
        self.at += timedelta(seconds=1)


def feed(registry: CallRegistry, events: list[AmiMessage], clock: TickingClock | None = None) -> None:
    for msg in events:
        if clock is not None:
            clock.tick()
        AmiChannelEvents(registry).on_event(msg)


def steps(call: LiveCall) -> list[str]:
    return [step for _, step in call.lifecycle]


def test_routed_call_lifecycle() -> None:
    clock = TickingClock(T0)
    registry = CallRegistry(clock)
    feed(registry, ROUTED_CALL[:2], clock)
    [live] = registry.live()
    assert (live.linkedid, live.caller, live.called, live.state) == (
        CALLER,
        "13900139000",
        "4001234567",
        "ringing",
    )
    assert live.channels == {CALLER, CALLEE}

    feed(registry, ROUTED_CALL[2:], clock)
    assert registry.live() == []
    [call] = registry.recent()
    assert steps(call) == ["created", "answered", "bridged", "hung_up"]
    assert (call.hangup_cause, call.hangup_cause_text) == (16, "Normal Clearing")
    assert call.state == "ended"
    assert call.created_at == T0 + timedelta(seconds=1)
    assert call.answered_at == T0 + timedelta(seconds=4)  # the callee's Newstate Up
    assert call.bridged_at == T0 + timedelta(seconds=7)  # the second BridgeEnter
    assert call.ended_at == T0 + timedelta(seconds=9)  # the last Hangup
    assert [t for t, _ in call.lifecycle] == [
        call.created_at,
        call.answered_at,
        call.bridged_at,
        call.ended_at,
    ]
    assert registry.get(CALLER) is call
    assert call.as_dict() == {
        "linkedid": CALLER,
        "caller": "13900139000",
        "called": "4001234567",
        "state": "ended",
        "created_at": "2026-11-23T14:30:01+00:00",
        "answered_at": "2026-11-23T14:30:04+00:00",
        "bridged_at": "2026-11-23T14:30:07+00:00",
        "ended_at": "2026-11-23T14:30:09+00:00",
        "hangup_cause": 16,
        "hangup_cause_text": "Normal Clearing",
        "channels": 0,
        "lifecycle": ["created", "answered", "bridged", "hung_up"],
        "transfers": [],
    }


def test_states_along_the_routed_call() -> None:
    registry = CallRegistry(FixedClock(T0))
    seen = []
    for msg in ROUTED_CALL:
        AmiChannelEvents(registry).on_event(msg)
        call = registry.get(CALLER)
        assert call is not None
        seen.append(call.state)
    assert seen == [
        "ringing",  # Newchannel caller
        "ringing",  # Newchannel callee
        "ringing",  # Newstate Ringing
        "answered",  # Newstate Up (callee)
        "answered",  # Newstate Up (caller)
        "answered",  # BridgeEnter, 1 channel
        "bridged",  # BridgeEnter, 2 channels
        "bridged",  # Hangup callee
        "ended",  # Hangup caller
    ]


def test_refused_call() -> None:
    registry = CallRegistry(FixedClock(T0))
    feed(registry, REFUSED_CALL)
    assert registry.live() == []
    [call] = registry.recent()
    assert steps(call) == ["created", "hung_up"]
    assert (call.hangup_cause, call.hangup_cause_text) == (1, "Unallocated (unassigned) number")
    assert call.answered_at is None and call.bridged_at is None
    assert call.called == "4009999999"


def test_caller_channel_cause_wins_over_the_callee_cause() -> None:
    registry = CallRegistry(FixedClock(T0))
    feed(
        registry,
        [
            *ROUTED_CALL[:2],
            hangup(CALLEE, CALLER, 17, "User busy"),
            hangup(CALLER, CALLER, 19, "No user responding"),
        ],
    )
    [call] = registry.recent()
    assert (call.hangup_cause, call.hangup_cause_text) == (19, "No user responding")


def test_events_for_unknown_uniqueids_are_ignored() -> None:
    registry = CallRegistry(FixedClock(T0))
    feed(
        registry,
        [
            newstate("999.1", "999.1", "6", "Up"),
            bridge_enter("999.1", "999.1", 2),
            hangup("999.1", "999.1", 16, "Normal Clearing"),
            ev("FullyBooted", Status="Fully Booted"),
            ev("VarSet", Variable="SS_ACTION", Value="dial", Uniqueid="999.1"),
            AmiMessage(headers=(("Response", "Success"),)),
        ],
    )
    assert registry.live() == [] and registry.recent() == []
    assert registry.get("999.1") is None


def test_newchannel_without_uniqueid_is_ignored() -> None:
    registry = CallRegistry(FixedClock(T0))
    AmiChannelEvents(registry).on_event(ev("Newchannel", Channel="PJSIP/x-1", Linkedid="1.1"))
    assert registry.live() == []


def test_unknown_events_interleaved_do_not_change_the_golden_result() -> None:
    registry = CallRegistry(FixedClock(T0))
    noisy: list[AmiMessage] = []
    for msg in ROUTED_CALL:
        noisy.append(msg)
        noisy.append(newstate("555.5", "555.5", "6", "Up"))
        noisy.append(ev("Newexten", Uniqueid=CALLER, Linkedid=CALLER, Application="AGI"))
    feed(registry, noisy)
    [call] = registry.recent()
    assert steps(call) == ["created", "answered", "bridged", "hung_up"]


def test_end_listeners_called_exactly_once() -> None:
    registry = CallRegistry(FixedClock(T0))
    first: list[str] = []
    second: list[str] = []
    registry.add_end_listener(lambda c: first.append(c.linkedid))
    registry.add_end_listener(lambda c: second.append(c.linkedid))
    feed(registry, ROUTED_CALL)
    # A duplicate Hangup (e.g. replayed after a reconnect) must not end the call twice.
    feed(registry, [hangup(CALLER, CALLER, 16, "Normal Clearing"), hangup(CALLEE, CALLER, 16, "")])
    assert registry.reconcile([]) == []
    assert first == [CALLER] and second == [CALLER]


def test_reconcile_ends_only_calls_without_a_surviving_channel() -> None:
    registry = CallRegistry(FixedClock(T0))
    ended: list[str] = []
    registry.add_end_listener(lambda c: ended.append(c.linkedid))
    feed(
        registry,
        [
            newchannel("100.1", "100.1", "PJSIP/carrier-in-1", "139", "4001"),
            newchannel("100.2", "100.1", "PJSIP/carrier-out-2", "139", "s"),
            newchannel("200.1", "200.1", "PJSIP/carrier-in-3", "137", "4002"),
            newchannel("300.1", "300.1", "PJSIP/carrier-in-4", "136", "4003"),
        ],
    )
    # After the reconnect only the callee leg of call 100 and call 300 still exist.
    gone = registry.reconcile(listed("100.2", "300.1"))
    assert [c.linkedid for c in gone] == ["200.1"]
    assert ended == ["200.1"]
    assert sorted(c.linkedid for c in registry.live()) == ["100.1", "300.1"]
    [lost] = registry.recent()
    assert lost.linkedid == "200.1"
    assert steps(lost) == ["created", "hung_up"]
    assert lost.hangup_cause_text.startswith("ended unobserved") and not lost.end_observed
    assert lost.channels == set()
    # A Hangup that arrives later for the lost call is ignored.
    feed(registry, [hangup("200.1", "200.1", 16, "Normal Clearing")])
    assert ended == ["200.1"]
    # A surviving call still ends normally once Asterisk reports all its channels gone.
    feed(registry, [hangup("300.1", "300.1", 16, "Normal Clearing")])
    assert ended == ["200.1", "300.1"]


def test_surviving_call_ends_when_its_last_surviving_channel_hangs_up() -> None:
    registry = CallRegistry(FixedClock(T0))
    ended: list[str] = []
    registry.add_end_listener(lambda c: ended.append(c.linkedid))
    feed(registry, ROUTED_CALL[:7])  # bridged call, then AMI drops
    # While we were away the caller leg hung up (its Hangup was lost); the callee leg lives.
    assert registry.reconcile(listed(CALLEE, linkedid=CALLER)) == []
    feed(registry, [hangup(CALLEE, CALLER, 16, "Normal Clearing")])
    assert registry.live() == []
    assert ended == [CALLER]


def test_history_is_bounded_and_newest_first() -> None:
    registry = CallRegistry(FixedClock(T0), history=3)
    for n in range(1, 6):
        uid = f"400.{n}"
        feed(
            registry,
            [newchannel(uid, uid, f"PJSIP/carrier-in-{n}", "139", "4001"), hangup(uid, uid, 16, "")],
        )
    assert [c.linkedid for c in registry.recent()] == ["400.5", "400.4", "400.3"]
    assert [c.linkedid for c in registry.recent(limit=2)] == ["400.5", "400.4"]
    assert registry.get("400.1") is None
    assert registry.get("400.3") is not None


def test_a_minimal_duck_typed_event_works_too() -> None:
    class FakeEvent:
        def __init__(self, event: str, **headers: str) -> None:
            self.event = event
            self._headers = headers

        def get(self, key: str, default: str | None = None) -> str | None:
            return self._headers.get(key, default)

    registry = CallRegistry(FixedClock(T0))
    AmiChannelEvents(registry).on_event(
        FakeEvent("Newchannel", Uniqueid="7.1", Linkedid="7.1", CallerIDNum="1", Exten="2")
    )
    AmiChannelEvents(registry).on_event(
        FakeEvent("Hangup", Uniqueid="7.1", Cause="21", **{"Cause-txt": "Call Rejected"})
    )
    [call] = registry.recent()
    assert (call.hangup_cause, steps(call)) == (21, ["created", "hung_up"])


def test_a_list_taken_before_a_channel_appeared_does_not_end_its_call() -> None:
    registry = CallRegistry(FixedClock(T0))
    mark = registry.mark()  # the list is asked for ...
    feed(registry, [newchannel("500.1", "500.1", "PJSIP/carrier-in-5", "139", "4001")])  # ... a call starts
    assert registry.reconcile([], as_of=mark) == []  # ... the list (without it) arrives
    assert [c.linkedid for c in registry.live()] == ["500.1"]
    assert [c.linkedid for c in registry.reconcile([])] == ["500.1"]  # a later list judges it


def test_channels_never_seen_are_adopted_and_end_normally() -> None:
    registry = CallRegistry(FixedClock(T0))
    ended: list[LiveCall] = []
    registry.add_end_listener(ended.append)
    # Started while the events were lost: only the engine's list knows the call.
    assert registry.reconcile(listed("600.1", "600.2", linkedid="600.1")) == []
    [call] = registry.live()
    assert call.linkedid == "600.1" and call.answered_at is not None
    assert call.callee_channel == "PJSIP/x-600.2" and steps(call) == ["adopted", "answered"]
    feed(registry, [hangup("600.2", "600.1", 16, ""), hangup("600.1", "600.1", 16, "Normal Clearing")])
    assert [c.linkedid for c in ended] == ["600.1"] and ended[0].end_observed


def test_a_channel_hung_up_after_the_list_was_taken_is_not_adopted_back() -> None:
    registry = CallRegistry(FixedClock(T0))
    feed(registry, ROUTED_CALL)  # the whole call, hung up
    assert registry.reconcile(listed(CALLER, CALLEE, linkedid=CALLER)) == []  # a stale list
    assert registry.live() == []


AGENT = "c2d-7-0123456789abcdef"  # click-to-dial: the Originate's ChannelId is the linkedid
CUSTOMER = "1763908400.31"
CLICK_TO_DIAL = [
    newchannel(AGENT, AGENT, "PJSIP/t7-8001-00000005", "8001", "13900139000"),
    newstate(AGENT, AGENT, "5", "Ringing"),
    newstate(AGENT, AGENT, "6", "Up"),  # the agent answers: our own phone
    newchannel(CUSTOMER, AGENT, "PJSIP/carrier-out-00000006", "4001234567", "s"),
    newstate(CUSTOMER, AGENT, "5", "Ringing"),
    newstate(CUSTOMER, AGENT, "6", "Up"),  # the customer answers: the call is answered
    hangup(CUSTOMER, AGENT, 16, "Normal Clearing"),
    hangup(AGENT, AGENT, 16, "Normal Clearing"),
]


def test_a_click_to_dial_call_is_answered_when_the_customer_answers_not_the_agent() -> None:
    clock = TickingClock(T0)
    registry = CallRegistry(clock)
    registry.bill_from_callee_answer(AGENT)
    feed(registry, CLICK_TO_DIAL, clock)
    [call] = registry.recent()
    assert call.answered_at == T0 + timedelta(seconds=6)  # the customer's Up, not the agent's (3)
    assert steps(call) == ["created", "agent_answered", "answered", "hung_up"]


def test_a_click_to_dial_customer_who_never_answers_leaves_the_call_unanswered() -> None:
    clock = TickingClock(T0)
    registry = CallRegistry(clock)
    registry.bill_from_callee_answer(AGENT)
    feed(registry, [*CLICK_TO_DIAL[:5], hangup(CUSTOMER, AGENT, 19, "No answer"), CLICK_TO_DIAL[-1]], clock)
    [call] = registry.recent()
    assert call.answered_at is None


def test_without_the_announcement_the_first_answer_counts_as_before() -> None:
    clock = TickingClock(T0)
    registry = CallRegistry(clock)
    feed(registry, CLICK_TO_DIAL, clock)
    [call] = registry.recent()
    assert call.answered_at == T0 + timedelta(seconds=3)
