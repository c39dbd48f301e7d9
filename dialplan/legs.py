"""How a decided call is carried, as typed values rather than notes in a decision's `why`:
which way the call goes (the call record's direction), whether the enterprise's package
pays for it, and what the far end is shown of the caller. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum

from dialplan.inbound import Decision, Route


class Direction(StrEnum):
    INBOUND = "inbound"  # from the carrier to a unified number
    OUTBOUND = "outbound"  # from an extension to an outside number, through a trunk
    INTERNAL = "internal"  # from an extension to its tenant's extensions or own numbers


class CallerName(Enum):
    """The display name the destinations see (SS_CALLERID_NAME)."""

    KEEP = "keep"  # the caller's own (an extension's name, inside the platform)
    NONE = "none"  # none at all: only the caller ID number, which the tenant owns


@dataclass(frozen=True, slots=True)
class Leg:
    decision: Decision
    direction: Direction
    # the enterprise's package pays (a channel and talk time are reserved before ringing)
    billable: bool = True
    caller_name: CallerName = CallerName.KEEP
    # Dial options for DTMF transfers ("t": the called party may, "T": the caller may);
    # None: by direction (dialplan.transfers.transfer_options).
    transfer: str | None = None


def leaves_the_platform(route: Route) -> bool:
    """Whether any destination of the route is reached through a carrier trunk (an
    extension and a customer's PBX trunk are on-net)."""
    return any(m.kind not in ON_NET for step in route.steps for m in step.members)


ON_NET = frozenset({"extension", "pbx"})
