"""Money: CNY amounts as Decimal, and the single point where an amount becomes a charge.

Amounts are computed exactly and rounded once, to the cent, half up (``to_charge``).
Only reservations round differently: up to the cent (``to_reservation``), because a
reservation must never be smaller than what the call may cost.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal, localcontext

CNY = "CNY"
CENT = Decimal("0.01")
ZERO = Decimal(0)
SECONDS_PER_MINUTE = 60

# Working precision of ``quotient``. The dividends are NUMERIC amounts (a few decimals) and
# the divisors small integers (60, days in a month, a period in months), so an exact
# quotient that is not exactly on a half cent is at least 1 / (divisor * 10**digits) away
# from it — many orders of magnitude more than the error at 80 significant digits. Rounding
# the quotient once therefore gives the same cent as rounding the exact rational number.
_QUOTIENT_PRECISION = 80


def _require_finite(amount: Decimal, what: str) -> None:
    if not isinstance(amount, Decimal):
        raise TypeError(f"{what} must be a Decimal, got {type(amount).__name__}: {amount!r}")
    if not amount.is_finite():
        raise ValueError(f"{what} must be a finite amount, got {amount}")


def to_charge(amount: Decimal) -> Decimal:
    """The one rounding rule: an exact amount becomes a charge in whole cents, ROUND_HALF_UP."""
    _require_finite(amount, "amount")
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def to_reservation(amount: Decimal) -> Decimal:
    """Money held for a call not yet settled: rounded UP to the cent, never under-reserving."""
    _require_finite(amount, "amount")
    return amount.quantize(CENT, rounding=ROUND_CEILING)


def quotient(dividend: Decimal, divisor: int) -> Decimal:
    """``dividend / divisor`` unrounded for money purposes (see ``_QUOTIENT_PRECISION``)."""
    _require_finite(dividend, "dividend")
    if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor <= 0:
        raise ValueError(f"divisor must be a positive int, got {divisor!r}")
    with localcontext() as ctx:
        ctx.prec = _QUOTIENT_PRECISION
        return dividend / divisor


def cost_of_seconds(seconds: int, rate_per_minute: Decimal) -> Decimal:
    """Exact (unrounded) cost of ``seconds`` at a per-minute rate.

    There is deliberately no per-second rate: 0.10 CNY/min is 0.001666… CNY/s, and a rounded
    per-second rate would be an intermediate rounding. Multiply first, divide once.
    """
    return quotient(rate_per_minute * seconds, SECONDS_PER_MINUTE)


def minutes_rounded_up(seconds: int) -> int:
    """Whole minutes, a started minute counting as a minute (0 s → 0)."""
    if seconds < 0:
        raise ValueError(f"seconds must be >= 0, got {seconds}")
    return -(-seconds // SECONDS_PER_MINUTE)
