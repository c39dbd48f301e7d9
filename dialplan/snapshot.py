"""The immutable configuration snapshot the hot path reads. Built at the edge (database),
swapped whole on change, never mutated: a decision sees one consistent version."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

from dialplan.blacklist import Blacklist
from dialplan.compliance import TenantRules
from dialplan.region import RegionPolicy
from dialplan.time_policy import DEFAULT_TIMEZONE, TimePolicy
from ivr.menu import MenuSet
from trunks.selection import TrunkRoute

_EMPTY: Mapping = MappingProxyType({})  # type: ignore[type-arg]


@dataclass(frozen=True, slots=True)
class Tenant:
    id: int
    name: str
    state: str  # active | suspended | terminated
    timezone: str = DEFAULT_TIMEZONE
    outbound_cli_policy: str = "replace"  # replace | refuse
    # numbers the tenant owns and may present as caller ID, in preference order
    caller_ids: tuple[str, ...] = ()
    # call recording (dialplan/recording.py): all | inbound | outbound | none | on_demand
    recording_policy: str = "none"
    recording_announce: bool = True


@dataclass(frozen=True, slots=True)
class BoundDestination:
    destination: str
    ring_timeout_s: int = 30
    group: str = "default"
    weight: int = 1
    kind: str = "mobile"  # mobile | fixed | extension


@dataclass(frozen=True, slots=True)
class PinSetting:
    pin_hash: str
    max_attempts: int = 3


@dataclass(frozen=True, slots=True)
class UnifiedNumber:
    id: int
    number: str
    state: str  # reserved | pending_approval | active | suspended | released
    tenant_id: int | None
    destinations: tuple[BoundDestination, ...] = ()
    distribution: str = "sequential"
    time_policy: TimePolicy | None = None
    region_policy: RegionPolicy | None = None
    pin: PinSetting | None = None
    greeting: str = ""
    caller_id_mode: str = "caller"  # caller | unified
    whisper: bool = False
    final_action: str = "missed_call"  # hangup | voicemail | missed_call
    recording_policy: str | None = None  # overrides the tenant's (None: the tenant's)

    def group(self, name: str) -> tuple[BoundDestination, ...]:
        return tuple(d for d in self.destinations if d.group == name)


@dataclass(frozen=True, slots=True)
class Extension:
    tenant_id: int
    extension: str
    endpoint_id: str
    site: str = "main"
    outbound_caller_id: str = ""
    recording_policy: str | None = None  # overrides the tenant's (None: the tenant's)


@dataclass(frozen=True, slots=True)
class ConfigSnapshot:
    tenants: Mapping[int, Tenant] = field(default_factory=lambda: _EMPTY)
    numbers: Mapping[str, UnifiedNumber] = field(default_factory=lambda: _EMPTY)
    blacklist: Blacklist = field(default_factory=Blacklist)
    extensions: Mapping[tuple[int, str], Extension] = field(default_factory=lambda: _EMPTY)
    endpoints: Mapping[str, Extension] = field(default_factory=lambda: _EMPTY)
    trunk_routes: tuple[TrunkRoute, ...] = ()
    ivr_menus: Mapping[int, MenuSet] = field(default_factory=lambda: _EMPTY)  # by tenant
    compliance: TenantRules = field(default_factory=TenantRules)
    loaded_at: datetime | None = None
    generation: int = 0

    @staticmethod
    def build(
        tenants: list[Tenant],
        numbers: list[UnifiedNumber],
        loaded_at: datetime,
        generation: int,
        blacklist: Blacklist | None = None,
        extensions: list[Extension] | None = None,
        trunk_routes: list[TrunkRoute] | None = None,
        ivr_menus: dict[int, MenuSet] | None = None,
        compliance: TenantRules | None = None,
    ) -> ConfigSnapshot:
        exts = extensions or []
        return ConfigSnapshot(
            tenants=MappingProxyType({t.id: t for t in tenants}),
            numbers=MappingProxyType({n.number: n for n in numbers}),
            blacklist=blacklist or Blacklist(),
            extensions=MappingProxyType({(e.tenant_id, e.extension): e for e in exts}),
            endpoints=MappingProxyType({e.endpoint_id: e for e in exts}),
            trunk_routes=tuple(trunk_routes or ()),
            ivr_menus=MappingProxyType(dict(ivr_menus or {})),
            compliance=compliance or TenantRules(),
            loaded_at=loaded_at,
            generation=generation,
        )
