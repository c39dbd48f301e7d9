"""The FastAGI scripts that route calls: `route` (inbound to unified numbers) and
`extension` (calls from SIP extensions). Call facts come from the AGI environment, the
decision from dialplan/ (pure), and the decision goes back to Asterisk as SS_* channel
variables — the contract documented at the top of docker/asterisk/extensions.conf."""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from dialplan.distribution import DialStep, Memory
from dialplan.extension_calls import ExtensionCall, decide_extension_call, from_extension
from dialplan.inbound import AskPin, Decision, InboundCall, Reject, Route, RunIvr, Voicemail, decide_inbound
from dialplan.legs import CallerName, Direction, Leg
from dialplan.reasons import Reason
from provisioning.ledger import Grant, Refusal
from provisioning.rules import pin_matches
from softswitch.callpath.prepaid import UNAVAILABLE, CallMoney
from softswitch.callpath.recorder import Recorder, RecordingVars
from softswitch.callpath.records import CallRecordWriter, DecisionRecord
from softswitch.callpath.snapshots import SnapshotStore
from softswitch.core.clock import Clock
from softswitch.core.masking import mask_number
from softswitch.core.metrics import Metrics
from softswitch.engines.asterisk.agi.server import AgiSession

log = logging.getLogger(__name__)

PIN_PROMPT = "agent-pass"  # "please enter your password followed by the pound key"
PIN_RETRY_PROMPT = "auth-incorrect"
PIN_TIMEOUT_MS = 6000


def dial_string(step: DialStep, default_trunk: str) -> str:
    parts = []
    for m in step.members:
        if m.kind == "extension":
            parts.append(f"PJSIP/{m.destination}")
        else:
            parts.append(f"PJSIP/{m.destination}@{m.via or default_trunk}")
    return "&".join(parts)


def action_of(decision: Decision) -> str:
    return {Route: "dial", Reject: "reject", Voicemail: "voicemail", RunIvr: "ivr"}[type(decision)]


def asterisk_variables(
    decision: Decision,
    trunk: str,
    recording: RecordingVars | None = None,
    caller_name: CallerName = CallerName.KEEP,
) -> list[tuple[str, str]]:
    """The SS_* variables for a decision, SS_ACTION last, so that if they are ever set one by
    one, a session cut short leaves no SS_ACTION and the dialplan falls back instead of
    acting on half a decision. `recording` is how a routed call is recorded (None: not);
    `caller_name` whether the destinations see the caller's display name."""
    assert not isinstance(decision, AskPin), "a PIN step is a dialogue, not a decision"
    out = [("SS_REASON", decision.reason.code), ("SS_TENANT_ID", str(decision.tenant_id or ""))]
    if isinstance(decision, Route):
        out.append(("SS_TARGETS", str(len(decision.steps))))
        for i, step in enumerate(decision.steps, start=1):
            out.append((f"SS_DIAL_{i}", dial_string(step, trunk)))
            out.append((f"SS_TIMEOUT_{i}", str(step.timeout_s)))
        out += [
            ("SS_NEXT_ON", decision.next_on),
            ("SS_CALLERID", decision.caller_id),
            ("SS_CALLERID_NAME", caller_name.value),
            ("SS_GREETING", decision.greeting),
            ("SS_WHISPER", decision.whisper),
            ("SS_LIMIT", str(decision.limit_s)),
            ("SS_FINAL", decision.final_action),
            ("SS_FAIL_REASON", Reason.ALL_DESTINATIONS_FAILED.code),
            ("SS_FAIL_CAUSE", str(Reason.ALL_DESTINATIONS_FAILED.cause)),
        ]
        rec = recording or RecordingVars()
        out += [
            ("SS_RECORD", rec.file),
            ("SS_RECORD_ANNOUNCE", rec.announce),
            ("SS_RECORD_ON_DEMAND", "1" if rec.on_demand else ""),
        ]
    elif isinstance(decision, Reject):
        out.append(("SS_CAUSE", str(decision.reason.cause)))
        out.append(("SS_ANNOUNCEMENT", decision.announcement))
    elif isinstance(decision, RunIvr):
        out.append(("SS_IVR_MENU", decision.menu))
    out.append(("SS_ACTION", action_of(decision)))
    return out


