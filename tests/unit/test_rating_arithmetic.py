"""Table tests of the rating arithmetic with the contracts' own numbers (seeds 000-004)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from rating.cycle import (
    early_termination_fee,
    expire_unused_minutes,
    late_fee,
    monthly_minimum_due,
    prorate_first_month,
    unanswered_penalty,
)
from rating.money import CENT, cost_of_seconds, to_charge, to_reservation
from rating.prepaid import reserved_for, seconds_affordable
from rating.rate import Charge, rate_call
from rating.tariff import Tariff, billable_seconds

D = Decimal
RATE_001 = D("0.12")  # seeds 001 and 003
RATE_000 = D("0.10")  # seed 000
A39_ROW = {
    "code": "A39",
    "monthly_rent": D("39.00"),
    "included_minutes": 99,
    "overage_rate": D("0.1200"),
    "first_increment_s": 60,
    "increment_s": 60,
    "split_billing": False,
}
A39 = Tariff.from_package(A39_ROW)


def per(seconds: int, rate: Decimal = RATE_001) -> Tariff:
    return Tariff(rate, first_increment_s=seconds, increment_s=seconds)


# ------------------------------------------------------------------ money


@pytest.mark.parametrize(
    ("exact", "charge"),
    [
        (D("0.005"), D("0.01")),  # half up, not half even
        (D("0.015"), D("0.02")),
        (D("0.025"), D("0.03")),  # half even would give 0.02
        (D("0.0049999"), D("0.00")),
        (D("29.5"), D("29.50")),
        (D("0"), D("0.00")),
    ],
)
def test_to_charge_rounds_half_up_to_the_cent(exact: Decimal, charge: Decimal) -> None:
    assert to_charge(exact) == charge
    assert to_charge(exact).as_tuple().exponent == -2


def test_reservation_rounds_up() -> None:
    assert to_reservation(D("0.001")) == D("0.01")
    assert to_reservation(D("0.12")) == D("0.12")
    assert to_reservation(D("0.0166666")) == D("0.02")


def test_money_refuses_binary_fractions() -> None:
    with pytest.raises(TypeError, match="Decimal"):
        to_charge(0.1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Decimal"):
        Tariff(0.12)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        to_charge(D("NaN"))


def test_cost_of_seconds_multiplies_before_dividing() -> None:
    # 149 s per-second at 0.10/min is 0.2483… → 0.25; a per-second rate rounded first
    # (0.002 CNY/s) would give 0.298 → 0.30.
    assert to_charge(cost_of_seconds(149, RATE_000)) == D("0.25")
    assert to_charge(D("0.002") * 149) == D("0.30")


# ------------------------------------------------------------------ tariff


def test_tariff_from_package_row() -> None:
    assert A39 == Tariff(D("0.1200"), first_increment_s=60, increment_s=60, included_seconds=99 * 60)
    assert Tariff.from_package({"overage_rate": "0.10"}) == Tariff(RATE_000)


@pytest.mark.parametrize(
    ("first", "step", "billsec", "billable"),
    [
        (60, 60, 0, 0),
        (60, 60, 1, 60),
        (60, 60, 60, 60),
        (60, 60, 61, 120),  # a started minute counts as a minute
        (60, 60, 3600, 3600),
        (6, 6, 1, 6),
        (6, 6, 61, 66),
        (1, 1, 61, 61),
        (30, 6, 31, 36),
        (60, 1, 61, 61),
    ],
)
def test_billable_seconds(first: int, step: int, billsec: int, billable: int) -> None:
    assert billable_seconds(billsec, Tariff(RATE_001, first, step)) == billable


def test_billable_seconds_rejects_negative_durations() -> None:
    with pytest.raises(ValueError, match="billsec"):
        billable_seconds(-1, A39)


# ------------------------------------------------------------------ rate


@pytest.mark.parametrize(
    ("tariff", "billsec", "included_left_s", "expected"),
    [
        # A39 within the 99-minute bundle: a 61 s call uses 2 whole minutes, costs nothing.
        (A39, 61, 99 * 60, Charge(61, 120, 120, 0, D("0.00"), 2)),
        # Bundle used up: 0.12/min, 61 s = 2 min = 0.24.
        (A39, 61, 0, Charge(61, 120, 0, 120, D("0.24"), 2)),
        # Bundle exhausted mid-call: 1 minute left, 2 billed.
        (A39, 61, 60, Charge(61, 120, 60, 60, D("0.12"), 2)),
        (A39, 0, 0, Charge(0, 0, 0, 0, D("0.00"), 0)),
        # Seed 000 rate.
        (Tariff(RATE_000), 61, 0, Charge(61, 120, 0, 120, D("0.20"), 2)),
        (Tariff(RATE_000), 3600, 0, Charge(3600, 3600, 0, 3600, D("6.00"), 60)),
        # 6/6: 66 s × 0.12 / 60 = 0.132 → 0.13; × 0.10 → 0.11.
        (per(6), 61, 0, Charge(61, 66, 0, 66, D("0.13"), 2)),
        (per(6, RATE_000), 61, 0, Charge(61, 66, 0, 66, D("0.11"), 2)),
        (per(6), 61, 30, Charge(61, 66, 30, 36, D("0.07"), 2)),
        # 1/1: 61 s × 0.12 / 60 = 0.122 → 0.12; 3 s × 0.10 / 60 = 0.005 → 0.01 (half up).
        (per(1), 61, 0, Charge(61, 61, 0, 61, D("0.12"), 2)),
        (per(1, RATE_000), 3, 0, Charge(3, 3, 0, 3, D("0.01"), 1)),
        (per(1, RATE_000), 149, 0, Charge(149, 149, 0, 149, D("0.25"), 3)),
    ],
)
def test_rate_call(tariff: Tariff, billsec: int, included_left_s: int, expected: Charge) -> None:
    assert rate_call(billsec, tariff, included_left_s) == expected


def test_split_billing_rates_the_forwarded_leg_only() -> None:
    # A 400 call: the caller talked 95 s to the platform, the forwarded leg was answered
    # after 20 s of IVR/ringing and lasted 75 s; the enterprise pays the forwarded leg.
    assert rate_call(75, Tariff(RATE_001), 0).amount == D("0.24")


# ------------------------------------------------------------------ prepaid


@pytest.mark.parametrize(
    ("tariff", "granted_s", "included_s", "reserve"),
    [
        (Tariff(RATE_001), 60, 0, D("0.12")),
        (Tariff(RATE_001), 20, 0, D("0.12")),  # a 20 s grant of a 60/60 tariff: a whole minute
        (Tariff(RATE_001), 40, 0, D("0.12")),  # ... and the second 20 s slice costs nothing more
        (Tariff(RATE_001), 61, 0, D("0.24")),
        (Tariff(RATE_001), 120, 60, D("0.12")),  # the bundle first
        (per(6, RATE_000), 30, 0, D("0.05")),
        (per(1, RATE_000), 10, 0, D("0.02")),  # 0.01666… rounded half up, as settlement does
        (per(1, RATE_000), 3, 0, D("0.01")),  # 0.005 -> 0.01
        (Tariff(RATE_001, first_increment_s=1, increment_s=60), 61, 0, D("0.12")),  # 61 s billable
    ],
)
def test_reserved_for(tariff: Tariff, granted_s: int, included_s: int, reserve: Decimal) -> None:
    assert reserved_for(granted_s, tariff, included_s) == reserve


@pytest.mark.parametrize(
    ("balance", "credit", "tariff", "included_left_s", "seconds"),
    [
        (D("0.24"), D("0"), Tariff(RATE_001), 0, 120),
        (D("0.23"), D("0"), Tariff(RATE_001), 0, 60),
        (D("0.00"), D("0"), Tariff(RATE_001), 60, 60),  # the bundle alone
        (D("0.12"), D("0"), Tariff(RATE_001), 60, 120),
        (D("-0.05"), D("0"), Tariff(RATE_001), 0, 0),  # fails closed
        (D("-0.05"), D("0.29"), Tariff(RATE_001), 0, 120),  # credit limit counts
        (D("0.01"), D("0"), per(1, RATE_000), 0, 8),  # 9 s = 0.015 → 0.02 > 0.01
        (D("0"), D("0"), Tariff(D("0")), 0, 86_400),  # free: bounded by the cap
    ],
)
def test_seconds_affordable(
    balance: Decimal, credit: Decimal, tariff: Tariff, included_left_s: int, seconds: int
) -> None:
    assert seconds_affordable(balance, credit, tariff, included_left_s) == seconds


# ------------------------------------------------------------------ cycle


@pytest.mark.parametrize(
    ("rent", "minutes", "start", "expected"),
    [
        (D("59"), 299, date(2026, 11, 16), (D("29.50"), 149)),  # 15 of 30 days; 149.5 floored
        (D("59"), 299, date(2026, 11, 1), (D("59.00"), 299)),
        (D("59"), 299, date(2026, 11, 30), (D("1.97"), 9)),  # 1.9666…, 9.96 floored
        (D("39"), 99, date(2026, 2, 15), (D("19.50"), 49)),  # 14 of 28 days
        (D("39"), 99, date(2028, 2, 15), (D("20.17"), 51)),  # leap year: 15 of 29 days
        (D("39"), 99, date(2026, 1, 31), (D("1.26"), 3)),  # 1 of 31 days
    ],
)
def test_prorate_first_month(rent: Decimal, minutes: int, start: date, expected: tuple[Decimal, int]) -> None:
    assert prorate_first_month(rent, minutes, start) == expected


@pytest.mark.parametrize(
    ("total", "period", "month", "usage", "due"),
    [
        (D("2400"), 12, 1, D("0"), D("0.00")),  # month 1: no minimum
        (D("2400"), 12, 2, D("0"), D("200.00")),
        (D("2400"), 12, 2, D("150.35"), D("49.65")),
        (D("2400"), 12, 12, D("200"), D("0.00")),
        (D("2400"), 12, 3, D("250"), D("0.00")),
        (D("1000"), 3, 2, D("0"), D("333.33")),
    ],
)
def test_monthly_minimum_due(total: Decimal, period: int, month: int, usage: Decimal, due: Decimal) -> None:
    assert monthly_minimum_due(total, period, month, usage) == due


def test_monthly_minimum_outside_the_period_is_an_error() -> None:
    with pytest.raises(ValueError, match="month_index"):
        monthly_minimum_due(D("2400"), 12, 13, D("0"))


@pytest.mark.parametrize(
    ("rings", "due"),
    [
        ([30] * 99, D("0.00")),  # below the threshold
        ([30] * 100, D("12.00")),  # 100 calls × 1 min × 0.12
        ([0] * 100, D("12.00")),  # at least one minute each
        ([61] + [30] * 99, D("12.12")),  # 61 s rings are 2 minutes
    ],
)
def test_unanswered_penalty(rings: list[int], due: Decimal) -> None:
    assert unanswered_penalty(rings, Tariff(RATE_001)) == due


@pytest.mark.parametrize(
    ("amount", "days", "fee"),
    [
        (D("1000"), 10, D("30.00")),  # 3‰ × 10 days
        (D("1000"), 0, D("0.00")),
        (D("123.45"), 1, D("0.37")),  # 0.37035
        (D("1000"), 400, D("1200.00")),  # simple, not compounding
    ],
)
def test_late_fee(amount: Decimal, days: int, fee: Decimal) -> None:
    assert late_fee(amount, days) == fee


@pytest.mark.parametrize(
    ("months_elapsed", "fee"),
    [(0, D("234.00")), (1, D("195.00")), (5, D("39.00")), (6, D("0.00")), (12, D("0.00"))],
)
def test_early_termination_fee_a39(months_elapsed: int, fee: Decimal) -> None:
    assert early_termination_fee(D("39"), months_elapsed) == fee


def test_unused_minutes_expire() -> None:
    assert expire_unused_minutes(42 * 60) == 2520
    assert expire_unused_minutes(0) == 0


def test_amounts_are_in_cents() -> None:
    for amount in (late_fee(D("1"), 1), early_termination_fee(D("1"), 0), rate_call(1, A39, 0).amount):
        assert amount == amount.quantize(CENT)
