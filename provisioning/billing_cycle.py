"""The scheduled billing cycle: what the contracts charge by the calendar, and the prepaid
life cycle (active -> suspended -> terminated, and back to active on recharge).

``run_billing_cycle(pool_or_conn, now)`` is safe to run as often as wanted (every few
minutes, or daily): each effect is written once per period, keyed —

=========================  ==========================================  ===================
effect                     key                                         where
=========================  ==========================================  ===================
rent of a month            ``rent:<subscription>:<YYYY-MM>``           ledger ``rent``
expired included seconds   ``expired:<tenant>:<YYYY-MM they are of>``  ledger ``adjustment`` (0)
minimum consumption        ``minimum:<subscription>:<YYYY-MM>``        ledger ``minimum``
unanswered-calls penalty   ``unanswered:<tenant>:<YYYY-MM-DD>``        ledger ``fee``
late fee                   ``late:<tenant>:<YYYY-MM-DD>``              ledger ``late_fee``
platform fee of a year     ``platform_fee:<subscription>:<year>``      ledger ``platform_fee``
prestored amount           ``prestored:<subscription>``                ledger ``prestored``
annual minimum             ``annual_minimum:<subscription>:<year>``    ledger ``annual_minimum``
early termination          ``early_termination:<subscription>``        ledger ``early_termination``
credit left at the end     ``expiry:<tenant>``                         ledger ``expiry``
notices                    ``<kind>:<tenant or subscription>:<period>``  outbox dedupe_key
=========================  ==========================================  ===================

Ledger entries are inserted with ON CONFLICT DO NOTHING, and the balance is changed only
when the entry was inserted, in the same transaction, under the account row's lock. Each
tenant is one transaction: a failure rolls that tenant back, is reported, and the next run
retries it. Dates (months, days, "today") are the tenant's (``tenants.timezone``); ``now``
is the injected clock.

Readings of the contracts (``../shared/MISSION.md``, "Money rules"):

* **Rent** (seed 001) is charged for the month containing ``now``, for every subscription
  in state ``active`` that has started (``starts_on <= today``) and not ended before the
  month began — also while the tenant is suspended (the contract runs until it is
  terminated; a suspended tenant is resumed only once it can pay). The month of
  ``starts_on`` is prorated by day, rent AND included minutes
  (``rating.cycle.prorate_first_month``). Packages with no monthly rent still get a 0.00
  rent entry: it is the once-a-month marker of the allowance reset. Months in which the
  job never ran are not back-charged.
* **Tariff and allowance**: the first rent entry of a month of the tenant's *primary*
  subscription (most channels, then most included minutes; extension modules only if there
  is nothing else, add-ons never) applies its package to the account (``apply_package``).
  Other subscriptions are charged their rent only. A per-number add-on (the ringback tone,
  migration 0028) names its number in ``subscriptions.subject``, and its rent entry too.
* **Expiry** (seed 000): at that reset, what was left of the previous allowance expires
  (``rating.cycle.expire_unused_minutes``) and is recorded as a 0.00 ``adjustment`` entry
  "expired N s of YYYY-MM", YYYY-MM being the month that allowance was for
  (``accounts.allowance_month``). Seconds reserved by calls in progress at the boundary
  stay with those calls (the new allowance is added on top of them).
* **Past periods** (a catch-up or a re-run with ``now`` in a month before the one whose
  allowance the account holds): the run posts that month's own keyed effects — its rent,
  the minimum of the month before it, the unanswered-calls fees of its days — and records
  that month's allowance, which can no longer be used, as expired ("expired N s of
  YYYY-MM", the same entry a run in that month would have led to at the next reset). It
  never replaces, nor expires, the current allowance, and it charges no late fee, changes
  no tenant state and writes no notice: those read the account as it is now and belong to
  the current period's runs. So runs for different months, in any order and however
  often, end in the same state.
* **Monthly minimum** (seed 002, packages with ``package_total``): at the first run of
  month M+1, month M (the ``k``-th month of the subscription, k = 1.. period_months) is
  topped up to ``package_total / period_months`` when the tenant's call charges
  (``sum(calls.amount)`` of calls decided in M) were lower; month 1 is waived.
* **Unanswered calls** (seed 002): every complete tenant-day of the last
  ``UNANSWERED_LOOKBACK_DAYS`` with >= 100 unanswered inbound dialled calls costs
  ``rating.cycle.unanswered_penalty`` of their ring times (``ended_at - decided_at``,
  0 if never ended) at the account's rate.
* **Late fee** (seed 004): on each tenant-day on which a run finds the balance below
  ``-credit_limit`` (payment is overdue: the debt exceeds the credit granted), 3‰ of the
  amount due is charged, once per day. Amount due = the negative part of the balance,
  less the late fees posted since the balance was last >= 0 (simple interest: a late fee
  bears no late fee). Days on which no run happened are not back-charged.
* **Suspension** (seeds 000/002/003) of an active tenant, with
  ``provisioning.tenants.change_tenant_state`` (its SIP accounts leave Asterisk), when
  ``balance - reserved < -credit_limit`` (money exhausted), or no included seconds are
  free and the money available would not pay one first increment at the account's rate
  (package used up, nothing for overage), or no ``active`` subscription runs today or
  later (the contract ended without renewal; add-ons are not the contract: a tenant with
  nothing but add-ons is judged on its money alone).
* **Resumption**: a tenant the billing cycle suspended (``tenants.suspended_by`` is
  ``system:billing``, written when the cycle suspends; migration 0013) is resumed as soon
  as none of those reasons holds. Tenants suspended by an operator are left alone.
* **Termination**: a tenant suspended by the billing cycle for ``SUSPENSION_GRACE``
  (7 days) whose reasons still hold is terminated (numbers released with the cool-down);
  its subscriptions are set ``ended``.
* **Contract years** (``rating.fees.contract_year``): year 1 runs from ``starts_on`` to the
  day before its first anniversary, and so on.
* **Platform fee** (seed 000 §1.3, "年费 … 按合同期 1000元"): ``packages.annual_fee`` for each
  contract year an ``active`` subscription reaches (not ended before the year began), at the
  first run in that year; years in which the job never ran are not back-charged.
* **Prestored amount** (seed 003 §4.2, "预存话费：12000元"): the payment made on signing is
  call credit. An operator creates the subscription when the contract is signed and paid,
  and the first run on or after ``starts_on`` credits ``packages.prestored_amount`` once.
  The operator does not record it again as a recharge.
* **Annual minimum** (seed 003 §4.2, "最低消费：2000元/1年"): at the first run after contract
  year Y ended, the tenant's call charges of that year (``calls.amount`` of calls decided in
  it) are topped up to ``packages.annual_minimum`` (``rating.fees.annual_minimum_shortfall``).
  It applies to a subscription still ``active``, or to one ended with an ``ends_on`` on or
  after the year's first day.
* **Early termination** (seed 001 §6.3/§7.2; the reading is in
  ``rating.fees.early_termination``): ``monthly rent × term months left`` for each
  subscription still running when its tenant is terminated. The three ways are the cycle's
  own termination, an operator's ``POST …/terminate`` (the next run closes that tenant's
  contract at ``terminated_at``), and one subscription set ``ended`` by an operator
  (``end_subscription``, charged at once). A subscription past its own ``ends_on`` was not
  ended early.
* **Expiry at the contract's end** (seed 000 §3.10, "合同期结束剩余通话时间将清零"): when a
  tenant with a package marked ``unused_expire_at_end`` is terminated, the call credit not
  held by a call and the free included seconds are forfeited (``rating.fees.
  unused_credit_forfeited``). A renewal within the 7 days of the stop keeps the contract
  going, so nothing expires then.
* **Notices** (outbox, once per key): ``low_balance`` once per day while
  ``balance - reserved`` is under the threshold (20 CNY); ``package_low`` once per month
  when the free included seconds are under 10 % of the month's allowance;
  ``contract_expiring`` 3 months (seed 003) and 1 month (seeds 000/002) before
  ``ends_on``, once each; ``suspended`` once per suspension; ``resumed``; ``terminated``.

Tenants without any subscription are not touched (nothing is charged, nothing suspended).

The rows a run works with are read once into frozen dataclasses (``Tenant``,
``Subscription`` and its ``Package``, ``Account``); the decisions on them (``primary``,
``billed_in``, ``suspension_reasons``, ``next_step``) are pure functions, and the steps
of a tenant's run apply them. Every ledger entry is posted by ``provisioning.ledger.post``.
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from provisioning import ledger
from provisioning.engine import Ctx
from provisioning.roles import Principal, Role
from provisioning.tenants import change_tenant_state
from rating.cycle import (
    add_months,
    expire_unused_minutes,
    late_fee,
    month_index,
    monthly_minimum_due,
    prorate_first_month,
    unanswered_penalty,
)
from rating.fees import (
    annual_minimum_shortfall,
    contract_year,
    contract_year_bounds,
    early_termination,
    unused_credit_forfeited,
)
from rating.money import ZERO, cost_of_seconds, minutes_rounded_up, to_charge
from rating.tariff import Tariff
from softswitch.core.clock import FixedClock

log = logging.getLogger(__name__)

SYSTEM_ACTOR_NAME = "system:billing"
LOW_BALANCE_THRESHOLD = Decimal("20")
SUSPENSION_GRACE = timedelta(days=7)
UNANSWERED_THRESHOLD = 100
UNANSWERED_LOOKBACK_DAYS = 7
EXPIRY_NOTICE_MONTHS = (3, 1)
_SECONDARY_KINDS = frozenset({"addon", "extension_module"})


# ---------------------------------------------------------------------------- the report
@dataclass(frozen=True)
class Action:
    """One effect of a run: a ledger entry, a notice, a state change or an allowance set."""

    tenant_id: int
    what: str  # 'ledger' | 'notice' | 'state' | 'allowance'
    kind: str  # ledger kind, notice kind, new tenant state, or 'included_s'
    key: str  # idempotency key / dedupe key ('' for state changes)
    amount: Decimal | None = None  # ledger: signed amount; allowance: seconds
    detail: str = ""


@dataclass
class CycleReport:
    at: datetime
    tenants: list[int] = field(default_factory=list)  # processed
    actions: list[Action] = field(default_factory=list)
    errors: dict[int, str] = field(default_factory=dict)  # tenant -> message (rolled back)

    def of(self, what: str, tenant_id: int | None = None) -> list[Action]:
        return [a for a in self.actions if a.what == what and tenant_id in (None, a.tenant_id)]

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "tenants": self.tenants,
            "actions": [
                {**asdict(a), "amount": None if a.amount is None else str(a.amount)} for a in self.actions
            ],
            "errors": {str(k): v for k, v in self.errors.items()},
        }

    def as_table(self) -> str:
        rows = [["TENANT", "WHAT", "KIND", "KEY", "AMOUNT", "DETAIL"]]
        for a in self.actions:
            amount = "" if a.amount is None else str(a.amount)
            rows.append([str(a.tenant_id), a.what, a.kind, a.key, amount, a.detail])
        for tid, msg in self.errors.items():
            rows.append([str(tid), "error", "", "", "", msg])
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
        lines.append(
            f"{len(self.tenants)} tenant(s), {len(self.of('ledger'))} ledger entr(ies), "
            f"{len(self.of('notice'))} notice(s), {len(self.of('state'))} state change(s), "
            f"{len(self.errors)} error(s) at {self.at.isoformat()}"
        )
        return "\n".join(lines)


# ---------------------------------------------------------------------------- dates
def _local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), tz)


# ---------------------------------------------------------------------------- what a run reads
@dataclass(frozen=True, slots=True)
class Package:
    """The terms of a package (a row of ``packages``)."""

    code: str
    kind: str
    channels: int
    included_minutes: int
    monthly_rent: Decimal
    overage_rate: Decimal
    first_increment_s: int
    increment_s: int
    package_total: Decimal | None  # a contract total with a monthly minimum, or None
    period_months: int
    min_term_months: int = 0  # seed 001: the minimum term, not counting the application month
    annual_fee: Decimal | None = None  # seed 000: the platform fee per contract year
    prestored_amount: Decimal | None = None  # seed 003: paid on signing, as call credit
    annual_minimum: Decimal | None = None  # seed 003: the minimum consumption per contract year
    unused_expire_at_end: bool = False  # seed 000: call credit left at the end is forfeited

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Package:
        def money(column: str) -> Decimal | None:
            value = row[column]
            return None if value is None else Decimal(value)

        return cls(
            code=row["code"],
            kind=row["kind"],
            channels=int(row["channels"]),
            included_minutes=int(row["included_minutes"]),
            monthly_rent=Decimal(row["monthly_rent"]),
            overage_rate=Decimal(row["overage_rate"]),
            first_increment_s=int(row["first_increment_s"]),
            increment_s=int(row["increment_s"]),
            package_total=money("package_total"),
            period_months=int(row["period_months"]),
            min_term_months=int(row["min_term_months"]),
            annual_fee=money("annual_fee"),
            prestored_amount=money("prestored_amount"),
            annual_minimum=money("annual_minimum"),
            unused_expire_at_end=bool(row["unused_expire_at_end"]),
        )


@dataclass(frozen=True, slots=True)
class Subscription:
    id: int
    starts_on: date
    ends_on: date | None
    state: str  # 'active' | 'suspended' | 'ended'
    package: Package
    subject: str = ""  # what a per-number add-on serves ('ringback tone on 4008...')

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Subscription:
        return cls(
            row["sub_id"], row["starts_on"], row["ends_on"], row["sub_state"], Package.of(row), row["subject"]
        )

    def runs_on(self, day: date) -> bool:
        return self.state == "active" and (self.ends_on is None or self.ends_on >= day)


_SUBS = (
    "SELECT s.id AS sub_id, s.starts_on, s.ends_on, s.state AS sub_state, s.subject, p.code, p.kind, "
    "p.channels, "
    "p.included_minutes, p.monthly_rent, p.overage_rate, p.first_increment_s, p.increment_s, "
    "p.package_total, p.period_months, p.min_term_months, p.annual_fee, p.prestored_amount, "
    "p.annual_minimum, p.unused_expire_at_end "
    "FROM subscriptions s JOIN packages p ON p.id = s.package_id WHERE s.tenant_id = $1 ORDER BY s.id"
)


@dataclass(frozen=True, slots=True)
class Account:
    """A prepaid account's money and allowance, as read at one step of a run."""

    balance: Decimal
    reserved: Decimal
    credit_limit: Decimal
    included_seconds_left: int
    included_reserved_s: int
    rate_per_minute: Decimal
    first_increment_s: int

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Account:
        return cls(
            row["balance"],
            row["reserved"],
            row["credit_limit"],
            row["included_seconds_left"],
            row["included_reserved_s"],
            row["rate_per_minute"],
            row["first_increment_s"],
        )

    @property
    def available(self) -> Decimal:
        return self.balance - self.reserved

    @property
    def free_s(self) -> int:
        return self.included_seconds_left - self.included_reserved_s


