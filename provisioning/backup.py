"""Backup and restore of the service: the database and the files it refers to (call
recordings, voicemail messages and prompts, all under Asterisk's chroot, which FreeSWITCH
reads and writes too) in one archive directory:

    database.dump   pg_dump's custom format of the service's database (no owners, no grants)
    files.tar       recordings/<tenant>/<call>.wav …, voicemail/<tenant>-<call>.wav … and
                    prompts/<scope>/<name>.wav …
    manifest.json   written last: versions, schema level, every table's row count and the
                    money sums in the dump's snapshot, every file's size and sha256

Consistency: the database first, then the files. One REPEATABLE READ transaction exports
its snapshot; the row counts, the money sums and the lists of recordings and voicemail
messages are read in it and pg_dump dumps exactly it (--snapshot). The files are read
afterwards, so every recording and message the dump lists was finished before (a row is
written only once its file is closed). A file written while the backup runs has no row in
the dump: it is not archived, only named (manifest `unreferenced`, `voicemail_unreferenced`),
and the next backup takes it. A row whose file has gone meanwhile (a purge, a deletion, a
lost disk) is restored as it is and named (manifest `without_file`,
`voicemail_without_file`); the service already answers "not on disk" for it. A voicemail
message a user deleted has no file (it went at once) and is not looked for. The prompts'
render cache (softswitch/.cache) is not archived: it is regenerated on use.

Restore goes into an empty database (no relation, function or type in schema public)
and empty or missing file directories; --force empties them (the schema dropped and made
again; the directories' files moved aside to <dir>.pre-restore-<time>, never deleted), and
only once the archive has been checked. In order: the manifest, the dump's sha256, every
file unpacked into staging directories beside the targets and checked against its sha256
(a damaged archive is refused naming the file, before anything is changed), pg_restore in
one transaction, the row counts and sums compared with the manifest, the migrations (an
older backup is brought to the current schema) and Asterisk's grants, then the staged
directories renamed into place, owned as the directories they replace (or their parent)
were: the engines write into the spools as their own user. A failure after pg_restore
empties the database again and removes the staging: nothing half-restored is left behind,
and the error says what failed.

Roles are not in the archive: the target's login owns what is restored, and Asterisk's
grants are applied again by the migration step when its role exists there."""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import asyncpg
from pydantic import SecretStr

from provisioning.backup_files import (
    DUMP,
    FILES,
    PROMPTS,
    RECORDINGS,
    VOICEMAIL,
    BackupError,
    FileEntry,
    FileTar,
    Manifest,
    extract_verified,
    has_files,
    read_manifest,
    remove_tree,
    sha256_of,
    walk_files,
    write_manifest,
)
from provisioning.recordings import host_path
from softswitch.core.clock import Clock
from softswitch.core.db import migrate_and_grant
from softswitch.core.settings import DatabaseSettings, Settings, VoicemailSettings

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PROMPT_CACHE = ".cache"  # PromptStore's render cache: regenerable, not archived
# Statements of a backup or restore may take long: not the call path's 2 s.
LONG_TIMEOUT = 3600.0
# Money in the dump's snapshot, compared after a restore.
SUMS = {
    "accounts.balance": "SELECT COALESCE(sum(balance), 0) FROM accounts",
    "accounts.reserved": "SELECT COALESCE(sum(reserved), 0) FROM accounts",
    "ledger_entries.amount": "SELECT COALESCE(sum(amount), 0) FROM ledger_entries",
    "calls.amount": "SELECT COALESCE(sum(amount), 0) FROM calls",
}


@dataclass(frozen=True, slots=True)
class FileRoots:
    """Where the files are on this host: the chroot, the recording and voicemail spools
    inside it (the recordings' and messages' rows hold paths inside the chroot), and the
    prompts' directory."""

    chroot: Path
    spool: str
    voicemail_spool: str = VoicemailSettings().spool

    @classmethod
    def of(cls, settings: Settings, chroot: Path | None = None) -> FileRoots:
        return cls(chroot or settings.asterisk.chroot, settings.recording.spool, settings.voicemail.spool)

    @property
    def recordings(self) -> Path:
        return self.chroot / self.spool.lstrip("/")

    @property
    def voicemail(self) -> Path:
        return self.chroot / self.voicemail_spool.lstrip("/")

    @property
    def prompts(self) -> Path:
        # Settings.asterisk.sounds_dir's layout, under this chroot (PromptStore's root).
        return self.chroot / "usr" / "share" / "asterisk" / "sounds" / "softswitch"

    def by_root(self) -> dict[str, Path]:
        return {RECORDINGS: self.recordings, VOICEMAIL: self.voicemail, PROMPTS: self.prompts}


