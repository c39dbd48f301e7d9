"""A call FreeSWITCH handed over on an outbound Event Socket, as the call path's
``CallChannel``; and what FreeSWITCH does with the decision.

Asterisk acts on a decision in its own dialplan (the SS_* variables and [ss-act] of
docker/asterisk/extensions.conf). FreeSWITCH's dialplan only hands the call over, so the
same steps are driven from here over the call's socket, one application at a time:
``act`` is [ss-act] in Python — reject with the reason's announcement and SIP status,
dial the steps in order with failover (ring-all within a step), the greeting, the
recording notice and recording of the bridged part, the whisper to the answering party,
the prepaid hard stop on the answering leg (``sched_hangup``, extended over the inbound
socket by softswitch.engines.freeswitch.control), voicemail, and an IVR that ends in a
new decision acted on from the top.

The call's id across its legs (the registry's linkedid) is the caller's channel UUID: it
is set as ``call_uuid`` on that channel and on every leg it dials, so FreeSWITCH's
``Channel-Call-UUID`` names it on every event (softswitch.engines.freeswitch.events).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from dialplan.distribution import DialStep
from dialplan.inbound import AskPin, Reject, Route, RunIvr, Voicemail
from dialplan.legs import CallerName, Leg
from dialplan.reasons import Reason
from dialplan.transfers import CALLEE_TRANSFERS, transfer_options
from provisioning.voicemail import voicemail_file
from softswitch.callpath.control import CallChannel, CallFacts
from softswitch.callpath.recorder import MONITOR_DIR, RecordingVars
from softswitch.engines.freeswitch.outbound import ChannelGone, OutboundSession

log = logging.getLogger(__name__)

CHANNEL_PREFIX = "freeswitch/"  # the registry's channel names: freeswitch/<uuid>
WITHHELD = frozenset({"", "0000000000", "anonymous", "unknown"})
# What the SIP caller gets for a Q.850 cause: the status Asterisk's chan_pjsip sends for
# it (RFC 3398), so a refusal sounds the same on both engines. FreeSWITCH's own mapping
# differs for 21 (603 there, 403 here).
SIP_STATUS = {1: 404, 2: 404, 3: 404, 17: 486, 18: 408, 19: 480, 21: 403, 22: 410, 27: 502, 28: 484, 34: 503}
# DIALSTATUS values (switch_ivr_originate.c) after which "next_on: congestion" stops:
# the destination was reached and said no, or nobody answered.
_REACHED = frozenset({"ANSWER", "BUSY", "NOANSWER", "CANCEL", "NO_USER_RESPONSE", "DONTCALL"})


def channel_name(uuid: str) -> str:
    return CHANNEL_PREFIX + uuid


@dataclass(frozen=True, slots=True)
class FsPlan:
    """Where FreeSWITCH sends what the decisions name (from the settings)."""

    carrier_out: str  # host:port the bound destinations leave towards
    phones_profile: str  # the SIP profile the extensions register on
    realm: str  # the extensions' registration domain
    sounds: Path  # the platform's sounds, as FreeSWITCH plays them (WAV)
    custom_sounds: Path  # prompts of the platform and the tenants (PromptStore's root's parent)
    files_root: Path  # recordings and voicemail: the paths the recorder names live below this
    voicemail_spool: str = "/var/spool/asterisk/softswitch-vm"  # inside files_root (settings voicemail.spool)


TRANSFER_CONTEXT = "ss-transfer"  # docker/freeswitch/dialplan.xml: a REFER's transferred party
FEATURES_CONTEXT = "ss-features"  # docker/freeswitch/dialplan.xml: what a feature code runs
DIGIT_REALM = "ss"
# *3 keyed by either party (the caller's own DTMF, and the answering party's as it reaches
# the caller: the "peer" digit machine) runs ss_record on the caller's channel, which
# starts or stops record_session there (both directions). [H]: the other party is not held.
ON_DEMAND_CODE = "*3"
# #1 keyed by the answering party (dialplan.transfers: the tenant's party; the carrier's
# caller never) runs ss_blind on that party's channel, the caller on hold: the target's
# digits are read and the caller is transferred into [ss-transfer], the same decision as a
# REFER (kind blind, written on the caller as ss_xfer_kind).
BLIND_CODE = "#1"
# *2, keyed by the same party, runs ss_attended on that party's channel, the caller on
# hold: the target's digits are read and that channel itself comes to the control plane
# (ss_consult): the transfer decision (kind attended) runs att_xfer there.
ATTENDED_CODE = "*2"
CONSULT_VAR = "ss_consult"


def feature_bindings(on_demand: bool, callee_transfers: bool) -> list[str]:
    """The bind_digit_action data for a bridged caller's feature codes."""
    out = []
    if on_demand:
        action = f"exec[H]:execute_extension,ss_record XML {FEATURES_CONTEXT}"
        out += [f"{DIGIT_REALM},{ON_DEMAND_CODE},{action},{source},self" for source in ("self", "peer")]
    if callee_transfers:
        for code, name in ((BLIND_CODE, "ss_blind"), (ATTENDED_CODE, "ss_attended")):
            out.append(f"{DIGIT_REALM},{code},exec:execute_extension,{name} XML {FEATURES_CONTEXT},peer,peer")
    return out


