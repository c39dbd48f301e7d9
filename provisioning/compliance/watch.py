"""The compliance monitors at the database edge (issue 15.2): read one tenant's outbound
call records of each rule's window, let dialplan.monitors judge them, and record and act
on what changed — in one transaction under a per-tenant advisory lock, so two service
instances (or the service and `softswitch jobs run`) never act twice on one change.

Actions at critical (the rule's `action`):
  notice    a row in the outbox for the tenant (every level change up sends one too)
  alert     only the event and the level: softswitch_compliance_level, exported by every
            instance from compliance_levels, fires the operator's Prometheus alert
  throttle  tenant_compliance.throttle_per_min: the call path refuses the tenant's
            outbound calls past that pace (OUTBOUND_THROTTLED)
  suspend   tenant_compliance.outbound_suspended_at: every outbound call of the tenant
            is refused (OUTBOUND_SUSPENDED) until an operator lifts it

The call path reads tenant_compliance under the account lock, so a suspension holds on
every instance from the moment this transaction commits. An operator's lift (`lift`)
clears it, is audited, and restarts every window at the lift: the calls that tripped a
rule do not trip it again."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

import asyncpg

from dialplan.compliance import Rule, TenantRules, effective_rules
from dialplan.monitors import Figures, Finding, Step, evaluate, monitors, step, throttle_of, window_s
from provisioning import audit
from provisioning.engine import Conflict, Ctx, Forbidden, NotFound

# A lock namespace of its own (pg_advisory_xact_lock(int, int)): 'cm' for compliance monitors.
_LOCK_SPACE = 0x636D

_RULES = "SELECT tenant_id, kind, params, warning, critical, action, enabled FROM compliance_rules"


def rule_of(row: Mapping[str, Any]) -> Rule:
    params = row["params"] if isinstance(row["params"], dict) else json.loads(row["params"])
    return Rule(
        row["kind"], params, row["warning"], row["critical"], row["action"], row["enabled"], row["tenant_id"]
    )


async def load_rules(conn: asyncpg.Connection) -> TenantRules:
    """Every rule: the platform's defaults and each tenant's own, by kind."""
    platform: dict[str, Rule] = {}
    tenants: dict[int, dict[str, Rule]] = {}
    for r in await conn.fetch(_RULES):
        rule = rule_of(r)
        if rule.tenant_id is None:
            platform[rule.kind] = rule
        else:
            tenants.setdefault(rule.tenant_id, {})[rule.kind] = rule
    return TenantRules(MappingProxyType(platform), MappingProxyType(tenants))


async def tenant_rules(conn: asyncpg.Connection, tenant_id: int) -> dict[str, Rule]:
    """The tenant's effective rules, read now (the monitors never act on a stale copy)."""
    platform: dict[str, Rule] = {}
    own: dict[str, Rule] = {}
    for r in await conn.fetch(_RULES + " WHERE tenant_id IS NULL OR tenant_id = $1", tenant_id):
        rule = rule_of(r)
        (platform if rule.tenant_id is None else own)[rule.kind] = rule
    return effective_rules(platform, own)


# Calls the platform let through (not refusals) whose record has ended, of one window.
_FIGURES = """
SELECT count(*) AS calls,
       count(*) FILTER (WHERE answered_at IS NOT NULL) AS answered,
       coalesce(sum(extract(epoch FROM ended_at - answered_at))
                FILTER (WHERE answered_at IS NOT NULL), 0)::bigint AS talk_s,
       count(DISTINCT called) AS distinct_callees,
       count(*) FILTER (WHERE answered_at IS NULL AND alerted_at IS NOT NULL
                        AND ended_at - alerted_at <= make_interval(secs => $4)) AS one_ring,
       count(DISTINCT nullif(caller_id_shown, '')) AS caller_numbers
FROM calls
WHERE tenant_id = $1 AND direction = 'outbound' AND decided_at > $2 AND decided_at <= $3
  AND action <> 'reject' AND ended_at IS NOT NULL
"""
_PER_CALLER = """
SELECT caller_id_shown AS subject, count(*) AS calls
FROM calls
WHERE tenant_id = $1 AND direction = 'outbound' AND decided_at > $2 AND decided_at <= $3
  AND action <> 'reject' AND caller_id_shown <> ''
GROUP BY caller_id_shown
HAVING count(*) >= $4
"""
_COMPLAINTS = (
    "SELECT count(*) FROM complaints WHERE tenant_id = $1 AND occurred_at > $2 AND occurred_at <= $3"
)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One finding and what it changed."""

    finding: Finding
    step: Step
    rule: Rule


async def figures(
    conn: asyncpg.Connection, tenant_id: int, since: datetime, now: datetime, ring_s: float
) -> Figures:
    """The tenant's outbound figures of the calls decided in (since, now]."""
    row = await conn.fetchrow(_FIGURES, tenant_id, since, now, float(ring_s))
    assert row is not None
    complaints = await conn.fetchval(_COMPLAINTS, tenant_id, since, now)
    return Figures(
        row["calls"],
        row["answered"],
        row["talk_s"],
        row["distinct_callees"],
        row["one_ring"],
        row["caller_numbers"],
        complaints,
    )


