"""Endpoints x roles. Expectations are derived from the catalog's read_roles/write_roles
(provisioning/catalog.py), not from a second copy of the policy; the invariant on top of
it: a tenant's token never sees or changes another tenant's data (404, as if absent)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from provisioning import catalog, numbers
from provisioning.engine import Resource
from provisioning.roles import OPERATORS, Role
from tests.api.conftest import (
    ALL_ROLES,
    ID_NUMBER,
    OPERATOR_ROLES,
    TENANT_ROLES,
    TenantWorld,
    World,
    bearer,
    expect,
    suffix,
    unique_number,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

TENANT_RES: dict[str, Resource] = {r.name: r for r in catalog.TENANT_RESOURCES}
PLATFORM_RES: dict[str, Resource] = {r.name: r for r in catalog.PLATFORM_RESOURCES}
CREATABLE = [n for n, r in TENANT_RES.items() if r.create_model is not None]
UPDATABLE = [n for n, r in TENANT_RES.items() if r.update_model is not None]
DELETABLE = [n for n, r in TENANT_RES.items() if r.deletable and r.create_model is not None]


def may(role: str, roles: frozenset[Role]) -> bool:
    return Role(role) in roles


async def tenant_body(client: httpx.AsyncClient, world: World, tw: TenantWorld, name: str) -> dict[str, Any]:
    """A valid, unique create body for a tenant resource."""
    tag = suffix()
    if name == "documents":
        return {"kind": "industry_licence", "status": "submitted"}
    if name == "bindings":
        return {
            "number_id": tw.items["numbers"],
            "destination": unique_number("139", 11),
            "owner_name": "Wang Wu",
            "owner_id_number": ID_NUMBER,
        }
    if name == "extensions":
        return {"extension": unique_number("7", 6), "password": "Another-pass-9"}
    if name == "subscriptions":
        pkg = expect(await client.get("/v1/packages", headers=world.admin, params={"code": "A59"}), 200)
        return {"package_id": pkg["items"][0]["id"], "starts_on": "2026-01-01"}
    if name in ("time-policies", "region-policies"):
        return {"name": f"p-{tag}", "definition": {}}
    if name == "ivr-menus":
        return {"name": f"m-{tag}", "definition": {"prompt": "vm-intro", "default": {"action": "hangup"}}}
    if name == "blacklist":
        return {"pattern": unique_number("1", 11)}
    if name == "pins":
        # One PIN per number: a fresh number each time.
        num = expect(
            await client.post(
                f"/v1/tenants/{tw.id}/numbers",
                headers=world.admin,
                json={"number": unique_number(), "kind": "unified_400"},
            ),
            201,
        )
        return {"number_id": num["id"], "pin": "2468"}
    if name == "customers":
        return {"name": f"c-{tag}", "phones": [unique_number("138", 11)]}
    if name == "customer-notes":
        return {"customer_id": tw.items["customers"], "body": f"note {tag}"}
    raise AssertionError(f"no sample body for {name}")


async def platform_body(client: httpx.AsyncClient, world: World, name: str) -> dict[str, Any]:
    tag = suffix()
    if name == "numbers":
        return {"number": unique_number("95", 12), "kind": "unified_95"}
    if name == "packages":
        return {"code": f"T-{tag}", "name": f"test {tag}", "kind": "addon"}
    if name == "blacklist":
        return {"pattern": unique_number("1", 11), "note": "platform"}
    if name == "trunks":
        return {"name": f"t-{tag}", "host": "192.0.2.10", "enabled": False}
    if name == "trunk-routes":
        trunk = expect(
            await client.post(
                "/v1/trunks", headers=world.admin, json=await platform_body(client, world, "trunks")
            ),
            201,
        )
        return {"trunk_id": trunk["id"], "prefix": "0"}
    if name == "users":
        return {"username": f"api-u-{tag}", "role": "operator_staff"}
    raise AssertionError(f"no sample body for {name}")


async def current_version(client: httpx.AsyncClient, world: World, url: str) -> str:
    resp = await client.get(url, headers=world.admin)
    expect(resp, 200)
    return resp.headers["ETag"]


def assert_only_tenant(items: list[dict[str, Any]], tenant_id: int) -> None:
    for item in items:
        if "tenant_id" in item:
            assert item["tenant_id"] == tenant_id, f"leaked a row of tenant {item['tenant_id']}: {item}"


# ---------------------------------------------------------------------------- tenant reads
@pytest.mark.parametrize("role", ALL_ROLES)
@pytest.mark.parametrize("name", list(TENANT_RES))
async def test_read_own_tenant(client: httpx.AsyncClient, world: World, name: str, role: str) -> None:
    res = TENANT_RES[name]
    tw = world.a
    headers = bearer(world.token(role, tw))
    want = 200 if may(role, res.read_roles) else 403
    resp = await client.get(f"/v1/tenants/{tw.id}/{name}", headers=headers, params={"limit": 500})
    body = expect(resp, want)
    if want == 200:
        assert body["items"], f"{name}: the world made a row, the list is empty"
        assert_only_tenant(body["items"], tw.id)
    expect(await client.get(f"/v1/tenants/{tw.id}/{name}/{tw.items[name]}", headers=headers), want)


@pytest.mark.parametrize("role", TENANT_ROLES)
@pytest.mark.parametrize("name", [*TENANT_RES, "account"])
async def test_read_other_tenant_is_not_found(
    client: httpx.AsyncClient, world: World, name: str, role: str
) -> None:
    headers = bearer(world.token(role, world.a))
    other = world.b
    if name == "account":
        expect(await client.get(f"/v1/tenants/{other.id}/account", headers=headers), 404)
        return
    expect(await client.get(f"/v1/tenants/{other.id}/{name}", headers=headers), 404)
    expect(await client.get(f"/v1/tenants/{other.id}/{name}/{other.items[name]}", headers=headers), 404)
    # B's row under A's own path: not there either.
    expect(
        await client.get(f"/v1/tenants/{world.a.id}/{name}/{other.items[name]}", headers=headers),
        403 if not may(role, TENANT_RES[name].read_roles) else 404,
    )


@pytest.mark.parametrize("role", ALL_ROLES)
async def test_account_and_tenant_visibility(client: httpx.AsyncClient, world: World, role: str) -> None:
    headers = bearer(world.token(role, world.a))
    acct = expect(await client.get(f"/v1/tenants/{world.a.id}/account", headers=headers), 200)
    assert acct["tenant_id"] == world.a.id
    expect(await client.get(f"/v1/tenants/{world.a.id}", headers=headers), 200)
    expect(
        await client.get(f"/v1/tenants/{world.b.id}", headers=headers), 200 if role in OPERATOR_ROLES else 404
    )
    listed = expect(await client.get("/v1/tenants", headers=headers, params={"limit": 500}), 200)["items"]
    if role in TENANT_ROLES:
        assert [t["id"] for t in listed] == [world.a.id]
    me = expect(await client.get("/v1/whoami", headers=headers), 200)
    assert me["role"] == role


# ---------------------------------------------------------------------------- tenant writes
@pytest.mark.parametrize("role", ALL_ROLES)
@pytest.mark.parametrize("name", UPDATABLE)
async def test_update_own_tenant(client: httpx.AsyncClient, world: World, name: str, role: str) -> None:
    res = TENANT_RES[name]
    tw = world.a
    url = f"/v1/tenants/{tw.id}/{name}/{tw.items[name]}"
    etag = await current_version(client, world, url)
    resp = await client.patch(url, headers={**bearer(world.token(role, tw)), "If-Match": etag}, json={})
    if may(role, res.write_roles):
        out = expect(resp, 200)
        assert resp.headers["ETag"] == f'"{out["version"]}"' == f'"{int(etag.strip(chr(34))) + 1}"'
    else:
        expect(resp, 403)
        assert await current_version(client, world, url) == etag


@pytest.mark.parametrize("role", ALL_ROLES)
@pytest.mark.parametrize("name", [n for n in CREATABLE if n != "documents"])
async def test_create_own_tenant(client: httpx.AsyncClient, world: World, name: str, role: str) -> None:
    res = TENANT_RES[name]
    tw = world.a
    body = await tenant_body(client, world, tw, name)
    resp = await client.post(f"/v1/tenants/{tw.id}/{name}", headers=bearer(world.token(role, tw)), json=body)
    if may(role, res.write_roles):
        assert expect(resp, 201)["tenant_id"] == tw.id
    else:
        expect(resp, 403)


async def test_documents_create_denied_to_readonly(client: httpx.AsyncClient, world: World) -> None:
    tw = world.a
    body = await tenant_body(client, world, tw, "documents")
    headers = bearer(tw.tokens["tenant_readonly"])
    expect(await client.post(f"/v1/tenants/{tw.id}/documents", headers=headers, json=body), 403)


@pytest.mark.parametrize("role", ALL_ROLES)
@pytest.mark.parametrize("name", DELETABLE)
async def test_delete_own_tenant(client: httpx.AsyncClient, world: World, name: str, role: str) -> None:
    res = TENANT_RES[name]
    tw = world.a
    body = await tenant_body(client, world, tw, name)
    row = expect(await client.post(f"/v1/tenants/{tw.id}/{name}", headers=world.admin, json=body), 201)
    url = f"/v1/tenants/{tw.id}/{name}/{row['id']}"
    resp = await client.delete(
        url, headers={**bearer(world.token(role, tw)), "If-Match": f'"{row["version"]}"'}
    )
    if may(role, res.write_roles):
        expect(resp, 204)
        expect(await client.get(url, headers=world.admin), 404)
    else:
        expect(resp, 403)
        expect(await client.get(url, headers=world.admin), 200)


@pytest.mark.parametrize("role", TENANT_ROLES)
@pytest.mark.parametrize("name", list(TENANT_RES))
async def test_writes_to_other_tenant_are_not_found(
    client: httpx.AsyncClient, world: World, name: str, role: str
) -> None:
    """A's token, B's data: 404 for every write, via B's path or B's row under A's path —
    and B's row is unchanged."""
    res = TENANT_RES[name]
    a, b = world.a, world.b
    headers = bearer(world.token(role, a))
    b_url = f"/v1/tenants/{b.id}/{name}/{b.items[name]}"
    before = expect(await client.get(b_url, headers=world.admin), 200)
    writes_own = may(role, res.write_roles)
    if res.create_model is not None:
        body = await tenant_body(client, world, b, name)
        expect(await client.post(f"/v1/tenants/{b.id}/{name}", headers=headers, json=body), 404)
    if res.update_model is not None:
        h = {**headers, "If-Match": f'"{before.get("version", 1)}"'}
        expect(await client.patch(b_url, headers=h, json={}), 404)
        expect(
            await client.patch(f"/v1/tenants/{a.id}/{name}/{b.items[name]}", headers=h, json={}),
            404 if writes_own else 403,
        )
    if res.deletable and res.create_model is not None:
        h = {**headers, "If-Match": f'"{before.get("version", 1)}"'}
        expect(await client.delete(b_url, headers=h), 404)
        expect(
            await client.delete(f"/v1/tenants/{a.id}/{name}/{b.items[name]}", headers=h),
            404 if writes_own else 403,
        )
    assert expect(await client.get(b_url, headers=world.admin), 200) == before


