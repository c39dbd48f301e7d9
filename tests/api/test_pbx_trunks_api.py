"""Customer PBX trunks over HTTP (issue 20, item 1): a PBX is an account of device_kind pbx
with a range of extensions behind it and its own channels, both within what the tenant's
packages give (TRUNK: 1 channel; EXT-n: n extensions); refusals name the field; its PJSIP
account is written like any extension's, with room for several contacts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from provisioning.users import bootstrap_admin
from softswitch.core.clock import FixedClock
from tests.api.conftest import bearer, expect, make_tenant, suffix

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _refused(resp: httpx.Response, status: int, field: str, words: str) -> None:
    assert resp.status_code == status, resp.text
    body = resp.json()
    text = str(body)
    assert field in text and words in text, body


async def test_a_pbx_trunk_within_the_packages_and_its_account(
    client: httpx.AsyncClient, pool: asyncpg.Pool, clock: FixedClock
) -> None:
    async with pool.acquire() as conn:
        admin = bearer(await bootstrap_admin(conn, f"api-pbx-{suffix()}", clock.now()))
        packages = dict(await conn.fetch("SELECT code, id FROM packages WHERE code IN ('TRUNK', 'EXT-16')"))
    tenant = (await make_tenant(client, admin, f"api-test pbx {suffix()}"))["id"]
    base = f"/v1/tenants/{tenant}"

    async def pbx(**body: Any) -> httpx.Response:
        return await client.post(
            f"{base}/extensions",
            headers=admin,
            json={"extension": "8000", "device_kind": "pbx", "password": "pbx-pw-0123456", **body},
        )

    # no trunk module yet: no channel to give it
    _refused(await pbx(range_first="8100", range_last="8115"), 422, "channels", "trunk modules give 0")
    # money first: a subscription's first fees are charged when it is made
    expect(
        await client.post(
            f"{base}/recharges",
            headers={**admin, "Idempotency-Key": f"pbx-{tenant}"},
            json={"amount": "500.00", "reference": "api-test"},
        ),
        201,
    )
    since = (clock.now() - timedelta(days=1)).date().isoformat()
    for code in ("TRUNK", "EXT-16"):
        expect(
            await client.post(
                f"{base}/subscriptions",
                headers=admin,
                json={"package_id": packages[code], "starts_on": since},
            ),
            201,
        )
    _refused(await pbx(), 422, "range_first", "range")
    _refused(await pbx(range_first="8100", range_last="8115", channels=2), 422, "channels", "give 1")
    _refused(await pbx(range_first="8100", range_last="8116"), 422, "range_last", "holds 17")
    _refused(await pbx(range_first="8100", range_last="899"), 422, "range_last", "one length")
    phone = expect(
        await client.post(
            f"{base}/extensions", headers=admin, json={"extension": "8105", "password": "phone-pw-012345"}
        ),
        201,
    )
    _refused(await pbx(range_first="8100", range_last="8115"), 409, "range_first", "8105")
    await client.delete(
        f"{base}/extensions/{phone['id']}", headers={**admin, "If-Match": f'"{phone["version"]}"'}
    )

    made = expect(await pbx(range_first="8100", range_last="8115"), 201)
    assert (made["device_kind"], made["range_first"], made["range_last"], made["channels"]) == (
        "pbx",
        "8100",
        "8115",
        1,
    )
    async with pool.acquire() as conn:
        aor = await conn.fetchrow("SELECT max_contacts FROM ps_aors WHERE id = $1", made["endpoint_id"])
        auth = await conn.fetchval("SELECT auth_type FROM ps_auths WHERE id = $1", made["endpoint_id"])
    assert (aor["max_contacts"], auth) == ("8", "md5")
    # a phone inside its range, and a second PBX (no channel left): refused
    _refused(
        await client.post(
            f"{base}/extensions", headers=admin, json={"extension": "8110", "password": "phone-pw-012345"}
        ),
        409,
        "extension",
        "behind PBX trunk 8000",
    )
    _refused(
        await client.post(
            f"{base}/extensions",
            headers=admin,
            json={
                "extension": "9000",
                "device_kind": "pbx",
                "password": "pbx-pw-0123456",
                "range_first": "9100",
                "range_last": "9100",
            },
        ),
        422,
        "channels",
        "1 of them held",
    )
    # range fields on a phone are refused, naming them
    _refused(
        await client.post(
            f"{base}/extensions",
            headers=admin,
            json={"extension": "7001", "password": "phone-pw-012345", "range_first": "7100"},
        ),
        422,
        "range_first",
        "PBX trunk",
    )
