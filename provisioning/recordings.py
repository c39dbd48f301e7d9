"""A tenant's call recordings as a service: search, metadata, the file behind a download,
legal holds, the batch export (zip of the WAVs plus a CSV manifest) and the retention
purge. The call path (softswitch/callpath/recorder.py) decides what is recorded and stores
each file's metadata at hang-up; everything after that lives here.

Files lie inside the Asterisk chroot at <spool>/<tenant_id>/<linkedid>.wav (settings
recording.spool). They are found by the recording's id in the database, never from
anything a client sends as a path, and a stored path is served only if it lies inside the
recording spool under the recording's own tenant.

Purging deletes the file and keeps the row with purged_at set: the metadata (size,
duration, sha256) stays as the record of what existed and when it went."""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import re
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

import asyncpg
from pydantic import BaseModel, Field

from provisioning import audit as audit_log
from provisioning.engine import Ctx, Forbidden, Invalid, NotFound, ProvisioningError, audit
from provisioning.roles import TENANT_WRITERS
from softswitch.core.metrics import Metrics

log = logging.getLogger(__name__)

# A call's id names its recording file, so only the engines' own shapes are accepted:
# Asterisk's linkedid "[<systemname>-]<epoch>.<sequence>", FreeSWITCH's call UUID.
CALL_ID_PATTERN = (
    r"^(([A-Za-z0-9][A-Za-z0-9_-]{0,62}-)?[0-9]{1,20}\.[0-9]{1,12}"
    r"|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$"
)
CALL_ID = re.compile(CALL_ID_PATTERN)
EXPORT_MAX = 500  # recordings in one export


# ---------------------------------------------------------------------------- paths
def host_path(root: Path, spool: str, path: str) -> Path | None:
    """The host path of a file Asterisk sees at `path` (inside the chroot), or None if it
    does not lie inside the recording spool: database rows are trusted only that far."""
    inside = PurePosixPath(path)
    if not inside.is_absolute() or ".." in inside.parts:
        return None
    base = (root / spool.lstrip("/")).resolve()
    full = (root / str(inside).lstrip("/")).resolve()
    return full if full.is_relative_to(base) and full != base else None


class Gone(ProvisioningError):
    status, kind = 410, "gone"


@dataclass(frozen=True, slots=True)
class RecordingSpool:
    """Where the files are: the Asterisk chroot on the host and the spool inside it."""

    chroot: Path
    spool: str

    def file_of(self, row: Any) -> Path:
        """The file of a stored, unpurged recording, inside its own tenant's directory."""
        if row["purged_at"] is not None:
            raise Gone(f"recording {row['id']} was purged at {row['purged_at'].isoformat()}", "recording_id")
        if row["status"] != "stored":
            raise NotFound(f"recording {row['id']} has no audio ({row['status']})", "recording_id")
        own = f"{self.spool.rstrip('/')}/{row['tenant_id']}/"
        path = host_path(self.chroot, self.spool, row["path"]) if row["path"].startswith(own) else None
        if path is None or not path.is_file():
            raise NotFound(f"the file of recording {row['id']} is not on disk", "recording_id")
        return path


# ---------------------------------------------------------------------------- reading
class RecordingRead(BaseModel):
    id: int
    tenant_id: int
    call_id: str
    segment: int
    mode: str
    status: str = Field(description="stored | missing (never written) | empty (no audio)")
    size_bytes: int
    duration_s: float
    sha256: str | None
    caller: str
    called: str
    direction: str
    started_at: datetime
    expires_at: datetime
    legal_hold: bool
    legal_hold_reason: str
    legal_hold_by: str | None
    legal_hold_at: datetime | None
    purged_at: datetime | None


@dataclass(frozen=True, slots=True)
class RecordingSearch:
    """What a tenant may search its recordings by; every part optional."""

    from_: datetime | None = None  # started at or after
    to: datetime | None = None  # started before
    caller: str | None = None
    called: str | None = None
    call_id: str | None = None


