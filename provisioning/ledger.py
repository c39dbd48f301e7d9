"""Real-time prepaid at the database edge: reserve at call set-up, renew by slices, settle
once at hang-up, release what was not used — and the one writer of the ledger: every
change of an account's balance and every ledger entry is written here.

Authorisation reserves, it never only looks. Opening a reservation is ONE statement that
locks the tenant's account row, checks the channel cap and the money and included
minutes available, takes a channel slot and the first slice, and inserts the reservation —
so "balance - reserved >= -credit_limit" and "channels_in_use <= channel_cap" hold under
any concurrency, across service instances. The database backs them too: a CHECK on the
channels, and a trigger (migration 0008) that refuses any update growing `reserved` past
the money available — while debits that are not reservations (rent, fees) may still take
an account into debt, which the billing cycle then suspends.
A reservation is cumulative: having granted G seconds it holds the settled charge of a
G-second call (rating.prepaid.reserved_for), so no charge can exceed it whatever the slice
and the increments; the charge at settlement is computed by rating/ and rounded once.

The ledger's invariant: an account's balance changes only in the statement that appends
the ledger entry recording the change, with ``balance_after`` the balance that statement
left. ``post`` is that statement for every money movement but a call's (recharges, cards,
rent, fees, adjustments), idempotent on its (tenant, kind, key); the settlement of a call
is one statement of its own (it also closes the reservation and the call record) and
appends its entry with the same SQL (``_APPEND``)."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal

import asyncpg

from rating.rate import Charge, rate_call
from rating.tariff import Tariff


class Kind(enum.StrEnum):
    """What a ledger entry records (the CHECK of ledger_entries.kind)."""

    RECHARGE = "recharge"
    CALL = "call"
    RENT = "rent"
    MINIMUM = "minimum"
    LATE_FEE = "late_fee"
    ADJUSTMENT = "adjustment"
    FEE = "fee"
    # The contracts' fees, each its own kind so the statement names it (migration 0023).
    PLATFORM_FEE = "platform_fee"
    PRESTORED = "prestored"
    ANNUAL_MINIMUM = "annual_minimum"
    EARLY_TERMINATION = "early_termination"
    ONE_OFF = "one_off"
    EXPIRY = "expiry"


@dataclass(frozen=True, slots=True)
class Entry:
    """One ledger entry, as stored (append-only)."""

    id: int
    tenant_id: int
    kind: str
    amount: Decimal  # + credit, - debit
    balance_after: Decimal
    reference: str
    idempotency_key: str | None
    actor_user_id: int | None
    created_at: datetime

    @classmethod
    def of(cls, row: asyncpg.Record) -> Entry:
        return cls(**{f.name: row[f.name] for f in fields(cls)})


@dataclass(frozen=True, slots=True)
class Posted:
    """The entry was appended by this call, and the balance moved with it."""

    entry: Entry


@dataclass(frozen=True, slots=True)
class AlreadyPosted:
    """The key was posted before: that first entry; nothing changed now."""

    entry: Entry


# The entry-writing SQL every writer of the ledger shares: a SELECT yielding these columns
# follows it.
_APPEND = """INSERT INTO ledger_entries
        (tenant_id, kind, amount, balance_after, reference, idempotency_key, actor_user_id, created_at)"""

# ONE statement: the entry already there under the key, or the balance moved and the entry
# appended with the balance that update left. A zero amount appends without touching the
# account row's version (it is a marker: the allowance reset, the expiry of seconds).
# Concurrent posts of one key are ordered by the caller's lock on the account row (every
# caller takes it first, as it orders all money operations of a tenant); without it, the
# loser of a race fails on the unique key and changes nothing.
_POST = f"""
WITH prior AS (
    SELECT * FROM ledger_entries WHERE tenant_id = $1 AND kind = $2 AND idempotency_key = $5
), moved AS (
    UPDATE accounts
    SET balance = balance + $3, version = version + CASE WHEN $3 = 0 THEN 0 ELSE 1 END
    WHERE tenant_id = $1 AND NOT EXISTS (SELECT 1 FROM prior)
    RETURNING tenant_id, balance
), appended AS (
    {_APPEND}
    SELECT moved.tenant_id, $2::text, $3::numeric, moved.balance, $4::text, $5::text, $6::bigint,
           $7::timestamptz FROM moved
    RETURNING *
)
SELECT true AS posted, * FROM appended
UNION ALL
SELECT false AS posted, * FROM prior
"""


async def post(
    conn: asyncpg.Connection,
    tenant_id: int,
    kind: Kind,
    amount: Decimal,
    key: str,
    reference: str,
    at: datetime,
    actor_user_id: int | None = None,
) -> Posted | AlreadyPosted:
    """Move the tenant's balance by ``amount`` (signed) and append the entry saying so, once
    per (tenant, kind, key). Raises LookupError if the tenant has no account."""
    row = await conn.fetchrow(_POST, tenant_id, kind.value, amount, reference, key, actor_user_id, at)
    if row is None:
        raise LookupError(f"tenant {tenant_id} has no account")
    entry = Entry.of(row)
    return Posted(entry) if row["posted"] else AlreadyPosted(entry)


async def posted_under(conn: asyncpg.Connection, tenant_id: int, kind: Kind, key: str) -> Entry | None:
    """The entry posted under (tenant, kind, key), if any."""
    row = await conn.fetchrow(
        "SELECT * FROM ledger_entries WHERE tenant_id = $1 AND kind = $2 AND idempotency_key = $3",
        tenant_id,
        kind.value,
        key,
    )
    return None if row is None else Entry.of(row)


class Refusal(enum.StrEnum):
    NO_ACCOUNT = "NO_ACCOUNT"
    CHANNEL_LIMIT = "CHANNEL_LIMIT"
    NO_BALANCE = "NO_BALANCE"
    ALREADY_OPEN = "ALREADY_OPEN"
    SPEND_CAP = "SPEND_CAP"  # the tenant's daily spend cap (spent today + reserved) would be passed
    UNAVAILABLE = "UNAVAILABLE"  # the database did not answer in time: refused (fail closed)


@dataclass(frozen=True, slots=True)
class Grant:
    reservation_id: int
    amount: Decimal  # money reserved by this slice
    included_s: int  # included (package) seconds reserved by this slice
    seconds: int  # talk time this slice covers


# The reservation after granting G seconds holds rating.prepaid.reserved_for(G): the
# settled charge of a G-second call (whole started increments, bundle first, rounded once),
# computed in SQL by billable_seconds() and rated_amount() of migration 0011 so that the
# one statement locking the account applies it; tests/db/test_exact_reservations.py holds
# SQL and Python equal. Included seconds are held in billable seconds, as settlement uses
# them.
def _spent(acc: str, ts: str) -> str:
    """SQL: what account row `acc` spent on its tenant's local day of instant `ts` (tenants
    `t` joined): spent_today counts only while spent_day is that day."""
    return (
        f"(CASE WHEN {acc}.spent_day = (({ts}::timestamptz) AT TIME ZONE t.timezone)::date "
        f"THEN {acc}.spent_today ELSE 0 END)"
    )


# A batch of one: the same decision in one statement (its plan is cheaper than the batch
# function's several; tests/db/test_reservation_batches.py holds the two equal).
_OPEN = f"""
WITH a AS (
    SELECT * FROM accounts WHERE tenant_id = $1 FOR UPDATE
), want AS (
    SELECT a.tenant_id, a.balance, a.reserved, a.credit_limit, a.channel_cap, a.channels_in_use,
           inc.take AS inc_take, rated_amount(b.billable, inc.take, a.rate_per_minute) AS money,
           EXISTS (SELECT 1 FROM reservations WHERE call_id = $2) AS already,
           {_spent("a", "$5")} AS spent
    FROM a JOIN tenants t ON t.id = a.tenant_id
    CROSS JOIN LATERAL (SELECT billable_seconds($4, a.first_increment_s, a.increment_s) AS billable) b
    CROSS JOIN LATERAL (
        SELECT LEAST(GREATEST(a.included_seconds_left - a.included_reserved_s, 0), b.billable) AS take
    ) inc
), taken AS (
    UPDATE accounts acc
    SET reserved = acc.reserved + w.money,
        channels_in_use = acc.channels_in_use + 1,
        included_reserved_s = acc.included_reserved_s + w.inc_take,
        version = acc.version + 1
    FROM want w
    WHERE acc.tenant_id = w.tenant_id
      AND NOT w.already
      AND w.channels_in_use < w.channel_cap
      AND w.balance - w.reserved - w.money >= -w.credit_limit
      AND ($6::numeric IS NULL OR w.spent + w.reserved + w.money <= $6)
    RETURNING w.money, w.inc_take
), opened AS (
    INSERT INTO reservations (call_id, tenant_id, channel, amount, included_s, granted_s, opened_at)
    SELECT $2, $1, $3, money, inc_take, $4, $5 FROM taken
    RETURNING id, amount, included_s, granted_s
)
-- One row always: the grant, or the limit that refused it — read from the same locked
-- account row the decision was made on (never re-read after the fact).
SELECT o.id, o.amount, o.included_s, o.granted_s,
       CASE WHEN o.id IS NOT NULL THEN NULL
            WHEN w.tenant_id IS NULL THEN 'NO_ACCOUNT'
            WHEN w.already THEN 'ALREADY_OPEN'
            WHEN w.channels_in_use >= w.channel_cap THEN 'CHANNEL_LIMIT'
            WHEN w.balance - w.reserved - w.money < -w.credit_limit THEN 'NO_BALANCE'
            ELSE 'SPEND_CAP' END AS refusal