# ---------------------------------------------------------------------------- special tenant routes
@pytest.mark.parametrize("role", ALL_ROLES)
async def test_number_assign_and_recharge_are_operator_only(
    client: httpx.AsyncClient, world: World, role: str
) -> None:
    tw = world.a
    headers = bearer(world.token(role, tw))
    want = 201 if may(role, OPERATORS) else 403
    expect(
        await client.post(
            f"/v1/tenants/{tw.id}/numbers", headers=headers, json={"number": unique_number(), "kind": "did"}
        ),
        want,
    )
    expect(
        await client.post(
            f"/v1/tenants/{tw.id}/recharges",
            headers={**headers, "Idempotency-Key": f"matrix-{uuid.uuid4()}"},
            json={"amount": "1.00"},
        ),
        want,
    )
    # The other tenant: not found for tenant tokens.
    if role in TENANT_ROLES:
        b = world.b
        expect(
            await client.post(
                f"/v1/tenants/{b.id}/recharges",
                headers={**headers, "Idempotency-Key": f"matrix-{uuid.uuid4()}"},
                json={"amount": "1.00"},
            ),
            404,
        )
        for action in ("submit", "approve", "suspend", "resume", "release"):
            expect(
                await client.post(
                    f"/v1/tenants/{b.id}/numbers/{b.items['numbers']}/{action}", headers=headers
                ),
                404,
            )
            expect(
                await client.post(
                    f"/v1/tenants/{tw.id}/numbers/{b.items['numbers']}/{action}", headers=headers
                ),
                404 if may(role, numbers.ACTION_ROLES[action]) else 403,
            )