_SELECT = """
SELECT r.id, r.tenant_id, r.call_linkedid AS call_id, r.segment, r.mode, r.status, r.size_bytes,
       r.duration_s, r.sha256, r.caller, r.called, r.direction, r.started_at,
       r.started_at + make_interval(days => t.recording_retention_days) AS expires_at,
       r.legal_hold, r.legal_hold_reason, r.legal_hold_by, r.legal_hold_at, r.purged_at, r.path
FROM recordings r JOIN tenants t ON t.id = r.tenant_id
"""


def _present(row: Any) -> RecordingRead:
    return RecordingRead.model_validate({k: row[k] for k in RecordingRead.model_fields})


def _tenant(ctx: Ctx) -> int:
    assert ctx.tenant_id is not None, "recordings are read within a tenant"
    return ctx.tenant_id


async def _one(ctx: Ctx, recording_id: int, lock: bool = False) -> Any:
    row = await ctx.conn.fetchrow(
        _SELECT + " WHERE r.id = $1 AND r.tenant_id = $2" + (" FOR UPDATE OF r" if lock else ""),
        recording_id,
        _tenant(ctx),
    )
    if row is None:
        raise NotFound(f"recording {recording_id} not found", "recording_id")
    return row


async def search(
    ctx: Ctx, query: RecordingSearch, limit: int, after: int | None
) -> tuple[list[RecordingRead], int | None]:
    """A page of the tenant's recordings, by id, with the `after` of the next page."""
    where = ["r.tenant_id = $1"]
    params: list[Any] = [_tenant(ctx)]
    for clause, value in (
        ("r.started_at >= {}", query.from_),
        ("r.started_at < {}", query.to),
        ("r.caller = {}", query.caller),
        ("r.called = {}", query.called),
        ("r.call_linkedid = {}", query.call_id),
        ("r.id > {}", after),
    ):
        if value is not None:
            if isinstance(value, datetime) and value.tzinfo is None:
                raise Invalid("from/to need a UTC offset", "from" if value is query.from_ else "to")
            params.append(value)
            where.append(clause.format(f"${len(params)}"))
    params.append(limit + 1)
    rows = await ctx.conn.fetch(
        f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY r.id LIMIT ${len(params)}", *params
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return [_present(r) for r in rows], rows[-1]["id"] if more else None


async def get_recording(ctx: Ctx, recording_id: int) -> RecordingRead:
    return _present(await _one(ctx, recording_id))


async def audio_for_download(ctx: Ctx, files: RecordingSpool, recording_id: int) -> tuple[Path, str]:
    """The recording's file and its call id; the download is audited."""
    async with ctx.conn.transaction():
        row = await _one(ctx, recording_id)
        path = files.file_of(row)
        # Who listened to which call is itself a record.
        await audit(ctx, "recordings", recording_id, "download", None, None)
    return path, row["call_id"]


async def set_legal_hold(ctx: Ctx, recording_id: int, reason: str | None) -> RecordingRead:
    """Place a legal hold (`reason` given) or lift it (None); operators and the tenant's
    admin only. A purged recording cannot be held any more."""
    who = ctx.actor
    if not who.may(TENANT_WRITERS):
        raise Forbidden(f"role {who.role.value} may not place or lift a legal hold")
    async with ctx.conn.transaction():
        before = _present(await _one(ctx, recording_id, lock=True))
        if reason is not None and before.purged_at is not None:
            raise Gone(f"recording {recording_id} was already purged", "recording_id")
        await ctx.conn.execute(
            "UPDATE recordings SET legal_hold = $2, legal_hold_reason = $3, legal_hold_by = $4, "
            "legal_hold_at = $5 WHERE id = $1",
            recording_id,
            reason is not None,
            reason or "",
            who.name if reason is not None else None,
            ctx.clock.now() if reason is not None else None,
        )
        after = _present(await _one(ctx, recording_id))
        action = "legal_hold" if reason is not None else "lift_legal_hold"
        await audit(ctx, "recordings", recording_id, action, before, after)
    return after


# ---------------------------------------------------------------------------- export
ExportFile = tuple[Any, Path | None, str]  # the row, its file (None: not served), why not


async def select_for_export(
    ctx: Ctx,
    files: RecordingSpool,
    ids: list[int] | None,
    from_: datetime | None = None,
    to: datetime | None = None,
) -> list[ExportFile]:
    """The recordings to export, by id (each must be there and have its file) or by period
    (what cannot be served is listed in the manifest, with why); the export is audited."""
    async with ctx.conn.transaction():
        rows = await (_rows_by_id(ctx, ids) if ids else _rows_of_period(ctx, from_, to))
        if ids:
            out: list[ExportFile] = [(r, files.file_of(r), "") for r in rows]
        else:
            out = []
            for r in rows:
                try:
                    out.append((r, files.file_of(r), ""))
                except ProvisioningError as exc:
                    out.append((r, None, exc.message))
        await audit(ctx, "recordings", "export", "export", None, {"ids": [r["id"] for r in rows]})
    return out


async def _rows_by_id(ctx: Ctx, ids: list[int]) -> list[Any]:
    rows = await ctx.conn.fetch(
        _SELECT + " WHERE r.tenant_id = $1 AND r.id = ANY($2::bigint[]) ORDER BY r.id",
        _tenant(ctx),
        ids,
    )
    missing = sorted(set(ids) - {r["id"] for r in rows})
    if missing:
        raise NotFound(f"recording(s) {missing[:10]} not found", "ids")
    return list(rows)


async def _rows_of_period(ctx: Ctx, from_: datetime | None, to: datetime | None) -> list[Any]:
    assert from_ is not None and to is not None
    if to - from_ > timedelta(days=366):
        raise Invalid("export at most a year at a time", "to")
    rows = await ctx.conn.fetch(
        _SELECT + " WHERE r.tenant_id = $1 AND r.started_at >= $2 AND r.started_at < $3 "
        "AND r.purged_at IS NULL AND r.status = 'stored' ORDER BY r.id LIMIT $4",
        _tenant(ctx),
        from_,
        to,
        EXPORT_MAX + 1,
    )
    if len(rows) > EXPORT_MAX:
        raise Invalid(f"more than {EXPORT_MAX} recordings: export a shorter period", "to")
    return list(rows)


async def write_zip(files: list[ExportFile]) -> Any:
    """The export as a zip in a spooled temp file, positioned at its start; the caller
    closes it. Written in a thread: it reads every file."""
    return await asyncio.to_thread(_zip, files)


_MANIFEST = (
    "recording_id",
    "call_id",
    "segment",
    "file",
    "started_at",
    "duration_s",
    "size_bytes",
    "sha256",
    "caller",
    "called",
    "direction",
    "expires_at",
    "legal_hold",
    "note",
)


def _zip(files: list[ExportFile]) -> Any:
    """The WAVs (stored: audio does not compress) and manifest.csv, in a spooled temp file."""
    out = tempfile.SpooledTemporaryFile(max_size=32 << 20)  # noqa: SIM115 - closed by the stream
    manifest = io.StringIO()
    w = csv.writer(manifest)
    w.writerow(_MANIFEST)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for row, path, note in files:
            arcname = f"{row['id']}-{row['call_id']}.wav" if path is not None else ""
            if path is not None:
                z.write(path, arcname)
            w.writerow(
                [
                    row["id"],
                    row["call_id"],
                    row["segment"],
                    arcname,
                    row["started_at"].isoformat(),
                    row["duration_s"],
                    row["size_bytes"],
                    row["sha256"],
                    row["caller"],
                    row["called"],
                    row["direction"],
                    row["expires_at"].isoformat(),
                    row["legal_hold"],
                    note,
                ]
            )
        z.writestr("manifest.csv", manifest.getvalue())
    out.seek(0)
    return out


# ---------------------------------------------------------------------------- retention
@dataclass
class PurgeReport:
    at: datetime
    purged: int = 0  # files deleted
    already_gone: int = 0  # rows whose file was no longer there (marked purged too)
    on_hold: int = 0  # expired, kept: legal hold
    errors: list[str] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "purged": self.purged,
            "already_gone": self.already_gone,
            "on_hold": self.on_hold,
            "errors": self.errors,
            "ids": self.ids[:1000],
        }


