"""The immutable configuration snapshot the hot path reads. Built at the edge (database),
never mutated: a change makes a new version (a SnapshotDraft patches the parts that
changed and shares the rest), swapped in whole, so a decision sees one consistent version."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from types import MappingProxyType
from typing import Any

from dialplan.blacklist import Blacklist
from dialplan.compliance import TenantRules
from dialplan.region import RegionPolicy
from dialplan.ringback import RingbackTone, ToneApplication
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
    # personalised ringback tones applied to the number (dialplan.ringback), by effective_on
    ringback: tuple[ToneApplication, ...] = ()

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
    # a customer's PBX (device_kind pbx, issue 20): the extensions behind it, range_first to
    # range_last (digits of one length), and its own channel cap from the trunk modules
    range_first: str = ""
    range_last: str = ""
    channels: int = 0
    fax_allowed: bool = False  # seed 001: a SIP phone may fax (T.38), a voice gateway never

    @property
    def is_pbx(self) -> bool:
        return bool(self.range_first)

    def owns(self, extension: str) -> bool:
        """Whether `extension` is behind this PBX (a number of the range's length in it)."""
        return (
            bool(self.range_first)
            and len(extension) == len(self.range_first)
            and self.range_first <= extension <= self.range_last
        )


# A number as the snapshot keeps it: a flat tuple of atoms. The collector untracks such a
# tuple on its first pass and never walks it again, where an object per number and per
# destination would be walked by every full collection (at 100k numbers, 300 ms of the
# event loop each time) and take twice the memory. Fields, in order:
#   id, number, state, tenant_id, distribution, time policy key, region policy key,
#   PIN hash, PIN attempts, greeting, caller_id_mode, whisper, final_action,
#   recording_policy, destinations (destination, ring_timeout_s, group, weight, kind,
#   the next destination's five, ...), ringback tones (effective_on as a date ordinal,
#   tone id, prompt, the next application's three, ...)
# A policy key names an entry of the table's policies (None: no policy).
NumberRecord = tuple[Any, ...]
_DEST_FIELDS = 5
_TONE_FIELDS = 3


def number_record(n: UnifiedNumber, time_key: Hashable | None, region_key: Hashable | None) -> NumberRecord:
    dests: list[Any] = []
    for d in n.destinations:
        dests += (d.destination, d.ring_timeout_s, d.group, d.weight, d.kind)
    tones: list[Any] = []
    for a in n.ringback:
        tones += (a.effective_on.toordinal(), a.tone.tone_id, a.tone.prompt)
    pin = n.pin
    return (
        n.id,
        n.number,
        n.state,
        n.tenant_id,
        n.distribution,
        time_key,
        region_key,
        pin.pin_hash if pin is not None else None,
        pin.max_attempts if pin is not None else None,
        n.greeting,
        n.caller_id_mode,
        n.whisper,
        n.final_action,
        n.recording_policy,
        tuple(dests),
        tuple(tones),
    )


def _applications(flat: tuple[Any, ...]) -> tuple[ToneApplication, ...]:
    return tuple(
        ToneApplication(date.fromordinal(flat[i]), RingbackTone(flat[i + 1], flat[i + 2]))
        for i in range(0, len(flat), _TONE_FIELDS)
    )


class NumberTable(Mapping[str, UnifiedNumber]):
    """The unified numbers by number: records (NumberRecord) and the policies they name,
    a UnifiedNumber made on each look-up (a few microseconds, once or twice a call)."""

    __slots__ = ("_policies", "_records")

    def __init__(
        self, records: dict[str, NumberRecord] | None = None, policies: dict[Hashable, Any] | None = None
    ) -> None:
        self._records = records if records is not None else {}
        self._policies = policies if policies is not None else {}

    def _number(self, r: NumberRecord) -> UnifiedNumber:
        d = r[14]
        policies = self._policies
        return UnifiedNumber(
            r[0],
            r[1],
            r[2],
            r[3],
            tuple(
                BoundDestination(d[i], d[i + 1], d[i + 2], d[i + 3], d[i + 4])
                for i in range(0, len(d), _DEST_FIELDS)
            ),
            r[4],
            policies[r[5]] if r[5] is not None else None,
            policies[r[6]] if r[6] is not None else None,
            PinSetting(r[7], r[8]) if r[7] is not None else None,
            r[9],
            r[10],
            r[11],
            r[12],
            r[13],
            _applications(r[15]) if len(r) > 15 and r[15] else (),
        )

    def __getitem__(self, number: str) -> UnifiedNumber:
        return self._number(self._records[number])

    def get(self, number: str, default: Any = None) -> Any:
        r = self._records.get(number)
        return default if r is None else self._number(r)

    def __contains__(self, number: object) -> bool:
        return number in self._records

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def record(self, number: str) -> NumberRecord | None:
        return self._records.get(number)

    @property
    def policies(self) -> Mapping[Hashable, Any]:
        """The policies the records name, by key."""
        return MappingProxyType(self._policies)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        return len(self) == len(other) and all(other.get(k) == v for k, v in self.items())

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"NumberTable({len(self)} numbers)"


@dataclass(frozen=True, slots=True)
class TenantKeys:
    """What one tenant holds in the snapshot's maps: an index, so a tenant's part is
    replaced without a scan of every number."""

    numbers: tuple[str, ...] = ()
    extensions: tuple[Extension, ...] = ()


@dataclass(frozen=True, slots=True)
class ConfigSnapshot:
    tenants: Mapping[int, Tenant] = field(default_factory=lambda: _EMPTY)
    numbers: Mapping[str, UnifiedNumber] = field(
        default_factory=lambda: _EMPTY
    )  # read-only view of number_table
    blacklist: Blacklist = field(default_factory=Blacklist)
    extensions: Mapping[tuple[int, str], Extension] = field(default_factory=lambda: _EMPTY)
    endpoints: Mapping[str, Extension] = field(default_factory=lambda: _EMPTY)
    trunk_routes: tuple[TrunkRoute, ...] = ()
    ivr_menus: Mapping[int, MenuSet] = field(default_factory=lambda: _EMPTY)  # by tenant
    compliance: TenantRules = field(default_factory=TenantRules)
    loaded_at: datetime | None = None
    generation: int = 0
    # derived from `numbers` and `extensions` (so not compared): tenant id -> its keys
    owned: Mapping[int, TenantKeys] = field(default_factory=lambda: _EMPTY, compare=False)
    number_table: NumberTable = field(default_factory=lambda: NumberTable(), compare=False, repr=False)

    def pbx_behind(self, tenant_id: int, extension: str) -> Extension | None:
        """The tenant's PBX trunk whose extension range holds `extension` (None: none). A
        tenant has a few accounts; only its own are scanned."""
        held = self.owned.get(tenant_id)
        for ext in held.extensions if held is not None else ():
            if ext.is_pbx and ext.owns(extension):
                return ext
        return None

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
        draft = SnapshotDraft()
        for t in tenants:
            draft.put_tenant(t)
        for n in numbers:
            draft.put_number(n)
        for e in extensions or ():
            draft.put_extension(e)
        for tenant_id, menus in (ivr_menus or {}).items():
            draft.put_menus(tenant_id, menus)
        draft.blacklist = blacklist or Blacklist()
        draft.trunk_routes = tuple(trunk_routes or ())
        draft.compliance = compliance or TenantRules()
        return draft.finish(loaded_at, generation)


class SnapshotDraft:
    """A snapshot being made: from nothing (a full build) or from a published snapshot (an
    incremental reload). A published snapshot is never touched: each of its maps is
    copied once, on the draft's first change to it, so a call in flight keeps reading one
    consistent version while the next is made."""

    def __init__(self, base: ConfigSnapshot | None = None, like: ConfigSnapshot | None = None) -> None:
        """`like`: a previous version; a part equal to one of its parts is taken from it,
        so a rebuild that finds little changed leaves little new for the collector to walk."""
        self._base = base or ConfigSnapshot()
        self._like = like or self._base
        self._maps: dict[str, dict[Any, Any]] = {}
        self._records: dict[str, NumberRecord] | None = None
        self._policies: dict[Hashable, Any] | None = None
        self._owned_numbers: dict[int, list[str]] = {}  # the tenants whose numbers changed
        self._owned_extensions: dict[int, list[Extension]] = {}
        self._owned: dict[int, TenantKeys] | None = None  # the index, once settle() began
        self.blacklist = self._base.blacklist
        self.trunk_routes = self._base.trunk_routes
        self.compliance = self._base.compliance

    def _map(self, name: str) -> dict[Any, Any]:
        m = self._maps.get(name)
        if m is None:
            m = self._maps[name] = getattr(self._base, name).copy()
        return m

    def _index(self) -> Mapping[int, TenantKeys]:
        return self._owned if self._owned is not None else self._base.owned

    def _numbers_of(self, tenant_id: int) -> list[str]:
        keys = self._owned_numbers.get(tenant_id)
        if keys is None:
            held = self._index().get(tenant_id)
            keys = self._owned_numbers[tenant_id] = list(held.numbers) if held else []
        return keys

    def _extensions_of(self, tenant_id: int) -> list[Extension]:
        keys = self._owned_extensions.get(tenant_id)
        if keys is None:
            held = self._index().get(tenant_id)
            keys = self._owned_extensions[tenant_id] = list(held.extensions) if held else []
        return keys

    def put_tenant(self, tenant: Tenant) -> None:
        old = self._like.tenants.get(tenant.id)
        self._map("tenants")[tenant.id] = old if old == tenant else tenant

    def _numbers(self) -> tuple[dict[str, NumberRecord], dict[Hashable, Any]]:
        if self._records is None or self._policies is None:
            base, table = self._base.numbers, self._base.number_table
            if len(table) == len(base):
                self._records, self._policies = dict(table._records), dict(table._policies)
            else:  # a snapshot made by hand, with numbers but no table
                self._records, self._policies = {}, {}
                for n in base.values():
                    self._records[n.number] = self._record_of(n, self._policies)
        return self._records, self._policies

    @staticmethod
    def _record_of(n: UnifiedNumber, policies: dict[Hashable, Any]) -> NumberRecord:
        keys = []
        for policy in (n.time_policy, n.region_policy):
            key = None
            if policy is not None:
                key = ("object", id(policy))  # the table holds the policy: the id stays its own
                policies[key] = policy
            keys.append(key)
        return number_record(n, keys[0], keys[1])

    @staticmethod
    def records_of(numbers: Iterable[UnifiedNumber]) -> tuple[list[NumberRecord], dict[Hashable, Any]]:
        """Numbers as records, and the policies they name (what replace_tenant takes)."""
        policies: dict[Hashable, Any] = {}
        return [SnapshotDraft._record_of(n, policies) for n in numbers], policies

    def put_number(self, number: UnifiedNumber) -> None:
        _records, policies = self._numbers()
        self.put_record(self._record_of(number, policies), {})

    def put_record(self, record: NumberRecord, policies: Mapping[Hashable, Any]) -> None:
        """A number's record; `policies` holds the policies its keys name (unless the
        draft has them already)."""
        records, known = self._numbers()
        for key in (record[5], record[6]):
            if key is not None and key not in known:
                known[key] = policies[key]
        number, tenant_id = record[1], record[3]
        old = records.get(number)
        records[number] = record
        old_tenant = old[3] if old is not None else None
        if old is not None and old_tenant is not None and old_tenant != tenant_id:
            self._numbers_of(old_tenant).remove(number)
        if tenant_id is not None and (old is None or old_tenant != tenant_id):
            self._numbers_of(tenant_id).append(number)

    def drop_number(self, number: str) -> None:
        records, _policies = self._numbers()
        old = records.pop(number, None)
        if old is not None and old[3] is not None:
            self._numbers_of(old[3]).remove(number)

    def put_extension(self, ext: Extension) -> None:
        old = self._like.endpoints.get(ext.endpoint_id)
        if old == ext:
            ext = old
        self._map("extensions")[(ext.tenant_id, ext.extension)] = ext
        self._map("endpoints")[ext.endpoint_id] = ext
        self._extensions_of(ext.tenant_id).append(ext)

    def put_menus(self, tenant_id: int, menus: MenuSet | None) -> None:
        if menus is None:
            self._map("ivr_menus").pop(tenant_id, None)
        else:
            old = self._like.ivr_menus.get(tenant_id)
            self._map("ivr_menus")[tenant_id] = old if old == menus else menus

    def replace_tenant(
        self,
        tenant_id: int,
        tenant: Tenant | None,
        numbers: Iterable[NumberRecord],
        policies: Mapping[Hashable, Any],
        extensions: Iterable[Extension],
        menus: MenuSet | None,
    ) -> None:
        """One tenant's whole part, read again (`tenant` None: not in service any more):
        its numbers' records and the policies they name."""
        if tenant is None:
            self._map("tenants").pop(tenant_id, None)
        else:
            self.put_tenant(tenant)
        fresh = list(numbers)
        keep = {r[1] for r in fresh}
        for number in list(self._numbers_of(tenant_id)):
            if number not in keep:
                self.drop_number(number)
        for r in fresh:
            self.put_record(r, policies)
        exts, ends = self._map("extensions"), self._map("endpoints")
        for ext in self._extensions_of(tenant_id):
            if exts.get((ext.tenant_id, ext.extension)) is ext:
                del exts[(ext.tenant_id, ext.extension)]
            if ends.get(ext.endpoint_id) is ext:
                del ends[ext.endpoint_id]
        self._owned_extensions[tenant_id] = []
        for ext in extensions:
            self.put_extension(ext)
        self.put_menus(tenant_id, menus)

    def settle(self, step: int = 500) -> Iterator[None]:
        """Brings the tenants' index up to date, yielding every `step` tenants (a caller on
        an event loop gives the loop back there); finish() settles whatever is left."""
        if self._owned is None:
            self._owned = dict(self._base.owned)
        pending = self._owned_numbers.keys() | self._owned_extensions.keys()
        for i, tenant_id in enumerate(pending):
            held = self._owned.get(tenant_id)
            nums = self._owned_numbers.pop(tenant_id, None)
            exts = self._owned_extensions.pop(tenant_id, None)
            keys = TenantKeys(
                tuple(nums) if nums is not None else (held.numbers if held else ()),
                tuple(exts) if exts is not None else (held.extensions if held else ()),
            )
            if keys.numbers or keys.extensions:
                old = self._like.owned.get(tenant_id)
                self._owned[tenant_id] = old if old == keys else keys
            else:
                self._owned.pop(tenant_id, None)
            if i % step == step - 1:
                yield

    def finish(self, loaded_at: datetime, generation: int) -> ConfigSnapshot:
        base = self._base
        for _ in self.settle(step=1 << 30):
            pass
        owned = MappingProxyType(self._owned) if self._owned is not None else base.owned
        maps: dict[str, Any] = {name: MappingProxyType(m) for name, m in self._maps.items()}
        if self._records is not None:
            table = NumberTable(self._records, self._policies)
            maps["numbers"] = MappingProxyType(table)
            maps["number_table"] = table
        return replace(
            base,
            **maps,
            blacklist=self.blacklist,
            trunk_routes=self.trunk_routes,
            compliance=self.compliance,
            loaded_at=loaded_at,
            generation=generation,
            owned=owned,
        )
