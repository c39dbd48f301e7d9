"""Property-based run of every operation of the production app's OpenAPI document
(softswitch.http.create_app: provisioning, analysis, compliance, prompts, recordings, calls,
health; schemathesis 4): no input makes the service answer 5xx. Two phases, bounded:

- per operation, MAX_EXAMPLES generated cases (plus the schema's examples), as a platform
  admin and as the tenant's admin;
- the stateful phase: schemathesis's state machine, following the links it infers between
  operations (a list's or a create's ids into the item's GET/PATCH/DELETE), STATEFUL_RUNS
  scenarios of at most STATEFUL_STEPS calls.

The cases reach real objects: every path id with an even generated value is replaced by a
row this run made (one of every tenant resource, a recording with its file, a live call in
the registry, a prompt), and a PATCH/DELETE/PUT on a path whose ETag was seen gets that ETag
as If-Match, so updates and deletes get past the version check.

The ASGI app must exist at collection time for `schema.parametrize()`, but an asyncpg pool
belongs to the event loop that made it; schemathesis runs every ASGI request on one shared
event-loop thread, so the app gets a pool made lazily, on that loop, at its first request.
Files (prompts, recordings) are the run's tenant's only (under its own directories of the
stack's Asterisk tree: menus are checked against the stack's sounds).

Safety on a shared database: the fuzzer acts as a platform admin, so every tenant id is this
run's tenant, and user, token and platform-row ids of writes are this run's rows — it never
suspends, revokes or rewrites anybody else's tenants, tokens or users; PUT of a platform
compliance rule always carries If-Match "0" (no version: the platform's rules stay)."""

from __future__ import annotations

import asyncio
import re
import uuid
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import hypothesis
import hypothesis.errors
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis.checks import not_a_server_error

from provisioning.users import bootstrap_admin
from softswitch.callpath.registry import CallRegistry
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
    production_app,
    suffix,
    unique_number,
)
from tests.api.test_recordings_api import _wav
from tests.conftest import IN_CI, require_stack

MAX_EXAMPLES = 6
STATEFUL_RUNS = 12
STATEFUL_STEPS = 12

SETTINGS = Settings()
CLOCK = SystemClock()
REGISTRY = CallRegistry(CLOCK)


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


APP = production_app(LazyPool(SETTINGS), CLOCK, SETTINGS, REGISTRY)  # type: ignore[arg-type]
CONFIG = schemathesis.Config.from_dict(
    {
        "phases": {"coverage": {"enabled": False}},
        "generation": {"max-examples": MAX_EXAMPLES},
    }
)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP, config=CONFIG)
BOUNDED = hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
STATEFUL = hypothesis.settings(
    max_examples=STATEFUL_RUNS,
    stateful_step_count=STATEFUL_STEPS,
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
    recording: int
    linkedid: str
    prompt: str
    etags: dict[str, str] = field(default_factory=dict)  # a path -> the last ETag it answered


async def _seed_recording(pool: asyncpg.Pool, tenant_id: int) -> int:
    linkedid = f"fz-{uuid.uuid4().hex[:12]}"
    inside = f"{SETTINGS.recording.spool}/{tenant_id}/{linkedid}.wav"
    _wav(Path(SETTINGS.asterisk.chroot) / inside.lstrip("/"), 1.0)
    async with pool.acquire() as conn:
        return int(
            await conn.fetchval(
                "INSERT INTO recordings (tenant_id, call_linkedid, mode, path, status, size_bytes, "
                "duration_s, caller, called, started_at) VALUES ($1, $2, 'record', $3, 'stored', 16044, "
                "1.0, '13912345678', '4001234567', $4) RETURNING id",
                tenant_id,
                linkedid,
                inside,
                datetime.now(UTC) - timedelta(hours=1),
            )
        )


async def _setup() -> FuzzWorld:
    pool = await create_pool(SETTINGS)
    try:
        app = build_app(pool, CLOCK, SETTINGS)
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
            victim, _ = await make_user(client, admin, "tenant_admin", t["id"], tag)
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
                # Writes to users and tokens go to a user of their own: one that disabled the
                # tenant admin the fuzzer acts as would make every later case a failed token.
                "users": victim,
                "numbers": expect(
                    await client.post(
                        "/v1/numbers",
                        headers=admin,
                        json={"number": unique_number("95", 12), "kind": "unified_95"},
                    ),
                    201,
                )["id"],
            }
            token = expect(await client.post(f"/v1/users/{victim}/tokens", headers=admin, json={}), 201)
            pins["token"] = token["id"]
            recording = await _seed_recording(pool, tw.id)
    finally:
        await pool.close()
    # A live call for /v1/calls/{linkedid}: the registry is the app's, in memory.
    linkedid = f"fz-{tag}.1"
    REGISTRY.channel_created(f"{linkedid}-a", linkedid, "PJSIP/fz-00000001", "13912345678", tw.number)
    return FuzzWorld(admin_token, tw.tokens["tenant_admin"], tw, pins, recording, linkedid, "fz-greeting")


@pytest.fixture(scope="module")
def fuzz_world() -> FuzzWorld:
    require_stack(SETTINGS)
    try:
        return asyncio.run(_setup())
    except (OSError, asyncpg.PostgresError) as exc:
        if IN_CI:
            pytest.fail(f"CI=true and PostgreSQL is unreachable: {exc}")
        pytest.skip(f"PostgreSQL is unreachable: {exc}")


def _even(value: Any) -> bool:
    return isinstance(value, int) and value % 2 == 0 or isinstance(value, str) and len(value) % 2 == 0


