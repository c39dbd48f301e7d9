"""FreeSWITCH's channel events (inbound Event Socket), folded into the call registry's
engine-neutral reports, as softswitch.engines.asterisk.events does for AMI.

A call's legs share ``Channel-Call-UUID``: the caller's own UUID, which the control plane
sets as ``call_uuid`` on the legs it dials (softswitch.engines.freeswitch.channel)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from softswitch.callpath.registry import CallRegistry
from softswitch.engines.freeswitch.channel import channel_name

# What the inbound client subscribes to for the registry (with HEARTBEAT, BACKGROUND_JOB).
CHANNEL_EVENTS = (
    "CHANNEL_CREATE",
    "CHANNEL_PROGRESS",
    "CHANNEL_PROGRESS_MEDIA",
    "CHANNEL_ANSWER",
    "CHANNEL_BRIDGE",
    "CHANNEL_HANGUP_COMPLETE",
)


class ChannelEvent(Protocol):
    """What is read of an ESL event (softswitch.engines.freeswitch.esl.codec.EslEvent)."""

    @property
    def name(self) -> str: ...

    def get(self, key: str, default: str | None = None) -> str | None: ...


def _cause(e: ChannelEvent) -> int:
    try:
        return int(e.get("variable_hangup_cause_q850") or "0")
    except ValueError:
        return 0


class EslChannelEvents:
    """An ESL event listener feeding a CallRegistry."""

    def __init__(self, registry: CallRegistry) -> None:
        self._registry = registry
        self._handlers: dict[str, Callable[[ChannelEvent], None]] = {
            "CHANNEL_CREATE": self._create,
            "CHANNEL_PROGRESS": self._ringing,
            "CHANNEL_PROGRESS_MEDIA": self._ringing,
            "CHANNEL_ANSWER": self._answer,
            "CHANNEL_BRIDGE": self._bridge,
            "CHANNEL_HANGUP_COMPLETE": self._hangup,
        }

    def on_event(self, event: ChannelEvent) -> None:
        handler = self._handlers.get(event.name)
        if handler is not None:
            handler(event)

    @staticmethod
    def _ids(e: ChannelEvent) -> tuple[str, str]:
        # ss_call_id first: the control plane sets it on every leg it dials, and FreeSWITCH
        # never rewrites it (it resets a dialled leg's call_uuid when a bridge ends).
        uuid = e.get("Unique-ID") or ""
        return uuid, e.get("variable_ss_call_id") or e.get("Channel-Call-UUID") or uuid

    def _create(self, e: ChannelEvent) -> None:
        uuid, call = self._ids(e)
        # A dialled leg names the number it rings; the caller's leg the number it dialled.
        self._registry.channel_created(
            uuid,
            call,
            channel_name(uuid),
            e.get("Caller-Caller-ID-Number") or "",
            e.get("Caller-Destination-Number") or "",
        )

    def _ringing(self, e: ChannelEvent) -> None:
        uuid, _ = self._ids(e)
        self._registry.channel_alerting(uuid, up=False)

    def _answer(self, e: ChannelEvent) -> None:
        uuid, call = self._ids(e)
        self._registry.channel_alerting(uuid, up=True)
        if call != uuid:  # a dialled leg answered: the hard stop's target
            self._registry.callee_answered(uuid, call, channel_name(uuid))

    def _bridge(self, e: ChannelEvent) -> None:
        uuid, _ = self._ids(e)
        self._registry.channel_bridged(uuid, 2)

    def _hangup(self, e: ChannelEvent) -> None:
        uuid, _ = self._ids(e)
        self._registry.channel_hung_up(uuid, _cause(e), e.get("Hangup-Cause") or "")
