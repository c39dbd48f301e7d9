"""Demo data and demo calls for `make run`: an enterprise with a routed 400 number, a number still awaiting
approval and a suspended enterprise, so the demo calls show each outcome. Idempotent."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import asyncpg

from provisioning.portal.auth import hash_password
from scripts.devstack.sipp import SippUas, run_uac

if TYPE_CHECKING:
    from softswitch.service import Service

DEMO_TENANTS = (
    # name, state, [(number, kind, state, [(destination, ring timeout s)])]
    (
        "Demo Trading Co. (演示贸易有限公司)",
        "active",
        [
            ("4008001234", "unified_400", "active", [("13800138000", 20)]),
            ("4008009999", "unified_400", "pending_approval", [("13800138001", 20)]),
        ],
    ),
    (
        "Suspended Example Ltd.",
        "suspended",
        [
            ("4008005555", "unified_400", "active", [("13900139000", 20)]),
        ],
    ),
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
            # A funded prepaid account with the 4 channels of an A4 package, 0.12 CNY/min.
            await conn.execute(
                "INSERT INTO accounts (tenant_id, balance, channel_cap, rate_per_minute) "
                "VALUES ($1, 200, 4, 0.12) ON CONFLICT (tenant_id) DO NOTHING",
                tenant_id,
            )
            for number, kind, nstate, dests in numbers:
                number_id = await conn.fetchval(
                    """INSERT INTO numbers (number, kind, tenant_id, state) VALUES ($1, $2, $3, $4)
                       ON CONFLICT (number) DO UPDATE SET tenant_id = EXCLUDED.tenant_id,
                           state = EXCLUDED.state, kind = EXCLUDED.kind
                       RETURNING id""",
                    number,
                    kind,
                    tenant_id,
                    nstate,
                )
                await conn.execute("DELETE FROM destination_bindings WHERE number_id = $1", number_id)
                for pos, (dest, timeout) in enumerate(dests):
                    await conn.execute(
                        "INSERT INTO destination_bindings (number_id, tenant_id, destination, "
                        "position, ring_timeout_s) VALUES ($1, $2, $3, $4, $5)",
                        number_id,
                        tenant_id,
                        dest,
                        pos,
                        timeout,
                    )


# The portal's demo sign-ins (local demo data only; a real deployment makes its users with
# `softswitch users ...` or POST /v1/users and its own passwords).
DEMO_PASSWORD = "Demo-portal-2026"
DEMO_USERS = (
    # username, role, tenant name (None: an operator)
    ("demo-operator", "platform_admin", None),
    ("demo-admin", "tenant_admin", DEMO_TENANTS[0][0]),
)


async def seed_users(conn: asyncpg.Connection) -> None:
    for username, role, tenant_name in DEMO_USERS:
        tenant_id = None
        if tenant_name is not None:
            tenant_id = await conn.fetchval("SELECT id FROM tenants WHERE name = $1", tenant_name)
        if await conn.fetchval("SELECT 1 FROM operator_users WHERE username = $1", username):
            continue
        await conn.execute(
            "INSERT INTO operator_users (username, display_name, role, tenant_id, password_hash) "
            "VALUES ($1, $1, $2, $3, $4)",
            username,
            role,
            tenant_id,
            await hash_password(DEMO_PASSWORD),
        )


DEMO_CALLS = (
    ("routed to its bound mobile", "4008001234", "13800138000"),
    ("unknown number", "4008000000", "13911112222"),
    ("number awaiting approval", "4008009999", "13911113333"),
    ("enterprise suspended", "4008005555", "02161234567"),
)


async def place_demo_calls(service: Service) -> None:
    """Real calls through both engines while the service runs: SIPp plays the carrier (UAC)
    and the bound destinations (UAS)."""
    s = service.settings
    engines = [("Asterisk", f"{s.asterisk.sip_host}:{s.asterisk.sip_port}")]
    if service.esl is not None:
        engines.append(("FreeSWITCH", f"{s.freeswitch.sip_host}:{s.freeswitch.carrier_port}"))
    uas = SippUas().start()
    try:
        for engine, target in engines:
            print(f"demo: placing calls through {engine} (SIPp carrier -> {engine} {target} -> this service)")
            for label, number, caller in DEMO_CALLS:
                res = await asyncio.to_thread(
                    run_uac, number, caller, hold_ms=1500, timeout_s=30, target=target
                )
                print(f"  {label:<28} {number} -> SIP {res.final_status}")
        await asyncio.sleep(0.5)
    finally:
        uas.stop()
    print("demo: recent calls from the live call registry (GET /v1/calls/recent):")
    for call in service.registry.recent(len(DEMO_CALLS) * len(engines)):
        print(
            f"  {call.linkedid:<36} {call.called:<11} {'>'.join(step for _, step in call.lifecycle):<38}"
            f" cause={call.hangup_cause} {call.hangup_cause_text}"
        )
    esl = f", esl://{s.freeswitch.socket_host}:{s.freeswitch.socket_port}" if service.esl else ""
    print(
        f"demo: serving on agi://{s.agi.host}:{s.agi.port}{esl}, http://{s.http.host}:{s.http.port} "
        "(/readyz /metrics /v1/calls/live); Ctrl-C stops the service, `make stop` the stack."
    )
    users = ", ".join(name for name, _role, _tenant in DEMO_USERS)
    print(
        f"demo: web portal at http://{s.http.host}:{s.http.port}/portal/ "
        f"(sign in as {users}; demo password {DEMO_PASSWORD})"
    )
