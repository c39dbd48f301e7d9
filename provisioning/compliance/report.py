"""An enterprise's compliance report for a period (issue 15.4): the contract's metrics of
its outbound calls (MISSION.md "Compliance duties": outbound numbers, call frequency,
average call duration, failed-call rate, complaint volume; one-ring calls and robocalling)
side by side with the rules' thresholds, the worst level each monitor reached in the
period, every action taken (by the monitors and by operators), the refusals of the
compliance gates by reason, and the tenant's outbound state now.

Periods are whole local days of the tenant's time zone, `from` and `to` both included (as
in provisioning/reports.py). The period's value of a rule is dialplan.monitors.measure of
the whole period's figures: ratios (answer, failed, one-ring shares, average talk) compare
directly with their thresholds; the counting rules' thresholds are per window, so beside
them stands the peak value the monitors recorded in the period."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict

from dialplan.monitors import Figures, measure, monitors, ratio, window_s
from provisioning.analysis import check_period
from provisioning.compliance.watch import figures, tenant_rules
from provisioning.engine import Ctx, Forbidden, NotFound

COMPLIANCE_REASONS = (
    "CALLING_HOURS",
    "CALLEE_FREQUENCY",
    "OUTBOUND_SUSPENDED",
    "OUTBOUND_THROTTLED",
    "SPEND_CAP",
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PeriodMetrics(_Model):
    outbound_calls: int  # let through and ended
    answered: int
    answer_rate: Decimal
    failed_rate: Decimal
    avg_talk_s: Decimal
    distinct_callees: int
    one_ring_calls: int
    one_ring_share: Decimal
    caller_numbers_in_use: int
    busiest_caller_calls: int  # the most calls one caller number made in the period
    complaints: int
    refused: dict[str, int]  # the compliance gates' refusals by reason code


class RuleLine(_Model):
    rule: str
    window_s: int
    warning: Decimal | None
    critical: Decimal | None
    below: bool  # the level is reached from above (average duration)
    action: str
    source: str  # 'tenant' or 'platform'
    period_value: Decimal | None  # None: too few calls in the period to judge
    peak_value: Decimal | None  # the highest level-change value recorded in the period
    worst_level: str  # ok, warning, critical: reached in the period
    events: int


class ActionLine(_Model):
    at: datetime
    rule: str
    subject: str
    level: str
    value: Decimal | None
    threshold: Decimal | None
    action: str
    actor: str


class OutboundState(_Model):
    suspended_at: datetime | None
    suspended_rule: str | None
    throttle_per_min: int | None
    throttled_rule: str | None
    lifted_at: datetime | None
    lifted_by: str | None


class ComplianceReport(_Model):
    tenant_id: int
    timezone: str
    from_date: date
    to_date: date
    metrics: PeriodMetrics
    rules: list[RuleLine]
    actions: list[ActionLine]
    state: OutboundState


def _local_span(from_date: date, to_date: date, tz: str) -> tuple[datetime, datetime]:
    zone = ZoneInfo(tz)
    return (
        datetime.combine(from_date, time(0), zone),
        datetime.combine(to_date + timedelta(days=1), time(0), zone),
    )


_BUSIEST = """
SELECT coalesce(max(n), 0) FROM (
    SELECT count(*) AS n FROM calls
    WHERE tenant_id = $1 AND direction = 'outbound' AND decided_at >= $2 AND decided_at < $3
      AND action <> 'reject' AND caller_id_shown <> ''
    GROUP BY caller_id_shown) AS per_number
"""
_REFUSED = """
SELECT reason, count(*) AS n FROM calls
WHERE tenant_id = $1 AND direction = 'outbound' AND decided_at >= $2 AND decided_at < $3
  AND action = 'reject' AND reason = ANY($4::text[])
GROUP BY reason
"""
_EVENTS = """
SELECT at, rule, subject, level, value, threshold, action, actor FROM compliance_events
WHERE tenant_id = $1 AND at >= $2 AND at < $3 ORDER BY at, id
"""
_STATE = """
SELECT outbound_suspended_at AS suspended_at, suspended_rule, throttle_per_min, throttled_rule,
       lifted_at, lifted_by
FROM tenant_compliance WHERE tenant_id = $1
"""
_ORDER = ("ok", "warning", "critical")


async def compliance_report(ctx: Ctx, tenant_id: int, from_date: date, to_date: date) -> ComplianceReport:
    """The report; the tenant's users read their own, operators every tenant's."""
    if not ctx.actor.sees_tenant(tenant_id):
        raise Forbidden("not your tenant", "tenant_id")
    check_period(from_date, to_date)
    conn = ctx.conn
    tz = await conn.fetchval("SELECT timezone FROM tenants WHERE id = $1", tenant_id)
    if tz is None:
        raise NotFound(f"tenant {tenant_id} not found", "tenant_id")
    start, end = _local_span(from_date, to_date, tz)
    rules = await tenant_rules(conn, tenant_id)
    ring_s = float(rules["one_ring"].params.get("ring_s", 4)) if "one_ring" in rules else 4.0
    # figures() counts (start, end]; a call exactly at local midnight belongs to its day.
    f = await figures(
        conn, tenant_id, start - timedelta(microseconds=1), end - timedelta(microseconds=1), ring_s
    )
    busiest = await conn.fetchval(_BUSIEST, tenant_id, start, end)
    refused = {
        r["reason"]: r["n"]
        for r in await conn.fetch(_REFUSED, tenant_id, start, end, list(COMPLIANCE_REASONS))
    }
    events = [ActionLine(**dict(r)) for r in await conn.fetch(_EVENTS, tenant_id, start, end)]
    lines = []
    for rule in monitors(rules):
        mine = [e for e in events if e.rule == rule.kind]
        per_number = Figures(calls=busiest) if rule.kind == "call_frequency" else f
        values = [e.value for e in mine if e.value is not None and e.action != "lift"]
        below = bool(rule.params.get("below", False))
        lines.append(
            RuleLine(
                rule=rule.kind,
                window_s=window_s(rule),
                warning=rule.warning,
                critical=rule.critical,
                below=below,
                action=rule.action,
                source="platform" if rule.tenant_id is None else "tenant",
                period_value=measure(rule, per_number),
                peak_value=(min(values) if below else max(values)) if values else None,
                worst_level=max((e.level for e in mine), key=_ORDER.index, default="ok"),
                events=len(mine),
            )
        )
    state = await conn.fetchrow(_STATE, tenant_id)
    return ComplianceReport(
        tenant_id=tenant_id,
        timezone=tz,
        from_date=from_date,
        to_date=to_date,
        metrics=_metrics(f, busiest, refused),
        rules=lines,
        actions=events,
        state=OutboundState(**dict(state))
        if state
        else OutboundState(**dict.fromkeys(OutboundState.model_fields)),
    )


def _metrics(f: Figures, busiest: int, refused: dict[str, int]) -> PeriodMetrics:
    return PeriodMetrics(
        outbound_calls=f.calls,
        answered=f.answered,
        answer_rate=f.answer_rate,
        failed_rate=ratio(f.calls - f.answered, f.calls),
        avg_talk_s=f.avg_talk_s,
        distinct_callees=f.distinct_callees,
        one_ring_calls=f.one_ring,
        one_ring_share=ratio(f.one_ring, f.calls),
        caller_numbers_in_use=f.caller_numbers,
        busiest_caller_calls=busiest,
        complaints=f.complaints,
        refused={reason: refused.get(reason, 0) for reason in COMPLIANCE_REASONS},
    )
