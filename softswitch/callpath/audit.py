"""The continuous check of what the control plane believes against what the engine has.

Events can be lost (a reconnect of the engine's event connection, a crash and restart of
the service) or arrive for channels the registry never saw. Every ``interval`` seconds —
and at once after each (re)connection — this asks the engine for its live channels
(``CallControl.live_channels``, which returns once every event emitted before the list has
reached the registry) and:

1. aligns the call registry with them (calls none of whose channels lives are ended,
   channels never seen are adopted): the end listeners then write the call record's end,
   settle the money and close the recording as for any call;
2. closes the reservations of calls the engine no longer has (settled from its CDR or
   released), so no channel slot outlives its call by more than about one interval;
3. completes, from the engine's CDR, the call records of calls that ended while nobody
   listened (a crash of the service): answered_at, ended_at and the hang-up cause, so the
   live list, the reports and the unanswered-calls rule see what really happened.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta

import asyncpg

from softswitch.callpath.control import CallControl, ControlError
from softswitch.callpath.prepaid import CallMoney
from softswitch.callpath.registry import CallRegistry
from softswitch.core.clock import Clock
from softswitch.core.metrics import Metrics

log = logging.getLogger(__name__)

# A call record younger than this may belong to a call whose first channel event is still
# on its way; a record with no CDR at all is closed after the longer wait (the engine lost
# the call, e.g. it restarted).
_RECORD_GRACE = timedelta(seconds=10)
_NO_CDR_GRACE = timedelta(minutes=5)
_LOOKBACK = timedelta(days=2)

_COMPLETE_FROM_CDR = """
WITH open_calls AS (
    SELECT linkedid FROM calls
    WHERE ended_at IS NULL AND decided_at < $1 AND decided_at > $2 AND NOT (linkedid = ANY($3))
), engine AS (
    SELECT d.linkedid,
           min(d.answer) FILTER (WHERE d.disposition = 'ANSWERED') AS answered_at,
           max(d."end") AS ended_at
    FROM engine_cdr d JOIN open_calls o ON o.linkedid = d.linkedid
    GROUP BY d.linkedid
)
UPDATE calls c SET answered_at = COALESCE(c.answered_at, e.answered_at), ended_at = e.ended_at
FROM engine e
WHERE c.linkedid = e.linkedid AND c.ended_at IS NULL AND e.ended_at IS NOT NULL
RETURNING c.linkedid
"""
_CLOSE_WITHOUT_CDR = """
UPDATE calls SET ended_at = decided_at
WHERE ended_at IS NULL AND decided_at < $1 AND decided_at > $2 AND NOT (linkedid = ANY($3))
  AND NOT EXISTS (SELECT 1 FROM engine_cdr d WHERE d.linkedid = calls.linkedid)
RETURNING linkedid
"""


class EngineAudit:
    def __init__(
        self,
        control: CallControl,
        registry: CallRegistry,
        money: CallMoney,
        pool: asyncpg.Pool,
        clock: Clock,
        metrics: Metrics,
        interval_s: float,
        list_lag_s: float = 0.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._control = control
        # How far the engine's channel list may lag behind its events. FreeSWITCH's
        # `show channels` reads its core database, written by a queue after the events:
        # a channel just created may be missing from it for a while. Only channels the
        # registry knew ``list_lag_s`` before the list are judged dead if it lacks them.
        self._lag = list_lag_s
        self._monotonic = monotonic
        self._marks: deque[tuple[float, int]] = deque(maxlen=256)
        self._registry = registry
        self._money = money
        self._pool = pool
        self._clock = clock
        self._metrics = metrics
        self._interval = interval_s
        self._lock = asyncio.Lock()  # one check at a time (the periodic one and a login's)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="engine-audit")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the check must keep running
                log.exception("engine audit failed")

    def _mark(self) -> int:
        now = self._monotonic()
        self._marks.append((now, self._registry.mark()))
        if self._lag <= 0:
            return self._marks[-1][1]
        old = [m for t, m in self._marks if t <= now - self._lag]
        return old[-1] if old else 0  # nothing is old enough yet: judge nothing

    async def check(self) -> None:
        async with self._lock:
            mark = self._mark()
            adopted_before = self._registry.adopted
            try:
                listing = await self._control.live_channels()
            except ControlError as exc:
                log.info("engine audit skipped: %s", exc)
                return
            ended = self._registry.reconcile(listing, as_of=mark)
            if ended:
                log.warning("%d call(s) ended without their Hangup events being seen", len(ended))
                self._metrics.engine_audit.labels("call_ended").inc(len(ended))
            adopted = self._registry.adopted - adopted_before
            if adopted:
                log.warning("%d live channel(s) adopted that no event had announced", adopted)
                self._metrics.engine_audit.labels("channel_adopted").inc(adopted)
            live = {c.linkedid for c in listing} | {c.linkedid for c in self._registry.live()}
            await self._money.reconcile(live)
            completed = await self.complete_records(live, self._clock.now())
            if completed:
                log.warning("%d call record(s) completed from the engine's CDR", completed)
                self._metrics.engine_audit.labels("record_completed").inc(completed)

    async def complete_records(self, live: set[str], now: datetime) -> int:
        """Call records still open for calls the engine no longer has: their answer and end
        from the CDR, or (no CDR after a long wait) closed at the decision's time."""
        async with self._pool.acquire() as conn, conn.transaction():
            done = await conn.fetch(_COMPLETE_FROM_CDR, now - _RECORD_GRACE, now - _LOOKBACK, list(live))
            lost = await conn.fetch(_CLOSE_WITHOUT_CDR, now - _NO_CDR_GRACE, now - _LOOKBACK, list(live))
        return len(done) + len(lost)