_TENANT_ITEM = re.compile(r"^/v1/tenants/\{tenant_id\}/([a-z-]+)/\{item_id\}")


def pin(case: Any, world: FuzzWorld) -> None:
    """Point the case at this run's own rows (see the module docstring); an even generated
    id (or a string of even length) is swapped for a real object, so about half the cases of
    an item's operation reach one and the rest keep the fuzzed value."""
    params = case.path_parameters if case.path_parameters is not None else {}
    path: str = case.operation.path
    method = case.method.upper()
    if "tenant_id" in params:
        params["tenant_id"] = world.tenant.id
    if "user_id" in params:
        params["user_id"] = world.pins["users"]
    if "token_id" in params:
        params["token_id"] = world.pins["token"]
    if "number_id" in params:
        params["number_id"] = world.tenant.items["numbers"]
    if "item_id" in params:
        tenant_item = _TENANT_ITEM.match(path)
        if tenant_item:
            if _even(params["item_id"]) and tenant_item.group(1) in world.tenant.items:
                params["item_id"] = world.tenant.items[tenant_item.group(1)]
        elif method != "GET" or _even(params["item_id"]):
            params["item_id"] = world.pins.get(path.split("/")[2], params["item_id"])
    if "recording_id" in params and _even(params["recording_id"]):
        params["recording_id"] = world.recording
    if "linkedid" in params and _even(params["linkedid"]):
        params["linkedid"] = world.linkedid
    if "name" in params and path.startswith("/v1/tenants/{tenant_id}/prompts/") and _even(params["name"]):
        params["name"] = world.prompt
    if isinstance(case.body, dict):
        # The stateful phase feeds real ids of other tenants and trunks into bodies too.
        if case.body.get("tenant_id") is not None:
            case.body["tenant_id"] = world.tenant.id
        if "trunk_id" in case.body:
            case.body["trunk_id"] = world.pins["trunks"]
        if path.startswith("/v1/trunks") and method in ("POST", "PATCH"):
            case.body["enabled"] = False  # a fuzzed trunk never carries anybody's calls
    if method in ("PATCH", "DELETE", "PUT"):
        seen = world.etags.get(case.formatted_path)
        if seen is not None:
            case.headers = {**(case.headers or {}), "If-Match": seen}
    if path == "/v1/compliance/rules/{kind}" and method == "PUT":
        case.headers = {**(case.headers or {}), "If-Match": '"0"'}  # no version: the platform's rules stay


def remember_etag(case: Any, response: Any, world: FuzzWorld) -> None:
    etag = response.headers.get("etag")
    if etag and 200 <= response.status_code < 300:
        world.etags[case.formatted_path] = etag[0] if isinstance(etag, list) else etag


def check(case: Any, response: Any) -> None:
    if case.operation.path == "/readyz" and response.status_code == 503:
        return  # not ready by design: no engine is connected here (its body says which)
    case.validate_response(response, checks=[not_a_server_error])


def run_case(case: Any, world: FuzzWorld, token: str) -> None:
    pin(case, world)
    headers = {**(case.headers or {}), **bearer(token)}
    response = case.call(headers=headers)
    remember_etag(case, response, world)
    check(case, response)


@schema.parametrize()
@BOUNDED
def test_no_server_error_as_platform_admin(case: Any, fuzz_world: FuzzWorld) -> None:
    run_case(case, fuzz_world, fuzz_world.admin_token)


@schema.parametrize()
@BOUNDED
def test_no_server_error_as_tenant_admin(case: Any, fuzz_world: FuzzWorld) -> None:
    run_case(case, fuzz_world, fuzz_world.tenant_admin_token)


def _state_machine(world: FuzzWorld, token: str) -> Any:
    base: Any = schema.as_state_machine()

    class Scenario(base):  # type: ignore[misc, valid-type]
        def before_call(self, case: Any) -> None:
            pin(case, world)

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"headers": {**(case.headers or {}), **bearer(token)}}

        def after_call(self, response: Any, case: Any) -> None:
            remember_etag(case, response, world)

        def validate_response(self, response: Any, case: Any, *args: Any, **kwargs: Any) -> None:
            check(case, response)

    return Scenario


@pytest.mark.parametrize("role", ["platform_admin", "tenant_admin"])
def test_stateful_no_server_error(fuzz_world: FuzzWorld, role: str) -> None:
    token = fuzz_world.admin_token if role == "platform_admin" else fuzz_world.tenant_admin_token
    try:
        _state_machine(fuzz_world, token).run(settings=STATEFUL)
    except hypothesis.errors.FlakyStrategyDefinition as exc:
        # The database is the machine's state: a replayed scenario may meet an object an
        # earlier one deleted and draw differently. That ends the run early; a 5xx is never
        # this error (it raises the check's failure), so it is noted, not failed.
        warnings.warn(f"stateful run ended early: {exc}", stacklevel=1)
    except AssertionError as exc:
        # The same drift seen one step earlier: Hypothesis's own tree of choices asserts
        # that a replay drew as before (hypothesis/internal/conjecture/datatree.py). Only
        # an assertion raised inside Hypothesis is this; any other fails the test.
        if not _raised_in_hypothesis(exc):
            raise
        warnings.warn(f"stateful run ended early (choices drifted): {exc!r}", stacklevel=1)


def _raised_in_hypothesis(exc: BaseException) -> bool:
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last, tb = tb, tb.tb_next
    return last is not None and "/hypothesis/internal/" in last.tb_frame.f_code.co_filename
