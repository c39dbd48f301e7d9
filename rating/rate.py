"""Rating one call: the bundle first, then overage at the tariff's rate, rounded once.

Which seconds are rated is decided before: with split billing (400/4008 numbers of a
split-billing package, ``packages.split_billing``) the caller pays their own local access
and the enterprise only the forwarded leg, from a bound destination's answer to the end;
otherwise the whole call from its answer (``rating.split.billed_seconds``). Either way
those seconds go through ``rate_call`` at the package's tariff: there is no other
split-billing arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from rating.money import cost_of_seconds, minutes_rounded_up, to_charge
from rating.tariff import Tariff, billable_seconds


@dataclass(frozen=True)
class Charge:
    """A rated call. ``billable_s == included_used_s + overage_s``; ``amount`` is in cents."""

    billsec: int
    billable_s: int
    included_used_s: int
    overage_s: int
    amount: Decimal
    minutes: int  # billable seconds as whole minutes, rounded up, for the call record


def rate_call(billsec: int, tariff: Tariff, included_left_s: int) -> Charge:
    """Rate ``billsec`` seconds of talk with ``included_left_s`` seconds left in the bundle.

    The bundle is consumed in billable seconds, so at 60/60 a started minute uses a whole
    included minute. Overage costs ``overage_s × rate / 60``, rounded once by ``to_charge``.
    """
    if included_left_s < 0:
        raise ValueError(f"included_left_s must be >= 0, got {included_left_s}")
    billable = billable_seconds(billsec, tariff)
    included_used = min(billable, included_left_s)
    overage = billable - included_used
    return Charge(
        billsec=billsec,
        billable_s=billable,
        included_used_s=included_used,
        overage_s=overage,
        amount=to_charge(cost_of_seconds(overage, tariff.rate_per_minute)),
        minutes=minutes_rounded_up(billable),
    )
