"""Prepaid arithmetic: what to reserve for the next slice of a call, and how long a call
the available money allows.

Rounding: a reservation rounds UP to the cent (``to_reservation``) so it never
under-reserves; the settled charge of the call is rounded half up, once (``to_charge``).
Because every slice reserves at least its worst-case share of the call's exact cost, and
the sum of the reservations is a whole number of cents, the final charge of a call never
exceeds the sum of its slices' reservations (when no included seconds are left; with
included seconds the charge is only smaller).
"""

from __future__ import annotations

from decimal import Decimal

from rating.money import cost_of_seconds, to_reservation
from rating.rate import rate_call
from rating.tariff import Tariff, billable_seconds

DAY_S = 86_400


def slice_billable_seconds(tariff: Tariff, slice_s: int) -> int:
    """The most billable seconds any one slice of ``slice_s`` talk seconds can add.

    The first slice adds ``billable_seconds(slice_s)``. A later slice starts past or inside
    the first increment, and ``ceil(a + b) <= ceil(a) + ceil(b)`` bounds what it adds by
    ``ceil(slice_s / increment) × increment``. The larger of the two bounds every slice, so
    ``n`` slices cover ``billable_seconds(n × slice_s)``.
    """
    if isinstance(slice_s, bool) or not isinstance(slice_s, int) or slice_s <= 0:
        raise ValueError(f"slice_s must be a positive number of seconds, got {slice_s!r}")
    step = tariff.increment_s
    later = -(-slice_s // step) * step
    return max(billable_seconds(slice_s, tariff), later)


def slice_cost(tariff: Tariff, slice_s: int) -> Decimal:
    """Money to reserve before granting the next ``slice_s`` seconds of a call: the worst
    case of that slice, rounded up to the cent. Included seconds are not assumed."""
    return to_reservation(cost_of_seconds(slice_billable_seconds(tariff, slice_s), tariff.rate_per_minute))


def seconds_affordable(
    balance_minus_reserved: Decimal,
    credit_limit: Decimal,
    tariff: Tariff,
    included_left_s: int,
    *,
    cap_s: int = DAY_S,
) -> int:
    """The longest talk time (≤ ``cap_s``) whose settled charge fits the available money,
    ``balance_minus_reserved + credit_limit``.

    Fails closed: with nothing available and no included seconds, 0. A free call (rate 0,
    or a talk time the bundle covers) is bounded only by ``cap_s`` — no call lasts a day.
    """
    if credit_limit < 0:
        raise ValueError(f"credit_limit must be >= 0, got {credit_limit}")
    available = balance_minus_reserved + credit_limit

    def fits(billsec: int) -> bool:
        return rate_call(billsec, tariff, included_left_s).amount <= available

    if not fits(0):
        return 0
    # The charge is monotonic in billsec: binary search the last billsec that fits.
    low, high = 0, cap_s
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low
