"""Asterisk's call control for the call path (softswitch.callpath.control.CallControl),
over AMI: the hard stop is the answering channel's TIMEOUT(absolute), the warning a short
DTMF tone to the caller, and the channel list CoreShowChannels read after a barrier.

The barrier (softswitch.engines.barrier): Asterisk writes an action's reply at once but
its events through a queue, so a CoreShowChannels list overtakes Hangup and Newchannel
events still queued; a UserEvent raised after the list comes back behind them."""

from __future__ import annotations

from collections.abc import Awaitable

from softswitch.callpath.control import ControlError
from softswitch.callpath.registry import LiveChannel
from softswitch.engines.asterisk.ami.client import AmiClient, AmiError
from softswitch.engines.asterisk.ami.codec import AmiMessage
from softswitch.engines.barrier import EventBarrier

BARRIER_EVENT = "SoftswitchAuditBarrier"  # docker/asterisk/manager.conf lets UserEvent through
BARRIER_TIMEOUT_S = 5.0


class AmiCallControl:
    def __init__(self, ami: AmiClient, unmanaged_accountcode: str = "") -> None:
        """``unmanaged_accountcode``: channels with it are not the control plane's (no
        event of theirs is sent to us): the live channel list leaves them out."""
        self._ami = ami
        self._unmanaged = unmanaged_accountcode
        self._barrier = EventBarrier(BARRIER_TIMEOUT_S)
        ami.add_event_listener(self._on_event)

    async def extend_hard_stop(self, channel: str, seconds: int) -> None:
        await self._action(
            "Setvar", {"Channel": channel, "Variable": "TIMEOUT(absolute)", "Value": str(max(seconds, 1))}
        )

    async def warn(self, channel: str) -> None:
        await self._action("PlayDTMF", {"Channel": channel, "Digit": "#", "Duration": "400"})

    async def hangup(self, channel: str, cause: int) -> None:
        await self._action("Hangup", {"Channel": channel, "Cause": str(cause)})

    async def live_channels(self) -> list[LiveChannel]:
        try:
            _, listing = await self._ami.action_list("CoreShowChannels")
            await self._barrier.cross(self._raise_barrier)
        except (AmiError, TimeoutError) as exc:
            raise ControlError(f"channel list not available: {exc}") from exc
        return [
            live_channel_of(e)
            for e in listing
            if e.get("Uniqueid") and not (self._unmanaged and e.get("AccountCode") == self._unmanaged)
        ]

    async def _action(self, name: str, headers: dict[str, str]) -> None:
        try:
            await self._ami.action(name, headers)
        except AmiError as exc:
            raise ControlError(f"{name} failed: {exc}") from exc

    def _on_event(self, msg: AmiMessage) -> None:
        if msg.event == "UserEvent" and msg.get("UserEvent") == BARRIER_EVENT:
            self._barrier.passed(msg.get("Token") or "")

    def _raise_barrier(self, token: str) -> Awaitable[object]:
        return self._ami.action("UserEvent", {"UserEvent": BARRIER_EVENT, "Token": token})


def live_channel_of(entry: AmiMessage) -> LiveChannel:
    """One CoreShowChannel entry as the call path's LiveChannel."""
    uniqueid = entry.get("Uniqueid") or ""
    return LiveChannel(
        uniqueid=uniqueid,
        linkedid=entry.get("Linkedid") or uniqueid,
        channel=entry.get("Channel") or "",
        up=entry.get("ChannelState") == "6",
        caller=entry.get("CallerIDNum") or "",
        exten=entry.get("Exten") or "",
    )