class CallRouting:
    """Both routing scripts, sharing the snapshot, clock, memory and records."""

    def __init__(
        self,
        snapshots: SnapshotStore,
        clock: Clock,
        metrics: Metrics,
        records: CallRecordWriter,
        money: CallMoney | None = None,
        trunk: str = "carrier-out",
        rng: random.Random | None = None,
        recorder: Recorder | None = None,
    ) -> None:
        self._money = money
        self._recorder = recorder
        self._snapshots = snapshots
        # The platform's phone self-service line (softswitch.callpath.ivr_line), set by the service.
        self.selfservice: Callable[[AgiSession, str, str, str], Awaitable[None]] | None = None
        self.selfservice_numbers: frozenset[str] = frozenset()
        self._clock = clock
        self._metrics = metrics
        self._records = records
        self._trunk = trunk
        self._rng = rng or random.Random()
        # Distribution memory (round-robin position, last call per destination): process
        # state at the edge, read by the pure planner. Lost on restart, which only resets
        # round-robin's starting point.
        self._rr: dict[tuple[int, str], int] = {}
        self._last_call: dict[str, datetime] = {}

    def _memory(self, key: tuple[int, str]) -> Memory:
        return Memory(self._rr.get(key, 0), self._last_call)

    def _remember(self, decision: Decision) -> None:
        if isinstance(decision, Route) and decision.number_id is not None:
            key = (decision.number_id, decision.group)
            self._rr[key] = self._rr.get(key, 0) + 1
            now = self._clock.now()
            for m in decision.steps[0].members if decision.steps else ():
                self._last_call[m.destination] = now

    async def _send(self, session: AgiSession, leg: Leg, recording: RecordingVars | None = None) -> None:
        # One round trip for the whole decision. MSet expands ${...} in what it is given,
        # so only values the control plane owns go here (reason codes, digits checked by
        # the schema, dial strings built from them, recording paths from the tenant id and
        # Asterisk's own linkedid), never caller-supplied text.
        variables = asterisk_variables(leg.decision, self._trunk, recording, leg.caller_name)
        await session.exec("MSet", *(f"{k}={v}" for k, v in variables))

    def _record(
        self,
        session: AgiSession,
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
                session.env.uniqueid,
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
    async def route(self, session: AgiSession) -> None:
        started = time.perf_counter()
        env = session.env
        # AGI(agi://…/route,${CHANNEL(linkedid)},${SS_CALLED})
        linkedid = _arg(env.args, 0) or env.uniqueid
        called = _arg(env.args, 1) or env.extension
        caller = env.callerid if env.callerid not in ("", "unknown") else ""
        if self.selfservice is not None and called in self.selfservice_numbers:
            await self.selfservice(session, linkedid, caller, called)
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
        await self.deliver(session, decision, started, linkedid, caller, called, Direction.INBOUND)

    async def deliver(
        self,
        session: AgiSession,
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
        me = snapshot.endpoints.get(endpoint or _endpoint_of(session.env.channel))
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
        session: AgiSession,
        leg: Leg,
        started: float,
        linkedid: str,
        caller: str,
        called: str,
        endpoint: str = "",
    ) -> None:
        """Reserve the money a routed call needs, remember it for distribution, decide
        whether it is recorded, set the SS_* variables in one round trip, record and count."""
        decision = await self._reserve(leg, linkedid, session.env.channel)
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
        await self._send(session, leg, recording)
        self._record(session, started, decision, linkedid, caller, called, leg.direction)

    async def _reserve(self, leg: Leg, call_id: str, channel: str) -> Decision:
        """A routed call the enterprise pays for rings only with a reservation in hand; one
        that stays inside the platform (extensions only) takes no channel and costs nothing."""
        decision = leg.decision
        if self._money is None or not isinstance(decision, Route) or decision.tenant_id is None:
            return decision
        if not leg.billable:
            return decision
        grant = await self._money.authorize(decision.tenant_id, call_id, channel)
        if isinstance(grant, Grant):
            return dataclasses.replace(decision, limit_s=grant.seconds)
        reason = _REFUSALS.get(grant, Reason.BILLING_UNAVAILABLE)
        return Reject(reason, decision.tenant_id, decision.number_id)

    async def _pin_dialogue(self, session: AgiSession, called: str, ask: AskPin) -> bool:
        """Whether the caller keys the PIN of unified number `called` within its attempts."""
        number = self._snapshots.current.numbers.get(called)
        assert number is not None and number.pin is not None
        await session.answer()
        prompt = PIN_PROMPT
        for _attempt in range(ask.max_attempts):
            digits, _timed_out = await session.get_data(prompt, PIN_TIMEOUT_MS, 8)
            if digits and pin_matches(digits, number.pin.pin_hash):
                return True
            prompt = PIN_RETRY_PROMPT
        return False

    # ------------------------------------------------------------------ extensions
    async def extension(self, session: AgiSession) -> None:
        started = time.perf_counter()
        env = session.env
        # AGI(agi://…/extension,${CHANNEL(linkedid)},${SS_CALLED},${CHANNEL(endpoint)})
        linkedid = _arg(env.args, 0) or env.uniqueid
        dialled = _arg(env.args, 1) or env.extension
        endpoint = _arg(env.args, 2)
        presented = env.callerid if env.callerid not in ("", "unknown") else ""
        call = ExtensionCall(endpoint, dialled, linkedid, presented)
        leg = self._decide_extension(call)
        if isinstance(leg.decision, AskPin):  # the tenant's own number, with a PIN
            ask = leg.decision
            if await self._pin_dialogue(session, dialled, ask):
                leg = self._decide_extension(dataclasses.replace(call, pin_verified=True))
            else:
                reject = Reject(Reason.PIN_FAILED, ask.tenant_id, ask.number_id)
                leg = Leg(reject, leg.direction, billable=False)
            started = time.perf_counter()
        await self._carry(session, leg, started, linkedid, presented or endpoint, dialled, endpoint)

    def _decide_extension(self, call: ExtensionCall) -> Leg:
        return decide_extension_call(
            self._snapshots.current, call, self._clock.now(), self._rng, self._memory
        )


_REFUSALS = {
    Refusal.NO_BALANCE: Reason.NO_BALANCE,
    Refusal.NO_ACCOUNT: Reason.NO_BALANCE,
    Refusal.CHANNEL_LIMIT: Reason.CHANNEL_LIMIT,
    UNAVAILABLE: Reason.BILLING_UNAVAILABLE,
}


def _arg(args: Sequence[str], i: int) -> str:
    return args[i] if len(args) > i else ""


def _endpoint_of(channel: str) -> str:
    """The PJSIP endpoint of a channel name (PJSIP/<endpoint>-<sequence>), '' if none."""
    tech, _, rest = channel.partition("/")
    if tech != "PJSIP" or "-" not in rest:
        return ""
    return rest.rsplit("-", 1)[0]
