"""Personalised ringback tones on the real PostgreSQL (migration 0028): golden tests of what
seed 001 charges, read back as the statement's lines, each quoting its clause; and the
application reaching the routing snapshot (a full build, and the patch its NOTIFY asks for)
with its effective month, a number whose month has not come yet ringing the default."""

from __future__ import annotations

import asyncio
import random
import subprocess
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from dialplan.inbound import InboundCall, Route, decide_inbound
from dialplan.ringback import RingbackTone
from provisioning import ringback
from provisioning.engine import Conflict, Ctx, Forbidden
from provisioning.prompts import PromptStore
from provisioning.roles import Principal, Role
from softswitch.callpath.snapshots import Changes, apply_changes, load_snapshot
from softswitch.core.clock import FixedClock
from softswitch.core.settings import Settings
from tests.db.conftest import new_tenant
from tests.db.test_contract_fees import cycle, fee_lines, subscribe

SH = ZoneInfo("Asia/Shanghai")
D = Decimal


def at(y: int, m: int, d: int, hh: int = 9) -> datetime:
    return datetime(y, m, d, hh, tzinfo=SH)


def as_operator(conn: asyncpg.Connection, now: datetime, tenant: int) -> Ctx:
    return Ctx(conn, Principal(None, "db-test-operator", Role.PLATFORM_ADMIN), FixedClock(now), tenant)


def as_tenant(conn: asyncpg.Connection, now: datetime, tenant: int) -> Ctx:
    return Ctx(conn, Principal(None, "db-test-tenant", Role.TENANT_ADMIN, tenant), FixedClock(now), tenant)


@pytest.fixture
def store(tmp_path: Path) -> PromptStore:
    return PromptStore(tmp_path / "sounds")


def sine(tmp_path: Path, hz: int) -> bytes:
    path = tmp_path / f"sine-{hz}.wav"
    subprocess.run(
        ["sox", "-n", "-r", "8000", "-c", "1", str(path), "synth", "1.5", "sine", str(hz)], check=True
    )
    return path.read_bytes()


async def a_number(conn: asyncpg.Connection, tenant: int) -> tuple[int, str]:
    number = f"400{random.randrange(10**7):07d}"
    while await conn.fetchval("SELECT 1 FROM numbers WHERE number = $1", number):
        number = f"400{random.randrange(10**7):07d}"
    number_id = await conn.fetchval(
        "INSERT INTO numbers (number, kind, tenant_id, state) VALUES ($1, 'unified_400', $2, 'active') "
        "RETURNING id",
        number,
        tenant,
    )
    await conn.execute(
        "INSERT INTO destination_bindings (number_id, destination, tenant_id) VALUES ($1, '13800138000', $2)",
        number_id,
        tenant,
    )
    return number_id, number


# ---------------------------------------------------------------------------- what it costs
async def test_seed_001_the_ringback_tone_is_6_a_month_from_the_month_after_the_application(
    pool: asyncpg.Pool, store: PromptStore, tmp_path: Path
) -> None:
    """Seed 001's tariff: "商企云通彩铃费 6 元/月 固话和分机号码都可以使用，无协议期，当月申请，次月
    生效" — a tone applied on 21 April plays from 1 May: April owes nothing for it, May and
    June 6.00 each, the number named; removed on 10 June, July owes nothing (no minimum
    term: no early-termination fee either)."""
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn, balance=D("200"))
        await subscribe(conn, tenant, "A39", date(2026, 4, 1))
        number_id, number = await a_number(conn, tenant)
        await ringback.save_tone(
            as_tenant(conn, at(2026, 4, 20), tenant),
            store,
            "spring",
            ringback.ToneSource(audio=sine(tmp_path, 800)),
        )
        out, applied = await ringback.apply_tone(
            as_tenant(conn, at(2026, 4, 21), tenant), number_id, "spring"
        )
        assert applied and out["playing"] is None
        assert [a["effective_on"] for a in out["applications"]] == [date(2026, 5, 1)]
    for now in (at(2026, 4, 1), at(2026, 4, 21), at(2026, 5, 1), at(2026, 6, 1)):
        await cycle(pool, tenant, now)
    async with pool.acquire() as conn:
        await ringback.remove_tone(as_tenant(conn, at(2026, 6, 10), tenant), number_id)
    for now in (at(2026, 6, 10, 18), at(2026, 7, 1), at(2026, 8, 1)):
        await cycle(pool, tenant, now)
    async with pool.acquire() as conn:
        lines = await fee_lines(
            conn, tenant, date(2026, 4, 1), date(2026, 8, 31), ("rent", "early_termination")
        )
        assert [(a, r) for _, a, r in lines if "RBT" in r or "ringback" in r] == [
            (D("-6.00"), f"rent RBT 2026-05 (from 01, 0 min included): ringback tone on {number}"),
            (D("-6.00"), f"rent RBT 2026-06: ringback tone on {number}"),
        ]
        # the add-on set no tariff: the A39 package still gives the account its rate and channels
        account = await conn.fetchrow(
            "SELECT rate_per_minute, channel_cap FROM accounts WHERE tenant_id = $1", tenant
        )
        assert (account["rate_per_minute"], account["channel_cap"]) == (D("0.12"), 1)


