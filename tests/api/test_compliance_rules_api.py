"""Compliance rules through the API: the platform's (operators only), a tenant's effective
rules with their source, tenant overrides set by operators and tightened by the tenant's
admin, reset, validation naming the field, If-Match, audit rows and versions, and a change
reaching the call path's snapshot. Every test uses tenants of its own; no test leaves a
platform rule changed (the one platform write puts back what it read)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest

from dialplan.compliance import KINDS, outbound_rules
from softswitch.callpath.snapshots import SnapshotStore
from softswitch.core.clock import FixedClock
from softswitch.core.metrics import Metrics
from softswitch.core.settings import Settings
from tests.api.conftest import World, bearer, expect, make_tenant, make_user, suffix

pytestmark = pytest.mark.asyncio(loop_scope="session")


@dataclass
class Tenant:
    id: int
    admin: dict[str, str]  # the tenant's admin
    readonly: dict[str, str]


async def new_tenant(client: httpx.AsyncClient, world: World) -> Tenant:
    tag = suffix()
    t = await make_tenant(client, world.admin, f"compliance-rules {tag}")
    _, admin = await make_user(client, world.admin, "tenant_admin", t["id"], tag)
    _, readonly = await make_user(client, world.admin, "tenant_readonly", t["id"], tag)
    return Tenant(t["id"], bearer(admin), bearer(readonly))


def locs(resp: httpx.Response, status: int = 422) -> list[list[Any]]:
    assert resp.status_code == status, resp.text
    return [d["loc"] for d in resp.json()["detail"]]


def by_kind(page: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["kind"]: r for r in page["items"]}


async def effective(
    client: httpx.AsyncClient, tid: int, headers: dict[str, str]
) -> dict[str, dict[str, Any]]:
    return by_kind(expect(await client.get(f"/v1/tenants/{tid}/compliance/rules", headers=headers), 200))


async def audit_rows(pool: asyncpg.Pool, entity_id: int) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return await conn.fetch(
            "SELECT action, tenant_id, before::text AS before, after::text AS after FROM audit_log "
            "WHERE entity = 'compliance_rules' AND entity_id = $1 ORDER BY id",
            str(entity_id),
        )


def cap(amount: str) -> dict[str, Any]:
    return {"params": {"amount": amount}}


# ---------------------------------------------------------------------------- platform
async def test_platform_rules_are_for_operators(client: httpx.AsyncClient, world: World) -> None:
    for token in (world.admin_token, world.staff_token):
        page = expect(await client.get("/v1/compliance/rules", headers=bearer(token)), 200)
        assert [r["kind"] for r in page["items"]] == list(KINDS)
        assert all(r["tenant_id"] is None for r in page["items"])
    for role in ("tenant_admin", "tenant_readonly"):
        headers = bearer(world.a.tokens[role])
        assert locs(await client.get("/v1/compliance/rules", headers=headers), 403)
        assert locs(await client.get("/v1/compliance/rules/calling_hours", headers=headers), 403)
        put = await client.put(
            "/v1/compliance/rules/daily_spend_cap", headers={**headers, "If-Match": '"1"'}, json=cap("1.00")
        )
        assert put.status_code == 403, put.text
    assert (await client.get("/v1/compliance/rules")).status_code == 401


async def test_platform_rule_read_and_unknown_kind(client: httpx.AsyncClient, world: World) -> None:
    resp = await client.get("/v1/compliance/rules/calling_hours", headers=world.admin)
    got = expect(resp, 200)
    assert resp.headers["ETag"] == f'"{got["version"]}"'
    assert set(got["params"]) == {"start", "end"}
    assert locs(await client.get("/v1/compliance/rules/no_such_kind", headers=world.admin), 404) == [
        ["body", "kind"]
    ]
    put = await client.put(
        "/v1/compliance/rules/no_such_kind", headers={**world.admin, "If-Match": '"1"'}, json=cap("1")
    )
    assert locs(put, 404) == [["body", "kind"]]


async def test_platform_put_validates_before_anything_changes(
    client: httpx.AsyncClient, world: World
) -> None:
    url = "/v1/compliance/rules/callee_frequency"
    before = expect(await client.get(url, headers=world.admin), 200)
    stale = {**world.admin, "If-Match": '"0"'}  # never a version: nothing can change here
    bad = await client.put(url, headers=stale, json={"params": {"windows": [[60, 1], [30, 2]]}})
    assert locs(bad) == [["body", "params", "windows"]]
    bad = await client.put(url, headers=stale, json={"params": {"windows": [[60, "x"]]}})
    assert locs(bad) == [["body", "params", "windows", 0, 1]]
    assert locs(await client.put(url, headers=stale, json={"params": {}, "action": "shout"})) == [
        ["body", "action"]
    ]
    ok_body = {"params": before["params"]}
    assert locs(await client.put(url, headers=stale, json=ok_body), 412) == [["header", "If-Match"]]
    assert locs(await client.put(url, headers=world.admin, json=ok_body), 428) == [["header", "If-Match"]]
    assert expect(await client.get(url, headers=world.admin), 200)["version"] == before["version"]


async def test_platform_put_bumps_version_and_audits(
    client: httpx.AsyncClient, world: World, pool: asyncpg.Pool, clock: FixedClock
) -> None:
    """Written back with the values it had: the platform's defaults stay as they were."""
    url = "/v1/compliance/rules/numbers_in_use"
    before = expect(await client.get(url, headers=world.admin), 200)
    body = {k: before[k] for k in ("params", "warning", "critical", "action", "enabled")}
    resp = await client.put(
        url, headers={**bearer(world.staff_token), "If-Match": f'"{before["version"]}"'}, json=body
    )
    after = expect(resp, 200)
    assert after["version"] == before["version"] + 1
    assert resp.headers["ETag"] == f'"{after["version"]}"'
    assert {k: after[k] for k in body} == body
    assert after["updated_at"] == clock.now().isoformat().replace("+00:00", "Z")
    entry = (await audit_rows(pool, after["id"]))[-1]
    assert (entry["action"], entry["tenant_id"]) == ("update", None)
    assert json.loads(entry["before"])["version"] == before["version"]
    assert json.loads(entry["after"])["version"] == after["version"]