# ---------------------------------------------------------------------------- platform resources
@pytest.mark.parametrize("role", ALL_ROLES)
@pytest.mark.parametrize("name", list(PLATFORM_RES))
async def test_platform_resources(client: httpx.AsyncClient, world: World, name: str, role: str) -> None:
    res = PLATFORM_RES[name]
    headers = bearer(world.token(role, world.a))
    reads = may(role, res.read_roles)
    listed = await client.get(f"/{'v1'}/{name}", headers=headers)
    expect(listed, 200 if reads else 403)
    if role in TENANT_ROLES:
        assert reads == (name == "packages"), f"tenant role {role} reads {name}"
    if res.create_model is None:
        return
    body = await platform_body(client, world, name)
    resp = await client.post(f"/v1/{name}", headers=headers, json=body)
    writes = may(role, res.write_roles)
    if role in TENANT_ROLES:
        assert not writes
    row = expect(resp, 201 if writes else 403)
    if not writes:
        row = expect(await client.post(f"/v1/{name}", headers=world.admin, json=body), 201)
    url = f"/v1/{name}/{row['id']}"
    if res.update_model is not None:
        resp = await client.patch(url, headers={**headers, "If-Match": f'"{row["version"]}"'}, json={})
        expect(resp, 200 if writes else 403)


