"""Routing the calls an engine hands over: `route` (inbound to unified numbers) and
`extension` (calls from SIP extensions). The call's facts come from the engine's
CallChannel, the decision from dialplan/ (pure), and the decision goes back through the
same CallChannel (softswitch.callpath.control): this module does not know which engine
carries the call."""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from collections.abc import Awaitable, Callable
from datetime import datetime

from dialplan.compliance import Refused, check_before_counting, outbound_rules
from dialplan.distribution import Memory
from dialplan.extension_calls import ExtensionCall, decide_extension_call, from_extension
from dialplan.inbound import AskPin, Decision, InboundCall, Reject, Route, RunIvr, Voicemail, decide_inbound
from dialplan.legs import Direction, Leg
from dialplan.reasons import Reason
from dialplan.time_policy import DEFAULT_TIMEZONE
from dialplan.transfers import TransferKind, TransferRequest, decide_transfer
from provisioning.ledger import Grant, Refusal
from provisioning.rules import pin_matches
from softswitch.callpath.control import CallChannel
from softswitch.callpath.outbound_gate import OutboundAttempt
from softswitch.callpath.pbx import PbxChannels, RegisteredCheck, pbx_endpoints, unregistered_of
from softswitch.callpath.prepaid import CallMoney
from softswitch.callpath.recorder import Recorder
from softswitch.callpath.records import CallRecordWriter, DecisionRecord, TransferRecord
from softswitch.callpath.registry import CallRegistry
from softswitch.callpath.snapshots import SnapshotStore
from softswitch.callpath.voicemail import VoicemailPickup
from softswitch.core.clock import Clock
from softswitch.core.masking import mask_number
from softswitch.core.metrics import Metrics

log = logging.getLogger(__name__)

PIN_PROMPT = "agent-pass"  # "please enter your password followed by the pound key"
PIN_RETRY_PROMPT = "auth-incorrect"
PIN_TIMEOUT_MS = 6000


def action_of(decision: Decision) -> str:
    return {Route: "dial", Reject: "reject", Voicemail: "voicemail", RunIvr: "ivr"}[type(decision)]


