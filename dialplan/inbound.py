"""Inbound calls to unified numbers: a pure decision of (snapshot, call, now)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from dialplan.reasons import Reason
from dialplan.snapshot import BoundDestination, ConfigSnapshot


@dataclass(frozen=True, slots=True)
class InboundCall:
    caller: str
    called: str
    linkedid: str


@dataclass(frozen=True, slots=True)
class Route:
    """Ring these destinations, one after another, until one answers."""

    destinations: tuple[BoundDestination, ...]
    tenant_id: int
    number_id: int
    reason: Reason = Reason.ROUTED


@dataclass(frozen=True, slots=True)
class Reject:
    reason: Reason
    tenant_id: int | None = None
    number_id: int | None = None


Decision = Route | Reject


def decide_inbound(snapshot: ConfigSnapshot, call: InboundCall, now: datetime) -> Decision:
    number = snapshot.numbers.get(call.called)
    if number is None:
        return Reject(Reason.UNKNOWN_NUMBER)
    # A number that is not approved (or not assigned) is not in service, whoever holds it.
    if number.state != "active" or number.tenant_id is None:
        return Reject(Reason.NUMBER_NOT_ACTIVE, number.tenant_id, number.id)
    tenant = snapshot.tenants.get(number.tenant_id)
    if tenant is None or tenant.state != "active":
        return Reject(Reason.TENANT_SUSPENDED, number.tenant_id, number.id)
    if not number.destinations:
        return Reject(Reason.NO_DESTINATION, tenant.id, number.id)
    return Route(number.destinations, tenant.id, number.id)
