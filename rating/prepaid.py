"""Prepaid arithmetic: what a reservation must hold, and how long a call the available
money allows.

A reservation is cumulative, not a sum of per-slice estimates: after granting ``granted_s``
seconds of talk with ``included_s`` package seconds held, it holds
``reserved_for(granted_s, tariff, included_s)`` — exactly what settlement charges for a
call of that length (``rate_call``: whole started increments, bundle first, rounded once).
Settlement never charges past the granted time and the charge is monotonic in billsec, so
for every call length the charge is at most what is reserved, whatever the slice length
and the increments. The reservation statement in provisioning/ledger.py applies this rule
in SQL (migration 0011); tests/db/test_exact_reservations.py holds the two equal.
"""

from __future__ import annotations

from decimal import Decimal

from rating.rate import rate_call
from rating.tariff import Tariff

DAY_S = 86_400


def reserved_for(granted_s: int, tariff: Tariff, included_s: int) -> Decimal:
    """The money a reservation holds once it has granted ``granted_s`` seconds of talk,
    ``included_s`` of the package's seconds being held for it: the settled charge of a
    call of exactly that length, which bounds the charge of any shorter one."""
    return rate_call(granted_s, tariff, included_s).amount


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
