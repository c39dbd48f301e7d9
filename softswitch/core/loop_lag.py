"""How late the event loop runs what is due: a task sleeps a fixed interval, again and
again, and records by how much each wake-up came after the interval's end. Anything
that holds the loop (a garbage collection, a long synchronous step, a blocking write)
delays every call's next step by as much; the service's own latency histograms do not
see it when it falls before their clock starts (e.g. while a connection waits to be
accepted), this does.

The figure has the resolution of the loop's timers: uvloop's are whole milliseconds, so
on the service's loop values under about 1 ms are timer granularity, not stalls (a wake
can even come up to 1 ms early; it counts as 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Protocol


class _Observer(Protocol):
    def observe(self, amount: float) -> None: ...


class _Setter(Protocol):
    def set(self, value: float) -> None: ...


class LoopLagMonitor:
    """Observes each wake-up's lateness (seconds, >= 0) into ``histogram``; ``max_gauge``
    holds the largest lateness of the current and the previous ``window_s`` window, so a
    stall stays visible for at least one whole window whenever it is scraped."""

    def __init__(
        self,
        histogram: _Observer,
        max_gauge: _Setter | None = None,
        *,
        interval_s: float = 0.02,
        window_s: float = 30.0,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if interval_s <= 0 or window_s <= 0:
            raise ValueError("interval_s and window_s must be positive")
        self._histogram = histogram
        self._gauge = max_gauge
        self._interval = interval_s
        self._window = window_s
        self._sleep = sleep
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._window_start: float | None = None
        self._window_max = 0.0
        self._previous_max = 0.0

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-lag")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await self.tick()

    async def tick(self) -> float:
        """One sleep of the interval; returns (and records) how late it ended."""
        before = self._clock()
        await self._sleep(self._interval)
        now = self._clock()
        lag = max(0.0, now - before - self._interval)
        self.record(lag, now)
        return lag

    def record(self, lag: float, now: float) -> None:
        self._histogram.observe(lag)
        if self._window_start is None:
            self._window_start = now
        elif now - self._window_start >= self._window:
            # A whole window (or more) without a tick means the loop itself was held:
            # that lateness belongs to the new window, which this tick opens.
            skipped = now - self._window_start >= 2 * self._window
            self._previous_max = 0.0 if skipped else self._window_max
            self._window_max = 0.0
            self._window_start = now
        self._window_max = max(self._window_max, lag)
        if self._gauge is not None:
            self._gauge.set(max(self._window_max, self._previous_max))
