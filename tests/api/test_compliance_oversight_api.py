"""The compliance report and an operator's lift through the API: the period's metrics of the
tenant's outbound calls beside the thresholds, the worst level and every action; a lift by
an operator (audited, 409 when nothing is restricted, 403 for a tenant's users); the
report's local days in the tenant's time zone."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest

from provisioning.compliance.watch import evaluate_tenant
from tests.api.conftest import World, bearer, expect, make_tenant, make_user, suffix

pytestmark = pytest.mark.asyncio(loop_scope="session")

SH = ZoneInfo("Asia/Shanghai")


async def tenant_with_calls(
    client: httpx.AsyncClient, pool: asyncpg.Pool, world: World, day: date
) -> tuple[int, str]:
    """A tenant whose 30 outbound calls of `day` (Shanghai) rang 1.5 s and were abandoned,
    with a one-ring rule that suspends at half of them; returns (tenant, its admin token)."""
    tag = suffix()
    t = await make_tenant(client, world.admin, f"compliance-report {tag}")
    _, token = await make_user(client, world.admin, "tenant_admin", t["id"], tag)
    start = datetime.combine(day, datetime.min.time(), SH) + timedelta(hours=10)
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO compliance_rules (tenant_id, kind, params, warning, critical, action) VALUES "
            "($1, 'one_ring', '{\"window_s\": 3600, \"ring_s\": 4, \"min_calls\": 10}', 0.3, 0.5, 'suspend')",
            t["id"],
        )
        rows = []
        for i in range(30):
            at = start + timedelta(seconds=10 * i)
            rows.append(
                (
                    f"rep-{tag}-{i}",
                    t["id"],
                    f"139{tag[:4]}{i:04d}",
                    at,
                    at + timedelta(seconds=1),
                    at + timedelta(seconds=2.5),
                )
            )
        # Two calls of the evening before, one refused by the calling hours: not in the day.
        for i, at in enumerate((start - timedelta(hours=11), start - timedelta(hours=11, minutes=1))):
            rows.append(
                (f"rep-{tag}-prev{i}", t["id"], f"138{tag[:4]}{i:04d}", at, at, at + timedelta(seconds=60))
            )
        await conn.executemany(
            "INSERT INTO calls (linkedid, uniqueid, tenant_id, caller, called, action, reason, decided_at, "
            "alerted_at, ended_at, direction, caller_id_shown) "
            "VALUES ($1, $1, $2, '1001', $3, 'dial', 'ROUTED', $4, $5, $6, 'outbound', '4008001234')",
            rows,
        )
        await conn.execute(
            "INSERT INTO calls (linkedid, uniqueid, tenant_id, caller, called, action, reason, decided_at, "
            "direction) VALUES ($1, $1, $2, '1001', '13900000001', 'reject', 'CALLING_HOURS', $3, "
            "'outbound')",
            f"rep-{tag}-refused",
            t["id"],
            start + timedelta(hours=12),  # 22:00 local
        )
        outcomes = await evaluate_tenant(conn, t["id"], start + timedelta(minutes=10))
    assert ("one_ring", "critical", "suspend") in [
        (o.finding.rule, o.finding.level, o.step.action) for o in outcomes
    ]
    return t["id"], token


async def test_the_report_sets_the_days_metrics_beside_the_thresholds(
    client: httpx.AsyncClient, pool: asyncpg.Pool, world: World
) -> None:
    day = date(2026, 11, 20)
    tenant, token = await tenant_with_calls(client, pool, world, day)
    url = f"/v1/tenants/{tenant}/compliance/report?from={day}&to={day}"
    report: dict[str, Any] = expect(
        await client.get(url, headers=bearer(token)), 200
    )  # its own users read it
    m = report["metrics"]
    assert (m["outbound_calls"], m["answered"], m["one_ring_calls"], m["distinct_callees"]) == (30, 0, 30, 30)
    assert Decimal(m["one_ring_share"]) == 1 and Decimal(m["failed_rate"]) == 1
    assert m["refused"]["CALLING_HOURS"] == 1 and m["refused"]["OUTBOUND_SUSPENDED"] == 0
    lines = {r["rule"]: r for r in report["rules"]}
    one_ring = lines["one_ring"]
    assert (one_ring["source"], Decimal(one_ring["warning"]), Decimal(one_ring["critical"])) == (
        "tenant",
        Decimal("0.3"),
        Decimal("0.5"),
    )
    assert (Decimal(one_ring["period_value"]), one_ring["worst_level"], one_ring["events"]) == (
        Decimal(1),
        "critical",
        1,
    )
    assert lines["complaints"]["source"] == "platform" and lines["complaints"]["worst_level"] == "ok"
    acted = [(a["rule"], a["level"], a["action"], a["actor"]) for a in report["actions"]]
    assert ("one_ring", "critical", "suspend", "monitor") in acted
    assert report["state"]["suspended_rule"] == "one_ring" and report["state"]["suspended_at"] is not None
    # The day before holds only the two evening calls.
    eve = day - timedelta(days=1)
    before = expect(
        await client.get(
            f"/v1/tenants/{tenant}/compliance/report?from={eve}&to={eve}",
            headers=world.admin,
        ),
        200,
    )
    assert before["metrics"]["outbound_calls"] == 2 and before["actions"] == []


async def test_an_operator_lifts_the_suspension_once_and_the_tenant_may_not(
    client: httpx.AsyncClient, pool: asyncpg.Pool, world: World
) -> None:
    day = date(2026, 11, 21)
    tenant, token = await tenant_with_calls(client, pool, world, day)
    url = f"/v1/tenants/{tenant}/compliance/lift"
    assert (await client.post(url, headers=bearer(token), json={"reason": "please"})).status_code == 403
    bad = await client.post(url, headers=world.admin, json={"what": "everything", "reason": "checked"})
    assert bad.status_code == 422 and any("what" in d["loc"] for d in bad.json()["detail"])
    short = await client.post(url, headers=world.admin, json={"reason": ""})
    assert short.status_code == 422 and any("reason" in d["loc"] for d in short.json()["detail"])
    done = expect(
        await client.post(
            url, headers=world.admin, json={"what": "suspension", "reason": "tenant called back"}
        ),
        200,
    )
    assert (done["suspension_lifted"], done["suspended_rule"], done["throttle_lifted"]) == (
        True,
        "one_ring",
        False,
    )
    again = await client.post(url, headers=world.admin, json={"reason": "again"})
    assert again.status_code == 409, again.text
    async with pool.acquire() as conn:
        audit = await conn.fetchrow(
            "SELECT actor, action FROM audit_log WHERE entity = 'tenant_compliance' AND entity_id = $1",
            str(tenant),
        )
        state = await conn.fetchrow("SELECT * FROM tenant_compliance WHERE tenant_id = $1", tenant)
    assert audit is not None and audit["action"] == "lift"
    assert state is not None and state["outbound_suspended_at"] is None and state["lifted_at"] is not None
    report = expect(
        await client.get(
            f"/v1/tenants/{tenant}/compliance/report?from={day}&to={day + timedelta(days=30)}",
            headers=world.admin,
        ),
        200,
    )
    lifts = [a for a in report["actions"] if a["action"] == "lift"]
    assert len(lifts) == 1 and lifts[0]["actor"] == audit["actor"]


async def test_the_report_names_bad_periods_and_other_tenants(
    client: httpx.AsyncClient, world: World
) -> None:
    url = f"/v1/tenants/{world.a.id}/compliance/report"
    backwards = await client.get(f"{url}?from=2026-11-10&to=2026-11-01", headers=world.admin)
    assert backwards.status_code == 422 and "to" in str(backwards.json()["detail"])
    other = await client.get(
        f"{url}?from=2026-11-01&to=2026-11-02", headers=bearer(world.b.tokens["tenant_admin"])
    )
    assert other.status_code in (403, 404), other.text
    missing = await client.get(
        f"/v1/tenants/{world.a.id}/compliance/report?from=2026-11-01", headers=world.admin
    )
    assert missing.status_code == 422 and any("to" in d["loc"] for d in missing.json()["detail"])