FROM (SELECT 1) AS one LEFT JOIN want w ON true LEFT JOIN opened o ON true
"""

_RENEW = f"""
WITH r AS (
    SELECT * FROM reservations WHERE call_id = $1 AND state = 'open' FOR UPDATE
), a AS (
    SELECT acc.* FROM accounts acc JOIN r ON r.tenant_id = acc.tenant_id FOR UPDATE OF acc
), want AS (
    SELECT a.tenant_id, a.balance, a.reserved, a.credit_limit, inc.total - r.included_s AS inc_take,
           -- never less than already held (included seconds may have become free meanwhile)
           GREATEST(rated_amount(b.billable, inc.total, a.rate_per_minute) - r.amount, 0) AS money,
           {_spent("a", "$3")} AS spent
    FROM a JOIN r ON true JOIN tenants t ON t.id = a.tenant_id
    CROSS JOIN LATERAL (
        SELECT billable_seconds(r.granted_s + $2, a.first_increment_s, a.increment_s) AS billable
    ) b
    CROSS JOIN LATERAL (
        SELECT LEAST(r.included_s + GREATEST(a.included_seconds_left - a.included_reserved_s, 0),
                     b.billable) AS total
    ) inc
), taken AS (
    UPDATE accounts acc
    SET reserved = acc.reserved + w.money,
        included_reserved_s = acc.included_reserved_s + w.inc_take,
        version = acc.version + 1
    FROM want w
    WHERE acc.tenant_id = w.tenant_id AND w.balance - w.reserved - w.money >= -w.credit_limit
      AND ($4::numeric IS NULL OR w.spent + w.reserved + w.money <= $4)
    RETURNING w.money, w.inc_take
)
UPDATE reservations res
SET amount = res.amount + t.money, included_s = res.included_s + t.inc_take,
    granted_s = res.granted_s + $2, slices = res.slices + 1, renewed_at = $3
