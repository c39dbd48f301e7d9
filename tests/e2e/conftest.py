"""The end-to-end harness: the real stack (PostgreSQL, Asterisk, SIPp) and the service run
as `softswitch serve`, exactly as an operator runs it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from provisioning.users import bootstrap_admin
from scripts.devstack.process import ServiceProcess
from scripts.devstack.sipp import SippResult, SippUas, run_uac
from scripts.devstack.stack import LocalStack, exclusive_use
from softswitch.core.db import connect, migrate_and_grant
from softswitch.core.settings import Settings
from tests.conftest import IN_CI, require_stack

ROOT = Path(__file__).resolve().parents[2]
# Every service the harness starts inherits this (a test turns the scheduler on for itself):
# no billing cycle or purge of the shared database in the middle of the suite.
os.environ.setdefault("SOFTSWITCH_SCHEDULER__ENABLED", "false")


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def stack(settings: Settings) -> Iterator[LocalStack]:
    require_stack(settings)
    with exclusive_use(settings):  # another test session or benchmark waits its turn
        st = LocalStack(settings)
        st.up()
        yield st


# The log audit (tests/e2e/test_zz_log_audit.py, issue 19.5) reads every line this session
# wrote: the services' logs (/tmp/softswitch-e2e-*.log) are emptied at its start, the
# engines' and PostgreSQL's logs read from the size they had then; every password and
# token the session sent the service through ServiceProcess.request (or got back from it)
# is kept, so the audit can look for it in the logs. The audit runs last, after the
# browser tests (pytest_collection_modifyitems below runs after tests/conftest.py's).
SERVICE_LOGS = "softswitch-e2e-*.log"


@dataclass
class SessionLogs:
    offsets: dict[Path, int]  # every log file at the session's start: where its lines begin
    sent_secrets: set[str]


def engine_logs(settings: Settings) -> list[Path]:
    return sorted((settings.stack.dir / "logs").glob("*.log"))


def _secrets_of(body: object) -> set[str]:
    if not isinstance(body, dict):
        return set()
    return {v for k, v in body.items() if isinstance(v, str) and ("password" in k or k == "token")}


@pytest.fixture(scope="session", autouse=True)
def session_logs(stack: LocalStack, settings: Settings) -> Iterator[SessionLogs]:
    for path in Path("/tmp").glob(SERVICE_LOGS):
        path.write_bytes(b"")
    logs = SessionLogs({p: p.stat().st_size for p in engine_logs(settings)}, set())
    send = ServiceProcess.request

    def request(self: ServiceProcess, method: str, path: str, **kw: Any) -> Any:
        logs.sent_secrets |= _secrets_of(kw.get("json"))
        resp = send(self, method, path, **kw)
        if resp.headers.get("content-type", "").startswith("application/json"):
            with contextlib.suppress(ValueError):
                logs.sent_secrets |= _secrets_of(resp.json())
        return resp

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ServiceProcess, "request", request)
        yield logs


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: Path(str(item.path)).name == "test_zz_log_audit.py")


# What an e2e session leaves behind: its tenants' routing rows are removed and the tenants
# terminated, so the snapshot every service loads (softswitch/callpath/snapshots.py: every
# number, binding, extension, policy, menu and blacklist row) does not grow run after run.
# The tenants themselves stay (their ledger is append-only, their call records and audit
# rows are history), terminated: the billing cycle and the scheduler's jobs skip them. The
# session holds the stack exclusively, so every row past the marks taken at its start is its own.
_SESSION_ROWS_REMOVED = (
    "DELETE FROM destination_bindings WHERE tenant_id = ANY($1::bigint[])",
    "DELETE FROM numbers WHERE tenant_id = ANY($1::bigint[]) OR (id > $2 AND tenant_id IS NULL)",
    "DELETE FROM sip_extensions WHERE tenant_id = ANY($1::bigint[])",
    "DELETE FROM time_policies WHERE tenant_id = ANY($1::bigint[])",
    "DELETE FROM region_policies WHERE tenant_id = ANY($1::bigint[])",
    "DELETE FROM ivr_menus WHERE tenant_id = ANY($1::bigint[])",
    "DELETE FROM blacklist_entries WHERE tenant_id = ANY($1::bigint[])",
    "UPDATE tenants SET state = 'terminated', terminated_at = COALESCE(terminated_at, now()) "
    "WHERE id = ANY($1::bigint[]) AND state <> 'terminated'",
)


async def snapshot_size(conn: asyncpg.Connection) -> dict[str, int]:
    """Rows of the tables the call path's snapshot loads whole."""
    return {
        "tenants": await conn.fetchval("SELECT count(*) FROM tenants"),
        "numbers": await conn.fetchval("SELECT count(*) FROM numbers WHERE kind <> 'caller_id'"),
        "bindings": await conn.fetchval("SELECT count(*) FROM destination_bindings"),
        "extensions": await conn.fetchval("SELECT count(*) FROM sip_extensions"),
    }


