"""Keeps the hot path's ConfigSnapshot current: loads it from PostgreSQL, then patches it
on each NOTIFY config_changed (migration 0024: the payload names the tenants, numbers,
blacklist patterns or platform parts a statement touched; only those are read again, in
a few indexed queries, and applied to a copy-on-write draft). A full rebuild is the
fallback (a payload it cannot read, TRUNCATE, a change too large to name, a lost
listener) and runs on a slow safety timer; it gives the loop back every few milliseconds,
so no reload, full or incremental, holds calls up for longer than that."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import asyncpg

from dialplan.blacklist import Blacklist, BlacklistEntry, ScopeList
from dialplan.compliance import TenantRules
from dialplan.region import RegionPolicy
from dialplan.snapshot import (
    ConfigSnapshot,
    Extension,
    NumberRecord,
    SnapshotDraft,
    Tenant,
)
from dialplan.time_policy import DEFAULT_TIMEZONE, TimePolicy
from ivr.menu import MenuSet
from provisioning.compliance.watch import load_rules
from softswitch.core.clock import Clock
from softswitch.core.metrics import Metrics
from trunks.selection import TrunkRoute

log = logging.getLogger(__name__)

Pause = Callable[[], Awaitable[None]]
# Rows per cursor fetch: the driver decodes a batch's rows as they arrive, in one go
# that the loop cannot interrupt, so a batch must take well under the slice.
_BATCH = 250


class LoopSlice:
    """Gives the event loop back once the caller has held it for `budget_s`: awaited
    between rows, it bounds how long a big build keeps calls waiting.

    Used as a context manager, it also keeps the collector's full collections out of the
    build: each one walks every object the build has made so far (a rebuild at 100k
    numbers triggered a dozen, 10-150 ms each). Meanwhile only the young generations are
    collected, at each slice's end (about a millisecond: only what the slice allocated);
    the collector is left as it was found (a caller that disabled it keeps it disabled)."""

    def __init__(self, budget_s: float = 0.004) -> None:
        self._budget = budget_s
        self._since = time.perf_counter()
        self._young_only = False

    def __enter__(self) -> LoopSlice:
        self._young_only = gc.isenabled()
        if self._young_only:
            gc.disable()
        return self

    def __exit__(self, *_: object) -> None:
        if self._young_only:
            self._young_only = False
            gc.enable()

    async def __call__(self) -> None:
        if time.perf_counter() - self._since >= self._budget:
            if self._young_only:
                gc.collect(1)
            await asyncio.sleep(0)
            self._since = time.perf_counter()


async def _no_pause() -> None:
    return None


async def _rows(conn: Any, sql: str, *args: Any, pause: Pause, batch_rows: int = _BATCH) -> Any:
    """The query's rows, fetched in batches through a cursor (the caller's transaction),
    the loop given back between them."""
    cursor = await conn.cursor(sql, *args)
    while True:
        batch = await cursor.fetch(batch_rows)
        for i, r in enumerate(batch):
            yield r
            if i & 15 == 15:
                await pause()
        if len(batch) < batch_rows:
            return
        await pause()


async def load_snapshot(
    conn: Any,
    generation: int,
    clock: Clock,
    pause: Pause | None = None,
    previous: ConfigSnapshot | None = None,
) -> ConfigSnapshot:
    """Everything the hot path reads, in one consistent read (the caller's transaction).
    `pause` is awaited every few rows (LoopSlice: the loop is never held long); the
    policies of `previous` whose rows did not change are reused, not parsed again."""
    pause = pause or _no_pause
    # the blacklist's sort in memory; no JIT (compiling the big queries took 0.75 s); a
    # cursor planned for all its rows, not the first ones
    await conn.execute(
        "SET LOCAL work_mem = '64MB'; SET LOCAL jit = off; SET LOCAL cursor_tuple_fraction = 1"
    )
    draft = SnapshotDraft(like=previous)
    tenants = await _load_tenants(conn, "state <> 'terminated'", (), pause)
    policies = _Policies(
        await _policy_rows(conn, "time_policies", "enabled", (), pause),
        await _policy_rows(conn, "region_policies", "enabled", (), pause),
        previous.number_table.policies if previous is not None else {},
    )
    held = previous.number_table if previous is not None else None
    records = await _load_numbers(conn, tenants, _zones(tenants), policies, "TRUE", (), pause)
    records.reverse()
    i = 0
    while records:
        record = records.pop()  # freed here, a few at a time, not all at once with the list
        i += 1
        if held is not None:
            # the previous version's equal record: the new one is freed now too, and the
            # previous table, when dropped, frees next to nothing
            old = held.record(record[1])
            if old == record:
                record = old
        draft.put_record(record, policies.parsed)
        del record
        if i & 15 == 0:  # the slice checked often: a check every 256 overran it several-fold
            await pause()
    for i, t in enumerate(tenants.values()):
        draft.put_tenant(t)
        if i & 31 == 31:
            await pause()
    lists = await _blacklist_lists(conn, "TRUE", (), pause)
    if previous is not None:
        for key, lst in lists.items():
            former = previous.blacklist.lists.get(key)
            if former == lst:
                lists[key] = former
            await pause()
    draft.blacklist = Blacklist(MappingProxyType(lists))
    for ext in await _load_extensions(conn, "TRUE", ()):
        draft.put_extension(ext)
    await pause()
    draft.trunk_routes = tuple(await _load_trunk_routes(conn))
    for tenant_id, menus in (await _load_menus(conn, "TRUE", ())).items():
        draft.put_menus(tenant_id, menus)
    await pause()
    draft.compliance = await _load_compliance(conn)
    for _ in draft.settle(step=64):
        await pause()
    return draft.finish(clock.now(), generation)


_TENANTS = (
    "SELECT id, name, state, timezone, outbound_cli_policy, recording_policy, recording_announce "
    "FROM tenants WHERE {where}"
)


async def _load_tenants(conn: Any, where: str, args: tuple[Any, ...], pause: Pause) -> dict[int, Tenant]:
    """Tenants (their caller ids are filled in with their numbers). A terminated tenant is
    left out: its numbers are released and its calls refused as for a tenant not active
    (dialplan.inbound: an absent tenant is one not in service)."""
    return {
        r[0]: Tenant(
            r[0], r[1], sys.intern(r[2]), sys.intern(r[3]), sys.intern(r[4]), (), sys.intern(r[5]), r[6]
        )
        async for r in _rows(conn, _TENANTS.format(where=where), *args, pause=pause)
    }


async def _policy_rows(
    conn: Any, table: str, where: str, args: tuple[Any, ...], pause: Pause
) -> dict[int, str]:
    """Policy id -> the digest of its definition (not the row's version: a hand edit need
    not bump it). The definitions themselves are read only for what is new."""
    sql = f"SELECT id, md5(definition::text) FROM {table} WHERE {where}"
    return {r[0]: r[1] async for r in _rows(conn, sql, *args, pause=pause)}


class _Policies:
    """The policies the numbers read name, by key: ("time", id, digest, time zone) or
    ("region", id, digest). One known from a previous snapshot (`known`) is reused; the
    others are read and parsed once each (`resolve`), however many numbers share them; a
    definition that does not parse gives None (the number has no such policy)."""

    def __init__(self, time_rows: dict[int, str], region_rows: dict[int, str], known: Mapping[Hashable, Any]):
        self._digests = {"time": time_rows, "region": region_rows}
        self._known = known
        self.parsed: dict[Hashable, Any] = {}
        self._missing: set[tuple[Any, ...]] = set()
        self._canonical: dict[tuple[Any, ...], tuple[Any, ...]] = {}

    def _key(self, key: tuple[Any, ...]) -> Hashable:
        held = self._canonical.get(key)
        if held is not None:
            return held  # one key object for all the numbers that name it
        self._canonical[key] = key
        if key in self._known:
            self.parsed[key] = self._known[key]
        else:
            self._missing.add(key)
            self.parsed[key] = None
        return key

    def time(self, policy_id: int | None, tz: str) -> Hashable | None:
        digest = self._digests["time"].get(policy_id) if policy_id is not None else None
        return None if digest is None else self._key(("time", policy_id, digest, tz))

    def region(self, policy_id: int | None) -> Hashable | None:
        digest = self._digests["region"].get(policy_id) if policy_id is not None else None
        return None if digest is None else self._key(("region", policy_id, digest))

    async def resolve(self, conn: Any, pause: Pause) -> None:
        """Read and parse the policies not known before (`pause` awaited between them)."""
        for kind, table in (("time", "time_policies"), ("region", "region_policies")):
            keys = [k for k in self._missing if k[0] == kind]
            if not keys:
                continue
            rows = {
                r[0]: r
                for r in await conn.fetch(
                    f"SELECT id, definition FROM {table} WHERE id = ANY($1::bigint[])",
                    sorted({k[1] for k in keys}),
                )
            }
            for key in keys:
                await pause()
                row = rows.get(key[1])
                if kind == "time":
                    self.parsed[key] = _parsed(row, TimePolicy.parse, key[3])
                else:
                    self.parsed[key] = _parsed(row, RegionPolicy.parse)
        self._missing.clear()


# One row per number, its bound destinations and PIN folded in by PostgreSQL (no row per
# destination crosses the wire); by tenant, its caller-id numbers first (Tenant.caller_ids).
_NUMBERS = """
SELECT n.id, n.number, n.kind, n.state, n.tenant_id, n.distribution, n.time_policy_id,
       n.region_policy_id, n.greeting_prompt, n.caller_id_mode, n.whisper, n.final_action,
       n.recording_policy, p.pin_sha256, p.max_attempts,
       b.destinations, b.timeouts, b.groups, b.weights, b.kinds,
       rb.tone_days, rb.tone_ids, rb.tone_prompts
FROM numbers n
LEFT JOIN number_pins p ON p.number_id = n.id AND p.enabled
LEFT JOIN {bindings}
LEFT JOIN {tones}
WHERE {where}
ORDER BY n.tenant_id, (n.kind = 'caller_id') DESC, n.id
"""
_BOUND = """
    SELECT array_agg(d.destination ORDER BY d.position, d.id) AS destinations,
           array_agg(d.ring_timeout_s ORDER BY d.position, d.id) AS timeouts,
           array_agg(d.group_name ORDER BY d.position, d.id) AS groups,
           array_agg(d.weight ORDER BY d.position, d.id) AS weights,
           array_agg(d.kind ORDER BY d.position, d.id) AS kinds"""
# All numbers: every binding grouped once (hash join, 1.5 s at 100k numbers); a few
# numbers: each one's bindings through the index (a lateral join, 3.8 s for all of them).
_ALL_BOUND = (
    f"({_BOUND}, d.number_id FROM destination_bindings d GROUP BY d.number_id) b ON b.number_id = n.id"
)
_EACH_BOUND = f"LATERAL ({_BOUND} FROM destination_bindings d WHERE d.number_id = n.id) b ON TRUE"
# A number's ringback tones (migration 0028; dialplan.ringback decides at call time), by the
# day each takes effect. One replaced by a later one in effect everywhere (two days ago in
# UTC is past in every time zone) is left out: it can never play again.
_TONES = """
    SELECT array_agg(a.effective_on ORDER BY a.effective_on) AS tone_days,
           array_agg(a.tone_id ORDER BY a.effective_on) AS tone_ids,
           array_agg(t.prompt ORDER BY a.effective_on) AS tone_prompts"""
_TONES_IN_FORCE = """
    FROM ringback_assignments a JOIN ringback_tones t ON t.id = a.tone_id
    WHERE a.removed_at IS NULL AND NOT EXISTS (
        SELECT 1 FROM ringback_assignments later
        WHERE later.number_id = a.number_id AND later.removed_at IS NULL
          AND later.effective_on > a.effective_on
          AND later.effective_on < (now() AT TIME ZONE 'UTC')::date - 1)"""
_ALL_TONES = f"({_TONES}, a.number_id {_TONES_IN_FORCE} GROUP BY a.number_id) rb ON rb.number_id = n.id"
_EACH_TONES = f"LATERAL ({_TONES} {_TONES_IN_FORCE} AND a.number_id = n.id) rb ON TRUE"


async def _load_numbers(
    conn: Any,
    tenants: dict[int, Tenant],
    tz_of: Callable[[int | None], str],
    policies: _Policies,
    where: str,
    args: tuple[Any, ...],
    pause: Pause,
) -> list[NumberRecord]:
    """The unified numbers' records (dialplan.snapshot.NumberRecord: destinations, policy
    keys into `policies.parsed`, PIN), and each tenant's active numbers as its caller ids
    (into `tenants`); a time policy reads in its tenant's time zone (`tz_of(tenant id)`)."""
    intern = sys.intern
    cli: dict[int, list[str]] = {}
    found = []
    every = where == "TRUE"
    sql = _NUMBERS.format(
        bindings=_ALL_BOUND if every else _EACH_BOUND, tones=_ALL_TONES if every else _EACH_TONES, where=where
    )
    async for r in _rows(conn, sql, *args, pause=pause):
        number, kind, state, tenant_id = r[1], r[2], r[3], r[4]
        if tenant_id is not None and state == "active":
            cli.setdefault(tenant_id, []).append(number)
        if kind == "caller_id":
            continue
        dests: tuple[Any, ...] = ()
        if r[15] is not None:
            flat: list[Any] = []
            for d, t, g, w, k in zip(r[15], r[16], r[17], r[18], r[19], strict=True):
                flat += (d, t, intern(g), w, intern(k))
            dests = tuple(flat)
        tones: tuple[Any, ...] = ()
        if r[20] is not None:
            tones = tuple(
                x
                for day, tone_id, prompt in zip(r[20], r[21], r[22], strict=True)
                for x in (day.toordinal(), tone_id, prompt)
            )
        found.append(
            (
                r[0],
                number,
                intern(state),
                tenant_id,
                intern(r[5]),
                policies.time(r[6], tz_of(tenant_id)),
                policies.region(r[7]),
                r[13],
                r[14],
                intern(r[8]),
                intern(r[9]),
                r[10],
                intern(r[11]),
                intern(r[12]) if r[12] is not None else None,
                dests,
                tones,
            )
        )
    for i, (tenant_id, numbers) in enumerate(cli.items()):
        t = tenants.get(tenant_id)
        if t is not None:
            tenants[tenant_id] = _with_caller_ids(t, tuple(numbers))
        if i & 31 == 31:
            await pause()
    await policies.resolve(conn, pause)
    return found


