"""Asterisk's call control for the call path (softswitch.callpath.control.CallControl),
over AMI: the hard stop is the answering channel's TIMEOUT(absolute), the warning a short
DTMF tone to the caller, and the channel list CoreShowChannels read after a barrier.

The barrier: Asterisk writes an action's reply at once but its events through a queue, so
a CoreShowChannels list overtakes Hangup and Newchannel events still queued. A UserEvent
raised after the list comes back through that queue behind them: once it is read, the
registry has folded every event emitted before the list."""

from __future__ import annotations

import asyncio
import secrets

from softswitch.callpath.control import ControlError
from softswitch.callpath.registry import LiveChannel
from softswitch.engines.asterisk.ami.client import AmiClient, AmiError
from softswitch.engines.asterisk.ami.codec import AmiMessage

BARRIER_EVENT = "SoftswitchAuditBarrier"  # docker/asterisk/manager.conf lets UserEvent through
BARRIER_TIMEOUT_S = 5.0


class AmiCallControl:
    def __init__(self, ami: AmiClient) -> None:
        self._ami = ami
        self._barriers: dict[str, asyncio.Future[None]] = {}
        ami.add_event_listener(self._on_event)

    async def extend_hard_stop(self, channel: str, seconds: int) -> None:
        await self._action(
            "Setvar", {"Channel": channel, "Variable": "TIMEOUT(absolute)", "Value": str(max(seconds, 1))}
        )

    async def warn(self, channel: str) -> None:
        await self._action("PlayDTMF", {"Channel": channel, "Digit": "#", "Duration": "400"})

    async def live_channels(self) -> list[LiveChannel]:
        try:
            _, listing = await self._ami.action_list("CoreShowChannels")
            await self._barrier()
        except (AmiError, TimeoutError) as exc:
            raise ControlError(f"channel list not available: {exc}") from exc
        return [live_channel_of(e) for e in listing if e.get("Uniqueid")]

    async def _action(self, name: str, headers: dict[str, str]) -> None:
        try:
            await self._ami.action(name, headers)
        except AmiError as exc:
            raise ControlError(f"{name} failed: {exc}") from exc

    def _on_event(self, msg: AmiMessage) -> None:
        if msg.event == "UserEvent" and msg.get("UserEvent") == BARRIER_EVENT:
            waiter = self._barriers.pop(msg.get("Token") or "", None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    async def _barrier(self) -> None:
        token = secrets.token_hex(8)
        waiter = asyncio.get_running_loop().create_future()
        self._barriers[token] = waiter
        try:
            await self._ami.action("UserEvent", {"UserEvent": BARRIER_EVENT, "Token": token})
            async with asyncio.timeout(BARRIER_TIMEOUT_S):
                await waiter
        finally:
            self._barriers.pop(token, None)


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
