"""tests/api runs through the real HTTP server by default (tests/api/conftest.py): the
`client` reaches the production app served by uvicorn over a loopback socket, and the app
reads the session's FixedClock — a test that moves it is seen by the server."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from softswitch.core.clock import FixedClock
from tests.api.conftest import THROUGH_SERVER, World, bearer, expect

pytestmark = [
    pytest.mark.asyncio(loop_scope="session"),
    pytest.mark.skipif(not THROUGH_SERVER, reason="SOFTSWITCH_TEST_API_SERVER=0: in-process run"),
]


async def test_the_client_reaches_the_production_app_over_a_socket(client: httpx.AsyncClient) -> None:
    assert client.base_url.host == "127.0.0.1" and client.base_url.port
    health = await client.get("/healthz")
    assert expect(health, 200) == {"status": "ok"}
    assert health.headers["server"] == "uvicorn"
    # The production app's own routes: readiness (no engine connected here) and the metrics.
    ready = await client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["database"] == "ok"
    assert ready.json()["ami"].startswith("disconnected")
    assert "softswitch_auth_refusals_total" in (await client.get("/metrics")).text


async def test_the_server_reads_the_sessions_clock(
    client: httpx.AsyncClient, world: World, clock: FixedClock
) -> None:
    user_id = world.a.users["tenant_readonly"]
    expires_at = clock.now() + timedelta(minutes=5)
    issued = expect(
        await client.post(
            f"/v1/users/{user_id}/tokens",
            headers=world.admin,
            json={"name": "clock", "expires_at": expires_at.isoformat()},
        ),
        201,
    )
    headers = bearer(issued["token"])
    saved = clock.at
    try:
        expect(await client.get("/v1/whoami", headers=headers), 200)
        clock.at = expires_at + timedelta(seconds=1)
        expect(await client.get("/v1/whoami", headers=headers), 401)
    finally:
        clock.at = saved
    expect(await client.get("/v1/whoami", headers=headers), 200)
