"""Asterisk's AMI channel events, folded into the call registry's engine-neutral reports.

manager.conf sends the control plane only these five events (eventfilter)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from softswitch.callpath.registry import CallRegistry


class ChannelEvent(Protocol):
    """What is read of an AMI message (softswitch.engines.asterisk.ami.codec.AmiMessage)."""

    @property
    def event(self) -> str | None: ...

    def get(self, key: str, default: str | None = None) -> str | None: ...


def _cause(msg: ChannelEvent) -> int:
    try:
        return int(msg.get("Cause") or "0")
    except ValueError:
        return 0


class AmiChannelEvents:
    """An AMI event listener feeding a CallRegistry."""

    def __init__(self, registry: CallRegistry) -> None:
        self._registry = registry
        self._handlers: dict[str, Callable[[ChannelEvent], None]] = {
            "Newchannel": self._newchannel,
            "Newstate": self._newstate,
            "BridgeEnter": self._bridge_enter,
            "DialEnd": self._dial_end,
            "Hangup": self._hangup,
        }

    def on_event(self, msg: ChannelEvent) -> None:
        handler = self._handlers.get(msg.event or "")
        if handler is not None:
            handler(msg)

    def _newchannel(self, m: ChannelEvent) -> None:
        self._registry.channel_created(
            m.get("Uniqueid") or "",
            m.get("Linkedid") or "",
            m.get("Channel") or "",
            m.get("CallerIDNum") or "",
            m.get("Exten") or "",
        )

    def _newstate(self, m: ChannelEvent) -> None:
        if m.get("ChannelState") in ("5", "6"):  # Ringing, Up
            self._registry.channel_alerting(m.get("Uniqueid") or "", up=m.get("ChannelState") == "6")

    def _bridge_enter(self, m: ChannelEvent) -> None:
        self._registry.channel_bridged(m.get("Uniqueid") or "", int(m.get("BridgeNumChannels") or "0"))

    def _dial_end(self, m: ChannelEvent) -> None:
        # The Local channel an attended transfer (*2) dials for the transferor is no
        # destination: the one it rings in turn (a DialEnd of its own) is.
        if m.get("DialStatus") == "ANSWER" and not (m.get("DestChannel") or "").startswith("Local/"):
            dest = (m.get("DestUniqueid") or "", m.get("DestLinkedid") or "", m.get("DestChannel") or "")
            self._registry.callee_answered(*dest)

    def _hangup(self, m: ChannelEvent) -> None:
        self._registry.channel_hung_up(m.get("Uniqueid") or "", _cause(m), m.get("Cause-txt") or "")
