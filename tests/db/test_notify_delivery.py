"""The delivery log on the real PostgreSQL: the outbox fans out to the endpoints that want
a notice; workers claim with SKIP LOCKED, so several at once deliver each notice to each
endpoint exactly once; a failure is retried after its backoff and is dead after the last
attempt; a claim whose instance died is taken over only after its lease; a slow endpoint
holds one slot, not the others' notices.

The notices are written at 2100-01-01 and the workers' clock runs there, scoped to the
test's tenants: a service running on the shared database (real time) never sees them."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
from prometheus_client import CollectorRegistry

from softswitch.core.settings import NotifySettings
from softswitch.notify import retry, store
from softswitch.notify.retry import Outcome
from softswitch.notify.store import Claimed
from softswitch.notify.worker import NoticeDelivery
from tests.db.conftest import new_tenant

FUTURE = datetime(2100, 1, 1, tzinfo=UTC)


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


class Scripted:
    """A channel that answers what it is told per endpoint (then delivered), and keeps
    every attempt it saw."""

    def __init__(self, script: dict[int, list[Outcome]] | None = None) -> None:
        self.script = script or {}
        self.sent: list[tuple[int, int]] = []  # (delivery id, attempt)
        self.gates: dict[int, asyncio.Event] = {}  # endpoint -> wait for it

    async def send(self, d: Claimed) -> Outcome:
        self.sent.append((d.id, d.attempts))
        gate = self.gates.get(d.endpoint_id)
        if gate is not None:
            await gate.wait()
        await asyncio.sleep(0)
        queue = self.script.get(d.endpoint_id)
        return queue.pop(0) if queue else Outcome.ok(200)


def settings(**kw: object) -> NotifySettings:
    base: dict[str, object] = {
        "max_attempts": 3,
        "backoff_initial_s": 10.0,
        "lease_s": 60.0,
        "poll_interval_s": 0.2,
    }
    return NotifySettings(**{**base, **kw})


def worker(
    pool: asyncpg.Pool,
    clock: Clock,
    tenants: Sequence[int],
    channel: Scripted,
    registry: CollectorRegistry | None = None,
    **kw: object,
) -> NoticeDelivery:
    return NoticeDelivery(
        pool,
        clock,
        settings(**kw),
        registry or CollectorRegistry(),
        channels={"email": channel, "webhook": channel},
        draw=lambda: 0.5,
        tenants=tenants,
    )


async def endpoint(
    conn: asyncpg.Connection, tenant: int, channel: str = "webhook", kinds: Sequence[str] = (), **kw: object
) -> int:
    address = "ops@example.com" if channel == "email" else "https://example.com/hook"
    return int(
        await conn.fetchval(
            "INSERT INTO notice_endpoints (tenant_id, channel, address, secret, kinds, enabled, deleted_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            tenant,
            channel,
            address,
            "whsec_x" if channel == "webhook" else None,
            list(kinds),
            kw.get("enabled", True),
            kw.get("deleted_at"),
        )
    )


async def notice(
    conn: asyncpg.Connection, tenant: int, kind: str = "missed_call", at: datetime = FUTURE
) -> int:
    return int(
        await conn.fetchval(
            "INSERT INTO outbox (tenant_id, kind, payload, created_at) "
            "VALUES ($1, $2, $3::text::jsonb, $4) RETURNING id",
            tenant,
            kind,
            json.dumps({"caller": "13912345678", "called": "4008001234", "at": at.isoformat()}),
            at,
        )
    )


async def deliveries(conn: asyncpg.Connection, tenant: int) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM notice_deliveries WHERE tenant_id = $1 ORDER BY id", tenant)


async def test_a_notice_fans_out_to_the_enabled_endpoints_that_want_its_kind(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn)
        every = await endpoint(conn, tenant, "email")
        missed_only = await endpoint(conn, tenant, kinds=["missed_call"])
        await endpoint(conn, tenant, kinds=["low_balance"])
        await endpoint(conn, tenant, enabled=False)
        await endpoint(conn, tenant, deleted_at=FUTURE)
        other = await new_tenant(conn)
        await endpoint(conn, other)
        n = await notice(conn, tenant)
        rows = await deliveries(conn, tenant)
        assert [(r["notice_id"], r["endpoint_id"]) for r in rows] == [(n, every), (n, missed_only)]
        assert {r["state"] for r in rows} == {"pending"} and {r["attempts"] for r in rows} == {0}
        assert {r["next_attempt_at"] for r in rows} == {FUTURE}  # due from the notice's time
        assert await deliveries(conn, other) == []
        # a tenant without endpoints: no deliveries
        lonely = await new_tenant(conn)
        await notice(conn, lonely)
        assert await deliveries(conn, lonely) == []


async def test_four_workers_at_once_deliver_each_notice_to_each_endpoint_exactly_once(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn)
        endpoints = [await endpoint(conn, tenant) for _ in range(8)]
        notices = [await notice(conn, tenant) for _ in range(5)]
    clock = Clock(FUTURE)
    channel = Scripted()
    workers = [worker(pool, clock, [tenant], channel, concurrency=3) for _ in range(4)]

    async def drain(w: NoticeDelivery) -> None:
        while await w.run_once():
            pass

    await asyncio.gather(*(drain(w) for w in workers))
    sent = Counter(d for d, _attempt in channel.sent)
    assert len(sent) == len(endpoints) * len(notices) and set(sent.values()) == {1}
    async with pool.acquire() as conn:
        rows = await deliveries(conn, tenant)
        assert {r["state"] for r in rows} == {"delivered"} and {r["attempts"] for r in rows} == {1}
        assert {r["delivered_at"] for r in rows} == {FUTURE}
        done = await conn.fetch("SELECT delivered_at FROM outbox WHERE id = ANY($1::bigint[])", notices)
        assert [r["delivered_at"] for r in done] == [FUTURE] * len(notices)


async def test_a_failure_is_retried_after_its_backoff_and_the_notice_is_delivered_when_all_are(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn)
        flaky = await endpoint(conn, tenant)
        steady = await endpoint(conn, tenant, "email")
        n = await notice(conn, tenant)
    clock = Clock(FUTURE)
    channel = Scripted(
        {flaky: [retry.http_outcome(500), Outcome.failed(retry.TIMEOUT, "no answer within 5 s")]}
    )
    registry = CollectorRegistry()
    w = worker(pool, clock, [tenant], channel, registry)
    assert await w.run_once() == 2
    counted = {
        (c, o): registry.get_sample_value("softswitch_notice_deliveries_total", {"channel": c, "outcome": o})
        for c in ("email", "webhook")
        for o in ("delivered", "failed", "dead")
    }
    assert counted == {
        ("email", "delivered"): 1,
        ("email", "failed"): 0,
        ("email", "dead"): 0,
        ("webhook", "delivered"): 0,
        ("webhook", "failed"): 1,
        ("webhook", "dead"): 0,
    }
    await w.refresh_pending()  # every instance's open deliveries: this one's among them
    assert (
        registry.get_sample_value("softswitch_notice_deliveries_pending", {"channel": "webhook"}) or 0
    ) >= 1
    async with pool.acquire() as conn:
        by_endpoint = {r["endpoint_id"]: r for r in await deliveries(conn, tenant)}
        assert by_endpoint[steady]["state"] == "delivered"
        first = by_endpoint[flaky]
        assert (first["state"], first["attempts"], first["last_status"], first["last_reason"]) == (
            "failed",
            1,
            500,
            "HTTP_STATUS",
        )
        # equal jitter with the draw 0.5: 10 s / 2 + 10 s / 2 * 0.5
        assert first["next_attempt_at"] == FUTURE + timedelta(seconds=7.5)
        assert await conn.fetchval("SELECT delivered_at FROM outbox WHERE id = $1", n) is None
    clock.at = FUTURE + timedelta(seconds=7.4)
    assert await w.run_once() == 0  # not before its time
    clock.at = FUTURE + timedelta(seconds=7.5)
    assert await w.run_once() == 1
    async with pool.acquire() as conn:
        second = await conn.fetchrow("SELECT * FROM notice_deliveries WHERE endpoint_id = $1", flaky)
        assert (second["state"], second["attempts"], second["last_reason"]) == ("failed", 2, "TIMEOUT")
        assert second["next_attempt_at"] == clock.at + timedelta(seconds=15)  # 20 s / 2 + 20 s / 2 * 0.5
    clock.at += timedelta(seconds=15)
    assert await w.run_once() == 1
    async with pool.acquire() as conn:
        third = await conn.fetchrow("SELECT * FROM notice_deliveries WHERE endpoint_id = $1", flaky)
        assert (third["state"], third["attempts"], third["delivered_at"]) == ("delivered", 3, clock.at)
        assert await conn.fetchval("SELECT delivered_at FROM outbox WHERE id = $1", n) == clock.at


async def test_dead_after_the_last_attempt_or_a_permanent_refusal(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn)
        failing = await endpoint(conn, tenant)
        gone = await endpoint(conn, tenant)
        n = await notice(conn, tenant)
    clock = Clock(FUTURE)
    channel = Scripted({failing: [retry.http_outcome(503)] * 3, gone: [retry.http_outcome(410)]})
    w = worker(pool, clock, [tenant], channel)
    for _ in range(3):
        await w.run_once()
        clock.at += timedelta(hours=1)
    assert await w.run_once() == 0
    async with pool.acquire() as conn:
        rows = {r["endpoint_id"]: r for r in await deliveries(conn, tenant)}
        assert (rows[failing]["state"], rows[failing]["attempts"], rows[failing]["last_status"]) == (
            "dead",
            3,
            503,
        )
        assert (rows[gone]["state"], rows[gone]["attempts"], rows[gone]["last_reason"]) == ("dead", 1, "GONE")
        assert await conn.fetchval("SELECT delivered_at FROM outbox WHERE id = $1", n) is None


async def test_a_claim_is_taken_over_only_after_its_lease_and_the_late_outcome_is_dropped(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn)
        await endpoint(conn, tenant)
        await notice(conn, tenant)
        (lost,) = await store.claim(conn, FUTURE, 10, 60, tenants=[tenant])  # then the instance died
        assert lost.attempts == 1 and lost.notice.payload["caller"] == "13912345678"
        assert await store.claim(conn, FUTURE + timedelta(seconds=59), 10, 60, tenants=[tenant]) == []
        (again,) = await store.claim(conn, FUTURE + timedelta(seconds=60), 10, 60, tenants=[tenant])
        assert again.id == lost.id and again.attempts == 2
        late = retry.after_attempt(Outcome.ok(200), 1, retry.RetryPolicy(), FUTURE, 0.5)
        assert not await store.record(conn, lost, Outcome.ok(200), late)  # no longer its claim
        step = retry.after_attempt(Outcome.ok(204), 2, retry.RetryPolicy(), FUTURE, 0.5)
        assert await store.record(conn, again, Outcome.ok(204), step)
        (row,) = await deliveries(conn, tenant)
        assert (row["state"], row["attempts"], row["last_status"]) == ("delivered", 2, 204)


async def test_a_slow_endpoint_holds_one_slot_while_the_others_are_delivered_on_notify(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn)
        slow = await endpoint(conn, tenant)
        fast = await endpoint(conn, tenant, "email")
    clock = Clock(FUTURE)
    channel = Scripted()
    channel.gates[slow] = asyncio.Event()
    # a poll far away: only the outbox trigger's NOTIFY wakes the worker
    w = worker(pool, clock, [tenant], channel, concurrency=4, poll_interval_s=60.0)
    await w.start()
    try:
        async with pool.acquire() as conn:
            notices = [await notice(conn, tenant) for _ in range(3)]
            deadline = time.monotonic() + 5
            while True:
                rows = await deliveries(conn, tenant)
                fast_done = [r for r in rows if r["endpoint_id"] == fast and r["state"] == "delivered"]
                if len(fast_done) == 3:
                    break
                assert time.monotonic() < deadline, [(r["endpoint_id"], r["state"]) for r in rows]
                await asyncio.sleep(0.02)
            slow_rows = [r for r in rows if r["endpoint_id"] == slow]
            # one attempt in flight at the slow endpoint, its other notices wait their turn
            assert sorted(r["attempts"] for r in slow_rows) == [0, 0, 1]
            channel.gates[slow].set()
            deadline = time.monotonic() + 5
            while (
                await conn.fetchval(
                    "SELECT count(*) FROM outbox WHERE id = ANY($1::bigint[]) AND delivered_at IS NOT NULL",
                    notices,
                )
                < 3
            ):
                assert time.monotonic() < deadline, (
                    "the slow endpoint's notices were not delivered after it freed"
                )
                await asyncio.sleep(0.02)
    finally:
        await w.stop()
