"""Demo data for `make run`: an enterprise with a routed 400 number, a number still awaiting
approval and a suspended enterprise, so the demo calls show each outcome. Idempotent."""

from __future__ import annotations

import asyncpg

DEMO_TENANTS = (
    # name, state, [(number, kind, state, [(destination, ring timeout s)])]
    ("Demo Trading Co. (演示贸易有限公司)", "active", [
        ("4008001234", "unified_400", "active", [("13800138000", 20)]),
        ("4008009999", "unified_400", "pending_approval", [("13800138001", 20)]),
    ]),
    ("Suspended Example Ltd.", "suspended", [
        ("4008005555", "unified_400", "active", [("13900139000", 20)]),
    ]),
)


async def seed(conn: asyncpg.Connection) -> None:
    async with conn.transaction():
        for name, state, numbers in DEMO_TENANTS:
            tenant_id = await conn.fetchval("SELECT id FROM tenants WHERE name = $1", name)
            if tenant_id is None:
                tenant_id = await conn.fetchval(
                    "INSERT INTO tenants (name, state) VALUES ($1, $2) RETURNING id", name, state
                )
            else:
                await conn.execute("UPDATE tenants SET state = $2 WHERE id = $1", tenant_id, state)
            for number, kind, nstate, dests in numbers:
                number_id = await conn.fetchval(
                    """INSERT INTO numbers (number, kind, tenant_id, state) VALUES ($1, $2, $3, $4)
                       ON CONFLICT (number) DO UPDATE SET tenant_id = EXCLUDED.tenant_id,
                           state = EXCLUDED.state, kind = EXCLUDED.kind
                       RETURNING id""",
                    number, kind, tenant_id, nstate,
                )
                await conn.execute("DELETE FROM destination_bindings WHERE number_id = $1", number_id)
                for pos, (dest, timeout) in enumerate(dests):
                    await conn.execute(
                        "INSERT INTO destination_bindings (number_id, destination, position, "
                        "ring_timeout_s) VALUES ($1, $2, $3, $4)",
                        number_id, dest, pos, timeout,
                    )
