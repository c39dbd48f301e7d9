"""A tenant's call recordings over HTTP: list and search, metadata, download, legal hold,
and a batch export (zip of the WAVs plus a CSV manifest) before they expire.

Authorization as in the rest of /v1: a tenant's token sees only its own tenant (another
tenant's recordings answer 404); operators see every tenant. Holds are placed and lifted
by operators and the tenant's admin. Files are found by the recording's id in the
database, never from anything the client sends as a path, and a stored path is served
only if it lies inside the recording spool under the recording's own tenant."""

# No `from __future__ import annotations`: FastAPI reads these handlers' annotations.

import asyncio
import csv
import io
import tempfile
import zipfile
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Header, Query
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import BaseModel, Field, model_validator

from provisioning.engine import Ctx, Forbidden, Invalid, NotFound, ProvisioningError, audit
from provisioning.roles import TENANT_WRITERS, Principal
from provisioning.users import principal_for
from softswitch.callpath.recorder import CALL_ID_PATTERN, host_path
from softswitch.core.clock import Clock

MAX_ID = 2**53
EXPORT_MAX = 500


class Gone(ProvisioningError):
    status, kind = 410, "gone"


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


class RecordingPage(BaseModel):
    items: list[RecordingRead]
    next_after: int | None = None


class HoldCreate(BaseModel):
    reason: str = Field(min_length=1, max_length=500)


class ExportRequest(BaseModel):
    ids: list[Annotated[int, Field(ge=1, le=MAX_ID)]] | None = Field(None, max_length=EXPORT_MAX)
    from_: datetime | None = Field(None, alias="from")
    to: datetime | None = None

    @model_validator(mode="after")
    def _one_selection(self) -> "ExportRequest":
        if not self.ids and (self.from_ is None or self.to is None):
            raise ValueError("give ids, or a period with both from and to")
        for v in (self.from_, self.to):
            if v is not None and v.tzinfo is None:
                raise ValueError("from/to need a UTC offset")
        return self


_SELECT = """
SELECT r.id, r.tenant_id, r.call_linkedid AS call_id, r.segment, r.mode, r.status, r.size_bytes,
       r.duration_s, r.sha256, r.caller, r.called, r.direction, r.started_at,
       r.started_at + make_interval(days => t.recording_retention_days) AS expires_at,
       r.legal_hold, r.legal_hold_reason, r.legal_hold_by, r.legal_hold_at, r.purged_at, r.path
FROM recordings r JOIN tenants t ON t.id = r.tenant_id
"""


