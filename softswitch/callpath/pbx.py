"""The edge of customer PBX trunks (issue 20): whether a PBX holds a registration now (asked
of the engine that carries the call, only for calls that would ring one) and each PBX's own
channel cap. The decisions themselves are dialplan's (decide_inbound / decide_extension_call
with the unregistered PBXs), this module only gathers the facts they take.

The channel cap is counted by this service instance over the calls it routed (a call holds
a channel of every PBX it rings or comes from until it ends); the tenant's package cap, taken
with the reservation, is the one shared across instances."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable

from dialplan.inbound import Decision, Route
from dialplan.snapshot import ConfigSnapshot, Extension
from softswitch.callpath.registry import LiveCall

log = logging.getLogger(__name__)

# (PBX endpoint id, the channel of the call that would ring it) -> registered? (None: unknown)
RegisteredCheck = Callable[[str, str], Awaitable[bool | None]]


def pbx_endpoints(decision: Decision) -> tuple[str, ...]:
    """The PBX trunks a decision would ring (their endpoint ids, in order, once each)."""
    if not isinstance(decision, Route):
        return ()
    seen: dict[str, None] = {}
    for step in decision.steps:
        for m in step.members:
            if m.kind == "pbx":
                seen[m.via] = None
    return tuple(seen)


async def unregistered_of(
    check: RegisteredCheck | None, endpoints: Iterable[str], channel: str
) -> frozenset[str]:
    """Those of `endpoints` the engine says hold no registration. An engine that cannot be
    asked says nothing: the PBX is rung, and the engine's own failure moves the call on."""
    if check is None:
        return frozenset()
    down = set()
    for eid in endpoints:
        try:
            if await check(eid, channel) is False:
                down.add(eid)
        except Exception:  # the engine's client errors: unknown, not "unregistered"
            log.exception("registration check of %s failed", eid)
    return frozenset(down)


class PbxChannels:
    """Each PBX trunk's channels in use: the calls (linkedids) that ring it or come from it."""

    def __init__(self) -> None:
        self._calls: dict[str, set[str]] = {}  # PBX endpoint id -> linkedids
        self._of_call: dict[str, tuple[str, ...]] = {}  # linkedid -> PBX endpoint ids

    def in_use(self, endpoint_id: str) -> int:
        return len(self._calls.get(endpoint_id, ()))

    def take(self, snapshot: ConfigSnapshot, linkedid: str, endpoints: Iterable[str]) -> Extension | None:
        """Take a channel of each PBX for the call; None when done, else the PBX whose
        channels are all in use (then nothing is taken). A call already holding one keeps it."""
        pbxs = [p for p in (snapshot.endpoints.get(e) for e in dict.fromkeys(endpoints)) if p is not None]
        held = self._of_call.get(linkedid, ())
        for pbx in pbxs:
            if pbx.is_pbx and pbx.endpoint_id not in held and self.in_use(pbx.endpoint_id) >= pbx.channels:
                return pbx
        taken = [p.endpoint_id for p in pbxs if p.is_pbx]
        for eid in taken:
            self._calls.setdefault(eid, set()).add(linkedid)
        if taken:
            self._of_call[linkedid] = (*held, *(e for e in taken if e not in held))
        return None

    def release(self, linkedid: str) -> None:
        for eid in self._of_call.pop(linkedid, ()):
            calls = self._calls.get(eid)
            if calls is not None:
                calls.discard(linkedid)
                if not calls:
                    del self._calls[eid]

    def on_call_end(self, call: LiveCall) -> None:
        self.release(call.linkedid)
