"""The live call registry: the engine's channel events folded into calls keyed by linkedid.

A call is created with its first channel, answered when any of its channels goes Up,
bridged when a bridge holds two of its channels, and ends when its last channel hangs up.
Ended calls stay readable in a bounded history so the real-time call list shows them too.

What the registry believes is checked against the engine's own list of live channels
(``reconcile``, run continuously by softswitch.callpath.audit, not only after a reconnect):
channels the engine no longer has are dropped (a call left with none ends, its end marked
as not observed), channels it has that the registry never saw are adopted. Only channels
seen before the list was asked for are judged (``mark``), so a call set up meanwhile is
never ended by a list that predates it. The caller makes sure the events the engine
emitted before the list have been folded first (CallControl.live_channels)."""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from softswitch.core.clock import Clock


@dataclass(frozen=True, slots=True)
class LiveChannel:
    """One channel the engine has now, from its own list."""

    uniqueid: str
    linkedid: str
    channel: str
    up: bool  # answered
    caller: str = ""
    exten: str = ""


@dataclass
class TransferLeg:
    """A leg a transfer added to a call (dialplan.transfers): the transferred party and
    the target, with a reservation of its own (``call_id``) when the tenant pays for it."""

    call_id: str  # <linkedid>~x<n>: the reservation's and the transfer record's key
    kind: str  # blind | attended | refer
    started_at: datetime
    after_seq: int  # the registry's event count when it started: its channels come later
    answered_at: datetime | None = None  # the target answered
    channel: str = ""  # the target's answering channel (its hard stop)
    uniqueid: str = ""  # ... and its id
    ended_at: datetime | None = None  # the target's channel hung up


@dataclass
class LiveCall:
    linkedid: str
    caller: str
    called: str
    created_at: datetime
    channels: set[str] = field(default_factory=set)
    answered_at: datetime | None = None
    bridged_at: datetime | None = None
    ended_at: datetime | None = None
    hangup_cause: int | None = None
    hangup_cause_text: str = ""
    caller_channel: str = ""  # the first channel's name (e.g. PJSIP/carrier-in-00000001)
    alerted_at: datetime | None = None  # another channel first rang or answered (for PDD)
    callee_channel: str = ""  # the channel that answered the Dial
    callee_uniqueid: str = ""
    # The first leg's answering party left while the call went on (a transfer).
    callee_left_at: datetime | None = None
    # A channel other than the caller's first answered: a bound destination (the forwarded
    # leg's answer, what split billing charges from; rating.split).
    callee_answered_at: datetime | None = None
    # False when the end was inferred (the engine no longer lists the call's channels)
    # rather than seen in Hangup events: its times are then only as good as the check.
    end_observed: bool = True
    # Known from the engine's channel list, not from its events: answered_at is when we
    # learnt of it, not when it was answered.
    adopted: bool = False
    # A call the platform placed (click-to-dial): its first channel is our own agent's
    # phone, so the call is answered — billed, recorded as answered — only when another
    # channel (the customer's) answers.
    billed_from_callee: bool = False
    # Legs added by transfers, in order (the call keeps its linkedid throughout).
    legs: list[TransferLeg] = field(default_factory=list)

    @property
    def times_exact(self) -> bool:
        """Answer and end were both seen as they happened (else ask the engine's CDR)."""
        return self.end_observed and not self.adopted

    # (time, step) in the order seen: created, answered, bridged, hung_up
    lifecycle: list[tuple[datetime, str]] = field(default_factory=list)

    @property
    def state(self) -> str:
        if self.ended_at:
            return "ended"
        if self.bridged_at:
            return "bridged"
        if self.answered_at:
            return "answered"
        return "ringing"

    def as_dict(self) -> dict[str, object]:
        return {
            "linkedid": self.linkedid,
            "caller": self.caller,
            "called": self.called,
            "state": self.state,
            "created_at": self.created_at.isoformat(),
            "answered_at": self.answered_at.isoformat() if self.answered_at else None,
            "bridged_at": self.bridged_at.isoformat() if self.bridged_at else None,
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "hangup_cause": self.hangup_cause,
            "hangup_cause_text": self.hangup_cause_text,
            "channels": len(self.channels),
            "lifecycle": [step for _, step in self.lifecycle],
            "transfers": [
                {
                    "call_id": leg.call_id,
                    "kind": leg.kind,
                    "started_at": leg.started_at.isoformat(),
                    "answered_at": leg.answered_at.isoformat() if leg.answered_at else None,
                }
                for leg in self.legs
            ],
        }


