"""The retention purge against the real PostgreSQL, files in a temp chroot: 30 days by
default (seed 003), per tenant; a 29-day-old recording stays, a 31-day-old one goes (the
file deleted, the row kept with purged_at); a file already gone is fine; a legal hold
keeps a recording; re-running changes nothing; each run is audited."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from provisioning.recordings import purge_recordings
from softswitch.core.metrics import Metrics
from tests.db.conftest import new_tenant

SPOOL = "/var/spool/asterisk/monitor/softswitch"
NOW = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)


async def _recording(conn: asyncpg.Connection, root: Path, tenant: int, age_days: float, **kw: object) -> int:
    linkedid = f"{random.randint(10**9, 10**10)}.{random.randint(1, 10**6)}"
    inside = f"{SPOOL}/{tenant}/{linkedid}.wav"
    path = root / inside.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF" + b"\0" * 100)
    return await conn.fetchval(
        "INSERT INTO recordings (tenant_id, call_linkedid, mode, path, status, size_bytes, started_at, "
        "legal_hold) VALUES ($1, $2, 'record', $3, 'stored', 104, $4, $5) RETURNING id",
        tenant,
        linkedid,
        inside,
        NOW - timedelta(days=age_days),
        bool(kw.get("legal_hold", False)),
    )


def _file(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


async def test_purge_keeps_29_days_removes_31_and_respects_holds(pool: asyncpg.Pool, tmp_path: Path) -> None:
    metrics = Metrics()
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn)
        assert await conn.fetchval("SELECT recording_retention_days FROM tenants WHERE id = $1", tenant) == 30
        young = await _recording(conn, tmp_path, tenant, 29)
        old = await _recording(conn, tmp_path, tenant, 31)
        held = await _recording(conn, tmp_path, tenant, 45, legal_hold=True)
        gone = await _recording(conn, tmp_path, tenant, 40)
        paths = {
            r["id"]: r["path"]
            for r in await conn.fetch("SELECT id, path FROM recordings WHERE tenant_id = $1", tenant)
        }
        _file(tmp_path, paths[gone]).unlink()  # someone removed it by hand

        report = await purge_recordings(
            conn, NOW, tmp_path, SPOOL, batch=1, tenant_ids=[tenant], metrics=metrics
        )
        assert (report.purged, report.already_gone, report.on_hold, report.errors) == (1, 1, 1, [])
        assert sorted(report.ids) == sorted([old, gone])
        assert _file(tmp_path, paths[young]).exists() and _file(tmp_path, paths[held]).exists()
        assert not _file(tmp_path, paths[old]).exists()
        purged = {
            r["id"]: r["purged_at"]
            for r in await conn.fetch("SELECT id, purged_at FROM recordings WHERE tenant_id = $1", tenant)
        }
        assert purged == {young: None, old: NOW, held: None, gone: NOW}  # rows kept, marked
        audit = await conn.fetchrow(
            "SELECT * FROM audit_log WHERE entity = 'recordings' AND action = 'purge' AND at = $1 "
            "ORDER BY id DESC LIMIT 1",
            NOW,
        )
        after = audit["after"] if isinstance(audit["after"], dict) else json.loads(audit["after"])
        assert after["purged"] == 1 and after["on_hold"] == 1

        # idempotent: the same run again deletes nothing
        again = await purge_recordings(conn, NOW, tmp_path, SPOOL, tenant_ids=[tenant], metrics=metrics)
        assert (again.purged, again.already_gone) == (0, 0)

        # a tenant's own retention: 7 days makes the 29-day-old one expire too
        await conn.execute("UPDATE tenants SET recording_retention_days = 7 WHERE id = $1", tenant)
        shorter = await purge_recordings(conn, NOW, tmp_path, SPOOL, tenant_ids=[tenant], metrics=metrics)
        assert shorter.ids == [young] and not _file(tmp_path, paths[young]).exists()

        # lifting the hold lets the next run remove it
        await conn.execute("UPDATE recordings SET legal_hold = false WHERE id = $1", held)
        lifted = await purge_recordings(conn, NOW, tmp_path, SPOOL, tenant_ids=[tenant], metrics=metrics)
        assert lifted.ids == [held]

    text = metrics.registry.get_sample_value
    assert text("softswitch_recording_purge_runs_total", {"result": "ok"}) == 4
    assert text("softswitch_recordings_purged_total") == 3


async def test_a_row_pointing_outside_the_spool_is_never_deleted(pool: asyncpg.Pool, tmp_path: Path) -> None:
    victim = tmp_path / "etc" / "passwd"
    victim.parent.mkdir(parents=True)
    victim.write_text("root:x:0:0")
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn)
        await conn.execute(
            "INSERT INTO recordings (tenant_id, call_linkedid, mode, path, status, started_at) "
            "VALUES ($1, $2, 'record', $3, 'stored', $4)",
            tenant,
            f"{random.randint(10**9, 10**10)}.1",
            f"{SPOOL}/{tenant}/../../../../../../etc/passwd",
            NOW - timedelta(days=90),
        )
        report = await purge_recordings(conn, NOW, tmp_path, SPOOL, tenant_ids=[tenant])
    assert report.purged == 0 and len(report.errors) == 1
    assert victim.read_text() == "root:x:0:0"