# ---------------------------------------------------------------------------- tenant overrides
async def test_an_override_replaces_the_platforms_for_that_tenant_only(
    client: httpx.AsyncClient, world: World, pool: asyncpg.Pool
) -> None:
    t, other = await new_tenant(client, world), await new_tenant(client, world)
    platform = by_kind(expect(await client.get("/v1/compliance/rules", headers=world.admin), 200))
    start = await effective(client, t.id, t.readonly)
    assert list(start) == list(KINDS)
    assert all(r["source"] == "platform" for r in start.values())
    assert start["calling_hours"]["params"] == platform["calling_hours"]["params"]

    url = f"/v1/tenants/{t.id}/compliance/rules/calling_hours"
    hours = {"params": {"start": "09:30", "end": "18:00"}}
    created = expect(await client.put(url, headers=world.admin, json=hours), 200)
    assert (created["source"], created["tenant_id"], created["version"]) == ("tenant", t.id, 1)
    now = await effective(client, t.id, t.admin)
    assert now["calling_hours"]["params"] == hours["params"]
    assert now["calling_hours"]["source"] == "tenant"
    assert {k for k, r in now.items() if r["source"] == "tenant"} == {"calling_hours"}
    assert (await effective(client, other.id, other.admin))["calling_hours"]["source"] == "platform"

    # a second write needs the version of the tenant's own row
    later = {"params": {"start": "09:30", "end": "17:00"}}
    assert locs(await client.put(url, headers=world.admin, json=later), 428) == [["header", "If-Match"]]
    assert locs(await client.put(url, headers={**world.admin, "If-Match": '"7"'}, json=later), 412)
    updated = expect(await client.put(url, headers={**world.admin, "If-Match": '"1"'}, json=later), 200)
    assert updated["version"] == 2

    reset = await client.delete(url, headers={**world.admin, "If-Match": '"2"'})
    assert expect(reset, 200)["source"] == "platform"
    assert (await effective(client, t.id, t.admin))["calling_hours"]["source"] == "platform"
    assert locs(await client.delete(url, headers={**world.admin, "If-Match": '"2"'}), 404) == [
        ["body", "kind"]
    ]

    actions = [(r["action"], r["tenant_id"]) for r in await audit_rows(pool, created["id"])]
    assert actions == [("create", t.id), ("update", t.id), ("delete", t.id)]
    create, update, delete = await audit_rows(pool, created["id"])
    assert create["before"] is None and json.loads(create["after"])["params"] == hours["params"]
    assert json.loads(update["before"])["params"] == hours["params"]
    assert json.loads(update["after"])["params"] == later["params"]
    assert json.loads(delete["before"])["version"] == 2 and delete["after"] is None


