"""The delivery log in PostgreSQL (migration 0022): claiming due deliveries, recording an
attempt's outcome, and outbox.delivered_at.

A claim is one statement: the due rows are locked FOR UPDATE SKIP LOCKED, so instances
claiming at the same moment take disjoint rows, and each claimed row's next_attempt_at
moves to the end of a lease in the same statement, so no instance takes it again while
the attempt is in flight. If the instance dies, the lease runs out and another instance
retries it (at least once: the receiver dedupes on the delivery's idempotency id). At
most one delivery per endpoint is claimed at a time by an instance: a slow endpoint
holds one slot, never the whole worker.

The outcome is written only by the claim it belongs to (`attempts` as claimed): an
attempt that outlived its lease, whose row was claimed again since, writes nothing."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from softswitch.notify.render import Notice
from softswitch.notify.retry import Outcome, Step

CHANNEL = "notice_delivery"  # NOTIFYed by the outbox trigger


@dataclass(frozen=True, slots=True)
class Claimed:
    """One delivery claimed for one attempt, with what the attempt needs."""

    id: int
    attempts: int  # counting this attempt
    endpoint_id: int
    channel: str  # email | webhook
    address: str
    secret: str | None
    language: str
    timeout_s: float
    usable: bool  # enabled and not removed
    tenant_id: int
    notice: Notice

    @property
    def idempotency_id(self) -> str:
        """The same on every attempt of this notice to this endpoint."""
        return f"{self.notice.id}-{self.endpoint_id}"


# The candidates are read first, one per endpoint (the earliest due), without a lock; the
# outer statement locks those still due, skipping rows another instance holds.
_CLAIM = """
WITH candidates AS (
    SELECT DISTINCT ON (d.endpoint_id) d.id
    FROM notice_deliveries d
    WHERE d.state IN ('pending', 'failed') AND d.next_attempt_at <= $1
      AND NOT (d.endpoint_id = ANY ($3::bigint[]))
      AND ($4::bigint[] IS NULL OR d.tenant_id = ANY ($4::bigint[]))
    ORDER BY d.endpoint_id, d.next_attempt_at, d.id
),
due AS (
    SELECT d.id FROM notice_deliveries d
    WHERE d.id IN (SELECT id FROM candidates)
      AND d.state IN ('pending', 'failed') AND d.next_attempt_at <= $1
    ORDER BY d.next_attempt_at, d.id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
),
claimed AS (
    UPDATE notice_deliveries d
    SET attempts = d.attempts + 1, last_attempt_at = $1, next_attempt_at = $5
    FROM due WHERE d.id = due.id
    RETURNING d.id, d.attempts, d.endpoint_id, d.notice_id, d.tenant_id
)
SELECT c.id, c.attempts, c.endpoint_id, c.tenant_id, e.channel, e.address, e.secret, e.language,
       e.timeout_s, e.enabled AND e.deleted_at IS NULL AS usable,
       o.id AS notice_id, o.kind, o.payload::text AS payload, o.created_at AS notice_at,
       t.name AS tenant_name, t.timezone
FROM claimed c
JOIN notice_endpoints e ON e.id = c.endpoint_id
JOIN outbox o ON o.id = c.notice_id
JOIN tenants t ON t.id = c.tenant_id
ORDER BY c.id
"""

_RECORD = """
UPDATE notice_deliveries
SET state = $3, next_attempt_at = $4, last_status = $5, last_reason = $6, last_error = $7,
    delivered_at = $8
WHERE id = $1 AND attempts = $2
RETURNING notice_id
"""

# Every delivery of the notice delivered: the notice is.
_NOTICE_DELIVERED = """
UPDATE outbox SET delivered_at = $2
WHERE id = $1 AND delivered_at IS NULL
  AND NOT EXISTS (SELECT 1 FROM notice_deliveries WHERE notice_id = $1 AND state <> 'delivered')
"""


def _claimed(row: asyncpg.Record) -> Claimed:
    payload: Any = json.loads(row["payload"])
    notice = Notice(
        id=row["notice_id"],
        kind=row["kind"],
        payload=payload if isinstance(payload, dict) else {"value": payload},
        created_at=row["notice_at"],
        tenant_name=row["tenant_name"],
        timezone=row["timezone"],
    )
    return Claimed(
        id=row["id"],
        attempts=row["attempts"],
        endpoint_id=row["endpoint_id"],
        channel=row["channel"],
        address=row["address"],
        secret=row["secret"],
        language=row["language"],
        timeout_s=float(row["timeout_s"]),
        usable=row["usable"],
        tenant_id=row["tenant_id"],
        notice=notice,
    )


async def claim(
    conn: asyncpg.Connection,
    now: datetime,
    limit: int,
    lease_s: float,
    busy_endpoints: Collection[int] = (),
    tenants: Sequence[int] | None = None,
) -> list[Claimed]:
    """Up to `limit` due deliveries, at most one per endpoint, none to `busy_endpoints`
    (those this instance has in flight); `tenants`: only theirs (None: every tenant's)."""
    if limit <= 0:
        return []
    rows = await conn.fetch(
        _CLAIM,
        now,
        limit,
        list(busy_endpoints),
        list(tenants) if tenants is not None else None,
        now + timedelta(seconds=lease_s),
    )
    return [_claimed(r) for r in rows]


async def record(conn: asyncpg.Connection, claimed: Claimed, outcome: Outcome, step: Step) -> bool:
    """Write the attempt's outcome (False: the claim was lost, nothing written); a
    delivered attempt that completes its notice sets outbox.delivered_at too."""
    async with conn.transaction():
        notice_id = await conn.fetchval(
            _RECORD,
            claimed.id,
            claimed.attempts,
            step.state,
            step.next_attempt_at,
            outcome.status,
            outcome.reason,
            outcome.error,
            step.delivered_at,
        )
        if notice_id is None:
            return False
        if step.state == "delivered":
            # Two deliveries of one notice recorded at once: the notice's row lock orders
            # them, so the second one's check (a statement after the lock) sees the first.
            await conn.execute("SELECT 1 FROM outbox WHERE id = $1 FOR UPDATE", notice_id)
            await conn.execute(_NOTICE_DELIVERED, notice_id, step.delivered_at)
        return True


async def open_by_channel(conn: asyncpg.Connection) -> dict[str, int]:
    """Deliveries not delivered yet and not dead, by channel (the pending gauge)."""
    rows = await conn.fetch(
        "SELECT e.channel, count(*) AS n FROM notice_deliveries d "
        "JOIN notice_endpoints e ON e.id = d.endpoint_id "
        "WHERE d.state IN ('pending', 'failed') GROUP BY e.channel"
    )
    return {r["channel"]: r["n"] for r in rows}
