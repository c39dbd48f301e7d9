"""The contracts' fees that are not a month's rent (pure; dates are ``datetime.date``).

Seed 000: the platform fee per contract year, renewals not shorter than the original,
call credit forfeited at the contract's end. Seed 003: the annual minimum consumption.
Seed 001: the early-termination fee (``rating.cycle.early_termination_fee``, applied here to
the subscription's dates) and the one-off fees. Each amount is rounded once (``to_charge``).
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from rating.cycle import add_months, early_termination_fee, month_index
from rating.money import ZERO, to_charge

MONTHS_PER_YEAR = 12


def contract_year(starts_on: date, day: date) -> int:
    """Which year of a contract starting ``starts_on`` the ``day`` is in: 1 from
    ``starts_on`` up to the day before its first anniversary, 2 from then, ..."""
    if day < starts_on:
        raise ValueError(f"day {day} is before the contract starts ({starts_on})")
    years = (month_index(starts_on, day) - 1) // MONTHS_PER_YEAR
    if add_months(starts_on, years * MONTHS_PER_YEAR) > day:
        years -= 1  # the anniversary falls later in the day's month
    return years + 1


def contract_year_bounds(starts_on: date, year: int) -> tuple[date, date]:
    """(first day, first day of the next year) of contract year ``year`` (1-based)."""
    if year < 1:
        raise ValueError(f"year must be >= 1, got {year}")
    return (
        add_months(starts_on, (year - 1) * MONTHS_PER_YEAR),
        add_months(starts_on, year * MONTHS_PER_YEAR),
    )


def annual_minimum_shortfall(annual_minimum: Decimal, usage: Decimal) -> Decimal:
    """Seed 003 §4.2 ("最低消费：2000元/1年"): a contract year whose call charges stayed under
    the annual minimum is topped up to it; at or over it, nothing is owed."""
    if annual_minimum < 0 or usage < 0:
        raise ValueError(f"annual_minimum and usage must be >= 0, got {annual_minimum}, {usage}")
    return to_charge(max(annual_minimum - usage, ZERO))


def term_months(starts_on: date, ends_on: date) -> int:
    """The whole months a contract from ``starts_on`` to ``ends_on`` (both included) runs:
    2026-01-01..2026-12-31 and 2026-01-15..2027-01-14 are 12 months."""
    if ends_on < starts_on:
        raise ValueError(f"ends_on {ends_on} is before starts_on {starts_on}")
    after_end = ends_on + timedelta(days=1)
    months = month_index(starts_on, after_end) - 1
    while months > 0 and add_months(starts_on, months) > after_end:
        months -= 1
    return months


def renewal_too_short(original_months: int, renewal_months: int | None) -> bool:
    """Seed 000 §2.4 ("续费周期不低于12月") read as the MISSION states it: a renewal's period
    is not shorter than the original contract's. ``renewal_months`` None: open-ended."""
    if original_months < 0:
        raise ValueError(f"original_months must be >= 0, got {original_months}")
    return renewal_months is not None and renewal_months < original_months


def early_termination(
    monthly_rent: Decimal,
    starts_on: date,
    ended_on: date,
    min_term_months: int,
    ends_on: date | None = None,
) -> Decimal:
    """Seed 001 §6.3 and §7.2 for a subscription that started ``starts_on`` and is ended on
    ``ended_on``: ``monthly_rent × remaining term months`` (``early_termination_fee``).

    Reading: the term is ``min_term_months`` months NOT counting the application month
    (the month of ``starts_on``), so it covers calendar months 2..7. The month the contract
    ends in has had its rent charged (rent is charged at each month's start), so the months
    still owed are those of the term after it: 6 in the application month, 5 in month 2,
    ..., 0 from month 7 on — §7.2: "协议期超过 7 个月的，此条款不适用". A contract ended before
    it started owes nothing (§6.2: rent runs from the day the service opened). A contract
    signed to end (``ends_on``) before its term would have owes no month after that end.
    """
    if ended_on < starts_on:
        return to_charge(ZERO)
    months_elapsed = month_index(starts_on, ended_on) - 1
    fee = early_termination_fee(monthly_rent, months_elapsed, min_term_months)
    if ends_on is None:
        return fee
    months_to_end = max(0, month_index(ended_on, ends_on) - 1)
    return min(fee, to_charge(monthly_rent * months_to_end))


def one_off_amount(unit_price: Decimal, quantity: int) -> Decimal:
    """Seed 001's one-off fees (debugging 99/次, gateway installation 199/路, SIP phone
    299/台, tone production 99/次): the unit price times the units ordered."""
    if unit_price < 0:
        raise ValueError(f"unit_price must be >= 0, got {unit_price}")
    if isinstance(quantity, bool) or quantity < 1:
        raise ValueError(f"quantity must be >= 1, got {quantity!r}")
    return to_charge(unit_price * quantity)


def unused_credit_forfeited(balance: Decimal, reserved: Decimal) -> Decimal:
    """Seed 000 §3.10 ("合同期结束剩余通话时间将清零"; §1.1: prepayments are not refunded):
    at the contract's end the call credit left — the balance not held by a call — is
    forfeited. A debt is not: a negative balance stays owed."""
    return max(balance - reserved, ZERO)
