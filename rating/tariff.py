"""Tariff: a per-minute rate, charging increments and the package's included seconds."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from rating.money import SECONDS_PER_MINUTE


def _positive_int(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")


@dataclass(frozen=True)
class Tariff:
    """How a call's duration becomes money.

    ``first_increment_s``/``increment_s`` of 60/60 is "a started minute counts as a minute";
    6/6 and 1/1 are six-second and per-second billing. ``included_seconds`` is the package's
    allowance per period; what is left of it is passed to ``rate_call`` separately.
    """

    rate_per_minute: Decimal
    first_increment_s: int = 60
    increment_s: int = 60
    included_seconds: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.rate_per_minute, Decimal) or not self.rate_per_minute.is_finite():
            raise TypeError(f"rate_per_minute must be a finite Decimal, got {self.rate_per_minute!r}")
        if self.rate_per_minute < 0:
            raise ValueError(f"rate_per_minute must be >= 0, got {self.rate_per_minute}")
        _positive_int(self.first_increment_s, "first_increment_s")
        _positive_int(self.increment_s, "increment_s")
        if isinstance(self.included_seconds, bool) or not isinstance(self.included_seconds, int):
            raise ValueError(f"included_seconds must be an int, got {self.included_seconds!r}")
        if self.included_seconds < 0:
            raise ValueError(f"included_seconds must be >= 0, got {self.included_seconds}")

    @classmethod
    def from_package(cls, row: Mapping[str, Any]) -> Tariff:
        """From a ``packages`` row: overage_rate (CNY/min), increments, included_minutes × 60.

        Missing increment/bundle columns take the table's defaults (60, 60, 0); a rate given
        as text (e.g. from JSON) is read as a Decimal.
        """
        rate = row["overage_rate"]
        if isinstance(rate, str):
            rate = Decimal(rate)
        return cls(
            rate_per_minute=rate,
            first_increment_s=row.get("first_increment_s", 60),
            increment_s=row.get("increment_s", 60),
            included_seconds=row.get("included_minutes", 0) * SECONDS_PER_MINUTE,
        )


def billable_seconds(billsec: int, tariff: Tariff) -> int:
    """Seconds charged for ``billsec`` seconds of talk: 0 for 0; otherwise the first
    increment, then further increments, each started increment counting in full."""
    if isinstance(billsec, bool) or not isinstance(billsec, int) or billsec < 0:
        raise ValueError(f"billsec must be an int >= 0, got {billsec!r}")
    if billsec == 0:
        return 0
    first, step = tariff.first_increment_s, tariff.increment_s
    if billsec <= first:
        return first
    return first + -(-(billsec - first) // step) * step