async def _account(conn: asyncpg.Connection, tenant_id: int) -> Account:
    row = await conn.fetchrow(
        "SELECT balance, reserved, credit_limit, included_seconds_left, included_reserved_s, "
        "rate_per_minute, first_increment_s FROM accounts WHERE tenant_id = $1",
        tenant_id,
    )
    if row is None:
        raise LookupError(f"tenant {tenant_id} has no account")
    return Account.of(row)


@dataclass(frozen=True, slots=True)
class Tenant:
    """What one tenant's run works with: the tenant, its dates, its subscriptions."""

    id: int
    state: str  # 'active' | 'suspended' (a run never works on a terminated tenant)
    suspended_at: datetime | None
    suspended_by: str | None  # SYSTEM_ACTOR_NAME when the billing cycle suspended it
    tz: ZoneInfo
    now: datetime
    today: date
    month: date  # the 1st of today's month
    subs: tuple[Subscription, ...]


# ---------------------------------------------------------------------------- package terms
@dataclass(frozen=True)
class Allowance:
    included_s: int  # the allowance of the period
    expired_s: int  # included seconds that expired unused (see expired_month)
    applied: bool = True  # False: the account already holds a later period's allowance
    # The month those seconds were the allowance of: the account's previous allowance when
    # applied, or the period itself when not (a past month's allowance, never usable now).
    expired_month: date | None = None


