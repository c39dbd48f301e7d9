"""Database edges shared by the service and the CLI: the pool, migrations, Asterisk's grants."""

from __future__ import annotations

import json

import asyncpg

from softswitch.core.migrate import Migration, migrate
from softswitch.core.settings import Settings

# Asterisk's login reads and writes its realtime PJSIP tables and appends CDRs; nothing else.
ASTERISK_TABLES_RW = ("ps_endpoints", "ps_auths", "ps_aors", "ps_contacts", "ps_domain_aliases")


async def init_connection(conn: asyncpg.Connection) -> None:
    """JSON columns come back as Python values."""
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def connect(settings: Settings) -> asyncpg.Connection:
    conn = await asyncpg.connect(settings.database.dsn(), timeout=settings.database.command_timeout)
    await init_connection(conn)
    return conn


async def create_pool(settings: Settings) -> asyncpg.Pool:
    db = settings.database
    pool = await asyncpg.create_pool(
        db.dsn(),
        min_size=db.pool_min,
        max_size=db.pool_max,
        command_timeout=db.command_timeout,
        timeout=db.command_timeout,
        init=init_connection,  # JSON columns are Python values on pooled connections too
    )
    assert pool is not None
    return pool


async def migrate_and_grant(settings: Settings) -> list[Migration]:
    conn = await connect(settings)
    try:
        done = await migrate(conn)
        role = '"' + settings.asterisk.db_user.replace('"', '""') + '"'
        if await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", settings.asterisk.db_user):
            tables = ", ".join(ASTERISK_TABLES_RW)
            await conn.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {tables} TO {role}")
            await conn.execute(f"GRANT SELECT, INSERT ON cdr TO {role}")
            await conn.execute(f"GRANT USAGE ON SEQUENCE cdr_id_seq TO {role}")
            # FreeSWITCH's mod_cdr_pg_csv logs in as the same engine role.
            await conn.execute(f"GRANT SELECT, INSERT ON freeswitch_cdr TO {role}")
            await conn.execute(f"GRANT USAGE ON SEQUENCE freeswitch_cdr_id_seq TO {role}")
            # res_musiconhold reads the ringback tones' classes (migration 0028).
            await conn.execute(f"GRANT SELECT ON asterisk_moh_classes, asterisk_moh_entries TO {role}")
        return done
    finally:
        await conn.close()
