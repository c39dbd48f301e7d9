"""Failed API tokens and portal logins are limited per source address and per subject (the
token's prefix, the username): past the limit 429 with Retry-After, a correct token from that
source too, until the lockout ends; others are untouched, and a success resets nothing.
In-process (the service's middleware in front of the API) on the real PostgreSQL, with the
app's own clock; every test comes from source addresses of its own."""

from __future__ import annotations

import logging
import random
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from provisioning import auth_limits
from provisioning.auth_limits import (
    SOURCE_POLICY,
    SUBJECT_POLICY,
    AttemptContext,
    AttemptState,
    AuthAttemptsMiddleware,
    after_failure,
    retry_after,
)
from provisioning.portal import auth
from provisioning.users import bootstrap_admin
from softswitch.core.clock import FixedClock
from softswitch.core.settings import Settings
from tests.api.conftest import bearer, build_app

ON_SESSION_LOOP = pytest.mark.asyncio(loop_scope="session")

T0 = datetime(2031, 5, 1, 12, 0, tzinfo=UTC)


# --- the pure rule ------------------------------------------------------------------------


def test_the_nth_failure_in_a_window_locks_for_the_lockout() -> None:
    state = None
    for i in range(SUBJECT_POLICY.max_failures - 1):
        state = after_failure(state, T0 + timedelta(seconds=i))
        assert retry_after(state, T0 + timedelta(seconds=i)) is None
    now = T0 + timedelta(seconds=30)
    state = after_failure(state, now)
    assert retry_after(state, now) == 60
    assert retry_after(state, now + timedelta(seconds=59.5)) == 1
    assert retry_after(state, now + timedelta(seconds=60)) is None
    assert retry_after(state, now - timedelta(seconds=1)) is None  # a lock is not in force before it began


def test_failures_of_an_earlier_window_or_a_clock_set_back_start_again() -> None:
    state = AttemptState(T0, SUBJECT_POLICY.max_failures - 1)
    assert after_failure(state, T0 + timedelta(minutes=1)).failures == 1
    assert after_failure(state, T0 - timedelta(seconds=1)).failures == 1
    assert after_failure(state, T0 + timedelta(seconds=59)).locked_until == T0 + timedelta(seconds=119)


def test_a_source_has_more_room_than_a_subject() -> None:
    assert SOURCE_POLICY.max_failures > SUBJECT_POLICY.max_failures
    assert auth_limits.policy_for("src:10.0.0.1") is SOURCE_POLICY
    assert auth_limits.policy_for("tok:sst_abcdef") is SUBJECT_POLICY


# --- through the API ----------------------------------------------------------------------


@pytest.fixture
def clock() -> FixedClock:
    # Its own instant (not the session's clock): windows of other tests never overlap.
    return FixedClock(T0 + timedelta(seconds=random.randrange(10**8)))


@pytest.fixture
def refusals() -> list[tuple[str, str]]:
    return []


@pytest.fixture
def limited_app(
    pool: asyncpg.Pool, clock: FixedClock, settings: Settings, refusals: list[tuple[str, str]]
) -> FastAPI:
    app = build_app(pool, clock, settings)
    app.add_middleware(
        AuthAttemptsMiddleware, on_refusal=lambda kind, result: refusals.append((kind, result))
    )
    return app


@pytest_asyncio.fixture(loop_scope="session")
async def admin_token(pool: asyncpg.Pool) -> str:
    async with pool.acquire() as conn:
        return await bootstrap_admin(conn, f"rl-admin-{secrets.token_hex(4)}", datetime.now(UTC))


def source() -> str:
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


@pytest_asyncio.fixture(loop_scope="session")
async def from_source(limited_app: FastAPI) -> AsyncIterator[object]:
    clients: list[httpx.AsyncClient] = []

    def make(address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=limited_app, client=(address, 40000))
        clients.append(httpx.AsyncClient(transport=transport, base_url="http://test"))
        return clients[-1]

    yield make
    for c in clients:
        await c.aclose()


def wrong_token() -> str:
    return "sst_" + secrets.token_urlsafe(32)


@ON_SESSION_LOOP
async def test_a_source_with_too_many_wrong_tokens_waits_even_with_a_right_one(
    from_source: object, admin_token: str, clock: FixedClock, refusals: list[tuple[str, str]]
) -> None:
    attacker, other = from_source(source()), from_source(source())  # type: ignore[operator]
    for _ in range(SOURCE_POLICY.max_failures - 1):
        assert (await attacker.get("/v1/whoami", headers=bearer(wrong_token()))).status_code == 401
    last = await attacker.get("/v1/whoami", headers=bearer(wrong_token()))
    assert last.status_code == 429, last.text
    assert last.headers["Retry-After"] == "60"
    assert last.json()["detail"][0]["loc"] == ["body", "Authorization"]
    right = await attacker.get("/v1/whoami", headers=bearer(admin_token))
    assert right.status_code == 429 and right.headers["Retry-After"] == "60"
    assert (await other.get("/v1/whoami", headers=bearer(admin_token))).status_code == 200
    clock.at += timedelta(seconds=59)
    assert (await attacker.get("/v1/whoami", headers=bearer(admin_token))).headers["Retry-After"] == "1"
    clock.at += timedelta(seconds=1)
    assert (await attacker.get("/v1/whoami", headers=bearer(admin_token))).status_code == 200
    assert refusals.count(("token", "rejected")) == SOURCE_POLICY.max_failures - 1
    assert refusals.count(("token", "rate_limited")) == 3


