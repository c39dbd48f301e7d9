"""Tenant prompts over HTTP: text rendered with espeak-ng (Mandarin by default) or an
uploaded recording, converted to 8 kHz mono and cached by content hash (provisioning/prompts.py).
IVR menus name these prompts; a menu naming a missing prompt is refused on save."""

# No `from __future__ import annotations`: FastAPI reads these handlers' annotations.

import asyncio
from pathlib import Path
from typing import Annotated

import asyncpg
from fastapi import APIRouter, Depends, Header, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from provisioning.engine import Forbidden, Invalid
from provisioning.prompts import NAME, PromptError, PromptStore
from provisioning.roles import TENANT_WRITERS, Principal
from provisioning.schemas import MAX_ID
from provisioning.users import principal_for
from softswitch.core.clock import Clock


class PromptText(BaseModel):
    text: str = Field(min_length=1, max_length=2000)
    voice: str = Field("cmn", pattern=r"^[a-z]{2,3}([-+][a-z0-9]+)*$", description="espeak-ng voice")


class PromptRead(BaseModel):
    name: str
    playable: str = Field(description="what the dialplan plays")
    sha256: str


def build_prompts_router(pool: asyncpg.Pool, clock: Clock, sounds: Path) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["prompts"])
    store = PromptStore(sounds)

    async def writer(
        tenant_id: Annotated[int, PathParam(ge=1, le=MAX_ID)],
        authorization: Annotated[str | None, Header()] = None,
    ) -> Principal:
        async with pool.acquire() as conn:
            who = await principal_for(conn, authorization, clock.now(), tenant_id)
        if not who.may(TENANT_WRITERS):
            raise Forbidden(f"role {who.role.value} may not change prompts")
        return who

    Name = Annotated[str, PathParam(pattern=NAME.pattern.replace("(/[a-z0-9][a-z0-9_-]{0,60})?", ""))]

    @router.put("/tenants/{tenant_id}/prompts/{name}/text", response_model=PromptRead)
    async def render(
        tenant_id: int, name: Name, data: PromptText, _: Annotated[Principal, Depends(writer)]
    ) -> PromptRead:
        try:
            digest = await asyncio.to_thread(store.render_text, f"t{tenant_id}", name, data.text, data.voice)
        except PromptError as exc:
            raise Invalid(str(exc), "text") from None
        return PromptRead(name=name, playable=store.playable(f"t{tenant_id}", name), sha256=digest)

    @router.put(
        "/tenants/{tenant_id}/prompts/{name}/audio",
        response_model=PromptRead,
        openapi_extra={"requestBody": {"content": {"application/octet-stream": {}}}},
    )
    async def upload(
        tenant_id: int, name: Name, request: Request, _: Annotated[Principal, Depends(writer)]
    ) -> PromptRead:
        data = await request.body()
        try:
            digest = await asyncio.to_thread(store.store_upload, f"t{tenant_id}", name, data)
        except PromptError as exc:
            raise Invalid(str(exc), "body") from None
        return PromptRead(name=name, playable=store.playable(f"t{tenant_id}", name), sha256=digest)

    return router
