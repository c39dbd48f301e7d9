"""Complaints through the API: registered by operators only, against a number the tenant
owns or presented, never in the future; read by the tenant's users with the complainant
masked; listed with filters and paging; audited; a NOTIFY compliance_complaint for the
monitors in the same transaction; counted per tenant in a window."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from provisioning.compliance.complaints import complaints_in_window
from softswitch.core.clock import FixedClock
from softswitch.core.settings import Settings
from tests.api.conftest import World, bearer, expect, make_tenant, make_user, suffix, unique_number

pytestmark = pytest.mark.asyncio(loop_scope="session")

CALLEE = "13912345678"


@dataclass
class Tenant:
    id: int
    number: str
    admin: dict[str, str]
    readonly: dict[str, str]

    @property
    def url(self) -> str:
        return f"/v1/tenants/{self.id}/complaints"


async def new_tenant(client: httpx.AsyncClient, world: World) -> Tenant:
    tag = suffix()
    t = await make_tenant(client, world.admin, f"complaints {tag}")
    number = unique_number()
    expect(
        await client.post(
            f"/v1/tenants/{t['id']}/numbers",
            headers=world.admin,
            json={"number": number, "kind": "unified_400"},
        ),
        201,
    )
    _, admin = await make_user(client, world.admin, "tenant_admin", t["id"], tag)
    _, readonly = await make_user(client, world.admin, "tenant_readonly", t["id"], tag)
    return Tenant(t["id"], number, bearer(admin), bearer(readonly))


def complaint(t: Tenant, clock: FixedClock, **over: Any) -> dict[str, Any]:
    body = {
        "number": t.number,
        "callee": CALLEE,
        "category": "harassment",
        "occurred_at": (clock.now() - timedelta(hours=1)).isoformat(),
        "note": "carrier ticket 42",
    }
    return {**body, **over}


def locs(resp: httpx.Response, status: int = 422) -> list[list[Any]]:
    assert resp.status_code == status, resp.text
    return [d["loc"] for d in resp.json()["detail"]]


async def test_operators_register_and_the_tenant_reads_masked(
    client: httpx.AsyncClient, world: World, pool: asyncpg.Pool, clock: FixedClock
) -> None:
    t = await new_tenant(client, world)
    for headers in (t.admin, t.readonly):
        assert (await client.post(t.url, headers=headers, json=complaint(t, clock))).status_code == 403
    made = expect(await client.post(t.url, headers=bearer(world.staff_token), json=complaint(t, clock)), 201)
    assert (made["tenant_id"], made["number"], made["callee"], made["category"]) == (
        t.id,
        t.number,
        CALLEE,
        "harassment",
    )
    assert made["created_at"] == clock.now().isoformat().replace("+00:00", "Z")

    for headers in (t.admin, t.readonly):
        one = expect(await client.get(f"{t.url}/{made['id']}", headers=headers), 200)
        assert one["callee"] == "139****5678" and one["number"] == t.number
        page = expect(await client.get(t.url, headers=headers), 200)
        assert [c["id"] for c in page["items"]] == [made["id"]]
        assert page["items"][0]["callee"] == "139****5678"
    assert expect(await client.get(f"{t.url}/{made['id']}", headers=world.admin), 200)["callee"] == CALLEE

    async with pool.acquire() as conn:
        entry = await conn.fetchrow(
            "SELECT action, tenant_id, actor, after::text AS after FROM audit_log "
            "WHERE entity = 'complaints' AND entity_id = $1",
            str(made["id"]),
        )
    assert entry is not None and (entry["action"], entry["tenant_id"]) == ("create", t.id)
    assert json.loads(entry["after"])["callee"] == "139****5678"
    assert CALLEE not in entry["after"]


async def test_a_complaint_is_about_the_tenants_own_number(
    client: httpx.AsyncClient, world: World, pool: asyncpg.Pool, clock: FixedClock
) -> None:
    t, other = await new_tenant(client, world), await new_tenant(client, world)
    # another tenant's number, and a number nobody has
    for number in (other.number, unique_number("021", 11)):
        resp = await client.post(t.url, headers=world.admin, json=complaint(t, clock, number=number))
        assert locs(resp) == [["body", "number"]]
        assert number not in resp.text  # the message names it masked
    # a caller ID its outbound calls presented counts, owned or not
    presented = unique_number("1", 11)
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO outbound_attempts (tenant_id, callee, caller_id, call_id, at) "
            "VALUES ($1, $2, $3, $4, $5)",
            t.id,
            CALLEE,
            presented,
            f"complaint-test-{uuid.uuid4()}",
            clock.now() - timedelta(hours=2),
        )
    expect(await client.post(t.url, headers=world.admin, json=complaint(t, clock, number=presented)), 201)


async def test_complaint_fields_are_checked(
    client: httpx.AsyncClient, world: World, clock: FixedClock
) -> None:
    t = await new_tenant(client, world)
    cases: list[tuple[dict[str, Any], list[Any]]] = [
        ({"occurred_at": (clock.now() + timedelta(minutes=5)).isoformat()}, ["body", "occurred_at"]),
        ({"occurred_at": "2024-05-01T10:00:00"}, ["body", "occurred_at"]),  # no offset
        ({"category": "rudeness"}, ["body", "category"]),
        ({"callee": "13912x45678"}, ["body", "callee"]),
        ({"number": ""}, ["body", "number"]),
        ({"note": "x" * 2001}, ["body", "note"]),
        ({"colour": "red"}, ["body", "colour"]),
    ]
    for over, loc in cases:
        assert loc in locs(await client.post(t.url, headers=world.admin, json=complaint(t, clock, **over))), (
            over
        )
    assert expect(await client.get(t.url, headers=world.admin), 200)["items"] == []
    assert (
        await client.post(
            t.url, headers=world.admin, json=complaint(t, clock, occurred_at=clock.now().isoformat())
        )
    ).status_code == 201


async def test_another_tenants_complaints_are_not_there(
    client: httpx.AsyncClient, world: World, clock: FixedClock
) -> None:
    t, other = await new_tenant(client, world), await new_tenant(client, world)
    made = expect(await client.post(t.url, headers=world.admin, json=complaint(t, clock)), 201)
    assert locs(await client.get(f"{other.url}/{made['id']}", headers=world.admin), 404) == [["body", "id"]]
    assert (await client.get(f"{t.url}/{made['id']}", headers=other.admin)).status_code == 404
    assert (await client.get(t.url, headers=other.readonly)).status_code == 404
    assert expect(await client.get(other.url, headers=other.admin), 200)["items"] == []


async def test_list_filters_and_pages(client: httpx.AsyncClient, world: World, clock: FixedClock) -> None:
    t = await new_tenant(client, world)
    expect(
        await client.post(
            f"/v1/tenants/{t.id}/numbers",
            headers=world.admin,
            json={"number": (second := unique_number()), "kind": "unified_400"},
        ),
        201,
    )
    now = clock.now()
    made = []
    for hours, number, category in [
        (50, t.number, "harassment"),
        (30, t.number, "robocall"),
        (20, second, "robocall"),
        (10, t.number, "fraud"),
        (1, second, "robocall"),
    ]:
        body = complaint(
            t, clock, number=number, category=category, occurred_at=(now - timedelta(hours=hours)).isoformat()
        )
        made.append(expect(await client.post(t.url, headers=world.admin, json=body), 201)["id"])

    async def ids(**params: Any) -> list[int]:
        out: list[int] = []
        after = None
        for _ in range(20):
            q = {**params, "limit": 2, **({"after": after} if after is not None else {})}
            page = expect(await client.get(t.url, headers=t.readonly, params=q), 200)
            assert len(page["items"]) <= 2
            out += [c["id"] for c in page["items"]]
            after = page["next_after"]
            if after is None:
                return out
        raise AssertionError("paging did not end")

    assert await ids() == made
    assert await ids(category="robocall") == [made[1], made[2], made[4]]
    assert await ids(number=second) == [made[2], made[4]]
    assert await ids(number=second, category="robocall") == [made[2], made[4]]
    since, until = (now - timedelta(hours=30)).isoformat(), (now - timedelta(hours=10)).isoformat()
    assert await ids(**{"from": since, "to": until}) == [made[1], made[2]]  # [from, to)
    bad = await client.get(t.url, headers=t.admin, params={"from": "2024-05-01T10:00:00"})
    assert locs(bad) == [["query", "from"]]
    assert locs(await client.get(t.url, headers=t.admin, params={"category": "rude"})) == [
        ["query", "category"]
    ]
    assert locs(await client.get(t.url, headers=t.admin, params={"limit": 0})) == [["query", "limit"]]


async def test_count_in_a_window(
    client: httpx.AsyncClient, world: World, pool: asyncpg.Pool, clock: FixedClock
) -> None:
    t = await new_tenant(client, world)
    now = clock.now()
    for hours in (48, 24, 2):
        at = (now - timedelta(hours=hours)).isoformat()
        expect(await client.post(t.url, headers=world.admin, json=complaint(t, clock, occurred_at=at)), 201)
    async with pool.acquire() as conn:
        assert await complaints_in_window(conn, t.id, now - timedelta(days=3), now) == 3
        assert await complaints_in_window(conn, t.id, now - timedelta(hours=24), now) == 2  # since included
        assert (
            await complaints_in_window(conn, t.id, now - timedelta(hours=48), now - timedelta(hours=24)) == 1
        )
        assert await complaints_in_window(conn, t.id, now - timedelta(hours=1), now) == 0
        assert await complaints_in_window(conn, world.b.id, now - timedelta(days=3), now) == 0


async def test_a_complaint_notifies_the_monitors(
    client: httpx.AsyncClient, world: World, settings: Settings, clock: FixedClock
) -> None:
    t = await new_tenant(client, world)
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(settings.database.dsn())
    try:
        await listener.add_listener("compliance_complaint", lambda *args: heard.put_nowait(args[3]))
        expect(await client.post(t.url, headers=world.admin, json=complaint(t, clock)), 201)
        while (payload := await asyncio.wait_for(heard.get(), timeout=10)) != str(t.id):
            pass  # another test's tenant
        assert payload == str(t.id)
    finally:
        await listener.close()