def _zones(tenants: Mapping[int, Tenant]) -> Callable[[int | None], str]:
    """A number's time zone: its tenant's (one not in service: the default)."""

    def zone(tenant_id: int | None) -> str:
        t = tenants.get(tenant_id) if tenant_id is not None else None
        return t.timezone if t is not None else DEFAULT_TIMEZONE

    return zone


def _with_caller_ids(t: Tenant, caller_ids: tuple[str, ...]) -> Tenant:
    return Tenant(
        t.id,
        t.name,
        t.state,
        t.timezone,
        t.outbound_cli_policy,
        caller_ids,
        t.recording_policy,
        t.recording_announce,
    )


# Each (scope, direction)'s entries folded into arrays by PostgreSQL: exact numbers and
# prefixes as their 8-byte codes (dialplan.blacklist.code_of), aggregated from sorted
# input (ScopeList.of checks the order, and sorts what is not); one row per scope and
# direction instead of one per entry. (DISTINCT ... ORDER BY inside the aggregates took
# 11 s for 1M entries; one sort of the input takes about 1 s.)
_BLACKLIST = """
SELECT scope, dir,
       array_agg(code) FILTER (WHERE code IS NOT NULL AND NOT prefix),
       array_agg(pattern) FILTER (WHERE code IS NULL AND NOT prefix),
       array_agg(code) FILTER (WHERE code IS NOT NULL AND prefix),
       array_agg(pattern) FILTER (WHERE code IS NULL AND prefix)
FROM (
    SELECT coalesce(b.tenant_id, 0) AS scope, d.dir, b.pattern,
           b.match_kind = 'prefix' AND b.pattern <> 'anonymous' AS prefix,
           CASE WHEN length(b.pattern) <= 18 AND b.pattern <> 'anonymous'
                THEN ('1' || b.pattern)::int8 END AS code
    FROM blacklist_entries b
    JOIN (VALUES ('inbound'), ('outbound')) AS d(dir) ON b.direction IN (d.dir, 'both')
    WHERE {where}
    ORDER BY 1, 2, 5) s
GROUP BY scope, dir
"""


