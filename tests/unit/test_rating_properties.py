"""Properties of the rating arithmetic (hypothesis), checked against exact Fractions."""

from __future__ import annotations

import calendar
import math
from datetime import date
from decimal import Decimal
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from rating.cycle import late_fee, prorate_first_month
from rating.money import CENT
from rating.prepaid import reserved_for, seconds_affordable
from rating.rate import rate_call
from rating.tariff import Tariff, billable_seconds

FAST = settings(max_examples=200, deadline=None)

# packages.overage_rate is NUMERIC(10, 4); amounts are NUMERIC(12, 2).
rates = st.decimals(min_value=0, max_value=10, places=4)
amounts = st.decimals(min_value=0, max_value=1_000_000, places=2)
increments = st.one_of(st.sampled_from([1, 6, 30, 60]), st.integers(1, 600))
tariffs = st.builds(Tariff, rates, increments, increments, st.integers(0, 10_000).map(lambda m: m * 60))
billsecs = st.integers(0, 200_000)
slice_counts = st.one_of(st.sampled_from([1, 2, 3]), st.integers(1, 30))  # few slices: least slack
slice_lengths = st.one_of(st.sampled_from([1, 5, 6, 10, 30, 60]), st.integers(1, 900))


def cents_half_up(exact: Fraction) -> Decimal:
    """The oracle: one ROUND_HALF_UP of an exact non-negative rational to the cent."""
    assert exact >= 0
    return Decimal(math.floor(exact * 100 + Fraction(1, 2))).scaleb(-2)


def has_cents(amount: Decimal) -> bool:
    return amount >= 0 and amount == amount.quantize(CENT) and amount.as_tuple().exponent == -2


@FAST
@given(tariffs, billsecs)
def test_billable_seconds_bounds(tariff: Tariff, billsec: int) -> None:
    billable = billable_seconds(billsec, tariff)
    if billsec == 0:
        assert billable == 0
    else:
        assert billsec <= billable < billsec + max(tariff.increment_s, tariff.first_increment_s)


@FAST
@given(tariffs, billsecs, st.integers(0, 10_000))
def test_billable_seconds_is_monotonic(tariff: Tariff, billsec: int, more: int) -> None:
    assert billable_seconds(billsec, tariff) <= billable_seconds(billsec + more, tariff)


@FAST
@given(tariffs, billsecs, st.integers(0, 300_000))
def test_charge_splits_bundle_and_overage(tariff: Tariff, billsec: int, included_left_s: int) -> None:
    charge = rate_call(billsec, tariff, included_left_s)
    assert charge.billable_s == billable_seconds(billsec, tariff)
    assert charge.included_used_s + charge.overage_s == charge.billable_s
    assert 0 <= charge.included_used_s <= included_left_s
    assert charge.overage_s == 0 or charge.included_used_s == included_left_s  # bundle first
    assert has_cents(charge.amount)
    assert charge.minutes == math.ceil(Fraction(charge.billable_s, 60))


@FAST
@given(tariffs, billsecs, st.integers(0, 300_000))
def test_charge_is_rounded_once(tariff: Tariff, billsec: int, included_left_s: int) -> None:
    charge = rate_call(billsec, tariff, included_left_s)
    exact = Fraction(charge.overage_s) * Fraction(tariff.rate_per_minute) / 60
    assert charge.amount == cents_half_up(exact)


@FAST
@given(tariffs, slice_lengths, slice_counts, st.integers(0, 3_000), st.data())
def test_a_reservation_covers_every_call_length_it_granted(
    tariff: Tariff, slice_s: int, slices: int, included_s: int, data: st.DataObject
) -> None:
    # Whatever the slice and the increments: a call that ends at any second of the time
    # granted (0..granted) is charged at most what the reservation holds.
    granted = slices * slice_s
    billsec = data.draw(st.integers(0, granted), label="billsec")
    assert rate_call(billsec, tariff, included_s).amount <= reserved_for(granted, tariff, included_s)


@FAST
@given(tariffs, slice_lengths, slice_counts, st.integers(0, 3_000))
def test_a_reservation_never_shrinks_as_slices_are_granted(
    tariff: Tariff, slice_s: int, slices: int, included_s: int
) -> None:
    held = [reserved_for(n * slice_s, tariff, included_s) for n in range(slices + 1)]
    assert held == sorted(held) and all(has_cents(h) for h in held)


@FAST
@given(tariffs, st.decimals(min_value=-100, max_value=1000, places=4), amounts.map(lambda a: a / 100))
def test_seconds_affordable_is_the_longest_call_that_fits(
    tariff: Tariff, balance: Decimal, credit: Decimal
) -> None:
    cap = 20_000
    seconds = seconds_affordable(balance, credit, tariff, 0, cap_s=cap)
    available = balance + credit
    assert 0 <= seconds <= cap
    if seconds > 0:
        assert rate_call(seconds, tariff, 0).amount <= available
    if seconds < cap:
        assert rate_call(seconds + 1, tariff, 0).amount > available


@FAST
@given(amounts, st.integers(0, 10_000), st.integers(2000, 2100), st.integers(1, 12))
def test_prorations_over_every_start_day(rent: Decimal, minutes: int, year: int, month: int) -> None:
    month_days = calendar.monthrange(year, month)[1]
    previous = (rent, minutes)
    for day in range(1, month_days + 1):
        prorated_rent, prorated_minutes = prorate_first_month(rent, minutes, date(year, month, day))
        days = month_days - day + 1
        assert 0 <= prorated_rent <= rent and has_cents(prorated_rent)
        assert 0 <= prorated_minutes <= minutes
        assert prorated_rent == cents_half_up(Fraction(rent) * days / month_days)
        assert prorated_minutes == math.floor(Fraction(minutes * days, month_days))
        assert prorated_rent <= previous[0] and prorated_minutes <= previous[1]
        previous = (prorated_rent, prorated_minutes)


@FAST
@given(amounts, st.integers(0, 1000), st.integers(0, 1000))
def test_late_fee_is_linear_in_days_up_to_rounding(amount: Decimal, days: int, more: int) -> None:
    fee = late_fee(amount, days + more)
    assert fee == cents_half_up(Fraction(amount) * 3 * (days + more) / 1000)
    assert abs(fee - late_fee(amount, days) - late_fee(amount, more)) <= CENT
