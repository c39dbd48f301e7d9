"""Operator and tenant users, their API tokens, and turning a bearer token into a Principal."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg

from provisioning import auth_limits
from provisioning.engine import Ctx, Forbidden, Invalid, NotFound, Unauthorized, Values, audit, db_error
from provisioning.portal.auth import hash_password, password_problem
from provisioning.roles import ADMINS, Principal, Role
from provisioning.schemas import TokenCreate, TokenIssued, TokenRead
from provisioning.tokens import TOKEN_PREFIX, display_prefix, new_token, token_digest


class Unauthenticated(Exception):
    pass


async def authenticate(conn: asyncpg.Connection, token: str, now: datetime) -> Principal:
    row = await conn.fetchrow(
        """SELECT t.id AS token_id, t.expires_at, t.revoked_at, u.id AS user_id, u.username,
                  u.role, u.tenant_id, u.disabled
           FROM api_tokens t JOIN operator_users u ON u.id = t.user_id
           WHERE t.token_sha256 = $1""",
        token_digest(token),
    )
    if row is None or row["revoked_at"] is not None or row["disabled"]:
        raise Unauthenticated("unknown, revoked or disabled token")
    if row["expires_at"] is not None and row["expires_at"] <= now:
        raise Unauthenticated("token expired")
    await conn.execute("UPDATE api_tokens SET last_used_at = $2 WHERE id = $1", row["token_id"], now)
    return Principal(row["user_id"], row["username"], Role(row["role"]), row["tenant_id"], row["token_id"])


async def principal_for(
    conn: asyncpg.Connection, authorization: str | None, now: datetime, tenant_id: int | None = None
) -> Principal:
    """Who an HTTP request's `Authorization: Bearer <token>` names (401 otherwise); with
    `tenant_id`, only a principal that sees that tenant — another tenant's data answers
    404, as if it did not exist. Too many failed tokens from the request's source or with
    that token's prefix: 429 (provisioning.auth_limits)."""
    if not authorization or not authorization.lower().startswith("bearer "):
        raise Unauthorized("send Authorization: Bearer <token>", "Authorization")
    token = authorization[7:].strip()
    keys = auth_limits.attempt_keys(_token_key(token))
    wait = await auth_limits.locked_for(conn, keys, now)
    if wait is None:
        try:
            who = await authenticate(conn, token, now)
        except Unauthenticated as exc:
            wait = await auth_limits.record_failure(conn, keys, now)
            if wait is None:
                raise Unauthorized(str(exc), "Authorization") from None
    if wait is not None:
        auth_limits.note_wait(wait)
        auth_limits.log_refusal("API token", keys, wait)
        raise auth_limits.TooManyAttempts(wait)
    if tenant_id is not None and (
        not who.sees_tenant(tenant_id)
        or not await conn.fetchval("SELECT 1 FROM tenants WHERE id = $1", tenant_id)
    ):
        raise NotFound(f"tenant {tenant_id} not found", "tenant_id")
    return who


def _token_key(token: str) -> str:
    """A token's counter: its display prefix (shown in token lists; never enough to use it),
    or one shared key for anything not shaped like a token (never logging what was sent)."""
    return "tok:" + (display_prefix(token) if token.startswith(TOKEN_PREFIX) else "other")


async def issue_token(ctx: Ctx, user_id: int, data: TokenCreate) -> TokenIssued:
    # Operators' admins issue tokens for anyone; a user may issue their own.
    if not (ctx.actor.may(ADMINS) or ctx.actor.user_id == user_id):
        raise Forbidden("only a platform admin issues tokens for other users")
    if data.expires_at is not None and data.expires_at <= ctx.clock.now():
        raise Invalid("expires_at is in the past", "expires_at")
    token = new_token()
    try:
        async with ctx.conn.transaction():
            if not await ctx.conn.fetchval("SELECT 1 FROM operator_users WHERE id = $1", user_id):
                raise NotFound(f"user {user_id} not found", "user_id")
            row = await ctx.conn.fetchrow(
                "INSERT INTO api_tokens (user_id, name, token_sha256, prefix, created_at, expires_at) "
                "VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
                user_id,
                data.name,
                token_digest(token),
                display_prefix(token),
                ctx.clock.now(),
                data.expires_at,
            )
            assert row is not None
            out = TokenRead.model_validate(dict(row))
            await audit(ctx, "api_tokens", row["id"], "issue", None, out)
            return TokenIssued(**out.model_dump(), token=token)
    except asyncpg.PostgresError as exc:
        raise db_error(exc) from exc


async def revoke_token(ctx: Ctx, token_id: int) -> TokenRead:
    async with ctx.conn.transaction():
        row = await ctx.conn.fetchrow("SELECT * FROM api_tokens WHERE id = $1 FOR UPDATE", token_id)
        if row is None or not (ctx.actor.may(ADMINS) or row["user_id"] == ctx.actor.user_id):
            raise NotFound(f"token {token_id} not found", "id")
        row = await ctx.conn.fetchrow(
            "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1 RETURNING *",
            token_id,
            ctx.clock.now(),
        )
        out = TokenRead.model_validate(dict(row))
        await audit(ctx, "api_tokens", token_id, "revoke", None, out)
        return out


async def bootstrap_admin(conn: asyncpg.Connection, username: str, now: datetime) -> str:
    """The first platform admin and a token for it (the CLI's `users bootstrap`)."""
    async with conn.transaction():
        user_id = await conn.fetchval("SELECT id FROM operator_users WHERE username = $1", username)
        if user_id is None:
            user_id = await conn.fetchval(
                "INSERT INTO operator_users (username, display_name, role) "
                "VALUES ($1, $1, 'platform_admin') RETURNING id",
                username,
            )
        token = new_token()
        await conn.execute(
            "INSERT INTO api_tokens (user_id, name, token_sha256, prefix, created_at) "
            "VALUES ($1, 'bootstrap', $2, $3, $4)",
            user_id,
            token_digest(token),
            display_prefix(token),
            now,
        )
        return token


async def prepare_user(ctx: Ctx, values: Values, before: Mapping[str, Any] | None) -> Values:
    """The users resource's hook: a password is kept only as its argon2id hash; a new
    password or disabling the user ends their portal sessions, and a new password lifts a
    lockout."""
    secret = values.pop("password", None)
    if secret is not None:
        password = secret.get_secret_value() if hasattr(secret, "get_secret_value") else str(secret)
        problem = password_problem(password)
        if problem:
            raise Invalid(f"password: {problem}", "password")
        values["password_hash"] = await hash_password(password)
        values["failed_logins"] = 0
        values["locked_until"] = None
    if before is not None and (secret is not None or values.get("disabled")):
        await ctx.conn.execute(
            "UPDATE portal_sessions SET ended_at = $2 WHERE user_id = $1 AND ended_at IS NULL",
            before["id"],
            ctx.clock.now(),
        )
    return values