async def _blacklist_lists(
    conn: Any, where: str, args: tuple[Any, ...], pause: Pause
) -> dict[tuple[int, str], ScopeList]:
    lists = {}
    # a row holds a whole scope's codes (the platform's: 100k): a few rows at a time
    async for r in _rows(conn, _BLACKLIST.format(where=where), *args, pause=pause, batch_rows=20):
        lists[(r[0], r[1])] = ScopeList.of(r[2] or (), r[3] or (), r[4] or (), r[5] or ())
    return lists


async def _load_extensions(conn: Any, where: str, args: tuple[Any, ...]) -> list[Extension]:
    return [
        Extension(r[0], r[1], r[2], sys.intern(r[3]), r[4], r[5], r[6] or "", r[7] or "", r[8], r[9])
        for r in await conn.fetch(
            "SELECT tenant_id, extension, endpoint_id, site, outbound_caller_id, recording_policy, "
            "range_first, range_last, channels, fax_allowed "
            f"FROM sip_extensions WHERE {where} ORDER BY id",
            *args,
        )
    ]


async def _load_trunk_routes(conn: Any) -> list[TrunkRoute]:
    """The platform's outbound trunk routes (tenant-owned trunks are not routed here)."""
    return [
        TrunkRoute(
            r["name"], r["prefix"], r["priority"], r["weight"], r["enabled"], f"{r['host']}:{r['port']}"
        )
        for r in await conn.fetch(
            "SELECT t.name, t.enabled, t.host, t.port, r.prefix, r.priority, r.weight "
            "FROM trunk_routes r JOIN trunks t ON t.id = r.trunk_id WHERE t.tenant_id IS NULL "
            "ORDER BY r.id"
        )
    ]


