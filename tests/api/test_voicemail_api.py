"""The voicemail endpoints in-process, files in a temp chroot: roles (platform_admin,
operator_staff, tenant_admin, tenant_readonly) x own/other tenant x list/get/play/listened/
delete, as for recordings — another tenant's messages answer 404, a read-only user reads
but changes nothing (403); bad input answers 4xx naming the field; the list is newest
first in pages, per number and by listened; a deleted message is gone from the list and
its file from the disk."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from provisioning.api import ApiDeps, build_router, install_error_handlers
from provisioning.voicemail import voicemail_file
from provisioning.voicemail_api import build_voicemail_router
from softswitch.core.clock import FixedClock
from tests.api.conftest import ALL_ROLES, OPERATOR_ROLES, World, bearer, expect
from tests.api.test_recordings_api import _wav

pytestmark = pytest.mark.asyncio(loop_scope="session")
SPOOL = "/var/spool/asterisk/softswitch-vm"
WRITERS = {"platform_admin", "operator_staff", "tenant_admin"}


@pytest.fixture(scope="session")
def chroot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("vm-chroot")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def vclient(pool: asyncpg.Pool, clock: FixedClock, chroot: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(build_router(ApiDeps(pool, clock)))
    app.include_router(build_voicemail_router(pool, clock, chroot, SPOOL))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        yield c


async def _message(
    pool: asyncpg.Pool,
    chroot: Path,
    tenant: int,
    received: datetime,
    number: str = "4008001234",
    file: bool = True,
) -> int:
    linkedid = f"{random.randint(10**9, 10**10)}.{random.randint(1, 10**6)}"
    inside = voicemail_file(SPOOL, tenant, linkedid)
    if file:
        _wav(chroot / inside.lstrip("/"), 1.5)
    async with pool.acquire() as conn:
        return int(
            await conn.fetchval(
                "INSERT INTO voicemail_messages (tenant_id, number, caller, called, call_linkedid, "
                "received_at, duration_s, size_bytes, sha256, path, created_at) "
                "VALUES ($1, $2, '13912345678', $2, $3, $4, 1.5, 24044, repeat('b', 64), $5, $4) "
                "RETURNING id",
                tenant,
                number,
                linkedid,
                received,
                inside,
            )
        )


def _cases() -> list[tuple[str, str]]:
    return [(role, whose) for role in ALL_ROLES for whose in ("own", "other")]


@pytest.mark.parametrize(("role", "whose"), _cases())
async def test_access_matrix(
    vclient: httpx.AsyncClient,
    world: World,
    pool: asyncpg.Pool,
    chroot: Path,
    clock: FixedClock,
    role: str,
    whose: str,
) -> None:
    target = world.a if whose == "own" else world.b
    msg = await _message(pool, chroot, target.id, clock.now() - timedelta(minutes=5))
    h = bearer(world.token(role, world.a))
    base = f"/v1/tenants/{target.id}/voicemail"
    sees = role in OPERATOR_ROLES or whose == "own"
    read = 200 if sees else 404

    listed = await vclient.get(base, headers=h)
    assert listed.status_code == read, listed.text
    if sees:
        assert msg in [m["id"] for m in listed.json()["items"]]
    assert (await vclient.get(f"{base}/{msg}", headers=h)).status_code == read
    audio = await vclient.get(f"{base}/{msg}/audio", headers=h)
    assert audio.status_code == read, audio.text
    if sees:
        assert audio.headers["content-type"] == "audio/wav" and audio.content[:4] == b"RIFF"

    change = 200 if sees and role in WRITERS else (403 if sees else 404)
    heard = await vclient.put(f"{base}/{msg}/listened", headers=h)
    assert heard.status_code == change, heard.text
    if change == 200:
        assert heard.json()["listened"] is True and heard.json()["listened_at"] is not None
    assert (await vclient.delete(f"{base}/{msg}/listened", headers=h)).status_code == change
    gone = await vclient.delete(f"{base}/{msg}", headers=h)
    assert gone.status_code == (204 if change == 200 else change), gone.text
    # another tenant's message through one's own tenant's URL is not there either
    if role not in OPERATOR_ROLES and whose == "other":
        own_url = f"/v1/tenants/{world.a.id}/voicemail/{msg}"
        assert (await vclient.get(own_url, headers=h)).status_code == 404
        assert (await vclient.get(f"{own_url}/audio", headers=h)).status_code == 404
        assert (await vclient.delete(own_url, headers=world.admin)).status_code == 404


async def test_unauthenticated_is_401(vclient: httpx.AsyncClient, world: World) -> None:
    assert (await vclient.get(f"/v1/tenants/{world.a.id}/voicemail")).status_code == 401
    assert (await vclient.get(f"/v1/tenants/{world.a.id}/voicemail/1/audio")).status_code == 401


@pytest.mark.parametrize(
    ("suffix", "params", "field"),
    [
        ("/0", {}, "message_id"),
        ("/-3", {}, "message_id"),
        ("/abc/audio", {}, "message_id"),
        ("/9007199254740993", {}, "message_id"),
        ("", {"number": "400-800"}, "number"),
        ("", {"number": "1" * 21}, "number"),
        ("", {"limit": 0}, "limit"),
        ("", {"limit": 501}, "limit"),
        ("", {"before": "x"}, "before"),
        ("", {"listened": "perhaps"}, "listened"),
    ],
)
async def test_bad_input_is_422_naming_the_field(
    vclient: httpx.AsyncClient, world: World, suffix: str, params: dict[str, object], field: str
) -> None:
    resp = await vclient.get(
        f"/v1/tenants/{world.a.id}/voicemail{suffix}", headers=world.admin, params=params
    )
    assert resp.status_code == 422, resp.text
    assert resp.json()["detail"][0]["loc"][-1] == field, resp.text


async def test_a_tenants_retention_is_set_through_the_tenant_and_checked(
    vclient: httpx.AsyncClient, world: World
) -> None:
    base = f"/v1/tenants/{world.a.id}"
    tenant = expect(await vclient.get(base, headers=world.admin), 200)
    assert tenant["voicemail_retention_days"] == 30
    for bad in (0, 3651, "long"):
        resp = await vclient.patch(
            base,
            headers={**world.admin, "If-Match": f'"{tenant["version"]}"'},
            json={"voicemail_retention_days": bad},
        )
        assert resp.status_code == 422 and resp.json()["detail"][0]["loc"][-1] == "voicemail_retention_days"


async def test_pages_newest_first_per_number_listened_and_delete(
    vclient: httpx.AsyncClient, world: World, pool: asyncpg.Pool, chroot: Path, clock: FixedClock
) -> None:
    async with pool.acquire() as conn:
        tenant = await conn.fetchval(
            "INSERT INTO tenants (name, timezone) VALUES ($1, 'Asia/Shanghai') RETURNING id",
            f"api-vm {random.getrandbits(40):x}",
        )
    now = clock.now()
    received = [now - timedelta(hours=h) for h in (5, 1, 3, 2, 4)]
    ids = [await _message(pool, chroot, tenant, at, number="4008000001") for at in received]
    other_number = await _message(pool, chroot, tenant, now - timedelta(minutes=1), number="4008000002")
    no_file = await _message(pool, chroot, tenant, now - timedelta(minutes=2), file=False)
    base = f"/v1/tenants/{tenant}/voicemail"
    h = world.admin

    newest_first = [i for _, i in sorted(zip(received, ids, strict=True), reverse=True)]
    got: list[int] = []
    before = None
    while True:
        params = {"limit": 2, "number": "4008000001", **({"before": before} if before else {})}
        page = expect(await vclient.get(base, headers=h, params=params), 200)
        got += [m["id"] for m in page["items"]]
        assert all(m["number"] == "4008000001" for m in page["items"])
        before = page["next_before"]
        if before is None:
            break
    assert got == newest_first
    everything = expect(await vclient.get(base, headers=h), 200)["items"]
    assert [m["id"] for m in everything] == [other_number, no_file, *newest_first]
    one = everything[0]
    assert (one["caller"], one["number"], one["duration_s"], one["listened"]) == (
        "13912345678",
        "4008000002",
        1.5,
        False,
    )
    # kept 30 whole local days after the day it came in, gone at the local midnight after
    shanghai = ZoneInfo("Asia/Shanghai")
    local_day = datetime.fromisoformat(one["received_at"]).astimezone(shanghai).date()
    expires = datetime.fromisoformat(one["expires_at"]).astimezone(shanghai)
    assert expires.time() == time(0, 0) and (expires.date() - local_day).days == 31

    assert (await vclient.get(f"{base}/{no_file}/audio", headers=h)).status_code == 404
    expect(await vclient.put(f"{base}/{ids[1]}/listened", headers=h), 200)
    heard = expect(await vclient.get(base, headers=h, params={"listened": True}), 200)["items"]
    assert [m["id"] for m in heard] == [ids[1]]
    new = expect(await vclient.get(base, headers=h, params={"listened": False}), 200)["items"]
    assert ids[1] not in [m["id"] for m in new] and len(new) == len(everything) - 1

    file = chroot / voicemail_file(SPOOL, tenant, one["call_id"]).lstrip("/")
    assert file.exists()
    assert (await vclient.delete(f"{base}/{other_number}", headers=h)).status_code == 204
    assert not file.exists()
    assert (await vclient.get(f"{base}/{other_number}", headers=h)).status_code == 410
    assert (await vclient.delete(f"{base}/{other_number}", headers=h)).status_code == 410
    assert other_number not in [m["id"] for m in expect(await vclient.get(base, headers=h), 200)["items"]]
    # a page that starts after a message deleted since still follows on
    after_deleted = expect(await vclient.get(base, headers=h, params={"before": other_number}), 200)["items"]
    assert [m["id"] for m in after_deleted] == [no_file, *newest_first]
    async with pool.acquire() as conn:
        actions = [
            r["action"]
            for r in await conn.fetch(
                "SELECT action FROM audit_log WHERE entity = 'voicemail_messages' "
                "AND entity_id = ANY($1::text[]) ORDER BY id",
                [str(ids[1]), str(other_number)],
            )
        ]
    assert actions == ["listened", "delete"]
