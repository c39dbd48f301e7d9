"""Injected time: the service reads now() from a Clock, never from datetime.now() directly."""

from __future__ import annotations

from datetime import UTC, datetime
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


def clock_from_setting(fixed_now: str) -> Clock:
    return FixedClock(datetime.fromisoformat(fixed_now)) if fixed_now else SystemClock()
