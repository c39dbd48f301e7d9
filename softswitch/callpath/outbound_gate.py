"""The compliance gate of an outbound call at the database edge: in ONE transaction, lock
the tenant's account row, read the counters (this callee's recent calls, the tenant's pace,
its outbound suspension or throttle), let the pure rules of dialplan.compliance decide,
and only then take the call's reservation and count the call. Every service instance
reserves through the same locked row, so two instances cannot each let the (N+1)-th call
to one callee through."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import asyncpg

from dialplan.compliance import OutboundCounters, OutboundRules, Refused, check_outbound
from provisioning.ledger import Grant, Refusal, open_reservation


@dataclass(frozen=True, slots=True)
class OutboundAttempt:
    """An enterprise's outbound call as the gate sees it."""

    callee: str
    caller_id: str
    rules: OutboundRules


# The account row is locked first (every reservation of the tenant takes the same lock),
# then the counters are read by a SECOND statement: under READ COMMITTED a statement reads
# the snapshot taken when it began, so counters read by the statement that waited for the
# lock would miss the calls the lock's previous holder just committed (a test with 20
# concurrent attempts let 12 through that way). The counters: this callee's calls inside
# the longest window, the tenant's outbound state, its calls of the last minute (only
# when a throttle is set).
_LOCK = "SELECT 1 FROM accounts WHERE tenant_id = $1 FOR UPDATE"
_COUNTERS = """
SELECT ARRAY(SELECT at FROM outbound_attempts
             WHERE tenant_id = $1 AND callee = $2 AND at > $3 ORDER BY at) AS recent,
       c.outbound_suspended_at IS NOT NULL AS suspended,
       c.throttle_per_min,
       CASE WHEN c.throttle_per_min IS NULL THEN 0
            ELSE (SELECT count(*) FROM outbound_attempts WHERE tenant_id = $1 AND at > $4) END
           AS last_minute
FROM (SELECT 1) AS one LEFT JOIN tenant_compliance c ON c.tenant_id = $1
"""


async def read_counters(
    conn: asyncpg.Connection, tenant_id: int, callee: str, now: datetime, longest_window_s: int
) -> OutboundCounters | None:
    """The counters, with the account row locked until the transaction ends; None when
    the tenant has no account (the reservation then refuses the call)."""
    if await conn.fetchval(_LOCK, tenant_id) is None:
        return None
    row = await conn.fetchrow(
        _COUNTERS,
        tenant_id,
        callee,
        now - timedelta(seconds=longest_window_s),
        now - timedelta(seconds=60),
    )
    assert row is not None
    return OutboundCounters(
        tuple(row["recent"]), bool(row["suspended"]), row["throttle_per_min"], row["last_minute"]
    )


async def gated_reservation(
    conn: asyncpg.Connection,
    attempt: OutboundAttempt,
    tenant_id: int,
    call_id: str,
    channel: str,
    slice_s: int,
    now: datetime,
    spend_cap: Decimal | None,
) -> Grant | Refusal | Refused:
    async with conn.transaction():
        counters = await read_counters(conn, tenant_id, attempt.callee, now, attempt.rules.longest_window_s)
        if counters is not None:
            refused = check_outbound(attempt.rules, counters, now)
            if refused is not None:
                return refused
        result = await open_reservation(conn, tenant_id, call_id, channel, slice_s, now, spend_cap)
        if isinstance(result, Grant):
            await conn.execute(
                "INSERT INTO outbound_attempts (tenant_id, callee, caller_id, call_id, at) "
                "VALUES ($1, $2, $3, $4, $5)",
                tenant_id,
                attempt.callee,
                attempt.caller_id,
                call_id,
                now,
            )
        return result