async def test_seed_001_applying_another_tone_keeps_the_one_subscription(
    pool: asyncpg.Pool, store: PromptStore, tmp_path: Path
) -> None:
    """One number, one 6.00 a month, whatever tone it plays: a second tone applied in May
    plays from June on the same subscription; applied twice before June began, the later
    application stands."""
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn, balance=D("200"))
        number_id, number = await a_number(conn, tenant)
        for name, hz in (("spring", 800), ("summer", 1200), ("autumn", 1600)):
            await ringback.save_tone(
                as_tenant(conn, at(2026, 4, 1), tenant),
                store,
                name,
                ringback.ToneSource(audio=sine(tmp_path, hz)),
            )
        await ringback.apply_tone(as_tenant(conn, at(2026, 4, 21), tenant), number_id, "spring")
        await ringback.apply_tone(as_tenant(conn, at(2026, 5, 3), tenant), number_id, "summer")
        again, applied = await ringback.apply_tone(
            as_tenant(conn, at(2026, 5, 4), tenant), number_id, "summer"
        )
        assert not applied  # the same application: answered as it is
        out, _ = await ringback.apply_tone(as_tenant(conn, at(2026, 5, 20), tenant), number_id, "autumn")
        assert [(a["tone"], a["effective_on"]) for a in out["applications"]] == [
            ("spring", date(2026, 5, 1)),
            ("autumn", date(2026, 6, 1)),
        ]
        assert out["playing"] == "spring"
        assert len({a["subscription_id"] for a in out["applications"]}) == 1
        june = await ringback.number_ringback(as_tenant(conn, at(2026, 6, 1, 0), tenant), number_id)
        assert june["playing"] == "autumn"
    for now in (at(2026, 5, 1), at(2026, 6, 1)):
        await cycle(pool, tenant, now)
    async with pool.acquire() as conn:
        lines = await fee_lines(conn, tenant, date(2026, 4, 1), date(2026, 6, 30), ("rent",))
        assert [a for _, a, r in lines if number in r] == [D("-6.00"), D("-6.00")]


async def test_seed_001_a_professionally_produced_tone_costs_99_and_the_tenants_own_nothing(
    pool: asyncpg.Pool, store: PromptStore, tmp_path: Path
) -> None:
    """Seed 001's tariff: "商企云通铃音制作费 99 元/次 专业制作满意后上传使用，更换铃音需要重新收费，
    免费版不收费" — each tone the provider produces costs 99.00 when it is uploaded, a new one
    again; the same upload again is the same tone, charged once; the tenant's own tone (an
    upload or text) is the free version. Changing a tone's audio is a new tone, never an
    edit; only an operator uploads a charged one."""
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn, balance=D("500"))
        op = as_operator(conn, at(2026, 4, 2), tenant)
        first = sine(tmp_path, 700)
        await ringback.save_tone(op, store, "studio-a", ringback.ToneSource(audio=first), "professional")
        replay, made = await ringback.save_tone(
            op, store, "studio-a", ringback.ToneSource(audio=first), "professional"
        )
        assert not made and replay["production_order_id"] is not None
        await ringback.save_tone(
            as_operator(conn, at(2026, 4, 9), tenant),
            store,
            "studio-b",
            ringback.ToneSource(audio=sine(tmp_path, 900)),
            "professional",
        )
        own = as_tenant(conn, at(2026, 4, 10), tenant)
        await ringback.save_tone(own, store, "mine", ringback.ToneSource(audio=sine(tmp_path, 1100)))
        await ringback.save_tone(own, store, "spoken", ringback.ToneSource(text="欢迎致电", voice="cmn"))
        with pytest.raises(Conflict) as changed:
            await ringback.save_tone(own, store, "mine", ringback.ToneSource(audio=sine(tmp_path, 1300)))
        assert changed.value.field == "name"
        with pytest.raises(Forbidden):
            await ringback.save_tone(own, store, "cheap", ringback.ToneSource(audio=first), "professional")
        lines = await fee_lines(conn, tenant, date(2026, 4, 1), date(2026, 4, 30), ("one_off",))
        assert [(a, r) for _, a, r in lines] == [
            (D("-99.00"), "Ringback tone production x 1 at 99.00: ringback tone studio-a"),
            (D("-99.00"), "Ringback tone production x 1 at 99.00: ringback tone studio-b"),
        ]
        tones = {t["name"]: t for t in await ringback.list_tones(own)}
        assert {n: t["production"] for n, t in tones.items()} == {
            "mine": "self",
            "spoken": "self",
            "studio-a": "professional",
            "studio-b": "professional",
        }
        assert tones["spoken"]["source"] == "text" and tones["spoken"]["seconds"] > 0
        assert (store.root / f"t{tenant}" / "ringback" / "mine.wav").is_file()


