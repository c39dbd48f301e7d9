"""Writes the control plane's call records off the hot path: the AGI handler enqueues the
decision and returns to Asterisk at once; this writer batches rows into PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from softswitch.callpath.registry import LiveCall
from softswitch.core.metrics import Metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    linkedid: str
    uniqueid: str
    tenant_id: int | None
    number_id: int | None
    caller: str
    called: str
    action: str
    reason: str
    destinations: tuple[str, ...]
    decided_at: datetime
    decision_us: int
    why: str = ""
    group_name: str = ""
    final_action: str = ""
    direction: str = "inbound"
    caller_id_shown: str = ""


@dataclass(frozen=True, slots=True)
class TransferRecord:
    """A transfer's decision (migration 0029: call_transfers)."""

    linkedid: str
    leg_call_id: str
    tenant_id: int | None
    kind: str
    transferor: str
    target: str
    action: str
    reason: str
    direction: str
    billable: bool
    destinations: tuple[str, ...]
    decided_at: datetime


_TRANSFER = """
INSERT INTO call_transfers (linkedid, leg_call_id, tenant_id, kind, transferor, target, action,
                            reason, direction, billable, destinations, decided_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT (leg_call_id) DO NOTHING
"""


@dataclass(frozen=True, slots=True)
class EndRecord:
    linkedid: str
    answered_at: datetime | None
    ended_at: datetime
    hangup_cause: int | None
    alerted_at: datetime | None = None
    forwarded_answered_at: datetime | None = None  # a bound destination answered (split billing)

    @staticmethod
    def of(call: LiveCall) -> EndRecord:
        assert call.ended_at is not None
        return EndRecord(
            call.linkedid,
            call.answered_at,
            call.ended_at,
            call.hangup_cause,
            call.alerted_at,
            call.callee_answered_at,
        )


Item = DecisionRecord | EndRecord | TransferRecord

_INSERT = """
INSERT INTO calls (linkedid, uniqueid, tenant_id, number_id, caller, called, action, reason,
                   destinations, decided_at, decision_us, why, group_name, final_action,
                   direction, caller_id_shown)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
ON CONFLICT (linkedid) DO UPDATE
    -- An IVR's first decision ("ivr") is followed by the menu's outcome for the same call.
    SET action = EXCLUDED.action, reason = EXCLUDED.reason, destinations = EXCLUDED.destinations,
        decision_us = EXCLUDED.decision_us, why = EXCLUDED.why, group_name = EXCLUDED.group_name,
        final_action = EXCLUDED.final_action, caller_id_shown = EXCLUDED.caller_id_shown
    WHERE calls.action = 'ivr'
"""
# A routed inbound call nobody answered, whose number wants it: a missed-call notice.
_MISSED = """
INSERT INTO outbox (tenant_id, kind, dedupe_key, payload, created_at)
SELECT tenant_id, 'missed_call', linkedid,
       jsonb_build_object('caller', caller, 'called', called, 'number_id', number_id,
                          'destinations', destinations, 'at', decided_at),
       $2
FROM calls
WHERE linkedid = $1 AND action = 'dial' AND direction = 'inbound'
  AND final_action = 'missed_call' AND answered_at IS NULL
ON CONFLICT (kind, dedupe_key) DO NOTHING
"""
# One statement for the batch's ends; it names the tenants whose outbound calls ended,
# for the compliance monitors (softswitch.callpath.compliance_watch).
_END = """
UPDATE calls SET answered_at = e.answered_at, ended_at = e.ended_at, hangup_cause = e.hangup_cause,
                 alerted_at = e.alerted_at, forwarded_answered_at = e.forwarded_answered_at
FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[], $4::int[], $5::timestamptz[],
            $6::timestamptz[])
     AS e (linkedid, answered_at, ended_at, hangup_cause, alerted_at, forwarded_answered_at)
WHERE calls.linkedid = e.linkedid AND calls.ended_at IS NULL
RETURNING calls.tenant_id, calls.direction
"""


def _transient(exc: BaseException) -> bool:
    """The database restarting or unreachable (not a fault of the batch itself)."""
    if isinstance(exc, asyncpg.DataError):
        return False
    return isinstance(
        exc,
        OSError
        | TimeoutError
        | asyncpg.PostgresConnectionError
        | asyncpg.exceptions.OperatorInterventionError  # starting up, shutting down
        | asyncpg.InterfaceError,  # the connection closed under a statement
    )


