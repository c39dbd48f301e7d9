"""`softswitch compliance report|lift` against the real database: a tenant's complaints trip
the complaints rule (the platform's 5, suspend) when `softswitch jobs run
compliance_monitors` judges it; the report shows it beside the thresholds; the operator
lifts it once (exit 1 the second time); usage errors exit 2."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from typer.testing import CliRunner

from softswitch.cli import app
from softswitch.core.settings import Settings
from tests.conftest import require_stack


@pytest.fixture
def cli() -> Any:
    require_stack(Settings())
    runner = CliRunner()

    def invoke(*args: object, code: int = 0) -> Any:
        result = runner.invoke(app, [str(a) for a in args])
        assert result.exit_code == code, (args, result.stdout, result.stderr, result.exception)
        return result

    return invoke


async def complaints(tenant: int, now: datetime) -> None:
    conn = await asyncpg.connect(Settings().database.dsn())
    try:
        for i in range(5):
            await conn.execute(
                "INSERT INTO complaints (tenant_id, number, callee, category, occurred_at) "
                "VALUES ($1, '4008001234', $2, 'harassment', $3)",
                tenant,
                f"1390000{i:04d}",
                now - timedelta(hours=i + 1),
            )
    finally:
        await conn.close()


def test_report_and_lift(cli: Any) -> None:
    tenant = int(
        json.loads(cli("tenant", "create", f"CLI oversight {uuid.uuid4().hex[:10]}", "--json").stdout)["id"]
    )
    now = datetime.now(UTC)
    asyncio.run(complaints(tenant, now))
    # The scheduler's job, run now from the shell: it judges every active tenant.
    ran = json.loads(cli("jobs", "run", "compliance_monitors").stdout)
    assert ran["outcome"] == "ok" and ran["detail"]["changes"] >= 1, ran
    today = now.date().isoformat()
    days = (
        "--from",
        (now.date() - timedelta(days=1)).isoformat(),
        "--to",
        (now.date() + timedelta(days=1)).isoformat(),
    )
    report = json.loads(cli("compliance", "report", "--tenant", tenant, *days, "--json").stdout)
    lines = {r["rule"]: r for r in report["rules"]}
    assert report["metrics"]["complaints"] == 5
    assert (lines["complaints"]["worst_level"], lines["complaints"]["source"]) == ("critical", "platform")
    assert report["state"]["suspended_rule"] == "complaints"
    # the same local days: the complaints of the last 5 hours span two of Shanghai's days
    # between 16:00 and 21:00 UTC (the report's days are the tenant's)
    table = cli("compliance", "report", "--tenant", tenant, *days).stdout
    assert "complaints 5" in table and "RULE" in table and "suspend" in table

    lifted = cli(
        "compliance",
        "lift",
        "--tenant",
        tenant,
        "--what",
        "suspension",
        "--reason",
        "settled with the carrier",
    )
    assert "suspension_lifted  True" in lifted.stdout
    again = cli("compliance", "lift", "--tenant", tenant, "--reason", "again", code=1)
    assert "(what)" in again.stderr or "(what)" in again.stdout
    cli("compliance", "lift", "--tenant", tenant, "--what", "everything", "--reason", "x" * 5, code=2)
    cli("compliance", "report", "--tenant", tenant, "--from", "yesterday", "--to", today, code=2)
    after = json.loads(cli("compliance", "report", "--tenant", tenant, *days, "--json").stdout)
    assert [a["actor"].startswith("cli:") for a in after["actions"] if a["action"] == "lift"] == [True]
    assert after["state"]["suspended_at"] is None
