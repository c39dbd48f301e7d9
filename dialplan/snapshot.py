"""The immutable configuration snapshot the hot path reads. Built at the edge (database),
swapped whole on change, never mutated: a decision sees one consistent version."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class Tenant:
    id: int
    name: str
    state: str  # active | suspended | terminated
    timezone: str = "Asia/Shanghai"


@dataclass(frozen=True, slots=True)
class BoundDestination:
    destination: str
    ring_timeout_s: int = 30


@dataclass(frozen=True, slots=True)
class UnifiedNumber:
    id: int
    number: str
    state: str  # reserved | pending_approval | active | suspended | released
    tenant_id: int | None
    destinations: tuple[BoundDestination, ...] = ()


@dataclass(frozen=True, slots=True)
class ConfigSnapshot:
    tenants: Mapping[int, Tenant] = field(default_factory=lambda: MappingProxyType({}))
    numbers: Mapping[str, UnifiedNumber] = field(default_factory=lambda: MappingProxyType({}))
    loaded_at: datetime | None = None
    generation: int = 0

    @staticmethod
    def build(
        tenants: list[Tenant], numbers: list[UnifiedNumber], loaded_at: datetime, generation: int
    ) -> ConfigSnapshot:
        return ConfigSnapshot(
            tenants=MappingProxyType({t.id: t for t in tenants}),
            numbers=MappingProxyType({n.number: n for n in numbers}),
            loaded_at=loaded_at,
            generation=generation,
        )