def database_of_dsn(dsn: str, base: DatabaseSettings) -> DatabaseSettings:
    """postgresql://user:password@host:port/name as database settings (what is left out
    comes from `base`); an unusable DSN is an error naming --dsn."""
    try:
        u = urlsplit(dsn)
        port = u.port
    except ValueError as exc:
        raise BackupError(f"not a DSN: {exc} (--dsn)") from None
    if u.scheme not in ("postgresql", "postgres") or not u.path.strip("/"):
        raise BackupError("a DSN is postgresql://user:password@host:port/database (--dsn)")
    return base.model_copy(
        update={
            "host": u.hostname or base.host,
            "port": port or base.port,
            "name": unquote(u.path.strip("/")),
            "user": unquote(u.username) if u.username else base.user,
            "password": SecretStr(unquote(u.password)) if u.password is not None else base.password,
            "command_timeout": LONG_TIMEOUT,
        }
    )


def _where(db: DatabaseSettings) -> str:
    return f"database {db.name} at {db.host}:{db.port}"


async def _connect(db: DatabaseSettings) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(
            host=db.host,
            port=db.port,
            user=db.user,
            password=db.password.get_secret_value(),
            database=db.name,
            timeout=10,
            command_timeout=LONG_TIMEOUT,
        )
    except (OSError, asyncpg.PostgresError) as exc:
        raise BackupError(f"cannot connect to {_where(db)}: {exc}") from None