def consults(session: OutboundSession) -> bool:
    """The socket is the answering party's own channel, come to consult a target (*2)."""
    return bool(session.var(CONSULT_VAR))


def facts_of(session: OutboundSession, args: tuple[str, ...] = ()) -> CallFacts:
    d = session.data
    caller = d.get("Caller-Caller-ID-Number", "")
    endpoint = ""
    called = d.get("Caller-Destination-Number", "")
    linkedid = session.var("call_uuid") or session.uuid
    if consults(session):
        # ss_attended copied the call's tenant, number and this party's destination from
        # the caller's channel; the party transferring is this channel itself.
        endpoint = session.var("ss_answered_by")
        called = session.var("ss_xfer_digits")
        linkedid = session.var("ss_call_id") or linkedid
        kind = session.var(CONSULT_VAR)
        args = (session.var("ss_tenant_id"), session.var("ss_xfer_number"), kind, channel_name(session.uuid))
    elif d.get("Caller-Context") == "default":  # the phones profile: an authenticated account
        endpoint = session.var("sip_auth_username") or session.var("user_name")
    elif d.get("Caller-Context") == TRANSFER_CONTEXT:
        # Sofia transferred the caller on a REFER from the leg that answered: that leg's
        # destination as the control plane dialled it (set when it answered, never taken
        # from the REFER), the call's tenant and number; the transferor's channel is the
        # registry's (its latest answering party).
        endpoint = session.var("ss_answered_by")
        kind = session.var("ss_xfer_kind") or "refer"  # #1 writes blind (ss-features)
        args = (session.var("ss_tenant_id"), session.var("ss_xfer_number"), kind, "")
    return CallFacts(
        linkedid=linkedid,
        uniqueid=session.uuid,
        channel=channel_name(session.uuid),
        caller="" if caller in WITHHELD else caller,
        called=called,
        endpoint=endpoint,
        args=args,
    )


