"""The cluster layout's SIP edge (issue 18): Kamailio at 127.0.0.10:5060 in front of the
real Asterisk and FreeSWITCH (scripts/devstack/edge.py, docker/kamailio/), seen from the
wire (SIPp) and from the service's call records:

- the carrier's calls to the edge are spread over both engines and each is decided by the
  control plane like a call sent to the engine itself;
- an engine that stops answering (FreeSWITCH's carrier profile stopped) is out of rotation
  within 10 s, calls meanwhile go to the other, and it is back once it answers again;
- a 4-channel package takes 100 simultaneous calls from the carrier through the edge, spread
  over both engines: exactly 4 are up, the others refused CHANNEL_LIMIT on either engine
  (the carrier's address is trusted: its burst is not taken for a flood);
- a password-guessing run through the edge (REGISTERs with wrong passwords, relayed to the
  engine holding registrations) gets its address banned after 5 failures, and the account
  locked out after 10 from anywhere (even the right password is refused then), while the
  carrier's calls go through and another account registers;
- the control plane records the edge's bans (migration 0032, the service with edge.enabled):
  listed through the API with their reason and expiry, audited, counted, and lifted
  through the API, after which the edge answers the address again;
- a flood of requests from one address (127.0.0.11) gets it banned while a call from the
  carrier's address goes through at the same time; a scanner's user agent is never
  answered, from an address the edge answers otherwise."""

from __future__ import annotations

import asyncio
import random
import re
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import asyncpg
import pytest

from scripts.devstack.edge import KamailioEdge
from scripts.devstack.process import ServiceProcess
from scripts.devstack.sipp import SippResult, SippUas, run_register, run_uac
from scripts.devstack.stack import LocalStack
from softswitch.core.settings import Settings
from tests.conftest import IN_CI
from tests.e2e.conftest import (
    OWNER,
    active_number,
    api_ok,
    changed,
    extension,
    mobile,
    require_freeswitch,
    restarted,
    unique_caller,
)
from tests.e2e.test_prepaid import account, fund_live

pytestmark = pytest.mark.stack

FLOODER, SCANNER = "127.0.0.11", "127.0.0.12"
ASTERISK_CALL = re.compile(r"^softswitch-\d+\.\d+$")  # Asterisk's linkedids; FreeSWITCH's are UUIDs


@pytest.fixture(scope="module")
def edge(stack: LocalStack) -> Iterator[KamailioEdge]:
    """The edge as `stack up --cluster` starts it, with both engines in rotation."""
    require_freeswitch(stack)
    kamailio = KamailioEdge(stack)
    if not kamailio.installed():
        if IN_CI:
            pytest.fail("CI=true and Kamailio is not installed (scripts/bootstrap.sh installs it)")
        pytest.skip("Kamailio is not installed here (scripts/bootstrap.sh installs Debian's kamailio)")
    kamailio.up()
    deadline = time.monotonic() + 15
    while not all(kamailio.engines().values()):
        assert time.monotonic() < deadline, f"engines not in rotation: {kamailio.engines()}"
        time.sleep(0.2)
    yield kamailio


def bound_number(service: ServiceProcess) -> str:
    return tenant_and_bound_number(service)[1]


def tenant_and_bound_number(service: ServiceProcess) -> tuple[int, str]:
    """A new tenant's active 400 number, bound to a mobile that answers."""
    tenant, number_id, number = active_number(service)
    body = {"number_id": number_id, "destination": mobile(), **OWNER}
    changed(service, "POST", f"/v1/tenants/{tenant}/bindings", json=body)
    return tenant, number


def via_edge(settings: Settings, number: str, caller: str) -> SippResult:
    return run_uac(
        number, caller, hold_ms=300, timeout_s=20, target=f"{settings.edge.host}:{settings.edge.port}"
    )


