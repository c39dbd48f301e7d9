"""Keeps the hot path's ConfigSnapshot current: loads it from PostgreSQL, reloads it on
NOTIFY config_changed (a trigger on every routing table) and on a slow safety timer."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg

from dialplan.blacklist import Blacklist, BlacklistEntry
from dialplan.compliance import TenantRules
from dialplan.region import RegionPolicy
from dialplan.snapshot import (
    BoundDestination,
    ConfigSnapshot,
    Extension,
    PinSetting,
    Tenant,
    UnifiedNumber,
)
from dialplan.time_policy import DEFAULT_TIMEZONE, TimePolicy
from ivr.menu import MenuSet
from provisioning.compliance.watch import load_rules
from softswitch.core.clock import Clock
from softswitch.core.metrics import Metrics
from trunks.selection import TrunkRoute

log = logging.getLogger(__name__)


async def load_snapshot(conn: Any, generation: int, clock: Clock) -> ConfigSnapshot:
    """Everything the hot path reads, in one consistent read (the caller's transaction)."""
    tenants = await _load_tenants(conn)
    numbers = await _load_numbers(conn, {t.id: t.timezone for t in tenants})
    blacklist = await _load_blacklist(conn)
    extensions = await _load_extensions(conn)
    routes = await _load_trunk_routes(conn)
    menus = await _load_menus(conn)
    compliance = await _load_compliance(conn)
    return ConfigSnapshot.build(
        tenants, numbers, clock.now(), generation, blacklist, extensions, routes, menus, compliance
    )


async def _load_tenants(conn: Any) -> list[Tenant]:
    """Tenants, each with its active numbers usable as caller id (caller_id kind first).
    A terminated tenant is left out: its numbers are released and its calls refused as for
    a tenant not active (dialplan.inbound: an absent tenant is one not in service)."""
    tenants_rows = await conn.fetch(
        "SELECT id, name, state, timezone, outbound_cli_policy, recording_policy, recording_announce "
        "FROM tenants WHERE state <> 'terminated'"
    )
    cli: dict[int, list[str]] = {}
    for r in await conn.fetch(
        "SELECT tenant_id, number FROM numbers WHERE tenant_id IS NOT NULL AND state = 'active' "
        "ORDER BY (kind = 'caller_id') DESC, id"
    ):
        cli.setdefault(r["tenant_id"], []).append(r["number"])
    return [
        Tenant(
            r["id"],
            r["name"],
            r["state"],
            r["timezone"],
            r["outbound_cli_policy"],
            tuple(cli.get(r["id"], ())),
            r["recording_policy"],
            r["recording_announce"],
        )
        for r in tenants_rows
    ]


async def _load_numbers(conn: Any, tz_of: dict[int, str]) -> list[UnifiedNumber]:
    """Unified numbers with their bound destinations, time and region policies and PINs;
    a time policy reads in its tenant's time zone (`tz_of`)."""
    dests: dict[int, list[BoundDestination]] = {}
    for r in await conn.fetch(
        "SELECT number_id, destination, ring_timeout_s, group_name, weight, kind "
        "FROM destination_bindings ORDER BY number_id, position, id"
    ):
        dests.setdefault(r["number_id"], []).append(
            BoundDestination(r["destination"], r["ring_timeout_s"], r["group_name"], r["weight"], r["kind"])
        )
    time_policies = {
        r["id"]: r
        for r in await conn.fetch("SELECT id, tenant_id, definition FROM time_policies WHERE enabled")
    }
    region_policies = {
        r["id"]: r for r in await conn.fetch("SELECT id, definition FROM region_policies WHERE enabled")
    }
    pins = {
        r["number_id"]: PinSetting(r["pin_sha256"], r["max_attempts"])
        for r in await conn.fetch("SELECT number_id, pin_sha256, max_attempts FROM number_pins WHERE enabled")
    }
    numbers = []
    for r in await conn.fetch(
        "SELECT id, number, state, tenant_id, distribution, time_policy_id, region_policy_id, "
        "greeting_prompt, caller_id_mode, whisper, final_action, recording_policy "
        "FROM numbers WHERE kind <> 'caller_id'"
    ):
        numbers.append(
            UnifiedNumber(
                r["id"],
                r["number"],
                r["state"],
                r["tenant_id"],
                tuple(dests.get(r["id"], ())),
                distribution=r["distribution"],
                time_policy=_parsed(
                    time_policies.get(r["time_policy_id"]),
                    TimePolicy.parse,
                    tz_of.get(r["tenant_id"], DEFAULT_TIMEZONE),
                ),
                region_policy=_parsed(region_policies.get(r["region_policy_id"]), RegionPolicy.parse),
                pin=pins.get(r["id"]),
                greeting=r["greeting_prompt"],
                caller_id_mode=r["caller_id_mode"],
                whisper=r["whisper"],
                final_action=r["final_action"],
                recording_policy=r["recording_policy"],
            )
        )
    return numbers


async def _load_blacklist(conn: Any) -> Blacklist:
    return Blacklist.build(
        BlacklistEntry(r["tenant_id"], r["pattern"], r["match_kind"], r["direction"])
        for r in await conn.fetch("SELECT tenant_id, pattern, match_kind, direction FROM blacklist_entries")
    )


async def _load_extensions(conn: Any) -> list[Extension]:
    return [
        Extension(
            r["tenant_id"],
            r["extension"],
            r["endpoint_id"],
            r["site"],
            r["outbound_caller_id"],
            r["recording_policy"],
        )
        for r in await conn.fetch(
            "SELECT tenant_id, extension, endpoint_id, site, outbound_caller_id, recording_policy "
            "FROM sip_extensions"
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
            "FROM trunk_routes r JOIN trunks t ON t.id = r.trunk_id WHERE t.tenant_id IS NULL"
        )
    ]


async def _load_menus(conn: Any) -> dict[int, MenuSet]:
    """Each tenant's IVR menus; a tenant whose menus do not validate gets none (logged)."""
    menu_rows: dict[int, list[Any]] = {}
    for r in await conn.fetch("SELECT tenant_id, name, definition FROM ivr_menus ORDER BY id"):
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


class SnapshotStore:
    def __init__(
        self,
        pool: asyncpg.Pool,
        dsn: str,
        clock: Clock,
        metrics: Metrics,
        safety_interval: float = 60.0,
    ) -> None:
        self._pool = pool
        self._dsn = dsn
        self._clock = clock
        self._metrics = metrics
        self._safety_interval = safety_interval
        self.current = ConfigSnapshot()
        self._generation = 0
        self._dirty = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._listen_conn: asyncpg.Connection | None = None

    async def reload(self) -> None:
        self._generation += 1
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            snap = await load_snapshot(conn, self._generation, self._clock)
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

    def _on_notify(self, *_: object) -> None:
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
                self._dirty.set()
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
                pass
            self._dirty.clear()
            try:
                await self.reload()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the old snapshot stays in use
                self._metrics.snapshot_reloads.labels("error").inc()
                log.warning("snapshot reload failed, keeping generation %d: %s", self.current.generation, exc)
                await asyncio.sleep(1.0)
                self._dirty.set()
