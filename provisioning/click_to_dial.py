"""Click-to-dial (CRM, seed 001): the agent's own phone rings first; when the agent answers,
the call continues exactly as if the phone had dialled the customer's number itself.

How: one AMI ``Originate`` (Async) of ``PJSIP/<agent's endpoint>`` into the context an
extension's own calls start in (``from-extensions``, docker/asterisk/extensions.conf), at
the customer's number as the phone would dial it. Once the agent answers, that channel
runs the ordinary outbound path: the FastAGI ``extension`` script with the agent's
endpoint (softswitch.callpath.routing.CallRouting.extension →
dialplan.extension_calls.decide_extension_call), so the control plane applies caller-ID
ownership (the customer sees a number the enterprise owns, never a display name), the
outbound blacklist, the trunk choice, the package's channel cap and the prepaid
reservation, and the call record is written like any call's (direction outbound) and
settled at hang-up — there is no second billing path here. A phone registered on
FreeSWITCH is rung the same way over the Event Socket (``bgapi originate`` of its
registration into the phones' context ``default``, as the account itself), whose call path
is the same CallRouting.extension.

What the agent's phone shows while it rings: the customer's name and number as the
display name, with the agent's own extension as the number. The number is the caller ID
the dialplan hands to the control plane as "what the phone presented", and an extension
presenting its own extension claims no outside number — so the owned caller ID is chosen
exactly as for the phone's own call (a customer's number there would be a claim the
tenant does not own, replaced or refused by its policy). The carrier never sees the
display name (the outbound leg sends none).

Before Asterisk is asked, the request is checked for what would only ring the agent's
phone in vain: the tenant is active, the extension is the tenant's and registered, the
number is a valid phone number not on an outbound blacklist, and the account has money
or included minutes and a free channel (read only: the reservation at the agent's answer
stays the one authority; a refusal there shows in the call's state). Each refusal is a
``ClickToDialRefused`` with the call path's reason code.

The call's state (``call_state``) is read from the call registry (the engine's channel
events) and the call record: ringing_agent → calling_customer → connected → ended, or
agent_no_answer / refused (with the decision's reason) / failed.

Phone numbers are personal data: what this module logs shows them masked."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import phonenumbers

from dialplan.blacklist import Blacklist, BlacklistEntry
from provisioning import money, registrations
from provisioning.engine import Ctx, Forbidden, Invalid, NotFound, ProvisioningError, audit
from provisioning.roles import TENANT_WRITERS
from provisioning.schemas import ClickToDialCreate, ClickToDialRead, e164
from softswitch.core.masking import mask_number

log = logging.getLogger(__name__)

# The context an extension's own calls start in: Asterisk's (provisioning.sip.EXTENSION_CONTEXT),
# FreeSWITCH's (the phones profile's, docker/freeswitch/dialplan.xml).
OUTBOUND_CONTEXT = "from-extensions"
FS_PHONES_CONTEXT = "default"
AGENT_RING_S = 30  # how long the agent's phone rings before the attempt is given up
ORIGINATE_TIMEOUT_S = 5.0
# After this, an attempt whose call the engine never reported is taken as failed.
_NEVER_SEEN = timedelta(seconds=AGENT_RING_S + 15)
_DISPLAY_UNSAFE = str.maketrans({c: " " for c in '"<>\\\r\n\t\0'})


class ClickToDialRefused(ProvisioningError):
    """A click-to-dial request refused before any phone rang; ``reason`` is the code."""

    def __init__(self, reason: str, message: str, field: str | None = None, status: int = 409) -> None:
        super().__init__(f"{reason}: {message}", field)
        self.reason = reason
        self.kind = reason
        self.status = status


@dataclass(frozen=True, slots=True)
class Agent:
    extension: str
    endpoint_id: str
    realm: str = "softswitch"


def dial_digits(number: str) -> str:
    """What the outbound path dials for an E.164 number, as the enterprise's phones dial
    it: a Chinese number in national form (mobile 11 digits, fixed line with its area code
    and trunk 0), any other with the international prefix 00."""
    parsed = phonenumbers.parse(number, None)
    if parsed.country_code == 86:
        national = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
        return "".join(ch for ch in national if ch.isdigit())
    return "00" + number.lstrip("+")


def display_name(customer_name: str, number: str) -> str:
    """The name the agent's phone shows while it rings: the customer's name and number
    (national digits), quoted-string safe, the name shortened to keep it within 60 characters."""
    digits = dial_digits(number)
    name = " ".join(customer_name.translate(_DISPLAY_UNSAFE).split())[: max(60 - len(digits) - 1, 0)]
    return f"{name.rstrip()} {digits}" if name.strip() else digits


def _authorize(ctx: Ctx, write: bool) -> None:
    if ctx.tenant_id is None or not ctx.actor.sees_tenant(ctx.tenant_id):
        raise NotFound(f"tenant {ctx.tenant_id} not found", "tenant_id")
    if write and not ctx.actor.may(TENANT_WRITERS):
        raise Forbidden(f"role {ctx.actor.role.value} may not place calls")


# ---------------------------------------------------------------------- "my extension"
async def my_extension(ctx: Ctx) -> str | None:
    """The extension the signed-in user calls from when a request names none."""
    if ctx.actor.user_id is None:
        return None
    ext: str | None = await ctx.conn.fetchval(
        "SELECT extension FROM agent_extensions WHERE user_id = $1 AND tenant_id = $2",
        ctx.actor.user_id,
        ctx.tenant_id,
    )
    return ext


async def set_my_extension(ctx: Ctx, extension: str) -> None:
    _authorize(ctx, write=True)
    if ctx.actor.user_id is None:
        raise Invalid("only a user has an extension of their own", "extension")
    await _agent(ctx, extension)
    await ctx.conn.execute(
        "INSERT INTO agent_extensions (user_id, tenant_id, extension, updated_at) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (user_id) DO UPDATE SET tenant_id = EXCLUDED.tenant_id, "
        "extension = EXCLUDED.extension, updated_at = EXCLUDED.updated_at",
        ctx.actor.user_id,
        ctx.tenant_id,
        extension,
        ctx.clock.now(),
    )


async def _agent(ctx: Ctx, extension: str) -> Agent:
    row = await ctx.conn.fetchrow(
        "SELECT extension, endpoint_id, realm FROM sip_extensions WHERE tenant_id = $1 AND extension = $2",
        ctx.tenant_id,
        extension,
    )
    if row is None:
        raise ClickToDialRefused(
            "EXTENSION_UNKNOWN", f"extension {extension} is not one of this enterprise's", "extension", 422
        )
    return Agent(row["extension"], row["endpoint_id"], row["realm"])


# ---------------------------------------------------------------------- placing the call
async def place_call(
    ctx: Ctx,
    ami: Any,
    data: ClickToDialCreate,
    esl: Any = None,
    phones_profile: str = "phones",
    registry: Any = None,
) -> ClickToDialRead:
    """Ring the agent's extension, then (on answer) the customer through the outbound path.
    Returns at once (Async originate) with state ringing_agent; ``call_state`` follows it."""
    _authorize(ctx, write=True)
    tenant = await ctx.conn.fetchrow("SELECT id, state FROM tenants WHERE id = $1", ctx.tenant_id)
    if tenant is None:
        raise NotFound(f"tenant {ctx.tenant_id} not found", "tenant_id")
    try:
        number = e164(data.number)
    except ValueError as exc:
        raise ClickToDialRefused("INVALID_NUMBER", str(exc), "number", 422) from None
    extension = data.extension or await my_extension(ctx)
    if not extension:
        raise Invalid("choose the extension whose phone rings first", "extension")
    if tenant["state"] != "active":
        raise ClickToDialRefused("TENANT_SUSPENDED", f"the enterprise is {tenant['state']}", "tenant_id", 403)
    agent = await _agent(ctx, extension)
    customer_name = ""
    if data.customer_id is not None:
        customer_name = await ctx.conn.fetchval(
            "SELECT name FROM customers WHERE id = $1 AND tenant_id = $2", data.customer_id, ctx.tenant_id
        )
        if customer_name is None:
            raise Invalid(f"customer {data.customer_id} does not belong to this tenant", "customer_id")
    dialled = dial_digits(number)
    await _check_number(ctx, dialled)
    await _check_account(ctx)
    engine = await _registered_on(ctx, ami, esl, agent, phones_profile)

    call_id = f"c2d-{ctx.tenant_id}-{secrets.token_hex(8)}"
    now = ctx.clock.now()
    async with ctx.conn.transaction():
        row_id = await ctx.conn.fetchval(
            "INSERT INTO click_to_dial_calls (tenant_id, call_id, customer_id, extension, endpoint_id, "
            "number, dialled, requested_by, requested_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
            "RETURNING id",
            ctx.tenant_id,
            call_id,
            data.customer_id,
            agent.extension,
            agent.endpoint_id,
            number,
            dialled,
            ctx.actor.name,
            now,
        )
        await audit(
            ctx,
            "click-to-dial",
            row_id,
            "create",
            None,
            {"call_id": call_id, "extension": agent.extension, "number": mask_number(number)},
        )
        shown = display_name(customer_name, number)
        if registry is not None:
            # The agent's answer is not the customer's: talk time, the charge and "answered"
            # start when the customer answers (the second leg).
            registry.bill_from_callee_answer(call_id)
        if engine == "asterisk":
            await _originate(ami, agent, dialled, shown, call_id)
        else:
            await _originate_freeswitch(esl, agent, dialled, shown, call_id, phones_profile)
    log.info(
        "click-to-dial %s: extension %s rings first (%s), then %s",
        call_id,
        agent.extension,
        engine,
        mask_number(dialled),
    )
    return ClickToDialRead(
        call_id=call_id,
        state="ringing_agent",
        extension=agent.extension,
        number=number,
        dialled=dialled,
        requested_at=now,
    )


async def _originate(ami: Any, agent: Agent, dialled: str, shown: str, call_id: str) -> None:
    if ami is None:
        raise ClickToDialRefused("ENGINE_UNAVAILABLE", "Asterisk is not driven by this service", None, 503)
    fields = {
        "Channel": f"PJSIP/{agent.endpoint_id}",
        "Context": OUTBOUND_CONTEXT,
        "Exten": dialled,
        "Priority": "1",
        # The agent's phone shows the customer; the caller ID number stays the agent's own
        # extension, so the outbound path picks the owned caller ID as for the phone's call.
        "CallerID": f'"{shown}" <{agent.extension}>',
        "Timeout": str(AGENT_RING_S * 1000),
        "Async": "true",
        "ChannelId": call_id,  # the call's linkedid: its record, reservation and CDR
        "Variable": [f"SS_CLICK_TO_DIAL={call_id}"],
    }
    try:
        await ami.action("Originate", fields, timeout=ORIGINATE_TIMEOUT_S)
    except Exception as exc:  # the AMI client's errors (a layer above: not imported here)
        message = getattr(exc, "message", "") or str(exc)
        log.warning("click-to-dial %s: Originate refused: %s", call_id, message)
        if type(exc).__name__ in ("AmiNotConnected", "AmiConnectionLost", "AmiTimeout"):
            reason, status, said = "ENGINE_UNAVAILABLE", 503, "Asterisk did not take the call"
        else:
            reason, status, said = "ORIGINATE_FAILED", 502, "Asterisk refused the call"
        raise ClickToDialRefused(reason, f"{said}: {message}", None, status) from None


async def _check_number(ctx: Ctx, dialled: str) -> None:
    """The outbound blacklist (the platform's and the tenant's), as the call path applies
    it (dialplan.blacklist)."""
    rows = await ctx.conn.fetch(
        "SELECT tenant_id, pattern, match_kind, direction FROM blacklist_entries "
        "WHERE (tenant_id IS NULL OR tenant_id = $1) AND direction IN ('outbound', 'both')",
        ctx.tenant_id,
    )
    blacklist = Blacklist.build(
        BlacklistEntry(r["tenant_id"], r["pattern"], r["match_kind"], r["direction"]) for r in rows
    )
    if blacklist.blocks(ctx.tenant_id, "outbound", dialled):
        raise ClickToDialRefused("BLACKLISTED", "the number is on an outbound blacklist", "number", 422)


async def _check_account(ctx: Ctx) -> None:
    """Refuses only what the reservation at the agent's answer would refuse for certain:
    nothing available and no included seconds, or every channel in use."""
    try:
        account = await money.get_account(ctx)
    except NotFound:
        raise ClickToDialRefused("NO_BALANCE", "the enterprise has no prepaid account", None, 409) from None
    if account.available <= 0 and account.included_seconds_free <= 0:
        raise ClickToDialRefused("NO_BALANCE", "no money and no included minutes left", None, 409)
    if account.channels_in_use >= account.channel_cap:
        raise ClickToDialRefused(
            "CHANNEL_LIMIT", f"all {account.channel_cap} channels of the package are in use", None, 409
        )


async def _registered_on(ctx: Ctx, ami: Any, esl: Any, agent: Agent, phones_profile: str) -> str:
    """The engine the agent's phone is registered on now (asterisk first), or a refusal."""
    regs = await registrations.of_endpoints(ami, esl, [agent.endpoint_id], ctx.clock.now(), phones_profile)
    engines = {c.engine for c in regs.of(agent.endpoint_id)}
    for engine in ("asterisk", "freeswitch"):
        if engine in engines:
            return engine
    if regs.unreachable:
        raise ClickToDialRefused(
            "ENGINE_UNAVAILABLE", f"{', '.join(regs.unreachable)} did not answer", None, 503
        )
    raise ClickToDialRefused(
        "EXTENSION_NOT_REGISTERED", f"extension {agent.extension}'s phone is not registered", "extension", 409
    )