async def _load_menus(conn: Any, where: str, args: tuple[Any, ...]) -> dict[int, MenuSet]:
    """Each tenant's IVR menus; a tenant whose menus do not validate gets none (logged)."""
    menu_rows: dict[int, list[Any]] = {}
    for r in await conn.fetch(
        f"SELECT tenant_id, name, definition FROM ivr_menus WHERE {where} ORDER BY id", *args
    ):
        menu_rows.setdefault(r["tenant_id"], []).append({"name": r["name"], "definition": r["definition"]})
    menus = {}
    invalid: dict[int, str] = {}
    for tenant_id, rows in menu_rows.items():
        try:  # validated on save (prompts included); this only guards rows saved otherwise
            menus[tenant_id] = MenuSet.from_rows(rows, prompt_exists=lambda _name: True)
        except ValueError as exc:
            invalid[tenant_id] = str(exc)
    if invalid:
        first = next(iter(invalid.items()))
        log.warning(
            "IVR menus of %d tenant(s) ignored, they do not validate (tenant %s: %s)",
            len(invalid),
            *first,
        )
    return menus


async def _load_compliance(conn: Any) -> TenantRules:
    """The compliance rules: the platform's defaults and each tenant's own, by kind."""
    return await load_rules(conn)


def _parsed(row: Any, parse: Any, *args: Any) -> Any:
    """A policy that does not parse is left out (and logged), never a failed reload: the
    API validates definitions on save, so this only guards against hand-edited rows."""
    if row is None:
        return None
    try:
        return parse(row["definition"], *args)
    except (ValueError, KeyError, TypeError) as exc:
        log.error("policy %s ignored, its definition does not parse: %s", row["id"], exc)
        return None