_ACCOUNT_PERIOD = """
SELECT COALESCE(a.allowance_month,
                (SELECT to_date(max(split_part(l.idempotency_key, ':', 3)), 'YYYY-MM')
                 FROM ledger_entries l
                 WHERE l.tenant_id = a.tenant_id AND l.kind = 'rent' AND l.idempotency_key LIKE 'rent:%'
                   AND split_part(l.idempotency_key, ':', 3) <> to_char($2::date, 'YYYY-MM')))
FROM accounts a WHERE a.tenant_id = $1
"""


async def account_period(conn: asyncpg.Connection, tenant_id: int, other_than: date) -> date | None:
    """The month (its 1st) whose allowance the account holds: ``accounts.allowance_month``,
    or — for an account whose allowance was set before that column existed — the latest
    month rent was posted for, not counting the month ``other_than``. None: no period yet."""
    held: date | None = await conn.fetchval(_ACCOUNT_PERIOD, tenant_id, other_than.replace(day=1))
    return held


def month_terms(package: Package, starts_on: date, month: date) -> tuple[Decimal, int]:
    """(rent, included minutes) a subscription starting ``starts_on`` owes/gets for
    ``month`` (its first day): the month of ``starts_on`` prorated by day (seed 001)."""
    if (starts_on.year, starts_on.month) == (month.year, month.month):
        return prorate_first_month(package.monthly_rent, package.included_minutes, starts_on)
    return to_charge(package.monthly_rent), package.included_minutes