async def _originate_freeswitch(
    esl: Any, agent: Agent, dialled: str, shown: str, call_id: str, phones_profile: str
) -> None:
    """FreeSWITCH: ``originate`` of the agent's registration on the phones profile into the
    context the phones' own calls run in (``default``: docker/freeswitch/dialplan.xml), as
    the account itself (what the control plane reads as the calling endpoint), with the
    call's id as its UUID and as the id every leg carries (ss_call_id)."""
    if esl is None:
        raise ClickToDialRefused("ENGINE_UNAVAILABLE", "FreeSWITCH is not driven by this service", None, 503)
    name = "".join(ch for ch in shown if ch not in ",'{}[]^") or agent.extension
    variables = ",".join(
        (
            f"origination_uuid={call_id}",
            f"call_uuid={call_id}",
            f"ss_call_id={call_id}",
            f"origination_caller_id_number={agent.extension}",
            f"origination_caller_id_name='{name}'",
            # once answered, FreeSWITCH makes the callee the caller of the dialplan it runs
            # (the CID flip): the agent's own extension, as on Asterisk
            f"origination_callee_id_number={agent.extension}",
            f"origination_callee_id_name={agent.extension}",
            f"sip_auth_username={agent.endpoint_id}",
            f"originate_timeout={AGENT_RING_S}",
        )
    )
    target = f"sofia/{phones_profile}/{agent.endpoint_id}%{agent.realm}"
    # `bgapi` answers at once with a job id (the job's own result, when the agent answers
    # or not, comes later and is not waited for): the asynchronous originate. What became
    # of the call shows in the channel events, as on Asterisk.
    try:
        await esl.command(f"bgapi originate {{{variables}}}{target} {dialled} XML {FS_PHONES_CONTEXT}")
    except Exception as exc:  # the ESL client's errors (a layer above: not imported here)
        log.warning("click-to-dial %s: originate refused: %s", call_id, exc)
        if type(exc).__name__ == "EslCommandError":
            raise ClickToDialRefused(
                "ORIGINATE_FAILED", f"FreeSWITCH refused the call: {exc}", None, 502
            ) from None
        raise ClickToDialRefused(
            "ENGINE_UNAVAILABLE", f"FreeSWITCH did not take the call: {exc}", None, 503
        ) from None


