"""Issue 11, item 5: what operators read from SQL, the API shows — the account's channels,
reserved money, included seconds and credit, and each call record's billsec, charge,
direction and why — after real reservations and settlements (provisioning.ledger) and
call records written by the call path's own writer (softswitch.callpath.records)."""

from __future__ import annotations

import uuid
from datetime import UTC, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest

from dialplan.inbound import InboundCall, Reject, decide_inbound
from dialplan.snapshot import BoundDestination, ConfigSnapshot, Tenant, UnifiedNumber
from dialplan.time_policy import DAYS, TimePolicy
from provisioning.ledger import Grant, open_reservation, settle_reservation
from softswitch.callpath.records import CallRecordWriter, DecisionRecord
from softswitch.core.clock import FixedClock
from softswitch.core.metrics import Metrics
from tests.api.conftest import World, bearer, expect, make_tenant, make_user, suffix

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _tenant(client: httpx.AsyncClient, world: World, clock: FixedClock) -> dict[str, Any]:
    """A tenant on A4-269 (4 channels, 2399 min) from the 1st of this month, 500.00 paid."""
    t = await make_tenant(client, world.admin, f"api-account {suffix()}")
    base = f"/v1/tenants/{t['id']}"
    expect(
        await client.post(
            f"{base}/recharges",
            headers={**world.admin, "Idempotency-Key": f"acct-{uuid.uuid4()}"},
            json={"amount": "500.00"},
        ),
        201,
    )
    package = expect(await client.get("/v1/packages", headers=world.admin, params={"code": "A4-269"}), 200)
    first = clock.now().date().replace(day=1)  # a whole first month: rent 269.00, 2399 minutes
    expect(
        await client.post(
            f"{base}/subscriptions",
            headers=world.admin,
            json={"package_id": package["items"][0]["id"], "starts_on": first.isoformat()},
        ),
        201,
    )
    _, ro = await make_user(client, world.admin, "tenant_readonly", t["id"], world.tag)
    return {"id": t["id"], "readonly": bearer(ro), "base": base}


async def _record(pool: asyncpg.Pool, *records: DecisionRecord) -> None:
    writer = CallRecordWriter(pool, Metrics())
    await writer.start()
    for r in records:
        writer.decided(r)
    await writer.stop()  # flushes what is queued


def _decision(linkedid: str, tenant: int, now: Any, **kw: Any) -> DecisionRecord:
    base: dict[str, Any] = {
        "uniqueid": linkedid,
        "tenant_id": tenant,
        "number_id": None,
        "caller": "13900139000",
        "called": "4001234567",
        "action": "dial",
        "reason": "ROUTED",
        "destinations": ("13800138000",),
        "decided_at": now,
        "decision_us": 120,
    }
    return DecisionRecord(linkedid=linkedid, **{**base, **kw})


async def test_account_shows_channels_reserved_money_and_included_seconds(
    client: httpx.AsyncClient, world: World, pool: asyncpg.Pool, clock: FixedClock
) -> None:
    t = await _tenant(client, world, clock)
    tid, now = t["id"], clock.now()
    account = expect(await client.get(f"{t['base']}/account", headers=t["readonly"]), 200)
    assert account == {
        **account,
        "balance": "231.0000",  # 500 - 269
        "credit_limit": "0.0000",
        "reserved": "0.0000",
        "available": "231.0000",
        "channel_cap": 4,
        "channels_in_use": 0,
        "included_seconds_left": 2399 * 60,
        "included_reserved_s": 0,
        "included_seconds_free": 2399 * 60,
        "included_minutes_free": 2399,
        "allowance_month": now.date().replace(day=1).isoformat(),
        "rate_per_minute": "0.1200",
        "first_increment_s": 60,
        "increment_s": 60,
    }

    a, b, c = (f"api-acct-{x}-{uuid.uuid4()}" for x in "abc")
    async with pool.acquire() as conn:
        # The month is nearly used: 200 included seconds remain.
        await conn.execute("UPDATE accounts SET included_seconds_left = 200 WHERE tenant_id = $1", tid)
        got_a = await open_reservation(conn, tid, a, "PJSIP/carrier-0001", 120, now)  # 120 s included
        got_b = await open_reservation(conn, tid, b, "PJSIP/carrier-0002", 120, now)  # 80 s + 0.08
        assert isinstance(got_a, Grant) and isinstance(got_b, Grant)
        assert (got_a.included_s, got_a.amount, got_b.included_s, got_b.amount) == (
            120,
            Decimal("0"),
            80,
            Decimal("0.08"),
        )
    during = expect(await client.get(f"{t['base']}/account", headers=t["readonly"]), 200)
    assert (during["channels_in_use"], during["reserved"], during["available"]) == (2, "0.0800", "230.9200")
    assert (
        during["included_seconds_left"],
        during["included_reserved_s"],
        during["included_seconds_free"],
    ) == (
        200,
        200,
        0,
    )

    async with pool.acquire() as conn:
        settled = await settle_reservation(conn, b, 100, now + timedelta(seconds=110))
        assert settled is not None and settled.charge.amount == Decimal("0.08")  # 40 s over, one minute
        got_c = await open_reservation(conn, tid, c, "PJSIP/carrier-0003", 60, now)  # no included left
        assert isinstance(got_c, Grant) and (got_c.included_s, got_c.amount) == (0, Decimal("0.12"))
    after = expect(await client.get(f"{t['base']}/account", headers=t["readonly"]), 200)
    assert {
        k: after[k] for k in after if k not in ("tenant_id", "currency", "version", "allowance_month")
    } == {
        "balance": "230.9200",  # 231 - 0.08
        "credit_limit": "0.0000",
        "reserved": "0.1200",  # call c
        "available": "230.8000",
        "channel_cap": 4,
        "channels_in_use": 2,  # a and c
        "included_seconds_left": 120,  # 200 - b's 80
        "included_reserved_s": 120,  # a
        "included_seconds_free": 0,
        "included_minutes_free": 0,
        "rate_per_minute": "0.1200",
        "first_increment_s": 60,
        "increment_s": 60,
    }
    # Another tenant's user sees nothing of it.
    _, other = await make_user(client, world.admin, "tenant_admin", world.b.id, world.tag)
    expect(await client.get(f"{t['base']}/account", headers=bearer(other)), 404)


