"""An operator's edit made in SQL reaches routing through the store's incremental reload
(migration 0024's NOTIFY names what changed; only that is read again): the patched
snapshot routes the call as the edit says, and its part for the tenant is exactly what a
full build reads."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg

from dialplan.inbound import InboundCall, Reject, Route, decide_inbound
from dialplan.reasons import Reason
from softswitch.callpath.snapshots import SnapshotStore, load_snapshot
from softswitch.core.clock import SystemClock
from softswitch.core.metrics import Metrics
from softswitch.core.settings import Settings
from tests.db.conftest import new_tenant

NOW = datetime(2026, 12, 7, 3, tzinfo=UTC)  # a Monday, 11:00 in Shanghai


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_an_sql_edit_is_patched_in_and_routes_as_a_full_build_would(pool: asyncpg.Pool) -> None:
    number = f"400{random.randrange(10**7):07d}"
    caller = f"139{random.randrange(10**8):08d}"
    store = SnapshotStore(pool, Settings().database.dsn(), SystemClock(), Metrics(), safety_interval=3600)
    await store.start()
    try:
        await until(
            lambda: store._listen_conn is not None and store.full_reloads >= 2
        )  # the listener's catch-up
        full_before = store.full_reloads
        async with pool.acquire() as conn:
            tenant = await new_tenant(conn)
            number_id = await conn.fetchval(
                "INSERT INTO numbers (number, kind, tenant_id, state) "
                "VALUES ($1, 'unified_400', $2, 'active') RETURNING id",
                number,
                tenant,
            )
            await conn.execute(
                "INSERT INTO destination_bindings (number_id, destination, tenant_id) "
                "VALUES ($1, '13800138000', $2)",
                number_id,
                tenant,
            )
            call = InboundCall(caller, number, "db-test")
            await until(lambda: isinstance(decide_inbound(store.current, call, NOW), Route))

            # the caller blacklisted by the tenant: refused from the next version on
            await conn.execute(
                "INSERT INTO blacklist_entries (tenant_id, pattern, match_kind, direction) "
                "VALUES ($1, $2, 'exact', 'both')",
                tenant,
                caller,
            )
            await until(
                lambda: (
                    decide_inbound(store.current, call, NOW) == Reject(Reason.BLACKLISTED, tenant, number_id)
                )
            )

            # the binding moved to another mobile: the route rings it
            await conn.execute(
                "UPDATE destination_bindings SET destination = '13900139000' WHERE number_id = $1", number_id
            )
            await conn.execute("DELETE FROM blacklist_entries WHERE tenant_id = $1", tenant)

            def rings_new_mobile() -> bool:
                d = decide_inbound(store.current, call, NOW)
                return isinstance(d, Route) and [m.destination for s in d.steps for m in s.members] == [
                    "13900139000"
                ]

            await until(rings_new_mobile)
            assert store.full_reloads == full_before, "the edits were rebuilt in full, not patched"
            assert store.patches >= 3

            async with conn.transaction(isolation="repeatable_read"):
                full = await load_snapshot(conn, 0, SystemClock())
        patched = store.current
        assert patched.tenants[tenant] == full.tenants[tenant]
        assert patched.numbers[number] == full.numbers[number]
        assert patched.owned[tenant].numbers == full.owned[tenant].numbers
        for direction in ("inbound", "outbound"):
            assert patched.blacklist.lists.get((tenant, direction)) == full.blacklist.lists.get(
                (tenant, direction)
            )
    finally:
        await store.stop()
        async with pool.acquire() as conn:
            await conn.execute("DELETE FROM blacklist_entries WHERE pattern = $1", caller)
            await conn.execute("UPDATE numbers SET state = 'released' WHERE number = $1", number)
