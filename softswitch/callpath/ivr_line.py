"""IVR: the pure step machines of ivr/ driven against a live call, on whichever engine
(softswitch.callpath.control.CallChannel).

`menu` runs a tenant's menus (reached when a policy sends a call to an IVR); a transfer,
voicemail or hang-up at the end becomes an ordinary decision handed back to the engine.
`selfservice` runs the phone self-service line of seed 001 for callers of the platform's
self-service numbers; the machine's channel actions are played here, its effects
(password, balance, recharge card, password change, time policy switch) are done by
provisioning.selfservice, each audited, each failing closed."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence

import asyncpg

from dialplan.inbound import Decision, Reject, ivr_transfer
from dialplan.inbound import Voicemail as VoicemailDecision
from dialplan.reasons import Reason
from ivr import machine
from ivr import selfservice as ss
from ivr.actions import (
    CallerEvent,
    ChannelAction,
    Collect,
    Digits,
    Hangup,
    Play,
    SayDigits,
    SayNumber,
    Timeout,
    Transfer,
    Voicemail,
)
from provisioning import selfservice as effects
from provisioning.prompts import PromptStore
from softswitch.callpath.control import CallChannel
from softswitch.callpath.snapshots import SnapshotStore
from softswitch.core.clock import Clock

log = logging.getLogger(__name__)

Deliver = Callable[[CallChannel, Decision, float, str, str, str, str], Awaitable[None]]


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

    async def _perform(
        self, session: CallChannel, tenant_id: int | None, actions: Sequence[ChannelAction | ss.Effect]
    ) -> CallerEvent | None:
        """Play the channel actions; return the caller's event for a Collect (or None)."""
        event: CallerEvent | None = None
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
            refused = Reject(Reason.NO_DESTINATION, tenant_id)
            await self._deliver(session, refused, time.perf_counter(), linkedid, caller, called, "inbound")
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
        decision: Decision
        if isinstance(terminal, Transfer):
            decision = ivr_transfer(
                self._snapshots.current, called, terminal.kind, terminal.ref, now=self._clock.now()
            )
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
            event: ss.SelfServiceEvent | None = await self._perform(session, None, step.actions)
            hangup = next((a for a in step.actions if isinstance(a, Hangup)), None)
            if hangup is not None:
                log.info("self-service call %s ended: %s", linkedid, hangup.reason)
                break
            effect = next((a for a in step.actions if isinstance(a, ss.Effect)), None)
            if effect is not None:
                event = await effects.perform(self._pool, effect, effects.Caller(linkedid, self._clock.now()))
            if event is None:
                break
            step = ss.advance(self._config, step.state, event)
        decision = Reject(Reason.IVR, None, prompt="")
        await self._deliver(session, decision, time.perf_counter(), linkedid, caller, called, "inbound")