async def test_call_records_show_billsec_charge_direction_and_why(
    client: httpx.AsyncClient, world: World, pool: asyncpg.Pool, clock: FixedClock
) -> None:
    t = await _tenant(client, world, clock)
    tid, now = t["id"], clock.now()
    routed, outbound, closed = (f"api-call-{x}-{uuid.uuid4()}" for x in ("in", "out", "closed"))

    # A call closed after hours, decided by the real pipeline: its record says which rule.
    policy = TimePolicy.parse(
        {
            "timezone": "UTC",
            "weekly": [{"days": list(DAYS), "start": "00:00", "end": "00:01"}],
            "default": {"kind": "announcement", "ref": "softswitch/closed"},
        }
    )
    number = UnifiedNumber(
        1, "4001234567", "active", tid, (BoundDestination("13800138000", 20),), time_policy=policy
    )
    snapshot = ConfigSnapshot.build([Tenant(tid, "t", "active")], [number], now, generation=1)
    moment = now if (now.hour, now.minute) != (0, 0) else now + timedelta(minutes=1)
    refused = decide_inbound(snapshot, InboundCall("13900139000", "4001234567", closed), moment)
    assert isinstance(refused, Reject)
    assert refused.why == f"after hours: {DAYS[moment.astimezone(UTC).weekday()]} 00:00-00:01"

    # The call path records a decision's `why`; for a Reject that needs routing_agi's
    # _record to take decision.why (not only a Route's) — written here as it would.
    await _record(
        pool,
        _decision(routed, tid, now, why="weekly", group_name="default", direction="inbound"),
        _decision(
            outbound, tid, now, caller="8001", called="13800138000", why="outbound", direction="outbound"
        ),
        _decision(
            closed, tid, now, action="reject", reason=refused.reason.code, destinations=(), why=refused.why
        ),
    )
    async with pool.acquire() as conn:
        # 120 included seconds left: the inbound call takes them, the outbound one pays
        await conn.execute("UPDATE accounts SET included_seconds_left = 120 WHERE tenant_id = $1", tid)
        assert isinstance(await open_reservation(conn, tid, routed, "PJSIP/carrier-0001", 120, now), Grant)
        assert isinstance(await open_reservation(conn, tid, outbound, "PJSIP/8001-0001", 60, now), Grant)
        assert (await settle_reservation(conn, routed, 75, now + timedelta(seconds=80))) is not None
        assert (await settle_reservation(conn, outbound, 61, now + timedelta(seconds=70))) is not None

    listed = expect(await client.get(f"{t['base']}/calls", headers=t["readonly"], params={"limit": 500}), 200)
    by_id = {c["linkedid"]: c for c in listed["items"]}
    one = expect(await client.get(f"{t['base']}/calls/{by_id[routed]['id']}", headers=t["readonly"]), 200)
    assert one == by_id[routed]
    assert {
        k: one[k] for k in ("direction", "why", "billsec", "amount", "billable_s", "included_used_s")
    } == {
        "direction": "inbound",
        "why": "weekly",
        "billsec": 75,
        "amount": "0.0000",  # on the package's included minutes
        "billable_s": 120,
        "included_used_s": 120,
    }
    assert one["settled_at"] is not None
    out = by_id[outbound]
    assert {
        k: out[k] for k in ("direction", "why", "billsec", "amount", "billable_s", "included_used_s")
    } == {
        "direction": "outbound",
        "why": "outbound",
        "billsec": 60,  # 61 s talked, charged up to the reserved talk time
        "amount": "0.1200",  # one minute at 0.12
        "billable_s": 60,
        "included_used_s": 0,
    }
    ledger = expect(
        await client.get(f"{t['base']}/ledger", headers=t["readonly"], params={"kind": "call"}), 200
    )
    # ... each charged once, in the ledger with the same amount as its record
    assert sorted(e["amount"] for e in ledger["items"]) == ["-0.1200", "0.0000"]
    only_out = expect(
        await client.get(f"{t['base']}/calls", headers=t["readonly"], params={"direction": "outbound"}), 200
    )
    assert [c["linkedid"] for c in only_out["items"]] == [outbound]
    rejected = by_id[closed]
    assert (rejected["reason"], rejected["why"], rejected["direction"]) == ("CLOSED", refused.why, "inbound")
    assert (rejected["billsec"], rejected["amount"], rejected["settled_at"]) == (None, None, None)
