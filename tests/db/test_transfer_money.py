"""The money of transferred calls on the real database (softswitch.callpath.prepaid with
the registry fed AMI events as Asterisk sends them): a blind transfer settles the leg the
transferor leaves before the new leg reserves, so a one-channel package carries it and the
channel count never reads two; each leg is charged for its own talk, once; an attended
transfer's consultation holds a second channel until the transferor leaves."""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg

from provisioning.ledger import Grant, Refusal
from softswitch.callpath.prepaid import CallMoney
from softswitch.callpath.registry import CallRegistry, LiveChannel
from softswitch.core.clock import FixedClock
from softswitch.core.metrics import Metrics
from softswitch.core.settings import PrepaidSettings
from softswitch.engines.asterisk.ami.codec import AmiMessage
from softswitch.engines.asterisk.events import AmiChannelEvents
from tests.db.conftest import new_tenant

T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
DESK_CHANNEL = "PJSIP/t7x8001-00000002"
TARGET_CHANNEL = "PJSIP/carrier-out-00000003"


class NoControl:
    def __init__(self) -> None:
        self.extended: list[tuple[str, int]] = []

    async def extend_hard_stop(self, channel: str, seconds: int) -> None:
        self.extended.append((channel, seconds))

    async def warn(self, channel: str) -> None: ...

    async def hangup(self, channel: str, cause: int) -> None: ...

    async def live_channels(self) -> list[LiveChannel]:
        return []