async def _findings(
    conn: asyncpg.Connection,
    tenant_id: int,
    rule: Rule,
    now: datetime,
    lifted_at: datetime | None,
    flagged: set[str],
) -> list[Finding]:
    since = now - timedelta(seconds=window_s(rule))
    if lifted_at is not None and lifted_at > since:
        since = lifted_at
    if rule.kind != "call_frequency":
        ring_s = float(rule.params.get("ring_s", 4))
        return [evaluate(rule, await figures(conn, tenant_id, since, now, ring_s))]
    # One finding per caller number past the warning level, and one for each number that
    # was flagged before (so it can fall back to ok).
    floor = min((t for t in (rule.warning, rule.critical) if t is not None), default=None)
    rows = await conn.fetch(_PER_CALLER, tenant_id, since, now, int(floor) if floor is not None else 1)
    counted = {r["subject"]: int(r["calls"]) for r in rows}
    subjects = set(counted) | flagged
    return [evaluate(rule, Figures(calls=counted.get(s, 0)), s) for s in sorted(subjects)]


async def evaluate_tenant(
    conn: asyncpg.Connection, tenant_id: int, now: datetime, rules: Mapping[str, Rule] | None = None
) -> list[Outcome]:
    """Judge the tenant's recent outbound calls by each monitor rule; record every level
    change and take its action. Returns what changed (an empty list most of the time)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1, $2::int)", _LOCK_SPACE, tenant_id)
        if rules is None:
            rules = await tenant_rules(conn, tenant_id)
        lifted_at = await conn.fetchval(
            "SELECT lifted_at FROM tenant_compliance WHERE tenant_id = $1", tenant_id
        )
        previous: dict[tuple[str, str], str] = {
            (r["rule"], r["subject"]): r["level"]
            for r in await conn.fetch(
                "SELECT rule, subject, level FROM compliance_levels WHERE tenant_id = $1", tenant_id
            )
        }
        changed: list[Outcome] = []
        for rule in monitors(rules):
            flagged = {s for (k, s), level in previous.items() if k == rule.kind and level != "ok"}
            for finding in await _findings(conn, tenant_id, rule, now, lifted_at, flagged):
                before = previous.get((rule.kind, finding.subject))
                s = step(before, finding, rule)
                await _keep_level(conn, tenant_id, finding, now, s.event or before is None)
                if s.event:
                    await _act(conn, tenant_id, rule, finding, s, now)
                    changed.append(Outcome(finding, s, rule))
        return changed


_LEVEL = """
INSERT INTO compliance_levels (tenant_id, rule, subject, level, value, since, checked_at)
VALUES ($1, $2, $3, $4, $5, $6, $6)
ON CONFLICT (tenant_id, rule, subject) DO UPDATE
    SET level = EXCLUDED.level, value = EXCLUDED.value, checked_at = EXCLUDED.checked_at,
        since = CASE WHEN compliance_levels.level = EXCLUDED.level THEN compliance_levels.since
                     ELSE EXCLUDED.since END
"""


async def _keep_level(
    conn: asyncpg.Connection, tenant_id: int, f: Finding, now: datetime, write: bool
) -> None:
    # An unchanged level is written only now and then: a quiet tenant costs no writes.
    if write or f.level != "ok":
        await conn.execute(_LEVEL, tenant_id, f.rule, f.subject, f.level, f.value, now)


_EVENT = """
INSERT INTO compliance_events (tenant_id, rule, subject, level, value, threshold, action, detail, at, actor)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::jsonb, $9, $10)
RETURNING id
"""
_NOTICE = """
INSERT INTO outbox (tenant_id, kind, dedupe_key, payload, created_at)
VALUES ($1, 'compliance_notice', $2, $3::text::jsonb, $4)
ON CONFLICT (kind, dedupe_key) DO NOTHING
"""
_SUSPEND = """
INSERT INTO tenant_compliance (tenant_id, outbound_suspended_at, suspended_rule, updated_at)
VALUES ($1, $2, $3, $2)
ON CONFLICT (tenant_id) DO UPDATE
    SET outbound_suspended_at = coalesce(tenant_compliance.outbound_suspended_at,
                                         EXCLUDED.outbound_suspended_at),
        suspended_rule = coalesce(tenant_compliance.suspended_rule, EXCLUDED.suspended_rule),
        updated_at = EXCLUDED.updated_at
