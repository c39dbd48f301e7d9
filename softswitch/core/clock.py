"""Injected time: the service reads now() from a Clock, never from datetime.now() directly."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    def __init__(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("FixedClock needs an aware datetime (with a UTC offset)")
        self.at = at

    def now(self) -> datetime:
        return self.at


class PinnedClock:
    """Starts at a pinned instant and runs on from there in real time: a demo or a test
    with a pinned date still sees calls last as long as they were talked (a FixedClock
    would make every call 0 s long, and free)."""

    def __init__(self, at: datetime, monotonic: Callable[[], float] = time.monotonic) -> None:
        if at.tzinfo is None:
            raise ValueError("PinnedClock needs an aware datetime (with a UTC offset)")
        self.at = at
        self._monotonic = monotonic
        self._started = monotonic()

    def now(self) -> datetime:
        return self.at + timedelta(seconds=self._monotonic() - self._started)


def clock_from_setting(fixed_now: str) -> Clock:
    """The service's clock: real time, or (``fixed_now``) a pinned start that runs on."""
    return PinnedClock(datetime.fromisoformat(fixed_now)) if fixed_now else SystemClock()