# ---------------------------------------------------------------------------- what plays
async def test_an_application_reaches_the_snapshot_and_plays_from_its_month(
    pool: asyncpg.Pool, store: PromptStore, tmp_path: Path
) -> None:
    """The routing snapshot holds the number's application (a full build and the patch of the
    number's tenant read the same): a call before 1 January rings the default, from then the
    tone; a number without a tone always the default."""
    applied = at(2026, 12, 4)
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn, balance=D("50"))
        number_id, number = await a_number(conn, tenant)
        _other_id, other = await a_number(conn, tenant)
        tone, _ = await ringback.save_tone(
            as_tenant(conn, applied, tenant), store, "winter", ringback.ToneSource(audio=sine(tmp_path, 1000))
        )
        async with conn.transaction():  # the store reads in one transaction (a cursor's)
            base = await load_snapshot(conn, 1, FixedClock(applied))
        await ringback.apply_tone(as_tenant(conn, applied, tenant), number_id, "winter")
        async with conn.transaction():
            full = await load_snapshot(conn, 2, FixedClock(applied))
            patched = await apply_changes(conn, base, Changes(tenants={tenant}), 2, FixedClock(applied))
    assert patched.numbers[number] == full.numbers[number]
    assert patched.numbers[other] == full.numbers[other] and full.numbers[other].ringback == ()
    expected = RingbackTone(tone["id"], f"softswitch/t{tenant}/ringback/winter")
    assert [(a.effective_on, a.tone) for a in full.numbers[number].ringback] == [(date(2027, 1, 1), expected)]

    def heard(called: str, now: datetime) -> RingbackTone | None:
        decision = decide_inbound(full, InboundCall("13900139000", called, "db-rbt"), now)
        assert isinstance(decision, Route), decision
        return decision.ringback

    assert heard(number, at(2026, 12, 31, 23)) is None  # the month has not come yet
    assert heard(number, at(2027, 1, 1, 0)) == expected
    assert heard(other, at(2027, 1, 1, 0)) is None


async def test_the_notice_of_an_application_names_the_numbers_tenant(
    pool: asyncpg.Pool, store: PromptStore, tmp_path: Path
) -> None:
    """Migration 0028's triggers: applying and removing a tone NOTIFY config_changed with
    the number's tenant, which the store re-reads (no full rebuild)."""
    got: list[str] = []
    listener = await asyncpg.connect(Settings().database.dsn())
    try:
        await listener.add_listener("config_changed", lambda *a: got.append(a[3]))
        async with pool.acquire() as conn:
            tenant = await new_tenant(conn)
            number_id, _number = await a_number(conn, tenant)
            await ringback.save_tone(
                as_tenant(conn, at(2026, 12, 4), tenant),
                store,
                "bells",
                ringback.ToneSource(audio=sine(tmp_path, 500)),
            )
            got.clear()
            await ringback.apply_tone(as_tenant(conn, at(2026, 12, 4), tenant), number_id, "bells")
            await ringback.remove_tone(as_tenant(conn, at(2026, 12, 5), tenant), number_id)
        for _ in range(100):
            if sum(f'"tenants": [{tenant}]' in p for p in got) >= 2:
                break
            await asyncio.sleep(0.02)
        assert sum(f'"tenants": [{tenant}]' in p for p in got) >= 2, got
        assert not any('"full"' in p for p in got), got
    finally:
        await listener.close()