_EXPIRED = """
SELECT r.id, r.path FROM recordings r JOIN tenants t ON t.id = r.tenant_id
WHERE r.purged_at IS NULL AND NOT r.legal_hold
  AND r.started_at < $1::timestamptz - make_interval(days => t.recording_retention_days)
  AND ($2::bigint[] IS NULL OR r.tenant_id = ANY($2))
  AND NOT (r.id = ANY($3::bigint[]))
ORDER BY r.id LIMIT $4
FOR UPDATE OF r SKIP LOCKED
"""
_HELD = """
SELECT count(*) FROM recordings r JOIN tenants t ON t.id = r.tenant_id
WHERE r.purged_at IS NULL AND r.legal_hold
  AND r.started_at < $1::timestamptz - make_interval(days => t.recording_retention_days)
  AND ($2::bigint[] IS NULL OR r.tenant_id = ANY($2))
"""


async def purge_recordings(
    conn: asyncpg.Connection,
    now: datetime,
    root: Path,
    spool: str,
    *,
    batch: int = 500,
    tenant_ids: Iterable[int] | None = None,
    actor: str = "system:recording-purge",
    metrics: Metrics | None = None,
) -> PurgeReport:
    """Delete the files of recordings older than their tenant's retention (as of `now`),
    then mark their rows purged; a file already gone is fine; recordings on legal hold
    stay. Idempotent, in batches of `batch` rows per transaction; one audit entry per run."""
    tenants = list(tenant_ids) if tenant_ids is not None else None
    report = PurgeReport(now)
    failed: list[int] = []  # files that could not be deleted: left for the next run
    try:
        while True:
            async with conn.transaction():
                rows = await conn.fetch(_EXPIRED, now, tenants, failed, batch)
                done = _delete_files(rows, root, spool, report, failed)
                if done:
                    await conn.execute(
                        "UPDATE recordings SET purged_at = $1 WHERE id = ANY($2::bigint[])", now, done
                    )
                report.ids += done
            if len(rows) < batch:
                break
        report.on_hold = await conn.fetchval(_HELD, now, tenants)
        await audit_log.record(
            conn,
            at=now,
            actor=actor,
            entity="recordings",
            entity_id="retention",
            action="purge",
            after=report.as_dict(),
        )
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        if metrics is not None:
            metrics.recording_purge_runs.labels("error").inc()
        log.error("recording purge failed: %s", exc)
        raise
    _report_purge(report, metrics)
    return report


