"""FreeSWITCH's call control for the call path (softswitch.callpath.control.CallControl),
over the inbound Event Socket: the hard stop is the answering leg's scheduled hang-up
(``sched_hangup``, whose scheduler group is the channel's UUID, so ``sched_del <uuid>``
drops the previous one), the warning a DTMF tone, and the channel list ``show channels``
read after a barrier.

The barrier: an ``api`` reply is written at once, channel events through the listener's
queue, so a channel list can overtake events still queued. A CUSTOM event fired after the
list (``sendevent``) comes through that queue behind them: once it is read, the registry
has folded every event emitted before the list."""

from __future__ import annotations

import asyncio
import json
import secrets

from softswitch.callpath.control import ControlError
from softswitch.callpath.registry import LiveChannel
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


class EslCallControl:
    def __init__(self, esl: EslClient) -> None:
        self._esl = esl
        self._barriers: dict[str, asyncio.Future[None]] = {}
        esl.add_event_listener(self._on_event)

    async def extend_hard_stop(self, channel: str, seconds: int) -> None:
        uuid = uuid_of(channel)
        await self._api(f"sched_del {uuid}")
        await self._api(f"sched_hangup +{max(seconds, 1)} {uuid} ALLOTTED_TIMEOUT")

    async def warn(self, channel: str) -> None:
        await self._api(f"uuid_send_dtmf {uuid_of(channel)} #@400")

    async def live_channels(self) -> list[LiveChannel]:
        try:
            listing = await self._esl.api("show channels as json")
            await self._barrier()
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
            waiter = self._barriers.pop(event.get("Token") or "", None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    async def _barrier(self) -> None:
        token = secrets.token_hex(8)
        waiter = asyncio.get_running_loop().create_future()
        self._barriers[token] = waiter
        try:
            await self._esl.command("sendevent CUSTOM", {"Event-Subclass": BARRIER_SUBCLASS, "Token": token})
            async with asyncio.timeout(BARRIER_TIMEOUT_S):
                await waiter
        finally:
            self._barriers.pop(token, None)


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