@pytest.mark.parametrize("role", TENANT_ROLES)
async def test_platform_user_and_token_admin_refused_to_tenants(
    client: httpx.AsyncClient, world: World, role: str
) -> None:
    a = world.a
    headers = bearer(a.tokens[role])
    other_user = a.users["tenant_admin" if role == "tenant_readonly" else "tenant_readonly"]
    expect(await client.post(f"/v1/users/{other_user}/tokens", headers=headers, json={}), 403)
    expect(await client.post(f"/v1/users/{world.b.users[role]}/tokens", headers=headers, json={}), 403)
    # Creating a tenant, or promoting oneself, is the operator's.
    expect(await client.post("/v1/tenants", headers=headers, json={"name": "nope"}), 403)
    expect(
        await client.post(
            "/v1/users", headers=headers, json={"username": f"x-{suffix()}", "role": "platform_admin"}
        ),
        403,
    )


# ---------------------------------------------------------------------------- authentication
AUTH_PROBES = ["/v1/whoami", "/v1/packages", "/v1/tenants", "/v1/audit"]


@pytest.mark.parametrize("path", AUTH_PROBES)
async def test_no_or_garbage_token_is_401(client: httpx.AsyncClient, world: World, path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer sst_garbage"}, {"Authorization": "Basic Zm9vOmJhcg=="}):
        resp = await client.get(path, headers=headers)
        expect(resp, 401)
        assert resp.headers["WWW-Authenticate"] == "Bearer"
    expect(await client.get(f"/v1/tenants/{world.a.id}/numbers"), 401)


async def test_revoked_token_is_401(client: httpx.AsyncClient, world: World) -> None:
    user_id = world.a.users["tenant_readonly"]
    issued = expect(
        await client.post(f"/v1/users/{user_id}/tokens", headers=world.admin, json={"name": "r"}), 201
    )
    headers = bearer(issued["token"])
    expect(await client.get(f"/v1/tenants/{world.a.id}/numbers", headers=headers), 200)
    # A tenant user cannot revoke someone else's token (not found), but may revoke its own.
    other = bearer(world.b.tokens["tenant_admin"])
    expect(await client.delete(f"/v1/tokens/{issued['id']}", headers=other), 404)
    revoked = expect(await client.delete(f"/v1/tokens/{issued['id']}", headers=headers), 200)
    assert revoked["revoked_at"] is not None
    expect(await client.get(f"/v1/tenants/{world.a.id}/numbers", headers=headers), 401)
    expect(await client.get("/v1/whoami", headers=headers), 401)
