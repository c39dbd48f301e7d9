"""Backup and restore (provisioning/backup.py) between two PostgreSQL clusters the test
starts itself (initdb in a temporary directory, a free loopback port, removed at the
end), with a temporary chroot on each side: the shared dev database is never touched.

Money, calls, a recording and a voicemail message are made through the service's own
functions (a tenant, a recharge, calls reserved and settled through provisioning.ledger,
the recorder storing a WAV, the voicemail pick-up storing a message, a rendered prompt),
backed up, restored into a fresh database of the other cluster,
and compared row by row and file by file. An archive from an older schema comes back
migrated; a damaged archive is refused naming the file, before anything changes."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import pwd
import random
import shutil
import socket
import subprocess
import tarfile
import tempfile
import wave
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from provisioning.backup import FileRoots, backup, database_of_dsn, restore
from provisioning.backup_files import DUMP, FILES, MANIFEST, BackupError
from provisioning.engine import Ctx
from provisioning.ledger import Grant, open_reservation, settle_reservation
from provisioning.money import recharge
from provisioning.prompts import PromptStore
from provisioning.roles import Principal, Role
from provisioning.schemas import RechargeCreate, TenantCreate
from provisioning.tenants import create_tenant
from provisioning.voicemail import VoicemailSpool, audio_for_play, delete_message, voicemail_file
from softswitch.callpath.recorder import Pending, Recorder
from softswitch.callpath.records import CallRecordWriter, DecisionRecord
from softswitch.callpath.registry import LiveCall
from softswitch.callpath.voicemail import Expected, VoicemailPickup
from softswitch.cli import app
from softswitch.core.clock import FixedClock
from softswitch.core.db import create_pool, migrate_and_grant
from softswitch.core.metrics import Metrics
from softswitch.core.migrate import available_migrations
from softswitch.core.settings import (
    AsteriskSettings,
    DatabaseSettings,
    RecordingSettings,
    Settings,
    VoicemailSettings,
)
from tests.conftest import require_stack

PG_BIN = Path("/usr/lib/postgresql/15/bin")
NOW = datetime(2026, 5, 4, 9, 30, tzinfo=UTC)
OPERATOR = Principal(None, "backup-test", Role.PLATFORM_ADMIN)
SPOOL = RecordingSettings().spool
VM_SPOOL = VoicemailSettings().spool
# Compared row by row after a restore.
TABLES = {
    "tenants": "id",
    "accounts": "tenant_id",
    "ledger_entries": "id",
    "calls": "linkedid",
    "reservations": "id",
    "recordings": "id",
    "voicemail_messages": "id",
    "schema_migrations": "version",
}


class Cluster:
    """A throw-away PostgreSQL cluster run as the postgres user (as bench/analysis.py's),
    with the dev stack's two logins: the service's (not a superuser) and Asterisk's."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="softswitch-test-backup-"))
        self.data, self.sock = self.dir / "data", self.dir / "run"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]

    def _pg(self, *cmd: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *cmd], check=True, capture_output=True, cwd="/")

    def start(self) -> None:
        self.sock.mkdir()
        shutil.chown(self.dir, "postgres", "postgres")
        shutil.chown(self.sock, "postgres", "postgres")
        self._pg(str(PG_BIN / "initdb"), "-D", str(self.data), "-E", "UTF8", "-N", "--auth-local=trust",
                 "--auth-host=trust")  # fmt: skip
        opts = f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._pg(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log"), "-w", "-o", opts,
                 "start")  # fmt: skip
        for sql in ("CREATE ROLE softswitch LOGIN", "CREATE ROLE asterisk LOGIN"):
            self._pg("psql", "-h", str(self.sock), "-p", str(self.port), "-d", "postgres", "-c", sql)

    def remove(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._pg(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    async def new_database(self) -> Settings:
        """A fresh, empty database owned by the service's login; its settings."""
        name = f"db_{random.getrandbits(32):x}"
        conn = await asyncpg.connect(host="127.0.0.1", port=self.port, user="postgres", database="postgres")
        try:
            await conn.execute(f"CREATE DATABASE {name} OWNER softswitch")
        finally:
            await conn.close()
        return self.settings(name)

    def settings(self, name: str) -> Settings:
        db = DatabaseSettings(
            host="127.0.0.1", port=self.port, name=name, password=SecretStr("unused"), pool_min=1, pool_max=4
        )
        return Settings(database=db, asterisk=AsteriskSettings(chroot=self.dir / f"chroot-{name}"))

    def dsn(self, name: str) -> str:
        return f"postgresql://softswitch:unused@127.0.0.1:{self.port}/{name}"


@pytest.fixture(scope="module")
def clusters() -> Iterator[tuple[Cluster, Cluster]]:
    require_stack(Settings())
    source, target = Cluster(), Cluster()
    try:
        source.start()
        target.start()
        yield source, target
    finally:
        source.remove()
        target.remove()


async def _connect(s: Settings) -> asyncpg.Connection:
    db = s.database
    return await asyncpg.connect(host=db.host, port=db.port, user=db.user, database=db.name)


async def _until(conn: asyncpg.Connection, sql: str, *args: object, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await conn.fetchval(sql, *args):
        assert asyncio.get_running_loop().time() < deadline, f"not within {timeout} s: {sql}"
        await asyncio.sleep(0.02)


def _wav(path: Path, seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(bytes(random.getrandbits(8) for _ in range(int(16000 * seconds))))


async def _fill(s: Settings) -> dict[str, Any]:
    """A tenant, a recharge, three calls settled, two recordings (one file then lost), a
    file in the spool with no row, three voicemail messages (one kept, one whose file is
    then lost, one deleted by the tenant), a file in the voicemail spool with no row and a
    rendered prompt; through the service's functions."""
    chroot = s.asterisk.chroot
    pool = await create_pool(s)
    writer = CallRecordWriter(pool, Metrics())
    await writer.start()
    recorder = Recorder(pool, FixedClock(NOW), Metrics(), RecordingSettings(finalize_wait_s=0.5), chroot)
    try:
        async with pool.acquire() as conn:
            t = await create_tenant(Ctx(conn, OPERATOR, FixedClock(NOW)), TenantCreate(name="backup test"))
            ctx = Ctx(conn, OPERATOR, FixedClock(NOW), t.id)
            await recharge(ctx, RechargeCreate(amount=Decimal("50.00"), reference="bank"), "rc-1")
        calls = []
        for i, billsec in enumerate((61, 5, 130)):
            linkedid = f"1777000000.{i + 1}"
            start = NOW + timedelta(minutes=i)
            writer.decided(
                DecisionRecord(
                    linkedid,
                    linkedid,
                    t.id,
                    None,
                    "13912345678",
                    "4001234567",
                    "dial",
                    "ROUTED",
                    ("13800138000",),
                    start,
                    900,
                )  # fmt: skip
            )
            call = LiveCall(linkedid, "13912345678", "4001234567", start)
            call.answered_at = call.bridged_at = start + timedelta(seconds=3)
            call.ended_at = call.answered_at + timedelta(seconds=billsec)
            async with pool.acquire() as conn:
                await _until(conn, "SELECT 1 FROM calls WHERE linkedid = $1", linkedid)  # the writer's batch
                grant = await open_reservation(conn, t.id, linkedid, "PJSIP/carrier-in-1", 180, start)
                assert isinstance(grant, Grant)
            writer.ended(call)
            async with pool.acquire() as conn:
                assert await settle_reservation(conn, linkedid, billsec, call.ended_at, "normal") is not None
            calls.append(call)
        await writer.stop()
        for call in calls[:2]:
            inside = f"{SPOOL}/{t.id}/{call.linkedid}.wav"
            _wav(chroot / inside.lstrip("/"), 0.5)
            pending = Pending(t.id, call.linkedid, "record", call.caller, call.called, "inbound", [inside])
            assert len(await recorder.finalize(pending, call)) == 1
        lost = chroot / f"{SPOOL}/{t.id}/{calls[1].linkedid}.wav".lstrip("/")
        lost.unlink()  # as if purged, or lost, between the dump and the files
        _wav(chroot / f"{SPOOL}/{t.id}/1777000000.99.wav".lstrip("/"), 0.1)  # being written: no row
        PromptStore(s.asterisk.sounds_dir).render_text(f"t{t.id}", "greeting", "您好")
        # Voicemail: the engine's WAV at the call's place in the spool, picked up at hang-up.
        pickup = VoicemailPickup(
            pool, FixedClock(NOW), Metrics(), VoicemailSettings(finalize_wait_s=0.5), chroot
        )
        messages = []
        for call in (calls[2], LiveCall("1777000000.4", "13700000000", "4001234567", NOW), LiveCall(
                "1777000000.5", "13600000000", "4001234567", NOW)):  # fmt: skip
            inside = voicemail_file(VM_SPOOL, t.id, call.linkedid)
            _wav(chroot / inside.lstrip("/"), 1.0)
            expected = Expected(t.id, call.linkedid, "4001234567", call.caller, True, inside)
            message_id = await pickup.pick_up(expected, call)
            assert isinstance(message_id, int)
            messages.append(message_id)
        (chroot / voicemail_file(VM_SPOOL, t.id, "1777000000.4").lstrip("/")).unlink()  # lost
        async with pool.acquire() as conn:
            await delete_message(Ctx(conn, OPERATOR, FixedClock(NOW), t.id), pickup.files, messages[2])
            lost_id = await conn.fetchval(
                "SELECT id FROM recordings WHERE call_linkedid = $1", calls[1].linkedid
            )
        _wav(chroot / voicemail_file(VM_SPOOL, t.id, "1777000000.98").lstrip("/"), 1.0)  # no row
        assert not (chroot / voicemail_file(VM_SPOOL, t.id, "1777000000.5").lstrip("/")).exists()
        return {"tenant": t.id, "lost_recording": lost_id, "voicemail": messages}
    finally:
        await pool.close()


async def _rows(s: Settings) -> dict[str, list[dict[str, Any]]]:
    conn = await _connect(s)
    try:
        out = {}
        for table, key in TABLES.items():
            rows = await conn.fetch(f"SELECT * FROM {table} ORDER BY {key}")
            out[table] = [{k: v for k, v in r.items() if k != "applied_at"} for r in rows]
        tables = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        out["counts"] = [
            {t["tablename"]: await conn.fetchval(f'SELECT count(*) FROM "{t["tablename"]}"')}
            for t in sorted(tables, key=lambda t: t["tablename"])
        ]
        return out
    finally:
        await conn.close()


def _checksums(roots: FileRoots) -> dict[str, str]:
    out = {}
    for base in (roots.recordings, roots.voicemail, roots.prompts):
        for p in sorted(base.rglob("*")):
            if p.is_file() and ".cache" not in p.relative_to(base).parts:
                out[str(p.relative_to(roots.chroot))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


async def test_a_restore_into_a_fresh_cluster_keeps_money_calls_recordings_voicemail_and_prompts(
    clusters: tuple[Cluster, Cluster], tmp_path: Path
) -> None:
    source_cluster, target_cluster = clusters
    source = await source_cluster.new_database()
    await migrate_and_grant(source)
    made = await _fill(source)
    src_roots = FileRoots.of(source)

    manifest = await backup(source, tmp_path / "archive", FixedClock(NOW), src_roots)
    assert (
        manifest.created_at == NOW.isoformat()
        and manifest.schema_version == available_migrations()[-1].version
    )
    assert manifest.without_file == [
        {"recording_id": made["lost_recording"], "path": f"{SPOOL}/{made['tenant']}/1777000000.2.wav"}
    ]
    assert manifest.unreferenced == [f"{made['tenant']}/1777000000.99.wav"]
    kept, lost, deleted = made["voicemail"]
    # The kept message archived with its row's sha256; the lost one named; the deleted one
    # (no file since its deletion) not looked for; the file with no row only counted.
    vm_member = f"voicemail/{made['tenant']}-1777000000.3.wav"
    [vm_entry] = [f for f in manifest.files if f.path.startswith("voicemail/")]
    conn = await _connect(source)
    try:
        kept_sha = await conn.fetchval("SELECT sha256 FROM voicemail_messages WHERE id = $1", kept)
    finally:
        await conn.close()
    assert (vm_entry.path, vm_entry.voicemail_id, vm_entry.sha256) == (vm_member, kept, kept_sha)
    assert manifest.voicemail_without_file == [
        {"voicemail_id": lost, "path": f"{VM_SPOOL}/{made['tenant']}-1777000000.4.wav"}
    ]
    assert manifest.voicemail_unreferenced == [f"{made['tenant']}-1777000000.98.wav"]
    assert manifest.voicemail_sha256_differs == [] and manifest.rows["voicemail_messages"] == 3
    assert sorted(p.name for p in (tmp_path / "archive").iterdir()) == [DUMP, FILES, MANIFEST]

    target = (await target_cluster.new_database()).model_copy(
        update={"asterisk": AsteriskSettings(chroot=tmp_path / "fresh-chroot")}
    )
    dst_roots = FileRoots.of(target)
    # The target's voicemail spool is there, empty, owned by the engine's user (here postgres).
    engine_user = pwd.getpwnam("postgres")
    dst_roots.voicemail.mkdir(parents=True)
    os.chown(dst_roots.voicemail, engine_user.pw_uid, engine_user.pw_gid)
    # A damaged voicemail member is refused naming it, before anything changes.
    shutil.copytree(tmp_path / "archive", tmp_path / "damaged")
    with tarfile.open(tmp_path / "damaged" / FILES) as tar:
        offset = tar.getmember(vm_member).offset_data + 200
    _flip(tmp_path / "damaged" / FILES, offset)
    with pytest.raises(BackupError, match=rf"^{vm_member}: sha256 .* the archive is damaged"):
        await restore(target, tmp_path / "damaged", FixedClock(NOW), roots=dst_roots)
    assert [p for p in (tmp_path / "fresh-chroot").rglob("*") if not p.is_dir()] == []

    report = await restore(target, tmp_path / "archive", FixedClock(NOW), roots=dst_roots)
    assert (report.schema_from, report.schema_to, report.migrations) == (
        manifest.schema_version,
        manifest.schema_version,
        [],
    )
    assert report.files == 3 and report.without_file == manifest.without_file and report.unreferenced == 1
    assert report.files_by_root == {"recordings": 1, "voicemail": 1, "prompts": 1}
    assert report.voicemail_without_file == manifest.voicemail_without_file
    assert report.voicemail_unreferenced == 1
    assert "1 voicemail message(s) had no file at backup" in report.as_text()
    # Put back owned as the spool was, so the engine can record the next messages there.
    restored_vm = dst_roots.voicemail / f"{made['tenant']}-1777000000.3.wav"
    assert {(p.stat().st_uid, p.stat().st_gid) for p in (dst_roots.voicemail, restored_vm)} == {
        (engine_user.pw_uid, engine_user.pw_gid)
    }

    before, after = await _rows(source), await _rows(target)
    assert after == before
    # The money, spelled out: 50 recharged, three calls at 0.12 a started minute.
    account = after["accounts"][0]
    assert (account["balance"], account["reserved"], account["channels_in_use"]) == (Decimal("49.28"), 0, 0)
    amounts = [e["amount"] for e in after["ledger_entries"]]
    assert amounts == [Decimal("50.00"), Decimal("-0.24"), Decimal("-0.12"), Decimal("-0.36")]
    assert sum(amounts) == account["balance"]
    assert [c["amount"] for c in after["calls"]] == [Decimal("0.24"), Decimal("0.12"), Decimal("0.36")]

    expected = _checksums(src_roots)
    del expected[f"{SPOOL.lstrip('/')}/{made['tenant']}/1777000000.99.wav"]  # no row: not archived
    del expected[f"{VM_SPOOL.lstrip('/')}/{made['tenant']}-1777000000.98.wav"]  # no row: not archived
    assert _checksums(dst_roots) == expected and len(expected) == 3
    stored = {r["id"]: r["sha256"] for r in after["recordings"]}
    rec_file = dst_roots.recordings / str(made["tenant"]) / "1777000000.1.wav"
    assert hashlib.sha256(rec_file.read_bytes()).hexdigest() == stored[min(stored)]
    assert [(m["id"], m["deleted_at"] is not None) for m in after["voicemail_messages"]] == [
        (kept, False),
        (lost, False),
        (deleted, True),
    ]
    assert [c["voicemail_id"] for c in after["calls"]] == [None, None, kept]

    conn = await _connect(target)
    try:
        # The service plays the restored message from the target's spool: the row's audio.
        spool = VoicemailSpool(target.asterisk.chroot, target.voicemail.spool)
        path, call_id = await audio_for_play(
            Ctx(conn, OPERATOR, FixedClock(NOW), made["tenant"]), spool, kept
        )
        assert call_id == "1777000000.3"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == kept_sha

        # Asterisk's login was granted its tables again (grants are not in the archive).
        assert await conn.fetchval("SELECT has_table_privilege('asterisk', 'ps_endpoints', 'UPDATE')")
    finally:
        await conn.close()
    with pytest.raises(BackupError, match=rf"database {target.database.name} .* is not empty"):
        await restore(target, tmp_path / "archive", FixedClock(NOW), roots=dst_roots)


async def _migrate_to(s: Settings, version: int) -> None:
    """The schema as an older release left it (the migrations up to `version`)."""
    conn = await _connect(s)
    try:
        await conn.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
            "checksum TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        for mig in available_migrations():
            if mig.version <= version:
                await conn.execute(mig.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations VALUES ($1, $2, $3)", mig.version, mig.name, mig.checksum
                )
        tenant = await conn.fetchval("INSERT INTO tenants (name) VALUES ('old') RETURNING id")
        await conn.execute("INSERT INTO accounts (tenant_id, balance) VALUES ($1, 12.34)", tenant)
    finally:
        await conn.close()


def _flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0x01]))


async def test_an_older_backup_comes_back_migrated_and_a_damaged_one_is_refused_naming_the_file(
    clusters: tuple[Cluster, Cluster], tmp_path: Path
) -> None:
    source_cluster, target_cluster = clusters
    source = await source_cluster.new_database()
    older = available_migrations()[-2]
    await _migrate_to(source, older.version)
    prompt = source.asterisk.chroot / "usr/share/asterisk/sounds/softswitch/system/hello.wav"
    _wav(prompt, 0.2)
    archive = tmp_path / "archive"
    manifest = await backup(source, archive, FixedClock(NOW))
    assert manifest.schema_version == older.version and manifest.sums["accounts.balance"] == "12.3400"

    damaged = tmp_path / "damaged"
    shutil.copytree(archive, damaged)
    with tarfile.open(damaged / FILES) as tar:
        offset = tar.getmember("prompts/system/hello.wav").offset_data + 100
    _flip(damaged / FILES, offset)
    target = (await target_cluster.new_database()).model_copy(
        update={"asterisk": AsteriskSettings(chroot=tmp_path / "target-chroot")}
    )
    with pytest.raises(BackupError, match=r"^prompts/system/hello\.wav: sha256 .* the archive is damaged"):
        await restore(target, damaged, FixedClock(NOW))
    _flip(damaged / FILES, offset)
    _flip(damaged / DUMP, manifest.dump_size // 2)
    with pytest.raises(BackupError, match=rf"^{DUMP}: sha256 .* the archive is damaged"):
        await restore(target, damaged, FixedClock(NOW))
    (damaged / MANIFEST).unlink()
    with pytest.raises(BackupError, match=r"manifest\.json: missing .* not a finished backup"):
        await restore(target, damaged, FixedClock(NOW))
    # A failure after pg_restore (here the row counts) leaves the database empty again.
    lying = json.loads((archive / MANIFEST).read_text())
    lying["rows"]["tenants"] += 1
    shutil.copytree(archive, tmp_path / "lying")
    (tmp_path / "lying" / MANIFEST).write_text(json.dumps(lying))
    with pytest.raises(
        BackupError, match=r"the restored database differs from the manifest in \['tenants'\]"
    ):
        await restore(target, tmp_path / "lying", FixedClock(NOW))
    # Nothing was changed: the database is still empty, no file or staging left behind.
    conn = await _connect(target)
    try:
        assert (
            await conn.fetchval("SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace")
            == 0
        )
    finally:
        await conn.close()
    # A member outside recordings/, voicemail/ and prompts/ is refused, in the tar or the manifest.
    shutil.copytree(archive, tmp_path / "outside")
    with tarfile.open(tmp_path / "outside" / FILES, "a") as tar:
        tar.add(prompt, "spool/x.wav")
    with pytest.raises(
        BackupError, match=r"member 'spool/x\.wav' is not under recordings/, voicemail/ or prompts/"
    ):
        await restore(target, tmp_path / "outside", FixedClock(NOW))
    outside = json.loads((archive / MANIFEST).read_text())
    outside["files"][0]["path"] = "../voicemail/x.wav"
    (tmp_path / "outside" / MANIFEST).write_text(json.dumps(outside))
    with pytest.raises(BackupError, match=r"manifest\.json: member '\.\./voicemail/x\.wav' is not under"):
        await restore(target, tmp_path / "outside", FixedClock(NOW))
    assert [p for p in (tmp_path / "target-chroot").rglob("*") if not p.is_dir()] == []

    # An archive written before voicemail was backed up (no voicemail_* field, no voicemail/
    # member) still restores.
    old = json.loads((archive / MANIFEST).read_text())
    assert old["voicemail_without_file"] == old["voicemail_unreferenced"] == []
    for key in ("voicemail_without_file", "voicemail_unreferenced", "voicemail_sha256_differs"):
        del old[key]
    for f in old["files"]:
        del f["voicemail_id"]
    (archive / MANIFEST).write_text(json.dumps(old))
    report = await restore(target, archive, FixedClock(NOW))
    assert report.files_by_root == {"recordings": 0, "voicemail": 0, "prompts": 1}
    latest = available_migrations()[-1]
    assert (report.schema_from, report.schema_to) == (older.version, latest.version)
    assert report.migrations == [f"{latest.version:04d}_{latest.name}"]
    restored = target.asterisk.chroot / "usr/share/asterisk/sounds/softswitch/system/hello.wav"
    assert restored.read_bytes() == prompt.read_bytes()


def test_the_commands_back_up_refuse_a_damaged_archive_and_restore_with_force(
    clusters: tuple[Cluster, Cluster], tmp_path: Path
) -> None:
    source_cluster, target_cluster = clusters
    source = asyncio.run(source_cluster.new_database())
    asyncio.run(migrate_and_grant(source))
    prompt = source.asterisk.chroot / "usr/share/asterisk/sounds/softswitch/system/hello.wav"
    _wav(prompt, 0.2)
    db = source.database
    env = {
        "SOFTSWITCH_DATABASE__HOST": db.host,
        "SOFTSWITCH_DATABASE__PORT": str(db.port),
        "SOFTSWITCH_DATABASE__NAME": db.name,
        "SOFTSWITCH_CONFIG": str(tmp_path / "none.toml"),
    }
    runner = CliRunner()
    out = runner.invoke(
        app, ["db", "backup", str(tmp_path / "a"), "--chroot", str(source.asterisk.chroot)], env=env
    )
    assert out.exit_code == 0, out.output
    assert f"backed up {db.name} (schema {available_migrations()[-1].version}" in out.output

    target = asyncio.run(target_cluster.new_database())
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    with tarfile.open(tmp_path / "b" / FILES) as tar:
        _flip(tmp_path / "b" / FILES, tar.getmember("prompts/system/hello.wav").offset_data + 7)
    chroot = tmp_path / "target-chroot"
    restore_args = [
        "db",
        "restore",
        "--dsn",
        target_cluster.dsn(target.database.name),
        "--chroot",
        str(chroot),
    ]
    out = runner.invoke(app, [*restore_args, str(tmp_path / "b")], env=env)
    assert out.exit_code == 1 and "error: prompts/system/hello.wav: sha256" in out.output

    out = runner.invoke(app, [*restore_args, str(tmp_path / "a")], env=env)
    assert out.exit_code == 0, out.output
    assert f"restored into database {target.database.name}" in out.output and "(up to date)" in out.output
    out = runner.invoke(app, [*restore_args, str(tmp_path / "a")], env=env)
    assert out.exit_code == 1 and "is not empty" in out.output and "--force" in out.output
    out = runner.invoke(app, [*restore_args, "--force", str(tmp_path / "a")], env=env)
    assert out.exit_code == 0, out.output
    aside = chroot / "usr/share/asterisk/sounds/softswitch.pre-restore-"
    assert f"moved aside: {aside}" in out.output
    assert (
        chroot / "usr/share/asterisk/sounds/softswitch/system/hello.wav"
    ).read_bytes() == prompt.read_bytes()


def test_a_dsn_names_the_target_and_a_bad_one_names_the_option() -> None:
    base = DatabaseSettings()
    db = database_of_dsn("postgresql://ops:p%40ss@db.example:6543/softswitch_restored", base)
    assert (db.user, db.password.get_secret_value(), db.host, db.port, db.name) == (
        "ops",
        "p@ss",
        "db.example",
        6543,
        "softswitch_restored",
    )
    assert database_of_dsn("postgresql:///other", base).model_dump(exclude={"name", "command_timeout"}) == (
        base.model_dump(exclude={"name", "command_timeout"})
    )
    for bad in ("mysql://u@h/db", "postgresql://u@h", "postgresql://u@h:99999/db"):
        with pytest.raises(BackupError, match=r"\(--dsn\)$"):
            database_of_dsn(bad, base)
