"""IVR: the pure step machines of ivr/ driven against a live call, on whichever engine
(softswitch.callpath.control.CallChannel).

`menu` runs a tenant's menus (AGI script `ivr`, reached when a policy sends a call to an
IVR); a transfer, voicemail or hang-up at the end becomes an ordinary decision handed back
to the dialplan. `selfservice` runs the phone self-service line of seed 001 for callers of
the platform's self-service numbers; its effects (password, balance, recharge card,
password change, time policy switch) are done here in SQL, each audited, each failing
closed (the machine then says "service unavailable" and hangs up)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import asyncpg

from dialplan.inbound import Reject, ivr_transfer
from dialplan.inbound import Voicemail as VoicemailDecision
from dialplan.reasons import Reason
from ivr import machine
from ivr import selfservice as ss
from ivr.actions import Collect, Digits, Hangup, Play, SayDigits, SayNumber, Timeout, Transfer, Voicemail
from provisioning import audit as audit_log
from provisioning.cards import CardRefused, redeem_card
from provisioning.prompts import PromptStore
from provisioning.rules import hash_pin, pin_matches
from softswitch.callpath.control import CallChannel
from softswitch.callpath.snapshots import SnapshotStore
from softswitch.core.clock import Clock

log = logging.getLogger(__name__)

Deliver = Callable[[CallChannel, Any, float, str, str, str, str], Awaitable[None]]


class IvrLine:
    def __init__(
        self,
        snapshots: SnapshotStore,
        clock: Clock,
        pool: asyncpg.Pool,
        prompts: PromptStore,
        deliver: Deliver,
        config: ss.SelfServiceConfig | None = None,
    ) -> None:
        self._snapshots = snapshots
        self._clock = clock
        self._pool = pool
        self._prompts = prompts
        self._deliver = deliver  # CallRouting.deliver: reserve, send, record
        self._config = config or ss.SelfServiceConfig()

    def _prompt(self, tenant_id: int | None, name: str) -> str:
        """A tenant's own prompt, else the platform's, else an Asterisk sound of that name."""
        for scope in ((f"t{tenant_id}",) if tenant_id else ()) + ("system",):
            try:
                if self._prompts.exists(scope, name):
                    return self._prompts.playable(scope, name)
            except ValueError:
                break
        return name

    async def _perform(self, session: CallChannel, tenant_id: int | None, actions: Any) -> Any:
        """Play the channel actions; return the caller's event for a Collect (or None)."""
        event: Any = None
        for action in actions:
            if isinstance(action, Play):
                await session.play(self._prompt(tenant_id, action.prompt))
            elif isinstance(action, Collect):
                digits, timed_out = await session.collect(
                    self._prompt(tenant_id, action.prompt), action.timeout_ms, action.max_digits
                )
                event = Timeout() if timed_out and not digits else Digits(digits)
            elif isinstance(action, SayDigits):
                await session.say_digits(action.digits)
            elif isinstance(action, SayNumber):
                await session.say_number(action.number)
        return event

    # ------------------------------------------------------------------ tenant menus
    async def menu(self, session: CallChannel) -> None:
        facts = session.facts
        linkedid, caller, called = facts.linkedid, facts.caller, facts.called
        entry, tenant_s = (*facts.args, "", "")[:2]
        tenant_id = int(tenant_s) if tenant_s.isdigit() else None
        snap = self._snapshots.current
        menus = snap.ivr_menus.get(tenant_id or 0)
        if menus is None or entry not in menus:
            decision: Any = Reject(Reason.NO_DESTINATION, tenant_id)
            await self._deliver(session, decision, time.perf_counter(), linkedid, caller, called, "inbound")
            return
        await session.answer()
        step = machine.start(menus, entry)
        while True:
            terminal = next((a for a in step.actions if isinstance(a, Transfer | Voicemail | Hangup)), None)
            event = await self._perform(session, tenant_id, step.actions)
            if terminal is not None:
                break
            if event is None:  # nothing to wait for and nothing decided: end politely
                terminal = Hangup("ivr_no_input")
                break
            step = machine.advance(menus, step.state, event)
        started = time.perf_counter()
        if isinstance(terminal, Transfer):
            decision = ivr_transfer(self._snapshots.current, called, terminal.kind, terminal.ref)
        elif isinstance(terminal, Voicemail):
            decision = VoicemailDecision(tenant_id or 0, None)  # type: ignore[arg-type]
        else:
            decision = Reject(Reason.IVR, tenant_id, prompt="")
        await self._deliver(session, decision, started, linkedid, caller, called, "inbound")

    # ------------------------------------------------------------------ self-service line
    async def selfservice(self, session: CallChannel) -> None:
        linkedid, caller, called = session.facts.linkedid, session.facts.caller, session.facts.called
        await session.answer()
        step = ss.start(self._config, linkedid)
        while True:
            channel = [a for a in step.actions if not _is_effect(a)]
            effects = [a for a in step.actions if _is_effect(a)]
            event = await self._perform(session, None, channel)
            hangup = next((a for a in step.actions if isinstance(a, Hangup)), None)
            if hangup is not None:
                log.info("self-service call %s ended: %s", linkedid, hangup.reason)
                break
            if effects:
                event = await self._effect(effects[0], linkedid)
            if event is None:
                break
            step = ss.advance(self._config, step.state, event)
        decision = Reject(Reason.IVR, None, prompt="")
        await self._deliver(session, decision, time.perf_counter(), linkedid, caller, called, "inbound")

    async def _effect(self, action: Any, linkedid: str) -> Any:
        try:
            async with self._pool.acquire() as conn:
                return await self._do(conn, action, linkedid)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.error("self-service effect %s failed: %s", type(action).__name__, exc)
            return ss.EffectFailed(type(action).__name__)

    async def _do(self, conn: asyncpg.Connection, action: Any, linkedid: str) -> Any:
        tenant_id = int(action.account) if action.account.isdigit() and len(action.account) < 12 else 0
        now = self._clock.now()
        if isinstance(action, ss.CheckPassword):
            row = await conn.fetchrow(
                "SELECT selfservice_password_hash AS h, selfservice_locked_at AS locked "
                "FROM tenants WHERE id = $1",
                tenant_id,
            )
            if row is None or row["h"] is None:
                return ss.PasswordResult(False)
            if row["locked"] is not None:
                return ss.PasswordResult(False, locked=True)
            return ss.PasswordResult(pin_matches(action.password, row["h"]))
        if isinstance(action, ss.LockAccount):
            await conn.execute("UPDATE tenants SET selfservice_locked_at = $2 WHERE id = $1", tenant_id, now)
            await _audit(conn, now, tenant_id, "selfservice_lock", linkedid, {"reason": "wrong passwords"})
            return ss.PasswordResult(False, locked=True)
        if isinstance(action, ss.GetBalance):
            amount = await conn.fetchval(
                "SELECT balance - reserved FROM accounts WHERE tenant_id = $1", tenant_id
            )
            return ss.Balance(Decimal(amount if amount is not None else 0))
        if isinstance(action, ss.RedeemCard):
            try:
                entry, _created = await redeem_card(
                    conn,
                    tenant_id,
                    action.card,
                    action.pin,
                    action.idempotency_key,
                    actor=f"phone:selfservice:{linkedid}",
                    now=now,
                )
            except CardRefused as exc:
                return ss.RedeemResult(False, reason=getattr(exc, "reason", str(exc)))
            return ss.RedeemResult(True, entry.amount)
        if isinstance(action, ss.ChangePassword):
            await conn.execute(
                "UPDATE tenants SET selfservice_password_hash = $2, version = version + 1 WHERE id = $1",
                tenant_id,
                hash_pin(action.new_password),
            )
            await _audit(conn, now, tenant_id, "selfservice_password", linkedid, {})
            return ss.PasswordChanged(True)
        if isinstance(action, ss.ToggleTimePolicy):
            status = await conn.execute(
                "UPDATE time_policies SET enabled = $2, version = version + 1 WHERE tenant_id = $1",
                tenant_id,
                action.on,
            )
            await _audit(conn, now, tenant_id, "selfservice_time_policy", linkedid, {"enabled": action.on})
            return ss.ToggleResult(status != "UPDATE 0")
        return ss.EffectFailed(type(action).__name__)


def _is_effect(action: Any) -> bool:
    return isinstance(
        action,
        ss.CheckPassword
        | ss.LockAccount
        | ss.GetBalance
        | ss.RedeemCard
        | ss.ChangePassword
        | ss.ToggleTimePolicy,
    )


async def _audit(
    conn: asyncpg.Connection, now: Any, tenant_id: int, action: str, linkedid: str, after: dict[str, Any]
) -> None:
    await audit_log.record(
        conn,
        at=now,
        actor=f"phone:selfservice:{linkedid}",
        tenant_id=tenant_id,
        entity="tenants",
        entity_id=tenant_id,
        action=action,
        after=after,
    )
