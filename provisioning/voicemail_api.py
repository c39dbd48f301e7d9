"""A tenant's voicemail over HTTP: the messages (per tenant, or per number called), newest
first in pages; one message; its WAV to play (audio/wav); marking it listened or not;
deleting it. Each endpoint calls provisioning/voicemail.py, which finds files by the
message's id, never by a path.

Authorization as for recordings: a tenant's token sees only its own tenant (another
tenant's messages answer 404); operators see every tenant; changes (listened, delete) are
for operators and the tenant's admin."""

# No `from __future__ import annotations`: FastAPI reads these handlers' annotations.

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Header, Query, Response
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from pydantic import BaseModel

from provisioning import voicemail
from provisioning.engine import Ctx
from provisioning.roles import Principal
from provisioning.schemas import MAX_ID
from provisioning.users import principal_for
from provisioning.voicemail import VoicemailRead, VoicemailSpool
from softswitch.core.clock import Clock

MessageId = Annotated[int, PathParam(ge=1, le=MAX_ID)]


class VoicemailPage(BaseModel):
    items: list[VoicemailRead]
    next_before: int | None = None


@dataclass(frozen=True)
class _Deps:
    pool: asyncpg.Pool
    clock: Clock
    files: VoicemailSpool

    @asynccontextmanager
    async def ctx(self, who: Principal, tenant_id: int) -> AsyncIterator[Ctx]:
        async with self.pool.acquire() as conn:
            yield Ctx(conn, who, self.clock, tenant_id)


def build_voicemail_router(pool: asyncpg.Pool, clock: Clock, chroot: Path, spool: str) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["voicemail"])
    deps = _Deps(pool, clock, VoicemailSpool(chroot, spool))

    async def reader(
        tenant_id: Annotated[int, PathParam(ge=1, le=MAX_ID)],
        authorization: Annotated[str | None, Header()] = None,
    ) -> Principal:
        async with pool.acquire() as conn:
            return await principal_for(conn, authorization, clock.now(), tenant_id)

    Reader = Annotated[Principal, Depends(reader)]
    _mount_reads(router, deps, Reader)
    _mount_changes(router, deps, Reader)
    return router


def _mount_reads(router: APIRouter, deps: _Deps, Reader: Any) -> None:  # noqa: N803 - a type alias
    @router.get("/tenants/{tenant_id}/voicemail", response_model=VoicemailPage)
    async def list_messages(
        tenant_id: int,
        who: Reader,
        number: Annotated[str | None, Query(pattern=r"^[0-9]{1,20}$", description="number called")] = None,
        listened: Annotated[bool | None, Query(description="listened (true) or new (false) only")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        before: Annotated[
            int | None, Query(ge=1, le=MAX_ID, description="the previous page's next_before")
        ] = None,
    ) -> VoicemailPage:
        async with deps.ctx(who, tenant_id) as ctx:
            items, next_before = await voicemail.list_messages(ctx, number, listened, limit, before)
        return VoicemailPage(items=items, next_before=next_before)

    @router.get("/tenants/{tenant_id}/voicemail/{message_id}", response_model=VoicemailRead)
    async def get_message(tenant_id: int, message_id: MessageId, who: Reader) -> VoicemailRead:
        async with deps.ctx(who, tenant_id) as ctx:
            return await voicemail.get_message(ctx, message_id)

    @router.get(
        "/tenants/{tenant_id}/voicemail/{message_id}/audio",
        response_class=FileResponse,
        responses={200: {"content": {"audio/wav": {}}}},
    )
    async def play(tenant_id: int, message_id: MessageId, who: Reader) -> FileResponse:
        async with deps.ctx(who, tenant_id) as ctx:
            path, call_id = await voicemail.audio_for_play(ctx, deps.files, message_id)
        return FileResponse(path, media_type="audio/wav", filename=f"voicemail-{message_id}-{call_id}.wav")


def _mount_changes(router: APIRouter, deps: _Deps, Reader: Any) -> None:  # noqa: N803 - a type alias
    @router.put("/tenants/{tenant_id}/voicemail/{message_id}/listened", response_model=VoicemailRead)
    async def mark_listened(tenant_id: int, message_id: MessageId, who: Reader) -> VoicemailRead:
        async with deps.ctx(who, tenant_id) as ctx:
            return await voicemail.set_listened(ctx, message_id, True)

    @router.delete("/tenants/{tenant_id}/voicemail/{message_id}/listened", response_model=VoicemailRead)
    async def mark_new(tenant_id: int, message_id: MessageId, who: Reader) -> VoicemailRead:
        async with deps.ctx(who, tenant_id) as ctx:
            return await voicemail.set_listened(ctx, message_id, False)

    @router.delete("/tenants/{tenant_id}/voicemail/{message_id}", status_code=204)
    async def delete(tenant_id: int, message_id: MessageId, who: Reader) -> Response:
        async with deps.ctx(who, tenant_id) as ctx:
            await voicemail.delete_message(ctx, deps.files, message_id)
        return Response(status_code=204)
