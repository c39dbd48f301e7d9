"""Calls made by a tenant's SIP extensions: to another extension of the tenant (any site),
or to an outside number through a trunk chosen by trunks/, presenting only a caller ID
the tenant owns. Pure, like the inbound pipeline."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime

from dialplan.distribution import DialStep, Member
from dialplan.inbound import Reject, Route
from dialplan.reasons import Reason
from dialplan.snapshot import ConfigSnapshot
from trunks.selection import endpoint_for, select_trunks

EXTERNAL_RING_S = 60
INTERNAL_RING_S = 30


@dataclass(frozen=True, slots=True)
class ExtensionCall:
    endpoint_id: str  # the calling device's PJSIP endpoint
    dialled: str
    linkedid: str
    presented_cli: str = ""  # the caller ID the phone itself sent


def decide_extension_call(
    snapshot: ConfigSnapshot, call: ExtensionCall, now: datetime, rng: random.Random | None = None
) -> Route | Reject:
    me = snapshot.endpoints.get(call.endpoint_id)
    if me is None:
        return Reject(Reason.EXTENSION_UNKNOWN)
    tenant = snapshot.tenants.get(me.tenant_id)
    if tenant is None or tenant.state != "active":
        return Reject(Reason.TENANT_SUSPENDED, me.tenant_id)
    callee = snapshot.extensions.get((tenant.id, call.dialled))
    if callee is not None:
        step = DialStep((Member(callee.endpoint_id, INTERNAL_RING_S, kind="extension"),), INTERNAL_RING_S)
        return Route((step,), tenant.id, None, caller_id=me.extension, why="internal")
    if len(call.dialled) <= 6:
        return Reject(Reason.EXTENSION_NOT_FOUND, tenant.id)
    if snapshot.blacklist.blocks(tenant.id, "outbound", call.dialled):
        return Reject(Reason.BLACKLISTED, tenant.id)
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
            return Reject(Reason.CALLER_ID_NOT_OWNED, tenant.id)
        cli, why = tenant.caller_ids[0], "outbound+cli_replaced"
    trunks = select_trunks(snapshot.trunk_routes, call.dialled, rng or random.Random())
    if not trunks:
        return Reject(Reason.NO_ROUTE, tenant.id)
    steps = tuple(
        DialStep(
            (Member(call.dialled, EXTERNAL_RING_S, kind="external", via=endpoint_for(t)),), EXTERNAL_RING_S
        )
        for t in trunks
    )
    return Route(steps, tenant.id, None, caller_id=cli, why=why, next_on="congestion")