async def engine_of_call(db: asyncpg.Connection, caller: str) -> str:
    deadline = time.monotonic() + 10
    while True:
        linkedid = await db.fetchval(
            "SELECT linkedid FROM calls WHERE caller = $1 AND answered_at IS NOT NULL", caller
        )
        if linkedid is not None:
            return "asterisk" if ASTERISK_CALL.match(linkedid) else "freeswitch"
        assert time.monotonic() < deadline, f"no answered call record from {caller}"
        await asyncio.sleep(0.1)


async def calls_land_on(db: asyncpg.Connection, settings: Settings, number: str, n: int) -> list[str]:
    engines = []
    for _ in range(n):
        caller = unique_caller()
        result = await asyncio.to_thread(via_edge, settings, number, caller)
        assert result.final_status == 200, result.message_log[-2000:]
        engines.append(await engine_of_call(db, caller))
    return engines


async def test_calls_to_the_edge_are_spread_over_both_engines_and_routed_by_the_control_plane(
    db: asyncpg.Connection,
    service: ServiceProcess,
    destination_carrier: SippUas,
    settings: Settings,
    edge: KamailioEdge,
) -> None:
    number = bound_number(service)
    # round robin over the engines in rotation: two calls in a row, one each
    assert sorted(await calls_land_on(db, settings, number, 2)) == ["asterisk", "freeswitch"]


async def test_an_engine_that_stops_answering_leaves_the_rotation_and_comes_back(
    db: asyncpg.Connection,
    service: ServiceProcess,
    destination_carrier: SippUas,
    settings: Settings,
    stack: LocalStack,
    edge: KamailioEdge,
) -> None:
    number = bound_number(service)
    fs_uri = f"sip:{settings.freeswitch.sip_host}:{settings.freeswitch.carrier_port}"

    async def until_rotation(in_rotation: bool, budget: float) -> float:
        started = time.monotonic()
        while edge.engines().get(fs_uri) is not in_rotation:
            assert time.monotonic() - started < budget, f"in rotation != {in_rotation}: {edge.engines()}"
            await asyncio.sleep(0.1)
        return time.monotonic() - started

    stack.fs_cli("sofia profile carrier stop")
    try:
        out_s = await until_rotation(False, 10.0)
        print(f"FreeSWITCH out of rotation {out_s:.1f} s after its carrier profile stopped")
        # meanwhile every call goes to Asterisk
        assert await calls_land_on(db, settings, number, 2) == ["asterisk", "asterisk"]
    finally:
        stack.fs_cli("sofia profile carrier start")
    back_s = await until_rotation(True, 10.0)
    print(f"FreeSWITCH back in rotation {back_s:.1f} s after its carrier profile started")
    assert sorted(await calls_land_on(db, settings, number, 2)) == ["asterisk", "freeswitch"]


async def test_a_4_channel_package_holds_for_100_calls_spread_by_the_edge_over_both_engines(
    db: asyncpg.Connection,
    service: ServiceProcess,
    destination_carrier: SippUas,
    settings: Settings,
    edge: KamailioEdge,
) -> None:
    tenant, number_id, number = active_number(service)
    await fund_live(service, tenant, number_id)
    await db.execute("UPDATE accounts SET channel_cap = 4 WHERE tenant_id = $1", tenant)
    target = f"{settings.edge.host}:{settings.edge.port}"
    result = await asyncio.to_thread(
        run_uac,
        number,
        unique_caller(),
        target=target,
        calls=100,
        rate=100,
        limit=100,
        hold_ms=4000,
        timeout_s=60,
        trace=True,
    )
    calls = list(result.calls.values())
    assert len(calls) == 100, len(calls)
    assert Counter(c.final_status for c in calls) == {200: 4, 486: 96}
    deadline = time.monotonic() + 10
    while await db.fetchval(
        "SELECT count(*) FROM calls WHERE tenant_id = $1 AND reason = 'ROUTED' AND settled_at IS NULL", tenant
    ):
        assert time.monotonic() < deadline, "the routed calls were not all settled"
        await asyncio.sleep(0.2)
    rows = await db.fetch("SELECT linkedid, reason FROM calls WHERE tenant_id = $1", tenant)
    outcomes = Counter(r["reason"] for r in rows)
    assert outcomes == {"ROUTED": 4, "CHANNEL_LIMIT": 96}, outcomes
    engines = Counter(("asterisk" if ASTERISK_CALL.match(r["linkedid"]) else "freeswitch") for r in rows)
    print(f"100 calls through the edge: {dict(engines)}")
    assert engines["asterisk"] > 0 and engines["freeswitch"] > 0, engines
    assert (await account(db, tenant))["channels_in_use"] == 0


