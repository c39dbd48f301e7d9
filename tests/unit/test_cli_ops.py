"""The operator CLI against the real database: a tenant from creation to a bound, approved
number with an extension and money on its account; errors as `error: ...` with exit 1."""

from __future__ import annotations

import json
import secrets
import uuid
from decimal import Decimal
from typing import Any

import pytest
from typer.testing import CliRunner

from softswitch.cli import app
from softswitch.core.settings import Settings
from tests.conftest import require_stack


@pytest.fixture
def cli() -> Any:
    require_stack(Settings())
    runner = CliRunner()

    def invoke(*args: str, code: int = 0) -> Any:
        result = runner.invoke(app, [str(a) for a in args])
        assert result.exit_code == code, (args, result.stdout, result.stderr, result.exception)
        if code == 0:
            assert result.exception is None
        return result

    return invoke


def as_json(result: Any) -> Any:
    return json.loads(result.stdout)


def new_tenant(cli: Any) -> int:
    out = as_json(cli("tenant", "create", f"CLI Test {uuid.uuid4().hex[:10]}", "--json"))
    assert out["state"] == "active"
    return out["id"]


def test_onboarding_to_money_and_calls(cli: Any) -> None:
    tid = new_tenant(cli)
    # the shared database holds many tenants: page from just before this one
    assert str(tid) in cli("tenant", "list", "--after", str(int(tid) - 1), "--limit", "5").stdout
    assert as_json(cli("tenant", "show", tid, "--json"))["id"] == tid

    number = "400" + f"{secrets.randbelow(10**7):07d}"
    assigned = as_json(cli("number", "assign", tid, number, "--json"))
    assert (assigned["number"], assigned["state"]) == (number, "reserved")
    nid = assigned["id"]

    docs = as_json(cli("document", "list", tid, "--json"))
    assert docs and all(d["status"] == "missing" for d in docs)
    approved = as_json(cli("document", "approve", tid, "--all", "--json"))
    assert {d["id"] for d in approved} == {d["id"] for d in docs}
    assert all(d["status"] == "approved" for d in as_json(cli("document", "list", tid, "--json")))

    assert as_json(cli("number", "submit", tid, nid, "--json"))["state"] == "pending_approval"
    assert as_json(cli("number", "approve", tid, nid, "--json"))["state"] == "active"
    listed = cli("number", "list", tid)
    assert number in listed.stdout and "active" in listed.stdout

    ext = as_json(cli("extension", "add", tid, "801", "--name", "Front desk", "--json"))
    assert ext["endpoint_id"] == f"t{tid}x801" and len(ext["password"]) >= 20
    ext2 = cli("extension", "add", tid, "802", "--password", "correct-horse-9")
    assert "correct-horse-9" not in ext2.stdout  # a given password is never echoed
    assert {e["extension"] for e in as_json(cli("extension", "list", tid, "--json"))} == {"801", "802"}

    bound = as_json(
        cli(
            "bind",
            tid,
            nid,
            "13800138000",
            "--owner-name",
            "Zhang San",
            "--owner-id",
            "310101199001011234",
            "--json",
        )
    )
    assert bound["owner_id_number"] == "3101**********1234"
    binding = as_json(cli("binding", "list", tid, "--json"))
    assert binding[0]["destination"] == "13800138000"
    assert binding[0]["owner_id_number"] == "3101**********1234"

    cli("recharge", tid, "100.10", "--reference", "receipt-1")
    entry = as_json(cli("recharge", tid, "0.20", "--json"))
    assert Decimal(entry["balance_after"]) == Decimal("100.30")
    account = as_json(cli("balance", tid, "--json"))
    assert Decimal(account["balance"]) == Decimal("100.30")
    assert "100.3" in cli("balance", tid).stdout

    assert as_json(cli("calls", tid, "--json")) == []
    assert "(none)" in cli("calls", tid, "--reason", "blacklisted").stdout


def test_recharge_is_idempotent_on_its_key(cli: Any) -> None:
    tid = new_tenant(cli)
    key = f"cli-test-{uuid.uuid4()}"
    first = as_json(cli("recharge", tid, "5", "--idempotency-key", key, "--json"))
    again = cli("recharge", tid, "5", "--idempotency-key", key, "--json")
    assert as_json(again)["id"] == first["id"]
    assert "not credited again" in again.stderr
    assert Decimal(as_json(cli("balance", tid, "--json"))["balance"]) == Decimal("5")
    other = cli("recharge", tid, "6", "--idempotency-key", key, code=1)
    assert other.stderr.startswith("error: ") and "(Idempotency-Key)" in other.stderr
    assert cli("recharge", tid, "1.001", code=2).stderr.startswith("error: ")


def test_forbidden_category_is_refused(cli: Any) -> None:
    result = cli("tenant", "create", f"CLI Loans {uuid.uuid4().hex[:8]}", "--category", "loans", code=1)
    assert "business category 'loans' is forbidden" in result.stderr
    assert "(business_category)" in result.stderr
    assert "Traceback" not in result.output


def test_number_approval_waits_for_documents(cli: Any) -> None:
    tid = new_tenant(cli)
    number = "400" + f"{secrets.randbelow(10**7):07d}"
    nid = as_json(cli("number", "assign", tid, number, "--json"))["id"]
    cli("number", "submit", tid, nid)
    result = cli("number", "approve", tid, nid, code=1)
    assert "onboarding documents not approved yet" in result.stderr
    assert "business_licence" in result.stderr and "(documents)" in result.stderr
    assert cli("tenant", "show", 2**31 - 1, code=1).stderr.startswith("error: tenant")


def test_a_customer_pbx_trunk_by_the_cli(cli: Any) -> None:
    """`extension pbx-add` (issue 20): refused naming channels without a trunk module, made
    with its range and one channel once the tenant has TRUNK and EXT-16."""
    import asyncio

    import asyncpg

    tid = new_tenant(cli)
    refused = cli("extension", "pbx-add", tid, "8000", "--range", "8100-8115", code=1)
    assert refused.stderr.startswith("error: ") and "(channels)" in refused.stderr

    async def subscribe() -> None:
        conn = await asyncpg.connect(Settings().database.dsn())
        try:
            await conn.execute(
                "INSERT INTO subscriptions (tenant_id, package_id, starts_on) "
                "SELECT $1, id, current_date - 1 FROM packages WHERE code IN ('TRUNK', 'EXT-16')",
                int(tid),
            )
        finally:
            await conn.close()

    asyncio.run(subscribe())
    made = as_json(cli("extension", "pbx-add", tid, "8000", "--range", "8100-8115", "--json"))
    assert (made["device_kind"], made["range_first"], made["range_last"], made["channels"]) == (
        "pbx",
        "8100",
        "8115",
        1,
    )
    assert len(made["password"]) >= 20