@dataclass
class Changes:
    """What the notifications since the last reload named (migration 0024's payloads)."""

    full: bool = False
    tenants: set[int] = field(default_factory=set)
    numbers: set[str] = field(default_factory=set)
    blacklist: set[tuple[int, str]] = field(default_factory=set)  # (scope: tenant or 0, pattern)
    blacklist_scopes: set[int] = field(default_factory=set)
    trunks: bool = False
    compliance: bool = False

    def add(self, payload: str) -> None:
        """Merge one payload; one it cannot read (an older trigger's table name, say)
        asks for a full rebuild."""
        try:
            named = json.loads(payload)
            if not isinstance(named, dict):
                raise ValueError(payload)
            self.full |= bool(named.get("full"))
            self.tenants.update(int(t) for t in named.get("tenants", ()))
            self.numbers.update(str(n) for n in named.get("numbers", ()))
            self.blacklist.update((int(t or 0), str(p)) for t, p in named.get("blacklist", ()))
            self.blacklist_scopes.update(int(t or 0) for t in named.get("blacklist_scopes", ()))
            self.trunks |= bool(named.get("trunks"))
            self.compliance |= bool(named.get("compliance"))
        except (ValueError, TypeError):
            self.full = True

    def __bool__(self) -> bool:
        return bool(
            self.full
            or self.tenants
            or self.numbers
            or self.blacklist
            or self.blacklist_scopes
            or self.trunks
            or self.compliance
        )