@pytest.fixture(scope="session", autouse=True)
def session_rows_removed(stack: LocalStack, settings: Settings) -> Iterator[None]:
    async def marks() -> tuple[int, int]:
        await migrate_and_grant(settings)
        conn = await connect(settings)
        try:
            return (
                await conn.fetchval("SELECT COALESCE(max(id), 0) FROM tenants"),
                await conn.fetchval("SELECT COALESCE(max(id), 0) FROM numbers"),
            )
        finally:
            await conn.close()

    async def remove(tenant_mark: int, number_mark: int) -> None:
        conn = await connect(settings)
        try:
            before = await snapshot_size(conn)
            async with conn.transaction():
                ids = [r["id"] for r in await conn.fetch("SELECT id FROM tenants WHERE id > $1", tenant_mark)]
                for statement in _SESSION_ROWS_REMOVED:
                    args = (ids, number_mark) if "$2" in statement else (ids,)
                    await conn.execute(statement, *args)
            after = await snapshot_size(conn)
            print(f"\ne2e session rows removed ({len(ids)} tenants terminated): snapshot {before} -> {after}")
        finally:
            await conn.close()

    tenant_mark, number_mark = asyncio.run(marks())
    yield
    asyncio.run(remove(tenant_mark, number_mark))


# The platform's calling hours (08:00-21:00) and per-callee limits (1 a minute...) would
# refuse the suite's outbound calls by the hour CI runs at and by how often tests reach the
# carrier's few numbers: for the session they are opened, and restored after. The tests of
# those rules give their tenant its own rows (tests/e2e/test_compliance_gates.py).
_OPEN_GATES = {
    "calling_hours": {"start": "00:00", "end": "24:00"},
    "callee_frequency": {"windows": [[60, 1000]]},
}


@pytest.fixture(scope="session", autouse=True)
def platform_gates_open(stack: LocalStack, settings: Settings) -> Iterator[None]:
    async def swap(params: dict[str, Any]) -> dict[str, Any]:
        await migrate_and_grant(settings)
        conn = await connect(settings)
        try:
            before = {}
            for kind, value in params.items():
                before[kind] = await conn.fetchval(
                    "SELECT params::text FROM compliance_rules WHERE tenant_id IS NULL AND kind = $1", kind
                )
                # As text: the connection's jsonb codec would encode the JSON text again.
                await conn.execute(
                    "UPDATE compliance_rules SET params = $2::text::jsonb, version = version + 1 "
                    "WHERE tenant_id IS NULL AND kind = $1",
                    kind,
                    value if isinstance(value, str) else json.dumps(value),
                )
            bad = await conn.fetch(
                "SELECT kind FROM compliance_rules "
                "WHERE tenant_id IS NULL AND jsonb_typeof(params) <> 'object'"
            )
            assert not bad, f"platform rules whose params are not a JSON object: {[r['kind'] for r in bad]}"
            return before
        finally:
            await conn.close()

    saved = asyncio.run(swap(_OPEN_GATES))
    yield
    asyncio.run(swap({k: v for k, v in saved.items() if v is not None}))


async def _admin_token(settings: Settings) -> str:
    conn = await connect(settings)
    try:
        return await bootstrap_admin(conn, "e2e-admin", datetime.now(UTC))
    finally:
        await conn.close()


