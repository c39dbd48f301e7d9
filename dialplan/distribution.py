"""Smart call distribution (智能话务分配): the order in which a group's destinations ring.

Pure: the memory it needs (where round-robin stands, when each destination last took a
call) is passed in as a value; the service keeps it and updates it at the edge."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Strategy(StrEnum):
    SEQUENTIAL = "sequential"  # in position order, each until its ring timeout
    SIMULTANEOUS = "simultaneous"  # ring all at once; the first to answer takes it
    ROUND_ROBIN = "round_robin"  # start one further along each call
    LONGEST_IDLE = "longest_idle"  # the destination idle the longest first
    WEIGHTED = "weighted"  # random order, biased by weight


@dataclass(frozen=True, slots=True)
class Member:
    destination: str
    ring_timeout_s: int = 30
    weight: int = 1
    kind: str = "mobile"  # mobile | fixed | extension | external | pbx
    # the trunk's endpoint an external number is dialled through ('' = default); for a pbx
    # member, the PBX's endpoint (the destination is the Request-URI's user part)
    via: str = ""
    # an extension allowed to fax (T.38; seed 001: a SIP phone, never a voice gateway):
    # FreeSWITCH's leg variables (Asterisk's endpoint carries it as t38_udptl)
    fax: bool = False


@dataclass(frozen=True, slots=True)
class DialStep:
    """Destinations rung together, for up to timeout_s."""

    members: tuple[Member, ...]
    timeout_s: int


@dataclass(frozen=True, slots=True)
class Memory:
    round_robin_next: int = 0  # index of the member to start with
    last_call: Mapping[str, datetime] | None = None  # destination -> last time it was offered a call


def plan(
    strategy: Strategy, members: Sequence[Member], memory: Memory, rng: random.Random
) -> tuple[DialStep, ...]:
    if not members:
        return ()
    if strategy is Strategy.SIMULTANEOUS:
        return (DialStep(tuple(members), max(m.ring_timeout_s for m in members)),)
    if strategy is Strategy.ROUND_ROBIN:
        start = memory.round_robin_next % len(members)
        ordered = list(members[start:]) + list(members[:start])
    elif strategy is Strategy.LONGEST_IDLE:
        last = memory.last_call or {}
        # Never-called destinations first (in position order), then the oldest last call.
        ordered = sorted(
            members,
            key=lambda m: (m.destination in last, last.get(m.destination, datetime.min)),
        )
    elif strategy is Strategy.WEIGHTED:
        pool = list(members)
        ordered = []
        while pool:
            pick = rng.choices(range(len(pool)), weights=[max(m.weight, 1) for m in pool])[0]
            ordered.append(pool.pop(pick))
    else:
        ordered = list(members)
    return tuple(DialStep((m,), m.ring_timeout_s) for m in ordered)