async def apply_changes(
    conn: Any,
    base: ConfigSnapshot,
    changes: Changes,
    generation: int,
    clock: Clock,
    pause: Pause | None = None,
) -> ConfigSnapshot:
    """`base` with what `changes` names read again (the caller's transaction) and patched
    in; `base` itself is left as it was."""
    pause = pause or _no_pause
    draft = SnapshotDraft(base)
    if changes.tenants:
        ids = sorted(changes.tenants)
        tenants = await _load_tenants(conn, "id = ANY($1::bigint[]) AND state <> 'terminated'", (ids,), pause)
        mine = "tenant_id = ANY($1::bigint[])"
        used = f"id IN (SELECT {{col}} FROM numbers WHERE {mine}) AND enabled"
        policies = _Policies(
            await _policy_rows(conn, "time_policies", used.format(col="time_policy_id"), (ids,), pause),
            await _policy_rows(conn, "region_policies", used.format(col="region_policy_id"), (ids,), pause),
            base.number_table.policies,
        )
        records = await _load_numbers(conn, tenants, _zones(tenants), policies, "n." + mine, (ids,), pause)
        by_tenant: dict[int, list[NumberRecord]] = {}
        for rec in records:
            by_tenant.setdefault(rec[3], []).append(rec)
        exts: dict[int, list[Extension]] = {}
        for e in await _load_extensions(conn, mine, (ids,)):
            exts.setdefault(e.tenant_id, []).append(e)
        menus = await _load_menus(conn, mine, (ids,))
        for tenant_id in ids:
            draft.replace_tenant(
                tenant_id,
                tenants.get(tenant_id),
                by_tenant.get(tenant_id, ()),
                policies.parsed,
                exts.get(tenant_id, ()),
                menus.get(tenant_id),
            )
            await pause()
    if changes.numbers:
        wanted = sorted(changes.numbers)
        theirs = "id IN (SELECT {col} FROM numbers WHERE number = ANY($1::text[])) AND enabled"
        policies = _Policies(
            await _policy_rows(conn, "time_policies", theirs.format(col="time_policy_id"), (wanted,), pause),
            await _policy_rows(
                conn, "region_policies", theirs.format(col="region_policy_id"), (wanted,), pause
            ),
            base.number_table.policies,
        )
        where = "n.number = ANY($1::text[])"
        found = await _load_numbers(conn, {}, _zones(base.tenants), policies, where, (wanted,), pause)
        for number in wanted:
            draft.drop_number(number)
        for rec in found:
            draft.put_record(rec, policies.parsed)
    if changes.blacklist_scopes:
        bl = draft.blacklist
        for scope in sorted(changes.blacklist_scopes):
            lists = await _blacklist_lists(conn, "coalesce(tenant_id, 0) = $1", (scope,), pause)
            bl = bl.with_scope(scope, {d: lst for (_s, d), lst in lists.items()})
        draft.blacklist = bl
    if changes.blacklist:
        bl = draft.blacklist
        for scope, pattern in sorted(
            changes.blacklist - {(s, p) for s, p in changes.blacklist if s in changes.blacklist_scopes}
        ):
            entries = [
                BlacklistEntry(r[0], r[1], r[2], r[3])
                for r in await conn.fetch(
                    "SELECT tenant_id, pattern, match_kind, direction FROM blacklist_entries "
                    "WHERE coalesce(tenant_id, 0) = $1 AND pattern = $2",
                    scope,
                    pattern,
                )
            ]
            bl = bl.with_pattern(scope, pattern, entries)
            await pause()
        draft.blacklist = bl
    if changes.trunks:
        draft.trunk_routes = tuple(await _load_trunk_routes(conn))
    if changes.compliance:
        draft.compliance = await _load_compliance(conn)
    return draft.finish(clock.now(), generation)