@ON_SESSION_LOOP
async def test_one_token_prefix_guessed_from_many_sources_is_limited(
    from_source: object, admin_token: str
) -> None:
    prefix = "sst_" + secrets.token_urlsafe(6)[:6]
    statuses = []
    for _ in range(SUBJECT_POLICY.max_failures + 1):
        guess = prefix + secrets.token_urlsafe(28)
        statuses.append((await from_source(source()).get("/v1/whoami", headers=bearer(guess))).status_code)  # type: ignore[operator]
    assert statuses == [401] * (SUBJECT_POLICY.max_failures - 1) + [429, 429]
    # The sources themselves are not locked: their right token goes through.
    assert (await from_source(source()).get("/v1/whoami", headers=bearer(admin_token))).status_code == 200  # type: ignore[operator]


@ON_SESSION_LOOP
async def test_a_success_resets_no_counter(from_source: object, admin_token: str) -> None:
    client = from_source(source())  # type: ignore[operator]
    half = SOURCE_POLICY.max_failures // 2
    for _ in range(half):
        assert (await client.get("/v1/whoami", headers=bearer(wrong_token()))).status_code == 401
    assert (await client.get("/v1/whoami", headers=bearer(admin_token))).status_code == 200
    statuses = [
        (await client.get("/v1/whoami", headers=bearer(wrong_token()))).status_code
        for _ in range(SOURCE_POLICY.max_failures - half)
    ]
    assert statuses[-1] == 429 and statuses[:-1] == [401] * (len(statuses) - 1)


@ON_SESSION_LOOP
async def test_the_refusal_is_logged_without_the_token(
    from_source: object, caplog: pytest.LogCaptureFixture
) -> None:
    client = from_source(source())  # type: ignore[operator]
    sent = [wrong_token() for _ in range(SOURCE_POLICY.max_failures)]
    with caplog.at_level(logging.WARNING, logger="provisioning.auth_limits"):
        for token in sent:
            await client.get("/v1/whoami", headers=bearer(token))
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "API token refused for 60 s" in text
    assert not any(token in text or token[10:20] in text for token in sent)


@ON_SESSION_LOOP
async def test_a_request_outside_the_service_middleware_is_not_limited(
    pool: asyncpg.Pool, clock: FixedClock, settings: Settings
) -> None:
    """The CLI and bare apps (tests/api's) have no source to charge: never a 429."""
    bare = build_app(pool, clock, settings)
    prefix = "sst_" + secrets.token_urlsafe(6)[:6]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=bare), base_url="http://test") as c:
        for _ in range(SUBJECT_POLICY.max_failures + 1):
            guess = prefix + secrets.token_urlsafe(28)
            assert (await c.get("/v1/whoami", headers=bearer(guess))).status_code == 401


# --- portal logins ------------------------------------------------------------------------


@ON_SESSION_LOOP
async def test_logins_are_limited_per_username_and_per_source(pool: asyncpg.Pool) -> None:
    now = T0 + timedelta(seconds=random.randrange(10**8))
    name = f"nobody-{secrets.token_hex(4)}"  # unknown names count as well
    async with pool.acquire() as conn:
        reasons = []
        for _ in range(SUBJECT_POLICY.max_failures + 1):
            token = auth_limits.CURRENT.set(AttemptContext(source()))
            try:
                await auth.login(conn, name, "wrong-password-1", now)
            except auth.LoginRefused as exc:
                reasons.append(exc.reason)
            finally:
                auth_limits.CURRENT.reset(token)
        assert reasons == ["bad_credentials"] * (SUBJECT_POLICY.max_failures - 1) + ["locked", "locked"]
        ctx = AttemptContext(source())
        token = auth_limits.CURRENT.set(ctx)
        try:
            outcomes = []
            for i in range(SOURCE_POLICY.max_failures):
                try:
                    await auth.login(conn, f"{name}-{i}", "wrong-password-1", now)
                except auth.LoginRefused as exc:
                    outcomes.append(exc.reason)
            assert outcomes[-1] == "locked" and set(outcomes[:-1]) == {"bad_credentials"}
            assert ctx.retry_after == 60  # the middleware's Retry-After
        finally:
            auth_limits.CURRENT.reset(token)