FROM taken t
WHERE res.call_id = $1
RETURNING res.id, t.money AS amount, t.inc_take AS included_s, res.granted_s
"""


@dataclass(frozen=True, slots=True)
class OpenRequest:
    """The first slice of one call: a channel slot and money (or included seconds) for
    ``slice_s`` of talk. ``spend_cap``: the tenant's daily cap — the day's settled charges
    (its local day) plus every open reservation may not pass it."""

    tenant_id: int
    call_id: str
    channel: str
    slice_s: int
    now: datetime
    spend_cap: Decimal | None = None


_OPEN_BATCH = "SELECT * FROM open_reservations($1::bigint[], $2, $3, $4, $5, $6)"


async def open_reservations(
    conn: asyncpg.Connection, requests: Sequence[OpenRequest]
) -> list[Grant | Refusal]:
    """Open the first slices of several calls in one statement and one commit (migration
    0025: each in turn on the locked account rows, exactly as if they came one by one), in
    the order given. A batch of one takes the single-call statement (_OPEN), whose plan
    costs a third less than the batch function's; the db tests hold the two equal. A
    reservation already there for a call is ALREADY_OPEN; a concurrent insert of the same
    call (another tenant's account, another instance) fails the batch
    (asyncpg.UniqueViolationError) and changes nothing."""
    if not requests:
        return []
    if len(requests) == 1:
        r = requests[0]
        row = await conn.fetchrow(_OPEN, r.tenant_id, r.call_id, r.channel, r.slice_s, r.now, r.spend_cap)
        assert row is not None  # the statement always returns one row
        if row["refusal"] is not None:
            return [Refusal(row["refusal"])]
        return [Grant(row["id"], row["amount"], row["included_s"], row["granted_s"])]
    rows = await conn.fetch(
        _OPEN_BATCH,
        [r.tenant_id for r in requests],
        [r.call_id for r in requests],
        [r.channel for r in requests],
        [r.slice_s for r in requests],
        [r.now for r in requests],
        [r.spend_cap for r in requests],
    )
    assert len(rows) == len(requests)  # one row per element, in order
    return [
        Refusal(row["r_refusal"])
        if row["r_refusal"] is not None
        else Grant(row["r_id"], row["r_amount"], row["r_included_s"], row["r_granted_s"])
        for row in rows
    ]


async def open_reservation(
    conn: asyncpg.Connection,
    tenant_id: int,
    call_id: str,
    channel: str,
    slice_s: int,
    now: datetime,
    spend_cap: Decimal | None = None,
) -> Grant | Refusal:
    """The first slice of one call (a batch of one; see OpenRequest, open_reservations)."""
    try:
        (result,) = await open_reservations(
            conn, [OpenRequest(tenant_id, call_id, channel, slice_s, now, spend_cap)]
        )
    except asyncpg.UniqueViolationError:
        # A concurrent attempt for the same call won; this whole statement rolled back.
        return Refusal.ALREADY_OPEN
    return result


async def renew_reservation(
    conn: asyncpg.Connection, call_id: str, slice_s: int, now: datetime, spend_cap: Decimal | None = None
) -> Grant | None:
    """Reserve the next slice of a live call; None if the money is not there, the daily
    spend cap would be passed (spend_cap_reached tells which), or the reservation is no
    longer open: the switch's hard stop then ends the call."""
    row = await conn.fetchrow(_RENEW, call_id, slice_s, now, spend_cap)
    if row is None:
        return None
    return Grant(row["id"], row["amount"], row["included_s"], slice_s)


async def spend_cap_reached(conn: asyncpg.Connection, tenant_id: int, cap: Decimal, now: datetime) -> bool:
    """Whether the tenant's day (settled charges of its local day, plus what its live calls
    hold) has reached ``cap`` — why a renewal was refused, read after the refusal."""
    reached: bool = await conn.fetchval(
        f"""SELECT {_spent("a", "$2")} + a.reserved >= $3
            FROM accounts a JOIN tenants t ON t.id = a.tenant_id WHERE a.tenant_id = $1""",
        tenant_id,
        now,
        cap,
    )
    return bool(reached)


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


@dataclass(frozen=True, slots=True)
class SettleRequest:
    call_id: str
    billsec: int  # what the switch says was talked
    now: datetime
    reason: str = ""


# A batch of one (see _OPEN).
_SETTLE = f"""
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
        included_reserved_s = acc.included_reserved_s - r.included_s, version = acc.version + 1,
        spent_today = {_spent("acc", "$2")} + $3,
        spent_day = (($2::timestamptz) AT TIME ZONE t.timezone)::date
    FROM r JOIN tenants t ON t.id = r.tenant_id WHERE acc.tenant_id = r.tenant_id
    RETURNING acc.tenant_id, acc.balance
), ledger AS (
    {_APPEND}
    SELECT a.tenant_id, 'call', -$3::numeric, a.balance, $7, $1, NULL::bigint, $2 FROM a
    RETURNING id
), call AS (
    UPDATE calls SET billsec = $8, billable_s = $9, minutes = $10, included_used_s = $6,
        amount = $3, settled_at = $2, final_reason = COALESCE($5, final_reason)
    WHERE linkedid = $1 AND EXISTS (SELECT 1 FROM a)
)
SELECT a.tenant_id, a.balance FROM a
"""


_SETTLE_READ = """
SELECT r.call_id, r.tenant_id, r.granted_s, r.included_s, a.rate_per_minute, a.first_increment_s,
       a.increment_s
FROM reservations r JOIN accounts a ON a.tenant_id = r.tenant_id
WHERE r.call_id = ANY ($1::text[]) AND r.state = 'open'
"""
_SETTLE_BATCH = "SELECT * FROM settle_reservations($1::text[], $2, $3, $4, $5, $6, $7, $8, $9, $10)"


async def settle_reservations(
    conn: asyncpg.Connection, requests: Sequence[SettleRequest]
) -> list[Settlement | None]:
    """Charge finished calls once each, in one statement and one commit (migration 0025).
    Each charge is computed from an unlocked read (rating/, bundle first, rounded once);
    then each call is settled only if its reservation is still open — so a duplicate or
    late hang-up does nothing — the account, an append-only ledger entry, the reservation
    and the call record together. The calls' included seconds are those they reserved.
    The calls are settled in tenant order (see the migration: no lock cycles); the result
    is in the order given, None where there was nothing open to settle."""
    if not requests:
        return []
    read = {r["call_id"]: r for r in await conn.fetch(_SETTLE_READ, [q.call_id for q in requests])}
    todo: list[tuple[int, SettleRequest, asyncpg.Record, int, Charge]] = []
    for i, q in enumerate(requests):
        r = read.pop(q.call_id, None)  # a call settled twice in one batch: the first wins
        if r is None:
            continue
        tariff = Tariff(r["rate_per_minute"], r["first_increment_s"], r["increment_s"])
        # The customer was promised the hard stop: time past the reserved talk time is the
        # switch's lateness, counted (overrun) but not charged.
        charged_s = min(max(q.billsec, 0), r["granted_s"])
        todo.append((i, q, r, charged_s, rate_call(charged_s, tariff, r["included_s"])))
    results: list[Settlement | None] = [None] * len(requests)
    if not todo:
        return results
    if len(todo) == 1:
        i, q, r, charged_s, charge = todo[0]
        one = await conn.fetchrow(
            _SETTLE,
            q.call_id,
            q.now,
            charge.amount,
            q.billsec,
            q.reason or None,
            charge.included_used_s,
            f"call {q.call_id}: {charge.billable_s} s billable, {charge.included_used_s} s included",
            charged_s,
            charge.billable_s,
            charge.minutes,
        )
        if one is not None:
            results[i] = Settlement(
                q.call_id,
                one["tenant_id"],
                charged_s,
                max(q.billsec - r["granted_s"], 0),
                charge,
                one["balance"],
            )
        return results
    todo.sort(key=lambda t: (t[2]["tenant_id"], t[0]))
    rows = await conn.fetch(
        _SETTLE_BATCH,
        [q.call_id for _, q, _, _, _ in todo],
        [q.now for _, q, _, _, _ in todo],
        [c.amount for _, _, _, _, c in todo],
        [q.billsec for _, q, _, _, _ in todo],
        [q.reason or None for _, q, _, _, _ in todo],
        [c.included_used_s for _, _, _, _, c in todo],
        [
            f"call {q.call_id}: {c.billable_s} s billable, {c.included_used_s} s included"
            for _, q, _, _, c in todo
        ],
        [s for _, _, _, s, _ in todo],
        [c.billable_s for _, _, _, _, c in todo],
        [c.minutes for _, _, _, _, c in todo],
    )
    for row in rows:
        i, q, r, charged_s, charge = todo[row["r_n"] - 1]
        results[i] = Settlement(
            q.call_id,
            row["r_tenant"],
            charged_s,
            max(q.billsec - r["granted_s"], 0),
            charge,
            row["r_balance"],
        )
    return results


async def settle_reservation(
    conn: asyncpg.Connection, call_id: str, billsec: int, now: datetime, reason: str = ""
) -> Settlement | None:
    """Charge a finished call once (a batch of one; see settle_reservations)."""
    (result,) = await settle_reservations(conn, [SettleRequest(call_id, billsec, now, reason)])
    return result
