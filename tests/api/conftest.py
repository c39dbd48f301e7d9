"""The provisioning API against the real PostgreSQL, by default through the real HTTP
server: the production app (softswitch.http.create_app, what `softswitch serve` mounts)
served by uvicorn on a free loopback port, in the session's event loop (the pool and the
FixedClock are shared with the tests). SOFTSWITCH_TEST_API_SERVER=0 runs the same tests
in-process instead (FastAPI + httpx ASGI transport, the provisioning router alone), which
shows a server error's traceback in the failing test. Every run makes its own tenants, users
and numbers (random suffixes) and never truncates anything: other tests share the database."""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
import uvicorn
from fastapi import FastAPI

from provisioning.api import ApiDeps, build_router, install_error_handlers
from provisioning.users import bootstrap_admin
from softswitch.callpath.registry import CallRegistry
from softswitch.core.clock import Clock, FixedClock
from softswitch.core.db import create_pool
from softswitch.core.metrics import Metrics
from softswitch.core.settings import Settings
from softswitch.engines.asterisk.ami.client import AmiClient
from softswitch.http import HttpDeps, create_app
from softswitch.service import _EmbeddedUvicorn
from tests.conftest import IN_CI, is_ci, require_stack

# Through uvicorn and the production app unless SOFTSWITCH_TEST_API_SERVER is false-ish.
THROUGH_SERVER = is_ci(os.environ.get("SOFTSWITCH_TEST_API_SERVER", "1"))

# A valid-looking ID number: responses and audit entries must never show it whole.
ID_NUMBER = "310101199001011234"
TENANT_ROLES = ("tenant_admin", "tenant_readonly")
OPERATOR_ROLES = ("platform_admin", "operator_staff")
ALL_ROLES = OPERATOR_ROLES + TENANT_ROLES


def suffix() -> str:
    return secrets.token_hex(4)


def unique_number(prefix: str = "400", length: int = 12) -> str:
    return prefix + "".join(random.choice("0123456789") for _ in range(length - len(prefix)))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def build_app(pool: asyncpg.Pool, clock: Any, settings: Settings | None = None) -> FastAPI:
    app = FastAPI(title="softswitch provisioning (tests)")
    install_error_handlers(app)
    app.include_router(build_router(ApiDeps(pool, clock, settings)))
    return app


def production_app(
    pool: asyncpg.Pool, clock: Clock, settings: Settings, registry: CallRegistry | None = None
) -> FastAPI:
    """The app `softswitch serve` mounts, with an AMI client that is never started (the
    routes under test need no engine: /readyz says "disconnected") and no FreeSWITCH."""
    a = settings.ami
    ami = AmiClient(a.host, a.port, a.username, a.secret.get_secret_value())
    return create_app(HttpDeps(Metrics(), ami, pool, registry or CallRegistry(clock), clock, settings))


@asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """`app` served by uvicorn (as the service runs it: lifespan off) on a free loopback
    port, in this event loop; yields its base URL."""
    # proto IPPROTO_TCP, as getaddrinfo gives it: asyncio sets TCP_NODELAY on the accepted
    # sockets only then (with proto 0 every response waited ~40 ms for a delayed ACK).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = _EmbeddedUvicorn(uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False))
    task = asyncio.create_task(server.serve(sockets=[sock]), name=f"api-test-http-{port}")
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    raise RuntimeError(f"uvicorn did not start on 127.0.0.1:{port}: {task.exception()!r}")
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        async with asyncio.timeout(10):
            await asyncio.gather(task, return_exceptions=True)
        sock.close()


def loopback_source() -> str:
    """A loopback address of this session's own (Linux answers all of 127/8): the service's
    limit on failed tokens counts per source, and 127.0.0.1 is everyone's."""
    return f"127.{random.randrange(1, 255)}.{random.randrange(256)}.{random.randrange(1, 255)}"


def expect(resp: httpx.Response, status: int) -> Any:
    assert resp.status_code == status, (
        f"{resp.request.method} {resp.request.url}: {resp.status_code} {resp.text}"
    )
    return resp.json() if resp.content else None


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    require_stack(settings)
    try:
        p = await create_pool(settings)
    except (OSError, asyncpg.PostgresError) as exc:
        msg = f"PostgreSQL at {settings.database.host}:{settings.database.port} unreachable: {exc}"
        if IN_CI:
            pytest.fail(f"CI=true and {msg}")
        pytest.skip(msg)
    try:
        yield p
    finally:
        await p.close()


@pytest.fixture(scope="session")
def clock() -> FixedClock:
    """The app's clock; a test that moves it puts it back."""
    return FixedClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture(scope="session")