class CallRouting:
    """Both routing scripts, sharing the snapshot, clock, memory and records."""

    def __init__(
        self,
        snapshots: SnapshotStore,
        clock: Clock,
        metrics: Metrics,
        records: CallRecordWriter,
        money: CallMoney | None = None,
        rng: random.Random | None = None,
        recorder: Recorder | None = None,
        voicemail: VoicemailPickup | None = None,
        registry: CallRegistry | None = None,
    ) -> None:
        self._registry = registry
        self._money = money
        self._recorder = recorder
        self._voicemail = voicemail
        self._snapshots = snapshots
        # The platform's phone self-service line (softswitch.callpath.ivr_line), set by the service.
        self.selfservice: Callable[[CallChannel], Awaitable[None]] | None = None
        self.selfservice_numbers: frozenset[str] = frozenset()
        self._clock = clock
        self._metrics = metrics
        self._records = records
        self._rng = rng or random.Random()
        # Distribution memory (round-robin position, last call per destination): process
        # state at the edge, read by the pure planner. Lost on restart, which only resets
        # round-robin's starting point.
        self._rr: dict[tuple[int, str], int] = {}
        self._last_call: dict[str, datetime] = {}
        # Customer PBX trunks: whether one is registered (set by the service: it asks the
        # engine), and each one's channels in use (released as its calls end).
        self.pbx_registered: RegisteredCheck | None = None
        self.pbx_channels = PbxChannels()
        if registry is not None:
            registry.add_end_listener(self.pbx_channels.on_call_end)

    def _memory(self, key: tuple[int, str]) -> Memory:
        return Memory(self._rr.get(key, 0), self._last_call)

    def _remember(self, decision: Decision) -> None:
        if isinstance(decision, Route) and decision.number_id is not None:
            key = (decision.number_id, decision.group)
            self._rr[key] = self._rr.get(key, 0) + 1
            now = self._clock.now()
            for m in decision.steps[0].members if decision.steps else ():
                self._last_call[m.destination] = now

    def _record(
        self,
        call: CallChannel,
        started: float,
        decision: Decision,
        linkedid: str,
        caller: str,
        called: str,
        direction: Direction,
    ) -> None:
        elapsed = time.perf_counter() - started
        action = action_of(decision)
        self._metrics.decision_seconds.observe(elapsed)
        self._metrics.decisions.labels(action, decision.reason.code).inc()
        route = decision if isinstance(decision, Route) else None
        self._records.decided(
            DecisionRecord(
                linkedid,
                call.facts.uniqueid,
                decision.tenant_id,
                getattr(decision, "number_id", None),
                caller,
                called,
                action,
                decision.reason.code,
                route.destinations if route else (),
                self._clock.now(),
                int(elapsed * 1_000_000),
                why=decision.why if isinstance(decision, (Route, Reject)) else "",
                group_name=route.group if route else "",
                final_action=route.final_action if route else "",
                direction=direction.value,
                caller_id_shown=route.caller_id if route else "",
            )
        )
        log.info(
            "call %s %s -> %s: %s %s",
            linkedid,
            mask_number(caller),
            mask_number(called),
            action,
            decision.reason.code,
        )

    # ------------------------------------------------------------------ inbound
    async def route(self, session: CallChannel) -> None:
        started = time.perf_counter()
        linkedid, caller, called = session.facts.linkedid, session.facts.caller, session.facts.called
        if self.selfservice is not None and called in self.selfservice_numbers:
            await self.selfservice(session)
            return
        call = InboundCall(caller=caller, called=called, linkedid=linkedid)
        decision = decide_inbound(self._snapshots.current, call, self._clock.now(), self._memory, self._rng)
        if isinstance(decision, AskPin):
            if await self._pin_dialogue(session, called, decision):
                verified = dataclasses.replace(call, pin_verified=True)
                decision = decide_inbound(
                    self._snapshots.current, verified, self._clock.now(), self._memory, self._rng
                )
            else:
                decision = Reject(Reason.PIN_FAILED, decision.tenant_id, decision.number_id)
            started = time.perf_counter()  # the dialogue is the caller's time, not ours
        down = await unregistered_of(self.pbx_registered, pbx_endpoints(decision), session.facts.channel)
        if down:  # a PBX trunk that would ring holds no registration: decide without it
            verified = dataclasses.replace(call, pin_verified=not isinstance(decision, AskPin))
            decision = decide_inbound(
                self._snapshots.current, verified, self._clock.now(), self._memory, self._rng, down
            )
        await self.deliver(session, decision, started, linkedid, caller, called, Direction.INBOUND)

    async def deliver(
        self,
        session: CallChannel,
        decision: Decision,
        started: float,
        linkedid: str,
        caller: str,
        called: str,
        direction: str,
        endpoint: str = "",
    ) -> None:
        """Hand a decision of the inbound kind (`route`, an IVR's outcome) to Asterisk. One
        taken on an extension's own channel — an extension that called its tenant's number,
        then its menu — is that internal call's (dialplan.extension_calls.from_extension)."""
        snapshot = self._snapshots.current
        me = snapshot.endpoints.get(endpoint or session.facts.endpoint)
        if (
            Direction(direction) is Direction.INBOUND
            and me is not None
            and me.tenant_id == decision.tenant_id
        ):
            leg = from_extension(snapshot, me, decision, called)
            endpoint = me.endpoint_id
        else:
            leg = Leg(decision, Direction(direction))
        await self._carry(session, leg, started, linkedid, caller, called, endpoint)

    async def _carry(
        self,
        session: CallChannel,
        leg: Leg,
        started: float,
        linkedid: str,
        caller: str,
        called: str,
        endpoint: str = "",
    ) -> None:
        """Reserve the money a routed call needs, remember it for distribution, decide
        whether it is recorded, set the SS_* variables in one round trip, record and count."""
        leg = self._take_pbx_channels(leg, linkedid, endpoint)
        decision = await self._reserve(leg, linkedid, session.facts.channel, called)
        leg = dataclasses.replace(leg, decision=decision)
        self._remember(decision)
        recording = None
        if self._recorder is not None and isinstance(decision, Route):
            recording = self._recorder.plan(
                self._snapshots.current,
                decision.tenant_id,
                linkedid,
                caller,
                called,
                leg.direction.value,
                endpoint,
            )
        if self._voicemail is not None:
            self._voicemail.expect(decision, linkedid, caller, called)
        await session.deliver(leg, recording)
        self._record(session, started, decision, linkedid, caller, called, leg.direction)

    def _take_pbx_channels(self, leg: Leg, linkedid: str, endpoint: str) -> Leg:
        """A routed call holds a channel of each customer PBX trunk it rings or comes from
        (its own cap, from the trunk modules); one over a PBX's cap is busy."""
        decision = leg.decision
        if not isinstance(decision, Route):
            return leg
        full = self.pbx_channels.take(
            self._snapshots.current, linkedid, (*pbx_endpoints(decision), *((endpoint,) if endpoint else ()))
        )
        if full is None:
            return leg
        reject = Reject(
            Reason.CHANNEL_LIMIT, decision.tenant_id, decision.number_id, why=f"pbx_channels:{full.extension}"
        )
        return Leg(reject, leg.direction, billable=False)

    async def _reserve(
        self, leg: Leg, call_id: str, channel: str, called: str, linkedid: str = ""
    ) -> Decision:
        """A routed call the enterprise pays for rings only with a reservation in hand; one
        that stays inside the platform (extensions only) takes no channel and costs nothing.
        An enterprise's outbound call first passes the compliance gates: its calling hours
        here (no counters needed), the rest with the reservation (outbound_gate)."""
        decision = leg.decision
        if self._money is None or not isinstance(decision, Route) or decision.tenant_id is None:
            return decision
        if not leg.billable:
            return decision
        attempt = None
        if leg.direction is Direction.OUTBOUND:
            snapshot = self._snapshots.current
            rules = outbound_rules(snapshot.compliance.for_tenant(decision.tenant_id))
            tenant = snapshot.tenants.get(decision.tenant_id)
            timezone = tenant.timezone if tenant is not None else DEFAULT_TIMEZONE
            early = check_before_counting(rules, timezone, self._clock.now())
            if early is not None:
                return Reject(early.reason, decision.tenant_id, decision.number_id, why=early.why)
            attempt = OutboundAttempt(called, decision.caller_id, rules)
        grant = await self._money.authorize(decision.tenant_id, call_id, channel, attempt, linkedid)
        if isinstance(grant, Grant):
            return dataclasses.replace(decision, limit_s=grant.seconds)
        if isinstance(grant, Refused):
            return Reject(grant.reason, decision.tenant_id, decision.number_id, why=grant.why)
        return Reject(_REFUSALS[grant], decision.tenant_id, decision.number_id)

    async def _pin_dialogue(self, session: CallChannel, called: str, ask: AskPin) -> bool:
        """Whether the caller keys the PIN of unified number `called` within its attempts."""
        number = self._snapshots.current.numbers.get(called)
        assert number is not None and number.pin is not None
        await session.answer()
        prompt = PIN_PROMPT
        for _attempt in range(ask.max_attempts):
            digits, _timed_out = await session.collect(prompt, PIN_TIMEOUT_MS, 8)
            if digits and pin_matches(digits, number.pin.pin_hash):
                return True
            prompt = PIN_RETRY_PROMPT
        return False

    # ------------------------------------------------------------------ transfers
    async def transfer(self, session: CallChannel) -> None:
        """A party transferred the call (DTMF #1 / *2, SIP REFER): the transferred party's
        new leg is decided like a call (dialplan.transfers), reserved and billed as a leg of
        its own (<linkedid>~x<n>); a blind transfer first settles the leg the transferor
        leaves, so the package's channel count never holds both."""
        started = time.perf_counter()
        facts = session.facts
        tenant_arg, number, kind_arg, transferor_channel = (*facts.args, "", "", "", "")[:4]
        kinds = {k.value: k for k in TransferKind}
        kind = kinds.get(kind_arg, TransferKind.BLIND)
        req = TransferRequest(
            facts.linkedid,
            facts.called,
            facts.endpoint,
            int(tenant_arg) if tenant_arg.isdigit() else None,
            number,
            kind,
        )
        leg = decide_transfer(self._snapshots.current, req, self._clock.now(), self._rng, self._memory)
        if not transferor_channel and self._registry is not None:
            # The engine does not name the transferor's channel (FreeSWITCH's REFER): the
            # party that answered the call's latest leg is the one transferring it.
            call = self._registry.get(facts.linkedid)
            if call is not None:
                transferor_channel = call.legs[-1].channel if call.legs else call.callee_channel
        if kind is not TransferKind.ATTENDED and self._money is not None:
            await self._money.transferor_leaves(facts.linkedid, transferor_channel)
        live = self._registry.transfer_started(facts.linkedid, kind) if self._registry is not None else None
        call_id = live.call_id if live is not None else f"{facts.linkedid}~x{facts.uniqueid}"
        decision = await self._reserve(leg, call_id, facts.channel, facts.called, facts.linkedid)
        leg = dataclasses.replace(leg, decision=decision)
        recording = None
        if self._recorder is not None and isinstance(decision, Route):
            recording = self._recorder.plan(
                self._snapshots.current,
                decision.tenant_id,
                facts.linkedid,
                facts.caller,
                facts.called,
                leg.direction.value,
                facts.endpoint,
            )
        await session.deliver(leg, recording)
        self._metrics.decision_seconds.observe(time.perf_counter() - started)
        self._metrics.transfers.labels(kind.value, decision.reason.code).inc()
        route = decision if isinstance(decision, Route) else None
        action = action_of(decision)
        self._records.transferred(
            TransferRecord(
                facts.linkedid,
                call_id,
                decision.tenant_id,
                kind.value,
                facts.endpoint,
                facts.called,
                action,
                decision.reason.code,
                leg.direction.value,
                leg.billable and route is not None,
                route.destinations if route else (),
                self._clock.now(),
            )
        )
        log.info(
            "call %s transferred (%s) by %s to %s: %s %s",
            facts.linkedid,
            kind.value,
            facts.endpoint or "?",
            mask_number(facts.called),
            action,
            decision.reason.code,
        )

    # ------------------------------------------------------------------ extensions
    async def extension(self, session: CallChannel) -> None:
        started = time.perf_counter()
        facts = session.facts
        linkedid, dialled, endpoint, presented = facts.linkedid, facts.called, facts.endpoint, facts.caller
        call = ExtensionCall(endpoint, dialled, linkedid, presented)
        leg = self._decide_extension(call)
        if isinstance(leg.decision, AskPin):  # the tenant's own number, with a PIN
            ask = leg.decision
            if await self._pin_dialogue(session, dialled, ask):
                call = dataclasses.replace(call, pin_verified=True)
                leg = self._decide_extension(call)
            else:
                reject = Reject(Reason.PIN_FAILED, ask.tenant_id, ask.number_id)
                leg = Leg(reject, leg.direction, billable=False)
            started = time.perf_counter()
        down = await unregistered_of(self.pbx_registered, pbx_endpoints(leg.decision), facts.channel)
        if down:
            leg = self._decide_extension(call, down)
        await self._carry(session, leg, started, linkedid, presented or endpoint, dialled, endpoint)

    def _decide_extension(self, call: ExtensionCall, unregistered: frozenset[str] = frozenset()) -> Leg:
        return decide_extension_call(
            self._snapshots.current, call, self._clock.now(), self._rng, self._memory, unregistered
        )


_REFUSALS: dict[Refusal, Reason] = {
    Refusal.NO_BALANCE: Reason.NO_BALANCE,
    Refusal.NO_ACCOUNT: Reason.NO_BALANCE,
    Refusal.CHANNEL_LIMIT: Reason.CHANNEL_LIMIT,
    Refusal.UNAVAILABLE: Reason.BILLING_UNAVAILABLE,
    Refusal.ALREADY_OPEN: Reason.BILLING_UNAVAILABLE,
    Refusal.SPEND_CAP: Reason.SPEND_CAP,
}
