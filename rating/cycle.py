"""Billing-cycle arithmetic of the contracts (pure; dates are ``datetime.date``).

Each amount is computed exactly and rounded once with ``to_charge``.
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from datetime import date
from decimal import Decimal

from rating.money import ZERO, minutes_rounded_up, quotient, to_charge
from rating.tariff import Tariff


def _non_negative(amount: Decimal, name: str) -> None:
    if amount < 0:
        raise ValueError(f"{name} must be >= 0, got {amount}")


def days_in_month(day: date) -> int:
    return calendar.monthrange(day.year, day.month)[1]


def add_months(day: date, months: int) -> date:
    """``day`` moved by whole calendar months, clamped to the target month's last day."""
    index = day.year * 12 + day.month - 1 + months
    first = date(index // 12, index % 12 + 1, 1)
    return first.replace(day=min(day.day, days_in_month(first)))


def month_index(starts_on: date, month: date) -> int:
    """1 for the month of ``starts_on``, 2 for the next one, ..."""
    return (month.year - starts_on.year) * 12 + month.month - starts_on.month + 1


def prorate_first_month(monthly_rent: Decimal, included_minutes: int, start: date) -> tuple[Decimal, int]:
    """Seed 001: the application month's rent and included content, prorated by day.

    The start day counts: ``days = days_in_month − start.day + 1``. Rent is
    ``monthly_rent × days / days_in_month``, rounded once. Minutes are FLOORED to whole
    minutes — the bundle is never more than the days paid for.
    """
    _non_negative(monthly_rent, "monthly_rent")
    if included_minutes < 0:
        raise ValueError(f"included_minutes must be >= 0, got {included_minutes}")
    month_days = days_in_month(start)
    days = month_days - start.day + 1
    rent = to_charge(quotient(monthly_rent * days, month_days))
    return rent, included_minutes * days // month_days


def monthly_minimum_due(
    package_total: Decimal, period_months: int, month_index: int, usage: Decimal
) -> Decimal:
    """Seed 002: the top-up owed for month ``month_index`` (1-based) of the period.

    Minimum = package_total / period_months. Month 1 has no minimum; from month 2, usage
    below the minimum is topped up to it (minimum − usage), otherwise 0.
    """
    _non_negative(package_total, "package_total")
    _non_negative(usage, "usage")
    if period_months <= 0:
        raise ValueError(f"period_months must be > 0, got {period_months}")
    if not 1 <= month_index <= period_months:
        raise ValueError(f"month_index must be within 1..{period_months}, got {month_index}")
    if month_index == 1:
        return to_charge(ZERO)
    shortfall = quotient(package_total, period_months) - usage
    return to_charge(max(shortfall, ZERO))


def unanswered_penalty(
    unanswered_ring_seconds: Sequence[int], tariff: Tariff, threshold: int = 100
) -> Decimal:
    """Seed 002 ("malicious non-answering"): with ``threshold`` or more unanswered calls in
    one day, each of that day's unanswered calls is charged its ring time in whole minutes,
    rounded up and at least one minute, at the package rate. Below the threshold: 0.

    ``unanswered_ring_seconds`` holds one day's unanswered calls, one ring time each.
    """
    if any(seconds < 0 for seconds in unanswered_ring_seconds):
        raise ValueError("ring times must be >= 0 seconds")
    if len(unanswered_ring_seconds) < threshold:
        return to_charge(ZERO)
    minutes = sum(max(1, minutes_rounded_up(seconds)) for seconds in unanswered_ring_seconds)
    return to_charge(tariff.rate_per_minute * minutes)


def late_fee(amount_due: Decimal, days_late: int, per_mille_per_day: Decimal = Decimal("3")) -> Decimal:
    """Seed 004: ``per_mille_per_day`` ‰ of the amount due per day late, simple interest on
    the amount due (not compounding), rounded once."""
    _non_negative(amount_due, "amount_due")
    _non_negative(per_mille_per_day, "per_mille_per_day")
    if days_late < 0:
        raise ValueError(f"days_late must be >= 0, got {days_late}")
    return to_charge(quotient(amount_due * per_mille_per_day * days_late, 1000))


def early_termination_fee(monthly_rent: Decimal, months_elapsed: int, min_term_months: int = 6) -> Decimal:
    """Seed 001 §6.3/§7.2: leaving before the minimum term ends costs the monthly rent for
    each term month not yet billed.

    Reading of the clause: the term is ``min_term_months`` (6) months EXCLUDING the
    application month, i.e. calendar months 2..7 counting the application month as month 1.
    ``months_elapsed`` is the number of whole months since the application month: 0 during
    the application month, k during term month k (calendar month k + 1). Rent is billed at
    the start of each month, so the current month is already paid and the fee is
    ``rent × max(0, min_term_months − months_elapsed)``: 6 months in the application month,
    0 from calendar month 7 on (§7.2: the clause does not apply past month 7).
    """
    _non_negative(monthly_rent, "monthly_rent")
    if months_elapsed < 0:
        raise ValueError(f"months_elapsed must be >= 0, got {months_elapsed}")
    remaining = max(0, min_term_months - months_elapsed)
    return to_charge(monthly_rent * remaining)


def expire_unused_minutes(included_left_s: int) -> int:
    """Seed 000: included minutes left at the end of the period expire (they are not carried
    over or refunded). Returns the expired SECONDS, for the ledger; the bundle is then 0."""
    if included_left_s < 0:
        raise ValueError(f"included_left_s must be >= 0, got {included_left_s}")
    return included_left_s