class CallRegistry:
    def __init__(self, clock: Clock, history: int = 2000) -> None:
        self._clock = clock
        self._live: dict[str, LiveCall] = {}
        self._by_channel: dict[str, str] = {}  # uniqueid -> linkedid
        self._ended: deque[LiveCall] = deque(maxlen=history)
        self._on_end: list[Callable[[LiveCall], None]] = []
        self._on_leg_end: list[Callable[[LiveCall, str], None]] = []
        self._seq = 0  # events folded so far
        self._seen: dict[str, int] = {}  # uniqueid -> event number that first showed it
        # Channels hung up lately: a list that was taken before their Hangup was folded
        # still shows them, and they must not be adopted back.
        self._hung_up: OrderedDict[str, None] = OrderedDict()
        self._hung_up_max = max(history * 4, 10_000)
        self.adopted = 0  # channels adopted from the engine's list, since start
        # Calls announced by bill_from_callee_answer before their first channel appears.
        self._callee_billed: OrderedDict[str, None] = OrderedDict()

    def add_end_listener(self, cb: Callable[[LiveCall], None]) -> None:
        self._on_end.append(cb)

    def add_leg_end_listener(self, cb: Callable[[LiveCall, str], None]) -> None:
        """``cb(call, leg)`` when, in a call that has been transferred, one leg's answering
        party hangs up while the call goes on: ``leg`` is the leg's call id (the linkedid
        for the call's first leg, TransferLeg.call_id for the others)."""
        self._on_leg_end.append(cb)

    def live(self) -> list[LiveCall]:
        return list(self._live.values())

    def recent(self, limit: int = 100) -> list[LiveCall]:
        return list(self._ended)[-limit:][::-1]

    def is_live(self, linkedid: str) -> bool:
        return linkedid in self._live

    def mark(self) -> int:
        """Taken just before asking the engine for its live channels: ``reconcile`` judges
        only the channels seen before this mark."""
        return self._seq

    def get(self, linkedid: str) -> LiveCall | None:
        found = self._live.get(linkedid)
        if found is not None:
            return found
        return next((c for c in reversed(self._ended) if c.linkedid == linkedid), None)

    # ------------------------------------------------------------------ what the engine reports
    # Engine-neutral: softswitch/engines/<engine>/ turns its own events into these calls
    # (Asterisk: AMI Newchannel, Newstate, BridgeEnter, DialEnd, Hangup).
    def channel_created(
        self, uniqueid: str, linkedid: str, channel: str, caller: str, exten: str, step: str = "created"
    ) -> LiveCall | None:
        if not uniqueid:
            return None
        self._seq += 1
        linkedid = linkedid or uniqueid
        now = self._clock.now()
        call = self._live.get(linkedid)
        if call is None:
            call = LiveCall(linkedid, caller, exten, now)
            if linkedid in self._callee_billed:
                del self._callee_billed[linkedid]
                call.billed_from_callee = True
            call.caller_channel = channel
            call.lifecycle.append((now, step))
            self._live[linkedid] = call
        call.channels.add(uniqueid)
        self._by_channel[uniqueid] = linkedid
        self._seen.setdefault(uniqueid, self._seq)
        return call

    def bill_from_callee_answer(self, linkedid: str) -> None:
        """The call `linkedid` is about to be placed by the platform (click-to-dial): its
        first channel's answer is our agent's, not the called party's."""
        call = self._live.get(linkedid)
        if call is not None:
            call.billed_from_callee = True
            return
        self._callee_billed[linkedid] = None
        while len(self._callee_billed) > 10_000:  # announced calls whose channel never came
            self._callee_billed.popitem(last=False)

    def transfer_started(self, linkedid: str, kind: str) -> TransferLeg | None:
        """A transfer of live call ``linkedid`` was decided: the channels that appear from
        now on belong to its new leg. Returns the leg (None: no such live call)."""
        call = self._live.get(linkedid)
        if call is None:
            return None
        now = self._clock.now()
        leg = TransferLeg(f"{linkedid}~x{len(call.legs) + 1}", kind, now, self._seq)
        call.legs.append(leg)
        call.lifecycle.append((now, f"transferred:{kind}"))
        return leg

    def _leg_of(self, call: LiveCall, uniqueid: str) -> TransferLeg | None:
        """The transfer leg a channel belongs to: the latest one that started before the
        channel first appeared (None: the call's own first leg)."""
        seen = self._seen.get(uniqueid)
        if seen is None or uniqueid == call.linkedid:
            return None
        return next((leg for leg in reversed(call.legs) if seen > leg.after_seq), None)

    def _call_of(self, uniqueid: str) -> LiveCall | None:
        linkedid = self._by_channel.get(uniqueid)
        return self._live.get(linkedid) if linkedid else None

    def channel_alerting(self, uniqueid: str, up: bool) -> None:
        """A channel rings (``up`` False) or is answered (``up`` True)."""
        self._seq += 1
        call = self._call_of(uniqueid)
        if call is None:
            return
        now = self._clock.now()
        if call.alerted_at is None and uniqueid != call.linkedid:
            call.alerted_at = now
        if up and call.callee_answered_at is None and uniqueid != call.linkedid:
            call.callee_answered_at = now  # the same instant as answered_at if it is the first
        leg = self._leg_of(call, uniqueid) if up and call.legs else None
        if leg is not None and leg.answered_at is None:
            leg.answered_at = now
            call.lifecycle.append((now, "transfer_answered"))
        if up and call.billed_from_callee and uniqueid == call.linkedid:
            call.lifecycle.append((now, "agent_answered"))
        elif up and call.answered_at is None:
            call.answered_at = now
            call.lifecycle.append((call.answered_at, "answered"))

    def channel_bridged(self, uniqueid: str, channels_in_bridge: int) -> None:
        self._seq += 1
        call = self._call_of(uniqueid)
        if call is None or call.bridged_at is not None:
            return
        if channels_in_bridge >= 2:
            call.bridged_at = self._clock.now()
            call.lifecycle.append((call.bridged_at, "bridged"))

    def callee_answered(self, uniqueid: str, linkedid: str, channel: str) -> None:
        """The destination channel ``channel`` answered its call (the hard stop's target)."""
        self._seq += 1
        call = self._live.get(self._by_channel.get(uniqueid) or linkedid)
        if call is None:
            return
        leg = self._leg_of(call, uniqueid) if call.legs else None
        if leg is not None:
            leg.channel, leg.uniqueid = channel, uniqueid
        else:
            call.callee_channel, call.callee_uniqueid = channel, uniqueid

    def channel_hung_up(self, uniqueid: str, cause: int, cause_text: str) -> None:
        self._seq += 1
        call = self._call_of(uniqueid)
        self._forget_channel(uniqueid)
        if call is None:
            return
        call.channels.discard(uniqueid)
        if call.legs and call.channels:
            self._leg_party_left(call, uniqueid)
        if call.hangup_cause is None or uniqueid == call.linkedid:
            # The cause the caller's own channel ended with is the one that describes the call.
            call.hangup_cause = cause
            call.hangup_cause_text = cause_text
        if not call.channels:
            self._finish(call)

    def _leg_party_left(self, call: LiveCall, uniqueid: str) -> None:
        now = self._clock.now()
        ended = ""
        if uniqueid == call.callee_uniqueid and call.callee_left_at is None:
            call.callee_left_at = now
            ended = call.linkedid
        else:
            for leg in call.legs:
                if leg.uniqueid == uniqueid and leg.ended_at is None:
                    leg.ended_at = now
                    ended = leg.call_id
        if ended:
            for cb in self._on_leg_end:
                cb(call, ended)

    def _finish(self, call: LiveCall) -> None:
        call.ended_at = self._clock.now()
        call.lifecycle.append((call.ended_at, "hung_up"))
        self._live.pop(call.linkedid, None)
        self._ended.append(call)
        for cb in self._on_end:
            cb(call)

    def _forget_channel(self, uniqueid: str) -> None:
        self._by_channel.pop(uniqueid, None)
        self._seen.pop(uniqueid, None)
        self._hung_up[uniqueid] = None
        while len(self._hung_up) > self._hung_up_max:
            self._hung_up.popitem(last=False)

    def reconcile(self, listing: Iterable[LiveChannel], as_of: int | None = None) -> list[LiveCall]:
        """Align the registry with the engine's live channels (``listing``). ``as_of`` is
        ``mark()`` taken before the list was asked for (default: now). Returns the calls
        ended because none of their channels lives."""
        as_of = self._seq if as_of is None else as_of
        entries = [c for c in listing if c.uniqueid]
        alive = {c.uniqueid for c in entries}
        for call in self._live.values():
            # A surviving call forgets its dead channels, or it could never end.
            dead = {uid for uid in call.channels - alive if self._seen.get(uid, -1) <= as_of}
            for uid in dead:
                self._forget_channel(uid)
            call.channels -= dead
        gone = [c for c in self._live.values() if not c.channels]
        for call in gone:
            call.hangup_cause_text = (
                call.hangup_cause_text or "ended unobserved (not in the engine's channel list)"
            )
            call.end_observed = False
            self._finish(call)
        for entry in entries:
            self._adopt(entry)
        return gone

    def _adopt(self, live: LiveChannel) -> None:
        """A live channel whose events we never saw (they were lost, or we started after
        it): known from now on, so its call is renewed, ended and recorded like any other."""
        if live.uniqueid in self._by_channel or live.uniqueid in self._hung_up:
            return
        call = self.channel_created(
            live.uniqueid, live.linkedid, live.channel, live.caller, live.exten, "adopted"
        )
        if call is None:
            return
        self.adopted += 1
        call.adopted = True
        own_leg = call.billed_from_callee and live.uniqueid == call.linkedid
        if live.up and call.answered_at is None and not own_leg:
            call.answered_at = self._clock.now()
            call.lifecycle.append((call.answered_at, "answered"))
        if live.uniqueid != call.linkedid and live.up and not call.callee_channel:
            call.callee_channel = live.channel
        if live.uniqueid != call.linkedid and live.up and call.callee_answered_at is None:
            call.callee_answered_at = self._clock.now()
