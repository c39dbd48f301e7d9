"""Keeps the hot path's ConfigSnapshot current: loads it from PostgreSQL, reloads it on
NOTIFY config_changed (a trigger on every routing table) and on a slow safety timer."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg

from dialplan.snapshot import BoundDestination, ConfigSnapshot, Tenant, UnifiedNumber
from softswitch.clock import Clock
from softswitch.metrics import Metrics

log = logging.getLogger(__name__)


async def load_snapshot(conn: Any, generation: int, clock: Clock) -> ConfigSnapshot:
    tenants = [
        Tenant(r["id"], r["name"], r["state"], r["timezone"])
        for r in await conn.fetch("SELECT id, name, state, timezone FROM tenants")
    ]
    dests: dict[int, list[BoundDestination]] = {}
    for r in await conn.fetch(
        "SELECT number_id, destination, ring_timeout_s FROM destination_bindings "
        "ORDER BY number_id, position, id"
    ):
        dests.setdefault(r["number_id"], []).append(BoundDestination(r["destination"], r["ring_timeout_s"]))
    numbers = [
        UnifiedNumber(r["id"], r["number"], r["state"], r["tenant_id"], tuple(dests.get(r["id"], ())))
        for r in await conn.fetch(
            "SELECT id, number, state, tenant_id FROM numbers WHERE kind <> 'caller_id'"
        )
    ]
    return ConfigSnapshot.build(tenants, numbers, clock.now(), generation)


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