class EslCallChannel:
    """The CallChannel of one call on its socket. ``deliver`` keeps the decision; the
    handler acts on it once the call path has returned (``act``), as Asterisk's dialplan
    acts after the AGI script."""

    def __init__(self, session: OutboundSession, facts: CallFacts, plan: FsPlan) -> None:
        self._s = session
        self._facts = facts
        self._plan = plan
        self.leg: Leg | None = None
        self.recording: RecordingVars | None = None

    @property
    def facts(self) -> CallFacts:
        return self._facts

    def sound(self, prompt: str) -> str:
        """A prompt name (as Asterisk plays it, no extension) as a file FreeSWITCH plays."""
        custom = self._plan.custom_sounds / f"{prompt}.wav"
        if custom.is_file():
            return str(custom)
        return str(self._plan.sounds / f"{prompt}.wav")

    async def answer(self) -> None:
        await self._s.execute("answer")

    async def play(self, prompt: str) -> None:
        await self._s.execute("playback", self.sound(prompt))

    async def collect(self, prompt: str, timeout_ms: int, max_digits: int) -> tuple[str, bool]:
        # min max tries timeout terminators file invalid_file var regexp digit_timeout
        sound = self.sound(prompt)
        args = f"1 {max_digits} 1 {timeout_ms} # {sound} silence_stream://1 ss_digits \\d+ {timeout_ms}"
        done = await self._s.execute("play_and_get_digits", args)
        digits = done.get("variable_ss_digits") or ""
        return digits, not digits

    async def say_digits(self, digits: str) -> None:
        if digits:
            await self._s.execute("say", f"en number iterated {digits}")

    async def say_number(self, number: int) -> None:
        await self._s.execute("say", f"en number pronounced {number}")

    async def deliver(self, leg: Leg, recording: RecordingVars | None) -> None:
        self.leg, self.recording = leg, recording


IvrHandler = Callable[[CallChannel], Awaitable[None]]


