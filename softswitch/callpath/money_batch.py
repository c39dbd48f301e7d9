"""Group commit for the money path (issue 14, item 5): the calls' reservations and
settlements go to PostgreSQL in batches, one statement and one durable commit per batch.

A batch is whatever arrived while the previous one was committing — no timer, no wait when
the database is idle: a lone call costs one round trip, as before, and a burst costs one
round trip per batch instead of one per call, with no queue of transactions fighting over
a hot account's row lock (each batch takes the lock once for all its calls). Opens and
settlements have a batcher each, each on a connection of its own, so one never waits for
the other's commit. Each caller's result is delivered only after its batch committed:
the reservation is durable before the call may ring.

If a batch fails (the database went away, a statement error), every caller in it gets the
exception — the call path refuses those calls (fail closed), as it did for one call."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import asyncpg

from provisioning.ledger import (
    Grant,
    OpenRequest,
    Refusal,
    Settlement,
    SettleRequest,
    open_reservation,
    open_reservations,
    settle_reservations,
)

log = logging.getLogger(__name__)

Req = TypeVar("Req")
Res = TypeVar("Res")


class GroupCommit(Generic[Req, Res]):
    """Callers `submit` one request each; one flusher runs `run(conn, batch)` (one
    statement, committed) on up to `max_batch` pending requests at a time."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        run: Callable[[asyncpg.Connection, Sequence[Req]], Awaitable[Sequence[Res]]],
        name: str,
        max_batch: int = 256,
        on_batch: Callable[[int], None] = lambda _n: None,
    ) -> None:
        self._pool = pool
        self._run = run
        self._name = name
        self._max = max_batch
        self._on_batch = on_batch
        self._pending: list[tuple[Req, asyncio.Future[Res]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # The flusher's own connection, held between batches: one batch, one round trip
        # (a pooled connection would add the pool's reset query on every release).
        self._conn: asyncpg.Connection | None = None
        self.batches = 0
        self.items = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._flush_forever(), name=f"group-commit-{self._name}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        for _, fut in self._pending:
            if not fut.done():
                fut.set_exception(ConnectionError(f"{self._name} batcher stopped"))
        self._pending.clear()
        await self._drop_connection()

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await self._pool.release(conn)

    async def submit(self, request: Req) -> Res:
        if self._task is None:
            raise ConnectionError(f"{self._name} batcher is not running")
        fut: asyncio.Future[Res] = asyncio.get_running_loop().create_future()
        self._pending.append((request, fut))
        self._wake.set()
        return await fut

    async def _flush_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending[: self._max], self._pending[self._max :]
                await self._flush(batch)

    async def _flush(self, batch: list[tuple[Req, asyncio.Future[Res]]]) -> None:
        live = [(req, fut) for req, fut in batch if not fut.done()]  # a caller may have timed out
        if not live:
            return
        try:
            if self._conn is None:
                self._conn = await self._pool.acquire()
            results = await self._run(self._conn, [req for req, _ in live])
        except asyncio.CancelledError:
            for _, fut in live:
                if not fut.done():
                    fut.set_exception(ConnectionError(f"{self._name} batcher stopped"))
            raise
        except Exception as exc:  # noqa: BLE001 - handed to every caller of the batch
            log.error("%s batch of %d failed: %s", self._name, len(live), exc)
            await self._drop_connection()  # perhaps broken: the next batch takes another
            for _, fut in live:
                if not fut.done():
                    fut.set_exception(exc)
            return
        self.batches += 1
        self.items += len(live)
        self._on_batch(len(live))
        for (_, fut), res in zip(live, results, strict=True):
            if not fut.done():
                fut.set_result(res)


async def _open_batch(conn: asyncpg.Connection, requests: Sequence[OpenRequest]) -> list[Grant | Refusal]:
    try:
        return await open_reservations(conn, requests)
    except asyncpg.UniqueViolationError:
        # A call of the batch was opened concurrently elsewhere (that attempt won) and the
        # whole batch rolled back: its calls again one by one, so only that one is refused.
        return [
            await open_reservation(conn, r.tenant_id, r.call_id, r.channel, r.slice_s, r.now, r.spend_cap)
            for r in requests
        ]


class MoneyBatches:
    """The two batchers of the call path: reservations opened, reservations settled."""

    def __init__(
        self, pool: asyncpg.Pool, on_batch: Callable[[str, int], None] = lambda _k, _n: None
    ) -> None:
        self.opens: GroupCommit[OpenRequest, Grant | Refusal] = GroupCommit(
            pool, _open_batch, "open", on_batch=lambda n: on_batch("open", n)
        )
        self.settles: GroupCommit[SettleRequest, Settlement | None] = GroupCommit(
            pool, settle_reservations, "settle", on_batch=lambda n: on_batch("settle", n)
        )

    def start(self) -> None:
        self.opens.start()
        self.settles.start()

    async def stop(self) -> None:
        await self.opens.stop()
        await self.settles.stop()

    async def open(self, request: OpenRequest) -> Grant | Refusal:
        return await self.opens.submit(request)

    async def settle(self, request: SettleRequest) -> Settlement | None:
        return await self.settles.submit(request)