def app(pool: asyncpg.Pool, clock: FixedClock, settings: Settings) -> FastAPI:
    if THROUGH_SERVER:
        return production_app(pool, clock, settings)
    return build_app(pool, clock, settings)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def client(app: FastAPI, pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    if not THROUGH_SERVER:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
            yield c
        return
    source = loopback_source()
    transport = httpx.AsyncHTTPTransport(local_address=source)
    async with served(app) as url, httpx.AsyncClient(transport=transport, base_url=url, timeout=30) as c:
        try:
            yield c
        finally:
            # The failures this session's source was charged (bad tokens on purpose).
            async with pool.acquire() as conn:
                await conn.execute("DELETE FROM auth_failures WHERE key = $1", f"src:{source}")


@dataclass
class TenantWorld:
    id: int
    name: str
    tokens: dict[str, str]  # role -> token
    users: dict[str, int]  # role -> user id
    items: dict[str, int] = field(default_factory=dict)  # resource name -> one row id
    number: str = ""


@dataclass
class World:
    tag: str
    admin_token: str
    staff_token: str
    a: TenantWorld
    b: TenantWorld

    def token(self, role: str, tenant: TenantWorld) -> str:
        if role == "platform_admin":
            return self.admin_token
        if role == "operator_staff":
            return self.staff_token
        return tenant.tokens[role]

    @property
    def admin(self) -> dict[str, str]:
        return bearer(self.admin_token)


async def make_user(
    client: httpx.AsyncClient, admin: dict[str, str], role: str, tenant_id: int | None, tag: str
) -> tuple[int, str]:
    user = expect(
        await client.post(
            "/v1/users",
            headers=admin,
            json={"username": f"api-{role}-{tag}-{suffix()}", "role": role, "tenant_id": tenant_id},
        ),
        201,
    )
    issued = expect(
        await client.post(f"/v1/users/{user['id']}/tokens", headers=admin, json={"name": "t"}), 201
    )
    return user["id"], issued["token"]


async def make_tenant(client: httpx.AsyncClient, admin: dict[str, str], name: str) -> dict[str, Any]:
    return expect(
        await client.post(
            "/v1/tenants",
            headers=admin,
            json={
                "name": name,
                "legal_person_name": "Zhang San",
                "legal_person_id_number": ID_NUMBER,
                "emergency_contact_phone": "13800138000",
            },
        ),
        201,
    )


async def populate_tenant(
    client: httpx.AsyncClient, pool: asyncpg.Pool, admin: dict[str, str], tw: TenantWorld, package_id: int
) -> None:
    """One row of every tenant-scoped resource, made by the platform admin."""
    base = f"/v1/tenants/{tw.id}"
    tw.number = unique_number()
    num = expect(
        await client.post(
            f"{base}/numbers", headers=admin, json={"number": tw.number, "kind": "unified_400"}
        ),
        201,
    )
    tw.items["numbers"] = num["id"]
    creates: dict[str, dict[str, Any]] = {
        "bindings": {
            "number_id": num["id"],
            "destination": "13800138000",
            "owner_name": "Li Si",
            "owner_id_number": ID_NUMBER,
        },
        "extensions": {"extension": "8001", "display_name": "Front desk", "password": "s3cret-Pass-01"},
        "subscriptions": {"package_id": package_id, "starts_on": datetime.now(UTC).date().isoformat()},
        "time-policies": {
            "name": "office",
            "definition": {"weekly": [{"days": ["mon", "tue"], "start": "09:00", "end": "18:00"}]},
        },
        "region-policies": {
            "name": "mainland",
            "definition": {"rules": [{"province": "广东", "action": "deny"}]},
        },
        "ivr-menus": {
            "name": "main",
            "definition": {"prompt": "vm-intro", "options": {"1": {"action": "hangup"}}},
        },
        "blacklist": {"pattern": "13900000000", "note": "spam"},
        "pins": {"number_id": num["id"], "pin": "4321"},
        "customers": {"name": "Zhang San", "company": "Acme", "phones": ["13800138000"]},
    }
    for name, body in creates.items():
        tw.items[name] = expect(await client.post(f"{base}/{name}", headers=admin, json=body), 201)["id"]
    note = {"customer_id": tw.items["customers"], "body": "prefers calls after 14:00"}
    tw.items["customer-notes"] = expect(
        await client.post(f"{base}/customer-notes", headers=admin, json=note), 201
    )["id"]
    ledger = expect(
        await client.post(
            f"{base}/recharges",
            headers={**admin, "Idempotency-Key": f"world-{uuid.uuid4()}"},
            json={"amount": "50.00", "reference": "world"},
        ),
        201,
    )
    tw.items["ledger"] = ledger["id"]
    docs = expect(await client.get(f"{base}/documents", headers=admin), 200)["items"]
    tw.items["documents"] = docs[0]["id"]
    async with pool.acquire() as conn:
        tw.items["calls"] = await conn.fetchval(
            "INSERT INTO calls (linkedid, uniqueid, tenant_id, number_id, caller, called, action, reason, "
            "decided_at) VALUES ($1, $1, $2, $3, '13700000000', $4, 'route', 'ok', now()) RETURNING id",
            f"api-test-{uuid.uuid4()}",
            tw.id,
            num["id"],
            tw.number,
        )
        # Notices are written by the billing cycle and the call path, never through the API.
        tw.items["notices"] = await conn.fetchval(
            "INSERT INTO outbox (tenant_id, kind, dedupe_key, payload) VALUES ($1, 'low_balance', $2, '{}') "
            "RETURNING id",
            tw.id,
            f"api-test-{uuid.uuid4()}",
        )
    audit = expect(await client.get(f"{base}/audit", headers=admin, params={"limit": 1}), 200)["items"]
    tw.items["audit"] = audit[0]["id"]


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def world(client: httpx.AsyncClient, pool: asyncpg.Pool, clock: FixedClock) -> World:
    tag = suffix()
    async with pool.acquire() as conn:
        admin_token = await bootstrap_admin(conn, f"api-admin-{tag}", clock.now())
    admin = bearer(admin_token)
    _, staff_token = await make_user(client, admin, "operator_staff", None, tag)
    packages = expect(await client.get("/v1/packages", headers=admin, params={"code": "A39"}), 200)["items"]
    assert packages, "seed package A39 is missing (migrations not applied?)"
    tenants: list[TenantWorld] = []
    for letter in ("a", "b"):
        t = await make_tenant(client, admin, f"api-test {letter.upper()} {tag}")
        tw = TenantWorld(t["id"], t["name"], {}, {})
        for role in TENANT_ROLES:
            tw.users[role], tw.tokens[role] = await make_user(client, admin, role, t["id"], tag)
        await populate_tenant(client, pool, admin, tw, packages[0]["id"])
        tenants.append(tw)
    return World(tag, admin_token, staff_token, tenants[0], tenants[1])
