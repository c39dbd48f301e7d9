"""Prompts (text-to-speech and uploads, converted to 8 kHz mono, scoped by tenant) and a
subscription taking effect on the prepaid account at once."""

from __future__ import annotations

import asyncio
import subprocess
import wave
from decimal import Decimal
from pathlib import Path

import asyncpg
import httpx
import pytest

from provisioning.prompts_api import build_prompts_router
from tests.api.conftest import World, build_app, expect

pytestmark = pytest.mark.asyncio(loop_scope="session")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def sounds(tmp_path: Path) -> Path:
    return tmp_path / "sounds"


async def _client(pool: asyncpg.Pool, clock, sounds: Path) -> httpx.AsyncClient:  # type: ignore[no-untyped-def]
    app = build_app(pool, clock)
    app.include_router(build_prompts_router(pool, clock, sounds))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def _wav_info(path: Path) -> tuple[int, int, float]:
    with wave.open(str(path)) as w:
        return w.getframerate(), w.getnchannels(), w.getnframes() / w.getframerate()


async def test_text_and_uploaded_prompts(
    pool: asyncpg.Pool,
    clock,
    world: World,
    sounds: Path,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    a, b = world.a, world.b
    async with await _client(pool, clock, sounds) as client:
        url = f"/v1/tenants/{a.id}/prompts/welcome/text"
        first = expect(
            await client.put(
                url, headers=bearer(a.tokens["tenant_admin"]), json={"text": "您好，欢迎致电。"}
            ),
            200,
        )
        assert first["playable"] == f"softswitch/t{a.id}/welcome"
        rate, channels, seconds = _wav_info(sounds / "softswitch" / f"t{a.id}" / "welcome.wav")
        assert (rate, channels) == (8000, 1) and seconds > 0.5
        again = expect(
            await client.put(
                url, headers=bearer(a.tokens["tenant_admin"]), json={"text": "您好，欢迎致电。"}
            ),
            200,
        )
        assert again["sha256"] == first["sha256"]  # same content: rendered once, from the cache

        # an operator's 44.1 kHz stereo recording, converted on upload
        src = tmp_path / "hold.wav"
        await asyncio.to_thread(
            subprocess.run,
            ["sox", "-n", "-r", "44100", "-c", "2", str(src), "synth", "1.5", "sine", "440"],
            check=True,
        )
        up = await client.put(
            f"/v1/tenants/{a.id}/prompts/hold/audio",
            headers=bearer(a.tokens["tenant_admin"]),
            content=src.read_bytes(),
        )
        expect(up, 200)
        rate, channels, seconds = _wav_info(sounds / "softswitch" / f"t{a.id}" / "hold.wav")
        assert (rate, channels) == (8000, 1) and abs(seconds - 1.5) < 0.05

        bad = await client.put(
            f"/v1/tenants/{a.id}/prompts/junk/audio",
            headers=bearer(a.tokens["tenant_admin"]),
            content=b"this is not audio",
        )
        assert bad.status_code == 422
        for name in ("..", "a..b", "UPPER", "x/../../etc"):
            resp = await client.put(
                f"/v1/tenants/{a.id}/prompts/{name}/text",
                headers=bearer(a.tokens["tenant_admin"]),
                json={"text": "x"},
            )
            assert resp.status_code in (404, 422), name
        ro = await client.put(url, headers=bearer(a.tokens["tenant_readonly"]), json={"text": "x"})
        assert ro.status_code == 403
        other = await client.put(
            f"/v1/tenants/{b.id}/prompts/welcome/text",
            headers=bearer(a.tokens["tenant_admin"]),
            json={"text": "x"},
        )
        assert other.status_code == 404
        assert (await client.put(url, json={"text": "x"})).status_code == 401


async def test_a_subscription_applies_its_package_at_once(
    client: httpx.AsyncClient, pool: asyncpg.Pool, world: World
) -> None:
    admin = bearer(world.admin_token)
    tenant = expect(await client.post("/v1/tenants", headers=admin, json={"name": f"sub {world.tag}"}), 201)
    pkg = expect(await client.get("/v1/packages", headers=admin, params={"code": "A8-569"}), 200)["items"][0]
    expect(
        await client.post(
            f"/v1/tenants/{tenant['id']}/subscriptions",
            headers=admin,
            json={"package_id": pkg["id"], "starts_on": "2026-01-01"},
        ),
        201,
    )
    acct = await pool.fetchrow("SELECT * FROM accounts WHERE tenant_id = $1", tenant["id"])
    assert acct["channel_cap"] == 8 and acct["rate_per_minute"] == Decimal("0.12")
    assert acct["included_seconds_left"] > 0
    rent = await pool.fetchval(
        "SELECT count(*) FROM ledger_entries WHERE tenant_id = $1 AND kind = 'rent'", tenant["id"]
    )
    assert rent == 1