async def apply_package(
    conn: asyncpg.Connection, tenant_id: int, package: Package, month_start: date, prorate: bool
) -> Allowance:
    """Give the tenant's account the tariff and the included allowance of a package.

    Sets ``accounts.rate_per_minute`` (= ``overage_rate``), ``first_increment_s``,
    ``increment_s``, ``channel_cap`` (= ``channels``) and ``included_seconds_left``
    (= included minutes × 60). ``month_start`` is the first day the allowance covers: the
    1st of the month for a full month, or — with ``prorate=True`` — the subscription's
    first day, the minutes then being prorated by day to the month's end
    (``rating.cycle.prorate_first_month``, floored to whole minutes).

    What was left free of the previous allowance expires (returned as ``expired_s`` and
    ``expired_month``, the month it was the allowance of, for the caller to record); seconds
    reserved by calls in progress stay with them. A channel cap below the channels in use is
    kept at the channels in use (it cannot cut live calls). The account records the month
    (``allowance_month``).

    When the account already holds a LATER month's allowance (a catch-up or a re-run for a
    past month), nothing is changed: the period's allowance is returned as expired (it can
    no longer be used) with ``applied=False``.

    Call it inside the caller's transaction, once per period: calling it again restores the
    full allowance. The billing cycle calls it when it posts the month's first rent of the
    primary subscription; a subscription created mid-month may call it with
    ``prorate=True`` (the cycle's own first-month rent entry will then apply it again the
    same month, so prefer letting ``run_billing_cycle(..., tenant_ids=[tid])`` do both).
    """
    minutes = package.included_minutes
    if prorate:
        _, minutes = prorate_first_month(package.monthly_rent, minutes, month_start)
    allowance_s = minutes * 60
    period = month_start.replace(day=1)
    acct = await conn.fetchrow(
        "SELECT included_seconds_left, included_reserved_s FROM accounts WHERE tenant_id = $1 FOR UPDATE",
        tenant_id,
    )
    if acct is None:
        raise LookupError(f"tenant {tenant_id} has no account")
    held = await account_period(conn, tenant_id, period)
    if held is not None and held > period:
        # A run for an earlier month: that month's allowance is history; the account holds
        # a later month's, which this must not replace (nor expire).
        return Allowance(allowance_s, allowance_s, applied=False, expired_month=period)
    expired = expire_unused_minutes(max(acct["included_seconds_left"] - acct["included_reserved_s"], 0))
    await conn.execute(
        "UPDATE accounts SET rate_per_minute = $2, first_increment_s = $3, increment_s = $4, "
        "channel_cap = GREATEST($5, channels_in_use), included_seconds_left = $6 + included_reserved_s, "
        "allowance_month = $7, version = version + 1 WHERE tenant_id = $1",
        tenant_id,
        package.overage_rate,
        package.first_increment_s,
        package.increment_s,
        package.channels,
        allowance_s,
        period,
    )
    return Allowance(allowance_s, expired, expired_month=held or add_months(period, -1))


# ---------------------------------------------------------------------------- writers
async def _post(
    conn: asyncpg.Connection,
    report: CycleReport,
    tenant_id: int,
    kind: ledger.Kind,
    amount: Decimal,
    key: str,
    reference: str,
    now: datetime,
) -> bool:
    """Post a ledger entry once (per tenant, kind and key), the balance moving with it.
    Returns whether it was posted by this call."""
    done = await ledger.post(conn, tenant_id, kind, amount, key, reference, now)
    if isinstance(done, ledger.AlreadyPosted):
        return False
    report.actions.append(Action(tenant_id, "ledger", kind.value, key, amount, reference))
    return True


async def _notify(
    conn: asyncpg.Connection,
    report: CycleReport,
    tenant_id: int,
    kind: str,
    key: str,
    payload: Mapping[str, Any],
    now: datetime,
) -> bool:
    text = json.dumps(dict(payload), default=str, ensure_ascii=False)
    written = await conn.fetchval(
        "INSERT INTO outbox (tenant_id, kind, dedupe_key, payload, created_at) "
        "VALUES ($1, $2, $3, $4::text::jsonb, $5) ON CONFLICT (kind, dedupe_key) DO NOTHING RETURNING id",
        tenant_id,
        kind,
        key,
        text,
        now,
    )
    if written is None:
        return False
    report.actions.append(Action(tenant_id, "notice", kind, key, None, text))
    return True


# ---------------------------------------------------------------------------- decisions (pure)
def primary(subs: Sequence[Subscription]) -> Subscription | None:
    """The subscription whose package sets the account's tariff and allowance."""
    if not subs:
        return None
    # An add-on (a ringback tone, a CRM seat) carries no channels, minutes or rate.
    main = [s for s in subs if s.package.kind not in _SECONDARY_KINDS] or [
        s for s in subs if s.package.kind != "addon"
    ]
    if not main:
        return None
    return max(main, key=lambda s: (s.package.channels, s.package.included_minutes, s.starts_on, s.id))


def billed_in(sub: Subscription, month: date, today: date) -> bool:
    return sub.state == "active" and sub.starts_on <= today and (sub.ends_on is None or sub.ends_on >= month)


def minimum_month(sub: Subscription, month: date) -> int | None:
    """Which month of its contract ``month`` is (1..period_months) for a subscription owing
    a monthly minimum then, or None."""
    if sub.package.package_total is None or sub.state not in ("active", "ended"):
        return None
    k = month_index(sub.starts_on, month)
    covered = sub.ends_on is None or sub.ends_on >= month
    return k if 1 <= k <= sub.package.period_months and covered else None