class SnapshotStore:
    def __init__(
        self,
        pool: asyncpg.Pool,
        dsn: str,
        clock: Clock,
        metrics: Metrics,
        safety_interval: float = 600.0,
    ) -> None:
        self._pool = pool
        self._dsn = dsn
        self._clock = clock
        self._metrics = metrics
        self._safety_interval = safety_interval
        self.current = ConfigSnapshot()
        self._generation = 0
        self._changes = Changes()
        self._dirty = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._listen_conn: asyncpg.Connection | None = None
        self.full_reloads = 0  # how the current version came about (tests, benchmarks)
        self.patches = 0

    async def reload(self) -> None:
        """A full rebuild (the loop given back every few milliseconds)."""
        self._generation += 1
        with LoopSlice() as pause:
            async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
                snap = await load_snapshot(conn, self._generation, self._clock, pause, self.current)
        self._publish(snap)
        self.full_reloads += 1

    async def apply(self, changes: Changes) -> None:
        """An incremental reload: only what `changes` names is read again."""
        if changes.full:
            await self.reload()
            return
        self._generation += 1
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            snap = await apply_changes(
                conn, self.current, changes, self._generation, self._clock, LoopSlice()
            )
        self._publish(snap)
        self.patches += 1

    def _publish(self, snap: ConfigSnapshot) -> None:
        self.current = snap
        self._metrics.snapshot_generation.set(snap.generation)
        self._metrics.snapshot_reloads.labels("ok").inc()

    async def start(self) -> None:
        await self.reload()
        self._tasks = [
            asyncio.create_task(self._listen_loop(), name="snapshot-listen"),
            asyncio.create_task(self._reload_loop(), name="snapshot-reload"),
        ]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._listen_conn is not None and not self._listen_conn.is_closed():
            await self._listen_conn.close()

    def _on_notify(self, _conn: object, _pid: object, _channel: object, payload: str) -> None:
        self._changes.add(payload)
        self._dirty.set()

    def _rebuild(self) -> None:
        self._changes.full = True
        self._dirty.set()

    async def _listen_loop(self) -> None:
        delay = 0.2
        while True:
            try:
                conn = await asyncpg.connect(self._dsn, timeout=5)
                self._listen_conn = conn
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _conn, ev=lost: ev.set())
                await conn.add_listener("config_changed", self._on_notify)
                # Whatever changed while we were not listening is picked up now.
                self._rebuild()
                delay = 0.2
                await lost.wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep listening whatever broke
                log.warning("config listener lost: %s; retrying in %.1fs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _reload_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._dirty.wait(), timeout=self._safety_interval)
            except TimeoutError:
                self._changes.full = True  # the safety rebuild
            self._dirty.clear()
            changes, self._changes = self._changes, Changes()
            if not changes:
                continue
            try:
                await self.apply(changes)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the old snapshot stays in use
                self._metrics.snapshot_reloads.labels("error").inc()
                log.warning("snapshot reload failed, keeping generation %d: %s", self.current.generation, exc)
                await asyncio.sleep(1.0)
                self._rebuild()
