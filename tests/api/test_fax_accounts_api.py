"""Fax per account kind over HTTP (issue 20, item 5). Seed 001's tariff: "语音网关 199 元/路 …
不支持传真" (a voice gateway: no fax), "SIP 话机 299 元/台 … 支持传真" (a SIP phone: fax). A
gateway with fax_allowed is refused with 422 naming fax_allowed, on creation and on a change
of either field; a fax phone's Asterisk endpoint offers T.38 (t38_udptl), a gateway's does not,
and FreeSWITCH's directory gives each account the matching t38_passthru."""

from __future__ import annotations

import random
from typing import Any

import asyncpg
import httpx
import pytest

from provisioning.freeswitch_directory import directory
from provisioning.users import bootstrap_admin
from softswitch.core.clock import FixedClock
from tests.api.conftest import bearer, expect, make_tenant, suffix

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _refused_on_fax(resp: httpx.Response) -> None:
    assert resp.status_code == 422, resp.text
    detail = resp.json()["detail"]
    assert [d["loc"] for d in detail] == [["body", "fax_allowed"]], detail
    assert "gateway" in detail[0]["msg"]


async def _extension(
    client: httpx.AsyncClient, admin: dict[str, str], tenant: int, **body: Any
) -> httpx.Response:
    ext = str(random.randrange(10**5, 10**6))
    return await client.post(
        f"/v1/tenants/{tenant}/extensions",
        headers=admin,
        json={"extension": ext, "password": "fax-pw-0123456", **body},
    )


async def _t38(pool: asyncpg.Pool, endpoint_id: str) -> tuple[str, str]:
    async with pool.acquire() as conn:
        udptl = await conn.fetchval('SELECT "t38_udptl" FROM ps_endpoints WHERE id = $1', endpoint_id)
        doc = await directory(conn, {"section": "directory", "user": endpoint_id, "domain": "softswitch"})
    passthru = doc.split('name="t38_passthru" value="', 1)[1].split('"', 1)[0]
    return udptl, passthru


async def test_a_gateway_cannot_fax_and_a_phone_can(
    client: httpx.AsyncClient, pool: asyncpg.Pool, clock: FixedClock
) -> None:
    async with pool.acquire() as conn:
        admin = bearer(await bootstrap_admin(conn, f"api-fax-{suffix()}", clock.now()))
    # a tenant of its own, active (its SIP accounts are in the engines' tables)
    tenant = (await make_tenant(client, admin, f"api-test fax {suffix()}"))["id"]
    _refused_on_fax(await _extension(client, admin, tenant, device_kind="gateway", fax_allowed=True))

    phone = expect(await _extension(client, admin, tenant, device_kind="phone", fax_allowed=True), 201)
    gateway = expect(await _extension(client, admin, tenant, device_kind="gateway"), 201)
    assert await _t38(pool, phone["endpoint_id"]) == ("yes", "true")
    assert await _t38(pool, gateway["endpoint_id"]) == ("no", "false")

    base = f"/v1/tenants/{tenant}/extensions"
    # the fax phone turned into a gateway, keeping fax: refused, naming fax_allowed
    turned = await client.patch(
        f"{base}/{phone['id']}",
        headers={**admin, "If-Match": f'"{phone["version"]}"'},
        json={"device_kind": "gateway"},
    )
    _refused_on_fax(turned)
    # the gateway given fax: refused
    given = await client.patch(
        f"{base}/{gateway['id']}",
        headers={**admin, "If-Match": f'"{gateway["version"]}"'},
        json={"fax_allowed": True},
    )
    _refused_on_fax(given)
    # both at once, the phone becoming a gateway without fax: accepted, and it no longer offers T.38
    both = expect(
        await client.patch(
            f"{base}/{phone['id']}",
            headers={**admin, "If-Match": f'"{phone["version"]}"'},
            json={"device_kind": "gateway", "fax_allowed": False},
        ),
        200,
    )
    assert (both["device_kind"], both["fax_allowed"]) == ("gateway", False)
    assert await _t38(pool, phone["endpoint_id"]) == ("no", "false")
