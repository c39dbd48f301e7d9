"""The live call registry: AMI channel events folded into calls keyed by linkedid.

A call is created with its first channel, answered when any of its channels goes Up,
bridged when a bridge holds two of its channels, and ends when its last channel hangs up.
Ended calls stay readable in a bounded history so the real-time call list shows them too.

What the registry believes is checked against the engine's own list of live channels
(``reconcile``, run continuously by softswitch.callpath.audit, not only after a reconnect):
channels the engine no longer has are dropped (a call left with none ends, its end marked
as not observed), channels it has that the registry never saw are adopted. Only channels
seen before the list was asked for are judged (``mark``), so a call set up meanwhile is
never ended by a list that predates it. The caller makes sure the events the engine
queued before the list have been folded first (engine_audit's barrier)."""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from softswitch.core.clock import Clock


class ChannelEvent(Protocol):
    """What the registry needs of an AMI message (softswitch.engines.asterisk.ami.codec.AmiMessage)."""

    @property
    def event(self) -> str | None: ...

    def get(self, key: str, default: str | None = None) -> str | None: ...


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
    # False when the end was inferred (the engine no longer lists the call's channels)
    # rather than seen in Hangup events: its times are then only as good as the check.
    end_observed: bool = True
    # Known from the engine's channel list, not from its events: answered_at is when we
    # learnt of it, not when it was answered.
    adopted: bool = False

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
        }


class CallRegistry:
    def __init__(self, clock: Clock, history: int = 2000) -> None:
        self._clock = clock
        self._live: dict[str, LiveCall] = {}
        self._by_channel: dict[str, str] = {}  # uniqueid -> linkedid
        self._ended: deque[LiveCall] = deque(maxlen=history)
        self._on_end: list[Callable[[LiveCall], None]] = []
        self._seq = 0  # events folded so far
        self._seen: dict[str, int] = {}  # uniqueid -> event number that first showed it
        # Channels hung up lately: a list that was taken before their Hangup was folded
        # still shows them, and they must not be adopted back.
        self._hung_up: OrderedDict[str, None] = OrderedDict()
        self._hung_up_max = max(history * 4, 10_000)
        self.adopted = 0  # channels adopted from the engine's list, since start

    def add_end_listener(self, cb: Callable[[LiveCall], None]) -> None:
        self._on_end.append(cb)

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

    def on_ami_event(self, msg: ChannelEvent) -> None:
        handler = self._HANDLERS.get(msg.event or "")
        if handler is not None:
            self._seq += 1
            handler(self, msg)

    def _on_newchannel(self, msg: ChannelEvent) -> None:
        self._newchannel(msg)

    def _newchannel(self, msg: ChannelEvent, step: str = "created") -> LiveCall | None:
        uniqueid = msg.get("Uniqueid") or ""
        linkedid = msg.get("Linkedid") or uniqueid
        if not uniqueid:
            return None
        now = self._clock.now()
        call = self._live.get(linkedid)
        if call is None:
            call = LiveCall(linkedid, msg.get("CallerIDNum") or "", msg.get("Exten") or "", now)
            call.caller_channel = msg.get("Channel") or ""
            call.lifecycle.append((now, step))
            self._live[linkedid] = call
        call.channels.add(uniqueid)
        self._by_channel[uniqueid] = linkedid
        self._seen.setdefault(uniqueid, self._seq)
        return call

    def _call_of(self, msg: ChannelEvent) -> LiveCall | None:
        linkedid = self._by_channel.get(msg.get("Uniqueid") or "")
        return self._live.get(linkedid) if linkedid else None

    def _newstate(self, msg: ChannelEvent) -> None:
        call = self._call_of(msg)
        if (
            call is not None
            and call.alerted_at is None
            and msg.get("ChannelState") in ("5", "6")  # Ringing, Up
            and msg.get("Uniqueid") != call.linkedid
        ):
            call.alerted_at = self._clock.now()
        if call is not None and msg.get("ChannelState") == "6" and call.answered_at is None:
            call.answered_at = self._clock.now()
            call.lifecycle.append((call.answered_at, "answered"))

    def _bridge_enter(self, msg: ChannelEvent) -> None:
        call = self._call_of(msg)
        if call is None or call.bridged_at is not None:
            return
        if int(msg.get("BridgeNumChannels") or "0") >= 2:
            call.bridged_at = self._clock.now()
            call.lifecycle.append((call.bridged_at, "bridged"))

    def _dial_end(self, msg: ChannelEvent) -> None:
        if msg.get("DialStatus") != "ANSWER":
            return
        linkedid = self._by_channel.get(msg.get("DestUniqueid") or "") or msg.get("DestLinkedid") or ""
        call = self._live.get(linkedid)
        if call is not None:
            call.callee_channel = msg.get("DestChannel") or ""

    def _hangup(self, msg: ChannelEvent) -> None:
        uniqueid = msg.get("Uniqueid") or ""
        call = self._call_of(msg)
        self._forget_channel(uniqueid)
        if call is None:
            return
        call.channels.discard(uniqueid)
        if call.hangup_cause is None or uniqueid == call.linkedid:
            # The cause the caller's own channel ended with is the one that describes the call.
            try:
                call.hangup_cause = int(msg.get("Cause") or "0")
            except ValueError:
                call.hangup_cause = 0
            call.hangup_cause_text = msg.get("Cause-txt") or ""
        if not call.channels:
            self._finish(call)

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

    def reconcile(self, listing: Iterable[ChannelEvent], as_of: int | None = None) -> list[LiveCall]:
        """Align the registry with the engine's live channels (``listing``: one
        CoreShowChannel-like entry per channel, Uniqueid/Linkedid/Channel/ChannelState/
        CallerIDNum/Exten). ``as_of`` is ``mark()`` taken before the list was asked for
        (default: now). Returns the calls ended because none of their channels lives."""
        as_of = self._seq if as_of is None else as_of
        entries = [e for e in listing if e.get("Uniqueid")]
        alive = {e.get("Uniqueid") or "" for e in entries}
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

    def _adopt(self, entry: ChannelEvent) -> None:
        """A live channel whose events we never saw (they were lost, or we started after
        it): known from now on, so its call is renewed, ended and recorded like any other."""
        uniqueid = entry.get("Uniqueid") or ""
        if uniqueid in self._by_channel or uniqueid in self._hung_up:
            return
        call = self._newchannel(entry, step="adopted")
        if call is None:
            return
        self.adopted += 1
        call.adopted = True
        if entry.get("ChannelState") == "6" and call.answered_at is None:
            call.answered_at = self._clock.now()
            call.lifecycle.append((call.answered_at, "answered"))
        if uniqueid != call.linkedid and entry.get("ChannelState") == "6" and not call.callee_channel:
            call.callee_channel = entry.get("Channel") or ""

    _HANDLERS: dict[str, Callable[[CallRegistry, ChannelEvent], None]] = {
        "Newchannel": _on_newchannel,
        "Newstate": _newstate,
        "BridgeEnter": _bridge_enter,
        "DialEnd": _dial_end,
        "Hangup": _hangup,
    }