def suspension_reasons(account: Account, subs: Sequence[Subscription], today: date) -> list[str]:
    reasons = []
    money = account.available + account.credit_limit
    if money < 0:
        reasons.append("balance_exhausted")
    elif account.free_s <= 0 and money < cost_of_seconds(account.first_increment_s, account.rate_per_minute):
        reasons.append("package_exhausted")
    contracts = [s for s in subs if s.package.kind != "addon"]
    if contracts and not any(s.runs_on(today) for s in contracts):
        reasons.append("contract_ended")
    return reasons


class Step(enum.Enum):
    STAY = "stay"
    SUSPEND = "suspend"
    RESUME = "resume"
    TERMINATE = "terminate"


def next_step(tenant: Tenant, reasons: Sequence[str]) -> Step:
    """The life-cycle step of a tenant the suspension ``reasons`` hold for (or not)."""
    if tenant.state == "active":
        return Step.SUSPEND if reasons else Step.STAY
    if tenant.state != "suspended" or tenant.suspended_by != SYSTEM_ACTOR_NAME:
        return Step.STAY  # an operator's suspension is the operator's to lift
    if not reasons:
        return Step.RESUME
    if tenant.suspended_at is not None and tenant.now - tenant.suspended_at >= SUSPENSION_GRACE:
        return Step.TERMINATE
    return Step.STAY


# ---------------------------------------------------------------------------- monthly effects
async def _rent(conn: asyncpg.Connection, t: Tenant, report: CycleReport) -> int:
    """Rent of the month, and the allowance reset with the primary subscription's first
    rent entry of the month. Returns the month's allowance of the primary (seconds)."""
    billed = [s for s in t.subs if billed_in(s, t.month, t.today)]
    main = primary(billed)
    allowance_s = 0
    for sub in billed:
        rent, minutes = month_terms(sub.package, sub.starts_on, t.month)
        first = sub.starts_on >= t.month
        is_primary = main is not None and sub.id == main.id
        if is_primary:
            allowance_s = minutes * 60
        ref = f"rent {sub.package.code} {t.month:%Y-%m}" + (
            f" (from {sub.starts_on:%d}, {minutes} min included)" if first else ""
        )
        if sub.subject:
            ref += f": {sub.subject}"
        key = f"rent:{sub.id}:{t.month:%Y-%m}"
        if await _post(conn, report, t.id, ledger.Kind.RENT, -rent, key, ref, t.now) and is_primary:
            await _reset_allowance(conn, t, sub, first, key, report)
    return allowance_s


async def _reset_allowance(
    conn: asyncpg.Connection, t: Tenant, sub: Subscription, first: bool, key: str, report: CycleReport
) -> None:
    got = await apply_package(conn, t.id, sub.package, sub.starts_on if first else t.month, prorate=first)
    if got.applied:
        report.actions.append(
            Action(t.id, "allowance", "included_s", key, Decimal(got.included_s), sub.package.code)
        )
    if got.expired_s > 0 and got.expired_month is not None:
        ended = got.expired_month
        await _post(
            conn,
            report,
            t.id,
            ledger.Kind.ADJUSTMENT,
            ZERO,
            f"expired:{t.id}:{ended:%Y-%m}",
            f"expired {got.expired_s} s of {ended:%Y-%m}",
            t.now,
        )


async def _minimums(conn: asyncpg.Connection, t: Tenant, report: CycleReport) -> None:
    """Minimum consumption of the month before."""
    previous = add_months(t.month, -1)
    for sub in t.subs:
        k = minimum_month(sub, previous)
        if k is None or sub.package.package_total is None:
            continue
        usage = await conn.fetchval(
            "SELECT COALESCE(sum(amount), 0) FROM calls WHERE tenant_id = $1 "
            "AND decided_at >= $2 AND decided_at < $3",
            t.id,
            _local_midnight(previous, t.tz),
            _local_midnight(t.month, t.tz),
        )
        due = monthly_minimum_due(sub.package.package_total, sub.package.period_months, k, max(usage, ZERO))
        if due > 0:
            await _post(
                conn,
                report,
                t.id,
                ledger.Kind.MINIMUM,
                -due,
                f"minimum:{sub.id}:{previous:%Y-%m}",
                f"minimum consumption {previous:%Y-%m} (month {k}): usage {to_charge(usage)}",
                t.now,
            )


async def _unanswered(conn: asyncpg.Connection, t: Tenant, report: CycleReport) -> None:
    rows = await conn.fetch(
        "SELECT (decided_at AT TIME ZONE $2)::date AS day, "
        "array_agg(GREATEST(0, floor(extract(epoch FROM COALESCE(ended_at, decided_at) - decided_at)))"
        "::int) AS rings "
        "FROM calls WHERE tenant_id = $1 AND action = 'dial' AND direction = 'inbound' "
        "AND answered_at IS NULL AND decided_at >= $3 AND decided_at < $4 "
        "GROUP BY 1 HAVING count(*) >= $5 ORDER BY 1",
        t.id,
        str(t.tz),
        _local_midnight(t.today - timedelta(days=UNANSWERED_LOOKBACK_DAYS), t.tz),
        _local_midnight(t.today, t.tz),
        UNANSWERED_THRESHOLD,
    )
    if not rows:
        return
    rate = (await _account(conn, t.id)).rate_per_minute
    for r in rows:
        day: date = r["day"]
        rings: list[int] = list(r["rings"])
        fee = unanswered_penalty(rings, Tariff(rate), UNANSWERED_THRESHOLD)
        minutes = sum(max(1, minutes_rounded_up(s)) for s in rings)
        if fee > 0:
            await _post(
                conn,
                report,
                t.id,
                ledger.Kind.FEE,
                -fee,
                f"unanswered:{t.id}:{day}",
                f"unanswered calls {day}: {len(rings)} calls, {minutes} min at {rate}",
                t.now,
            )


