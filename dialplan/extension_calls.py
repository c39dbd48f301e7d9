"""Calls made by a tenant's SIP extensions: to another extension of the tenant (any site),
to one of the tenant's own unified numbers (handled inside the platform, as an inbound
call to that number with the extension as the caller), or to an outside number through a
trunk chosen by trunks/, presenting only a caller ID the tenant owns. Pure, like the
inbound pipeline.

Only the tenant's *own* numbers are handled inside. Another tenant's number hosted here is
dialled out like any outside number: the carrier brings it back as an ordinary inbound
call, so that tenant's policies see the caller's owned number (never another company's
extension) and each company pays for its own legs."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from dialplan.distribution import DialStep, Member, Memory
from dialplan.inbound import Decision, InboundCall, Reject, Route, decide_inbound, pbx_member
from dialplan.legs import CallerName, Direction, Leg, leaves_the_platform
from dialplan.reasons import Reason
from dialplan.snapshot import ConfigSnapshot, Extension, Tenant
from trunks.selection import endpoint_for, select_trunks

EXTERNAL_RING_S = 60
INTERNAL_RING_S = 30


@dataclass(frozen=True, slots=True)
class ExtensionCall:
    endpoint_id: str  # the calling device's PJSIP endpoint
    dialled: str
    linkedid: str
    presented_cli: str = ""  # the caller ID the phone itself sent
    pin_verified: bool = False  # the caller has keyed the dialled own number's PIN


def decide_extension_call(
    snapshot: ConfigSnapshot,
    call: ExtensionCall,
    now: datetime,
    rng: random.Random | None = None,
    memory: Callable[[tuple[int, str]], Memory] | None = None,
    unregistered: frozenset[str] = frozenset(),
) -> Leg:
    """`memory` and `rng` are the distribution's, used when the call reaches one of the
    tenant's own numbers (as in decide_inbound); `unregistered` the PBX trunks known to
    hold no registration (decide_inbound).

    A customer's PBX trunk calls like an extension (its endpoint is one): another site's
    extensions on-net, the tenant's numbers inside, outside numbers through the platform's
    trunks with an owned caller ID. An extension behind a PBX is reached by its number
    from any other site (multi-site, 异地多点组网): internal, free."""
    me = snapshot.endpoints.get(call.endpoint_id)
    if me is None:
        return Leg(Reject(Reason.EXTENSION_UNKNOWN), Direction.OUTBOUND, billable=False)
    tenant = snapshot.tenants.get(me.tenant_id)
    if tenant is None or tenant.state != "active":
        return Leg(Reject(Reason.TENANT_SUSPENDED, me.tenant_id), Direction.OUTBOUND, billable=False)
    # Inside, a PBX's caller shows the extension behind it that called (when it says so).
    me_shown = call.presented_cli if me.is_pbx and me.owns(call.presented_cli) else me.extension
    callee = snapshot.extensions.get((tenant.id, call.dialled))
    pbx = snapshot.pbx_behind(tenant.id, call.dialled) if callee is None or callee.is_pbx else None
    if pbx is not None and pbx.endpoint_id != me.endpoint_id:
        if pbx.endpoint_id in unregistered:
            reject = Reject(Reason.PBX_UNREGISTERED, tenant.id, why="pbx_unregistered")
            return Leg(reject, Direction.INTERNAL, billable=False)
        step = DialStep((pbx_member(call.dialled, pbx, INTERNAL_RING_S),), INTERNAL_RING_S)
        route = Route((step,), tenant.id, None, caller_id=me_shown, why="internal+pbx")
        return Leg(route, Direction.INTERNAL, billable=False)
    if callee is not None and not callee.is_pbx:
        member = Member(callee.endpoint_id, INTERNAL_RING_S, kind="extension", fax=callee.fax_allowed)
        step = DialStep((member,), INTERNAL_RING_S)
        route = Route((step,), tenant.id, None, caller_id=me_shown, why="internal")
        return Leg(route, Direction.INTERNAL, billable=False)
    own = snapshot.numbers.get(call.dialled)
    if own is not None and own.tenant_id == tenant.id:
        inbound = InboundCall(me.extension, call.dialled, call.linkedid, call.pin_verified)
        decision = decide_inbound(snapshot, inbound, now, memory, rng, unregistered)
        return from_extension(snapshot, me, decision, call.dialled)
    if len(call.dialled) <= 6:
        return Leg(Reject(Reason.EXTENSION_NOT_FOUND, tenant.id), Direction.OUTBOUND, billable=False)
    if snapshot.blacklist.blocks(tenant.id, "outbound", call.dialled):
        return Leg(Reject(Reason.BLACKLISTED, tenant.id), Direction.OUTBOUND, billable=False)
    # A phone that presents an outside number (in P-Asserted-Identity) claims it; one that
    # presents only its own extension claims nothing and gets the configured caller ID.
    presented = call.presented_cli
    claims = presented.isdigit() and len(presented) >= 7 and presented != me.extension
    cli = (
        presented
        if claims
        else (me.outbound_caller_id or (tenant.caller_ids[0] if tenant.caller_ids else ""))
    )
    why = "outbound"
    if cli not in tenant.caller_ids:
        if tenant.outbound_cli_policy == "refuse" or not tenant.caller_ids:
            return Leg(Reject(Reason.CALLER_ID_NOT_OWNED, tenant.id), Direction.OUTBOUND, billable=False)
        cli, why = tenant.caller_ids[0], "outbound+cli_replaced"
    trunks = select_trunks(snapshot.trunk_routes, call.dialled, rng or random.Random())
    if not trunks:
        return Leg(Reject(Reason.NO_ROUTE, tenant.id), Direction.OUTBOUND, billable=False)
    steps = tuple(
        DialStep(
            (Member(call.dialled, EXTERNAL_RING_S, kind="external", via=endpoint_for(t)),), EXTERNAL_RING_S
        )
        for t in trunks
    )
    route = Route(steps, tenant.id, None, caller_id=cli, why=why, next_on="congestion")
    # The carrier sees the owned number and nothing else: no display name (the extension's
    # number or name is the tenant's internal business, and no name has been verified).
    return Leg(route, Direction.OUTBOUND, caller_name=CallerName.NONE)


def from_extension(snapshot: ConfigSnapshot, me: Extension, decision: Decision, number: str) -> Leg:
    """An inbound decision for the tenant's own unified number `number` (its policy, its
    menu's transfer...) taken with extension `me` as the caller: an internal call. Ringing
    only extensions, it is free and shows the extension; when a destination is reached
    through a carrier, that leg is paid for like any forwarded call and shows only a number
    the tenant owns, with no display name."""
    if not isinstance(decision, Route):
        return Leg(decision, Direction.INTERNAL, billable=False)
    tenant = snapshot.tenants.get(me.tenant_id)
    if not leaves_the_platform(decision):
        shown = decision.caller_id or me.extension
        return Leg(dataclasses.replace(decision, caller_id=shown), Direction.INTERNAL, billable=False)
    owned = (*(tenant.caller_ids if tenant is not None else ()), number)
    shown = decision.caller_id if decision.caller_id in owned else owned_caller_id(tenant, me, number)
    return Leg(
        dataclasses.replace(decision, caller_id=shown),
        Direction.INTERNAL,
        billable=True,
        caller_name=CallerName.NONE,
    )


def owned_caller_id(tenant: Tenant | None, me: Extension, number: str) -> str:
    """What an extension shows outside when it calls through its own number `number`: its
    configured outbound caller ID if the tenant owns it, else that number itself."""
    if tenant is not None and me.outbound_caller_id in tenant.caller_ids:
        return me.outbound_caller_id
    return number
