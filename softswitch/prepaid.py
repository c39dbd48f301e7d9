"""Real-time prepaid at the database edge: reserve at call set-up, renew by slices, settle
once at hang-up, release what was not used.

Authorisation reserves, it never only looks. Opening a reservation is ONE statement that
locks the tenant's account row, checks the channel cap and the money and included
minutes available, takes a channel slot and the first slice, and inserts the reservation —
so "balance - reserved >= -credit_limit" and "channels_in_use <= channel_cap" hold under
any concurrency, across service instances. The database backs them too: a CHECK on the
channels, and a trigger (migration 0008) that refuses any update growing `reserved` past
the money available — while debits that are not reservations (rent, fees) may still take
an account into debt, which the billing cycle then suspends.
The money of a slice is the worst case of that slice rounded UP to the cent (a
reservation never under-reserves); the charge at settlement is computed by rating/ and
rounded once."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import asyncpg

from rating.rate import Charge, rate_call
from rating.tariff import Tariff


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


_RELEASE = """
WITH r AS (
    UPDATE reservations SET state = 'released', closed_at = $2, charged = 0, close_reason = $3
    WHERE call_id = $1 AND state = 'open'
    RETURNING tenant_id, amount, included_s
)
UPDATE accounts acc
SET reserved = acc.reserved - r.amount, channels_in_use = acc.channels_in_use - 1,
    included_reserved_s = acc.included_reserved_s - r.included_s, version = acc.version + 1
FROM r WHERE acc.tenant_id = r.tenant_id
RETURNING acc.tenant_id
"""


async def release_reservation(conn: asyncpg.Connection, call_id: str, now: datetime, reason: str) -> bool:
    """Give back a reservation whose call never connected (nothing to charge). Idempotent;
    one statement, so the account row is locked only for that statement."""
    return await conn.fetchval(_RELEASE, call_id, now, reason) is not None


@dataclass(frozen=True, slots=True)
class Settlement:
    call_id: str
    tenant_id: int
    billsec: int  # what was charged for (never beyond the reserved talk time)
    overrun_s: int  # talked past the reserved time (the switch's stop came late): not charged
    charge: Charge
    balance_after: Decimal


_SETTLE = """
WITH r AS (
    UPDATE reservations
    SET state = 'settled', closed_at = $2, charged = $3, billsec = $4, close_reason = $5
    WHERE call_id = $1 AND state = 'open'
    RETURNING tenant_id, amount, included_s
), a AS (
    UPDATE accounts acc
    SET balance = acc.balance - $3, reserved = acc.reserved - r.amount,
        channels_in_use = acc.channels_in_use - 1,
        included_seconds_left = acc.included_seconds_left - $6,
        included_reserved_s = acc.included_reserved_s - r.included_s, version = acc.version + 1
    FROM r WHERE acc.tenant_id = r.tenant_id
    RETURNING acc.tenant_id, acc.balance
), ledger AS (
    INSERT INTO ledger_entries
        (tenant_id, kind, amount, balance_after, reference, idempotency_key, created_at)
    SELECT a.tenant_id, 'call', -$3::numeric, a.balance, $7, $1, $2 FROM a
    RETURNING id
), call AS (
    UPDATE calls SET billsec = $8, billable_s = $9, minutes = $10, included_used_s = $6,
        amount = $3, settled_at = $2, final_reason = COALESCE($5, final_reason)
    WHERE linkedid = $1 AND EXISTS (SELECT 1 FROM a)
)
SELECT a.tenant_id, a.balance FROM a
"""


async def settle_reservation(
    conn: asyncpg.Connection, call_id: str, billsec: int, now: datetime, reason: str = ""
) -> Settlement | None:
    """Charge a finished call once. The charge is computed from an unlocked read (rating/,
    bundle first, rounded once), then ONE statement settles it only if the reservation is
    still open — so a duplicate or late hang-up does nothing, and the account row is
    locked for one statement: the account, an append-only ledger entry, the reservation
    and the call record, together. The call's included seconds are those it reserved."""
    r = await conn.fetchrow(
        "SELECT r.tenant_id, r.granted_s, r.included_s, a.rate_per_minute, a.first_increment_s, "
        "a.increment_s FROM reservations r JOIN accounts a ON a.tenant_id = r.tenant_id "
        "WHERE r.call_id = $1 AND r.state = 'open'",
        call_id,
    )
    if r is None:
        return None
    tariff = Tariff(r["rate_per_minute"], r["first_increment_s"], r["increment_s"])
    # The customer was promised the hard stop: time past the reserved talk time is the
    # switch's lateness, counted (overrun) but not charged.
    charged_s = min(max(billsec, 0), r["granted_s"])
    charge = rate_call(charged_s, tariff, r["included_s"])
    row = await conn.fetchrow(
        _SETTLE,
        call_id,
        now,
        charge.amount,
        billsec,
        reason or None,
        charge.included_used_s,
        f"call {call_id}: {charge.billable_s} s billable, {charge.included_used_s} s included",
        charged_s,
        charge.billable_s,
        charge.minutes,
    )
    if row is None:
        return None
    return Settlement(
        call_id, row["tenant_id"], charged_s, max(billsec - r["granted_s"], 0), charge, row["balance"]
    )