class CallRecordWriter:
    def __init__(
        self, pool: asyncpg.Pool, metrics: Metrics, batch: int = 500, linger_s: float = 0.01
    ) -> None:
        """``linger_s``: after the first record of a batch, how long to let more arrive —
        at a few hundred calls a second one transaction then carries several calls' records
        instead of one (the records are not on any call's decision path)."""
        self._pool = pool
        self._metrics = metrics
        self._batch = batch
        self._linger = linger_s
        # The writer's connection, kept from batch to batch while records keep coming (a
        # release costs the pool's reset query); given back when the queue runs empty or a
        # batch fails.
        self._conn: asyncpg.Connection | None = None
        self._queue: asyncio.Queue[Item] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._outbound_ended: list[Callable[[set[int]], None]] = []

    def on_outbound_ended(self, listener: Callable[[set[int]], None]) -> None:
        """`listener(tenant_ids)` after a batch that recorded the end of outbound calls."""
        self._outbound_ended.append(listener)

    def decided(self, rec: DecisionRecord) -> None:
        self._queue.put_nowait(rec)

    def transferred(self, rec: TransferRecord) -> None:
        self._queue.put_nowait(rec)

    def ended(self, call: LiveCall) -> None:
        self._queue.put_nowait(EndRecord.of(call))

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="call-record-writer")

    async def stop(self, timeout: float = 5.0) -> None:
        """Flush what is queued, then stop."""
        try:
            await asyncio.wait_for(self._queue.join(), timeout)
        except TimeoutError:
            log.error("call record writer: %d records not flushed at stop", self._queue.qsize())
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._drop_connection()

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await self._pool.release(conn)

    async def _run(self) -> None:
        while True:
            items = [await self._queue.get()]
            if self._linger > 0 and self._queue.qsize() < self._batch:
                await asyncio.sleep(self._linger)
            while len(items) < self._batch and not self._queue.empty():
                items.append(self._queue.get_nowait())
            try:
                await self._write_retrying(items)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - count it, keep the service up
                self._metrics.call_record_errors.inc()
                log.error("call record batch of %d failed: %s", len(items), exc)
            finally:
                if self._queue.empty():
                    await self._drop_connection()  # idle: back to the pool until the next record
                for _ in items:
                    self._queue.task_done()

    async def _write_retrying(self, items: list[Item], max_delay: float = 1.0) -> None:
        """Write the batch; while the database is restarting or unreachable, again after a
        doubling pause (every statement of a batch is idempotent). Dropping it would lose
        the record of a call the ledger charges (its decision) or leave a charged call
        recorded as never answered (its end) — seen in the chaos soak (bench/chaos.py) on a
        PostgreSQL restart. A batch the database refuses for itself is dropped, counted."""
        delay = 0.1
        while True:
            try:
                await self._write(items)
                return
            except Exception as exc:
                await self._drop_connection()  # perhaps broken: the next attempt takes another
                if not _transient(exc):
                    raise
                self._metrics.call_record_errors.inc()
                log.warning(
                    "call record batch of %d not written, again in %.1f s: %s", len(items), delay, exc
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)

    async def write(self, items: list[Item]) -> None:
        """One batch now, outside the queue (tools, tests), on a pooled connection that is
        given back at once."""
        async with self._pool.acquire() as conn:
            await self._write_on(conn, items)

    async def _write(self, items: list[Item]) -> None:
        if self._conn is None:
            self._conn = await self._pool.acquire()
        await self._write_on(self._conn, items)

    async def _write_on(self, conn: asyncpg.Connection, items: list[Item]) -> None:
        decisions = [
            (
                d.linkedid,
                d.uniqueid,
                d.tenant_id,
                d.number_id,
                d.caller,
                d.called,
                d.action,
                d.reason,
                list(d.destinations),
                d.decided_at,
                d.decision_us,
                d.why,
                d.group_name,
                d.final_action,
                d.direction,
                d.caller_id_shown,
            )
            for d in items
            if isinstance(d, DecisionRecord)
        ]
        ends = [e for e in items if isinstance(e, EndRecord)]
        transfers = [
            (
                x.linkedid,
                x.leg_call_id,
                x.tenant_id,
                x.kind,
                x.transferor,
                x.target,
                x.action,
                x.reason,
                x.direction,
                x.billable,
                list(x.destinations),
                x.decided_at,
            )
            for x in items
            if isinstance(x, TransferRecord)
        ]
        tenants: set[int] = set()
        async with conn.transaction():
            if decisions:
                await conn.executemany(_INSERT, decisions)
            if transfers:
                await conn.executemany(_TRANSFER, transfers)
            if ends:
                ended = await conn.fetch(
                    _END,
                    [e.linkedid for e in ends],
                    [e.answered_at for e in ends],
                    [e.ended_at for e in ends],
                    [e.hangup_cause for e in ends],
                    [e.alerted_at for e in ends],
                    [e.forwarded_answered_at for e in ends],
                )
                await conn.executemany(_MISSED, [(e.linkedid, e.ended_at) for e in ends])
                tenants = {r["tenant_id"] for r in ended if r["direction"] == "outbound" and r["tenant_id"]}
        if tenants:
            for listener in self._outbound_ended:
                listener(tenants)
