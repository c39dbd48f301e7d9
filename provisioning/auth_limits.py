"""Failed API-token and portal-login attempts, limited per source address (SOURCE_POLICY:
20 failures a minute) and per subject (SUBJECT_POLICY, 10 a minute: a token's display
prefix, a login's username): past that, the key is refused with 429 and Retry-After for
the policy's lockout (60 s) — a correct token or password too, or the lockout would not
slow a guesser down.

The rule is a pure function of (state, now); the store is the auth_failures table, so every
instance of the service counts the same failures (a guesser spreading requests over the
instances behind a load balancer gets no more tries). A success resets nothing: each key's
count ends with its window. The request's source reaches principal_for and login through
CURRENT, set per request by AuthAttemptsMiddleware (which also adds Retry-After and counts
the refusals for the metric); a call from outside an HTTP request of the service (the CLI, a
test's bare app) is not limited."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from provisioning.engine import ProvisioningError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AttemptPolicy:
    max_failures: int = 10
    window: timedelta = timedelta(minutes=1)
    lockout: timedelta = timedelta(minutes=1)


# A source may be a NAT of many users: more room than one username or token prefix.
SOURCE_POLICY = AttemptPolicy(max_failures=20)
SUBJECT_POLICY = AttemptPolicy()


def policy_for(key: str) -> AttemptPolicy:
    return SOURCE_POLICY if key.startswith("src:") else SUBJECT_POLICY


@dataclass(frozen=True)
class AttemptState:
    """One key's failures in its current window, and its lockout if any."""

    window_start: datetime
    failures: int
    locked_until: datetime | None = None


def retry_after(state: AttemptState | None, now: datetime) -> int | None:
    """Whole seconds until the key may try again, or None when it is not locked. A lock
    starts at its window_start: one set at a later `now` (a test's pinned clock) is not
    in force yet."""
    if state is None or state.locked_until is None or not state.window_start <= now < state.locked_until:
        return None
    return max(1, math.ceil((state.locked_until - now).total_seconds()))


def after_failure(
    state: AttemptState | None, now: datetime, policy: AttemptPolicy = SUBJECT_POLICY
) -> AttemptState:
    """The key's state after one more failure: a window that has passed (or not begun: the
    clock was set back) starts again; the max_failures-th failure within one locks the key
    for policy.lockout, from now."""
    if state is None or not timedelta(0) <= now - state.window_start < policy.window:
        state = AttemptState(now, 0, state.locked_until if state else None)
    failures = state.failures + 1
    if failures >= policy.max_failures:
        return AttemptState(now, 0, now + policy.lockout)
    return replace(state, failures=failures)


def attempt_keys(subject: str) -> tuple[str, ...]:
    """The counters an attempt of the current request is charged to: its source's and its
    subject's; none outside an HTTP request of the service (see the module's doc)."""
    ctx = CURRENT.get()
    if ctx is None:
        return ()
    return (f"src:{ctx.source}", subject) if ctx.source else (subject,)


class TooManyAttempts(ProvisioningError):
    status, kind = 429, "rate_limited"

    def __init__(self, wait_s: int, field: str = "Authorization") -> None:
        super().__init__(f"too many failed attempts: try again in {wait_s} s", field)
        self.wait_s = wait_s


@dataclass
class AttemptContext:
    """What the middleware knows of the request (its source) and learns back (the wait)."""

    source: str | None
    retry_after: int | None = None


CURRENT: ContextVar[AttemptContext | None] = ContextVar("auth_attempt", default=None)


def note_wait(wait_s: int) -> None:
    ctx = CURRENT.get()
    if ctx is not None:
        ctx.retry_after = wait_s


def _state(row: Any) -> AttemptState | None:
    return None if row is None else AttemptState(row["window_start"], row["failures"], row["locked_until"])


async def locked_for(conn: asyncpg.Connection, keys: tuple[str, ...], now: datetime) -> int | None:
    """The longest wait any of `keys` is locked for, or None."""
    if not keys:
        return None
    rows = await conn.fetch(
        "SELECT window_start, failures, locked_until FROM auth_failures "
        "WHERE key = ANY($1::text[]) AND locked_until > $2",
        list(keys),
        now,
    )
    waits = [w for w in (retry_after(_state(r), now) for r in rows) if w is not None]
    return max(waits) if waits else None


async def record_failure(conn: asyncpg.Connection, keys: tuple[str, ...], now: datetime) -> int | None:
    """Charge one failure to each key (by its policy); the wait if that locked one, else None."""
    if not keys:
        return None
    waits = []
    async with conn.transaction():
        for key in sorted(keys):  # one order: two failures at once never deadlock
            await conn.execute(
                "INSERT INTO auth_failures (key, window_start, failures) VALUES ($1, $2, 0) "
                "ON CONFLICT (key) DO NOTHING",
                key,
                now,
            )
            row = await conn.fetchrow(
                "SELECT window_start, failures, locked_until FROM auth_failures WHERE key = $1 FOR UPDATE",
                key,
            )
            new = after_failure(_state(row), now, policy_for(key))
            await conn.execute(
                "UPDATE auth_failures SET window_start = $2, failures = $3, locked_until = $4 WHERE key = $1",
                key,
                new.window_start,
                new.failures,
                new.locked_until,
            )
            wait = retry_after(new, now)
            if wait is not None:
                waits.append(wait)
        # Keys whose window and lockout are long over are forgotten.
        await conn.execute(
            "DELETE FROM auth_failures WHERE window_start < $1 "
            "AND (locked_until IS NULL OR locked_until < $1)",
            now - timedelta(hours=1),
        )
    return max(waits) if waits else None


def log_refusal(what: str, keys: tuple[str, ...], wait_s: int) -> None:
    """Keys are addresses, usernames and a token's display prefix: never a secret."""
    log.warning("%s refused for %d s: too many failed attempts (%s)", what, wait_s, ", ".join(keys))


Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Asgi = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]


class AuthAttemptsMiddleware:
    """Pure ASGI: gives each HTTP request its AttemptContext (the client's address), adds
    Retry-After to a 429 the limit caused, and reports every 401/429 to `on_refusal(kind,
    result)` — kind `login` for a POST to a .../login path, else `token`; result
    `rejected` (401) or `rate_limited` (429)."""

    def __init__(self, app: Asgi, on_refusal: Callable[[str, str], None] | None = None) -> None:
        self.app = app
        self.on_refusal = on_refusal

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        ctx = AttemptContext(client[0] if client else None)
        token = CURRENT.set(ctx)
        kind = "login" if scope["method"] == "POST" and scope["path"].endswith("/login") else "token"

        async def sending(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start" and message["status"] in (401, 429):
                if message["status"] == 429 and ctx.retry_after is not None:
                    headers = list(message.get("headers", []))
                    if not any(k.lower() == b"retry-after" for k, _ in headers):
                        headers.append((b"retry-after", str(ctx.retry_after).encode()))
                    message["headers"] = headers
                if self.on_refusal is not None:
                    self.on_refusal(kind, "rejected" if message["status"] == 401 else "rate_limited")
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            CURRENT.reset(token)
