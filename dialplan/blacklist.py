"""Blacklists: platform-wide and per tenant, exact numbers and prefixes, by direction.
Built once per snapshot into sets, so a check is a handful of set look-ups whatever the
list's size (a prefix check tries each prefix length of the number, at most 20)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

ANONYMOUS = "anonymous"


@dataclass(frozen=True, slots=True)
class BlacklistEntry:
    tenant_id: int | None  # None: platform-wide
    pattern: str  # digits, or "anonymous"
    match_kind: str  # exact | prefix
    direction: str  # inbound | outbound | both


@dataclass(frozen=True, slots=True)
class Blacklist:
    exact: frozenset[tuple[int, str, str]] = field(default_factory=frozenset)  # (tenant or 0, dir, number)
    prefixes: frozenset[tuple[int, str, str]] = field(default_factory=frozenset)
    max_prefix: int = 0

    @staticmethod
    def build(entries: Iterable[BlacklistEntry]) -> Blacklist:
        exact: set[tuple[int, str, str]] = set()
        prefixes: set[tuple[int, str, str]] = set()
        longest = 0
        for e in entries:
            scope = e.tenant_id or 0
            dirs = ("inbound", "outbound") if e.direction == "both" else (e.direction,)
            for d in dirs:
                if e.match_kind == "prefix" and e.pattern != ANONYMOUS:
                    prefixes.add((scope, d, e.pattern))
                    longest = max(longest, len(e.pattern))
                else:
                    exact.add((scope, d, e.pattern))
        return Blacklist(frozenset(exact), frozenset(prefixes), longest)

    def blocks(self, tenant_id: int | None, direction: str, number: str) -> str | None:
        """'platform' or 'tenant' if the number is blocked for this tenant, else None.
        An empty caller number is treated as anonymous."""
        number = number or ANONYMOUS
        for scope, who in ((0, "platform"), (tenant_id or -1, "tenant")):
            if (scope, direction, number) in self.exact:
                return who
            if number != ANONYMOUS and self.prefixes:
                for n in range(1, min(len(number), self.max_prefix) + 1):
                    if (scope, direction, number[:n]) in self.prefixes:
                        return who
        return None
