"""Voicemail against the real PostgreSQL, files in a temp chroot.

The pick-up at hang-up: a WAV with audio becomes a message (caller, number, time, duration,
size, sha256), linked from the call record, with a new_voicemail notice in the outbox, once;
an empty or too short file is removed and only the call record says so; no file at all is
the call record's 'missing'; a routed call a destination answered, or given up while
ringing, left nothing to look for.

The retention, by each tenant's own clock (its time zone's local days), at the boundary with
an injected instant: one microsecond before the local midnight that ends a message's last
day it stays, at that midnight row and file go; the same instant has already deleted the
same message of a tenant further west; a message a user deleted goes as a row; re-running
changes nothing; each run is audited; the scheduler's job does the same."""

from __future__ import annotations

import json
import random
import wave
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from provisioning.voicemail import VoicemailSpool, purge_voicemail, voicemail_file
from softswitch.callpath.registry import LiveCall
from softswitch.callpath.voicemail import Expected, VoicemailPickup
from softswitch.core.clock import FixedClock
from softswitch.core.metrics import Metrics
from softswitch.core.settings import Settings, VoicemailSettings
from softswitch.jobs.catalogue import voicemail_purge
from softswitch.jobs.scheduler import JobRun
from tests.db.conftest import new_tenant

SPOOL = VoicemailSettings().spool
# Pinned far in the past: no run of these tests touches another test's messages.
RECEIVED = datetime(2001, 11, 3, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai, 21:00 the day before in New York


def _linkedid() -> str:
    return f"{random.randint(10**9, 10**10)}.{random.randint(1, 10**6)}"


def _wav(path: Path, seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x10\x20" * int(8000 * seconds))


async def _call_row(conn: asyncpg.Connection, tenant: int, linkedid: str, caller: str) -> None:
    await conn.execute(
        "INSERT INTO calls (linkedid, uniqueid, tenant_id, caller, called, action, reason, decided_at) "
        "VALUES ($1, $1, $2, $3, '4008001234', 'voicemail', 'VOICEMAIL', $4)",
        linkedid,
        tenant,
        caller,
        RECEIVED,
    )


def _ended(linkedid: str, caller: str, *, answered: bool = True, bridged: bool = False) -> LiveCall:
    call = LiveCall(linkedid, caller, "4008001234", RECEIVED)
    call.answered_at = RECEIVED + timedelta(seconds=1) if answered else None
    call.bridged_at = RECEIVED + timedelta(seconds=2) if bridged else None
    call.ended_at = RECEIVED + timedelta(seconds=12)
    return call


async def test_the_pick_up_stores_a_message_with_its_notice_and_handles_empty_and_missing_files(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    metrics = Metrics()
    now = RECEIVED + timedelta(seconds=13)
    settings = VoicemailSettings(finalize_wait_s=0.3)
    pickup = VoicemailPickup(pool, FixedClock(now), metrics, settings, tmp_path)
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn)
    caller = "139" + "".join(random.choices("0123456789", k=8))

    def expected(linkedid: str, direct: bool = True) -> Expected:
        return Expected(
            tenant, linkedid, "4008001234", caller, direct, voicemail_file(SPOOL, tenant, linkedid)
        )

    def host(linkedid: str) -> Path:
        return tmp_path / voicemail_file(SPOOL, tenant, linkedid).lstrip("/")

    stored, empty, short, missing, answered, gave_up = (_linkedid() for _ in range(6))
    async with pool.acquire() as conn:
        for linkedid in (stored, empty, short, missing, answered, gave_up):
            await _call_row(conn, tenant, linkedid, caller)
    _wav(host(stored), 3.2)
    _wav(host(empty), 0)
    _wav(host(short), 0.2)

    message_id = await pickup.pick_up(expected(stored), _ended(stored, caller))
    assert message_id is not None
    assert await pickup.pick_up(expected(stored), _ended(stored, caller)) is None  # once
    for linkedid in (empty, short, missing):
        assert await pickup.pick_up(expected(linkedid), _ended(linkedid, caller)) is None
    # a routed call: a destination answered / the caller gave up while it rang
    assert await pickup.pick_up(expected(answered, False), _ended(answered, caller, bridged=True)) is None
    assert await pickup.pick_up(expected(gave_up, False), _ended(gave_up, caller, answered=False)) is None

    async with pool.acquire() as conn:
        msg = await conn.fetchrow("SELECT * FROM voicemail_messages WHERE id = $1", message_id)
        assert (msg["tenant_id"], msg["number"], msg["caller"], msg["call_linkedid"]) == (
            tenant,
            "4008001234",
            caller,
            stored,
        )
        assert msg["received_at"] == RECEIVED and msg["created_at"] == now
        assert abs(msg["duration_s"] - 3.2) < 0.01 and msg["size_bytes"] == host(stored).stat().st_size
        assert len(msg["sha256"]) == 64 and msg["listened_at"] is None and msg["deleted_at"] is None
        assert (
            await conn.fetchval("SELECT count(*) FROM voicemail_messages WHERE tenant_id = $1", tenant) == 1
        )
        outcomes = {
            r["linkedid"]: (r["voicemail_outcome"], r["voicemail_id"])
            for r in await conn.fetch("SELECT * FROM calls WHERE tenant_id = $1", tenant)
        }
        assert outcomes == {
            stored: ("stored", message_id),
            empty: ("empty", None),
            short: ("empty", None),
            missing: ("missing", None),
            answered: (None, None),
            gave_up: (None, None),
        }
        notices = await conn.fetch(
            "SELECT payload::text AS payload, dedupe_key FROM outbox "
            "WHERE tenant_id = $1 AND kind = 'new_voicemail'",
            tenant,
        )
    assert len(notices) == 1 and notices[0]["dedupe_key"] == stored
    payload = json.loads(notices[0]["payload"])
    assert (payload["message_id"], payload["caller"], payload["called"]) == (message_id, caller, "4008001234")
    assert datetime.fromisoformat(payload["at"]) == RECEIVED and payload["duration_s"] == 3.2
    assert host(stored).exists() and not host(empty).exists() and not host(short).exists()
    text = metrics.registry.get_sample_value
    assert text("softswitch_voicemail_messages_total", {"outcome": "stored"}) == 1
    assert text("softswitch_voicemail_messages_total", {"outcome": "empty"}) == 2
    assert text("softswitch_voicemail_messages_total", {"outcome": "missing"}) == 1


async def _message(conn: asyncpg.Connection, root: Path, tenant: int, **kw: object) -> tuple[int, Path]:
    linkedid = _linkedid()
    inside = voicemail_file(SPOOL, tenant, linkedid)
    path = root / inside.lstrip("/")
    _wav(path, 1.0)
    message_id = await conn.fetchval(
        "INSERT INTO voicemail_messages (tenant_id, number, caller, call_linkedid, received_at, duration_s, "
        "size_bytes, sha256, path, created_at, deleted_at) "
        "VALUES ($1, '4008001234', '13912345678', $2, $3, 1.0, 16044, repeat('a', 64), $4, $3, $5) "
        "RETURNING id",
        tenant,
        linkedid,
        kw.get("received", RECEIVED),
        inside,
        kw.get("deleted_at"),
    )
    await conn.execute(
        "INSERT INTO calls (linkedid, uniqueid, tenant_id, caller, called, action, reason, decided_at, "
        "voicemail_id, voicemail_outcome) "
        "VALUES ($1, $1, $2, '', '', 'voicemail', 'VOICEMAIL', $3, $4, 'stored')",
        linkedid,
        tenant,
        RECEIVED,
        message_id,
    )
    if kw.get("deleted_at") is not None:
        path.unlink()  # a user's delete takes the file at once
    return message_id, path


async def test_retention_by_the_tenants_local_days_at_the_boundary(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    files = VoicemailSpool(tmp_path, SPOOL)
    metrics = Metrics()
    async with pool.acquire() as conn:
        shanghai, new_york, week = [await new_tenant(conn) for _ in range(3)]
        assert (
            await conn.fetchval("SELECT voicemail_retention_days FROM tenants WHERE id = $1", shanghai) == 30
        )
        await conn.execute("UPDATE tenants SET timezone = 'America/New_York' WHERE id = $1", new_york)
        await conn.execute("UPDATE tenants SET voicemail_retention_days = 7 WHERE id = $1", week)
        sh, sh_file = await _message(conn, tmp_path, shanghai)
        ny, ny_file = await _message(conn, tmp_path, new_york)
        wk, wk_file = await _message(conn, tmp_path, week)
        later, later_file = await _message(conn, tmp_path, shanghai, received=RECEIVED + timedelta(days=1))
        deleted, _ = await _message(conn, tmp_path, shanghai, deleted_at=RECEIVED + timedelta(hours=1))
        tenants = [shanghai, new_york, week]

        # Shanghai: received on its 3 November; kept through 3 December, gone at 4 December 00:00 +08:00
        boundary = datetime(2001, 12, 3, 16, 0, tzinfo=UTC)
        listed = await conn.fetchval(
            "SELECT voicemail_expires_at(received_at, 'Asia/Shanghai', 30) "
            "FROM voicemail_messages WHERE id = $1",
            sh,
        )
        assert listed == boundary
        before = await purge_voicemail(
            conn, boundary - timedelta(microseconds=1), files, tenant_ids=tenants, metrics=metrics
        )
        # New York: the same instant was its 2 November, so its message went at 3 December 00:00 -05:00;
        # the 7-day tenant's at 11 November 00:00 +08:00
        assert sorted(before.ids) == sorted([ny, wk]) and before.files == 2 and before.errors == []
        assert sh_file.exists() and not ny_file.exists() and not wk_file.exists()
        assert await conn.fetchval("SELECT count(*) FROM voicemail_messages WHERE id = $1", sh) == 1

        at = await purge_voicemail(conn, boundary, files, tenant_ids=tenants, metrics=metrics, batch=1)
        assert sorted(at.ids) == sorted([sh, deleted]) and (at.files, at.already_gone) == (1, 1)
        assert not sh_file.exists() and later_file.exists()
        left = await conn.fetch(
            "SELECT id FROM voicemail_messages WHERE tenant_id = ANY($1::bigint[])", tenants
        )
        assert [r["id"] for r in left] == [later]
        # the call record still says it went to voicemail; its link to the message is gone with it
        call = await conn.fetchrow(
            "SELECT voicemail_id, voicemail_outcome FROM calls WHERE voicemail_id IS NULL "
            "AND tenant_id = $1 AND voicemail_outcome = 'stored'",
            shanghai,
        )
        assert call is not None

        again = await purge_voicemail(conn, boundary, files, tenant_ids=tenants, metrics=metrics)
        assert (again.deleted, again.files, again.ids) == (0, 0, [])
        audit = await conn.fetchrow(
            "SELECT after FROM audit_log WHERE entity = 'voicemail_messages' AND action = 'purge' "
            "AND at = $1 ORDER BY id DESC LIMIT 1",
            boundary,
        )
        after = audit["after"] if isinstance(audit["after"], dict) else json.loads(audit["after"])
        assert after["deleted"] == 0
    assert metrics.registry.get_sample_value("softswitch_voicemail_purged_total") == 4
    assert metrics.registry.get_sample_value("softswitch_voicemail_purge_runs_total", {"result": "ok"}) == 3

    # the scheduler's job: the same purge with the run's instant (injected), the settings' spool
    settings = Settings()
    settings = settings.model_copy(
        update={"asterisk": settings.asterisk.model_copy(update={"chroot": tmp_path})}
    )
    job = voicemail_purge(settings)
    at_start = datetime(2001, 12, 4, 16, 0, tzinfo=UTC)  # 5 December 00:00 in Shanghai
    kept = await job.run(
        JobRun(pool, at_start - timedelta(seconds=1), None, frozenset(), "system:scheduler", metrics)
    )
    assert kept.ok and later_file.exists()
    gone = await job.run(JobRun(pool, at_start, None, frozenset(), "system:scheduler", metrics))
    assert gone.ok and gone.detail["deleted"] >= 1 and not later_file.exists()
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM voicemail_messages WHERE id = $1", later) == 0
