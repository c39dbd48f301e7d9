"""Prepaid calls end to end, at the edge between the database, the engine's call control
and the call registry.

- authorize: a reservation (channel slot + first slice) before the call may ring; a
  database that does not answer in time refuses the call (fail closed).
- the switch enforces a hard stop: the answering channel hangs up when the reserved talk
  time runs out (Asterisk: TIMEOUT(absolute), set in the dialplan's [ss-answer]); each
  renewal extends it (CallControl.extend_hard_stop), so a lost control plane costs at
  most one slice.
- when no further slice can be reserved the caller hears a warning before the stop.
- at hang-up the call is settled once (or the reservation released if never answered),
  for the seconds the enterprise pays: with split billing (a 400/4008 number of a
  split-billing package, rating/split.py) the forwarded leg's, from a bound destination's
  answer; otherwise the whole call's, from its answer.
- reconcile: reservations whose call no longer exists on the switch (a crash, a lost
  Hangup event) are settled from Asterisk's own CDR, or released; softswitch.callpath.audit
  calls it with the switch's live calls every ``reconcile_interval_s``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from dialplan.compliance import Refused
from dialplan.reasons import Reason
from provisioning.ledger import (
    Grant,
    OpenRequest,
    Refusal,
    Settlement,
    SettleRequest,
    open_reservation,
    release_reservation,
    renew_reservation,
    settle_reservation,
    spend_cap_reached,
)
from rating.split import (
    BilledLeg,
    CallTimes,
    billed_seconds,
    billed_seconds_from_cdr,
    forwarded_seconds,
    talk_seconds,
)
from softswitch.callpath.control import CallControl, ControlError
from softswitch.callpath.money_batch import MoneyBatches
from softswitch.callpath.outbound_gate import OutboundAttempt, gated_reservation
from softswitch.callpath.registry import CallRegistry, LiveCall, TransferLeg
from softswitch.core.clock import Clock
from softswitch.core.metrics import Metrics
from softswitch.core.settings import PrepaidSettings

log = logging.getLogger(__name__)

# A reservation younger than this may belong to a call still being set up.
_GRACE = timedelta(seconds=10)


@dataclass
class TrackedCall:
    call_id: str
    tenant_id: int
    granted_s: int
    final: bool = False  # no further slice could be reserved
    cut: bool = False  # hung up by the platform: the tenant's daily spend cap
    warned: bool = False
    renewing: bool = False
    extended_at: datetime | None = field(default=None)
    inbound: bool = False  # a call to a unified number (split billing may apply)
    # The call a transfer leg belongs to ('': the reservation is the call's own first leg,
    # call_id is the linkedid); a leg's call_id is <linkedid>~x<n> (registry.TransferLeg).
    linkedid: str = ""

    @property
    def call(self) -> str:
        return self.linkedid or self.call_id

    @property
    def is_transfer_leg(self) -> bool:
        return bool(self.linkedid) and self.linkedid != self.call_id


def _leg(call: LiveCall, t: TrackedCall) -> TransferLeg | None:
    if not t.is_transfer_leg:
        return None
    return next((leg for leg in call.legs if leg.call_id == t.call_id), None)


def _answered(call: LiveCall, t: TrackedCall) -> datetime | None:
    """When the reservation's leg was answered (a transfer leg: by its target)."""
    if not t.is_transfer_leg:
        return call.answered_at
    leg = _leg(call, t)
    return leg.answered_at if leg is not None else None


def _party_channel(call: LiveCall, t: TrackedCall) -> str:
    """The answering channel of the reservation's leg: its hard stop, the party it pays for."""
    if not t.is_transfer_leg:
        return call.callee_channel
    leg = _leg(call, t)
    return leg.channel if leg is not None else ""


