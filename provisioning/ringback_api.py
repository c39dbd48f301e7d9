"""Personalised ringback tones over HTTP (provisioning/ringback.py; migration 0028):

    GET    /v1/tenants/{tenant_id}/ringback-tones                the tenant's tones
    PUT    /v1/tenants/{tenant_id}/ringback-tones/{name}/text    a tone rendered from text
    PUT    /v1/tenants/{tenant_id}/ringback-tones/{name}/audio   a tone from an upload (the body;
                                                                 ?production=professional: the
                                                                 provider's, charged; operators)
    GET    /v1/tenants/{tenant_id}/ringback-tones/{name}         one tone
    GET    /v1/tenants/{tenant_id}/ringback                      numbers with a tone, and what plays now
    PUT    /v1/tenants/{tenant_id}/numbers/{number_id}/ringback  apply a tone {"tone": name}: from
                                                                 the first day of next month
    GET    /v1/tenants/{tenant_id}/numbers/{number_id}/ringback  the number's tones and what plays now
    DELETE /v1/tenants/{tenant_id}/numbers/{number_id}/ringback  back to the default ring now

A tone made (201) or applied (201) again with the same content or tone answers 200."""

# No `from __future__ import annotations`: FastAPI reads these handlers' annotations.

from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import APIRouter, Query, Request, Response
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field, field_validator

from provisioning import ringback
from provisioning.compliance.api import context_dependency
from provisioning.prompts import PromptStore
from provisioning.schemas import MAX_ID
from softswitch.core.clock import Clock

TenantId = Annotated[int, PathParam(ge=1, le=MAX_ID)]
NumberId = Annotated[int, PathParam(ge=1, le=MAX_ID)]
ToneName = Annotated[str, PathParam(pattern=r"^[a-z0-9][a-z0-9_-]{0,60}$", description="the tone's name")]
Production = Literal["self", "professional"]


class ToneText(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=2000, pattern=r"^[^\x00]*$")
    voice: str = Field("cmn", pattern=r"^[a-z]{2,3}([-+][a-z0-9]+)*$", description="espeak-ng voice")
    production: Production = Field(
        "self", description="professional: produced by the provider, charged tone_production (operators)"
    )

    @field_validator("text")
    @classmethod
    def _speakable(cls, text: str) -> str:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("text must be valid Unicode (no lone surrogates)") from None
        return text


class ToneRead(BaseModel):
    id: int
    tenant_id: int
    name: str
    source: str = Field(description="upload | text")
    text: str | None
    voice: str | None
    prompt: str = Field(description="what the engines play, as a prompt name")
    sha256: str
    seconds: Decimal
    production: str
    production_order_id: int | None = Field(description="the tone production fee's order (one_off_orders)")
    created_at: datetime


class ToneList(BaseModel):
    items: list[ToneRead]


class ApplyTone(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tone: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,60}$", description="a tone of the tenant")


class ApplicationRead(BaseModel):
    id: int
    tone: str
    applied_at: datetime
    effective_on: date = Field(description="the first day it plays, in the tenant's time zone")
    subscription_id: int = Field(description="the number's RBT subscription (6 CNY/month)")


class NumberRingbackRead(BaseModel):
    number_id: int
    number: str
    playing: str | None = Field(description="the tone callers hear now; null: the default ring")
    applications: list[ApplicationRead]


class NumberRingbackList(BaseModel):
    items: list[NumberRingbackRead]


def build_ringback_router(pool: asyncpg.Pool, clock: Clock, sounds: Path) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["ringback tones"])
    _mount(router, context_dependency(pool, clock), PromptStore(sounds))
    return router


def _mount(router: APIRouter, CtxDep: Any, store: PromptStore) -> None:  # noqa: N803 - a type alias
    @router.get("/tenants/{tenant_id}/ringback-tones", response_model=ToneList, summary="The tenant's tones")
    async def tones(ctx: CtxDep, tenant_id: TenantId) -> Any:
        ctx.tenant_id = tenant_id
        return {"items": await ringback.list_tones(ctx)}

    @router.get("/tenants/{tenant_id}/ringback-tones/{name}", response_model=ToneRead, summary="One tone")
    async def tone(ctx: CtxDep, tenant_id: TenantId, name: ToneName) -> Any:
        ctx.tenant_id = tenant_id
        return await ringback.get_tone(ctx, name)

    @router.put(
        "/tenants/{tenant_id}/ringback-tones/{name}/text",
        response_model=ToneRead,
        status_code=201,
        summary="Make a tone from text (espeak-ng)",
    )
    async def from_text(
        ctx: CtxDep, tenant_id: TenantId, name: ToneName, data: ToneText, response: Response
    ) -> Any:
        ctx.tenant_id = tenant_id
        source = ringback.ToneSource(text=data.text, voice=data.voice)
        out, made = await ringback.save_tone(ctx, store, name, source, data.production)
        if not made:
            response.status_code = 200
        return out

    @router.put(
        "/tenants/{tenant_id}/ringback-tones/{name}/audio",
        response_model=ToneRead,
        status_code=201,
        summary="Make a tone from an upload (any format sox reads; converted to 8 kHz mono)",
        openapi_extra={"requestBody": {"content": {"application/octet-stream": {}}}},
    )
    async def from_audio(
        ctx: CtxDep,
        tenant_id: TenantId,
        name: ToneName,
        request: Request,
        response: Response,
        production: Annotated[Production, Query()] = "self",
    ) -> Any:
        ctx.tenant_id = tenant_id
        source = ringback.ToneSource(audio=await request.body())
        out, made = await ringback.save_tone(ctx, store, name, source, production)
        if not made:
            response.status_code = 200
        return out

    @router.get(
        "/tenants/{tenant_id}/ringback",
        response_model=NumberRingbackList,
        summary="The numbers with a tone, and what their callers hear now",
    )
    async def numbers(ctx: CtxDep, tenant_id: TenantId) -> Any:
        ctx.tenant_id = tenant_id
        return {"items": await ringback.list_ringbacks(ctx)}

    @router.get(
        "/tenants/{tenant_id}/numbers/{number_id}/ringback",
        response_model=NumberRingbackRead,
        summary="A number's tones and what its callers hear now",
    )
    async def of_number(ctx: CtxDep, tenant_id: TenantId, number_id: NumberId) -> Any:
        ctx.tenant_id = tenant_id
        return await ringback.number_ringback(ctx, number_id)

    @router.put(
        "/tenants/{tenant_id}/numbers/{number_id}/ringback",
        response_model=NumberRingbackRead,
        status_code=201,
        summary="Apply a tone to a number: it plays from the first day of next month (RBT, 6 CNY/month)",
    )
    async def apply(
        ctx: CtxDep, tenant_id: TenantId, number_id: NumberId, data: ApplyTone, response: Response
    ) -> Any:
        ctx.tenant_id = tenant_id
        out, applied = await ringback.apply_tone(ctx, number_id, data.tone)
        if not applied:
            response.status_code = 200
        return out

    @router.delete(
        "/tenants/{tenant_id}/numbers/{number_id}/ringback",
        status_code=204,
        summary="Back to the default ring now; the number's RBT subscription ends",
    )
    async def remove(ctx: CtxDep, tenant_id: TenantId, number_id: NumberId) -> Response:
        ctx.tenant_id = tenant_id
        await ringback.remove_tone(ctx, number_id)
        return Response(status_code=204)