async def test_tenant_rules_validation_names_the_field(client: httpx.AsyncClient, world: World) -> None:
    t = await new_tenant(client, world)
    base = f"/v1/tenants/{t.id}/compliance/rules"
    cases: list[tuple[str, dict[str, Any], list[Any]]] = [
        ("callee_frequency", {"params": {"windows": [[60, 1]] * 7}}, ["body", "params", "windows"]),
        ("calling_hours", {"params": {"start": "08:00", "end": "25:00"}}, ["body", "params", "end"]),
        ("daily_spend_cap", cap("12.34567"), ["body", "params", "amount"]),
        ("daily_spend_cap", {"params": {"amount": "1"}, "warning": 1}, ["body", "warning"]),
        (
            "robocall",
            {"params": {"window_s": 600}, "warning": 1, "critical": 2},
            ["body", "params", "max_answer_rate"],
        ),
        (
            "failed_rate",
            {"params": {"window_s": 60, "min_calls": 5}, "warning": "0.9", "critical": "0.5"},
            ["body", "critical"],
        ),
        (
            "one_ring",
            {"params": {"window_s": 60, "ring_s": 4, "min_calls": 5}, "warning": 2, "critical": 3},
            ["body", "warning"],
        ),
        (
            "complaints",
            {"params": {"window_s": 60}, "warning": "1.23456", "critical": 2},
            ["body", "warning"],
        ),
        ("complaints", {"params": {"window_s": 60}, "critical": 2, "colour": "red"}, ["body", "colour"]),
    ]
    for kind, body, loc in cases:
        assert loc in locs(await client.put(f"{base}/{kind}", headers=world.admin, json=body)), (kind, body)
    assert locs(await client.put(f"{base}/nope", headers=world.admin, json=cap("1")), 404) == [
        ["body", "kind"]
    ]
    # nothing was written
    assert all(r["source"] == "platform" for r in (await effective(client, t.id, t.admin)).values())


async def test_another_tenants_rules_are_not_there(client: httpx.AsyncClient, world: World) -> None:
    t = await new_tenant(client, world)
    foreign = bearer(world.b.tokens["tenant_admin"])
    assert locs(await client.get(f"/v1/tenants/{t.id}/compliance/rules", headers=foreign), 404) == [
        ["body", "tenant_id"]
    ]
    resp = await client.put(
        f"/v1/tenants/{t.id}/compliance/rules/daily_spend_cap", headers=foreign, json=cap("1")
    )
    assert resp.status_code == 404
    assert (
        await client.get("/v1/tenants/9007199254740000/compliance/rules", headers=world.admin)
    ).status_code == 404