# ---------------------------------------------------------------------- following it
async def call_state(ctx: Ctx, registry: Any, call_id: str) -> ClickToDialRead:
    """Where a click-to-dial call of this tenant stands now."""
    _authorize(ctx, write=False)
    row = await ctx.conn.fetchrow(
        "SELECT * FROM click_to_dial_calls WHERE call_id = $1 AND tenant_id = $2", call_id, ctx.tenant_id
    )
    if row is None:
        raise NotFound(f"click-to-dial call {call_id} not found", "call_id")
    record = await ctx.conn.fetchrow(
        "SELECT action, reason, answered_at, ended_at, caller_id_shown FROM calls WHERE linkedid = $1",
        call_id,
    )
    live = registry.get(call_id) if registry is not None else None
    state, reason = _state(record, live, row["requested_at"], ctx.clock.now())
    answered = record["answered_at"] if record is not None else None
    ended = record["ended_at"] if record is not None else None
    if live is not None:
        answered = answered or live.answered_at
        ended = ended or live.ended_at
    return ClickToDialRead(
        call_id=call_id,
        state=state,
        reason=reason,
        extension=row["extension"],
        number=row["number"],
        dialled=row["dialled"],
        caller_id=(record["caller_id_shown"] if record is not None else "") or "",
        requested_at=row["requested_at"],
        answered_at=answered,
        ended_at=ended,
    )


def _state(record: Any, live: Any, requested_at: datetime, now: datetime) -> tuple[str, str]:
    """(state, reason) from the call record (the control plane's decision, taken when the
    agent answered) and the live call (the engine's channel events). Pure."""
    if record is not None and record["action"] not in ("dial", "ivr"):
        return "refused", record["reason"]
    ended = (record is not None and record["ended_at"] is not None) or (
        live is not None and live.ended_at is not None
    )
    if record is not None:
        if ended:
            return "ended", record["reason"]
        if live is not None and live.bridged_at is not None:
            return "connected", record["reason"]
        return "calling_customer", record["reason"]
    if live is None:
        if now - requested_at > _NEVER_SEEN:
            return "failed", "NOT_STARTED"
        return "ringing_agent", ""
    if ended:
        # The agent's channel ended before any decision: the phone was not answered.
        return "agent_no_answer", (live.hangup_cause_text or "").upper().replace(" ", "_")
    if live.answered_at is not None:
        return "calling_customer", ""
    return "ringing_agent", ""