class CallMoney:
    def __init__(
        self,
        pool: asyncpg.Pool,
        control: CallControl,
        registry: CallRegistry,
        clock: Clock,
        metrics: Metrics,
        settings: PrepaidSettings,
        spend_cap: Callable[[int], Decimal | None] = lambda _tenant: None,
        batches: MoneyBatches | None = None,
    ) -> None:
        """``spend_cap``: the tenant's daily spend cap now (its compliance rules).
        ``batches``: opens and settlements group-committed (money_batch); without it each
        call's takes a pooled connection and a commit of its own."""
        self._spend_cap = spend_cap
        self._batches = batches
        self._pool = pool
        self._control = control
        self._registry = registry
        self._clock = clock
        self._metrics = metrics
        self._s = settings
        self._tracked: dict[str, TrackedCall] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ set-up
    async def authorize(
        self,
        tenant_id: int,
        call_id: str,
        channel: str,
        outbound: OutboundAttempt | None = None,
        linkedid: str = "",
    ) -> Grant | Refusal | Refused:
        """A reservation for the call, or why not. An enterprise's outbound call
        (``outbound``) first passes the compliance gate in the same transaction. A transfer
        leg's reservation (``call_id`` <linkedid>~x<n>) names its call's ``linkedid``."""
        started = self._clock.now()
        cap = self._spend_cap(tenant_id)
        slice_s = self._s.slice_s
        try:
            async with asyncio.timeout(self._s.timeout_s):
                result: Grant | Refusal | Refused
                if outbound is None and self._batches is not None:
                    result = await self._batches.open(
                        OpenRequest(tenant_id, call_id, channel, slice_s, started, cap)
                    )
                else:
                    async with self._pool.acquire() as conn:
                        if outbound is None:
                            result = await open_reservation(
                                conn, tenant_id, call_id, channel, slice_s, started, cap
                            )
                        else:
                            result = await gated_reservation(
                                conn, outbound, tenant_id, call_id, channel, slice_s, started, cap
                            )
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.error("prepaid check failed for call %s, refusing it (fail closed): %s", call_id, exc)
            self._metrics.reservations.labels("unavailable").inc()
            return Refusal.UNAVAILABLE
        if isinstance(result, Grant):
            self._tracked[call_id] = TrackedCall(
                call_id,
                tenant_id,
                result.seconds,
                inbound=outbound is None and not linkedid,
                linkedid=linkedid,
            )
            self._metrics.reservations.labels("granted").inc()
        elif isinstance(result, Refusal):
            self._metrics.reservations.labels(result.value.lower()).inc()
            if result is Refusal.SPEND_CAP:
                self._cut_tenant(tenant_id)
        return result

    def _cut_tenant(self, tenant_id: int) -> None:
        """The tenant reached its daily spend cap (toll fraud): its live calls are cut
        now, not at the end of their reserved slices."""
        for t in list(self._tracked.values()):
            if t.tenant_id != tenant_id or t.cut:
                continue
            call = self._registry.get(t.call)
            if call is None or call.ended_at is not None:
                continue
            t.cut = True
            t.final = True
            self._spawn(self._cut(call), f"cut-{t.call_id}")

    async def _cut(self, call: LiveCall) -> None:
        for channel in sorted(call.channels):
            try:
                await self._control.hangup(channel, Reason.SPEND_CAP.cause)
            except ControlError as exc:
                log.info("could not cut %s at the spend cap: %s", channel, exc)
        self._metrics.spend_cap_cuts.inc()

    # ------------------------------------------------------------------ during the call
    async def start(self) -> None:
        self._loop_task = asyncio.create_task(self._run(), name="prepaid-supervisor")

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
        pending = [*self._tasks, *([self._loop_task] if self._loop_task else [])]
        await asyncio.gather(*pending, return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the supervisor must keep running
                log.exception("prepaid supervisor step failed")

    async def tick(self) -> None:
        now = self._clock.now()
        for t in list(self._tracked.values()):
            call = self._registry.get(t.call)
            if call is None or call.ended_at is not None:
                continue
            answered = _answered(call, t)
            if answered is None:
                continue
            remaining = (answered - now).total_seconds() + t.granted_s
            if not t.final and not t.renewing and remaining <= self._s.renew_margin_s:
                t.renewing = True
                self._spawn(self._renew(t, call), f"renew-{t.call_id}")
            if t.final and not t.warned and remaining <= self._s.warning_s:
                t.warned = True
                self._spawn(self._warn(call), f"warn-{t.call_id}")

    async def _renew(self, t: TrackedCall, call: LiveCall) -> None:
        cap = self._spend_cap(t.tenant_id)
        capped = False
        try:
            async with asyncio.timeout(self._s.timeout_s), self._pool.acquire() as conn:
                now = self._clock.now()
                grant = await renew_reservation(conn, t.call_id, self._s.slice_s, now, cap)
                if grant is None and cap is not None:
                    capped = await spend_cap_reached(conn, t.tenant_id, cap, now)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("renewal of call %s failed, the switch's stop stands: %s", t.call_id, exc)
            grant = None
        try:
            if grant is None:
                t.final = True
                self._metrics.reservations.labels("spend_cap" if capped else "renewal_refused").inc()
                if capped:
                    self._cut_tenant(t.tenant_id)
                return
            t.granted_s += grant.seconds
            self._metrics.reservations.labels("renewed").inc()
            answered = _answered(call, t)
            assert answered is not None
            remaining = math.ceil((answered - self._clock.now()).total_seconds() + t.granted_s)
            party = _party_channel(call, t)
            if party:
                await self._control.extend_hard_stop(party, remaining)
        except ControlError as exc:
            log.warning("could not extend the hard stop of call %s: %s", t.call_id, exc)
        finally:
            t.renewing = False

    async def _warn(self, call: LiveCall) -> None:
        """A short tone to the caller: the call ends in a few seconds (no balance left)."""
        for channel in filter(None, (call.caller_channel,)):
            try:
                await self._control.warn(channel)
            except ControlError as exc:
                log.info("warning tone on %s not played: %s", channel, exc)

    # ------------------------------------------------------------------ hang-up
    def on_call_end(self, call: LiveCall) -> None:
        for call_id in (call.linkedid, *(leg.call_id for leg in call.legs)):
            t = self._tracked.pop(call_id, None)
            if t is not None:
                self._spawn(self._close(call, t), f"settle-{call_id}")

    def on_leg_end(self, call: LiveCall, call_id: str) -> None:
        """One leg of a transferred call ended while the call goes on (its answering party
        hung up): its reservation is settled now, for that leg's talk."""
        t = self._tracked.pop(call_id, None)
        if t is not None:
            ended = call.callee_left_at if not t.is_transfer_leg else None
            self._spawn(self._close(call, t, ended), f"settle-{call_id}")

    async def transferor_leaves(self, linkedid: str, channel: str) -> int:
        """A blind transfer (DTMF #1, SIP REFER) by the party on ``channel``: the leg that
        party answered ends now, so it is settled before the new leg reserves — a transfer
        never holds two channels of the package. Returns the legs settled."""
        call = self._registry.get(linkedid)
        if call is None or not channel:
            return 0
        leaving = [
            t
            for t in list(self._tracked.values())
            if t.call == linkedid and _party_channel(call, t) == channel
        ]
        now = self._clock.now()
        for t in leaving:
            self._tracked.pop(t.call_id, None)
            await self._close(call, t, now)
        return len(leaving)

    async def _close(self, call: LiveCall, t: TrackedCall, ended_at: datetime | None = None) -> None:
        """Settle (or release) reservation ``t`` of ``call``: its leg ended at ``ended_at``
        (default: the call's end)."""
        now = self._clock.now()
        if t.is_transfer_leg:
            await self._close_transfer_leg(call, t, now)
            return
        if ended_at is None and call.legs and call.callee_left_at is not None:
            ended_at = call.callee_left_at  # the transferor left before the call ended
        if ended_at is not None:
            call = dataclasses.replace(call, ended_at=ended_at, channels=set(call.channels))
        cdr = None
        if not call.times_exact:
            # An end inferred from the engine's channel list is only as precise as that
            # check: the engine's own record of the call, when it has one, says better.
            async with self._pool.acquire() as conn:
                cdr = await _engine_cdr(conn, call.linkedid)
        if cdr is None and (call.answered_at is None or call.ended_at is None):
            async with self._pool.acquire() as conn:
                await release_reservation(conn, call.linkedid, now, "not answered")
            self._metrics.reservations.labels("released").inc()
            return
        times = CallTimes(call.answered_at, call.callee_answered_at, call.ended_at)
        leg = BilledLeg.CALL
        # Which leg is billed matters only when the platform answered the caller before a
        # destination did (a greeting, a menu, a PIN): ask then, not on every hang-up.
        if t.inbound and (cdr is not None or forwarded_seconds(times) != talk_seconds(times)):
            async with self._pool.acquire() as conn:
                leg, _ = await _record_leg(conn, call.linkedid, now)
        if cdr is not None:
            billsec = cdr.billed(leg, call.callee_answered_at)
        else:
            billsec = billed_seconds(times, leg)
        if t.cut:
            reason = Reason.SPEND_CAP.code
        elif t.final and billsec >= t.granted_s - 2:
            reason = Reason.BALANCE_EXHAUSTED.code
        else:
            reason = ""
        settled = await self._settle(SettleRequest(call.linkedid, billsec, now, reason))
        if settled is not None:
            self._metrics.settlements.inc()
            if settled.overrun_s:
                self._metrics.settlement_overrun_seconds.inc(settled.overrun_s)

    async def _close_transfer_leg(self, call: LiveCall, t: TrackedCall, now: datetime) -> None:
        """A transfer leg is the tenant's from its target's answer to that target's
        hang-up (or the call's end): charged whole, never split."""
        leg = _leg(call, t)
        end = (leg.ended_at if leg is not None else None) or call.ended_at
        if leg is None or leg.answered_at is None or end is None:
            async with self._pool.acquire() as conn:
                await release_reservation(conn, t.call_id, now, "transfer not answered")
            self._metrics.reservations.labels("released").inc()
            return
        billsec = talk_seconds(CallTimes(leg.answered_at, leg.answered_at, end))
        reason = Reason.SPEND_CAP.code if t.cut else ""
        if not reason and t.final and billsec >= t.granted_s - 2:
            reason = Reason.BALANCE_EXHAUSTED.code
        settled = await self._settle(SettleRequest(t.call_id, billsec, now, reason))
        if settled is not None:
            self._metrics.settlements.inc()
            if settled.overrun_s:
                self._metrics.settlement_overrun_seconds.inc(settled.overrun_s)

    async def _settle(self, request: SettleRequest) -> Settlement | None:
        if self._batches is not None:
            return await self._batches.settle(request)
        async with self._pool.acquire() as conn:
            return await settle_reservation(
                conn, request.call_id, request.billsec, request.now, request.reason
            )

    # ------------------------------------------------------------------ crash safety
    async def reconcile(self, live_linkedids: set[str]) -> tuple[int, int]:
        """Open reservations whose call is gone from the switch (``live_linkedids``: the
        linkedids of its live channels) are settled from Asterisk's CDR when it was
        answered, else released. A reservation younger than the grace may belong to a call
        still being set up — unless the registry saw that call end. Returns (settled,
        released)."""
        settled = released = 0
        now = self._clock.now()
        async with self._pool.acquire() as conn:
            held = await conn.fetchrow(
                "SELECT count(*) AS n, COALESCE(sum(amount), 0) AS amount "
                "FROM reservations WHERE state = 'open'"
            )
            self._metrics.open_reservations.set(held["n"])
            # A gauge is a float by nature; the money itself stays NUMERIC in the database.
            self._metrics.reserved_amount.set(float(held["amount"]))
            # A transfer leg's reservation (<linkedid>~x<n>) lives as long as its call.
            candidates = await conn.fetch(
                "SELECT call_id, opened_at FROM reservations "
                "WHERE state = 'open' AND NOT (split_part(call_id, '~', 1) = ANY($1))",
                list(live_linkedids),
            )
            for row in candidates:
                call_id = row["call_id"]
                linkedid = call_id.split("~", 1)[0]
                call = self._registry.get(linkedid)
                if self._registry.is_live(linkedid):
                    continue
                if call is None and row["opened_at"] >= now - _GRACE:
                    continue  # perhaps still being set up
                ended_lately = (
                    call is not None and call.ended_at is not None and call.ended_at >= now - _GRACE
                )
                if ended_lately and call is not None and call.times_exact:
                    continue  # its hang-up is being settled (on_call_end)
                if linkedid != call_id:
                    if await self._reconcile_leg(conn, call_id, call, now):
                        settled += 1
                    else:
                        released += 1
                    continue
                cdr = await _engine_cdr(conn, call_id)
                leg, forwarded_at = await _record_leg(conn, call_id, now)
                if call is not None and call.callee_answered_at is not None:
                    forwarded_at = call.callee_answered_at
                billsec = None if cdr is None else cdr.billed(leg, forwarded_at)
                if billsec is None and call is not None and call.answered_at is not None:
                    if ended_lately:
                        continue  # answered: its CDR is on its way; never release it for free
                    times = CallTimes(call.answered_at, forwarded_at, call.ended_at or now)
                    billsec = billed_seconds(times, leg)
                if billsec is not None:
                    if await settle_reservation(conn, call_id, billsec, now, "reconciled from CDR"):
                        settled += 1
                elif await release_reservation(conn, call_id, now, "reconciled: call gone"):
                    released += 1
                self._tracked.pop(call_id, None)
        if settled or released:
            log.info("reconciled reservations: %d settled from CDR, %d released", settled, released)
            self._metrics.reconciled.labels("settled").inc(settled)
            self._metrics.reconciled.labels("released").inc(released)
        return settled, released

    async def _reconcile_leg(
        self, conn: asyncpg.Connection, call_id: str, call: LiveCall | None, now: datetime
    ) -> bool:
        """A transfer leg of a call gone unobserved: settled for what the registry saw of
        it (True), else released — the engine's CDR does not tell the legs apart."""
        self._tracked.pop(call_id, None)
        leg = next((x for x in call.legs if x.call_id == call_id), None) if call is not None else None
        if call is not None and leg is not None and leg.answered_at is not None:
            end = leg.ended_at or call.ended_at or now
            billsec = talk_seconds(CallTimes(leg.answered_at, leg.answered_at, end))
            return (
                await settle_reservation(conn, call_id, billsec, now, "reconciled: transfer leg") is not None
            )
        await release_reservation(conn, call_id, now, "reconciled: call gone")
        return False


@dataclass(frozen=True, slots=True)
class _EngineCdr:
    """A call by the engine's own records (engine_cdr_legs: both engines')."""

    whole_s: int  # its longest answered leg's billsec
    forwarded_s: int | None  # the destination leg's, where the engine records it by itself
    ended_at: datetime | None

    def billed(self, leg: BilledLeg, forwarded_answered_at: datetime | None) -> int:
        return billed_seconds_from_cdr(
            leg, self.whole_s, self.forwarded_s, self.ended_at, forwarded_answered_at
        )


async def _engine_cdr(conn: asyncpg.Connection, linkedid: str) -> _EngineCdr | None:
    """The call's talk time by the engine's own records, if it was answered there."""
    row = await conn.fetchrow(
        "SELECT max(billsec) FILTER (WHERE disposition = 'ANSWERED') AS whole_s, "
        "CASE WHEN bool_or(legs_recorded) THEN "
        "coalesce(max(billsec) FILTER (WHERE disposition = 'ANSWERED' AND forwarded), 0) END "
        "AS forwarded_s, max(\"end\") FILTER (WHERE disposition = 'ANSWERED') AS ended_at "
        "FROM engine_cdr_legs WHERE linkedid = $1",
        linkedid,
    )
    if row is None or row["whole_s"] is None:
        return None
    return _EngineCdr(row["whole_s"], row["forwarded_s"], row["ended_at"])


async def _record_leg(
    conn: asyncpg.Connection, linkedid: str, now: datetime
) -> tuple[BilledLeg, datetime | None]:
    """Split billing or not, by the rule the settlement's transaction writes on the record
    (migration 0026's call_billed_leg, at the settlement's time ``now``), and when the
    platform saw a destination answer; a call without a record is charged whole."""
    row = await conn.fetchrow(
        "SELECT call_billed_leg(tenant_id, direction, number_id, $2) AS leg, forwarded_answered_at "
        "FROM calls WHERE linkedid = $1",
        linkedid,
        now,
    )
    if row is None:
        return BilledLeg.CALL, None
    return BilledLeg(row["leg"]), row["forwarded_answered_at"]