def guessing_address() -> str:
    """A loopback address of its own for each run (a ban outlives a run by ban_s)."""
    return f"127.0.{random.randrange(1, 255)}.{random.randrange(1, 255)}"


def register_via_edge(
    settings: Settings, account: dict[str, Any], password: str, address: str, timeout_s: float = 5.0
) -> int | None:
    """One REGISTER of `account` from `address` through the edge: the final status (None:
    not answered)."""
    target = f"{settings.edge.host}:{settings.edge.port}"
    endpoint = account["endpoint_id"]
    return run_register(endpoint, password, local_ip=address, target=target, timeout_s=timeout_s).final_status


async def test_password_guessing_is_banned_and_the_account_locked_while_calls_go_on(
    db: asyncpg.Connection,
    service: ServiceProcess,
    destination_carrier: SippUas,
    settings: Settings,
    edge: KamailioEdge,
) -> None:
    e = settings.edge
    tenant, number = tenant_and_bound_number(service)
    right = "right-pass-" + secrets.token_hex(4)
    victim = extension(service, tenant, "801", "main", right)
    other = extension(service, tenant, "802", "main", right)

    def register(account: dict[str, Any], password: str, address: str, timeout_s: float = 5.0) -> int | None:
        return register_via_edge(settings, account, password, address, timeout_s)

    first, second = guessing_address(), guessing_address()
    guesses = [
        await asyncio.to_thread(register, victim, f"guess-{n:04d}", first)
        for n in range(e.auth_fails_per_address)
    ]
    assert all(status in (401, 403) for status in guesses), guesses  # each answered: a failure
    # banned now: the next guess from that address is not answered at all
    assert await asyncio.to_thread(register, victim, "guess-9999", first, 2.0) is None
    assert first in edge.kamcmd("htable.dump", "ban")
    # the carrier's call through the edge meanwhile
    caller = unique_caller()
    call = await asyncio.to_thread(via_edge, settings, number, caller)
    assert call.final_status == 200, call.message_log[-2000:]
    # the same account guessed from a second address: locked out once 10 have failed
    rest = e.auth_fails_per_account - e.auth_fails_per_address
    more = [await asyncio.to_thread(register, victim, f"guess-{n:04d}", second) for n in range(rest)]
    assert all(status in (401, 403) for status in more), more
    assert victim["endpoint_id"] in edge.kamcmd("htable.dump", "lockedout")
    # the right password from a third address: refused while locked out; another account
    # of the tenant registers
    third = guessing_address()
    assert await asyncio.to_thread(register, victim, right, third) == 403
    assert await asyncio.to_thread(register, other, right, third) == 200