"""
_THROTTLE = """
INSERT INTO tenant_compliance (tenant_id, throttle_per_min, throttled_at, throttled_rule, updated_at)
VALUES ($1, $2, $3, $4, $3)
ON CONFLICT (tenant_id) DO UPDATE
    SET throttle_per_min = least(coalesce(tenant_compliance.throttle_per_min, EXCLUDED.throttle_per_min),
                                 EXCLUDED.throttle_per_min),
        throttled_at = coalesce(tenant_compliance.throttled_at, EXCLUDED.throttled_at),
        throttled_rule = coalesce(tenant_compliance.throttled_rule, EXCLUDED.throttled_rule),
        updated_at = EXCLUDED.updated_at
"""


async def _act(
    conn: asyncpg.Connection, tenant_id: int, rule: Rule, f: Finding, s: Step, now: datetime
) -> None:
    detail = {"params": dict(rule.params), "warning": _num(rule.warning), "critical": _num(rule.critical)}
    event_id = await conn.fetchval(
        _EVENT,
        tenant_id,
        f.rule,
        f.subject,
        f.level,
        f.value,
        f.threshold,
        s.action,
        json.dumps(detail),
        now,
        "monitor",
    )
    if f.level != "ok":  # the tenant hears of every level reached, whatever the action
        payload = {
            "rule": f.rule,
            "subject": f.subject,
            "level": f.level,
            "value": _num(f.value),
            "threshold": _num(f.threshold),
            "action": s.action,
            "at": now.isoformat(),
        }
        await conn.execute(_NOTICE, tenant_id, f"{tenant_id}:{event_id}", json.dumps(payload), now)
    if s.action == "suspend":
        await conn.execute(_SUSPEND, tenant_id, now, f.rule)
    elif s.action == "throttle":
        await conn.execute(_THROTTLE, tenant_id, throttle_of(rule), now, f.rule)


def _num(value: object) -> str | None:
    return None if value is None else str(value)


# ---------------------------------------------------------------- an operator's lift

LIFTABLE = ("suspension", "throttle", "all")


@dataclass(frozen=True, slots=True)
class Lifted:
    tenant_id: int
    suspension_lifted: bool
    throttle_lifted: bool
    suspended_rule: str | None
    throttled_rule: str | None
    at: datetime


class NothingToLift(Exception):
    """The tenant's outbound calls are neither suspended nor throttled (as asked)."""


async def lift(
    conn: asyncpg.Connection,
    tenant_id: int,
    what: str,
    *,
    actor: str,
    actor_user_id: int | None,
    reason: str,
    now: datetime,
) -> Lifted:
    """Lift the tenant's outbound suspension, throttle or both: audited, recorded as a
    'lift' event, the monitors' levels of the tenant cleared and their windows restarted."""
    if what not in LIFTABLE:
        raise ValueError(f"what must be one of {', '.join(LIFTABLE)}")
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1, $2::int)", _LOCK_SPACE, tenant_id)
        row = await conn.fetchrow(
            "SELECT * FROM tenant_compliance WHERE tenant_id = $1 FOR UPDATE", tenant_id
        )
        suspended = row is not None and row["outbound_suspended_at"] is not None
        throttled = row is not None and row["throttle_per_min"] is not None
        lift_suspension = suspended and what in ("suspension", "all")
        lift_throttle = throttled and what in ("throttle", "all")
        if not (lift_suspension or lift_throttle):
            raise NothingToLift(
                f"tenant {tenant_id} has no outbound {what if what != 'all' else 'restriction'} to lift"
            )
        assert row is not None
        before = _state(row)
        after = await conn.fetchrow(
            """
            UPDATE tenant_compliance SET
                outbound_suspended_at = CASE WHEN $2 THEN NULL ELSE outbound_suspended_at END,
                suspended_rule = CASE WHEN $2 THEN NULL ELSE suspended_rule END,
                throttle_per_min = CASE WHEN $3 THEN NULL ELSE throttle_per_min END,
                throttled_at = CASE WHEN $3 THEN NULL ELSE throttled_at END,
                throttled_rule = CASE WHEN $3 THEN NULL ELSE throttled_rule END,
                lifted_at = $4, lifted_by = $5, updated_at = $4
            WHERE tenant_id = $1
            RETURNING *
            """,
            tenant_id,
            lift_suspension,
            lift_throttle,
            now,
            actor,
        )
        assert after is not None
        await conn.execute("DELETE FROM compliance_levels WHERE tenant_id = $1", tenant_id)
        rules = [
            r
            for r, lifted in (
                (row["suspended_rule"], lift_suspension),
                (row["throttled_rule"], lift_throttle),
            )
            if lifted
        ]
        detail = json.dumps({"what": what, "reason": reason, "rules": rules})
        for rule in rules or ["operator"]:
            await conn.execute(
                _EVENT, tenant_id, rule or "operator", "", "ok", None, None, "lift", detail, now, actor
            )
        await audit.record(
            conn,
            at=now,
            actor=actor,
            actor_user_id=actor_user_id,
            tenant_id=tenant_id,
            entity="tenant_compliance",
            entity_id=tenant_id,
            action="lift",
            before={**before, "reason": reason},
            after=_state(after),
        )
    return Lifted(
        tenant_id,
        lift_suspension,
        lift_throttle,
        row["suspended_rule"] if lift_suspension else None,
        row["throttled_rule"] if lift_throttle else None,
        now,
    )


