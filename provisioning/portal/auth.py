"""Portal logins: argon2id password hashes, lockout after repeated failures, server-side
sessions (the cookie's value is kept only as SHA-256) with a synchronizer CSRF token.

The rules are plain functions of rows and `now`; the I/O is a handful of statements. A
session resolves to the same `Principal` an API token does, so the portal acts through
the same service layer, roles and tenant scoping as the API."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from provisioning import auth_limits
from provisioning.roles import Principal, Role

MAX_FAILURES = 5  # failed logins in a row before the account is locked
LOCKOUT = timedelta(minutes=15)
SESSION_LIFETIME = timedelta(hours=12)
MIN_PASSWORD_LENGTH = 10

_hasher = PasswordHasher()  # argon2id, the library's current parameters (RFC 9106 low-memory)
# Verified when the username is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def hash_password(password: str) -> str:
    """argon2id takes tens of milliseconds of CPU: off the event loop."""
    return await asyncio.to_thread(_hasher.hash, password)


def password_problem(password: str) -> str | None:
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"at least {MIN_PASSWORD_LENGTH} characters"
    if password.isdigit() or password.isalpha():
        return "mix letters with digits or symbols"
    return None


async def _verify(stored: str | None, password: str) -> bool:
    def check() -> bool:
        try:
            return _hasher.verify(stored or _DUMMY_HASH, password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check)


class LoginRefused(Exception):
    """Why a login did not open a session: `reason` is a code the page translates."""

    def __init__(self, reason: str, until: datetime | None = None) -> None:
        super().__init__(reason)
        self.reason = reason  # bad_credentials | locked | disabled
        self.until = until


@dataclass(frozen=True)
class Session:
    token: str  # the cookie's value: only in the response that sets it
    csrf: str
    principal: Principal
    expires_at: datetime


@dataclass(frozen=True)
class ActiveSession:
    id: int
    principal: Principal
    csrf: str


def lock_state(row: Any, now: datetime) -> tuple[int, datetime | None]:
    """(failed_logins, locked_until) after one more failure: the MAX_FAILURES-th failure
    in a row locks the account for LOCKOUT and starts the count again."""
    failures = row["failed_logins"] + 1
    if failures >= MAX_FAILURES:
        return 0, now + LOCKOUT
    return failures, row["locked_until"]


async def _source_refused(keys: tuple[str, ...], wait: int, now: datetime) -> LoginRefused:
    auth_limits.note_wait(wait)
    auth_limits.log_refusal("portal login", keys, wait)
    return LoginRefused("locked", now + timedelta(seconds=wait))


async def login(conn: asyncpg.Connection, username: str, password: str, now: datetime) -> Session:
    """Besides the account's own lockout (MAX_FAILURES in a row), failures are limited per
    source address and per username, known or not (provisioning.auth_limits)."""
    name = username.strip().lower()
    keys = auth_limits.attempt_keys(f"user:{name}")
    wait = await auth_limits.locked_for(conn, keys, now)
    if wait is not None:
        raise await _source_refused(keys, wait, now)
    row = await conn.fetchrow(
        "SELECT id, username, role, tenant_id, disabled, password_hash, failed_logins, locked_until "
        "FROM operator_users WHERE username = $1",
        name,
    )
    if row is not None and row["locked_until"] is not None and row["locked_until"] > now:
        raise LoginRefused("locked", row["locked_until"])
    ok = await _verify(row["password_hash"] if row is not None else None, password)
    if not ok:
        wait = await auth_limits.record_failure(conn, keys, now)
        if wait is not None:
            raise await _source_refused(keys, wait, now)
    if row is None:
        raise LoginRefused("bad_credentials")
    if not ok:
        failures, until = lock_state(row, now)
        await conn.execute(
            "UPDATE operator_users SET failed_logins = $2, locked_until = $3 WHERE id = $1",
            row["id"],
            failures,
            until,
        )
        if until is not None and until > now:
            raise LoginRefused("locked", until)
        raise LoginRefused("bad_credentials")
    if row["disabled"]:
        raise LoginRefused("disabled")
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    expires = now + SESSION_LIFETIME
    async with conn.transaction():
        await conn.execute(
            "UPDATE operator_users SET failed_logins = 0, locked_until = NULL WHERE id = $1", row["id"]
        )
        await conn.execute(
            "INSERT INTO portal_sessions (token_sha256, user_id, csrf_token, created_at, expires_at) "
            "VALUES ($1, $2, $3, $4, $5)",
            digest(token),
            row["id"],
            csrf,
            now,
            expires,
        )
    principal = Principal(row["id"], row["username"], Role(row["role"]), row["tenant_id"])
    return Session(token, csrf, principal, expires)


async def session_of(conn: asyncpg.Connection, token: str | None, now: datetime) -> ActiveSession | None:
    """The open session a cookie names, or None (unknown, ended, expired, user disabled)."""
    if not token:
        return None
    row = await conn.fetchrow(
        """SELECT s.id, s.csrf_token, s.expires_at, s.ended_at,
                  u.id AS user_id, u.username, u.role, u.tenant_id, u.disabled
           FROM portal_sessions s JOIN operator_users u ON u.id = s.user_id
           WHERE s.token_sha256 = $1""",
        digest(token),
    )
    if row is None or row["ended_at"] is not None or row["disabled"] or row["expires_at"] <= now:
        return None
    principal = Principal(row["user_id"], row["username"], Role(row["role"]), row["tenant_id"])
    return ActiveSession(row["id"], principal, row["csrf_token"])


async def logout(conn: asyncpg.Connection, session_id: int, now: datetime) -> None:
    await conn.execute(
        "UPDATE portal_sessions SET ended_at = $2 WHERE id = $1 AND ended_at IS NULL", session_id, now
    )


def csrf_ok(expected: str, sent: str | None) -> bool:
    return bool(sent) and secrets.compare_digest(expected, sent or "")
