"""One CallControl over several engines: a channel's name says which engine holds it
(FreeSWITCH's are freeswitch/<uuid>, Asterisk's PJSIP/… and the like), and the live
channels are every engine's together.

If one engine cannot list its channels, the whole list is refused (ControlError): a
partial list would make the audit end, as unobserved, every call of the engine that did
not answer."""

from __future__ import annotations

from collections.abc import Sequence

from softswitch.callpath.control import CallControl
from softswitch.callpath.registry import LiveChannel


class EngineControls:
    def __init__(self, default: CallControl, by_prefix: Sequence[tuple[str, CallControl]] = ()) -> None:
        self._default = default
        self._by_prefix = tuple(by_prefix)

    def _of(self, channel: str) -> CallControl:
        for prefix, control in self._by_prefix:
            if channel.startswith(prefix):
                return control
        return self._default

    async def extend_hard_stop(self, channel: str, seconds: int) -> None:
        await self._of(channel).extend_hard_stop(channel, seconds)

    async def warn(self, channel: str) -> None:
        await self._of(channel).warn(channel)

    async def hangup(self, channel: str, cause: int) -> None:
        await self._of(channel).hangup(channel, cause)

    async def live_channels(self) -> list[LiveChannel]:
        out = await self._default.live_channels()
        for _, control in self._by_prefix:
            out += await control.live_channels()
        return out
