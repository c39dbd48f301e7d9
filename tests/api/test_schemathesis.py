"""Property-based run of every operation in the OpenAPI document (schemathesis 4): no input
makes the API answer 5xx. Bounded: fuzzing only (5 examples per operation, no coverage or
stateful phases).

The ASGI app must exist at collection time for `schema.parametrize()`, but an asyncpg pool
belongs to the event loop that made it; schemathesis runs every ASGI request on one shared
event-loop thread, so the app gets a pool made lazily, on that loop, at its first request.

Path ids are pinned to rows this run made: the fuzzer acts as a platform admin on a shared
database, and must not suspend, revoke or rewrite anybody else's tenants, tokens or users."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis.checks import not_a_server_error

from provisioning.users import bootstrap_admin
from softswitch.core.clock import SystemClock
from softswitch.core.db import create_pool
from softswitch.core.settings import Settings
from tests.api.conftest import (
    TenantWorld,
    bearer,
    build_app,
    expect,
    make_tenant,
    make_user,
    populate_tenant,
    suffix,
    unique_number,
)
from tests.conftest import IN_CI, require_stack

SETTINGS = Settings()


class LazyPool:
    """Made on the first acquire, i.e. on the loop that serves the requests."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._pool: asyncpg.Pool | None = None

    @asynccontextmanager
    async def acquire(self, *, timeout: float | None = None) -> AsyncIterator[asyncpg.Connection]:
        if self._pool is None:
            self._pool = await create_pool(self._settings)
        async with self._pool.acquire(timeout=timeout) as conn:
            yield conn


APP = build_app(LazyPool(SETTINGS), SystemClock(), SETTINGS)  # type: ignore[arg-type]
CONFIG = schemathesis.Config.from_dict(
    {
        "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
        "generation": {"max-examples": 5},
    }
)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP, config=CONFIG)
BOUNDED = hypothesis.settings(
    max_examples=5,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@dataclass
class FuzzWorld:
    admin_token: str
    tenant_admin_token: str
    tenant: TenantWorld
    pins: dict[str, int]  # path parameter -> id for platform rows


async def _setup() -> FuzzWorld:
    pool = await create_pool(SETTINGS)
    try:
        app = build_app(pool, SystemClock(), SETTINGS)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test"
        ) as client:
            tag = suffix()
            async with pool.acquire() as conn:
                admin_token = await bootstrap_admin(conn, f"api-fuzz-{tag}", datetime.now(UTC))
            admin = bearer(admin_token)
            t = await make_tenant(client, admin, f"api-fuzz {tag}")
            tw = TenantWorld(t["id"], t["name"], {}, {})
            tw.users["tenant_admin"], tw.tokens["tenant_admin"] = await make_user(
                client, admin, "tenant_admin", t["id"], tag
            )
            pkg = expect(await client.get("/v1/packages", headers=admin, params={"code": "A39"}), 200)[
                "items"
            ][0]
            await populate_tenant(client, pool, admin, tw, pkg["id"])
            trunk = expect(
                await client.post(
                    "/v1/trunks",
                    headers=admin,
                    json={"name": f"fz-{tag}", "host": "192.0.2.1", "enabled": False},
                ),
                201,
            )
            pins = {
                "packages": expect(
                    await client.post(
                        "/v1/packages",
                        headers=admin,
                        json={"code": f"FZ-{tag}", "name": "fuzz", "kind": "addon"},
                    ),
                    201,
                )["id"],
                "trunks": trunk["id"],
                "trunk-routes": expect(
                    await client.post("/v1/trunk-routes", headers=admin, json={"trunk_id": trunk["id"]}), 201
                )["id"],
                "blacklist": expect(
                    await client.post(
                        "/v1/blacklist", headers=admin, json={"pattern": unique_number("1", 11)}
                    ),
                    201,
                )["id"],
                "users": tw.users["tenant_admin"],
                "numbers": expect(
                    await client.post(
                        "/v1/numbers",
                        headers=admin,
                        json={"number": unique_number("95", 12), "kind": "unified_95"},
                    ),
                    201,
                )["id"],
            }
            token = expect(
                await client.post(f"/v1/users/{tw.users['tenant_admin']}/tokens", headers=admin, json={}), 201
            )
            pins["token"] = token["id"]
            return FuzzWorld(admin_token, tw.tokens["tenant_admin"], tw, pins)
    finally:
        await pool.close()


@pytest.fixture(scope="module")
def fuzz_world() -> FuzzWorld:
    require_stack(SETTINGS)
    try:
        return asyncio.run(_setup())
    except (OSError, asyncpg.PostgresError) as exc:
        if IN_CI:
            pytest.fail(f"CI=true and PostgreSQL is unreachable: {exc}")
        pytest.skip(f"PostgreSQL is unreachable: {exc}")


def pin(case: Any, world: FuzzWorld) -> None:
    """Point the case at this run's own rows (see the module docstring)."""
    params = case.path_parameters or {}
    path: str = case.operation.path
    if "tenant_id" in params:
        params["tenant_id"] = world.tenant.id
    if "user_id" in params:
        params["user_id"] = world.tenant.users["tenant_admin"]
    if "token_id" in params:
        params["token_id"] = world.pins["token"]
    if "number_id" in params:
        params["number_id"] = world.tenant.items["numbers"]
    if "item_id" in params and not path.startswith("/v1/tenants/") and case.method.upper() != "GET":
        params["item_id"] = world.pins[path.split("/")[2]]
    if path == "/v1/compliance/rules/{kind}" and case.method.upper() == "PUT":
        case.headers = {**(case.headers or {}), "If-Match": '"0"'}  # no version: the platform's rules stay


def run_case(case: Any, world: FuzzWorld, token: str) -> None:
    pin(case, world)
    headers = {**(case.headers or {}), **bearer(token)}
    response = case.call(headers=headers)
    case.validate_response(response, checks=[not_a_server_error])


@schema.parametrize()
@BOUNDED
def test_no_server_error_as_platform_admin(case: Any, fuzz_world: FuzzWorld) -> None:
    run_case(case, fuzz_world, fuzz_world.admin_token)


@schema.parametrize()
@BOUNDED
def test_no_server_error_as_tenant_admin(case: Any, fuzz_world: FuzzWorld) -> None:
    run_case(case, fuzz_world, fuzz_world.tenant_admin_token)
