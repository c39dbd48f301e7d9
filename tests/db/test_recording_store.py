"""What the service stores at hang-up (real PostgreSQL, files in a temp chroot): a WAV's
metadata linked to its call; a missing or empty file is a row with that status and a
counted metric, never hidden; nothing for a call nobody answered. And the high-water mark:
past it, the decision is not to record, with the metric."""

from __future__ import annotations

import random
import wave
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from dialplan.snapshot import ConfigSnapshot, Tenant, UnifiedNumber
from softswitch.callpath.recorder import Pending, Recorder
from softswitch.callpath.registry import LiveCall
from softswitch.core.clock import FixedClock
from softswitch.core.metrics import Metrics
from softswitch.core.settings import RecordingSettings
from tests.db.conftest import new_tenant

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def _recorder(pool: asyncpg.Pool, root: Path, **kw: object) -> tuple[Recorder, Metrics]:
    metrics = Metrics()
    settings = RecordingSettings(finalize_wait_s=0.5, **kw)  # type: ignore[arg-type]
    return Recorder(pool, FixedClock(NOW), metrics, settings, root), metrics


def _call(linkedid: str, bridged: bool) -> LiveCall:
    call = LiveCall(linkedid, "13912345678", "4001234567", NOW - timedelta(seconds=10))
    call.answered_at = NOW - timedelta(seconds=5) if bridged else None
    call.bridged_at = call.answered_at
    call.ended_at = NOW
    return call


def _snapshot(tenant: int) -> ConfigSnapshot:
    return ConfigSnapshot.build(
        [Tenant(tenant, "t", "active", recording_policy="all")],
        [UnifiedNumber(1, "4001234567", "active", tenant)],
        NOW,
        1,
    )


async def test_stored_missing_and_empty(pool: asyncpg.Pool, tmp_path: Path) -> None:
    rec, metrics = _recorder(pool, tmp_path)
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn)
    results = {}
    for kind in ("stored", "missing", "empty", "unanswered"):
        linkedid = f"{random.randint(10**9, 10**10)}.{random.randint(1, 10**6)}"
        async with pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO calls (linkedid, uniqueid, tenant_id, caller, called, action, reason, "
                "decided_at) VALUES ($1, $1, $2, '13912345678', '4001234567', 'dial', 'ROUTED', $3)",
                linkedid,
                tenant,
                NOW,
            )
        plan = rec.plan(_snapshot(tenant), tenant, linkedid, "13912345678", "4001234567", "inbound")
        assert plan is not None and plan.file.endswith(f"/{tenant}/{linkedid}")
        assert plan.announce  # the tenant announces by default
        path = tmp_path / (plan.file + ".wav").lstrip("/")
        if kind in ("stored", "empty", "unanswered"):
            path.parent.mkdir(parents=True, exist_ok=True)
            with wave.open(str(path), "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(8000)
                if kind == "stored":
                    w.writeframes(b"\x01\x00" * 8000 * 2)
        pending = rec._pending.pop(linkedid)
        assert isinstance(pending, Pending)
        results[kind] = (linkedid, await rec.finalize(pending, _call(linkedid, kind != "unanswered")))

    async with pool.acquire() as conn:
        rows = {
            r["call_linkedid"]: r
            for r in await conn.fetch("SELECT * FROM recordings WHERE tenant_id = $1", tenant)
        }
        links = {
            r["linkedid"]: r["recording_id"]
            for r in await conn.fetch("SELECT linkedid, recording_id FROM calls WHERE tenant_id = $1", tenant)
        }
    stored = rows[results["stored"][0]]
    assert (stored["status"], stored["duration_s"], stored["size_bytes"]) == ("stored", 2.0, 32044)
    assert links[results["stored"][0]] == stored["id"] and results["stored"][1] == [stored["id"]]
    assert stored["started_at"] == NOW - timedelta(seconds=5)
    assert rows[results["missing"][0]]["status"] == "missing"
    assert rows[results["empty"][0]]["status"] == "empty"
    assert results["unanswered"][0] not in rows  # nothing was bridged: nothing to record
    sample = metrics.registry.get_sample_value
    for result in ("stored", "missing", "empty"):
        assert sample("softswitch_recordings_total", {"result": result}) == 1


async def test_high_water_stops_new_recordings(pool: asyncpg.Pool, tmp_path: Path) -> None:
    rec, metrics = _recorder(pool, tmp_path, high_water_bytes=1000, high_water_percent=100.0)
    big = tmp_path / "var/spool/asterisk/monitor/softswitch/7/1.1.wav"
    big.parent.mkdir(parents=True)
    big.write_bytes(b"\0" * 2000)
    assert await rec.measure() is True
    assert metrics.registry.get_sample_value("softswitch_recording_disk_bytes", {"tenant": "7"}) == 2000
    assert rec.plan(_snapshot(7), 7, "1700000000.9", "139", "4001234567", "inbound") is None
    assert (
        metrics.registry.get_sample_value("softswitch_recordings_total", {"result": "stopped_high_water"})
        == 1
    )
    big.unlink()
    assert await rec.measure() is False
    assert rec.plan(_snapshot(7), 7, "1700000000.9", "139", "4001234567", "inbound") is not None
