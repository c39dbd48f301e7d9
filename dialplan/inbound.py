"""Inbound calls to unified numbers: a pipeline of pure steps over (snapshot, call, now).

Order: number -> tenant and state -> blacklist -> PIN -> time policy -> region policy ->
distribution. Each step either passes the call on or ends it with a decision value that
names its reason."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from dialplan.distribution import DialStep, Member, Memory, Strategy, plan
from dialplan.reasons import Reason
from dialplan.region import region_of
from dialplan.ringback import RingbackTone, tone_at
from dialplan.snapshot import ConfigSnapshot, Extension, Tenant, UnifiedNumber
from dialplan.targets import DEFAULT_GROUP, Target
from dialplan.time_policy import TimeMatch


@dataclass(frozen=True, slots=True)
class InboundCall:
    caller: str
    called: str
    linkedid: str
    pin_verified: bool = False


@dataclass(frozen=True, slots=True)
class Route:
    """Ring the steps in order (each step's members together) until one answers."""

    steps: tuple[DialStep, ...]
    tenant_id: int
    number_id: int | None
    reason: Reason = Reason.ROUTED
    group: str = "default"
    caller_id: str = ""  # what the destinations see; '' keeps the caller's own number
    greeting: str = ""  # played to the caller, answered, before ringing
    whisper: str = ""  # digits said to the answering party before connecting
    final_action: str = "missed_call"
    why: str = ""  # how the group was chosen, for the call record
    # "any": a busy or silent step moves on to the next; "congestion": only a network
    # failure does (trunk failover must not ring a busy callee again on another trunk)
    next_on: str = "any"
    # talk time the prepaid reservation covers: the switch hangs up after it (0 = none)
    limit_s: int = 0
    # the number's personalised ringback tone, played while the steps ring (None: the default)
    ringback: RingbackTone | None = None

    @property
    def destinations(self) -> tuple[str, ...]:
        return tuple(m.destination for s in self.steps for m in s.members)


@dataclass(frozen=True, slots=True)
class Reject:
    reason: Reason
    tenant_id: int | None = None
    number_id: int | None = None
    prompt: str | None = None  # overrides the reason's own prompt (a configured announcement)
    why: str = ""  # what refused it, for the call record (CLOSED: the time policy's rule)
    closed_by: TimeMatch | None = None  # CLOSED: the time policy's rule that closed the call

    @property
    def announcement(self) -> str:
        return self.reason.prompt if self.prompt is None else self.prompt


@dataclass(frozen=True, slots=True)
class AskPin:
    """Collect the number's PIN by DTMF, then decide again with pin_verified."""

    tenant_id: int
    number_id: int
    max_attempts: int
    reason: Reason = Reason.ROUTED


@dataclass(frozen=True, slots=True)
class Voicemail:
    tenant_id: int
    number_id: int
    reason: Reason = Reason.VOICEMAIL


@dataclass(frozen=True, slots=True)
class RunIvr:
    menu: str
    tenant_id: int
    number_id: int
    reason: Reason = Reason.IVR


Decision = Route | Reject | AskPin | Voicemail | RunIvr


def _no_memory(_key: tuple[int, str]) -> Memory:
    return Memory()


def decide_inbound(
    snapshot: ConfigSnapshot,
    call: InboundCall,
    now: datetime,
    memory: Callable[[tuple[int, str]], Memory] | None = None,
    rng: random.Random | None = None,
    unregistered: frozenset[str] = frozenset(),
) -> Decision:
    """`memory` gives the distribution memory of (number id, group); `rng` draws weighted
    orders. Both default to fresh ones, so the function stays pure for tests.
    `unregistered`: the customer PBX trunks (endpoint ids) known to hold no registration
    now; a destination behind one is skipped and the call fails over (PBX_UNREGISTERED)."""
    number = snapshot.numbers.get(call.called)
    if number is None:
        return Reject(Reason.UNKNOWN_NUMBER)
    # A number that is not approved (or not assigned) is not in service, whoever holds it.
    if number.state != "active" or number.tenant_id is None:
        return Reject(Reason.NUMBER_NOT_ACTIVE, number.tenant_id, number.id)
    tenant = snapshot.tenants.get(number.tenant_id)
    if tenant is None or tenant.state != "active":
        return Reject(Reason.TENANT_SUSPENDED, number.tenant_id, number.id)
    if snapshot.blacklist.blocks(tenant.id, "inbound", call.caller):
        return Reject(Reason.BLACKLISTED, tenant.id, number.id)
    if number.pin is not None and not call.pin_verified:
        return AskPin(tenant.id, number.id, number.pin.max_attempts)

    target, why = Target("group", "default"), "default"
    timed: TimeMatch | None = None
    if number.time_policy is not None:
        timed = number.time_policy.match_at(now)
        target, why = timed.target, timed.rule.value
    if target.kind == "group" and number.region_policy is not None:
        rule = number.region_policy.decide(region_of(call.caller))
        if rule.action == "deny":
            return Reject(Reason.REGION_DENIED, tenant.id, number.id)
        # Route-by-region refines the default (business-hours) group only: when the time
        # policy has sent the call elsewhere (night duty, holiday) that choice stands.
        if rule.action == "route" and target.ref == DEFAULT_GROUP.ref:
            target, why = Target("group", rule.group), f"{why}+region"
    return _to_target(
        number,
        tenant,
        target,
        why,
        memory or _no_memory,
        rng or random.Random(),
        snapshot,
        timed,
        now,
        unregistered,
    )


def pbx_member(dialled: str, pbx: Extension, ring_s: int, weight: int = 1) -> Member:
    """A destination behind a customer's PBX trunk: the PBX is sent `dialled` (the number
    or extension) in the Request-URI, at the contact it registered."""
    return Member(dialled, ring_s, weight, "pbx", via=pbx.endpoint_id)


def _to_target(
    number: UnifiedNumber,
    tenant: Tenant,
    target: Target,
    why: str,
    memory: Callable[[tuple[int, str]], Memory],
    rng: random.Random,
    snapshot: ConfigSnapshot,
    timed: TimeMatch | None = None,
    now: datetime | None = None,
    unregistered: frozenset[str] = frozenset(),
) -> Decision:
    assert number.tenant_id is not None
    if target.kind == "announcement":
        # Only the time policy sends a call to an announcement: it says which rule did.
        return Reject(
            Reason.CLOSED,
            tenant.id,
            number.id,
            prompt=target.ref,
            why=timed.why if timed is not None else why,
            closed_by=timed,
        )
    if target.kind == "voicemail":
        return Voicemail(tenant.id, number.id)
    if target.kind == "ivr":
        return RunIvr(target.ref, tenant.id, number.id)
    group = target.ref or DEFAULT_GROUP.ref
    bound = number.group(group)
    if not bound:
        return Reject(Reason.NO_DESTINATION, tenant.id, number.id)
    members = []
    pbx_down = False
    for d in bound:
        pbx: Extension | None = None
        if d.kind == "extension":
            ext = snapshot.extensions.get((tenant.id, d.destination))
            if ext is not None and not ext.is_pbx:
                members.append(
                    Member(ext.endpoint_id, d.ring_timeout_s, d.weight, "extension", fax=ext.fax_allowed)
                )
                continue
            pbx = snapshot.pbx_behind(tenant.id, d.destination)  # another site's extension
            dialled = d.destination
        elif d.kind == "pbx":  # the number itself is delivered to the PBX
            ext = snapshot.extensions.get((tenant.id, d.destination))
            pbx = ext if ext is not None and ext.is_pbx else None
            dialled = number.number
        else:
            members.append(Member(d.destination, d.ring_timeout_s, d.weight, d.kind))
            continue
        if pbx is not None and pbx.endpoint_id in unregistered:
            pbx_down = True
        elif pbx is not None:
            members.append(pbx_member(dialled, pbx, d.ring_timeout_s, d.weight))
    if not members:
        if pbx_down and number.final_action == "voicemail":
            return Voicemail(tenant.id, number.id, Reason.PBX_UNREGISTERED)
        reason = Reason.PBX_UNREGISTERED if pbx_down else Reason.NO_DESTINATION
        return Reject(reason, tenant.id, number.id, why="pbx_unregistered" if pbx_down else "")
    steps = plan(Strategy(number.distribution), members, memory((number.id, group)), rng)
    return Route(
        steps,
        tenant.id,
        number.id,
        group=group,
        caller_id=number.number if number.caller_id_mode == "unified" else "",
        greeting=number.greeting,
        whisper=number.number if number.whisper else "",
        final_action=number.final_action,
        why=f"{why}+pbx_unregistered" if pbx_down else why,
        ringback=tone_at(number.ringback, tenant.timezone, now) if now is not None else None,
        reason=Reason.PBX_UNREGISTERED if pbx_down else Reason.ROUTED,
    )


def ivr_transfer(
    snapshot: ConfigSnapshot,
    called: str,
    kind: str,
    ref: str,
    memory: Callable[[tuple[int, str]], Memory] | None = None,
    rng: random.Random | None = None,
    now: datetime | None = None,
) -> Decision:
    """Where an IVR menu sends the caller of unified number `called`: a destination group
    of that number, one of the tenant's extensions, or an outside number (dialled through
    the default carrier, and paid for like any forwarded call). With `now`, a group rings
    with the number's ringback tone of that time."""
    number = snapshot.numbers.get(called)
    if number is None or number.tenant_id is None:
        return Reject(Reason.UNKNOWN_NUMBER)
    tenant = snapshot.tenants.get(number.tenant_id)
    if tenant is None or tenant.state != "active":
        return Reject(Reason.TENANT_SUSPENDED, number.tenant_id, number.id)
    if kind == "group":
        return _to_target(
            number,
            tenant,
            Target("group", ref),
            "ivr",
            memory or _no_memory,
            rng or random.Random(),
            snapshot,
            now=now,
        )
    if kind == "extension":
        ext = snapshot.extensions.get((tenant.id, ref))
        pbx = snapshot.pbx_behind(tenant.id, ref)
        if ext is not None and not ext.is_pbx:
            member = Member(ext.endpoint_id, 30, kind="extension", fax=ext.fax_allowed)
        elif pbx is not None:
            member = pbx_member(ref, pbx, 30)
        else:
            return Reject(Reason.EXTENSION_NOT_FOUND, tenant.id, number.id)
        step = DialStep((member,), 30)
        return Route((step,), tenant.id, number.id, why="ivr", final_action=number.final_action)
    if snapshot.blacklist.blocks(tenant.id, "outbound", ref):
        return Reject(Reason.BLACKLISTED, tenant.id, number.id)
    step = DialStep((Member(ref, 60),), 60)
    return Route((step,), tenant.id, number.id, why="ivr", final_action=number.final_action)
