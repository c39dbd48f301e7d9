"""Outbound trunk selection: the routes whose prefix is the longest match of the dialled
number, ordered by priority (lower first), and within one priority by a weighted random
draw; disabled trunks are skipped. The caller fails over down the list on congestion."""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TrunkRoute:
    trunk: str  # the trunk's name (its PJSIP endpoint is trunk-<name>)
    prefix: str
    priority: int = 100
    weight: int = 100
    enabled: bool = True
    # host:port of the trunk's far end: what an engine without per-trunk endpoints
    # (FreeSWITCH's carrier profile) dials directly.
    address: str = ""


def select_trunks(routes: Iterable[TrunkRoute], number: str, rng: random.Random) -> tuple[str, ...]:
    matching = [r for r in routes if r.enabled and number.startswith(r.prefix)]
    if not matching:
        return ()
    longest = max(len(r.prefix) for r in matching)
    best = [r for r in matching if len(r.prefix) == longest]
    ordered: list[str] = []
    for priority in sorted({r.priority for r in best}):
        tier = [r for r in best if r.priority == priority]
        while tier:
            pick = rng.choices(range(len(tier)), weights=[r.weight for r in tier])[0]
            trunk = tier.pop(pick).trunk
            if trunk not in ordered:
                ordered.append(trunk)
    return tuple(ordered)


def endpoint_for(trunk: str) -> str:
    return f"trunk-{trunk}"


def addresses(routes: Iterable[TrunkRoute]) -> dict[str, str]:
    """Each routed trunk's endpoint name (as a decision's ``via`` names it) -> host:port."""
    return {endpoint_for(r.trunk): r.address for r in routes if r.address}


def dial_strings(trunks: Sequence[str], number: str) -> tuple[str, ...]:
    return tuple(f"PJSIP/{number}@{endpoint_for(t)}" for t in trunks)