@dataclass(frozen=True)
class Engine:
    """One switching engine of the local stack, as the e2e tests call through it."""

    name: str  # asterisk | freeswitch
    carrier: str  # where the carrier (127.0.0.2) sends calls to unified numbers
    phones: str  # where SIP phones register and call from

    @property
    def is_asterisk(self) -> bool:
        return self.name == "asterisk"


ENGINES = ("asterisk", "freeswitch")


def engine_of(settings: Settings, name: str) -> Engine:
    if name == "asterisk":
        a = settings.asterisk
        return Engine(name, f"{a.sip_host}:{a.sip_port}", f"{a.sip_host}:{a.sip_port}")
    fs = settings.freeswitch
    return Engine(name, f"{fs.sip_host}:{fs.carrier_port}", f"{fs.sip_host}:{fs.phones_port}")


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest, settings: Settings, stack: LocalStack) -> Engine:
    """Each test of the call path that applies to both engines runs through each."""
    if request.param == "freeswitch":
        require_freeswitch(stack)
    return engine_of(settings, request.param)


def require_freeswitch(stack: LocalStack) -> None:
    """Skip without a running FreeSWITCH — unless CI=true, where that is a failure."""
    if stack.fs_pid() is None:
        if IN_CI:
            pytest.fail("CI=true and FreeSWITCH is not running (scripts/freeswitch.sh, stack up)")
        pytest.skip("FreeSWITCH is not built here (scripts/freeswitch.sh)")


@pytest.fixture(scope="session")
def service(stack: LocalStack, settings: Settings) -> Iterator[ServiceProcess]:
    svc = ServiceProcess(settings, token=asyncio.run(_admin_token(settings)))
    svc.log_path.write_bytes(b"")
    try:
        svc.start()
    except RuntimeError as exc:
        pytest.fail(f"{exc}\n{svc.log_path.read_text()[-3000:]}")
    yield svc
    svc.stop()


@pytest.fixture(scope="session")
def destination_carrier(stack: LocalStack) -> Iterator[SippUas]:
    """The bound destinations answer after 200 ms of ringing; numbers ending in 99 never
    answer and in 98 are busy (sipp-scenarios/uas_selective.xml)."""
    with SippUas("uas_selective.xml") as uas:
        yield uas