async def test_the_edge_s_bans_are_recorded_listed_and_lifted_through_the_api(
    db: asyncpg.Connection,
    service: ServiceProcess,
    destination_carrier: SippUas,
    settings: Settings,
    edge: KamailioEdge,
) -> None:
    e = settings.edge
    with restarted(service, SOFTSWITCH_EDGE__ENABLED="true") as svc:
        tenant, _number_id, _number = active_number(svc)
        victim = extension(svc, tenant, "801", "main", "right-pass-" + secrets.token_hex(4))
        address = guessing_address()

        def guess() -> int | None:
            return register_via_edge(settings, victim, "wrong", address, 2.0)

        for _ in range(e.auth_fails_per_address):
            assert await asyncio.to_thread(guess) in (401, 403)
        assert await asyncio.to_thread(guess) is None  # banned at the edge
        counted = svc.metric("softswitch_sip_bans_total", kind="address", reason="auth_failures")
        page = api_ok(svc.request("GET", "/v1/sip-bans", params={"active": "true"}))
        assert page["edge_read"] is True
        ban = next(b for b in page["items"] if b["subject"] == address)
        assert (ban["kind"], ban["reason"], ban["active"], ban["lifted_at"]) == (
            "address",
            "auth_failures",
            True,
            None,
        )
        banned_at, expires_at = (datetime.fromisoformat(ban[k]) for k in ("banned_at", "expires_at"))
        assert (expires_at - banned_at).total_seconds() == e.ban_s
        assert svc.metric("softswitch_sip_bans_total", kind="address", reason="auth_failures") >= max(
            counted, 1
        )
        audited = await db.fetchval(
            "SELECT count(*) FROM audit_log WHERE entity = 'sip_ban' AND entity_id = $1 AND action = 'ban'",
            str(ban["id"]),
        )
        assert audited == 1
        # lifted: the edge answers the address again, and the record says who lifted it
        lifted = api_ok(svc.request("DELETE", f"/v1/sip-bans/{ban['id']}"))
        assert lifted["active"] is False and lifted["lifted_at"] is not None
        lift = await db.fetchrow(
            "SELECT * FROM audit_log WHERE entity = 'sip_ban' AND entity_id = $1 AND action = 'lift'",
            str(ban["id"]),
        )
        assert lift is not None and lift["actor"] == lifted["lifted_by"] != "edge"
        assert await asyncio.to_thread(guess) in (401, 403)
        assert svc.request("DELETE", f"/v1/sip-bans/{ban['id']}").status_code == 404
        assert svc.metric("softswitch_sip_bans_lifted_total", kind="address") >= 1


def probes(settings: Settings, local_ip: str, ua: str, count: int, rate: float) -> SippResult:
    return run_uac(
        "",
        scenario="options_probe.xml",
        local_ip=local_ip,
        target=f"{settings.edge.host}:{settings.edge.port}",
        calls=count,
        rate=rate,
        timeout_s=30,
        extra=("-key", "ua", ua),
        trace=True,
    )


async def test_a_flood_from_one_address_is_banned_while_the_carrier_s_call_goes_through(
    db: asyncpg.Connection,
    service: ServiceProcess,
    destination_carrier: SippUas,
    settings: Settings,
    edge: KamailioEdge,
) -> None:
    number = bound_number(service)
    caller = unique_caller()
    sent = 400  # 200 a second for 2 s: five times what the edge lets one address send
    flood = asyncio.create_task(asyncio.to_thread(probes, settings, FLOODER, "flood/1.0", sent, 200))
    await asyncio.sleep(0.5)  # the flood is on
    call = await asyncio.to_thread(via_edge, settings, number, caller)
    flooded = await flood
    assert call.final_status == 200, call.message_log[-2000:]
    assert await engine_of_call(db, caller) in ("asterisk", "freeswitch")
    answered = flooded.statuses.count(200)
    print(f"flood: {answered} of {sent} OPTIONS answered")
    assert answered <= 2 * settings.edge.flood_requests_per_2s, answered
    assert FLOODER in edge.kamcmd("htable.dump", "ban")


async def test_a_scanner_s_user_agent_is_never_answered(settings: Settings, edge: KamailioEdge) -> None:
    plain = await asyncio.to_thread(probes, settings, SCANNER, "softswitch-test/1.0", 1, 10)
    assert plain.statuses == [200], plain.message_log[-2000:]
    scanner = await asyncio.to_thread(probes, settings, SCANNER, "friendly-scanner", 3, 10)
    assert scanner.statuses == [], scanner.message_log[-2000:]