async def _pg_tool(pg_bin: Path, tool: str, db: DatabaseSettings, *args: str) -> str:
    """Run pg_dump or pg_restore against `db`; the password goes in the environment, never
    on the command line. Returns stderr; a failure raises BackupError with its tail."""
    exe = pg_bin / tool
    if not exe.exists():
        raise BackupError(f"{exe} not found (PostgreSQL 15's client, --pg-bin)")
    env = {**os.environ, "PGPASSWORD": db.password.get_secret_value(), "PGCONNECT_TIMEOUT": "10"}
    conn_args = ["--host", db.host, "--port", str(db.port), "--username", db.user, "--no-password"]
    proc = await asyncio.create_subprocess_exec(
        str(exe),
        *conn_args,
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        tail = err.decode(errors="replace").strip()[-800:]
        raise BackupError(f"{tool} on {_where(db)} failed (exit {proc.returncode}): {tail}")
    return (out + err).decode(errors="replace")


async def _pg_version(pg_bin: Path) -> str:
    proc = await asyncio.create_subprocess_exec(
        str(pg_bin / "pg_dump"), "--version", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    return out.decode(errors="replace").strip()


async def _tables(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY c.relname"
    )
    return [r["relname"] for r in rows]


async def _facts(conn: asyncpg.Connection) -> tuple[int, dict[str, int], dict[str, str]]:
    """Schema level, every table's row count and the money sums, as this transaction sees them."""
    level = await conn.fetchval("SELECT COALESCE(max(version), 0) FROM schema_migrations")
    rows = {}
    for table in await _tables(conn):
        ident = '"' + table.replace('"', '""') + '"'
        rows[table] = await conn.fetchval(f"SELECT count(*) FROM {ident}")
    sums = {}
    for name, sql in SUMS.items():
        if name.split(".")[0] in rows:
            sums[name] = str(Decimal(await conn.fetchval(sql)))
    return level, rows, sums


# ---------------------------------------------------------------------------- backup
def _version() -> str:
    try:
        return importlib.metadata.version("softswitch")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


async def backup(
    settings: Settings,
    archive: Path,
    clock: Clock,
    roots: FileRoots | None = None,
    pg_bin: Path = PG_BIN,
) -> Manifest:
    """Write the archive directory `archive` (new, or an empty directory). It is built in a
    hidden sibling and renamed into place only when complete; on failure that sibling is
    removed and nothing is left at `archive`."""
    roots = roots or FileRoots.of(settings)
    work = await asyncio.to_thread(_claim, archive)
    try:
        manifest = await _backup_into(settings.database, work, roots, clock, pg_bin)
        await asyncio.to_thread(_publish, work, archive, manifest)
        return manifest
    except BaseException:
        remove_tree(work)
        raise


def _claim(archive: Path) -> Path:
    """The hidden sibling the archive is built in."""
    if archive.exists() and (not archive.is_dir() or any(archive.iterdir())):
        raise BackupError(f"{archive} exists and is not an empty directory: back up into a new one")
    work = archive.parent / f".{archive.name}.partial"
    remove_tree(work)  # a backup that died before
    work.mkdir(parents=True)
    return work


def _publish(work: Path, archive: Path, manifest: Manifest) -> None:
    write_manifest(work, manifest)
    if archive.exists():
        archive.rmdir()
    work.replace(archive)


async def _backup_into(
    db: DatabaseSettings, work: Path, roots: FileRoots, clock: Clock, pg_bin: Path
) -> Manifest:
    created_at = clock.now()
    started = time.monotonic()
    conn = await _connect(db)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
            level, rows, sums = await _facts(conn)
            recordings = []
            if "recordings" in rows:
                recordings = await conn.fetch(
                    "SELECT id, path, status, sha256 FROM recordings "
                    "WHERE status IN ('stored', 'empty') AND purged_at IS NULL ORDER BY id"
                )
            messages = []
            if "voicemail_messages" in rows:  # an older schema has none
                messages = await conn.fetch(
                    "SELECT id, path, sha256 FROM voicemail_messages WHERE deleted_at IS NULL ORDER BY id"
                )
            server = await conn.fetchval("SHOW server_version")
            # The transaction stays open until pg_dump has its snapshot and is done.
            await _pg_tool(
                pg_bin,
                "pg_dump",
                db,
                "--dbname",
                db.name,
                "--format=custom",
                "--snapshot",
                snapshot,
                "--lock-wait-timeout=30s",
                "--file",
                str(work / DUMP),
            )
    finally:
        await conn.close()
    dumped = time.monotonic()
    pg_dump_version = await _pg_version(pg_bin)
    dump_size, dump_sha = await asyncio.to_thread(sha256_of, work / DUMP)
    files = await asyncio.to_thread(_archive_files, work / FILES, roots, list(recordings), list(messages))
    return Manifest(
        created_at=created_at.isoformat(),
        host=socket.gethostname(),
        versions={"softswitch": _version(), "server": str(server), "pg_dump": pg_dump_version},
        database=db.name,
        schema_version=level,
        rows=rows,
        sums=sums,
        dump_size=dump_size,
        dump_sha256=dump_sha,
        files=files.entries,
        without_file=files.recordings.without_file,
        unreferenced=files.recordings.unreferenced,
        sha256_differs=files.recordings.differs,
        voicemail_without_file=files.voicemail.without_file,
        voicemail_unreferenced=files.voicemail.unreferenced,
        voicemail_sha256_differs=files.voicemail.differs,
        seconds={
            "database": round(dumped - started, 3),
            "files": round(time.monotonic() - dumped, 3),
        },
    )


@dataclass
class _Spooled:
    """What archiving one spool found besides its files."""

    without_file: list[dict[str, Any]] = field(default_factory=list)  # rows whose file was gone
    unreferenced: list[str] = field(default_factory=list)  # files no row lists, under the spool
    differs: list[int] = field(default_factory=list)  # rows whose file's sha256 is not theirs


@dataclass
class _Archived:
    entries: list[FileEntry]
    recordings: _Spooled
    voicemail: _Spooled


def _archive_spool(
    tar: FileTar, entries: list[FileEntry], root: str, base: Path, spool: str, chroot: Path, rows: list[Any]
) -> _Spooled:
    """The files `rows` list (their paths inside the chroot, under `spool` at `base`) as
    members `<root>/<path under the spool>`; then the spool's files no row listed."""
    found = _Spooled()
    key = "recording_id" if root == RECORDINGS else "voicemail_id"
    taken: set[Path] = set()
    resolved = base.resolve()
    for r in rows:
        path = host_path(chroot, spool, r["path"])
        entry = None
        if path is not None:
            entry = tar.add(path, f"{root}/{path.relative_to(resolved).as_posix()}", **{key: r["id"]})
        if path is None or entry is None:
            if r.get("status", "stored") == "stored":  # an empty recording may have no file
                found.without_file.append({key: r["id"], "path": r["path"]})
            continue
        taken.add(path)
        entries.append(entry)
        if r["sha256"] is not None and entry.sha256 != r["sha256"]:
            found.differs.append(r["id"])
    found.unreferenced = [
        p.relative_to(resolved).as_posix() for p in walk_files(resolved) if p.resolve() not in taken
    ]
    return found


def _archive_files(tar_path: Path, roots: FileRoots, recordings: list[Any], messages: list[Any]) -> _Archived:
    """The recordings and the voicemail messages the snapshot lists, then every prompt; blocking."""
    tar = FileTar(tar_path)
    entries: list[FileEntry] = []
    try:
        recorded = _archive_spool(
            tar, entries, RECORDINGS, roots.recordings, roots.spool, roots.chroot, recordings
        )
        voicemail = _archive_spool(
            tar, entries, VOICEMAIL, roots.voicemail, roots.voicemail_spool, roots.chroot, messages
        )
        for path in walk_files(roots.prompts, skip_dirs=[PROMPT_CACHE]):
            if path.name.endswith(".part.wav"):
                continue  # a prompt being published (renamed into place when done)
            entry = tar.add(path, f"{PROMPTS}/{path.relative_to(roots.prompts).as_posix()}")
            if entry is not None:
                entries.append(entry)
    finally:
        tar.close()
    return _Archived(entries, recorded, voicemail)


# ---------------------------------------------------------------------------- restore
@dataclass
class RestoreReport:
    database: str
    schema_from: int
    schema_to: int
    migrations: list[str]
    rows: int
    files: int
    file_bytes: int
    without_file: list[dict[str, Any]]
    unreferenced: int
    voicemail_without_file: list[dict[str, Any]] = field(default_factory=list)
    voicemail_unreferenced: int = 0
    files_by_root: dict[str, int] = field(default_factory=dict)  # recordings, voicemail, prompts
    moved_aside: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def as_text(self) -> str:
        by_root = ", ".join(f"{n} {root}" for root, n in self.files_by_root.items())
        lines = [
            f"restored into {self.database}: {self.rows} rows, {self.files} files "
            f"({by_root}; {self.file_bytes} bytes) in {self.seconds:.1f} s",
            f"schema {self.schema_from} -> {self.schema_to}"
            + (f" (applied {', '.join(self.migrations)})" if self.migrations else " (up to date)"),
        ]
        if self.without_file:
            ids = ", ".join(str(r["recording_id"]) for r in self.without_file[:20])
            lines.append(f"{len(self.without_file)} stored recording(s) had no file at backup: {ids}")
        if self.unreferenced:
            lines.append(f"{self.unreferenced} file(s) with no recording row were not in the backup")
        if self.voicemail_without_file:
            ids = ", ".join(str(r["voicemail_id"]) for r in self.voicemail_without_file[:20])
            lines.append(
                f"{len(self.voicemail_without_file)} voicemail message(s) had no file at backup: {ids}"
            )
        if self.voicemail_unreferenced:
            lines.append(
                f"{self.voicemail_unreferenced} file(s) with no voicemail message row were not in the backup"
            )
        lines += [f"moved aside: {p}" for p in self.moved_aside] + self.notes
        return "\n".join(lines)


_NOT_EMPTY = """
SELECT (SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace)
     + (SELECT count(*) FROM pg_proc WHERE pronamespace = 'public'::regnamespace)
     + (SELECT count(*) FROM pg_type WHERE typnamespace = 'public'::regnamespace
                                        AND typtype IN ('e', 'd', 'r', 'm'))
"""


async def _empty_schema(conn: asyncpg.Connection) -> None:
    """Schema public dropped and made again as PostgreSQL 15 makes it."""
    await conn.execute(
        "DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public AUTHORIZATION pg_database_owner; "
        "GRANT USAGE ON SCHEMA public TO PUBLIC"
    )


async def restore(
    settings: Settings,
    archive: Path,
    clock: Clock,
    *,
    force: bool = False,
    roots: FileRoots | None = None,
    pg_bin: Path = PG_BIN,
) -> RestoreReport:
    """Restore `archive` into settings.database and under `roots` (see the module's doc)."""
    started = time.monotonic()
    roots = roots or FileRoots.of(settings)
    db = settings.database.model_copy(update={"command_timeout": LONG_TIMEOUT})
    target = settings.model_copy(update={"database": db})
    manifest = await asyncio.to_thread(read_manifest, archive)
    size_sha = await asyncio.to_thread(_dump_sha, archive)
    if size_sha != (manifest.dump_size, manifest.dump_sha256):
        raise BackupError(
            f"{DUMP}: sha256 {size_sha[1]} ({size_sha[0]} bytes) differs from the manifest's "
            f"{manifest.dump_sha256} ({manifest.dump_size} bytes): the archive is damaged"
        )
    conn = await _connect(db)
    staging = {root: d.parent / f".{d.name}.restoring" for root, d in roots.by_root().items()}
    try:
        objects = await conn.fetchval(_NOT_EMPTY)
        if objects and not force:
            raise BackupError(
                f"{_where(db)} is not empty ({objects} objects in schema public): restore into an "
                "empty database, or --force to drop its schema first"
            )
        busy = [str(d) for d in roots.by_root().values() if has_files(d)]
        if busy and not force:
            raise BackupError(f"{busy[0]} holds files: restore into empty directories, or --force")
        for d in staging.values():
            remove_tree(d)
            d.mkdir(parents=True)
        try:
            files, file_bytes = await asyncio.to_thread(extract_verified, archive, manifest, staging)
            if objects:
                await _empty_schema(conn)
            try:
                await _pg_tool(
                    pg_bin,
                    "pg_restore",
                    db,
                    "--dbname",
                    db.name,
                    "--no-owner",
                    "--no-acl",
                    "--single-transaction",
                    "--exit-on-error",
                    str(archive / DUMP),
                )
                report = await _finish(conn, target, manifest, roots, staging, clock)
            except BaseException:
                await _empty_schema(conn)
                raise
        finally:
            for d in staging.values():
                remove_tree(d)
    finally:
        await conn.close()
    report.files, report.file_bytes = files, file_bytes
    report.files_by_root = {
        root: sum(f.path.startswith(f"{root}/") for f in manifest.files) for root in staging
    }
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _dump_sha(archive: Path) -> tuple[int, str]:
    try:
        return sha256_of(archive / DUMP)
    except FileNotFoundError:
        raise BackupError(f"{archive / DUMP}: missing") from None


async def _finish(
    conn: asyncpg.Connection,
    target: Settings,
    manifest: Manifest,
    roots: FileRoots,
    staging: dict[str, Path],
    clock: Clock,
) -> RestoreReport:
    """After pg_restore: the counts and sums checked, the migrations, the files placed."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        level, rows, sums = await _facts(conn)
    if (level, rows, sums) != (manifest.schema_version, manifest.rows, manifest.sums):
        wrong = sorted(k for k in {**rows, **manifest.rows} if rows.get(k) != manifest.rows.get(k))
        wrong += sorted(k for k in {**sums, **manifest.sums} if sums.get(k) != manifest.sums.get(k))
        raise BackupError(f"the restored database differs from the manifest in {wrong or ['schema']}")
    try:
        applied = await migrate_and_grant(target)
    except (asyncpg.PostgresError, RuntimeError) as exc:
        raise BackupError(f"migrating the restored database (schema {level}) failed: {exc}") from None
    notes = []
    engine_role = target.asterisk.db_user
    if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", engine_role):
        notes.append(
            f"role {engine_role} does not exist here: Asterisk's grants were not applied "
            "(create the role, then run `softswitch db migrate`)"
        )
    stamp = clock.now().astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    moved = await asyncio.to_thread(_place, roots, staging, stamp)
    return RestoreReport(
        database=_where(target.database),
        schema_from=level,
        schema_to=level if not applied else applied[-1].version,
        migrations=[f"{m.version:04d}_{m.name}" for m in applied],
        rows=sum(rows.values()),
        files=0,
        file_bytes=0,
        without_file=manifest.without_file,
        unreferenced=len(manifest.unreferenced),
        voicemail_without_file=manifest.voicemail_without_file,
        voicemail_unreferenced=len(manifest.voicemail_unreferenced),
        moved_aside=moved,
        notes=notes,
    )


def _owner(path: Path) -> tuple[int, int]:
    """The owner of `path`, or of its nearest existing parent."""
    while not path.exists() and path != path.parent:
        path = path.parent
    st = path.stat()
    return st.st_uid, st.st_gid


def _chown_tree(tree: Path, uid: int, gid: int) -> None:
    """The restored tree given to the owner its target had (the engines write into the
    spools as their own user); a restore run without the right to chown leaves it as it is."""
    try:
        os.chown(tree, uid, gid)
        for base, dirs, names in os.walk(tree):
            for name in dirs + names:
                os.chown(os.path.join(base, name), uid, gid, follow_symlinks=False)
    except PermissionError:
        return


def _place(roots: FileRoots, staging: dict[str, Path], stamp: str) -> list[str]:
    """Rename each staged directory onto its target: every target holding files (--force)
    moved aside first, one holding none (only empty directories) removed, then the renames
    (on one filesystem: the staging is the target's sibling), owned as the target (or its
    parent) was."""
    moved = []
    targets = roots.by_root()
    for root, target in targets.items():
        _chown_tree(staging[root], *_owner(target))
        if target.exists():
            if has_files(target):
                aside = target.with_name(f"{target.name}.pre-restore-{stamp}")
                target.replace(aside)
                moved.append(str(aside))
            else:
                remove_tree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
    for root, target in targets.items():
        staging[root].replace(target)
    return moved
