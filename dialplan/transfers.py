"""Transfers during a call — DTMF blind (#1) and attended (*2) transfers, and SIP REFER from
a phone: where the transferred party goes, decided like any other call. Pure.

The target is one of:
- an extension of the call's tenant: an internal leg, free, showing the transferred
  party's own number;
- a destination bound to the unified number the call came in on: a forwarded leg like the
  number's own (its caller-ID mode), paid for by the tenant;
- when one of the tenant's extensions transfers, anything that extension may call itself
  (dialplan.extension_calls: its own numbers, outside numbers through a trunk with an
  owned caller ID, the outbound blacklist...), with the same refusals.
Anything else is refused (TRANSFER_NOT_ALLOWED); so is a transfer by a party that is not
the tenant's (the carrier's caller on an inbound call may not transfer at all: see
``transfer_options``)."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from dialplan.distribution import DialStep, Member, Memory
from dialplan.extension_calls import INTERNAL_RING_S, ExtensionCall, decide_extension_call
from dialplan.inbound import Reject, Route, pbx_member
from dialplan.legs import ON_NET, Direction, Leg
from dialplan.reasons import Reason
from dialplan.snapshot import ConfigSnapshot

# Dial options (Asterisk features.conf): the called party may transfer the caller ("t"),
# the caller may transfer the called party ("T").
CALLEE_TRANSFERS = "t"
CALLER_TRANSFERS = "T"


class TransferKind(StrEnum):
    BLIND = "blind"  # DTMF #1: the transferor leaves at once
    ATTENDED = "attended"  # DTMF *2: the transferor consults the target first
    REFER = "refer"  # SIP REFER from the transferor's phone (blind)


@dataclass(frozen=True, slots=True)
class TransferRequest:
    linkedid: str
    target: str  # the digits keyed (or the REFER's Refer-To user part)
    transferor: str  # the PJSIP endpoint of the party that transferred ('' if unknown)
    tenant_id: int | None  # the tenant of the call's first decision
    number: str = ""  # the unified number the call came in on ('' if none)
    kind: TransferKind = TransferKind.BLIND


def decide_transfer(
    snapshot: ConfigSnapshot,
    req: TransferRequest,
    now: datetime,
    rng: random.Random | None = None,
    memory: Callable[[tuple[int, str]], Memory] | None = None,
) -> Leg:
    """The new leg for the transferred party (a Route), or the refusal with its reason."""
    tenant = snapshot.tenants.get(req.tenant_id) if req.tenant_id is not None else None
    if tenant is None:
        return _refused(Reason.TRANSFER_NOT_ALLOWED, None, None)
    number = snapshot.numbers.get(req.number) if req.number else None
    if number is not None and number.tenant_id != tenant.id:
        number = None
    number_id = number.id if number is not None else None
    if tenant.state != "active":
        return _refused(Reason.TENANT_SUSPENDED, tenant.id, number_id)
    me = snapshot.endpoints.get(req.transferor)
    by_extension = me is not None and me.tenant_id == tenant.id
    # A party that is neither the tenant's extension nor the answering destination of an
    # inbound call (the only other party given the transfer feature) may not transfer.
    if not by_extension and number is None:
        return _refused(Reason.TRANSFER_NOT_ALLOWED, tenant.id, None)
    callee = snapshot.extensions.get((tenant.id, req.target))
    if callee is not None:
        member = Member(callee.endpoint_id, INTERNAL_RING_S, kind="extension", fax=callee.fax_allowed)
        step = DialStep((member,), INTERNAL_RING_S)
        route = Route((step,), tenant.id, number_id, why=f"transfer:{req.kind}")
        return Leg(route, Direction.INTERNAL, billable=False, transfer=CALLEE_TRANSFERS)
    pbx = snapshot.pbx_behind(tenant.id, req.target)
    if pbx is not None:  # an extension of another site, behind the enterprise's own PBX
        step = DialStep((pbx_member(req.target, pbx, INTERNAL_RING_S),), INTERNAL_RING_S)
        route = Route((step,), tenant.id, number_id, why=f"transfer:{req.kind}+pbx")
        return Leg(route, Direction.INTERNAL, billable=False, transfer=CALLEE_TRANSFERS)
    bound = None
    if number is not None:
        bound = next(
            (d for d in number.destinations if d.kind not in ON_NET and d.destination == req.target), None
        )
    if number is not None and bound is not None:
        step = DialStep(
            (Member(bound.destination, bound.ring_timeout_s, kind=bound.kind),), bound.ring_timeout_s
        )
        route = Route(
            (step,),
            tenant.id,
            number.id,
            caller_id=number.number if number.caller_id_mode == "unified" else "",
            final_action="hangup",
            why=f"transfer:{req.kind}",
        )
        return Leg(route, Direction.INBOUND, transfer=CALLEE_TRANSFERS)
    if not by_extension or me is None:
        return _refused(Reason.TRANSFER_NOT_ALLOWED, tenant.id, number_id)
    leg = decide_extension_call(
        snapshot, ExtensionCall(me.endpoint_id, req.target, req.linkedid), now, rng, memory
    )
    decision = leg.decision
    if isinstance(decision, Route):
        decision = dataclasses.replace(
            decision, final_action="hangup", why=f"transfer:{req.kind}:{decision.why}"
        )
    elif not isinstance(decision, Reject):
        # an own number with a PIN or a menu: a transferred caller is not put through those
        return _refused(Reason.TRANSFER_NOT_ALLOWED, tenant.id, number_id)
    return dataclasses.replace(leg, decision=decision, transfer=CALLEE_TRANSFERS)


def _refused(reason: Reason, tenant_id: int | None, number_id: int | None) -> Leg:
    return Leg(Reject(reason, tenant_id, number_id), Direction.INTERNAL, billable=False, transfer="")


def transfer_options(leg: Leg) -> str:
    """Who of a routed leg's two parties may transfer the other by DTMF: the tenant's own
    parties only. On an inbound call the answering destination; on an outbound one the
    extension that called (never the outside party, whose keypad is not the tenant's); on
    an internal one both. A transfer leg says for itself (the target may transfer on)."""
    if leg.transfer is not None:
        return leg.transfer
    if leg.direction is Direction.INBOUND:
        return CALLEE_TRANSFERS
    if leg.direction is Direction.OUTBOUND:
        return CALLER_TRANSFERS
    return CALLEE_TRANSFERS + CALLER_TRANSFERS