def _delete_files(
    rows: list[Any], root: Path, spool: str, report: PurgeReport, failed: list[int]
) -> list[int]:
    """Delete the batch's files; the ids whose rows are now purged (deleted or already
    gone). A file that could not be deleted goes to `failed` and the report's errors."""
    done = []
    for r in rows:
        path = host_path(root, spool, r["path"])
        if path is None:
            report.errors.append(f"recording {r['id']}: path {r['path']!r} outside the spool")
            failed.append(r["id"])
            continue
        try:
            path.unlink()
            report.purged += 1
        except FileNotFoundError:
            report.already_gone += 1
        except OSError as exc:
            report.errors.append(f"recording {r['id']}: {exc}")
            failed.append(r["id"])
            continue
        done.append(r["id"])
    return done


def _report_purge(report: PurgeReport, metrics: Metrics | None) -> None:
    if metrics is not None:
        metrics.recording_purge_runs.labels("error" if report.errors else "ok").inc()
        metrics.recordings_purged.inc(report.purged)
    if report.errors:
        log.error("recording purge: %d file(s) not deleted: %s", len(report.errors), report.errors[:5])
    log.info(
        "recording purge as of %s: %d deleted, %d already gone, %d on legal hold",
        report.at.isoformat(),
        report.purged,
        report.already_gone,
        report.on_hold,
    )