async def _late_fee(conn: asyncpg.Connection, t: Tenant, report: CycleReport) -> None:
    account = await _account(conn, t.id)
    if account.balance >= -account.credit_limit:
        return
    streak_fees = await conn.fetchval(
        "SELECT COALESCE(-sum(amount), 0) FROM ledger_entries WHERE tenant_id = $1 AND kind = 'late_fee' "
        "AND id > COALESCE((SELECT max(id) FROM ledger_entries "
        "WHERE tenant_id = $1 AND balance_after >= 0), 0)",
        t.id,
    )
    due = max(-account.balance - streak_fees, ZERO)
    fee = late_fee(due, 1)
    if fee > 0:
        await _post(
            conn,
            report,
            t.id,
            ledger.Kind.LATE_FEE,
            -fee,
            f"late:{t.id}:{t.today}",
            f"late fee {t.today}: 3‰ of {to_charge(due)} due",
            t.now,
        )


# ---------------------------------------------------------------------------- contract fees
async def _contract_fees(conn: asyncpg.Connection, t: Tenant, report: CycleReport) -> None:
    """Seed 003's prestored amount and annual minimum, seed 000's platform fee."""
    for sub in t.subs:
        if sub.starts_on > t.today:
            continue
        year = contract_year(sub.starts_on, t.today)
        await _prestored(conn, t, sub, report)
        await _platform_fee(conn, t, sub, year, report)
        if year > 1:
            await _annual_minimum(conn, t, sub, year - 1, report)


async def _prestored(conn: asyncpg.Connection, t: Tenant, sub: Subscription, report: CycleReport) -> None:
    amount = sub.package.prestored_amount
    if amount is None or amount <= 0 or sub.state != "active":
        return
    credit = to_charge(amount)
    ref = f"prestored call credit {sub.package.code} {credit}, contract from {sub.starts_on}"
    await _post(conn, report, t.id, ledger.Kind.PRESTORED, credit, f"prestored:{sub.id}", ref, t.now)


async def _platform_fee(
    conn: asyncpg.Connection, t: Tenant, sub: Subscription, year: int, report: CycleReport
) -> None:
    fee = sub.package.annual_fee
    first, after = contract_year_bounds(sub.starts_on, year)
    if fee is None or fee <= 0 or sub.state != "active" or (sub.ends_on is not None and sub.ends_on < first):
        return
    ref = f"platform fee {sub.package.code} contract year {year} ({first}..{after - timedelta(days=1)})"
    key = f"platform_fee:{sub.id}:{year}"
    await _post(conn, report, t.id, ledger.Kind.PLATFORM_FEE, -to_charge(fee), key, ref, t.now)


async def _annual_minimum(
    conn: asyncpg.Connection, t: Tenant, sub: Subscription, year: int, report: CycleReport
) -> None:
    """The minimum of contract year ``year``, which ended before today."""
    minimum = sub.package.annual_minimum
    if minimum is None or minimum <= 0:
        return
    first, after = contract_year_bounds(sub.starts_on, year)
    # A subscription ended without an end date has no year to judge after it ended.
    if (sub.ends_on is not None and sub.ends_on < first) or (sub.ends_on is None and sub.state != "active"):
        return
    usage = await conn.fetchval(
        "SELECT COALESCE(sum(amount), 0) FROM calls WHERE tenant_id = $1 "
        "AND decided_at >= $2 AND decided_at < $3",
        t.id,
        _local_midnight(first, t.tz),
        _local_midnight(after, t.tz),
    )
    due = annual_minimum_shortfall(minimum, max(usage, ZERO))
    if due > 0:
        ref = (
            f"annual minimum {sub.package.code} contract year {year} ({first}..{after - timedelta(days=1)}): "
            f"usage {to_charge(usage)} of {to_charge(minimum)}"
        )
        key = f"annual_minimum:{sub.id}:{year}"
        await _post(conn, report, t.id, ledger.Kind.ANNUAL_MINIMUM, -due, key, ref, t.now)


async def _early_termination(
    conn: asyncpg.Connection, report: CycleReport, tenant_id: int, sub: Subscription, day: date, now: datetime
) -> None:
    """Seed 001 §6.3/§7.2: a subscription ended on ``day`` before its term is over pays the
    rent of the term months left (``rating.fees.early_termination``). One that reached its
    own end date was not ended early."""
    if sub.ends_on is not None and sub.ends_on < day:
        return
    p = sub.package
    fee = early_termination(p.monthly_rent, sub.starts_on, day, p.min_term_months, sub.ends_on)
    if fee <= 0:
        return
    months = fee / to_charge(p.monthly_rent)
    ref = (
        f"early termination {p.code} on {day}: {months:.0f} of {p.min_term_months} term months left "
        f"x {to_charge(p.monthly_rent)}"
    )
    key = f"early_termination:{sub.id}"
    await _post(conn, report, tenant_id, ledger.Kind.EARLY_TERMINATION, -fee, key, ref, now)


async def _end_contract(
    conn: asyncpg.Connection,
    report: CycleReport,
    tenant_id: int,
    subs: Sequence[Subscription],
    day: date,
    now: datetime,
) -> None:
    """The tenant's contract ends on ``day`` (it is terminated): every subscription still
    running pays its early-termination fee and is ended; then, when a package says so (seed
    000 §3.10), the call credit and included seconds left unused are forfeited."""
    running = [s for s in subs if s.state != "ended"]
    for sub in running:
        await _early_termination(conn, report, tenant_id, sub, day, now)
    await conn.execute(
        "UPDATE subscriptions SET state = 'ended', version = version + 1 "
        "WHERE tenant_id = $1 AND state <> 'ended'",
        tenant_id,
    )
    if not any(s.package.unused_expire_at_end for s in subs):
        return
    a = await _account(conn, tenant_id)
    forfeited = unused_credit_forfeited(a.balance, a.reserved)
    seconds = max(a.free_s, 0)
    if forfeited <= 0 and seconds == 0:
        return
    await conn.execute(
        "UPDATE accounts SET included_seconds_left = included_reserved_s, version = version + 1 "
        "WHERE tenant_id = $1",
        tenant_id,
    )
    ref = f"unused at the contract's end ({day}): call credit {to_charge(forfeited)}, {seconds} s included"
    await _post(conn, report, tenant_id, ledger.Kind.EXPIRY, -forfeited, f"expiry:{tenant_id}", ref, now)


