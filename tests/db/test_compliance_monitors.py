"""The compliance monitors on the real database (provisioning.compliance.watch): call
records of a burst trip the robocall rule and suspend the tenant's outbound calls once,
however many evaluations race; complaints trip their rule; an operator's lift clears the
suspension, is audited, and restarts the windows so the same calls do not trip it again;
per-caller call frequency throttles."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from provisioning.compliance.watch import NothingToLift, evaluate_tenant, levels, lift, sweep
from tests.db.conftest import new_tenant

CALLEES = itertools.count(random.randrange(10**7))  # distinct callees across the tests
NOW = datetime(2026, 12, 3, 6, 0, tzinfo=UTC)


async def own_rule(
    conn: asyncpg.Connection,
    tenant: int,
    kind: str,
    params: dict[str, Any],
    warning: float,
    critical: float,
    action: str,
) -> None:
    await conn.execute(
        "INSERT INTO compliance_rules (tenant_id, kind, params, warning, critical, action) "
        "VALUES ($1, $2, $3::text::jsonb, $4, $5, $6)",
        tenant,
        kind,
        json.dumps(params),
        Decimal(str(warning)),
        Decimal(str(critical)),
        action,
    )


async def outbound_calls(
    conn: asyncpg.Connection,
    tenant: int,
    n: int,
    *,
    start: datetime,
    answered_s: int | None = None,
    rang_s: float | None = None,
    caller_id: str = "4008001234",
    callee: str | None = None,
) -> None:
    """n ended outbound call records, one a second from `start`."""
    rows = []
    for i in range(n):
        at = start + timedelta(seconds=i)
        alerted = at + timedelta(seconds=1)
        answered = alerted + timedelta(seconds=1) if answered_s is not None else None
        ended = (
            answered + timedelta(seconds=answered_s)
            if answered is not None and answered_s is not None
            else alerted + timedelta(seconds=rang_s if rang_s is not None else 30)
        )
        rows.append(
            (
                f"cm-{random.getrandbits(56)}",
                tenant,
                "1001",
                callee or f"139{next(CALLEES):08d}",
                at,
                alerted,
                answered,
                ended,
                caller_id,
            )
        )
    await conn.executemany(
        "INSERT INTO calls (linkedid, uniqueid, tenant_id, caller, called, action, reason, decided_at, "
        "alerted_at, answered_at, ended_at, direction, caller_id_shown) "
        "VALUES ($1, $1, $2, $3, $4, 'dial', 'ROUTED', $5, $6, $7, $8, 'outbound', $9)",
        rows,
    )


async def robocall_rule(conn: asyncpg.Connection, tenant: int) -> None:
    """The tenant's own robocall rule: 20 distinct callees a warning, 40 critical (suspend)
    in 10 minutes, when under 30% are answered or the talk averages under 10 s."""
    params = {"window_s": 600, "max_answer_rate": 0.3, "max_avg_talk_s": 10, "min_calls": 20}
    await own_rule(conn, tenant, "robocall", params, 20, 40, "suspend")


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else json.loads(value)  # with or without a jsonb codec


async def suspended(conn: asyncpg.Connection, tenant: int) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM tenant_compliance WHERE tenant_id = $1", tenant)


async def test_a_burst_of_short_calls_suspends_outbound_once(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn, balance=Decimal("100"))
        await robocall_rule(conn, tenant)
        await outbound_calls(conn, tenant, 30, start=NOW - timedelta(minutes=5), answered_s=2)
        first = await evaluate_tenant(conn, tenant, NOW)
        assert [(o.finding.rule, o.finding.level, o.step.action) for o in first] == [
            ("robocall", "warning", "notice")
        ]
        assert (await suspended(conn, tenant)) is None
        await outbound_calls(conn, tenant, 20, start=NOW - timedelta(minutes=2), answered_s=2)

    # Several instances judge the tenant at the same moment: one suspension, one event.
    async def judge() -> list[Any]:
        async with pool.acquire() as c:
            return await evaluate_tenant(c, tenant, NOW + timedelta(seconds=1))

    results = await asyncio.gather(*(judge() for _ in range(6)))
    acted = [r for r in results if r]
    assert len(acted) == 1, results
    # 50 calls with 2 s of talk: the platform's average-duration rule (8 s critical) too.
    assert sorted((o.finding.rule, o.finding.level, o.step.action) for o in acted[0]) == [
        ("avg_duration", "critical", "notice"),
        ("robocall", "critical", "suspend"),
    ]
    async with pool.acquire() as conn:
        state = await suspended(conn, tenant)
        assert state is not None and state["suspended_rule"] == "robocall"
        events = await conn.fetch(
            "SELECT rule, level, value, threshold, action FROM compliance_events "
            "WHERE tenant_id = $1 AND rule = 'robocall' ORDER BY id",
            tenant,
        )
        assert [(e["rule"], e["level"], e["value"], e["threshold"], e["action"]) for e in events] == [
            ("robocall", "warning", Decimal(30), Decimal(20), "notice"),
            ("robocall", "critical", Decimal(50), Decimal(40), "suspend"),
        ]
        notices = await conn.fetch(
            "SELECT payload FROM outbox WHERE tenant_id = $1 AND kind = 'compliance_notice' ORDER BY id",
            tenant,
        )
        robocall = [p for p in (as_dict(n["payload"]) for n in notices) if p["rule"] == "robocall"]
        assert [(p["level"], p["action"]) for p in robocall] == [
            ("warning", "notice"),
            ("critical", "suspend"),
        ]
        assert (tenant, "robocall", 2) in await levels(conn)

        # The operator lifts it: audited, an event, the levels cleared ...
        done = await lift(
            conn,
            tenant,
            "suspension",
            actor="op@example",
            actor_user_id=None,
            reason="verified",
            now=NOW + timedelta(minutes=1),
        )
        assert done.suspension_lifted and done.suspended_rule == "robocall"
        state = await suspended(conn, tenant)
        assert (
            state is not None
            and state["outbound_suspended_at"] is None
            and state["lifted_by"] == "op@example"
        )
        audit = await conn.fetchrow(
            "SELECT actor, action, before, after FROM audit_log "
            "WHERE entity = 'tenant_compliance' AND entity_id = $1",
            str(tenant),
        )
        assert audit is not None and (audit["actor"], audit["action"]) == ("op@example", "lift")
        assert as_dict(audit["before"])["suspended_rule"] == "robocall"
        assert as_dict(audit["after"])["outbound_suspended_at"] is None
        lifted = await conn.fetchval(
            "SELECT count(*) FROM compliance_events "
            "WHERE tenant_id = $1 AND action = 'lift' AND actor = 'op@example'",
            tenant,
        )
        assert lifted == 1
        # ... and the calls that tripped the rule do not trip it again.
        assert await evaluate_tenant(conn, tenant, NOW + timedelta(minutes=2)) == []
        assert (await suspended(conn, tenant))["outbound_suspended_at"] is None  # type: ignore[index]
        with pytest.raises(NothingToLift):
            await lift(
                conn, tenant, "all", actor="op", actor_user_id=None, reason="", now=NOW + timedelta(minutes=3)
            )


async def test_answered_long_calls_are_not_robocalls(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn, balance=Decimal("100"))
        await robocall_rule(conn, tenant)
        await outbound_calls(conn, tenant, 50, start=NOW - timedelta(minutes=5), answered_s=120)
        assert [o.finding.rule for o in await evaluate_tenant(conn, tenant, NOW)] == []


async def test_one_ring_calls_throttle_the_tenant(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn, balance=Decimal("100"))
        await own_rule(
            conn,
            tenant,
            "one_ring",
            {"window_s": 3600, "ring_s": 4, "min_calls": 10, "throttle_per_min": 2},
            0.3,
            0.5,
            "throttle",
        )
        await outbound_calls(conn, tenant, 6, start=NOW - timedelta(minutes=10), rang_s=1.5)
        await outbound_calls(
            conn, tenant, 6, start=NOW - timedelta(minutes=9), rang_s=25
        )  # rang, not abandoned
        got = await evaluate_tenant(conn, tenant, NOW)
        assert [(o.finding.rule, o.finding.level, o.finding.value, o.step.action) for o in got] == [
            ("one_ring", "critical", Decimal("0.5000"), "throttle")
        ]
        state = await suspended(conn, tenant)
        assert state is not None and (state["throttle_per_min"], state["throttled_rule"]) == (2, "one_ring")
        assert state["outbound_suspended_at"] is None


async def test_complaints_past_the_threshold_suspend(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn, balance=Decimal("100"))
        for i in range(5):
            await conn.execute(
                "INSERT INTO complaints (tenant_id, number, callee, category, occurred_at) "
                "VALUES ($1, '4008001234', $2, 'harassment', $3)",
                tenant,
                f"1390000{i:04d}",
                NOW - timedelta(days=i),
            )
        summary = await sweep(pool, NOW, [tenant])
        assert summary == {"tenants": 1, "changes": 1}
        state = await suspended(conn, tenant)
        assert state is not None and state["suspended_rule"] == "complaints"
        # The platform's default: 3 a warning, 5 critical, suspend (migration 0019).
        event = await conn.fetchrow(
            "SELECT level, value, action FROM compliance_events WHERE tenant_id = $1", tenant
        )
        assert event is not None and (event["level"], event["value"], event["action"]) == (
            "critical",
            5,
            "suspend",
        )


async def test_call_frequency_is_judged_per_caller_number(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn, balance=Decimal("100"))
        await own_rule(
            conn, tenant, "call_frequency", {"window_s": 3600, "throttle_per_min": 5}, 5, 8, "throttle"
        )
        await outbound_calls(
            conn, tenant, 8, start=NOW - timedelta(minutes=30), answered_s=60, caller_id="4008001111"
        )
        await outbound_calls(
            conn, tenant, 3, start=NOW - timedelta(minutes=30), answered_s=60, caller_id="4008002222"
        )
        got = await evaluate_tenant(conn, tenant, NOW)
        assert [(o.finding.subject, o.finding.level) for o in got] == [("4008001111", "critical")]
        # An hour later the number is quiet again: its level falls back (recorded, no action).
        later = await evaluate_tenant(conn, tenant, NOW + timedelta(hours=2))
        assert [(o.finding.subject, o.finding.level, o.step.action) for o in later] == [
            ("4008001111", "ok", "none")
        ]
        state = await suspended(conn, tenant)
        assert (
            state is not None and state["throttle_per_min"] == 5
        )  # a throttle stays until an operator lifts it
