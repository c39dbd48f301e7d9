"""A call Asterisk handed over by FastAGI, as the call path's ``CallChannel``.

The facts come from the AGI environment and the arguments the dialplan passes
(docker/asterisk/extensions.conf); the decision goes back as SS_* variables set in one
``MSet`` round trip (softswitch.engines.asterisk.contract)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from dialplan.legs import Leg
from dialplan.transfers import TransferKind, transfer_options
from softswitch.callpath.control import CallChannel, CallFacts
from softswitch.callpath.recorder import RecordingVars
from softswitch.engines.asterisk.agi.codec import AgiEnvironment
from softswitch.engines.asterisk.agi.server import AgiSession
from softswitch.engines.asterisk.contract import asterisk_variables


def _arg(args: Sequence[str], i: int) -> str:
    return args[i] if len(args) > i else ""


def _caller(env: AgiEnvironment) -> str:
    return env.callerid if env.callerid not in ("", "unknown") else ""


def endpoint_of(channel: str) -> str:
    """The PJSIP endpoint of a channel name (PJSIP/<endpoint>-<sequence>), '' if none."""
    tech, _, rest = channel.partition("/")
    if tech != "PJSIP" or "-" not in rest:
        return ""
    return rest.rsplit("-", 1)[0]


def route_facts(env: AgiEnvironment) -> CallFacts:
    """AGI(agi://…/route,${CHANNEL(linkedid)},${SS_CALLED})"""
    return CallFacts(
        linkedid=_arg(env.args, 0) or env.uniqueid,
        uniqueid=env.uniqueid,
        channel=env.channel,
        caller=_caller(env),
        called=_arg(env.args, 1) or env.extension,
        endpoint=endpoint_of(env.channel),
    )


def extension_facts(env: AgiEnvironment) -> CallFacts:
    """AGI(agi://…/extension,${CHANNEL(linkedid)},${SS_CALLED},${CHANNEL(endpoint)})"""
    return CallFacts(
        linkedid=_arg(env.args, 0) or env.uniqueid,
        uniqueid=env.uniqueid,
        channel=env.channel,
        caller=_caller(env),
        called=_arg(env.args, 1) or env.extension,
        endpoint=_arg(env.args, 2),
    )


def ivr_facts(env: AgiEnvironment) -> CallFacts:
    """AGI(agi://…/ivr,${CHANNEL(linkedid)},${SS_IVR_MENU},${SS_TENANT_ID},${SS_CALLED});
    ``args`` carries (menu, tenant id)."""
    args = [*env.args, "", "", "", ""]
    return CallFacts(
        linkedid=args[0] or env.uniqueid,
        uniqueid=env.uniqueid,
        channel=env.channel,
        caller=_caller(env),
        called=args[3],
        endpoint=endpoint_of(env.channel),
        args=(args[1], args[2]),
    )


def transfer_facts(env: AgiEnvironment) -> CallFacts:
    """AGI(agi://…/transfer,${CHANNEL(linkedid)},${SS_CALLED},${SS_XFER_TENANT},
    ${SS_XFER_NUMBER},${BLINDTRANSFER},${TRANSFERERNAME},${SS_XFER_REFER}) — run on the
    transferred party's channel (blind transfer, REFER) or on the Local channel Asterisk
    dials for an attended one. ``endpoint`` is the transferring party's; ``args`` carries
    (the call's tenant id, its unified number, the transfer's kind, the transferring
    party's channel)."""
    args = [*env.args, "", "", "", "", "", "", ""]
    blind, attended, refer = args[4], args[5], args[6]
    transferor = blind or attended
    if refer:
        kind = TransferKind.REFER
    elif blind:
        kind = TransferKind.BLIND
    else:
        kind = TransferKind.ATTENDED
    return CallFacts(
        linkedid=args[0] or env.uniqueid,
        uniqueid=env.uniqueid,
        channel=env.channel,
        caller=_caller(env),
        called=args[1] or env.extension,
        endpoint=endpoint_of(transferor),
        args=(args[2], args[3], kind.value, transferor),
    )


class AgiCallChannel:
    def __init__(self, session: AgiSession, facts: CallFacts, trunk: str) -> None:
        self._session = session
        self._facts = facts
        self._trunk = trunk

    @property
    def facts(self) -> CallFacts:
        return self._facts

    async def answer(self) -> None:
        await self._session.answer()

    async def play(self, prompt: str) -> None:
        await self._session.stream_file(prompt)

    async def collect(self, prompt: str, timeout_ms: int, max_digits: int) -> tuple[str, bool]:
        return await self._session.get_data(prompt, timeout_ms, max_digits)

    async def say_digits(self, digits: str) -> None:
        await self._session.say_digits(digits)

    async def say_number(self, number: int) -> None:
        await self._session.say_number(number)

    async def deliver(self, leg: Leg, recording: RecordingVars | None) -> None:
        # One round trip for the whole decision. MSet expands ${...} in what it is given,
        # so only values the control plane owns go here (reason codes, digits checked by
        # the schema, dial strings built from them, recording paths from the tenant id and
        # Asterisk's own linkedid), never caller-supplied text.
        variables = asterisk_variables(
            leg.decision, self._trunk, recording, leg.caller_name, transfer_options(leg)
        )
        await self._session.exec("MSet", *(f"{k}={v}" for k, v in variables))


CallHandler = Callable[[CallChannel], Awaitable[None]]
AgiHandler = Callable[[AgiSession], Awaitable[None]]


def agi_scripts(
    route: CallHandler,
    extension: CallHandler,
    ivr: CallHandler,
    trunk: str,
    transfer: CallHandler | None = None,
) -> dict[str, AgiHandler]:
    """The FastAGI scripts the dialplan calls (agi://…/<script>), each handing the call
    path a CallChannel with the facts that script's arguments carry."""
    facts_of: dict[str, tuple[Callable[[AgiEnvironment], CallFacts], CallHandler]] = {
        "route": (route_facts, route),
        "extension": (extension_facts, extension),
        "ivr": (ivr_facts, ivr),
    }
    if transfer is not None:
        facts_of["transfer"] = (transfer_facts, transfer)

    def script(parse: Callable[[AgiEnvironment], CallFacts], handler: CallHandler) -> AgiHandler:
        async def run(session: AgiSession) -> None:
            await handler(AgiCallChannel(session, parse(session.env), trunk))

        return run

    return {name: script(parse, handler) for name, (parse, handler) in facts_of.items()}