async def end_subscription(
    conn: asyncpg.Connection, tenant_id: int, subscription_id: int, now: datetime
) -> CycleReport:
    """An operator ended one subscription (its state set to ``ended``) at ``now``: its
    early-termination fee, once. Call it in the transaction that ended it."""
    report = CycleReport(now)
    if await conn.fetchval("SELECT 1 FROM accounts WHERE tenant_id = $1 FOR UPDATE", tenant_id) is None:
        return report
    tz = ZoneInfo(await conn.fetchval("SELECT timezone FROM tenants WHERE id = $1", tenant_id))
    row = next((r for r in await conn.fetch(_SUBS, tenant_id) if r["sub_id"] == subscription_id), None)
    if row is not None:
        sub = Subscription.of(row)
        await _early_termination(conn, report, tenant_id, sub, now.astimezone(tz).date(), now)
    return report


async def _close_terminated(
    pool_or_conn: asyncpg.Pool | asyncpg.Connection,
    now: datetime,
    tenant_ids: Sequence[int] | None,
    report: CycleReport,
) -> None:
    """Tenants an operator terminated (``POST /v1/tenants/{id}/terminate``) whose
    subscriptions still run: their contract ended on the day of ``terminated_at``."""
    query = (
        "SELECT t.id, t.timezone, t.terminated_at FROM tenants t WHERE t.state = 'terminated' "
        "AND t.terminated_at IS NOT NULL "
        "AND EXISTS (SELECT 1 FROM subscriptions s WHERE s.tenant_id = t.id AND s.state <> 'ended') "
        "AND ($1::bigint[] IS NULL OR t.id = ANY($1::bigint[])) ORDER BY t.id"
    )
    ids = None if tenant_ids is None else list(tenant_ids)

    async def _one(conn: asyncpg.Connection, tid: int, tz: str, ended: datetime) -> None:
        try:
            async with conn.transaction():
                if await conn.fetchval("SELECT 1 FROM accounts WHERE tenant_id = $1 FOR UPDATE", tid) is None:
                    return
                subs = tuple(Subscription.of(r) for r in await conn.fetch(_SUBS, tid))
                day = ended.astimezone(ZoneInfo(tz)).date()
                await _end_contract(conn, report, tid, subs, day, now)
                report.actions.append(Action(tid, "state", "contract_ended", "", None, f"terminated {day}"))
        except Exception as exc:  # one tenant's failure must not stop the others' billing
            log.exception("closing the contract of terminated tenant %s failed", tid)
            report.errors[tid] = f"{type(exc).__name__}: {exc}"
            report.actions[:] = [a for a in report.actions if a.tenant_id != tid]

    if isinstance(pool_or_conn, asyncpg.Pool):
        rows = await pool_or_conn.fetch(query, ids)
        for r in rows:
            async with pool_or_conn.acquire() as conn:
                await _one(conn, r["id"], r["timezone"], r["terminated_at"])
    else:
        for r in await pool_or_conn.fetch(query, ids):
            await _one(pool_or_conn, r["id"], r["timezone"], r["terminated_at"])


# ---------------------------------------------------------------------------- the life cycle
async def _life_cycle(conn: asyncpg.Connection, t: Tenant, report: CycleReport) -> str:
    """Apply the tenant's next life-cycle step. Returns the tenant's state after it."""
    reasons = suspension_reasons(await _account(conn, t.id), t.subs, t.today)
    step = next_step(t, reasons)
    ctx = Ctx(conn, Principal(None, SYSTEM_ACTOR_NAME, Role.PLATFORM_ADMIN), FixedClock(t.now), t.id)
    if step is Step.SUSPEND:
        return await _suspend(ctx, t, reasons, report)
    if step is Step.RESUME:
        return await _resume(ctx, t, report)
    if step is Step.TERMINATE:
        return await _terminate(ctx, t, reasons, report)
    return t.state


async def _suspend(ctx: Ctx, t: Tenant, reasons: list[str], report: CycleReport) -> str:
    out = await change_tenant_state(ctx, t.id, "suspend")
    # The cycle's own suspension, so the cycle may lift it (migration 0013).
    await ctx.conn.execute("UPDATE tenants SET suspended_by = $2 WHERE id = $1", t.id, SYSTEM_ACTOR_NAME)
    report.actions.append(Action(t.id, "state", "suspended", "", None, ",".join(reasons)))
    stamp = out.suspended_at or t.now
    payload = {"reasons": reasons, "at": stamp}
    await _notify(
        ctx.conn, report, t.id, "suspended", f"suspended:{t.id}:{stamp.isoformat()}", payload, t.now
    )
    return "suspended"


async def _resume(ctx: Ctx, t: Tenant, report: CycleReport) -> str:
    assert t.suspended_at is not None  # the cycle suspended it, and stamped it
    await change_tenant_state(ctx, t.id, "resume")
    report.actions.append(Action(t.id, "state", "active", "", None, "recovered"))
    key = f"resumed:{t.id}:{t.suspended_at.isoformat()}"
    await _notify(ctx.conn, report, t.id, "resumed", key, {"suspended_at": t.suspended_at}, t.now)
    return "active"


async def _terminate(ctx: Ctx, t: Tenant, reasons: list[str], report: CycleReport) -> str:
    await change_tenant_state(ctx, t.id, "terminate")
    await _end_contract(ctx.conn, report, t.id, t.subs, t.today, t.now)
    report.actions.append(Action(t.id, "state", "terminated", "", None, ",".join(reasons)))
    payload = {"reasons": reasons, "suspended_at": t.suspended_at}
    await _notify(ctx.conn, report, t.id, "terminated", f"terminated:{t.id}", payload, t.now)
    return "terminated"


