"""The service's HTTP face: health, readiness, Prometheus metrics and the real-time call list."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import asyncpg
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from provisioning.analysis_api import build_analysis_router
from provisioning.api import ApiDeps, build_router, install_error_handlers
from provisioning.auth_limits import AuthAttemptsMiddleware
from provisioning.engine import Forbidden
from provisioning.freeswitch_directory import directory as freeswitch_directory_document
from provisioning.portal import web as portal
from provisioning.portal.pages import MODULES as PORTAL_PAGES
from provisioning.prompts_api import build_prompts_router
from provisioning.recordings_api import build_recordings_router
from provisioning.ringback_api import build_ringback_router
from provisioning.users import principal_for
from provisioning.voicemail_api import build_voicemail_router
from softswitch.callpath.registry import CallRegistry
from softswitch.core.clock import Clock
from softswitch.core.metrics import Metrics
from softswitch.edge.api import build_bans_router
from softswitch.edge.bans import EdgeBans
from softswitch.engines.asterisk.ami.client import AmiClient
from softswitch.engines.freeswitch.esl.client import EslClient


@dataclass(frozen=True)
class HttpDeps:
    metrics: Metrics
    ami: AmiClient
    pool: asyncpg.Pool
    registry: CallRegistry
    clock: Clock
    settings: Any = None
    esl: EslClient | None = None  # None: FreeSWITCH is not driven
    edge_bans: EdgeBans | None = None  # None: no SIP edge (the single-node layout)


async def _database_ok(pool: asyncpg.Pool) -> tuple[bool, str]:
    try:
        async with pool.acquire(timeout=1.0) as conn:
            await conn.fetchval("SELECT 1", timeout=1.0)
        return True, "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        return False, f"{type(exc).__name__}: {exc}"


def create_app(deps: HttpDeps) -> FastAPI:
    app = FastAPI(
        title="softswitch control plane",
        version="0.1.0",
        description="Provisioning, call lists and health of the softswitch control plane.",
    )
    install_error_handlers(app)
    # Failed tokens and logins: limited per source and subject, and counted (auth_limits).
    app.add_middleware(
        AuthAttemptsMiddleware,
        on_refusal=lambda kind, result: deps.metrics.auth_refusals.labels(kind, result).inc(),
    )
    app.include_router(
        build_router(ApiDeps(deps.pool, deps.clock, deps.settings, deps.ami, deps.esl, deps.registry))
    )
    app.include_router(build_analysis_router(deps.pool, deps.clock))
    app.include_router(build_bans_router(deps.pool, deps.clock, deps.edge_bans))
    if deps.settings is not None:
        sounds = deps.settings.asterisk.sounds_dir
        app.include_router(build_prompts_router(deps.pool, deps.clock, sounds))
        app.include_router(build_ringback_router(deps.pool, deps.clock, sounds))
        app.include_router(
            build_recordings_router(
                deps.pool, deps.clock, deps.settings.asterisk.chroot, deps.settings.recording.spool
            )
        )
        app.include_router(
            build_voicemail_router(
                deps.pool, deps.clock, deps.settings.asterisk.chroot, deps.settings.voicemail.spool
            )
        )

    if deps.settings is not None:
        _mount_freeswitch_directory(app, deps)
    portal.install(
        app,
        portal.PortalDeps(deps.pool, deps.clock, deps.settings, deps.registry, deps.ami, deps.esl),
        PORTAL_PAGES,
    )

    async def operator(authorization: str | None = Header(None)) -> None:
        """The live call registry spans every tenant: operators only."""
        async with deps.pool.acquire() as conn:
            who = await principal_for(conn, authorization, deps.clock.now())
        if not who.is_operator:
            raise Forbidden("the live call registry is for operators")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Response:
        db_ok, db_detail = await _database_ok(deps.pool)
        ami_ok = deps.ami.connected
        # Ready when every engine the service drives is connected.
        esl_ok = deps.esl is None or deps.esl.connected
        body: dict[str, Any] = {
            "ready": db_ok and ami_ok and esl_ok,
            "database": db_detail,
            "ami": "connected" if ami_ok else f"disconnected: {deps.ami.last_error or 'connecting'}",
        }
        if deps.esl is not None:
            body["freeswitch"] = (
                "connected" if esl_ok else f"disconnected: {deps.esl.last_error or 'connecting'}"
            )
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(deps.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/calls/live", tags=["calls"])
    async def live_calls(_: None = Depends(operator)) -> list[dict[str, object]]:
        return [c.as_dict() for c in deps.registry.live()]

    @app.get("/v1/calls/recent", tags=["calls"])
    async def recent_calls(
        _: None = Depends(operator), limit: int = Query(100, ge=1, le=2000)
    ) -> list[dict[str, object]]:
        return [c.as_dict() for c in deps.registry.recent(limit)]

    @app.get("/v1/calls/{linkedid}", tags=["calls"])
    async def one_call(linkedid: str, _: None = Depends(operator)) -> dict[str, object]:
        call = deps.registry.get(linkedid)
        if call is None:
            raise HTTPException(404, f"no live or recent call with linkedid {linkedid!r}")
        return call.as_dict()

    return app


def _mount_freeswitch_directory(app: FastAPI, deps: HttpDeps) -> None:
    """POST /v1/freeswitch/directory: FreeSWITCH's mod_xml_curl asks who may register
    (HTTP basic auth "freeswitch:<freeswitch.esl_password>"; not in the public API)."""
    assert deps.settings is not None
    secret = deps.settings.freeswitch.esl_password.get_secret_value()
    expected = "Basic " + base64.b64encode(f"freeswitch:{secret}".encode()).decode()

    @app.post("/v1/freeswitch/directory", include_in_schema=False)
    async def freeswitch_directory(request: Request) -> Response:
        if not secrets.compare_digest(request.headers.get("authorization", ""), expected):
            return Response(status_code=401, headers={"WWW-Authenticate": 'Basic realm="freeswitch"'})
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        fields = {k: v[0] for k, v in form.items() if v}
        async with deps.pool.acquire() as conn:
            body = await freeswitch_directory_document(conn, fields)
        return Response(body, media_type="text/xml")