class TransferredCall:
    """One inbound call, its AMI events and its money, with the clock in the test's hand."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.clock = FixedClock(T0)
        self.registry = CallRegistry(self.clock)
        self.control = NoControl()
        self.money = CallMoney(pool, self.control, self.registry, self.clock, Metrics(), PrepaidSettings())
        self.registry.add_end_listener(self.money.on_call_end)
        self.registry.add_leg_end_listener(self.money.on_leg_end)
        self.events = AmiChannelEvents(self.registry)
        base = f"{random.randrange(10**9)}.{random.randrange(10**4)}"
        self.linkedid = f"{base}0"
        self.desk, self.target = f"{base}1", f"{base}3"
        self.local1, self.local2 = f"{base}4", f"{base}5"

    def at(self, seconds: float) -> TransferredCall:
        self.clock.at = T0 + timedelta(seconds=seconds)
        return self

    def send(self, event: str, uid: str, **headers: str) -> None:
        self.events.on_event(
            AmiMessage(
                headers=(("Event", event), ("Uniqueid", uid), ("Linkedid", self.linkedid), *headers.items())
            )
        )

    def channel(self, uid: str, name: str) -> None:
        self.send("Newchannel", uid, Channel=name, CallerIDNum="13900001111", Exten="s")

    def answer(self, uid: str, name: str) -> None:
        self.send("Newstate", uid, ChannelState="6")
        self.send("DialEnd", self.linkedid, DialStatus="ANSWER", DestUniqueid=uid, DestChannel=name)

    def hangup(self, uid: str) -> None:
        self.send("Hangup", uid, Cause="16")

    async def first_leg(self, tenant: int) -> None:
        self.channel(self.linkedid, "PJSIP/carrier-in-00000001")
        grant = await self.money.authorize(tenant, self.linkedid, "PJSIP/carrier-in-00000001")
        assert isinstance(grant, Grant), grant
        self.channel(self.desk, DESK_CHANNEL)
        self.at(2).answer(self.desk, DESK_CHANNEL)
        self.send("Newstate", self.linkedid, ChannelState="6")


async def reservation(pool: asyncpg.Pool, call_id: str, state: str = "settled") -> asyncpg.Record:
    deadline = time.monotonic() + 5
    while True:
        async with pool.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM reservations WHERE call_id = $1", call_id)
        if row is not None and row["state"] == state:
            return row
        assert time.monotonic() < deadline, f"reservation {call_id} not {state}: {row}"
        await asyncio.sleep(0.02)


async def account(pool: asyncpg.Pool, tenant: int) -> asyncpg.Record:
    async with pool.acquire() as conn:
        return await conn.fetchrow("SELECT * FROM accounts WHERE tenant_id = $1", tenant)


async def test_a_blind_transfer_on_a_one_channel_package(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn, balance=Decimal("100"), channel_cap=1)
    c = TransferredCall(pool)
    await c.first_leg(tenant)
    assert (await account(pool, tenant))["channels_in_use"] == 1
    # #1 keyed at 32 s: the extension's leg (30 s of talk) is settled first ...
    assert await c.at(32).money.transferor_leaves(c.linkedid, DESK_CHANNEL) == 1
    first = await reservation(pool, c.linkedid)
    assert first["billsec"] == 30
    assert (await account(pool, tenant))["channels_in_use"] == 0
    # ... then the new leg reserves the package's one channel
    leg = c.registry.transfer_started(c.linkedid, "blind")
    assert leg is not None
    grant = await c.money.authorize(tenant, leg.call_id, "PJSIP/carrier-in-00000001", linkedid=c.linkedid)
    assert isinstance(grant, Grant), grant
    assert (await account(pool, tenant))["channels_in_use"] == 1
    c.hangup(c.desk)  # Asterisk hangs the transferor up: nothing left to settle twice
    c.channel(c.target, TARGET_CHANNEL)
    c.at(35).answer(c.target, TARGET_CHANNEL)
    # another call of the tenant meanwhile: the one channel is the transferred call's
    other = await c.money.authorize(tenant, f"{c.linkedid}-other", "PJSIP/carrier-in-00000009")
    assert other is Refusal.CHANNEL_LIMIT
    c.at(95).hangup(c.linkedid)
    c.hangup(c.target)
    second = await reservation(pool, leg.call_id)
    assert second["billsec"] == 60  # from the target's answer to the end
    acct = await account(pool, tenant)
    assert (acct["channels_in_use"], acct["reserved"]) == (0, Decimal("0"))
    async with pool.acquire() as conn:
        entries = await conn.fetch(
            "SELECT idempotency_key, amount FROM ledger_entries WHERE tenant_id = $1 AND kind = 'call' "
            "ORDER BY id",
            tenant,
        )
    assert [e["idempotency_key"] for e in entries] == [c.linkedid, leg.call_id]
    assert [e["amount"] for e in entries] == [-first["charged"], -second["charged"]]
    assert first["charged"] > 0 and second["charged"] > 0
    assert acct["balance"] == Decimal("100") - first["charged"] - second["charged"]


async def test_an_attended_transfer_holds_a_second_channel_while_consulting(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn, balance=Decimal("100"), channel_cap=2)
    c = TransferredCall(pool)
    await c.first_leg(tenant)
    c.at(10).channel(c.local1, "Local/13800000001@ss-transfer-00000001;1")
    c.channel(c.local2, "Local/13800000001@ss-transfer-00000001;2")
    leg = c.registry.transfer_started(c.linkedid, "attended")
    assert leg is not None
    grant = await c.money.authorize(
        tenant, leg.call_id, "Local/13800000001@ss-transfer-00000001;2", linkedid=c.linkedid
    )
    assert isinstance(grant, Grant), grant
    assert (await account(pool, tenant))["channels_in_use"] == 2  # two conversations
    c.channel(c.target, TARGET_CHANNEL)
    c.at(14).answer(c.target, TARGET_CHANNEL)
    c.at(40).hangup(c.desk)  # the transferor completes the transfer and leaves
    first = await reservation(pool, c.linkedid)
    assert first["billsec"] == 38  # answered at 2 s, left at 40 s
    assert (await account(pool, tenant))["channels_in_use"] == 1
    c.hangup(c.local1)
    c.hangup(c.local2)
    c.at(74).hangup(c.target)
    c.hangup(c.linkedid)
    second = await reservation(pool, leg.call_id)
    assert second["billsec"] == 60  # the target's answer (14 s) to its hang-up (74 s)
    assert (await account(pool, tenant))["channels_in_use"] == 0


async def test_a_transfer_nobody_answers_is_released_and_the_first_leg_charged(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn, balance=Decimal("100"), channel_cap=1)
    c = TransferredCall(pool)
    await c.first_leg(tenant)
    await c.at(20).money.transferor_leaves(c.linkedid, DESK_CHANNEL)
    leg = c.registry.transfer_started(c.linkedid, "blind")
    assert leg is not None
    assert isinstance(await c.money.authorize(tenant, leg.call_id, "x", linkedid=c.linkedid), Grant)
    c.hangup(c.desk)
    c.channel(c.target, TARGET_CHANNEL)
    c.at(50).hangup(c.target)  # never answered
    c.hangup(c.linkedid)
    assert (await reservation(pool, c.linkedid))["billsec"] == 18
    released = await reservation(pool, leg.call_id, "released")
    assert released["charged"] == 0
    assert (await account(pool, tenant))["channels_in_use"] == 0


async def test_a_transfer_leg_is_renewed_on_its_own_answer_and_stops_its_own_target(
    pool: asyncpg.Pool,
) -> None:
    """The leg's slice runs from its target's answer, and the renewal extends the hard stop
    on the target's channel — not on the transferor's, who has left."""
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn, balance=Decimal("100"), channel_cap=1)
    c = TransferredCall(pool)
    await c.first_leg(tenant)
    await c.at(20).money.transferor_leaves(c.linkedid, DESK_CHANNEL)
    leg = c.registry.transfer_started(c.linkedid, "blind")
    assert leg is not None
    assert isinstance(await c.money.authorize(tenant, leg.call_id, "x", linkedid=c.linkedid), Grant)
    c.hangup(c.desk)
    c.channel(c.target, TARGET_CHANNEL)
    c.at(25).answer(c.target, TARGET_CHANNEL)
    await c.at(60).money.tick()  # 35 s into the leg's 60 s slice: not yet
    assert c.control.extended == []
    await c.at(72).money.tick()  # 13 s left (the margin is 15 s): renewed
    deadline = time.monotonic() + 5
    while not c.control.extended:
        assert time.monotonic() < deadline, "the leg's renewal did not extend its hard stop"
        await asyncio.sleep(0.02)
    assert c.control.extended == [(TARGET_CHANNEL, 73)]  # 120 s granted from its answer at 25 s
    assert (await reservation(pool, leg.call_id, "open"))["granted_s"] == 120
    c.at(80).hangup(c.linkedid)
    c.hangup(c.target)
    assert (await reservation(pool, leg.call_id))["billsec"] == 55