async def operator_lift(ctx: Ctx, tenant_id: int, what: str, reason: str) -> Lifted:
    """`lift` as the API and the CLI offer it: operators only, a tenant that exists, and
    nothing to lift answered as a conflict."""
    if not ctx.actor.is_operator:
        raise Forbidden("only an operator lifts a compliance suspension or throttle", "tenant_id")
    if await ctx.conn.fetchval("SELECT 1 FROM tenants WHERE id = $1", tenant_id) is None:
        raise NotFound(f"tenant {tenant_id} not found", "tenant_id")
    try:
        return await lift(
            ctx.conn,
            tenant_id,
            what,
            actor=ctx.actor.name,
            actor_user_id=ctx.actor.user_id,
            reason=reason,
            now=ctx.clock.now(),
        )
    except NothingToLift as exc:
        raise Conflict(str(exc), "what") from exc


def _state(row: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("outbound_suspended_at", "suspended_rule", "throttle_per_min", "throttled_at", "throttled_rule")
    return {k: (row[k].isoformat() if isinstance(row[k], datetime) else row[k]) for k in keys}


# ---------------------------------------------------------------- the periodic sweep

_ACTIVE = """
SELECT DISTINCT tenant_id FROM calls
WHERE direction = 'outbound' AND tenant_id IS NOT NULL AND decided_at > $1
UNION
SELECT DISTINCT tenant_id FROM complaints WHERE created_at > $1 OR occurred_at > $1
UNION
SELECT tenant_id FROM compliance_levels WHERE level <> 'ok'
"""


async def active_tenants(conn: asyncpg.Connection, now: datetime, lookback_s: int = 86400) -> list[int]:
    """Tenants with something to judge: outbound calls or complaints of the lookback, or a
    level still raised."""
    rows = await conn.fetch(_ACTIVE, now - timedelta(seconds=lookback_s))
    return sorted(r["tenant_id"] for r in rows)


async def sweep(pool: asyncpg.Pool, now: datetime, tenant_ids: Iterable[int] | None = None) -> dict[str, int]:
    """Every active tenant judged once (the scheduler's `compliance_monitors` job, a safety
    net beside the service's evaluation as calls end): a summary for the run record."""
    async with pool.acquire() as conn:
        ids = list(tenant_ids) if tenant_ids is not None else await active_tenants(conn, now)
        changes = 0
        for tid in ids:
            changes += len(await evaluate_tenant(conn, tid, now))
    return {"tenants": len(ids), "changes": changes}


async def recent_complaints(conn: asyncpg.Connection, now: datetime) -> dict[str, int]:
    """Complaints of the last 30 days by category, for the gauge."""
    rows = await conn.fetch(
        "SELECT category, count(*) AS n FROM complaints WHERE occurred_at > $1 GROUP BY category",
        now - timedelta(days=30),
    )
    return {r["category"]: r["n"] for r in rows}


async def levels(conn: asyncpg.Connection) -> list[tuple[int, str, int]]:
    """(tenant, rule, 1 warning / 2 critical) of every raised level, for the gauge; a
    rule's level is its worst subject's."""
    rows = await conn.fetch(
        "SELECT tenant_id, rule, max(CASE level WHEN 'critical' THEN 2 ELSE 1 END) AS n "
        "FROM compliance_levels WHERE level <> 'ok' GROUP BY tenant_id, rule"
    )
    return [(r["tenant_id"], r["rule"], r["n"]) for r in rows]
