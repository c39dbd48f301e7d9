"""The event-loop lag monitor's arithmetic, with a fake clock and a fake sleep."""

from __future__ import annotations

import asyncio

import pytest

from softswitch.core.loop_lag import LoopLagMonitor
from softswitch.core.metrics import Metrics


class _Recorder:
    def __init__(self) -> None:
        self.values: list[float] = []

    def observe(self, amount: float) -> None:
        self.values.append(amount)

    def set(self, value: float) -> None:
        self.values.append(value)


class _FakeTime:
    """A clock that moves only when the monitor sleeps: each sleep lasts what it asked
    plus the next scripted lateness."""

    def __init__(self, lateness: list[float]) -> None:
        self.now = 100.0
        self.lateness = list(lateness)
        self.asked: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.asked.append(seconds)
        self.now += seconds + self.lateness.pop(0)


def _monitor(fake: _FakeTime, window_s: float = 1.0) -> tuple[LoopLagMonitor, _Recorder, _Recorder]:
    hist, gauge = _Recorder(), _Recorder()
    mon = LoopLagMonitor(hist, gauge, interval_s=0.02, window_s=window_s, sleep=fake.sleep, clock=fake.clock)
    return mon, hist, gauge


def test_lateness_past_the_interval_is_observed() -> None:
    fake = _FakeTime([0.0, 0.0005, 0.030])
    mon, hist, gauge = _monitor(fake)

    async def three() -> list[float]:
        return [await mon.tick() for _ in range(3)]

    lags = asyncio.run(three())
    assert fake.asked == [0.02, 0.02, 0.02]
    assert lags == pytest.approx([0.0, 0.0005, 0.030])
    assert hist.values == pytest.approx(lags)
    assert gauge.values[-1] == pytest.approx(0.030)


def test_an_early_wake_counts_as_zero() -> None:
    # uvloop's millisecond timers can end a 20 ms sleep up to 1 ms early
    fake = _FakeTime([-0.0008])
    mon, hist, _ = _monitor(fake)
    assert asyncio.run(mon.tick()) == 0.0
    assert hist.values == [0.0]


def test_the_max_gauge_covers_the_current_and_the_previous_window() -> None:
    mon, _, gauge = _monitor(_FakeTime([]), window_s=1.0)
    mon.record(0.010, now=0.0)  # opens window [0, 1)
    mon.record(0.001, now=0.5)
    assert gauge.values[-1] == pytest.approx(0.010)
    mon.record(0.002, now=1.2)  # window [1.2, 2.2): the previous one's 10 ms still shows
    assert gauge.values[-1] == pytest.approx(0.010)
    mon.record(0.003, now=2.3)  # window [2.3, 3.3): the 10 ms of [0, 1) is gone
    assert gauge.values[-1] == pytest.approx(0.003)
    mon.record(0.0, now=3.4)
    assert gauge.values[-1] == pytest.approx(0.003)
    mon.record(0.0, now=4.5)
    assert gauge.values[-1] == 0.0


def test_a_gap_of_two_windows_forgets_the_old_maximum() -> None:
    mon, _, gauge = _monitor(_FakeTime([]), window_s=1.0)
    mon.record(0.050, now=0.0)
    mon.record(0.004, now=5.0)
    assert gauge.values[-1] == pytest.approx(0.004)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        LoopLagMonitor(_Recorder(), interval_s=0)


def test_runs_on_a_real_loop_into_the_service_metrics() -> None:
    metrics = Metrics()
    mon = LoopLagMonitor(metrics.event_loop_lag, metrics.event_loop_lag_max, interval_s=0.005)

    async def run() -> None:
        await mon.start()
        await asyncio.sleep(0.06)
        await mon.stop()
        await mon.stop()  # twice is harmless

    asyncio.run(run())
    count = metrics.registry.get_sample_value("softswitch_event_loop_lag_seconds_count")
    assert count is not None and count >= 3
    assert metrics.registry.get_sample_value("softswitch_event_loop_lag_max_seconds") is not None