def build_recordings_router(pool: asyncpg.Pool, clock: Clock, chroot: Path, spool: str) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["recordings"])

    async def reader(
        tenant_id: Annotated[int, PathParam(ge=1, le=MAX_ID)],
        authorization: Annotated[str | None, Header()] = None,
    ) -> Principal:
        async with pool.acquire() as conn:
            who = await principal_for(conn, authorization, clock.now(), tenant_id)
        return who

    Reader = Annotated[Principal, Depends(reader)]
    RecId = Annotated[int, PathParam(ge=1, le=MAX_ID)]

    def present(row: Any) -> RecordingRead:
        return RecordingRead.model_validate({k: row[k] for k in RecordingRead.model_fields})

    async def one(conn: asyncpg.Connection, tenant_id: int, recording_id: int, lock: bool = False) -> Any:
        row = await conn.fetchrow(
            _SELECT + " WHERE r.id = $1 AND r.tenant_id = $2" + (" FOR UPDATE OF r" if lock else ""),
            recording_id,
            tenant_id,
        )
        if row is None:
            raise NotFound(f"recording {recording_id} not found", "recording_id")
        return row

    def file_of(row: Any) -> Path:
        """The file of a stored, unpurged recording, inside its own tenant's directory."""
        if row["purged_at"] is not None:
            raise Gone(f"recording {row['id']} was purged at {row['purged_at'].isoformat()}", "recording_id")
        if row["status"] != "stored":
            raise NotFound(f"recording {row['id']} has no audio ({row['status']})", "recording_id")
        own = f"{spool.rstrip('/')}/{row['tenant_id']}/"
        path = host_path(chroot, spool, row["path"]) if row["path"].startswith(own) else None
        if path is None or not path.is_file():
            raise NotFound(f"the file of recording {row['id']} is not on disk", "recording_id")
        return path

    def ctx_of(conn: asyncpg.Connection, who: Principal, tenant_id: int) -> Ctx:
        return Ctx(conn, who, clock, tenant_id)

    @router.get("/tenants/{tenant_id}/recordings", response_model=RecordingPage)
    async def list_recordings(
        tenant_id: int,
        _: Reader,
        from_: Annotated[datetime | None, Query(alias="from", description="started at or after")] = None,
        to: Annotated[datetime | None, Query(description="started before")] = None,
        caller: Annotated[str | None, Query(pattern=r"^[0-9]{1,20}$")] = None,
        called: Annotated[str | None, Query(pattern=r"^[0-9]{1,20}$")] = None,
        call_id: Annotated[str | None, Query(pattern=CALL_ID_PATTERN)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        after: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None,
    ) -> RecordingPage:
        where, params = ["r.tenant_id = $1"], [tenant_id]
        for clause, value in (
            ("r.started_at >= {}", from_),
            ("r.started_at < {}", to),
            ("r.caller = {}", caller),
            ("r.called = {}", called),
            ("r.call_linkedid = {}", call_id),
            ("r.id > {}", after),
        ):
            if value is not None:
                if isinstance(value, datetime) and value.tzinfo is None:
                    raise Invalid("from/to need a UTC offset", "from" if value is from_ else "to")
                params.append(value)
                where.append(clause.format(f"${len(params)}"))
        params.append(limit + 1)
        async with pool.acquire() as conn:
            rows = await conn.fetch(
                f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY r.id LIMIT ${len(params)}", *params
            )
        more = len(rows) > limit
        rows = rows[:limit]
        return RecordingPage(items=[present(r) for r in rows], next_after=rows[-1]["id"] if more else None)

    @router.get("/tenants/{tenant_id}/recordings/{recording_id}", response_model=RecordingRead)
    async def get_recording(tenant_id: int, recording_id: RecId, _: Reader) -> RecordingRead:
        async with pool.acquire() as conn:
            return present(await one(conn, tenant_id, recording_id))

    @router.get(
        "/tenants/{tenant_id}/recordings/{recording_id}/audio",
        response_class=FileResponse,
        responses={200: {"content": {"audio/wav": {}}}},
    )
    async def download(tenant_id: int, recording_id: RecId, who: Reader) -> FileResponse:
        async with pool.acquire() as conn, conn.transaction():
            row = await one(conn, tenant_id, recording_id)
            path = file_of(row)
            # Who listened to which call is itself a record.
            await audit(ctx_of(conn, who, tenant_id), "recordings", recording_id, "download", None, None)
        return FileResponse(
            path, media_type="audio/wav", filename=f"recording-{recording_id}-{row['call_id']}.wav"
        )

    async def set_hold(
        tenant_id: int, recording_id: int, who: Principal, reason: str | None
    ) -> RecordingRead:
        if not who.may(TENANT_WRITERS):
            raise Forbidden(f"role {who.role.value} may not place or lift a legal hold")
        async with pool.acquire() as conn, conn.transaction():
            before = present(await one(conn, tenant_id, recording_id, lock=True))
            if reason is not None and before.purged_at is not None:
                raise Gone(f"recording {recording_id} was already purged", "recording_id")
            await conn.execute(
                "UPDATE recordings SET legal_hold = $2, legal_hold_reason = $3, legal_hold_by = $4, "
                "legal_hold_at = $5 WHERE id = $1",
                recording_id,
                reason is not None,
                reason or "",
                who.name if reason is not None else None,
                clock.now() if reason is not None else None,
            )
            after = present(await one(conn, tenant_id, recording_id))
            action = "legal_hold" if reason is not None else "lift_legal_hold"
            await audit(ctx_of(conn, who, tenant_id), "recordings", recording_id, action, before, after)
        return after

    @router.post("/tenants/{tenant_id}/recordings/{recording_id}/hold", response_model=RecordingRead)
    async def place_hold(tenant_id: int, recording_id: RecId, data: HoldCreate, who: Reader) -> RecordingRead:
        return await set_hold(tenant_id, recording_id, who, data.reason)

    @router.delete("/tenants/{tenant_id}/recordings/{recording_id}/hold", response_model=RecordingRead)
    async def lift_hold(tenant_id: int, recording_id: RecId, who: Reader) -> RecordingRead:
        return await set_hold(tenant_id, recording_id, who, None)

    @router.post(
        "/tenants/{tenant_id}/recordings/export",
        response_class=StreamingResponse,
        responses={200: {"content": {"application/zip": {}}}},
    )
    async def export(tenant_id: int, data: ExportRequest, who: Reader) -> StreamingResponse:
        async with pool.acquire() as conn, conn.transaction():
            if data.ids:
                rows = await conn.fetch(
                    _SELECT + " WHERE r.tenant_id = $1 AND r.id = ANY($2::bigint[]) ORDER BY r.id",
                    tenant_id,
                    data.ids,
                )
                missing = sorted(set(data.ids) - {r["id"] for r in rows})
                if missing:
                    raise NotFound(f"recording(s) {missing[:10]} not found", "ids")
            else:
                assert data.from_ is not None and data.to is not None
                if data.to - data.from_ > timedelta(days=366):
                    raise Invalid("export at most a year at a time", "to")
                rows = await conn.fetch(
                    _SELECT + " WHERE r.tenant_id = $1 AND r.started_at >= $2 AND r.started_at < $3 "
                    "AND r.purged_at IS NULL AND r.status = 'stored' ORDER BY r.id LIMIT $4",
                    tenant_id,
                    data.from_,
                    data.to,
                    EXPORT_MAX + 1,
                )
                if len(rows) > EXPORT_MAX:
                    raise Invalid(f"more than {EXPORT_MAX} recordings: export a shorter period", "to")
            if data.ids:  # asked for by id: each must be there
                files: list[tuple[Any, Path | None, str]] = [(r, file_of(r), "") for r in rows]
            else:  # a period: what cannot be served is listed in the manifest, with why
                files = []
                for r in rows:
                    try:
                        files.append((r, file_of(r), ""))
                    except ProvisioningError as exc:
                        files.append((r, None, exc.message))
            await audit(
                ctx_of(conn, who, tenant_id),
                "recordings",
                "export",
                "export",
                None,
                {"ids": [r["id"] for r in rows]},
            )
        spooled = await asyncio.to_thread(_zip, files)

        def chunks() -> Iterator[bytes]:
            try:
                while chunk := spooled.read(1 << 16):
                    yield chunk
            finally:
                spooled.close()

        name = f"recordings-tenant-{tenant_id}-{clock.now():%Y%m%dT%H%M%S}.zip"
        return StreamingResponse(
            chunks(),
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    return router


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


def _zip(files: list[tuple[Any, Path | None, str]]) -> Any:
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
