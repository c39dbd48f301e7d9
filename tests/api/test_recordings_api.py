"""The recording endpoints in-process: roles (platform_admin, operator_staff, tenant_admin,
tenant_readonly) x own/other tenant x list/get/download/hold/lift/export. A tenant's token
never reaches another tenant's recording (404, as if absent); files are found by id in the
database, so path-like ids are refused (404/422) and a row whose path leaves the spool is
never served."""

from __future__ import annotations

import csv
import io
import random
import wave
import zipfile
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from provisioning.api import ApiDeps, build_router, install_error_handlers
from provisioning.recordings_api import build_recordings_router
from softswitch.core.clock import FixedClock
from tests.api.conftest import ALL_ROLES, OPERATOR_ROLES, World, bearer, expect

pytestmark = pytest.mark.asyncio(loop_scope="session")
SPOOL = "/var/spool/asterisk/monitor/softswitch"
WRITERS = {"platform_admin", "operator_staff", "tenant_admin"}


@pytest.fixture(scope="session")
def chroot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chroot")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def rclient(pool: asyncpg.Pool, clock: FixedClock, chroot: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(build_router(ApiDeps(pool, clock)))
    app.include_router(build_recordings_router(pool, clock, chroot, SPOOL))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        yield c


def _wav(path: Path, seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x01\x00" * int(8000 * seconds))


async def _recording(pool: asyncpg.Pool, chroot: Path, tenant: int, clock: FixedClock, path: str = "") -> int:
    linkedid = f"{random.randint(10**9, 10**10)}.{random.randint(1, 10**6)}"
    inside = path or f"{SPOOL}/{tenant}/{linkedid}.wav"
    if not path:
        _wav(chroot / inside.lstrip("/"), 1.5)
    async with pool.acquire() as conn:
        return await conn.fetchval(
            "INSERT INTO recordings (tenant_id, call_linkedid, mode, path, status, size_bytes, duration_s, "
            "caller, called, started_at) VALUES ($1, $2, 'record', $3, 'stored', 24044, 1.5, "
            "'13912345678', '4001234567', $4) RETURNING id",
            tenant,
            linkedid,
            inside,
            clock.now() - timedelta(hours=1),
        )


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def recs(world: World, pool: asyncpg.Pool, chroot: Path, clock: FixedClock) -> dict[str, int]:
    return {
        "a": await _recording(pool, chroot, world.a.id, clock),
        "b": await _recording(pool, chroot, world.b.id, clock),
    }


def _cases() -> list[tuple[str, str]]:
    return [(role, whose) for role in ALL_ROLES for whose in ("own", "other")]


@pytest.mark.parametrize(("role", "whose"), _cases())
async def test_access_matrix(
    rclient: httpx.AsyncClient, world: World, recs: dict[str, int], role: str, whose: str
) -> None:
    mine = world.a
    target = world.a if whose == "own" else world.b
    rec = recs["a"] if whose == "own" else recs["b"]
    h = bearer(world.token(role, mine))
    base = f"/v1/tenants/{target.id}/recordings"
    sees = role in OPERATOR_ROLES or whose == "own"
    read = 200 if sees else 404

    listed = await rclient.get(base, headers=h)
    assert listed.status_code == read, listed.text
    if sees:
        assert rec in [r["id"] for r in listed.json()["items"]]
    assert (await rclient.get(f"{base}/{rec}", headers=h)).status_code == read
    audio = await rclient.get(f"{base}/{rec}/audio", headers=h)
    assert audio.status_code == read, audio.text
    if sees:
        assert audio.headers["content-type"] == "audio/wav" and audio.content[:4] == b"RIFF"
    export = await rclient.post(f"{base}/export", headers=h, json={"ids": [rec]})
    assert export.status_code == read, export.text

    hold = 200 if sees and role in WRITERS else (403 if sees else 404)
    placed = await rclient.post(f"{base}/{rec}/hold", headers=h, json={"reason": "court order 17"})
    assert placed.status_code == hold, placed.text
    lifted = await rclient.delete(f"{base}/{rec}/hold", headers=h)
    assert lifted.status_code == hold, lifted.text
    # another tenant's recording through one's own tenant's URL is not there either
    if role not in OPERATOR_ROLES and whose == "other":
        own_url = f"/v1/tenants/{mine.id}/recordings/{rec}"
        assert (await rclient.get(own_url, headers=h)).status_code == 404
        assert (await rclient.get(f"{own_url}/audio", headers=h)).status_code == 404


async def test_unauthenticated_is_401(rclient: httpx.AsyncClient, world: World, recs: dict[str, int]) -> None:
    assert (await rclient.get(f"/v1/tenants/{world.a.id}/recordings")).status_code == 401
    assert (await rclient.get(f"/v1/tenants/{world.a.id}/recordings/{recs['a']}/audio")).status_code == 401


@pytest.mark.parametrize("rec_id", ["-1", "0", "1.5", "9007199254740993", "abc", "1e3", "%2e%2e", "1%00"])
async def test_ids_that_are_not_ids_are_refused_by_the_handlers_validation(
    rclient: httpx.AsyncClient, world: World, rec_id: str
) -> None:
    # One path segment: the route matches and the recording id's own validation refuses it
    # (422 naming the id), so the handler never looks anything up with it.
    for suffix in ("", "/audio"):
        resp = await rclient.get(f"/v1/tenants/{world.a.id}/recordings/{rec_id}{suffix}", headers=world.admin)
        assert resp.status_code == 422, (rec_id, resp.status_code, resp.text)
        assert resp.json()["detail"][0]["loc"] == ["path", "recording_id"], resp.text


@pytest.mark.parametrize(
    "rec_id", ["..%2F..%2Fetc%2Fpasswd", "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "1%2F..%2F..%2Fetc%2Fpasswd"]
)
async def test_an_encoded_traversal_arrives_as_sent_and_matches_no_route(
    rclient: httpx.AsyncClient, world: World, rec_id: str
) -> None:
    # Sent as is (httpx keeps percent-encoded slashes): decoded, the path has more segments
    # than any recording route, so no handler runs; files are found by id only (next test).
    for suffix in ("", "/audio"):
        request = rclient.build_request("GET", f"/v1/tenants/{world.a.id}/recordings/{rec_id}{suffix}")
        assert rec_id.encode() in request.url.raw_path  # not normalised away before sending
        resp = await rclient.send(request)
        assert resp.status_code == 404 and resp.json() == {"detail": "Not Found"}, resp.text


async def test_a_row_whose_path_leaves_the_spool_is_not_served(
    rclient: httpx.AsyncClient, world: World, pool: asyncpg.Pool, chroot: Path, clock: FixedClock
) -> None:
    secret = chroot / "etc" / "shadow"
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_text("root:secret")
    other = chroot / SPOOL.lstrip("/") / str(world.b.id) / "x.wav"
    _wav(other, 0.5)
    for path in (f"{SPOOL}/{world.a.id}/../../../../../../etc/shadow", f"{SPOOL}/{world.b.id}/x.wav"):
        rec = await _recording(pool, chroot, world.a.id, clock, path=path)
        resp = await rclient.get(f"/v1/tenants/{world.a.id}/recordings/{rec}/audio", headers=world.admin)
        assert resp.status_code == 404, resp.text


async def test_search_and_pages(
    rclient: httpx.AsyncClient, world: World, pool: asyncpg.Pool, chroot: Path, clock: FixedClock
) -> None:
    ids = [await _recording(pool, chroot, world.a.id, clock) for _ in range(3)]
    h = bearer(world.a.tokens["tenant_readonly"])
    base = f"/v1/tenants/{world.a.id}/recordings"
    got: list[int] = []
    after = None
    while True:
        params = {"limit": 2, **({"after": after} if after else {})}
        page = expect(await rclient.get(base, headers=h, params=params), 200)
        got += [r["id"] for r in page["items"]]
        after = page["next_after"]
        if after is None:
            break
    assert set(ids) <= set(got) and got == sorted(got)
    one = expect(await rclient.get(f"{base}/{ids[0]}", headers=h), 200)
    found = expect(await rclient.get(base, headers=h, params={"call_id": one["call_id"]}), 200)["items"]
    assert [r["id"] for r in found] == [ids[0]]
    assert one["expires_at"] > one["started_at"]
    by_caller = expect(await rclient.get(base, headers=h, params={"caller": "13912345678"}), 200)["items"]
    assert set(ids) <= {r["id"] for r in by_caller}
    future = (clock.now() + timedelta(days=1)).isoformat()
    assert expect(await rclient.get(base, headers=h, params={"from": future}), 200)["items"] == []
    assert (await rclient.get(base, headers=h, params={"caller": "1; DROP"})).status_code == 422


async def test_export_by_period_is_a_zip_with_a_manifest(
    rclient: httpx.AsyncClient, world: World, pool: asyncpg.Pool, chroot: Path, clock: FixedClock
) -> None:
    rec = await _recording(pool, chroot, world.a.id, clock)
    body = {
        "from": (clock.now() - timedelta(hours=2)).isoformat(),
        "to": clock.now().isoformat(),
    }
    resp = await rclient.post(
        f"/v1/tenants/{world.a.id}/recordings/export",
        headers=bearer(world.a.tokens["tenant_admin"]),
        json=body,
    )
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/zip"
    z = zipfile.ZipFile(io.BytesIO(resp.content))
    manifest = list(csv.DictReader(io.StringIO(z.read("manifest.csv").decode())))
    row = next(r for r in manifest if r["recording_id"] == str(rec))
    assert z.read(row["file"])[:4] == b"RIFF"
    assert all(r["file"] in z.namelist() for r in manifest if r["file"])
    assert all(r["note"] for r in manifest if not r["file"])  # not served: says why
    bad = await rclient.post(
        f"/v1/tenants/{world.a.id}/recordings/export", headers=world.admin, json={"from": body["from"]}
    )
    assert bad.status_code == 422


async def test_hold_is_audited(
    rclient: httpx.AsyncClient, world: World, recs: dict[str, int], pool: asyncpg.Pool
) -> None:
    h = bearer(world.a.tokens["tenant_admin"])
    url = f"/v1/tenants/{world.a.id}/recordings/{recs['a']}/hold"
    held = expect(await rclient.post(url, headers=h, json={"reason": "dispute 42"}), 200)
    assert held["legal_hold"] and held["legal_hold_reason"] == "dispute 42"
    assert not expect(await rclient.delete(url, headers=h), 200)["legal_hold"]
    async with pool.acquire() as conn:
        actions = [
            r["action"]
            for r in await conn.fetch(
                "SELECT action FROM audit_log WHERE entity = 'recordings' AND entity_id = $1 ORDER BY id",
                str(recs["a"]),
            )
        ]
    assert actions[-2:] == ["legal_hold", "lift_legal_hold"]
