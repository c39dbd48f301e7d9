"""What a tenant reads about its money and calls: the statement of a period (ledger entries
with opening and closing balance and sums by kind; a call's entry names the part of the
call the enterprise paid: the whole call or, with split billing, the forwarded leg), the
recharge records, daily and monthly call reports, and the calls live now.

Periods are whole days in the TENANT'S time zone (tenants.timezone): ``from`` and ``to``
are dates, both included, and PostgreSQL turns them into instants with ``AT TIME ZONE``
(a day in Asia/Shanghai runs 16:00 to 16:00 UTC). Reports bucket calls by the local day
or month of ``calls.decided_at``, also in SQL.

Report numbers, per day or month: ``offered`` every call record of the tenant,
``answered`` those with answered_at, ``minutes`` sum(calls.minutes), ``amount``
sum(calls.amount) (both NULL until a call is settled, counted as 0), ``asr`` answered /
offered (4 decimals), ``acd_s`` the mean billsec of answered calls whose billsec is known
(1 decimal). Periods without calls are listed with zeros and null ASR/ACD.

Live calls are read from the database: the tenant's call records with ended_at NULL and
decided_at within the last LIVE_WINDOW (6 hours) — a call record that never got its end
(a lost AMI event) stops showing after that."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Literal

from dialplan.reasons import Reason
from provisioning.cards import mask_card
from provisioning.catalog import CALLS
from provisioning.engine import Ctx, Invalid, NotFound, authorize, present
from provisioning.schemas import (
    CallCharge,
    CallRead,
    KindTotal,
    LedgerRead,
    LiveCallsRead,
    RechargeRead,
    ReportRead,
    ReportRow,
    ReportTotals,
    StatementRead,
)

LIVE_WINDOW = timedelta(hours=6)
LIVE_MAX = 1000
MIN_DATE = date(1970, 1, 1)
MAX_DATE = date(9998, 12, 31)
MAX_DAYS = {"day": 366, "month": 3660}
ZERO = Decimal(0)
REASON_CODES = frozenset(r.code for r in Reason)


async def _tenant_timezone(ctx: Ctx) -> tuple[int, str]:
    """The tenant and its zone, if this actor sees the tenant (another tenant's: not found)."""
    if ctx.tenant_id is None or not ctx.actor.sees_tenant(ctx.tenant_id):
        raise NotFound(f"tenant {ctx.tenant_id} not found", "tenant_id")
    tz = await ctx.conn.fetchval("SELECT timezone FROM tenants WHERE id = $1", ctx.tenant_id)
    if tz is None:
        raise NotFound(f"tenant {ctx.tenant_id} not found", "tenant_id")
    return ctx.tenant_id, str(tz)


def _check_range(from_date: date, to_date: date, max_days: int | None) -> None:
    for name, d in (("from", from_date), ("to", to_date)):
        if not MIN_DATE <= d <= MAX_DATE:
            raise Invalid(f"{name} must be between {MIN_DATE} and {MAX_DATE}", name)
    if to_date < from_date:
        raise Invalid("to is before from", "to")
    if max_days is not None and (to_date - from_date).days + 1 > max_days:
        raise Invalid(f"at most {max_days} days at a time", "to")


# ---------------------------------------------------------------------------- statement
async def statement(ctx: Ctx, from_date: date, to_date: date, limit: int, after: int | None) -> StatementRead:
    """Entries are paged (``limit``/``after`` by id); balances and sums cover the period."""
    tid, tz = await _tenant_timezone(ctx)
    _check_range(from_date, to_date, None)
    conn = ctx.conn
    bounds = await conn.fetchrow(
        "SELECT ($1::date)::timestamp AT TIME ZONE $3 AS start, "
        "($2::date + 1)::timestamp AT TIME ZONE $3 AS stop",
        from_date,
        to_date,
        tz,
    )
    start, stop = bounds["start"], bounds["stop"]
    # Read in one snapshot, so the balances and the sums agree with each other.
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        before = await conn.fetchrow(
            "SELECT balance_after FROM ledger_entries WHERE tenant_id = $1 AND created_at < $2 "
            "ORDER BY created_at DESC, id DESC LIMIT 1",
            tid,
            start,
        )
        if before is not None:
            opening = before["balance_after"]
        else:
            # Nothing earlier: the balance before the first entry of the period (an account
            # may have been opened with a balance), or the balance itself if none moved it.
            first = await conn.fetchrow(
                "SELECT balance_after - amount AS b FROM ledger_entries WHERE tenant_id = $1 "
                "AND created_at >= $2 ORDER BY created_at, id LIMIT 1",
                tid,
                start,
            )
            if first is not None:
                opening = first["b"]
            else:
                opening = (
                    await conn.fetchval("SELECT balance FROM accounts WHERE tenant_id = $1", tid) or ZERO
                )
        last = await conn.fetchrow(
            "SELECT balance_after FROM ledger_entries WHERE tenant_id = $1 AND created_at >= $2 "
            "AND created_at < $3 ORDER BY created_at DESC, id DESC LIMIT 1",
            tid,
            start,
            stop,
        )
        closing = last["balance_after"] if last is not None else opening
        kinds = await conn.fetch(
            "SELECT kind, count(*) AS count, sum(amount) AS total FROM ledger_entries "
            "WHERE tenant_id = $1 AND created_at >= $2 AND created_at < $3 GROUP BY kind ORDER BY kind",
            tid,
            start,
            stop,
        )
        # A call entry is keyed by its call (settle_reservations): the record says which
        # part of the call the enterprise paid (split billing) and the caller's talk.
        rows = await conn.fetch(
            "SELECT l.*, c.billed_leg, c.billsec, c.minutes, c.answered_at AS call_answered_at, "
            "c.ended_at AS call_ended_at, c.id IS NOT NULL AS has_call FROM ledger_entries l "
            "LEFT JOIN calls c ON l.kind = 'call' AND c.linkedid = l.idempotency_key "
            "AND c.tenant_id = l.tenant_id "
            "WHERE l.tenant_id = $1 AND l.created_at >= $2 AND l.created_at < $3 "
            "AND l.id > $4 ORDER BY l.id LIMIT $5",
            tid,
            start,
            stop,
            after or 0,
            limit + 1,
        )
    more = len(rows) > limit
    rows = rows[:limit]
    by_kind = [KindTotal(kind=k["kind"], count=k["count"], total=k["total"]) for k in kinds]
    entries = []
    for r in rows:
        entry = LedgerRead.model_validate(dict(r))
        if r["has_call"]:
            answered, ended = r["call_answered_at"], r["call_ended_at"]
            talk = (
                None if answered is None or ended is None else max(int((ended - answered).total_seconds()), 0)
            )
            entry.call = CallCharge(
                billed_leg=r["billed_leg"], billsec=r["billsec"], talk_s=talk, minutes=r["minutes"]
            )
        entries.append(entry)
    return StatementRead(
        tenant_id=tid,
        timezone=tz,
        from_date=from_date,
        to_date=to_date,
        period_start=start,
        period_end=stop,
        opening_balance=opening,
        closing_balance=closing,
        credits=sum((k.total for k in by_kind if k.total > 0), ZERO),
        debits=sum((k.total for k in by_kind if k.total < 0), ZERO),
        by_kind=by_kind,
        entries=entries,
        next_after=rows[-1]["id"] if more and rows else None,
    )


# ---------------------------------------------------------------------------- recharges
async def recharges(ctx: Ctx, limit: int, after: int | None) -> tuple[list[RechargeRead], int | None]:
    """The ledger's recharge entries, with where the money came from (card or operator)."""
    await _tenant_timezone(ctx)
    rows = await ctx.conn.fetch(
        "SELECT l.*, c.card_number AS card FROM ledger_entries l "
        "LEFT JOIN recharge_cards c ON c.ledger_entry_id = l.id "
        "WHERE l.tenant_id = $1 AND l.kind = 'recharge' AND l.id > $2 ORDER BY l.id LIMIT $3",
        ctx.tenant_id,
        after or 0,
        limit + 1,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    items = []
    for r in rows:
        data = dict(r)
        card = data.pop("card")
        data["source"] = "card" if card else "operator"
        data["card_number"] = mask_card(card) if card else None
        items.append(RechargeRead.model_validate(data))
    return items, (rows[-1]["id"] if more and rows else None)


# ---------------------------------------------------------------------------- call reports
_AGGREGATES = """
    count(*) AS offered,
    count(*) FILTER (WHERE answered_at IS NOT NULL) AS answered,
    coalesce(sum(minutes), 0) AS minutes,
    round(coalesce(sum(amount), 0), 4) AS amount,
    round(count(*) FILTER (WHERE answered_at IS NOT NULL)::numeric / nullif(count(*), 0), 4) AS asr,
    round(avg(billsec) FILTER (WHERE answered_at IS NOT NULL), 1) AS acd_s
"""
_IN_PERIOD = """
    tenant_id = $1
    AND decided_at >= ($2::date)::timestamp AT TIME ZONE $4
    AND decided_at < ($3::date + 1)::timestamp AT TIME ZONE $4
"""


async def call_report(
    ctx: Ctx, granularity: Literal["day", "month"], from_date: date, to_date: date
) -> ReportRead:
    tid, tz = await _tenant_timezone(ctx)
    _check_range(from_date, to_date, MAX_DAYS[granularity])
    unit = {"day": "day", "month": "month"}[granularity]  # never from input
    rows = await ctx.conn.fetch(
        f"""
        WITH periods AS (
            SELECT generate_series(
                       date_trunc('{unit}', $2::timestamp), $3::timestamp, interval '1 {unit}'
                   )::date AS period
        ), agg AS (
            SELECT date_trunc('{unit}', decided_at AT TIME ZONE $4)::date AS period, {_AGGREGATES}
            FROM calls WHERE {_IN_PERIOD}
            GROUP BY 1
        )
        SELECT p.period, coalesce(a.offered, 0) AS offered, coalesce(a.answered, 0) AS answered,
               coalesce(a.minutes, 0) AS minutes, coalesce(a.amount, 0.0000) AS amount, a.asr, a.acd_s
        FROM periods p LEFT JOIN agg a USING (period)
        ORDER BY p.period
        """,
        tid,
        from_date,
        to_date,
        tz,
    )
    totals = await ctx.conn.fetchrow(
        f"SELECT {_AGGREGATES} FROM calls WHERE {_IN_PERIOD}", tid, from_date, to_date, tz
    )
    return ReportRead(
        tenant_id=tid,
        timezone=tz,
        granularity=granularity,
        from_date=from_date,
        to_date=to_date,
        rows=[ReportRow.model_validate(dict(r)) for r in rows],
        totals=ReportTotals.model_validate(dict(totals)),
    )


# ---------------------------------------------------------------------------- live calls
async def live_calls(ctx: Ctx) -> LiveCallsRead:
    tid, _tz = await _tenant_timezone(ctx)
    now = ctx.clock.now()
    rows = await ctx.conn.fetch(
        "SELECT * FROM calls WHERE tenant_id = $1 AND ended_at IS NULL AND decided_at >= $2 "
        "ORDER BY decided_at DESC, id DESC LIMIT $3",
        tid,
        now - LIVE_WINDOW,
        LIVE_MAX,
    )
    return LiveCallsRead(
        tenant_id=tid,
        as_of=now,
        window_hours=int(LIVE_WINDOW.total_seconds() // 3600),
        items=[CallRead.model_validate(dict(r)) for r in rows],
    )


# ---------------------------------------------------------------------------- call list
DIRECTIONS = ("inbound", "outbound", "internal")
MAX_NUMBER_FILTER = 20


@dataclass(frozen=True, slots=True)
class CallFilter:
    """Which finished calls a call list shows: local days ``from_date``..``to_date`` (both
    included, either may be open) of ``decided_at`` in the tenant's zone, a direction, a
    decision reason code, and digits the caller or the called number contains."""

    from_date: date | None = None
    to_date: date | None = None
    direction: str | None = None
    reason: str | None = None
    number: str | None = None


def _call_clauses(f: CallFilter, tz: str, params: list[object]) -> list[str]:
    """SQL conditions for ``f``; every value goes in ``params`` (never into the text)."""

    def p(value: object) -> str:
        params.append(value)
        return f"${len(params)}"

    for name, d in (("from", f.from_date), ("to", f.to_date)):
        if d is not None and not MIN_DATE <= d <= MAX_DATE:
            raise Invalid(f"{name} must be between {MIN_DATE} and {MAX_DATE}", name)
    if f.from_date is not None and f.to_date is not None and f.to_date < f.from_date:
        raise Invalid("to is before from", "to")
    if f.direction is not None and f.direction not in DIRECTIONS:
        raise Invalid(f"direction is one of {', '.join(DIRECTIONS)}", "direction")
    if f.reason is not None and f.reason not in REASON_CODES:
        raise Invalid("not a call outcome code", "reason")
    if f.number is not None and not (
        f.number.isascii() and f.number.isdigit() and len(f.number) <= MAX_NUMBER_FILTER
    ):
        raise Invalid(f"digits only, at most {MAX_NUMBER_FILTER}", "number")
    where = []
    if f.from_date is not None:
        where.append(f"decided_at >= ({p(f.from_date)}::date)::timestamp AT TIME ZONE {p(tz)}")
    if f.to_date is not None:
        where.append(f"decided_at < ({p(f.to_date)}::date + 1)::timestamp AT TIME ZONE {p(tz)}")
    if f.direction is not None:
        where.append(f"direction = {p(f.direction)}")
    if f.reason is not None:
        where.append(f"reason = {p(f.reason)}")
    if f.number:
        n = p(f.number)
        where.append(f"(strpos(caller, {n}) > 0 OR strpos(called, {n}) > 0)")
    return where


async def finished_calls(
    ctx: Ctx, f: CallFilter, limit: int, before: int | None
) -> tuple[list[CallRead], int | None]:
    """The tenant's calls that are not live (see ``live_calls``: ended, or decided longer
    than LIVE_WINDOW ago), newest first, as the API's calls resource presents them (its
    roles and masks); paged by id: pass the answer's next id as ``before``."""
    await authorize(ctx, CALLS, write=False)
    tid, tz = await _tenant_timezone(ctx)
    params: list[object] = [tid, ctx.clock.now() - LIVE_WINDOW]
    where = ["tenant_id = $1", "(ended_at IS NOT NULL OR decided_at < $2)", *_call_clauses(f, tz, params)]
    if before is not None:
        params.append(before)
        where.append(f"id < ${len(params)}")
    params.append(limit + 1)
    rows = await ctx.conn.fetch(
        f"SELECT * FROM calls WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ${len(params)}", *params
    )
    more = len(rows) > limit
    rows = rows[:limit]
    items = [present(CALLS, r) for r in rows]
    return [i for i in items if isinstance(i, CallRead)], (rows[-1]["id"] if more and rows else None)