# ---------------------------------------------------------------------------- notices
async def _notices(
    conn: asyncpg.Connection, t: Tenant, report: CycleReport, allowance_s: int, low_balance: Decimal
) -> None:
    a = await _account(conn, t.id)
    if a.available < low_balance:
        payload: dict[str, Any] = {"balance": a.balance, "reserved": a.reserved, "threshold": low_balance}
        await _notify(conn, report, t.id, "low_balance", f"low_balance:{t.id}:{t.today}", payload, t.now)
    if allowance_s > 0 and a.free_s * 10 < allowance_s:
        payload = {"included_seconds_left": a.free_s, "allowance_s": allowance_s}
        await _notify(
            conn, report, t.id, "package_low", f"package_low:{t.id}:{t.month:%Y-%m}", payload, t.now
        )
    for sub in t.subs:
        await _expiry_notices(conn, t, sub, report)


async def _expiry_notices(
    conn: asyncpg.Connection, t: Tenant, sub: Subscription, report: CycleReport
) -> None:
    ends = sub.ends_on
    if sub.state != "active" or ends is None or ends < t.today:
        return
    for months in EXPIRY_NOTICE_MONTHS:
        if ends <= add_months(t.today, months):
            await _notify(
                conn,
                report,
                t.id,
                "contract_expiring",
                f"contract_expiring:{sub.id}:{ends}:{months}m",
                {
                    "subscription_id": sub.id,
                    "package": sub.package.code,
                    "ends_on": ends,
                    "months_ahead": months,
                },
                t.now,
            )


# ---------------------------------------------------------------------------- one tenant
async def _load_tenant(conn: asyncpg.Connection, tenant_id: int, now: datetime) -> Tenant | None:
    """The tenant a run works on, its rows locked; None if there is nothing to bill."""
    # Lock order: the account row, then the tenant row (as the prepaid hot path and
    # recharges lock only the account, and state changes only the tenant).
    if await conn.fetchval("SELECT 1 FROM accounts WHERE tenant_id = $1 FOR UPDATE", tenant_id) is None:
        return None
    row = await conn.fetchrow(
        "SELECT state, timezone, suspended_at, suspended_by FROM tenants WHERE id = $1 FOR UPDATE", tenant_id
    )
    if row is None or row["state"] == "terminated":
        return None
    subs = tuple(Subscription.of(r) for r in await conn.fetch(_SUBS, tenant_id))
    if not subs:
        return None
    tz = ZoneInfo(row["timezone"])
    today = now.astimezone(tz).date()
    return Tenant(
        tenant_id,
        row["state"],
        row["suspended_at"],
        row["suspended_by"],
        tz,
        now,
        today,
        today.replace(day=1),
        subs,
    )


async def _run_tenant(
    conn: asyncpg.Connection, tenant_id: int, now: datetime, report: CycleReport, low_balance: Decimal
) -> None:
    async with conn.transaction():
        t = await _load_tenant(conn, tenant_id, now)
        if t is None:
            return
        report.tenants.append(tenant_id)
        held = await account_period(conn, tenant_id, t.month)
        allowance_s = await _rent(conn, t, report)
        await _minimums(conn, t, report)
        await _contract_fees(conn, t, report)
        await _unanswered(conn, t, report)
        if held is not None and held > t.month:
            # A run for a month before the account's current one (a catch-up, a re-run):
            # only that month's own keyed effects above. The late fee, the life cycle and
            # the notices read the account as it is NOW, so they belong to the current
            # period's runs, never to a past one's.
            return
        await _late_fee(conn, t, report)
        state = await _life_cycle(conn, t, report)
        if state != "terminated":
            await _notices(conn, t, report, allowance_s, low_balance)


# ---------------------------------------------------------------------------- the job
async def run_billing_cycle(
    pool_or_conn: asyncpg.Pool | asyncpg.Connection,
    now: datetime,
    *,
    tenant_ids: Sequence[int] | None = None,
    low_balance_threshold: Decimal = LOW_BALANCE_THRESHOLD,
) -> CycleReport:
    """Run the billing cycle at ``now`` (an aware datetime) for every non-terminated tenant
    with a subscription, or only ``tenant_ids``. Re-running for the same period has no
    further effect. One transaction per tenant; failures are reported in ``errors``."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime (with a UTC offset)")
    report = CycleReport(now)

    async def _ids(conn: asyncpg.Connection) -> list[int]:
        rows = await conn.fetch(
            "SELECT t.id FROM tenants t WHERE t.state <> 'terminated' "
            "AND EXISTS (SELECT 1 FROM subscriptions s WHERE s.tenant_id = t.id) "
            "AND ($1::bigint[] IS NULL OR t.id = ANY($1::bigint[])) ORDER BY t.id",
            None if tenant_ids is None else list(tenant_ids),
        )
        return [r["id"] for r in rows]

    async def _one(conn: asyncpg.Connection, tid: int) -> None:
        try:
            await _run_tenant(conn, tid, now, report, low_balance_threshold)
        except Exception as exc:  # one tenant's failure must not stop the others' billing
            log.exception("billing cycle failed for tenant %s", tid)
            report.errors[tid] = f"{type(exc).__name__}: {exc}"
            report.actions[:] = [a for a in report.actions if a.tenant_id != tid]  # rolled back
            if tid in report.tenants:
                report.tenants.remove(tid)

    if isinstance(pool_or_conn, asyncpg.Pool):
        async with pool_or_conn.acquire() as conn:
            ids = await _ids(conn)
        for tid in ids:
            async with pool_or_conn.acquire() as conn:
                await _one(conn, tid)
    else:
        for tid in await _ids(pool_or_conn):
            await _one(pool_or_conn, tid)
    await _close_terminated(pool_or_conn, now, tenant_ids, report)
    return report
