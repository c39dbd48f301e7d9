"""FreeSWITCH's call control for the call path (softswitch.callpath.control.CallControl),
over the inbound Event Socket: the hard stop is the answering leg's scheduled hang-up
(``sched_hangup``, whose scheduler group is the channel's UUID, so ``sched_del <uuid>``
drops the previous one), the warning a DTMF tone, and the channel list ``show channels``
read after a barrier.

The barrier (softswitch.engines.barrier): an ``api`` reply is written at once, channel
events through the listener's queue; a CUSTOM event fired after the list (``sendevent``)
comes through that queue behind them."""

from __future__ import annotations

import json
from collections.abc import Awaitable

from softswitch.callpath.control import ControlError
from softswitch.callpath.registry import LiveChannel
from softswitch.engines.barrier import EventBarrier
from softswitch.engines.freeswitch.channel import CHANNEL_PREFIX, channel_name
from softswitch.engines.freeswitch.esl.client import EslClient, EslError
from softswitch.engines.freeswitch.esl.codec import EslEvent

BARRIER_SUBCLASS = "softswitch::barrier"
BARRIER_TIMEOUT_S = 5.0


def uuid_of(channel: str) -> str:
    if not channel.startswith(CHANNEL_PREFIX):
        raise ControlError(f"not a FreeSWITCH channel: {channel!r}")
    uuid = channel[len(CHANNEL_PREFIX) :]
    if not uuid or any(not (c.isalnum() or c == "-") for c in uuid):
        raise ControlError(f"not a channel UUID: {uuid!r}")
    return uuid


# Q.850 causes by FreeSWITCH's names (uuid_kill takes the name).
_CAUSE_NAMES = {16: "NORMAL_CLEARING", 17: "USER_BUSY", 21: "CALL_REJECTED", 34: "NORMAL_CIRCUIT_CONGESTION"}


class EslCallControl:
    def __init__(self, esl: EslClient) -> None:
        self._esl = esl
        self._barrier = EventBarrier(BARRIER_TIMEOUT_S)
        esl.add_event_listener(self._on_event)

    async def extend_hard_stop(self, channel: str, seconds: int) -> None:
        uuid = uuid_of(channel)
        await self._api(f"sched_del {uuid}")
        await self._api(f"sched_hangup +{max(seconds, 1)} {uuid} ALLOTTED_TIMEOUT")

    async def warn(self, channel: str) -> None:
        await self._api(f"uuid_send_dtmf {uuid_of(channel)} #@400")

    async def hangup(self, channel: str, cause: int) -> None:
        await self._api(f"uuid_kill {uuid_of(channel)} {_CAUSE_NAMES.get(cause, 'NORMAL_CLEARING')}")

    async def live_channels(self) -> list[LiveChannel]:
        try:
            listing = await self._esl.api("show channels as json")
            await self._barrier.cross(self._raise_barrier)
        except (EslError, TimeoutError) as exc:
            raise ControlError(f"channel list not available: {exc}") from exc
        return live_channels_of(listing)

    async def _api(self, command: str) -> str:
        try:
            return await self._esl.api(command)
        except EslError as exc:
            raise ControlError(f"{command.split()[0]} failed: {exc}") from exc

    def _on_event(self, event: EslEvent) -> None:
        if event.name == "CUSTOM" and event.get("Event-Subclass") == BARRIER_SUBCLASS:
            self._barrier.passed(event.get("Token") or "")

    def _raise_barrier(self, token: str) -> Awaitable[object]:
        return self._esl.command("sendevent CUSTOM", {"Event-Subclass": BARRIER_SUBCLASS, "Token": token})


def live_channels_of(listing: str) -> list[LiveChannel]:
    """``show channels as json`` as the call path's LiveChannels. The list has no call id:
    a leg's ``call_uuid`` is read from the variable the control plane set, else its own."""
    try:
        rows = json.loads(listing).get("rows") or []
    except (ValueError, AttributeError) as exc:
        raise ControlError(f"unreadable channel list: {exc}") from exc
    out = []
    for row in rows:
        uuid = row.get("uuid") or ""
        if not uuid:
            continue
        out.append(
            LiveChannel(
                uniqueid=uuid,
                linkedid=row.get("call_uuid") or uuid,
                channel=channel_name(uuid),
                up=row.get("callstate") in ("ACTIVE", "HELD"),
                caller=row.get("cid_num") or "",
                exten=row.get("dest") or "",
            )
        )
    return out
