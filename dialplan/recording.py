"""Whether a call is recorded: pure, over the snapshot's policy facts.

A tenant's policy (all | inbound | outbound | none | on_demand) may be overridden by the
unified number an inbound call reached, or by the SIP extension an outbound call comes
from. `on_demand` records nothing until a party keys the feature code (features.conf
automixmon). When the recording storage is past its high-water mark, nothing new is
recorded: the decision says so, and why."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dialplan.snapshot import ConfigSnapshot

POLICIES = ("all", "inbound", "outbound", "none", "on_demand")
RecordingPolicy = Literal["all", "inbound", "outbound", "none", "on_demand"]
Mode = Literal["record", "on_demand", "off"]


@dataclass(frozen=True, slots=True)
class RecordingDecision:
    mode: Mode = "off"
    announce: bool = False  # the caller hears that the call is (or may be) recorded
    policy: str = "none"  # the policy that applied
    why: str = ""  # "", "tenant", "number", "extension", "stopped_high_water"

    @property
    def records(self) -> bool:
        return self.mode != "off"


OFF = RecordingDecision()


def decide_recording(
    snapshot: ConfigSnapshot,
    tenant_id: int | None,
    direction: str,
    *,
    number: str = "",
    endpoint: str = "",
    storage_full: bool = False,
) -> RecordingDecision:
    """`direction` is inbound | outbound | internal; `number` the unified number dialled
    (inbound), `endpoint` the calling extension's PJSIP endpoint (outbound, internal)."""
    tenant = snapshot.tenants.get(tenant_id) if tenant_id is not None else None
    if tenant is None:
        return OFF
    policy, source = tenant.recording_policy, "tenant"
    override, where = None, "tenant"
    if direction == "inbound" and number:
        unified = snapshot.numbers.get(number)
        if unified is not None and unified.tenant_id == tenant.id:
            override, where = unified.recording_policy, "number"
    elif endpoint:
        ext = snapshot.endpoints.get(endpoint)
        if ext is not None and ext.tenant_id == tenant.id:
            override, where = ext.recording_policy, "extension"
    if override:
        policy, source = override, where
    mode: Mode
    if policy == "all" or policy == direction:
        mode = "record"
    elif policy == "on_demand":
        mode = "on_demand"
    else:  # none, unknown, or the other direction (internal calls: only under "all")
        return RecordingDecision("off", False, policy, source)
    if storage_full:
        return RecordingDecision("off", False, policy, "stopped_high_water")
    return RecordingDecision(mode, tenant.recording_announce, policy, source)
