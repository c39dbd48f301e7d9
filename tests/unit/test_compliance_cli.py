"""`softswitch compliance ...` against the real database: a tenant's own rule set, shown
with its source, changed option by option and reset; complaints added and listed; errors
as `error: ... (field)` with exit 1 (a refused value) or 2 (bad usage). The platform's
rules are only read here."""

from __future__ import annotations

import json
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from dialplan.compliance import KINDS
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
    return int(as_json(cli("tenant", "create", f"CLI compliance {uuid.uuid4().hex[:10]}", "--json"))["id"])


def test_platform_rules_listed(cli: Any) -> None:
    rules = as_json(cli("compliance", "rules", "list", "--json"))
    assert [r["kind"] for r in rules] == list(KINDS)
    table = cli("compliance", "rules", "list").stdout
    assert table.splitlines()[0].split()[:3] == ["KIND", "PARAMS", "WARNING"]
    assert "calling_hours" in table


def test_a_tenants_rule_set_changed_and_reset(cli: Any) -> None:
    tid = new_tenant(cli)
    start = {r["kind"]: r for r in as_json(cli("compliance", "rules", "list", "--tenant", tid, "--json"))}
    assert all(r["source"] == "platform" for r in start.values())

    own = as_json(
        cli(
            "compliance",
            "rules",
            "set",
            "calling_hours",
            "--tenant",
            tid,
            "--params",
            '{"start": "09:00"}',
            "--json",
        )
    )
    # only the given key changed; the rest is the rule that was in force
    assert own["params"] == {**start["calling_hours"]["params"], "start": "09:00"}
    assert (own["source"], own["version"], own["tenant_id"]) == ("tenant", 1, tid)
    again = as_json(
        cli("compliance", "rules", "set", "calling_hours", "--tenant", tid, "--disabled", "--json")
    )
    assert (again["enabled"], again["version"], again["params"]["start"]) == (False, 2, "09:00")

    monitor = as_json(
        cli(
            "compliance", "rules", "set", "complaints", "--tenant", tid,
            "--warning", "1", "--critical", "2", "--action", "alert", "--json",
        )
    )  # fmt: skip
    assert (monitor["warning"], monitor["critical"], monitor["action"]) == ("1.0000", "2.0000", "alert")

    listed = cli("compliance", "rules", "list", "--tenant", tid).stdout
    rows = {line.split()[0]: line.split()[1] for line in listed.splitlines()[1:]}
    assert rows["calling_hours"] == "tenant" and rows["complaints"] == "tenant"
    assert rows["robocall"] == "platform"

    back = as_json(cli("compliance", "rules", "reset", "calling_hours", "--tenant", tid, "--json"))
    assert back["source"] == "platform" and back["params"] == start["calling_hours"]["params"]
    after = {r["kind"]: r for r in as_json(cli("compliance", "rules", "list", "--tenant", tid, "--json"))}
    assert after["calling_hours"]["source"] == "platform"
    assert after["complaints"]["source"] == "tenant"


def test_rule_errors_name_the_field(cli: Any) -> None:
    tid = new_tenant(cli)
    bad = cli(
        "compliance", "rules", "set", "calling_hours", "--tenant", tid, "--params", '{"end": "25:00"}', code=1
    )
    assert bad.stderr.startswith("error: ") and "(params.end)" in bad.stderr
    assert "(params)" in cli("compliance", "rules", "set", "calling_hours", "--params", "[1]", code=2).stderr
    assert "(params)" in cli("compliance", "rules", "set", "calling_hours", "--params", "{", code=2).stderr
    assert "(warning)" in cli("compliance", "rules", "set", "robocall", "--warning", "lots", code=2).stderr
    assert "(kind)" in cli("compliance", "rules", "set", "no_such", "--tenant", tid, code=1).stderr
    assert "(kind)" in cli("compliance", "rules", "reset", "robocall", "--tenant", tid, code=1).stderr
    assert "(tenant_id)" in cli("compliance", "rules", "list", "--tenant", 9007199254740000, code=1).stderr
    action = cli("compliance", "rules", "set", "robocall", "--tenant", tid, "--action", "shout", code=2)
    assert "(action)" in action.stderr
    assert "Traceback" not in bad.output


def test_complaints_added_and_listed(cli: Any) -> None:
    tid = new_tenant(cli)
    number = "400" + f"{secrets.randbelow(10**7):07d}"
    cli("number", "assign", tid, number)
    at = (datetime.now(UTC) - timedelta(hours=3)).replace(microsecond=0)
    made = as_json(
        cli(
            "compliance", "complaints", "add", "--tenant", tid, "--number", number,
            "--callee", "13912345678", "--category", "robocall", "--occurred-at", at.isoformat(),
            "--note", "from the carrier", "--json",
        )
    )  # fmt: skip
    assert (made["tenant_id"], made["number"], made["category"]) == (tid, number, "robocall")
    assert datetime.fromisoformat(made["occurred_at"]) == at

    listed = as_json(cli("compliance", "complaints", "list", "--tenant", tid, "--json"))
    assert [c["id"] for c in listed] == [made["id"]]
    assert (
        as_json(cli("compliance", "complaints", "list", "--tenant", tid, "--category", "fraud", "--json"))
        == []
    )
    since = (at + timedelta(minutes=1)).isoformat()
    assert as_json(cli("compliance", "complaints", "list", "--tenant", tid, "--from", since, "--json")) == []
    table = cli("compliance", "complaints", "list", "--tenant", tid).stdout
    assert "robocall" in table and number in table

    common = (
        "compliance",
        "complaints",
        "add",
        "--tenant",
        tid,
        "--callee",
        "13912345678",
        "--category",
        "fraud",
    )
    naive = cli(*common, "--number", number, "--occurred-at", "2024-05-01T10:00", code=2)
    assert "(occurred_at)" in naive.stderr
    foreign = cli(*common, "--number", "02100000000", "--occurred-at", at.isoformat(), code=1)
    assert "(number)" in foreign.stderr and "02100000000" not in foreign.stderr  # masked
    category = cli(*common[:-1], "rude", "--number", number, "--occurred-at", at.isoformat(), code=2)
    assert "(category)" in category.stderr
