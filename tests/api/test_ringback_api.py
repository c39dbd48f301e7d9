"""Ringback tones over HTTP: a tone made from an upload or from text (201, the same again
200, other audio under its name 409), applied to a number from the first day of next month
(201, the same again 200), read back with what plays now, removed (204); who may do what
(read-only 403, a professional tone by the tenant 403, another tenant's 404) and bad input
naming its field (422)."""

from __future__ import annotations

import asyncio
import subprocess
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest

from provisioning.ringback_api import build_ringback_router
from softswitch.core.clock import FixedClock
from tests.api.conftest import World, bearer, build_app, expect

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _client(pool: asyncpg.Pool, clock: FixedClock, sounds: Path) -> httpx.AsyncClient:
    app = build_app(pool, clock)
    app.include_router(build_ringback_router(pool, clock, sounds))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def _sine(tmp_path: Path, hz: int) -> bytes:
    path = tmp_path / f"tone-{hz}.wav"
    cmd = ["sox", "-n", "-r", "16000", "-c", "2", str(path), "synth", "2", "sine", str(hz)]
    await asyncio.to_thread(subprocess.run, cmd, check=True)
    return path.read_bytes()


def _loc(resp: httpx.Response) -> list[Any]:
    return list(resp.json()["detail"][0]["loc"])


async def test_tones_are_made_applied_read_and_removed(
    pool: asyncpg.Pool, clock: FixedClock, world: World, tmp_path: Path
) -> None:
    a, b = world.a, world.b
    admin = bearer(a.tokens["tenant_admin"])
    readonly = bearer(a.tokens["tenant_readonly"])
    number_id = a.items["numbers"]
    tones = f"/v1/tenants/{a.id}/ringback-tones"
    ring = f"/v1/tenants/{a.id}/numbers/{number_id}/ringback"
    sounds = tmp_path / "sounds"
    async with await _client(pool, clock, sounds) as client:
        audio = await _sine(tmp_path, 1000)
        made = expect(await client.put(f"{tones}/chime/audio", headers=admin, content=audio), 201)
        assert (made["source"], made["production"], made["production_order_id"]) == ("upload", "self", None)
        assert (
            made["prompt"] == f"softswitch/t{a.id}/ringback/chime" and abs(float(made["seconds"]) - 2) < 0.05
        )
        assert (sounds / "softswitch" / f"t{a.id}" / "ringback" / "chime.wav").is_file()
        expect(await client.put(f"{tones}/chime/audio", headers=admin, content=audio), 200)
        other = await client.put(f"{tones}/chime/audio", headers=admin, content=await _sine(tmp_path, 600))
        assert other.status_code == 409 and _loc(other) == ["body", "name"], other.text
        spoken = expect(
            await client.put(f"{tones}/hello/text", headers=admin, json={"text": "您好，请稍候。"}), 201
        )
        assert spoken["source"] == "text" and spoken["text"] == "您好，请稍候。"
        listed = expect(await client.get(tones, headers=readonly), 200)["items"]
        assert [t["name"] for t in listed] == ["chime", "hello"]

        # who may
        assert (await client.put(f"{tones}/ro/audio", headers=readonly, content=audio)).status_code == 403
        paid = await client.put(f"{tones}/paid/audio?production=professional", headers=admin, content=audio)
        assert paid.status_code == 403, paid.text
        assert (await client.get(f"/v1/tenants/{b.id}/ringback-tones", headers=admin)).status_code == 404
        # bad input names its field
        bad = await client.put(f"{tones}/junk/audio", headers=admin, content=b"not audio")
        assert bad.status_code == 422 and _loc(bad) == ["body", "body"], bad.text
        assert (await client.put(f"{tones}/UPPER/audio", headers=admin, content=audio)).status_code == 422
        unknown = await client.put(ring, headers=admin, json={"tone": "nosuch"})
        assert unknown.status_code == 422 and _loc(unknown) == ["body", "tone"], unknown.text

        # applied: from the first day of next month in the tenant's zone, nothing plays yet
        today = clock.now().astimezone(ZoneInfo("Asia/Shanghai")).date()
        first = date(today.year + today.month // 12, today.month % 12 + 1, 1)
        applied = expect(await client.put(ring, headers=admin, json={"tone": "chime"}), 201)
        assert applied["playing"] is None and applied["number_id"] == number_id
        assert [(x["tone"], x["effective_on"]) for x in applied["applications"]] == [("chime", str(first))]
        again = expect(await client.put(ring, headers=admin, json={"tone": "chime"}), 200)
        assert again["applications"] == applied["applications"]
        assert expect(await client.get(ring, headers=readonly), 200) == again
        listed_numbers = expect(await client.get(f"/v1/tenants/{a.id}/ringback", headers=readonly), 200)
        assert [n["number"] for n in listed_numbers["items"]] == [a.number]
        sub_id = applied["applications"][0]["subscription_id"]
        sub = await pool.fetchrow(
            "SELECT s.starts_on, s.subject, p.code FROM subscriptions s "
            "JOIN packages p ON p.id = s.package_id WHERE s.id = $1",
            sub_id,
        )
        assert (sub["code"], sub["starts_on"], sub["subject"]) == (
            "RBT",
            first,
            f"ringback tone on {a.number}",
        )
        other_number = f"/v1/tenants/{a.id}/numbers/{b.items['numbers']}/ringback"
        assert (await client.put(other_number, headers=admin, json={"tone": "chime"})).status_code == 404
        assert (await client.put(ring, headers=readonly, json={"tone": "chime"})).status_code == 403

        # removed: the default ring now; the subscription ends before it began
        assert (await client.delete(ring, headers=admin)).status_code == 204
        assert expect(await client.get(ring, headers=admin), 200)["applications"] == []
        ended = await pool.fetchrow("SELECT state, ends_on FROM subscriptions WHERE id = $1", sub_id)
        assert (ended["state"], ended["ends_on"]) == ("ended", first)
        assert (await client.delete(ring, headers=admin)).status_code == 404


async def test_an_operator_uploads_a_produced_tone_and_the_order_is_charged(
    pool: asyncpg.Pool, clock: FixedClock, world: World, tmp_path: Path
) -> None:
    a = world.a
    async with await _client(pool, clock, tmp_path / "sounds") as client:
        url = f"/v1/tenants/{a.id}/ringback-tones/studio-{world.tag}/audio?production=professional"
        made = expect(await client.put(url, headers=world.admin, content=await _sine(tmp_path, 1400)), 201)
        order = await pool.fetchrow(
            "SELECT item_code, amount, reference FROM one_off_orders WHERE id = $1",
            made["production_order_id"],
        )
        assert (order["item_code"], order["amount"], order["reference"]) == (
            "tone_production",
            99,
            f"ringback tone studio-{world.tag}",
        )
