"""Real-time prepaid at the database edge: reserve at call set-up, renew by slices, settle
once at hang-up, release what was not used.

Authorisation reserves, it never only looks. Opening a reservation is ONE statement that
locks the tenant's account row, checks the channel cap and the money and included
minutes available, takes a channel slot and the first slice, and inserts the reservation —
so "balance - reserved >= -credit_limit" and "channels_in_use <= channel_cap" hold under
any concurrency, across service instances (and CHECK constraints on accounts back them).
The money of a slice is the worst case of that slice rounded UP to the cent (a
reservation never under-reserves); the charge at settlement is computed by rating/ and
rounded once."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import asyncpg


class Refusal(enum.StrEnum):
    NO_ACCOUNT = "NO_ACCOUNT"
    CHANNEL_LIMIT = "CHANNEL_LIMIT"
    NO_BALANCE = "NO_BALANCE"
    ALREADY_OPEN = "ALREADY_OPEN"


@dataclass(frozen=True, slots=True)
class Grant:
    reservation_id: int
    amount: Decimal  # money reserved by this slice
    included_s: int  # included (package) seconds reserved by this slice
    seconds: int  # talk time this slice covers


# Included seconds first, then money for the rest of the slice at the account's rate,
# rounded UP to the cent. rating.prepaid.slice_cost is the same rule in Python; a test
# holds the two together.
_SLICE = """
    LEAST(GREATEST(a.included_seconds_left - a.included_reserved_s, 0), $SLICE) AS inc_take,
    CEIL((($SLICE - LEAST(GREATEST(a.included_seconds_left - a.included_reserved_s, 0), $SLICE))
          * a.rate_per_minute / 60) * 100) / 100 AS money
"""

_OPEN = f"""
WITH a AS (
    SELECT * FROM accounts WHERE tenant_id = $1 FOR UPDATE
), want AS (
    SELECT a.tenant_id, a.balance, a.reserved, a.credit_limit, a.channel_cap, a.channels_in_use,
           {_SLICE.replace("$SLICE", "$4")}
    FROM a
), taken AS (
    UPDATE accounts acc
    SET reserved = acc.reserved + w.money,
        channels_in_use = acc.channels_in_use + 1,
        included_reserved_s = acc.included_reserved_s + w.inc_take,
        version = acc.version + 1
    FROM want w
    WHERE acc.tenant_id = w.tenant_id
      AND w.channels_in_use < w.channel_cap
      AND w.balance - w.reserved - w.money >= -w.credit_limit
      AND NOT EXISTS (SELECT 1 FROM reservations WHERE call_id = $2)
    RETURNING w.money, w.inc_take
)
INSERT INTO reservations (call_id, tenant_id, channel, amount, included_s, granted_s, opened_at)
SELECT $2, $1, $3, money, inc_take, $4, $5 FROM taken
RETURNING id, amount, included_s, granted_s
"""

_RENEW = f"""
WITH r AS (
    SELECT * FROM reservations WHERE call_id = $1 AND state = 'open' FOR UPDATE
), a AS (
    SELECT acc.* FROM accounts acc JOIN r ON r.tenant_id = acc.tenant_id FOR UPDATE OF acc
), want AS (
    SELECT a.tenant_id, a.balance, a.reserved, a.credit_limit, {_SLICE.replace("$SLICE", "$2")}
    FROM a
), taken AS (
    UPDATE accounts acc
    SET reserved = acc.reserved + w.money,
        included_reserved_s = acc.included_reserved_s + w.inc_take,
        version = acc.version + 1
    FROM want w
    WHERE acc.tenant_id = w.tenant_id AND w.balance - w.reserved - w.money >= -w.credit_limit
    RETURNING w.money, w.inc_take
)
UPDATE reservations res
SET amount = res.amount + t.money, included_s = res.included_s + t.inc_take,
    granted_s = res.granted_s + $2, slices = res.slices + 1, renewed_at = $3
FROM taken t
WHERE res.call_id = $1
RETURNING res.id, t.money AS amount, t.inc_take AS included_s, res.granted_s
"""


async def open_reservation(
    conn: asyncpg.Connection, tenant_id: int, call_id: str, channel: str, slice_s: int, now: datetime
) -> Grant | Refusal:
    try:
        row = await conn.fetchrow(_OPEN, tenant_id, call_id, channel, slice_s, now)
    except asyncpg.UniqueViolationError:
        # A concurrent attempt for the same call won; this whole statement rolled back.
        return Refusal.ALREADY_OPEN
    if row is not None:
        return Grant(row["id"], row["amount"], row["included_s"], row["granted_s"])
    return await _why_refused(conn, tenant_id, call_id, slice_s)


async def _why_refused(conn: asyncpg.Connection, tenant_id: int, call_id: str, slice_s: int) -> Refusal:
    """Only on the refusal path: which limit stopped it (a racy read, for the reason code)."""
    if await conn.fetchval("SELECT 1 FROM reservations WHERE call_id = $1", call_id):
        return Refusal.ALREADY_OPEN
    acct = await conn.fetchrow("SELECT * FROM accounts WHERE tenant_id = $1", tenant_id)
    if acct is None:
        return Refusal.NO_ACCOUNT
    if acct["channels_in_use"] >= acct["channel_cap"]:
        return Refusal.CHANNEL_LIMIT
    return Refusal.NO_BALANCE


async def renew_reservation(
    conn: asyncpg.Connection, call_id: str, slice_s: int, now: datetime
) -> Grant | None:
    """Reserve the next slice of a live call; None if the money is not there (or the
    reservation is no longer open): the switch's hard stop then ends the call."""
    row = await conn.fetchrow(_RENEW, call_id, slice_s, now)
    if row is None:
        return None
    return Grant(row["id"], row["amount"], row["included_s"], slice_s)


async def release_reservation(conn: asyncpg.Connection, call_id: str, now: datetime, reason: str) -> bool:
    """Give back a reservation whose call never connected (nothing to charge). Idempotent."""
    async with conn.transaction():
        r = await conn.fetchrow(
            "SELECT * FROM reservations WHERE call_id = $1 AND state = 'open' FOR UPDATE", call_id
        )
        if r is None:
            return False
        await conn.execute(
            "UPDATE accounts SET reserved = reserved - $2, channels_in_use = channels_in_use - 1, "
            "included_reserved_s = included_reserved_s - $3, version = version + 1 WHERE tenant_id = $1",
            r["tenant_id"],
            r["amount"],
            r["included_s"],
        )
        await conn.execute(
            "UPDATE reservations SET state = 'released', closed_at = $2, charged = 0, close_reason = $3 "
            "WHERE id = $1",
            r["id"],
            now,
            reason,
        )
        return True