@pytest.fixture
async def db(stack: LocalStack, settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    await migrate_and_grant(settings)
    conn = await asyncpg.connect(settings.database.dsn())
    try:
        yield conn
    finally:
        await conn.close()


@dataclass(frozen=True)
class ProvisionedNumber:
    tenant_id: int
    number_id: int
    number: str


async def provision(
    conn: asyncpg.Connection,
    service: ServiceProcess,
    *,
    destinations: tuple[str, ...] = ("13800138000",),
    tenant_state: str = "active",
    number_state: str = "active",
    ring_timeout_s: int = 20,
) -> ProvisionedNumber:
    """A fresh tenant and 400 number, live in the service's snapshot when this returns."""
    before = service.metric("softswitch_snapshot_generation")
    number = "400" + "".join(random.choices("0123456789", k=7))
    while await conn.fetchval("SELECT 1 FROM numbers WHERE number = $1", number):  # kept from earlier runs
        number = "400" + "".join(random.choices("0123456789", k=7))
    async with conn.transaction():
        tenant_id = await conn.fetchval(
            "INSERT INTO tenants (name, state) VALUES ($1, $2) RETURNING id",
            f"e2e tenant {number}",
            tenant_state,
        )
        number_id = await conn.fetchval(
            "INSERT INTO numbers (number, kind, tenant_id, state) "
            "VALUES ($1, 'unified_400', $2, $3) RETURNING id",
            number,
            tenant_id,
            number_state,
        )
        # Prepaid: the enterprise pays for the forwarded leg; fund it and give it channels.
        await conn.execute(
            "INSERT INTO accounts (tenant_id, balance, channel_cap) VALUES ($1, 100, 4)", tenant_id
        )
        for pos, dest in enumerate(destinations):
            await conn.execute(
                "INSERT INTO destination_bindings (number_id, tenant_id, destination, position, "
                "ring_timeout_s) VALUES ($1, $2, $3, $4, $5)",
                number_id,
                tenant_id,
                dest,
                pos,
                ring_timeout_s,
            )
    deadline = time.monotonic() + 5
    while service.metric("softswitch_snapshot_generation") <= before:
        if time.monotonic() > deadline:
            raise AssertionError("the service did not reload its snapshot within 5 s")
        await asyncio.sleep(0.05)
    return ProvisionedNumber(tenant_id, number_id, number)


def unique_caller() -> str:
    return "139" + "".join(random.choices("0123456789", k=8))


OWNER = {"owner_name": "Zhang San", "owner_id_number": "310101199001011234"}


def api_ok(response: Any, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return response.json()


def active_number(service: ServiceProcess) -> tuple[int, int, str]:
    """A new tenant and a 400 number taken through its life cycle to active, by the API."""
    tenant_id = api_ok(
        service.request("POST", "/v1/tenants", json={"name": f"e2e live {secrets.token_hex(4)}"}), 201
    )["id"]
    base = f"/v1/tenants/{tenant_id}"
    # Numbers are drawn at random and the stack's database keeps every earlier run's: draw
    # again when one is taken already.
    for _ in range(5):
        number = "400" + "".join(random.choices("0123456789", k=7))
        resp = service.request("POST", f"{base}/numbers", json={"number": number, "kind": "unified_400"})
        if resp.status_code != 409:
            break
    number_id = api_ok(resp, 201)["id"]
    assert (
        api_ok(service.request("POST", f"{base}/numbers/{number_id}/submit"))["state"] == "pending_approval"
    )
    docs = api_ok(service.request("GET", f"{base}/documents"))["items"]
    assert docs, "a new tenant has onboarding documents to approve"
    for doc in docs:
        api_ok(
            service.request(
                "PATCH",
                f"{base}/documents/{doc['id']}",
                json={"status": "approved"},
                headers={"If-Match": f'"{doc["version"]}"'},
            )
        )
    assert api_ok(service.request("POST", f"{base}/numbers/{number_id}/approve"))["state"] == "active"
    # Prepaid: calls ring only with money reserved (one channel: the default cap).
    api_ok(
        service.request(
            "POST",
            f"{base}/recharges",
            json={"amount": "100.00", "reference": "e2e"},
            headers={"Idempotency-Key": f"e2e-fund-{tenant_id}"},
        ),
        201,
    )
    return tenant_id, number_id, number


async def wait_generation_above(service: ServiceProcess, generation: float, budget: float) -> float:
    """Seconds until the service's snapshot generation passes `generation` (fails past budget)."""
    started = time.monotonic()
    while service.metric("softswitch_snapshot_generation") <= generation:
        elapsed = time.monotonic() - started
        assert elapsed < budget, f"the service's snapshot did not reload within {budget} s"
        await asyncio.sleep(0.01)
    return time.monotonic() - started


def mobile(suffix: str = "") -> str:
    """A random mobile-looking destination; `suffix` picks the carrier's behaviour in
    sipp-scenarios/uas_selective.xml (…99 never answers, …98 is busy). Without one, the
    last two digits stay below 90, so a destination meant to answer always does."""
    tail = suffix or f"{random.randrange(90):02d}"
    return "1380013" + "".join(random.choices("0123456789", k=4 - len(tail))) + tail


@contextlib.contextmanager
def restarted(service: ServiceProcess, **env: str) -> Iterator[ServiceProcess]:
    """The service restarted with extra settings in its environment, then restored."""
    service.stop()
    other = ServiceProcess(service.settings, env=env, token=service.token, log_path=service.log_path)
    try:
        other.start()
        yield other
    finally:
        other.stop()
        service.start()


def changed(
    service: ServiceProcess, method: str, path: str, status: int | None = None, **kw: Any
) -> dict[str, Any]:
    """An API change that the next call must see: the answer (`status`, or any 2xx), then
    a wait until the service's snapshot has reloaded (at most 3 s)."""
    generation = service.metric("softswitch_snapshot_generation")
    resp = service.request(method, path, **kw)
    if status is None:
        assert resp.status_code in (200, 201), resp.text
    data = api_ok(resp, status) if status is not None else resp.json()
    deadline = time.monotonic() + 3.0
    while service.metric("softswitch_snapshot_generation") <= generation:
        assert time.monotonic() < deadline, "the service did not reload its snapshot within 3 s"
        time.sleep(0.01)
    return data


async def dialled_legs(
    db: asyncpg.Connection, linkedid: str, engine: Engine, expect: int = 1
) -> list[tuple[str, bool]]:
    """(what the engine dialled, answered) for each outgoing leg of a call, by the engine's
    own records: Asterisk's cdr (the Dial string), FreeSWITCH's freeswitch_cdr (the number
    the leg rang), in the order the legs ended. Waits for `expect` of them (each is written
    when its leg ends), at most 5 s."""
    if engine.is_asterisk:
        query = (
            "SELECT lastdata AS dialled, disposition = 'ANSWERED' AS answered FROM cdr "
            "WHERE linkedid = $1 AND lastapp = 'Dial' ORDER BY id"
        )
    else:
        query = (
            "SELECT destination_number AS dialled, answer_epoch > 0 AS answered FROM freeswitch_cdr "
            "WHERE call_uuid = $1 AND uuid <> call_uuid ORDER BY id"
        )
    deadline = time.monotonic() + 5
    while True:
        rows = await db.fetch(query, linkedid)
        if len(rows) >= expect or time.monotonic() > deadline:
            return [(r["dialled"], r["answered"]) for r in rows]
        await asyncio.sleep(0.02)


def extension(service: ServiceProcess, tenant: int, ext: str, site: str, password: str) -> dict[str, Any]:
    """A SIP extension of the tenant (its endpoint_id registers and calls with `password`)."""
    return changed(
        service,
        "POST",
        f"/v1/tenants/{tenant}/extensions",
        json={"extension": ext, "site": site, "password": password},
    )


def ext_call(
    a: dict[str, Any], password: str, dialled: str, presented: str, target: str, hold_ms: int = 300
) -> SippResult:
    """Extension `a` (from extension()) calls `dialled`, presenting `presented`."""
    return run_uac(
        dialled,
        presented,
        scenario="uac_extension.xml",
        local_ip="127.0.0.5",
        target=target,
        hold_ms=hold_ms,
        extra=("-key", "ext", a["endpoint_id"], "-au", a["endpoint_id"], "-ap", password),
        timeout_s=30,
    )


CARRIER_HOST = "127.0.0.3"  # the carrier SIPp (destination_carrier) outbound calls reach


def carrier_trunk(service: ServiceProcess) -> None:
    """A carrier trunk to the test carrier, routing every number that starts with 1."""
    existing = api_ok(service.request("GET", "/v1/trunks?kind=carrier&limit=500"))["items"]
    if not any(t["host"] == CARRIER_HOST for t in existing):
        body = {"name": f"e2e-{os.getpid()}", "host": CARRIER_HOST, "port": 5060}
        t = changed(service, "POST", "/v1/trunks", json=body)
        changed(service, "POST", "/v1/trunk-routes", json={"trunk_id": t["id"], "prefix": "1", "priority": 1})


async def outbound_row(db: asyncpg.Connection, presented: str) -> asyncpg.Record:
    """The call record of the outbound call whose phone presented `presented`."""
    deadline = time.monotonic() + 5
    while True:
        row = await db.fetchrow(
            "SELECT * FROM calls WHERE caller = $1 AND direction = 'outbound' ORDER BY id DESC LIMIT 1",
            presented,
        )
        if row is not None:
            return row
        assert time.monotonic() < deadline, f"no call record for {presented}"
        await asyncio.sleep(0.05)


def calling_tenant(service: ServiceProcess, ext: str, password: str) -> tuple[int, dict[str, Any]]:
    """A new tenant with an active number (its caller ID) and extension `ext`, and the
    carrier trunk its outbound calls leave by."""
    tenant, _number_id, _number = active_number(service)
    carrier_trunk(service)
    return tenant, extension(service, tenant, ext, "main", password)


def wait_for(what: str, probe: Callable[[], Any], budget: float) -> Any:
    """`probe()` once it is truthy, polled every 20 ms; fails after `budget` seconds."""
    deadline = time.monotonic() + budget
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {budget} s"
        time.sleep(0.02)
