"""Tests that need only the real PostgreSQL (no Asterisk)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import asyncpg
import pytest

from scripts.devstack.stack import LocalStack
from softswitch.core.db import create_pool, migrate_and_grant
from softswitch.core.settings import Settings
from tests.conftest import require_stack


@pytest.fixture
async def pool() -> AsyncIterator[asyncpg.Pool]:
    settings = Settings()
    require_stack(settings)
    LocalStack(settings).pg_up()  # under the shared lock require_stack took: no one restarts it
    await migrate_and_grant(settings)
    p = await create_pool(
        settings.model_copy(update={"database": settings.database.model_copy(update={"pool_max": 40})})
    )
    try:
        yield p
    finally:
        await p.close()


async def new_tenant(conn: asyncpg.Connection, **account: object) -> int:
    tenant_id = await conn.fetchval(
        "INSERT INTO tenants (name) VALUES ($1) RETURNING id", f"db-test {random.getrandbits(48):x}"
    )
    cols = ["tenant_id", *account]
    marks = ", ".join(f"${i}" for i in range(1, len(cols) + 1))
    await conn.execute(
        f"INSERT INTO accounts ({', '.join(cols)}) VALUES ({marks})", tenant_id, *account.values()
    )
    return tenant_id
