"""The 7-day onboarding deadline enforced by time (issue 15.5; seed 001: documents within 7
days of payment, else the reserved number may be replaced).

For each paid tenant with documents outstanding, ``deadline_step`` says what is due at
``now``: a reminder two days before the deadline and another one day before (outbox
notices), and at the deadline the release of the tenant's numbers that are not in service
yet (reserved or awaiting approval) back to the pool — through the numbers' own release
action (``provisioning.numbers.number_action``: bindings and PINs removed, the cool-down
set, audited), with a notice and an audit entry of the tenant. A number already in service
was approved with the documents and is left alone.

Each step is written once per tenant and deadline: the notices' dedupe keys name the
tenant, the payment the deadline runs from, and the step; the release notice is written
in the same transaction as the releases, under the tenant's row lock, and a tenant whose
release notice exists is done. So re-running, or two runs at once, never releases twice or
repeats a notice. An operator who moves ``paid_at`` starts a new deadline, with its own
steps. A job that missed days catches up with the step due now (a tenant first seen past
its deadline gets the release, not the reminders)."""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from provisioning import audit as audit_log
from provisioning.engine import Ctx
from provisioning.numbers import missing_documents, number_action
from provisioning.roles import Principal, Role
from provisioning.rules import DEADLINE_WARNING, DOCUMENT_DEADLINE, documents_due
from softswitch.core.clock import FixedClock
from softswitch.core.masking import mask_number

log = logging.getLogger(__name__)

SYSTEM_ACTOR_NAME = "system:onboarding"
# Reminders by how long before the deadline, the nearest first.
REMINDERS = (("1d", timedelta(days=1)), ("2d", DEADLINE_WARNING))
RELEASED_STATES = ("reserved", "pending_approval")  # numbers not in service yet
REMINDER_KIND = "onboarding_reminder"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
RELEASED_KIND = "onboarding_released"


class Step(enum.Enum):
    NOTHING = "nothing"
    REMIND = "remind"
    RELEASE = "release"


@dataclass(frozen=True, slots=True)
class DeadlineStep:
    step: Step
    reminder: str | None = None  # REMIND: "2d" or "1d"

    @property
    def key(self) -> str:
        return self.reminder if self.step is Step.REMIND and self.reminder else self.step.value


def deadline_step(due_at: datetime | None, outstanding: int, now: datetime) -> DeadlineStep:
    """What the deadline asks for at ``now``: nothing (no document outstanding, unpaid, or
    more than two days left), the reminder of the nearest threshold passed, or the release."""
    if outstanding == 0 or due_at is None:
        return DeadlineStep(Step.NOTHING)
    if now >= due_at:
        return DeadlineStep(Step.RELEASE)
    left = due_at - now
    for name, before in REMINDERS:
        if left <= before:
            return DeadlineStep(Step.REMIND, name)
    return DeadlineStep(Step.NOTHING)


def notice_key(tenant_id: int, paid_at: datetime, step: DeadlineStep) -> str:
    """One notice per tenant, deadline (the payment it runs from) and step."""
    seconds = (paid_at - _EPOCH) // timedelta(seconds=1)  # exact, as the SQL's floor(epoch)
    return f"onboarding:{tenant_id}:{seconds}:{step.key}"


@dataclass
class DeadlineReport:
    at: datetime
    reminders: list[tuple[int, str]] = field(default_factory=list)  # (tenant, "2d" | "1d") sent
    released: dict[int, list[str]] = field(default_factory=dict)  # tenant -> its numbers released
    errors: dict[int, str] = field(default_factory=dict)  # tenant -> message (rolled back)

    def as_dict(self) -> dict[str, Any]:
        """The summary for logs and the scheduler's record: numbers masked."""
        return {
            "at": self.at.isoformat(),
            "reminders": [[t, r] for t, r in self.reminders],
            "released": {str(t): [mask_number(n) for n in ns] for t, ns in self.released.items()},
            "errors": {str(t): m for t, m in self.errors.items()},
        }


# Paid long enough ago for the first reminder, documents outstanding, not done yet.
_CANDIDATES = """
SELECT t.id FROM tenants t
WHERE t.paid_at IS NOT NULL AND t.paid_at <= $1 AND t.state <> 'terminated'
  AND ($3::bigint[] IS NULL OR t.id = ANY($3::bigint[]))
  AND EXISTS (SELECT 1 FROM tenant_documents d WHERE d.tenant_id = t.id AND d.status <> 'approved')
  AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.kind = $2 AND o.dedupe_key =
                  'onboarding:' || t.id || ':' || floor(extract(epoch FROM t.paid_at))::bigint || ':release')
ORDER BY t.id
"""
_NOTIFY = (
    "INSERT INTO outbox (tenant_id, kind, dedupe_key, payload, created_at) "
    "VALUES ($1, $2, $3, $4::text::jsonb, $5) ON CONFLICT (kind, dedupe_key) DO NOTHING RETURNING id"
)