class FsActions:
    """[ss-act] for FreeSWITCH: carries out a delivered decision on the call's socket."""

    def __init__(self, plan: FsPlan, ivr: IvrHandler, trunks: Callable[[], Mapping[str, str]] = dict) -> None:
        self._plan = plan
        self._ivr = ivr
        self._trunks = trunks  # a decision's `via` (trunk-<name>) -> host:port, now

    async def act(self, channel: EslCallChannel, session: OutboundSession) -> bool:
        """Carry out the channel's decision; False when there is none (the socket is then
        closed with the call still up, and the dialplan's fallback answers 503)."""
        while True:
            leg = channel.leg
            if leg is None:
                return False
            decision = leg.decision
            assert not isinstance(decision, AskPin), "a PIN step is a dialogue, not a decision"
            tenant = str(decision.tenant_id or "")
            if not isinstance(decision, Route):  # a routed call's go with its dial variables
                await self._set(session, ss_reason=decision.reason.code, ss_tenant_id=tenant)
            if isinstance(decision, RunIvr):
                facts = dataclasses.replace(channel.facts, args=(decision.menu, tenant))
                channel = EslCallChannel(session, facts, self._plan)
                await self._ivr(channel)  # ends in a new decision, acted on from the top
                continue
            if consults(session):
                await self._consult(channel, session, decision)
            elif isinstance(decision, Reject):
                await self._reject(channel, session, decision)
            elif isinstance(decision, Voicemail):
                await self._voicemail(channel, session, decision.tenant_id)
            elif isinstance(decision, Route):
                await self._dial(channel, session, decision, leg.caller_name)
            return True

    async def _set(self, session: OutboundSession, **variables: str) -> None:
        # multiset with "|" between the pairs: values may hold spaces; they never hold "|"
        # (reason codes, digits, the control plane's own file names). Queued, not awaited:
        # what follows runs after it, in the same tick (OutboundSession.queue).
        await session.queue("multiset", "^^|" + "|".join(f"{k}={v}" for k, v in variables.items()))

    async def _refuse(self, session: OutboundSession, cause: int) -> None:
        status = SIP_STATUS.get(cause)
        if status is not None:
            try:
                await session.execute("respond", str(status))
            except ChannelGone:
                return
        await session.hangup(str(cause))

    async def _reject(self, channel: EslCallChannel, session: OutboundSession, decision: Reject) -> None:
        if decision.announcement:
            await session.queue("pre_answer")
            await session.queue("playback", channel.sound(decision.announcement))
        await self._refuse(session, decision.reason.cause)

    async def _consult(self, channel: EslCallChannel, session: OutboundSession, decision: object) -> None:
        """*2: the answering party (this channel) is to talk to the target while the
        caller waits on hold (att_xfer: its hang-up puts the caller through to the target;
        a target that hangs up first gives the caller back), or, refused, to hear why. The
        channel runs ss_attended inside a feature code, which holds its event lock: no
        application sent now would run before the socket closes. So the decision is
        written on it (API commands run at once) and ss_consult_go runs it after."""
        if isinstance(decision, Route):
            dial = quote(self.consult_string(decision, channel.facts.linkedid), safe="")
            await session.api(f"uuid_setvar {session.uuid} ss_consult_dial {dial}")
        elif isinstance(decision, Reject) and decision.announcement:
            prompt = quote(channel.sound(decision.announcement), safe="/")
            await session.api(f"uuid_setvar {session.uuid} ss_consult_prompt {prompt}")

    def consult_string(self, route: Route, call_uuid: str) -> str:
        """The route's steps for att_xfer, which dials one string: the steps in turn
        ('|', FreeSWITCH's failover), each with its own ring timeout."""
        return "|".join(
            self.dial_string(step, call_uuid, route.limit_s)
            if n == 0
            else self._legs(step, route.limit_s, "", own_timeout=True)
            for n, step in enumerate(route.steps)
        )

    async def _voicemail(
        self, channel: EslCallChannel, session: OutboundSession, tenant_id: int | None
    ) -> None:
        await session.queue("answer")
        await session.queue("playback", channel.sound("vm-intro"))
        # the file Asterisk's [ss-act] names too, where the voicemail pick-up looks
        inside = voicemail_file(self._plan.voicemail_spool, tenant_id or 0, channel.facts.linkedid)
        path = self._plan.files_root / inside.lstrip("/")
        # record <path> <max seconds> <silence threshold> <silence seconds>
        await session.execute("record", f"{path} 120 200 3")
        await session.hangup()

    async def _dial(
        self, channel: EslCallChannel, session: OutboundSession, route: Route, caller_name: CallerName
    ) -> None:
        rec = channel.recording or RecordingVars()
        variables = {
            "ss_reason": route.reason.code,
            "ss_tenant_id": str(route.tenant_id or ""),
            "call_uuid": channel.facts.linkedid,
            "ss_call_id": channel.facts.linkedid,  # for the records: FreeSWITCH keeps it as set
            "hangup_after_bridge": "false",
            "continue_on_fail": "true",
            # a REFER from the answering leg sends this caller to [ss-transfer] (sofia's
            # blind transfer honours the transferred channel's force_transfer_context)
            "force_transfer_context": TRANSFER_CONTEXT,
            "ss_xfer_number": session.var("ss_xfer_number") or channel.facts.called,
        }
        name = session.data.get("Caller-Caller-ID-Name", "")
        if route.caller_id:
            variables["effective_caller_id_number"] = route.caller_id
            # FreeSWITCH fills a caller's missing display name with the number: shown
            # beside another number it would give away the one just replaced.
            if name in ("", channel.facts.caller, session.data.get("Caller-Caller-ID-Number", "")):
                caller_name = CallerName.NONE
        if caller_name is CallerName.NONE:
            variables["effective_caller_id_name"] = "_undef_"  # sofia sends no display name
        if route.whisper:
            # run on the answering leg before the two are connected, as Asterisk's U()
            variables["bridge_pre_execute_bleg_app"] = "say"
            variables["bridge_pre_execute_bleg_data"] = f"en number iterated {route.whisper}"
        if rec.file:
            variables["RECORD_BRIDGE_REQ"] = "true"  # only the bridged part, as MixMonitor's b
        if rec.on_demand:
            # ss_record names each segment as Asterisk's automixmon does,
            # ss<tenant>-<epoch>-<linkedid>.wav in the monitor directory, where the
            # recorder's pick-up finds them at hang-up (one row per segment)
            monitor = self._plan.files_root / MONITOR_DIR.lstrip("/")
            monitor.mkdir(parents=True, exist_ok=True)
            variables["ss_rec_dir"] = str(monitor)
        if route.ringback is not None:
            # the number's tone, played to the caller (pre-answered) while a leg rings
            variables["ringback"] = channel.sound(route.ringback.prompt)
        # Everything before the first bridge is queued at once and runs in one tick.
        await self._set(session, **variables)
        if route.greeting:
            await session.queue("answer")
            await session.queue("playback", channel.sound(route.greeting))
        if rec.announce:
            await session.queue("pre_answer")
            await session.queue("playback", channel.sound(rec.announce))
        if rec.file:
            path = self._plan.files_root / rec.file.lstrip("/")
            path.parent.mkdir(parents=True, exist_ok=True)
            await session.queue("record_session", f"{path}.wav")
        leg = channel.leg
        callee_transfers = leg is not None and CALLEE_TRANSFERS in transfer_options(leg)
        bindings = feature_bindings(rec.on_demand, callee_transfers)
        for binding in bindings:
            await session.queue("bind_digit_action", binding)
        if bindings:
            await session.queue("digit_action_set_realm", DIGIT_REALM)
            await session.queue("digit_action_set_realm", f"{DIGIT_REALM},peer")
        status = ""
        for step in route.steps:
            # not event-locked: the caller's own feature codes (*3) run on it mid-bridge
            done = await session.execute(
                "bridge",
                self.dial_string(
                    step,
                    channel.facts.linkedid,
                    route.limit_s,
                    session.uuid,
                    # the directory's user variable of a fax-capable caller (T.38)
                    caller_fax=session.data.get("variable_t38_passthru") == "true",
                ),
                lock=False,
            )
            status = done.get("variable_DIALSTATUS") or ""
            if done.get("variable_sip_refer_to") or done.get("variable_ss_xfer_kind"):
                return  # transferred (REFER, #1): the call goes on in its [ss-transfer] session
            if done.get("variable_ss_consulting") and await self._bridged_anew(session):
                return  # *2 (att_xfer) put the caller through to the target, or back
            if status == "ANSWER":
                await session.hangup()
                return
            if session.hung_up.is_set():
                return
            if route.next_on == "congestion" and status in _REACHED:
                break
        await self._set(session, ss_reason=Reason.ALL_DESTINATIONS_FAILED.code)
        if route.final_action == "voicemail":
            await self._voicemail(channel, session, route.tenant_id)
            return
        await self._refuse(session, 17 if status == "BUSY" else Reason.ALL_DESTINATIONS_FAILED.cause)

    async def _bridged_anew(self, session: OutboundSession, budget_s: float = 2.0) -> bool:
        """After a consultation (*2) the caller's bridge ends with the party's hang-up (or
        the target's), a moment before att_xfer bridges the caller anew: True once it has
        (the call goes on without this socket), False if it stays unbridged."""
        deadline = asyncio.get_running_loop().time() + budget_s
        while not session.hung_up.is_set():
            try:
                dump = await session.api(f"uuid_dump {session.uuid}")
            except ChannelGone:
                return False
            state = next(
                (ln.split(":", 1)[1].strip() for ln in dump.splitlines() if ln.startswith("Channel-State:")),
                "",
            )
            if state and state != "CS_EXECUTE":
                return True
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.05)
        return False

    def dial_string(
        self, step: DialStep, call_uuid: str, limit_s: int, a_leg: str = "", caller_fax: bool = False
    ) -> str:
        """One step's members rung at once (','), each leg with the hard stop it gets when
        it answers; with ``a_leg`` (the caller's UUID), the leg that answers writes on the
        caller's channel which destination it is (ss_answered_by: who may transfer it).

        Fax (T.38, issue 20 item 5): sofia takes a T.38 offer on a channel only with
        fax_enable_t38, and passes it to the bridged party with t38_passthru. The caller's
        come from the directory (a fax-capable extension: both true). A fax-capable
        extension's leg gets fax_enable_t38 (it may accept the caller's offer) and, when the
        caller may fax too, t38_passthru (its own offer reaches the caller). Any other leg
        answering a fax-capable caller sets refuse_t38 on the caller: the engine refuses the
        caller's offer (488) and never passes it to a gateway, a PBX or the carrier —
        Asterisk's endpoints do the same with t38_udptl."""
        common = (
            f"{{call_uuid={call_uuid},ss_call_id={call_uuid},"
            f"call_timeout={step.timeout_s},leg_timeout={step.timeout_s}}}"
        )
        return common + self._legs(step, limit_s, a_leg, caller_fax=caller_fax)

    def _legs(
        self, step: DialStep, limit_s: int, a_leg: str, own_timeout: bool = False, caller_fax: bool = False
    ) -> str:
        on_answer = [f"execute_on_answer='sched_hangup +{limit_s} ALLOTTED_TIMEOUT'"] if limit_s > 0 else []
        if own_timeout:  # a later step of a failover string: the {} of the first is global
            on_answer.append(f"leg_timeout={step.timeout_s}")
        legs = []
        trunks = self._trunks()
        for m in step.members:
            own = [*on_answer]
            if a_leg:
                own.append(f"api_on_answer='uuid_setvar {a_leg} ss_answered_by {m.destination}'")
            if m.kind == "extension" and m.fax:
                own.append("fax_enable_t38=true")
                if caller_fax:
                    own.append("t38_passthru=true")
            elif caller_fax and a_leg:
                own.append(f"api_on_answer_t38='uuid_setvar {a_leg} refuse_t38 true'")
            if m.kind == "extension":
                target = f"sofia/{self._plan.phones_profile}/{m.destination}%{self._plan.realm}"
            elif m.kind == "pbx":
                target = pbx_target(self._plan, m.via, m.destination)
            else:
                far_end = trunks.get(m.via, self._plan.carrier_out) if m.via else self._plan.carrier_out
                target = f"sofia/carrier/{m.destination}@{far_end}"
            legs.append((f"[{','.join(own)}]" if own else "") + target)
        return ",".join(legs)