async def test_a_tenants_admin_may_only_tighten(client: httpx.AsyncClient, world: World) -> None:
    t = await new_tenant(client, world)
    rules = await effective(client, t.id, t.admin)
    platform_cap = Decimal(rules["daily_spend_cap"]["params"]["amount"])
    url = f"/v1/tenants/{t.id}/compliance/rules/daily_spend_cap"

    assert (await client.put(url, headers=t.readonly, json=cap("1.00"))).status_code == 403
    higher = cap(str(platform_cap + 1))
    assert locs(await client.put(url, headers=t.admin, json=higher), 403) == [["body", "params", "amount"]]
    off = {**cap(str(platform_cap)), "enabled": False}
    assert locs(await client.put(url, headers=t.admin, json=off), 403) == [["body", "enabled"]]
    lower = str(platform_cap - 1)
    own = expect(await client.put(url, headers=t.admin, json=cap(lower)), 200)
    assert own["params"]["amount"] == lower and own["source"] == "tenant"
    # looser than its own now, though as tight as the platform's: refused
    same_as_platform = cap(str(platform_cap))
    resp = await client.put(url, headers={**t.admin, "If-Match": '"1"'}, json=same_as_platform)
    assert locs(resp, 403) == [["body", "params", "amount"]]
    # resetting to the (looser) platform's is loosening too; the operator may
    assert locs(await client.delete(url, headers={**t.admin, "If-Match": '"1"'}), 403)
    assert (await client.delete(url, headers={**t.readonly, "If-Match": '"1"'})).status_code == 403
    # an operator's looser override: the tenant's admin may go back to the tighter platform's
    looser = expect(
        await client.put(url, headers={**world.admin, "If-Match": '"1"'}, json=cap(str(platform_cap * 2))),
        200,
    )
    back = await client.delete(url, headers={**t.admin, "If-Match": f'"{looser["version"]}"'})
    assert expect(back, 200)["params"]["amount"] == str(platform_cap)

    # monitors: levels reached no later, actions no milder
    url = f"/v1/tenants/{t.id}/compliance/rules/complaints"
    current = rules["complaints"]
    body = {k: current[k] for k in ("params", "warning", "critical", "action", "enabled")}
    milder = {**body, "action": "notice"} if current["action"] != "notice" else None
    if milder is not None:
        assert locs(await client.put(url, headers=t.admin, json=milder), 403) == [["body", "action"]]
    later = {**body, "critical": str(Decimal(current["critical"]) + 1)}
    assert locs(await client.put(url, headers=t.admin, json=later), 403) == [["body", "critical"]]
    sooner = {**body, "warning": "1", "critical": "2", "action": "suspend"}
    assert expect(await client.put(url, headers=t.admin, json=sooner), 200)["critical"] == "2.0000"


async def test_a_rule_changed_through_the_api_reaches_the_call_path(
    client: httpx.AsyncClient, world: World, pool: asyncpg.Pool, settings: Settings, clock: FixedClock
) -> None:
    t = await new_tenant(client, world)
    store = SnapshotStore(pool, settings.database.dsn(), clock, Metrics(), safety_interval=3600)
    await store.start()
    try:
        assert "daily_spend_cap" in store.current.compliance.for_tenant(t.id)
        await until(lambda: store._listen_conn is not None)  # listening: a NOTIFY from now on is seen
        url = f"/v1/tenants/{t.id}/compliance/rules/callee_frequency"
        windows = [[120, 1], [3600, 3]]
        expect(await client.put(url, headers=world.admin, json={"params": {"windows": windows}}), 200)
        # the tenant's own row, not the platform's (whose params another test may be changing)
        await until(lambda: store.current.compliance.for_tenant(t.id)["callee_frequency"].tenant_id == t.id)
        rule = store.current.compliance.for_tenant(t.id)["callee_frequency"]
        assert rule.params == {"windows": windows}
        assert outbound_rules({"callee_frequency": rule}).longest_window_s == 3600
        # switched off for the tenant: the call path applies no per-callee windows to it
        off = {"params": {"windows": windows}, "enabled": False}
        expect(await client.put(url, headers={**world.admin, "If-Match": '"1"'}, json=off), 200)
        await until(lambda: "callee_frequency" not in store.current.compliance.for_tenant(t.id))
    finally:
        await store.stop()


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for a condition (polled: the store offers nothing to await)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)
