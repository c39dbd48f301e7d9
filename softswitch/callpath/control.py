"""The one call-control interface between the call path and an engine.

The call path (routing, IVR, prepaid, recording, records, the audit) speaks only these
types; softswitch/engines/<engine>/ implements them over its own protocol — Asterisk over
FastAGI (a ``CallChannel`` per handed-over call) and AMI (``CallControl``), FreeSWITCH over
the Event Socket. What an engine reports about channels reaches the registry through the
registry's engine-neutral methods (``CallRegistry.channel_created`` …), and the engine's
list of its live channels is a list of ``registry.LiveChannel``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from dialplan.legs import Leg
from softswitch.callpath.recorder import RecordingVars
from softswitch.callpath.registry import LiveChannel


@dataclass(frozen=True, slots=True)
class CallFacts:
    """What the engine says about a call it hands to the call path."""

    linkedid: str  # the call's id across its channels (Asterisk's linkedid)
    uniqueid: str  # the handed-over channel's id
    channel: str  # the handed-over channel's name (e.g. PJSIP/carrier-in-00000001)
    caller: str  # the caller's number ('' when withheld)
    called: str  # the number dialled
    endpoint: str = ""  # the calling SIP account, for calls from extensions
    args: tuple[str, ...] = ()  # what the engine's dialplan passed beyond these (IVR: menu, tenant)


class CallChannel(Protocol):
    """A call the engine handed over, while the call path decides it: what may be asked of
    the caller, and how the decision goes back to the engine."""

    @property
    def facts(self) -> CallFacts: ...

    async def answer(self) -> None: ...

    async def play(self, prompt: str) -> None: ...

    async def collect(self, prompt: str, timeout_ms: int, max_digits: int) -> tuple[str, bool]:
        """Play ``prompt`` and collect up to ``max_digits`` DTMF digits: (digits, timed out)."""
        ...

    async def say_digits(self, digits: str) -> None: ...

    async def say_number(self, number: int) -> None: ...

    async def deliver(self, leg: Leg, recording: RecordingVars | None) -> None:
        """Hand the decision to the engine, which acts on it (rings, refuses, runs an IVR)."""
        ...


class CallControl(Protocol):
    """What the call path asks of the engine about calls in progress."""

    async def extend_hard_stop(self, channel: str, seconds: int) -> None:
        """The answering channel hangs up ``seconds`` from now unless extended again."""
        ...

    async def warn(self, channel: str) -> None:
        """A short tone to the caller: the call ends in a few seconds."""
        ...

    async def hangup(self, channel: str, cause: int) -> None:
        """Hang up a channel now, with Q.850 ``cause`` (the platform cuts the call)."""
        ...

    async def live_channels(self) -> list[LiveChannel]:
        """The engine's live channels — returned only once every channel event the engine
        emitted before the list was taken has been delivered to the registry."""
        ...


class ControlError(Exception):
    """The engine could not be asked (disconnected, refused, timed out)."""
