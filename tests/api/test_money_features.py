"""Recharge cards (generation, single redemption, idempotency, races, expiry, PIN, scoping),
statements, recharge records, daily/monthly call reports in the tenant's time zone, and
the live calls list — in-process against the real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest

from provisioning.cards import luhn_ok
from provisioning.rules import pin_matches
from provisioning.schemas import MAX_ID
from softswitch.core.clock import FixedClock
from tests.api.conftest import World, bearer, expect, make_tenant, make_user, suffix

pytestmark = pytest.mark.asyncio(loop_scope="session")

GENERIC = "card invalid or already used"


@dataclass
class Tenant:
    id: int
    admin: dict[str, str]  # tenant_admin's headers
    readonly: dict[str, str]


async def new_tenant(client: httpx.AsyncClient, world: World, **extra: Any) -> Tenant:
    t = await make_tenant(client, world.admin, f"api-cards {suffix()}")
    if extra:
        t = expect(
            await client.patch(
                f"/v1/tenants/{t['id']}", headers={**world.admin, "If-Match": f'"{t["version"]}"'}, json=extra
            ),
            200,
        )
    _, admin_token = await make_user(client, world.admin, "tenant_admin", t["id"], world.tag)
    _, ro_token = await make_user(client, world.admin, "tenant_readonly", t["id"], world.tag)
    return Tenant(t["id"], bearer(admin_token), bearer(ro_token))


async def make_batch(
    client: httpx.AsyncClient, world: World, clock: FixedClock, count: int = 3, face: str = "50.00", **kw: Any
) -> dict[str, Any]:
    body = {
        "count": count,
        "face_value": face,
        "expires_at": (clock.now() + timedelta(days=30)).isoformat(),
        "note": "test",
        **kw,
    }
    return expect(await client.post("/v1/recharge-card-batches", headers=world.admin, json=body), 201)


async def redeem(
    client: httpx.AsyncClient, headers: dict[str, str], tid: int, card: dict[str, str], key: str | None = None
) -> httpx.Response:
    h = {**headers, "Idempotency-Key": key or f"redeem-{uuid.uuid4()}"}
    return await client.post(
        f"/v1/tenants/{tid}/card-redemptions",
        headers=h,
        json={"card_number": card["card_number"], "pin": card["pin"]},
    )


async def balance(client: httpx.AsyncClient, world: World, tid: int) -> str:
    return expect(await client.get(f"/v1/tenants/{tid}/account", headers=world.admin), 200)["balance"]


def refused(resp: httpx.Response, reason: str | None = None) -> None:
    assert resp.status_code == 422, resp.text
    (detail,) = resp.json()["detail"]
    assert detail["type"] == "card_refused" and detail["loc"] == ["body", "card_number"]
    if reason is None:
        assert detail["msg"] == GENERIC  # tenants learn nothing more
    else:
        assert detail["msg"] == f"{GENERIC} ({reason})"


async def refusal_reasons(pool: asyncpg.Pool, tid: int) -> list[str]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT after->>'reason' AS r FROM audit_log WHERE tenant_id = $1 AND entity = 'recharge_cards' "
            "AND action = 'redeem_refused' ORDER BY id",
            tid,
        )
    return [r["r"] for r in rows]


# ---------------------------------------------------------------------------- batches
async def test_batch_returns_pins_once_and_stores_only_salted_hashes(
    client: httpx.AsyncClient, world: World, pool: asyncpg.Pool, clock: FixedClock
) -> None:
    batch = await make_batch(client, world, clock, count=20, face="100.00")
    cards = batch["cards"]
    assert batch["count"] == 20 and batch["face_value"] == "100.00" and batch["unused"] == 20
    assert len(cards) == 20 and len({c["card_number"] for c in cards}) == 20
    for c in cards:
        assert len(c["card_number"]) == 16 and c["card_number"].isdigit() and luhn_ok(c["card_number"])
        assert len(c["pin"]) == 8 and c["pin"].isdigit()
    numbers = sorted(int(c["card_number"]) for c in cards)
    assert not any(b - a < 100 for a, b in zip(numbers, numbers[1:], strict=False)), "sequential numbers"

    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT to_jsonb(c)::text AS whole, card_number, pin_sha256, state, face_value "
            "FROM recharge_cards c WHERE batch_id = $1",
            batch["id"],
        )
        audit = await conn.fetchval(
            "SELECT string_agg(coalesce(after::text, ''), ' ') FROM audit_log "
            "WHERE entity = 'recharge_card_batches' AND entity_id = $1",
            str(batch["id"]),
        )
    pins = {c["card_number"]: c["pin"] for c in cards}
    assert len(rows) == 20
    salts = set()
    for r in rows:
        pin = pins[r["card_number"]]
        assert pin not in r["whole"]  # in no column of the row
        assert pin_matches(pin, r["pin_sha256"]) and not pin_matches("x" + pin, r["pin_sha256"])
        salts.add(r["pin_sha256"].split("$")[0])
        assert r["state"] == "unused" and r["face_value"] == Decimal("100.00")
    assert len(salts) == 20
    assert audit and not any(p in audit for p in pins.values()) and "cards" not in audit

    # The listing never shows cards or PINs again.
    listed = expect(
        await client.get("/v1/recharge-card-batches", headers=world.admin, params={"limit": 500}), 200
    )
    while listed["next_after"] is not None and not any(b["id"] == batch["id"] for b in listed["items"]):
        listed = expect(
            await client.get(
                "/v1/recharge-card-batches",
                headers=world.admin,
                params={"limit": 500, "after": listed["next_after"]},
            ),
            200,
        )
    (mine,) = [b for b in listed["items"] if b["id"] == batch["id"]]
    assert mine["unused"] == 20 and mine["redeemed"] == 0 and "cards" not in mine
    assert not any(p in str(listed) for p in pins.values())


async def test_batches_are_for_operators_and_validated(
    client: httpx.AsyncClient, world: World, clock: FixedClock
) -> None:
    staff = bearer(world.staff_token)
    body = {"count": 1, "face_value": "10.00", "expires_at": (clock.now() + timedelta(days=1)).isoformat()}
    expect(await client.post("/v1/recharge-card-batches", headers=staff, json=body), 201)
    expect(await client.get("/v1/recharge-card-batches", headers=staff), 200)
    for role in ("tenant_admin", "tenant_readonly"):
        headers = bearer(world.a.tokens[role])
        expect(await client.post("/v1/recharge-card-batches", headers=headers, json=body), 403)
        expect(await client.get("/v1/recharge-card-batches", headers=headers), 403)
    for bad, field in (
        ({"count": 0}, "count"),
        ({"count": 10001}, "count"),
        ({"face_value": "0"}, "face_value"),
        ({"face_value": "1.001"}, "face_value"),
        ({"expires_at": (clock.now() - timedelta(seconds=1)).isoformat()}, "expires_at"),
        ({"expires_at": "2030-01-01T00:00:00"}, "expires_at"),
    ):
        resp = await client.post("/v1/recharge-card-batches", headers=world.admin, json={**body, **bad})
        assert resp.status_code == 422 and resp.json()["detail"][0]["loc"] == ["body", field], (
            bad,
            resp.text,
        )


# ---------------------------------------------------------------------------- redemption
async def test_a_card_is_redeemed_exactly_once(
    client: httpx.AsyncClient, world: World, pool: asyncpg.Pool, clock: FixedClock
) -> None:
    t = await new_tenant(client, world)
    card = (await make_batch(client, world, clock, count=2, face="50.00"))["cards"][0]
    key = f"card-{uuid.uuid4()}"
    first = expect(await redeem(client, t.admin, t.id, card, key), 201)
    assert (
        first["kind"] == "recharge" and first["amount"] == "50.0000" and first["balance_after"] == "50.0000"
    )
    assert first["idempotency_key"] == key and card["card_number"] not in first["reference"]
    # The same request again (a retry): the first outcome, no second credit.
    assert expect(await redeem(client, t.admin, t.id, card, key), 200) == first
    # Another redemption of the same card: refused, with one generic message.
    refused(await redeem(client, t.admin, t.id, card))
    refused(await redeem(client, world.admin, t.id, card), "already_used")
    assert await balance(client, world, t.id) == "50.0000"
    assert await refusal_reasons(pool, t.id) == ["already_used", "already_used"]

    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM recharge_cards WHERE card_number = $1", card["card_number"])
        assert await conn.fetchval("SELECT count(*) FROM ledger_entries WHERE tenant_id = $1", t.id) == 1
    assert row["state"] == "redeemed" and row["redeemed_by_tenant_id"] == t.id
    assert row["redeem_key"] == f"{t.id}:{key}" and row["ledger_entry_id"] == first["id"]
    assert row["redeemed_at"] == clock.now()

    # One Idempotency-Key names one recharge: not another card, not an operator recharge.
    other_card = (await make_batch(client, world, clock, count=1))["cards"][0]
    conflict = await redeem(client, t.admin, t.id, other_card, key)
    assert conflict.status_code == 409 and conflict.json()["detail"][0]["loc"] == [
        "header",
        "Idempotency-Key",
    ]
    conflict = await client.post(
        f"/v1/tenants/{t.id}/recharges",
        headers={**world.admin, "Idempotency-Key": key},
        json={"amount": "50.00"},
    )
    assert conflict.status_code == 409
    missing = await client.post(
        f"/v1/tenants/{t.id}/card-redemptions",
        headers=t.admin,
        json={"card_number": other_card["card_number"], "pin": other_card["pin"]},
    )
    assert missing.status_code == 422 and missing.json()["detail"][0]["loc"] == ["header", "idempotency-key"]
    assert await balance(client, world, t.id) == "50.0000"

    # Recharge records: the card one, masked, and an operator's.
    expect(
        await client.post(
            f"/v1/tenants/{t.id}/recharges",
            headers={**world.admin, "Idempotency-Key": f"op-{uuid.uuid4()}"},
            json={"amount": "1.50", "reference": "bank transfer"},
        ),
        201,
    )
    records = expect(await client.get(f"/v1/tenants/{t.id}/recharges", headers=t.readonly), 200)
    assert [(r["source"], r["amount"]) for r in records["items"]] == [
        ("card", "50.0000"),
        ("operator", "1.5000"),
    ]
    assert records["items"][0]["card_number"] == "*" * 12 + card["card_number"][-4:]
    assert records["items"][1]["card_number"] is None
    page = expect(
        await client.get(f"/v1/tenants/{t.id}/recharges", headers=t.admin, params={"limit": 1}), 200
    )
    assert len(page["items"]) == 1 and page["next_after"] == first["id"]


async def test_ten_concurrent_redemptions_of_one_card_credit_once(
    client: httpx.AsyncClient, world: World, clock: FixedClock
) -> None:
    t1, t2 = await new_tenant(client, world), await new_tenant(client, world)
    card = (await make_batch(client, world, clock, count=1, face="12.34"))["cards"][0]
    attempts = [
        redeem(client, (t1 if i % 2 else t2).admin, (t1 if i % 2 else t2).id, card) for i in range(10)
    ]
    responses = await asyncio.gather(*attempts)
    assert sorted(r.status_code for r in responses) == [201] + [422] * 9, [r.text for r in responses]
    for r in responses:
        if r.status_code == 422:
            refused(r)
    balances = {await balance(client, world, t1.id), await balance(client, world, t2.id)}
    assert balances == {"12.3400", "0.0000"}


async def test_expired_card_is_refused(
    client: httpx.AsyncClient, world: World, pool: asyncpg.Pool, clock: FixedClock
) -> None:
    t = await new_tenant(client, world)
    card = (
        await make_batch(
            client, world, clock, count=1, expires_at=(clock.now() + timedelta(hours=1)).isoformat()
        )
    )["cards"][0]
    saved = clock.at
    try:
        clock.at = saved + timedelta(hours=1)  # expires_at itself: no longer valid
        refused(await redeem(client, t.admin, t.id, card))
        refused(await redeem(client, world.admin, t.id, card), "expired")
    finally:
        clock.at = saved
    assert await balance(client, world, t.id) == "0.0000"
    assert await refusal_reasons(pool, t.id) == ["expired", "expired"]
    # Before its expiry it still works: the refusals did not consume it.
    expect(await redeem(client, t.admin, t.id, card), 201)


async def test_wrong_pin_and_unknown_card_are_refused(
    client: httpx.AsyncClient, world: World, pool: asyncpg.Pool, clock: FixedClock
) -> None:
    t = await new_tenant(client, world)
    card = (await make_batch(client, world, clock, count=1))["cards"][0]
    wrong = {**card, "pin": f"{(int(card['pin']) + 1) % 10**8:08d}"}
    refused(await redeem(client, t.admin, t.id, wrong))
    refused(await redeem(client, world.admin, t.id, wrong), "wrong_pin")
    n = card["card_number"]
    typo = {**card, "card_number": n[:-1] + str((int(n[-1]) + 1) % 10)}  # fails the Luhn check
    refused(await redeem(client, t.admin, t.id, typo))
    unknown = {"card_number": "0000000000000000", "pin": card["pin"]}  # passes Luhn, never issued
    refused(await redeem(client, t.admin, t.id, unknown))
    assert await refusal_reasons(pool, t.id) == ["wrong_pin", "wrong_pin", "unknown_card", "unknown_card"]
    assert await balance(client, world, t.id) == "0.0000"
    bad = await client.post(
        f"/v1/tenants/{t.id}/card-redemptions",
        headers={**t.admin, "Idempotency-Key": f"bad-{uuid.uuid4()}"},
        json={"card_number": "1234", "pin": "12"},
    )
    assert bad.status_code == 422
    assert {tuple(d["loc"]) for d in bad.json()["detail"]} == {("body", "card_number"), ("body", "pin")}
    expect(await redeem(client, t.admin, t.id, card), 201)


async def test_tenants_redeem_only_into_their_own_account(
    client: httpx.AsyncClient, world: World, clock: FixedClock
) -> None:
    a, b = await new_tenant(client, world), await new_tenant(client, world)
    card = (await make_batch(client, world, clock, count=1))["cards"][0]
    expect(await redeem(client, a.admin, b.id, card), 404)
    expect(await redeem(client, a.admin, MAX_ID, card), 404)
    expect(await redeem(client, b.readonly, b.id, card), 403)  # read-only users do not spend cards
    assert await balance(client, world, b.id) == "0.0000"
    for path in (
        "statement?from=2030-01-01&to=2030-01-31",
        "reports/daily?from=2030-01-01&to=2030-01-31",
        "reports/monthly?from=2030-01-01&to=2030-12-31",
        "recharges",
        "calls/live",
    ):
        expect(await client.get(f"/v1/tenants/{b.id}/{path}", headers=a.admin), 404)
        expect(await client.get(f"/v1/tenants/{b.id}/{path}", headers=b.readonly), 200)
    expect(await redeem(client, b.admin, b.id, card), 201)  # untouched by the refusals


# ---------------------------------------------------------------------------- statement
SHANGHAI = timedelta(hours=8)


def sh(text: str) -> datetime:
    """A Shanghai wall-clock time as an aware UTC datetime."""
    return (datetime.fromisoformat(text) - SHANGHAI).replace(tzinfo=UTC)


async def debit_call(pool: asyncpg.Pool, tid: int, amount: str, at: datetime) -> None:
    """What settlement writes: the balance and its ledger entry, together."""
    async with pool.acquire() as conn, conn.transaction():
        bal = await conn.fetchval(
            "UPDATE accounts SET balance = balance - $2 WHERE tenant_id = $1 RETURNING balance",
            tid,
            Decimal(amount),
        )
        await conn.execute(
            "INSERT INTO ledger_entries (tenant_id, kind, amount, balance_after, reference, created_at) "
            "VALUES ($1, 'call', $2, $3, 'call', $4)",
            tid,
            -Decimal(amount),
            bal,
            at,
        )


async def test_statement_balances_and_sums_are_exact(
    client: httpx.AsyncClient, world: World, pool: asyncpg.Pool, clock: FixedClock
) -> None:
    t = await new_tenant(client, world)
    card = (await make_batch(client, world, clock, count=1, face="50.00"))["cards"][0]
    saved = clock.at

    async def op_recharge(amount: str, at: datetime) -> None:
        clock.at = at
        await client.post(
            f"/v1/tenants/{t.id}/recharges",
            headers={**world.admin, "Idempotency-Key": f"st-{uuid.uuid4()}"},
            json={"amount": amount},
        )

    try:
        await op_recharge("100.10", sh("2026-03-09T23:59:59"))  # the day before (Shanghai)
        await op_recharge("20.05", sh("2026-03-10T00:00:00"))  # 2026-03-09 16:00 UTC: in the period
        await debit_call(pool, t.id, "0.37", sh("2026-03-10T12:00:00"))
        clock.at = sh("2026-03-10T23:30:00")  # 15:30 UTC
        expect(await redeem(client, t.admin, t.id, card), 201)
        await debit_call(pool, t.id, "0.1234", sh("2026-03-10T23:59:59"))
        await op_recharge("5.00", sh("2026-03-11T00:00:00"))  # the next Shanghai day, still 03-10 in UTC
    finally:
        clock.at = saved

    url = f"/v1/tenants/{t.id}/statement"
    st = expect(
        await client.get(url, headers=t.readonly, params={"from": "2026-03-10", "to": "2026-03-10"}), 200
    )
    assert st["timezone"] == "Asia/Shanghai"
    assert datetime.fromisoformat(st["period_start"]) == sh("2026-03-10T00:00:00")
    assert datetime.fromisoformat(st["period_end"]) == sh("2026-03-11T00:00:00")
    assert st["opening_balance"] == "100.1000"
    assert st["credits"] == "70.0500" and st["debits"] == "-0.4934"
    assert st["closing_balance"] == "169.6566"
    assert Decimal(st["opening_balance"]) + Decimal(st["credits"]) + Decimal(st["debits"]) == Decimal(
        st["closing_balance"]
    )
    assert [(k["kind"], k["count"], k["total"]) for k in st["by_kind"]] == [
        ("call", 2, "-0.4934"),
        ("recharge", 2, "70.0500"),
    ]
    assert [e["amount"] for e in st["entries"]] == ["20.0500", "-0.3700", "50.0000", "-0.1234"]
    assert st["next_after"] is None
    # Paged entries; the sums still cover the whole period.
    first = expect(
        await client.get(
            url, headers=t.readonly, params={"from": "2026-03-10", "to": "2026-03-10", "limit": 3}
        ),
        200,
    )
    assert len(first["entries"]) == 3 and first["closing_balance"] == "169.6566"
    rest = expect(
        await client.get(
            url,
            headers=t.readonly,
            params={"from": "2026-03-10", "to": "2026-03-10", "after": first["next_after"]},
        ),
        200,
    )
    assert [e["amount"] for e in rest["entries"]] == ["-0.1234"]
    # Before anything happened, and a period that holds everything.
    empty = expect(
        await client.get(url, headers=t.admin, params={"from": "2020-01-01", "to": "2020-01-31"}), 200
    )
    assert (empty["opening_balance"], empty["closing_balance"], empty["entries"]) == ("0.0000", "0.0000", [])
    whole = expect(
        await client.get(url, headers=t.admin, params={"from": "2026-03-01", "to": "2026-03-31"}), 200
    )
    assert (whole["opening_balance"], whole["closing_balance"]) == ("0.0000", "174.6566")
    assert whole["closing_balance"] == await balance(client, world, t.id)
    bad = await client.get(url, headers=t.admin, params={"from": "2026-03-10", "to": "2026-03-09"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "to"]


# ---------------------------------------------------------------------------- reports
async def insert_call(
    pool: asyncpg.Pool,
    tid: int,
    decided_at: datetime,
    billsec: int | None = None,
    minutes: int | None = None,
    amount: str | None = None,
    ended: bool = True,
) -> None:
    answered = billsec is not None
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO calls (linkedid, uniqueid, tenant_id, caller, called, action, reason, decided_at, "
            "answered_at, ended_at, billsec, minutes, amount) "
            "VALUES ($1, $1, $2, '13700000000', '4000000000', 'dial', 'ok', $3, $4, $5, $6, $7, $8)",
            f"api-money-{uuid.uuid4()}",
            tid,
            decided_at,
            decided_at + timedelta(seconds=5) if answered else None,
            decided_at + timedelta(seconds=5 + (billsec or 0)) if ended else None,
            billsec,
            minutes,
            Decimal(amount) if amount is not None else None,
        )


async def test_daily_and_monthly_reports_in_the_tenant_time_zone(
    client: httpx.AsyncClient, world: World, pool: asyncpg.Pool
) -> None:
    t = await new_tenant(client, world)
    # 2031-05-01 in Shanghai is 2031-04-30T16:00Z .. 2031-05-01T16:00Z.
    await insert_call(pool, t.id, datetime(2031, 4, 30, 23, 30, tzinfo=UTC), 65, 2, "0.24")  # 05-01 07:30 SH
    await insert_call(pool, t.id, sh("2031-05-01T10:00:00"))  # offered, not answered
    await insert_call(pool, t.id, sh("2031-05-01T23:30:00"), 30, 1, "0.12")  # 15:30Z, still 05-01
    await insert_call(pool, t.id, sh("2031-05-02T00:30:00"), 10, 1, "0.1250")  # 05-01 16:30Z: 05-02 in SH
    await insert_call(pool, t.id, sh("2031-05-02T09:00:00"), 0, 0, "0")  # answered, 0 s
    await insert_call(pool, t.id, sh("2031-05-02T09:05:00"))
    await insert_call(pool, t.id, sh("2031-05-02T09:06:00"))
    await insert_call(pool, t.id, sh("2031-05-31T23:50:00"), 61, 2, "0.2400")  # May
    await insert_call(pool, t.id, sh("2031-06-01T00:20:00"), 120, 2, "0.2400")  # June (05-31 16:20Z)
    await insert_call(pool, t.id, sh("2031-06-15T12:00:00"), 45)  # answered, not settled yet

    url = f"/v1/tenants/{t.id}/reports"
    daily = expect(
        await client.get(
            f"{url}/daily", headers=t.readonly, params={"from": "2031-05-01", "to": "2031-05-03"}
        ),
        200,
    )
    assert daily["timezone"] == "Asia/Shanghai" and daily["granularity"] == "day"
    rows = {r["period"]: r for r in daily["rows"]}
    assert list(rows) == ["2031-05-01", "2031-05-02", "2031-05-03"]
    assert rows["2031-05-01"] == {
        "period": "2031-05-01",
        "offered": 3,
        "answered": 2,
        "minutes": 3,
        "amount": "0.3600",
        "asr": "0.6667",
        "acd_s": "47.5",
    }
    assert rows["2031-05-02"] == {
        "period": "2031-05-02",
        "offered": 4,
        "answered": 2,
        "minutes": 1,
        "amount": "0.1250",
        "asr": "0.5000",
        "acd_s": "5.0",
    }
    assert rows["2031-05-03"] == {
        "period": "2031-05-03",
        "offered": 0,
        "answered": 0,
        "minutes": 0,
        "amount": "0.0000",
        "asr": None,
        "acd_s": None,
    }
    assert daily["totals"] == {
        "offered": 7,
        "answered": 4,
        "minutes": 4,
        "amount": "0.4850",
        "asr": "0.5714",
        "acd_s": "26.3",
    }

    monthly = expect(
        await client.get(
            f"{url}/monthly", headers=t.readonly, params={"from": "2031-05-01", "to": "2031-06-30"}
        ),
        200,
    )
    months = {r["period"]: r for r in monthly["rows"]}
    assert list(months) == ["2031-05-01", "2031-06-01"]
    assert (months["2031-05-01"]["offered"], months["2031-05-01"]["answered"]) == (8, 5)
    assert (months["2031-05-01"]["minutes"], months["2031-05-01"]["amount"]) == (6, "0.7250")
    assert months["2031-05-01"]["acd_s"] == "33.2"  # (65 + 30 + 10 + 0 + 61) / 5
    assert months["2031-06-01"] == {
        "period": "2031-06-01",
        "offered": 2,
        "answered": 2,
        "minutes": 2,
        "amount": "0.2400",
        "asr": "1.0000",
        "acd_s": "82.5",
    }

    # The same calls for a tenant in UTC: the days move.
    tenant = expect(await client.get(f"/v1/tenants/{t.id}", headers=world.admin), 200)
    expect(
        await client.patch(
            f"/v1/tenants/{t.id}",
            headers={**world.admin, "If-Match": f'"{tenant["version"]}"'},
            json={"timezone": "UTC"},
        ),
        200,
    )
    utc = expect(
        await client.get(f"{url}/daily", headers=t.admin, params={"from": "2031-04-30", "to": "2031-05-01"}),
        200,
    )
    by_day = {r["period"]: (r["offered"], r["answered"]) for r in utc["rows"]}
    assert by_day == {"2031-04-30": (1, 1), "2031-05-01": (3, 2)}
    june = expect(
        await client.get(
            f"{url}/monthly", headers=t.admin, params={"from": "2031-06-01", "to": "2031-06-30"}
        ),
        200,
    )
    assert [(r["period"], r["offered"]) for r in june["rows"]] == [("2031-06-01", 1)]

    for params, loc in (
        ({"from": "2031-01-01", "to": "2032-01-02"}, "to"),  # more than 366 days
        ({"from": "2031-05-02", "to": "2031-05-01"}, "to"),
        ({"from": "0001-01-01", "to": "2031-05-01"}, "from"),
    ):
        resp = await client.get(f"{url}/daily", headers=t.admin, params=params)
        assert resp.status_code == 422 and resp.json()["detail"][0]["loc"] == ["query", loc], resp.text
    resp = await client.get(f"{url}/daily", headers=t.admin, params={"from": "yesterday", "to": "2031-05-01"})
    assert resp.status_code == 422


# ---------------------------------------------------------------------------- live calls
async def test_live_calls_of_the_tenant(
    client: httpx.AsyncClient, world: World, pool: asyncpg.Pool, clock: FixedClock
) -> None:
    t, other = await new_tenant(client, world), await new_tenant(client, world)
    now = clock.now()
    await insert_call(pool, t.id, now - timedelta(seconds=30), 20, ended=False)  # talking
    await insert_call(pool, t.id, now - timedelta(seconds=5), ended=False)  # ringing
    await insert_call(pool, t.id, now - timedelta(minutes=3), 60)  # ended
    await insert_call(pool, t.id, now - timedelta(hours=6, seconds=1), ended=False)  # stale: end never seen
    await insert_call(pool, other.id, now - timedelta(seconds=10), ended=False)
    live = expect(await client.get(f"/v1/tenants/{t.id}/calls/live", headers=t.readonly), 200)
    assert live["window_hours"] == 6 and datetime.fromisoformat(live["as_of"]) == now
    assert [datetime.fromisoformat(c["decided_at"]) for c in live["items"]] == [
        now - timedelta(seconds=5),
        now - timedelta(seconds=30),
    ]
    assert all(c["tenant_id"] == t.id and c["ended_at"] is None for c in live["items"])
    assert [c["answered_at"] is not None for c in live["items"]] == [False, True]
    # The generic call resource still reads one call by id.
    expect(
        await client.get(f"/v1/tenants/{world.a.id}/calls/{world.a.items['calls']}", headers=world.admin), 200
    )
