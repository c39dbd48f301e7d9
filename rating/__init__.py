"""Pure money arithmetic of rating and prepaid: no I/O, Decimal only.

- ``money``   the one rounding rule (``to_charge``) and the reservation rounding (``to_reservation``);
- ``tariff``  ``Tariff`` (rate, increments, bundle) and ``billable_seconds``;
- ``rate``    ``rate_call`` → ``Charge`` (bundle first, then overage);
- ``prepaid`` ``reserved_for`` and ``seconds_affordable`` for real-time balance checks;
- ``cycle``   billing-cycle rules of the contracts: first-month proration, monthly minimum,
  unanswered-call penalty, late fee, early termination, expiry of unused minutes.
"""
