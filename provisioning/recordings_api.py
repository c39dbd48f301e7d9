"""A tenant's call recordings over HTTP: list and search, metadata, download, legal hold,
and a batch export (zip of the WAVs plus a CSV manifest) before they expire. Each endpoint
calls provisioning/recordings.py, which finds files by the recording's id, never by a path.

Authorization as in the rest of /v1: a tenant's token sees only its own tenant (another
tenant's recordings answer 404); operators see every tenant. Holds are placed and lifted
by operators and the tenant's admin."""

# No `from __future__ import annotations`: FastAPI reads these handlers' annotations.

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Header, Query
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import BaseModel, Field, model_validator

from provisioning import recordings
from provisioning.engine import Ctx
from provisioning.recordings import (
    CALL_ID_PATTERN,
    EXPORT_MAX,
    RecordingRead,
    RecordingSearch,
    RecordingSpool,
)
from provisioning.roles import Principal
from provisioning.schemas import MAX_ID
from provisioning.users import principal_for
from softswitch.core.clock import Clock

RecId = Annotated[int, PathParam(ge=1, le=MAX_ID)]


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


@dataclass(frozen=True)
class _Deps:
    pool: asyncpg.Pool
    clock: Clock
    files: RecordingSpool

    @asynccontextmanager
    async def ctx(self, who: Principal, tenant_id: int) -> AsyncIterator[Ctx]:
        async with self.pool.acquire() as conn:
            yield Ctx(conn, who, self.clock, tenant_id)


def build_recordings_router(pool: asyncpg.Pool, clock: Clock, chroot: Path, spool: str) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["recordings"])
    deps = _Deps(pool, clock, RecordingSpool(chroot, spool))

    async def reader(
        tenant_id: Annotated[int, PathParam(ge=1, le=MAX_ID)],
        authorization: Annotated[str | None, Header()] = None,
    ) -> Principal:
        async with pool.acquire() as conn:
            who = await principal_for(conn, authorization, clock.now(), tenant_id)
        return who

    Reader = Annotated[Principal, Depends(reader)]
    _mount_reads(router, deps, Reader)
    _mount_holds(router, deps, Reader)
    _mount_export(router, deps, Reader)
    return router


def _mount_reads(router: APIRouter, deps: _Deps, Reader: Any) -> None:  # noqa: N803 - a type alias
    @router.get("/tenants/{tenant_id}/recordings", response_model=RecordingPage)
    async def list_recordings(
        tenant_id: int,
        who: Reader,
        from_: Annotated[datetime | None, Query(alias="from", description="started at or after")] = None,
        to: Annotated[datetime | None, Query(description="started before")] = None,
        caller: Annotated[str | None, Query(pattern=r"^[0-9]{1,20}$")] = None,
        called: Annotated[str | None, Query(pattern=r"^[0-9]{1,20}$")] = None,
        call_id: Annotated[str | None, Query(pattern=CALL_ID_PATTERN)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        after: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None,
    ) -> RecordingPage:
        query = RecordingSearch(from_, to, caller, called, call_id)
        async with deps.ctx(who, tenant_id) as ctx:
            items, next_after = await recordings.search(ctx, query, limit, after)
        return RecordingPage(items=items, next_after=next_after)

    @router.get("/tenants/{tenant_id}/recordings/{recording_id}", response_model=RecordingRead)
    async def get_recording(tenant_id: int, recording_id: RecId, who: Reader) -> RecordingRead:
        async with deps.ctx(who, tenant_id) as ctx:
            return await recordings.get_recording(ctx, recording_id)

    @router.get(
        "/tenants/{tenant_id}/recordings/{recording_id}/audio",
        response_class=FileResponse,
        responses={200: {"content": {"audio/wav": {}}}},
    )
    async def download(tenant_id: int, recording_id: RecId, who: Reader) -> FileResponse:
        async with deps.ctx(who, tenant_id) as ctx:
            path, call_id = await recordings.audio_for_download(ctx, deps.files, recording_id)
        return FileResponse(path, media_type="audio/wav", filename=f"recording-{recording_id}-{call_id}.wav")


def _mount_holds(router: APIRouter, deps: _Deps, Reader: Any) -> None:  # noqa: N803 - a type alias
    @router.post("/tenants/{tenant_id}/recordings/{recording_id}/hold", response_model=RecordingRead)
    async def place_hold(tenant_id: int, recording_id: RecId, data: HoldCreate, who: Reader) -> RecordingRead:
        async with deps.ctx(who, tenant_id) as ctx:
            return await recordings.set_legal_hold(ctx, recording_id, data.reason)

    @router.delete("/tenants/{tenant_id}/recordings/{recording_id}/hold", response_model=RecordingRead)
    async def lift_hold(tenant_id: int, recording_id: RecId, who: Reader) -> RecordingRead:
        async with deps.ctx(who, tenant_id) as ctx:
            return await recordings.set_legal_hold(ctx, recording_id, None)


def _mount_export(router: APIRouter, deps: _Deps, Reader: Any) -> None:  # noqa: N803 - a type alias
    @router.post(
        "/tenants/{tenant_id}/recordings/export",
        response_class=StreamingResponse,
        responses={200: {"content": {"application/zip": {}}}},
    )
    async def export(tenant_id: int, data: ExportRequest, who: Reader) -> StreamingResponse:
        async with deps.ctx(who, tenant_id) as ctx:
            files = await recordings.select_for_export(ctx, deps.files, data.ids, data.from_, data.to)
        spooled = await recordings.write_zip(files)  # the connection is back in the pool by now
        name = f"recordings-tenant-{tenant_id}-{deps.clock.now():%Y%m%dT%H%M%S}.zip"
        return StreamingResponse(
            _chunks(spooled),
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )


def _chunks(spooled: Any) -> Iterator[bytes]:
    try:
        while chunk := spooled.read(1 << 16):
            yield chunk
    finally:
        spooled.close()
