"""IVR through the real Asterisk with RFC 2833 DTMF from SIPp: a two-level menu reaching
a destination that answers, an invalid digit then a retry, the timeout path, and the phone
self-service line (a balance query; a recharge card redeemed once although keyed twice)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from decimal import Decimal

import asyncpg
import pytest

from scripts.devstack.process import ServiceProcess
from scripts.devstack.sipp import SippUas, run_uac
from scripts.devstack.stack import LocalStack
from softswitch.core.settings import Settings
from tests.e2e.conftest import (
    OWNER,
    Engine,
    active_number,
    api_ok,
    changed,
    dialled_legs,
    mobile,
    restarted,
    unique_caller,
    wait_for,
)
from tests.e2e.hangup import ended_when, live_call

pytestmark = pytest.mark.stack

SELFSERVICE = "95013"


def ivr_number(service: ServiceProcess) -> tuple[int, str, str, str]:
    """A number whose calls go to a two-level menu: 1 -> sales menu, 2 -> sales group;
    silence -> the default group."""
    tenant, number_id, number = active_number(service)
    base = f"/v1/tenants/{tenant}"
    sales, default = mobile(), mobile()
    for dest, group in ((sales, "sales"), (default, "default")):
        changed(
            service,
            "POST",
            f"{base}/bindings",
            201,
            json={"number_id": number_id, "destination": dest, "group_name": group, **OWNER},
        )
    # short (1.3 s): the timeout path hears it twice in full
    api_ok(service.request("PUT", f"{base}/prompts/welcome/text", json={"text": "按一。"}))
    changed(
        service,
        "POST",
        f"{base}/ivr-menus",
        201,
        json={
            "name": "sales",
            "definition": {
                "prompt": "welcome",
                "timeout_ms": 3000,
                "retries": 1,
                "options": {"2": {"action": "transfer", "group": "sales"}},
                "default": {"action": "hangup"},
            },
        },
    )
    changed(
        service,
        "POST",
        f"{base}/ivr-menus",
        201,
        json={
            "name": "main",
            "definition": {
                "prompt": "welcome",
                "timeout_ms": 1500,
                "retries": 1,
                "options": {"1": {"action": "menu", "target": "sales"}},
                "default": {"action": "transfer", "group": "default"},
            },
        },
    )
    policy = changed(
        service,
        "POST",
        f"{base}/time-policies",
        201,
        json={"name": "ivr", "definition": {"default": {"kind": "ivr", "ref": "main"}}},
    )
    num = api_ok(service.request("GET", f"{base}/numbers/{number_id}"))
    changed(
        service,
        "PATCH",
        f"{base}/numbers/{number_id}",
        json={"time_policy_id": policy["id"]},
        headers={"If-Match": f'"{num["version"]}"'},
    )
    return tenant, number, sales, default


async def decided(db: asyncpg.Connection, caller: str) -> asyncpg.Record:
    deadline = time.monotonic() + 5
    while True:
        row = await db.fetchrow("SELECT * FROM calls WHERE caller = $1 ORDER BY id DESC LIMIT 1", caller)
        if row is not None and row["action"] != "ivr" or time.monotonic() > deadline:
            assert row is not None
            return row
        await asyncio.sleep(0.02)


@pytest.mark.parametrize(
    ("keys", "group"),
    [
        ("12", "sales"),  # two levels down to the sales group
        ("912", "sales"),  # 9 is not an option: the menu says so and listens again
        ("", "default"),  # silence: timeouts, then the menu's default action
    ],
    ids=["two-levels", "invalid-then-retry", "timeout"],
)
async def test_menu_reaches_the_destination(
    db: asyncpg.Connection,
    service: ServiceProcess,
    destination_carrier: SippUas,
    keys: str,
    group: str,
    engine: Engine,
    stack: LocalStack,
) -> None:
    _tenant, number, sales, default = ivr_number(service)
    caller = unique_caller()
    call = asyncio.create_task(
        asyncio.to_thread(
            run_uac,
            number,
            caller,
            dtmf=keys,
            dtmf_gap_ms=600,  # each key ends a one-key menu and the next menu listens at once
            hold_ms=12000,
            timeout_s=60,
            target=engine.carrier,
        )
    )

    async def bridged() -> str | None:  # the caller talks to the destination the menu chose
        live = live_call(service, caller, "bridged")
        return live["linkedid"] if live else None

    result = await ended_when(call, bridged, stack, engine, budget=25)
    assert result.final_status == 200, result.message_log[-1500:]
    row = await decided(db, caller)
    assert (row["action"], row["reason"], row["why"]) == ("dial", "ROUTED", "ivr")
    assert list(row["destinations"]) == [sales if group == "sales" else default]
    legs = await dialled_legs(db, row["linkedid"], engine)
    assert [answered for _, answered in legs] == [True], legs


def _selfservice_tenant(service: ServiceProcess) -> int:
    tenant, _number_id, _number = active_number(service)  # funded with 100.00
    current = api_ok(service.request("GET", f"/v1/tenants/{tenant}"))
    api_ok(
        service.request(
            "PATCH",
            f"/v1/tenants/{tenant}",
            json={"selfservice_password": "246810"},
            headers={"If-Match": f'"{current["version"]}"'},
        )
    )
    return tenant


async def test_selfservice_balance_query(
    db: asyncpg.Connection, service: ServiceProcess, engine: Engine, settings: Settings, stack: LocalStack
) -> None:
    tenant = _selfservice_tenant(service)
    caller = unique_caller()
    # What the caller is told, by the engine's own account: Asterisk's AGI commands in the
    # service's debug log (the service restarted at DEBUG), FreeSWITCH's applications in its log.
    fs_log = settings.stack.dir / "logs" / "freeswitch.log"
    serving = (
        restarted(service, SOFTSWITCH_LOG_LEVEL="DEBUG")
        if engine.is_asterisk
        else contextlib.nullcontext(service)
    )
    with serving as svc:
        log_path = svc.log_path if engine.is_asterisk else fs_log
        mark = log_path.stat().st_size

        def told() -> str:
            with open(log_path, "rb") as f:
                f.seek(mark)
                return f.read().decode(errors="replace")

        def said_the_balance(log: str) -> bool:
            if engine.is_asterisk:
                number = "SAY NUMBER 100 " in log or "SAY NUMBER 100\n" in log or 'SAY NUMBER 100 ""' in log
            else:
                number = "say(en number pronounced 100)" in log
            return number and "softswitch/system/selfservice/balance-is" in log

        async def balance_said() -> str | None:  # then the engine ends the call
            live = live_call(svc, caller)
            return live["linkedid"] if live and said_the_balance(told()) else None

        # the account and the password each answered at once (no prompt to wait out), the
        # menu once the password is checked; 1 interrupts the menu's prompt
        call = asyncio.create_task(
            asyncio.to_thread(
                run_uac,
                SELFSERVICE,
                caller,
                dtmf=f"{tenant}#w246810#ww1",
                dtmf_gap_ms=250,
                hold_ms=8000,
                timeout_s=90,
                target=engine.carrier,
            )
        )
        result = await ended_when(call, balance_said, stack, engine, budget=30)
        assert result.final_status == 200
        log = told()
    # 100.00 yuan: "your balance is", the number 100, "yuan" (no fen to say)
    if engine.is_asterisk:
        assert "SAY NUMBER 100 " in log or "SAY NUMBER 100\n" in log or 'SAY NUMBER 100 ""' in log, log[
            -3000:
        ]
    else:
        assert "say(en number pronounced 100)" in log, log[-3000:]
    assert "softswitch/system/selfservice/balance-is" in log


async def test_selfservice_recharge_card_redeemed_once_even_if_keyed_twice(
    db: asyncpg.Connection, service: ServiceProcess, engine: Engine
) -> None:
    tenant = _selfservice_tenant(service)
    batch = api_ok(
        service.request(
            "POST",
            "/v1/recharge-card-batches",
            json={
                "count": 1,
                "face_value": "50.00",
                "expires_at": "2030-01-01T00:00:00+08:00",
            },
        ),
        201,
    )
    card = batch["cards"][0]
    number, pin = card["card_number"], card["pin"]
    # Each entry answered at once by the next prompt (w: 0.5 s), the password and the menu's
    # 2 after the account's check; after the PIN, the card redeemed and its 50 yuan said
    # (recharge-ok 3.0 s, "fifty" 1.2 s, yuan 1.0 s: 7.5 s) before the menu listens again.
    keys = f"{tenant}#w246810#ww2w{number}#w{pin}#,,,2w{number}#w{pin}#"
    caller = unique_caller()
    result = await asyncio.to_thread(
        run_uac,
        SELFSERVICE,
        caller,
        dtmf=keys,
        # 58 keys: a brisk typist, 80 ms of silence between the 120 ms tones (Asterisk
        # wants 45 ms between one digit's end and the next: channel.c's AST_MIN_DTMF_GAP)
        dtmf_gap_ms=200,
        hold_ms=1000,
        timeout_s=150,
        target=engine.carrier,
    )
    assert result.final_status == 200
    # the call is over for the service too (the engine's hang-up seen) before the money is read
    wait_for("the call's end seen by the service", lambda: live_call(service, caller) is None, 10)
    rows = await db.fetch(
        "SELECT amount FROM ledger_entries WHERE tenant_id = $1 AND kind = 'recharge' ORDER BY id", tenant
    )
    assert [r["amount"] for r in rows] == [Decimal("100.0000"), Decimal("50.0000")]  # funding + the card
    acct = await db.fetchrow("SELECT balance FROM accounts WHERE tenant_id = $1", tenant)
    assert acct["balance"] == Decimal("150.0000")
    state = await db.fetchval("SELECT state FROM recharge_cards WHERE card_number = $1", number)
    assert state == "redeemed"
