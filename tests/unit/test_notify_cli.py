"""`softswitch notices ...` against the real database: endpoints added (a webhook's key
printed once, never listed), changed, disabled and removed; the delivery log of a notice;
a dead delivery sent again; errors as `error: ... (field)` with exit 1 (refused) or 2
(bad usage)."""

from __future__ import annotations

import asyncio
import json
import uuid
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


def out(result: Any) -> Any:
    return json.loads(result.stdout)


async def notice(tenant: int) -> int:
    # written as the billing cycle does, at a time no running service reaches (its
    # deliveries stay pending for this test)
    conn = await asyncpg.connect(Settings().database.dsn())
    try:
        return int(
            await conn.fetchval(
                "INSERT INTO outbox (tenant_id, kind, payload, created_at) "
                "VALUES ($1, 'low_balance', '{}', '2100-01-01T00:00Z') RETURNING id",
                tenant,
            )
        )
    finally:
        await conn.close()


def test_endpoints_and_the_delivery_log_from_the_shell(cli: Any) -> None:
    tenant = out(cli("tenant", "create", f"CLI notices {uuid.uuid4().hex[:10]}", "--json"))["id"]
    hook = out(
        cli(
            "notices",
            "endpoints",
            "add",
            "--tenant",
            tenant,
            "--webhook",
            "https://crm.example.com/h",
            "--kinds",
            "low_balance,missed_call",
            "--json",
        )
    )
    assert hook["secret"].startswith("whsec_") and hook["kinds"] == ["low_balance", "missed_call"]
    shown = cli(
        "notices", "endpoints", "add", "--tenant", tenant, "--email", "ops@example.com", "--language", "en"
    )
    assert "ops@example.com" in shown.stdout and "shown only now" not in shown.stderr  # no key for e-mail
    listed = out(cli("notices", "endpoints", "list", "--tenant", tenant, "--json"))
    assert [e["channel"] for e in listed] == ["webhook", "email"] and all("secret" not in e for e in listed)
    table = cli("notices", "endpoints", "list", "--tenant", tenant).stdout
    assert table.splitlines()[0].split()[:3] == ["ID", "CHANNEL", "ADDRESS"]
    assert hook["secret"] not in table

    n = asyncio.run(notice(tenant))
    log = out(cli("notices", "deliveries", "--tenant", tenant, "--notice", n, "--json"))
    assert sorted((d["channel"], d["state"]) for d in log) == [("email", "pending"), ("webhook", "pending")]
    off = out(cli("notices", "endpoints", "set", hook["id"], "--tenant", tenant, "--disabled", "--json"))
    assert off["enabled"] is False and off["version"] == 2
    dead = out(cli("notices", "deliveries", "--tenant", tenant, "--state", "dead", "--json"))
    assert [(d["endpoint_id"], d["last_reason"]) for d in dead] == [(hook["id"], "ENDPOINT_DISABLED")]
    newest = out(cli("notices", "deliveries", "--state", "dead", "--json"))  # every tenant's
    assert dead[0]["id"] in [d["id"] for d in newest] and {d["state"] for d in newest} == {"dead"}
    refused = cli("notices", "retry", dead[0]["id"], "--tenant", tenant, "--notice", n, code=1)
    assert "disabled or removed" in refused.stderr
    cli("notices", "endpoints", "set", hook["id"], "--tenant", tenant, "--enabled")
    again = out(cli("notices", "retry", dead[0]["id"], "--tenant", tenant, "--notice", n, "--json"))
    assert (again["state"], again["attempts"]) == ("pending", 0)

    rotated = out(cli("notices", "endpoints", "rotate-secret", hook["id"], "--tenant", tenant, "--json"))
    assert rotated["secret"] != hook["secret"]
    cli("notices", "endpoints", "remove", hook["id"], "--tenant", tenant)
    assert [e["channel"] for e in out(cli("notices", "endpoints", "list", "--tenant", tenant, "--json"))] == [
        "email"
    ]


def test_bad_input_names_the_field(cli: Any) -> None:
    tenant = out(cli("tenant", "create", f"CLI notices {uuid.uuid4().hex[:10]}", "--json"))["id"]
    both = cli("notices", "endpoints", "add", "--tenant", tenant, code=2)
    assert "exactly one of --email and --webhook" in both.stderr
    bad = cli("notices", "endpoints", "add", "--tenant", tenant, "--email", "not-an-address", code=2)
    assert "(address)" in bad.stderr
    slow = cli(
        "notices",
        "endpoints",
        "add",
        "--tenant",
        tenant,
        "--email",
        "a@example.com",
        "--timeout",
        "60",
        code=2,
    )
    assert "(timeout_s)" in slow.stderr
    missing = cli("notices", "endpoints", "set", 999999999, "--tenant", tenant, "--enabled", code=1)
    assert "not found (id)" in missing.stderr
    state = cli("notices", "deliveries", "--tenant", tenant, "--state", "lost", code=2)
    assert "(state)" in state.stderr
    assert "(tenant)" in cli("notices", "deliveries", "--notice", 1, code=2).stderr