def pbx_target(plan: FsPlan, endpoint: str, dialled: str) -> str:
    """A customer PBX trunk's registered contact with `dialled` (a number or an extension
    behind it) as the Request-URI's user, as Asterisk's PJSIP/<dialled>@<endpoint>: FreeSWITCH
    expands the bridge's argument first, so sofia_contact gives the contact's dial string
    (sofia/<profile>/sip:<account>@<address>...) and the regex puts `dialled` in its user
    part; an unregistered PBX leaves error/user_not_registered, a failed leg."""
    profile = plan.phones_profile
    contact = f"${{sofia_contact({profile}/{endpoint}@{plan.realm})}}"
    # the group at the end of the substitution: %1 followed by digits would name group 14...
    return f"${{regex({contact}|^sofia/[^/]+/sip:[^@]*(@.*)$|sofia/{profile}/sip:{dialled}%1)}}"


CallHandler = Callable[[CallChannel], Awaitable[None]]


def esl_handler(
    route: CallHandler,
    extension: CallHandler,
    actions: FsActions,
    plan: FsPlan,
    transfer: CallHandler | None = None,
) -> Callable[[OutboundSession], Awaitable[None]]:
    """The outbound socket's handler: calls from the carrier profile (context public) are
    routed, calls from the phones profile (context default) are extension calls, callers
    a REFER or #1 transferred (context ss-transfer) and an answering party consulting a
    target (*2) are transfers; then the decision is acted on."""

    async def handle(session: OutboundSession) -> None:
        channel = EslCallChannel(session, facts_of(session), plan)
        context = session.data.get("Caller-Context")
        handler = extension if context == "default" else route
        if consults(session):
            if transfer is None:
                return  # the socket closes: the party is back with the caller
            handler = transfer
        elif context == TRANSFER_CONTEXT and transfer is not None:
            handler = transfer
            # read by facts_of: a later REFER of this caller is not taken for a #1
            await session.queue("unset", "ss_xfer_kind")
        await handler(channel)
        if not await actions.act(channel, session):
            log.error("call %s: no decision; FreeSWITCH's fallback answers it", session.uuid)

    return handle