async def _notify(
    conn: asyncpg.Connection, tenant_id: int, kind: str, key: str, payload: Mapping[str, Any], now: datetime
) -> bool:
    text = json.dumps(dict(payload), default=str, ensure_ascii=False)
    return await conn.fetchval(_NOTIFY, tenant_id, kind, key, text, now) is not None


async def _tenant(
    conn: asyncpg.Connection, tenant_id: int, now: datetime, actor: str, report: DeadlineReport
) -> None:
    async with conn.transaction():
        t = await conn.fetchrow(
            "SELECT id, state, paid_at, timezone FROM tenants WHERE id = $1 FOR UPDATE", tenant_id
        )
        if t is None or t["state"] == "terminated" or t["paid_at"] is None:
            return
        missing = await missing_documents(conn, tenant_id)
        due = documents_due(t["paid_at"])
        assert due is not None
        step = deadline_step(due, len(missing), now)
        if step.step is Step.NOTHING:
            return
        key = notice_key(tenant_id, t["paid_at"], step)
        payload: dict[str, Any] = {
            "due_at": due,
            "due_at_local": due.astimezone(ZoneInfo(t["timezone"])).isoformat(),
            "missing": missing,
        }
        if step.step is Step.REMIND:
            if await _notify(conn, tenant_id, REMINDER_KIND, key, {**payload, "left": step.reminder}, now):
                report.reminders.append((tenant_id, step.key))
            return
        if await conn.fetchval(
            "SELECT 1 FROM outbox WHERE kind = $1 AND dedupe_key = $2", RELEASED_KIND, key
        ):
            return
        rows = await conn.fetch(
            "SELECT id, number FROM numbers WHERE tenant_id = $1 AND state = ANY($2::text[]) "
            "ORDER BY id FOR UPDATE",
            tenant_id,
            list(RELEASED_STATES),
        )
        ctx = Ctx(conn, Principal(None, actor, Role.PLATFORM_ADMIN), FixedClock(now), tenant_id)
        for r in rows:
            await number_action(ctx, r["id"], "release")
        released = [r["number"] for r in rows]
        payload["released"] = released
        await _notify(conn, tenant_id, RELEASED_KIND, key, payload, now)
        await audit_log.record(
            conn,
            at=now,
            actor=actor,
            tenant_id=tenant_id,
            entity="tenants",
            entity_id=tenant_id,
            action="onboarding_deadline",
            after={**payload, "number_ids": [r["id"] for r in rows]},
        )
        report.released[tenant_id] = released
        log.warning(
            "onboarding: tenant %d missed its document deadline (%s): released %s",
            tenant_id,
            due.isoformat(),
            ", ".join(mask_number(n) for n in released) or "no number",
        )


async def apply_deadlines(
    pool_or_conn: asyncpg.Pool | asyncpg.Connection,
    now: datetime,
    *,
    tenant_ids: Sequence[int] | None = None,
    actor: str = SYSTEM_ACTOR_NAME,
) -> DeadlineReport:
    """Take every step of the document deadline that is due at ``now`` (idempotent), for
    every tenant or only ``tenant_ids``. One transaction per tenant; a tenant that fails is
    rolled back, reported, and retried by the next run."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime (with a UTC offset)")
    report = DeadlineReport(now)
    earliest_reminder = DOCUMENT_DEADLINE - max(before for _, before in REMINDERS)
    only = None if tenant_ids is None else list(tenant_ids)

    async def _one(conn: asyncpg.Connection, tenant_id: int) -> None:
        try:
            await _tenant(conn, tenant_id, now, actor, report)
        except Exception as exc:  # one tenant's failure must not stop the others'
            log.exception("onboarding deadline failed for tenant %s", tenant_id)
            report.errors[tenant_id] = f"{type(exc).__name__}: {exc}"
            report.reminders[:] = [(t, r) for t, r in report.reminders if t != tenant_id]
            report.released.pop(tenant_id, None)

    if isinstance(pool_or_conn, asyncpg.Pool):
        async with pool_or_conn.acquire() as conn:
            ids = [
                r["id"] for r in await conn.fetch(_CANDIDATES, now - earliest_reminder, RELEASED_KIND, only)
            ]
        for tid in ids:
            async with pool_or_conn.acquire() as conn:
                await _one(conn, tid)
    else:
        ids = [
            r["id"]
            for r in await pool_or_conn.fetch(_CANDIDATES, now - earliest_reminder, RELEASED_KIND, only)
        ]
        for tid in ids:
            await _one(pool_or_conn, tid)
    return report
