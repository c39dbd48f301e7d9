"""The phone self-service line's effects (ivr.selfservice asks for them as values), done
against the database: each a function of (connection, effect, caller), each answered by
the event the machine expects, each change audited. A database that fails answers
EffectFailed (the machine then says "service unavailable" and hangs up)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, assert_never

import asyncpg

from ivr import selfservice as ss
from provisioning import audit
from provisioning.cards import CardRefused, redeem_card
from provisioning.rules import hash_pin, pin_matches

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who acts: the call on the self-service line, at a moment."""

    call_id: str
    at: datetime

    @property
    def actor(self) -> str:
        return f"phone:selfservice:{self.call_id}"


def _tenant_of(account: str) -> int:
    """The account number keyed is the tenant id; anything else is no account (0)."""
    return int(account) if account.isdigit() and len(account) < 12 else 0


async def perform(pool: asyncpg.Pool, effect: ss.Effect, caller: Caller) -> ss.SelfServiceEvent:
    try:
        async with pool.acquire() as conn:
            return await _perform(conn, effect, caller)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log.error("self-service effect %s failed: %s", type(effect).__name__, exc)
        return ss.EffectFailed(type(effect).__name__)


async def _perform(conn: asyncpg.Connection, effect: ss.Effect, caller: Caller) -> ss.SelfServiceEvent:
    match effect:
        case ss.CheckPassword():
            return await check_password(conn, effect)
        case ss.LockAccount():
            return await lock_account(conn, effect, caller)
        case ss.GetBalance():
            return await balance(conn, effect)
        case ss.RedeemCard():
            return await redeem(conn, effect, caller)
        case ss.ChangePassword():
            return await change_password(conn, effect, caller)
        case ss.ToggleTimePolicy():
            return await toggle_time_policy(conn, effect, caller)
        case _:
            assert_never(effect)


async def check_password(conn: asyncpg.Connection, effect: ss.CheckPassword) -> ss.PasswordResult:
    row = await conn.fetchrow(
        "SELECT selfservice_password_hash AS h, selfservice_locked_at AS locked FROM tenants WHERE id = $1",
        _tenant_of(effect.account),
    )
    if row is None or row["h"] is None:
        return ss.PasswordResult(False)
    if row["locked"] is not None:
        return ss.PasswordResult(False, locked=True)
    return ss.PasswordResult(pin_matches(effect.password, row["h"]))


async def lock_account(conn: asyncpg.Connection, effect: ss.LockAccount, caller: Caller) -> ss.PasswordResult:
    tenant_id = _tenant_of(effect.account)
    await conn.execute("UPDATE tenants SET selfservice_locked_at = $2 WHERE id = $1", tenant_id, caller.at)
    await _audit(conn, caller, tenant_id, "selfservice_lock", {"reason": "wrong passwords"})
    return ss.PasswordResult(False, locked=True)


async def balance(conn: asyncpg.Connection, effect: ss.GetBalance) -> ss.Balance:
    amount = await conn.fetchval(
        "SELECT balance - reserved FROM accounts WHERE tenant_id = $1", _tenant_of(effect.account)
    )
    return ss.Balance(Decimal(amount if amount is not None else 0))


async def redeem(conn: asyncpg.Connection, effect: ss.RedeemCard, caller: Caller) -> ss.RedeemResult:
    try:
        entry, _created = await redeem_card(
            conn,
            _tenant_of(effect.account),
            effect.card,
            effect.pin,
            effect.idempotency_key,
            actor=caller.actor,
            now=caller.at,
        )
    except CardRefused as exc:
        return ss.RedeemResult(False, reason=getattr(exc, "reason", str(exc)))
    return ss.RedeemResult(True, entry.amount)


async def change_password(
    conn: asyncpg.Connection, effect: ss.ChangePassword, caller: Caller
) -> ss.PasswordChanged:
    tenant_id = _tenant_of(effect.account)
    await conn.execute(
        "UPDATE tenants SET selfservice_password_hash = $2, version = version + 1 WHERE id = $1",
        tenant_id,
        hash_pin(effect.new_password),
    )
    await _audit(conn, caller, tenant_id, "selfservice_password", {})
    return ss.PasswordChanged(True)


async def toggle_time_policy(
    conn: asyncpg.Connection, effect: ss.ToggleTimePolicy, caller: Caller
) -> ss.ToggleResult:
    tenant_id = _tenant_of(effect.account)
    status = await conn.execute(
        "UPDATE time_policies SET enabled = $2, version = version + 1 WHERE tenant_id = $1",
        tenant_id,
        effect.on,
    )
    await _audit(conn, caller, tenant_id, "selfservice_time_policy", {"enabled": effect.on})
    return ss.ToggleResult(status != "UPDATE 0")


async def _audit(
    conn: asyncpg.Connection, caller: Caller, tenant_id: int, action: str, after: dict[str, Any]
) -> None:
    await audit.record(
        conn,
        at=caller.at,
        actor=caller.actor,
        tenant_id=tenant_id,
        entity="tenants",
        entity_id=tenant_id,
        action=action,
        after=after,
    )
