"""The call path's snapshot leaves terminated tenants out (their numbers are released; a call
for one is refused as for any tenant not in service), so test runs and churned customers do
not grow it; a suspended tenant stays in (its state is what refuses its calls)."""

from __future__ import annotations

import asyncpg

from softswitch.callpath.snapshots import load_snapshot
from softswitch.core.clock import SystemClock
from tests.db.conftest import new_tenant


async def test_terminated_tenants_are_not_loaded(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        gone, paused = await new_tenant(conn), await new_tenant(conn)
        await conn.execute("UPDATE tenants SET state = 'terminated' WHERE id = $1", gone)
        await conn.execute("UPDATE tenants SET state = 'suspended' WHERE id = $1", paused)
        async with conn.transaction():
            snap = await load_snapshot(conn, 1, SystemClock())
    assert gone not in snap.tenants
    assert snap.tenants[paused].state == "suspended"
