"""Blacklists: platform-wide and per tenant, exact numbers and prefixes, by direction.

A platform holds millions of entries, so each (scope, direction) keeps its exact numbers
and its prefixes as two sorted arrays of 8-byte codes (a pattern of up to 18 digits, "1" +
digits read as an integer: no str objects, no set slots) searched by bisection, a prefix
at each of the few prefix lengths the scope holds. What does not encode (``anonymous``,
19 or 20 digits) sits in a set beside the arrays. A change to one pattern patches one scope's
lists and shares every other scope with the previous version (copy-on-write)."""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from itertools import islice
from operator import lt
from types import MappingProxyType

ANONYMOUS = "anonymous"
DIRECTIONS = ("inbound", "outbound")
_MAX_CODED_DIGITS = 18  # "1" + 18 digits < 2**64
_NOTHING: frozenset[str] = frozenset()


def code_of(number: str) -> int | None:
    """The number's 8-byte code, or None for what is not 1-18 ASCII digits. Codes sort
    as (length, digits) do, which is how the database hands patterns over."""
    if 0 < len(number) <= _MAX_CODED_DIGITS and number.isascii() and number.isdigit():
        return int("1" + number)
    return None


@dataclass(frozen=True, slots=True)
class BlacklistEntry:
    tenant_id: int | None  # None: platform-wide
    pattern: str  # digits, or "anonymous"
    match_kind: str  # exact | prefix
    direction: str  # inbound | outbound | both


@dataclass(frozen=True, slots=True)
class ScopeList:
    """One scope's entries for one direction."""

    exact: array[int]  # sorted codes, no duplicates
    prefixes: array[int] = field(default_factory=lambda: array("Q"))  # sorted codes
    other: frozenset[str] = _NOTHING  # exact patterns without a code
    long_prefixes: frozenset[str] = _NOTHING  # prefixes without a code (19-20 digits)
    prefix_lengths: tuple[int, ...] = ()  # the distinct lengths of all prefixes, ascending

    @staticmethod
    def of(
        codes: Iterable[int],
        other: Iterable[str] = (),
        prefix_codes: Iterable[int] = (),
        long_prefixes: Iterable[str] = (),
    ) -> ScopeList:
        """From codes, fastest sorted and distinct (as the database hands them over)."""
        exact = _sorted_codes(codes)
        fixes = _sorted_codes(prefix_codes)
        longs = frozenset(long_prefixes)
        lengths = {len(p) for p in longs}
        lengths.update(n for n in range(1, _MAX_CODED_DIGITS + 1) if _has_length(fixes, n))
        return ScopeList(
            exact, fixes, frozenset(other) or _NOTHING, longs or _NOTHING, tuple(sorted(lengths))
        )

    def blocks(self, number: str, code: int | None) -> bool:
        if code is not None:
            if _holds(self.exact, code):
                return True
        elif number in self.other:
            return True
        if self.prefix_lengths and number != ANONYMOUS:
            size = len(number)
            for n in self.prefix_lengths:
                if n > size:
                    break
                head = number[:n]
                c = code_of(head)
                if (c is not None and _holds(self.prefixes, c)) or (c is None and head in self.long_prefixes):
                    return True
        return False

    def __len__(self) -> int:
        return len(self.exact) + len(self.prefixes) + len(self.other) + len(self.long_prefixes)

    def without(self, pattern: str) -> ScopeList:
        """This list with `pattern` neither an exact entry nor a prefix."""
        code = code_of(pattern)
        exact, fixes = self.exact, self.prefixes
        other, longs, lengths = self.other, self.long_prefixes, self.prefix_lengths
        if code is not None:
            exact = _without(exact, code)
            fixes = _without(fixes, code)
            if fixes is not self.prefixes and not _has_length(fixes, len(pattern)):
                lengths = tuple(n for n in lengths if n != len(pattern))
        else:
            other = other - {pattern} if pattern in other else other
            if pattern in longs:
                longs = longs - {pattern}
                if not any(len(p) == len(pattern) for p in longs):
                    lengths = tuple(n for n in lengths if n != len(pattern))
        return ScopeList(exact, fixes, other or _NOTHING, longs or _NOTHING, lengths)

    def with_entry(self, pattern: str, prefix: bool) -> ScopeList:
        code = code_of(pattern)
        if prefix and pattern != ANONYMOUS:
            lengths = tuple(sorted({*self.prefix_lengths, len(pattern)}))
            if code is not None:
                return replace(self, prefixes=_with(self.prefixes, code), prefix_lengths=lengths)
            return replace(self, long_prefixes=self.long_prefixes | {pattern}, prefix_lengths=lengths)
        if code is None:
            return replace(self, other=self.other | {pattern})
        return replace(self, exact=_with(self.exact, code))


def _sorted_codes(codes: Iterable[int]) -> array[int]:
    a = array("Q", codes)
    if len(a) > 1 and not all(map(lt, a, islice(a, 1, None))):  # not strictly ascending
        a = array("Q", sorted(set(a)))
    return a


def _holds(codes: array[int], code: int) -> bool:
    i = bisect_left(codes, code)
    return i < len(codes) and codes[i] == code


def _has_length(codes: array[int], n: int) -> bool:
    """Whether a code of an n-digit pattern is in `codes` (they lie in [10**n, 2 * 10**n))."""
    i = bisect_left(codes, 10**n)
    return i < len(codes) and codes[i] < 2 * 10**n


def _without(codes: array[int], code: int) -> array[int]:
    i = bisect_left(codes, code)
    if i < len(codes) and codes[i] == code:
        return codes[:i] + codes[i + 1 :]
    return codes


def _with(codes: array[int], code: int) -> array[int]:
    i = bisect_left(codes, code)
    if i < len(codes) and codes[i] == code:
        return codes
    return codes[:i] + array("Q", (code,)) + codes[i:]


class _ScopeListBuilder:
    __slots__ = ("exact", "prefixes", "other", "long_prefixes")

    def __init__(self) -> None:
        self.exact: set[int] = set()
        self.prefixes: set[int] = set()
        self.other: set[str] = set()
        self.long_prefixes: set[str] = set()

    def add(self, pattern: str, prefix: bool) -> None:
        code = code_of(pattern)
        if prefix and pattern != ANONYMOUS:
            if code is not None:
                self.prefixes.add(code)
            else:
                self.long_prefixes.add(pattern)
        elif code is None:
            self.other.add(pattern)
        else:
            self.exact.add(code)

    def finish(self) -> ScopeList:
        return ScopeList.of(sorted(self.exact), self.other, sorted(self.prefixes), self.long_prefixes)


class BlacklistBuilder:
    """Collects entries (fastest in the database's order: scope, then length and digits of
    the pattern; any order is right) into a Blacklist."""

    __slots__ = ("_lists",)

    def __init__(self) -> None:
        self._lists: dict[tuple[int, str], _ScopeListBuilder] = {}

    def add(self, tenant_id: int | None, pattern: str, match_kind: str, direction: str) -> None:
        prefix = match_kind == "prefix"
        scope = tenant_id or 0
        for d in DIRECTIONS if direction == "both" else (direction,):
            lst = self._lists.get((scope, d))
            if lst is None:
                lst = self._lists[(scope, d)] = _ScopeListBuilder()
            lst.add(pattern, prefix)

    def finish(self) -> Blacklist:
        return Blacklist(MappingProxyType({key: b.finish() for key, b in self._lists.items()}))


@dataclass(frozen=True, slots=True)
class Blacklist:
    # (tenant id or 0 for the platform, direction) -> its entries; no empty lists
    lists: Mapping[tuple[int, str], ScopeList] = field(default_factory=lambda: MappingProxyType({}))

    @staticmethod
    def build(entries: Iterable[BlacklistEntry]) -> Blacklist:
        builder = BlacklistBuilder()
        for e in entries:
            builder.add(e.tenant_id, e.pattern, e.match_kind, e.direction)
        return builder.finish()

    def __len__(self) -> int:
        """Entries per direction ('both' counts twice)."""
        return sum(len(lst) for lst in self.lists.values())

    def blocks(self, tenant_id: int | None, direction: str, number: str) -> str | None:
        """'platform' or 'tenant' if the number is blocked for this tenant, else None.
        An empty caller number is treated as anonymous."""
        number = number or ANONYMOUS
        code = code_of(number)
        platform = self.lists.get((0, direction))
        if platform is not None and platform.blocks(number, code):
            return "platform"
        own = self.lists.get((tenant_id or -1, direction))
        if own is not None and own.blocks(number, code):
            return "tenant"
        return None

    def with_scope(self, tenant_id: int | None, lists: Mapping[str, ScopeList]) -> Blacklist:
        """This blacklist with one scope's lists (by direction) replaced by `lists`."""
        scope = tenant_id or 0
        changed = dict(self.lists)
        for d in DIRECTIONS:
            lst = lists.get(d)
            if lst is not None and len(lst):
                changed[(scope, d)] = lst
            else:
                changed.pop((scope, d), None)
        return Blacklist(MappingProxyType(changed))

    def with_pattern(
        self, tenant_id: int | None, pattern: str, entries: Iterable[BlacklistEntry]
    ) -> Blacklist:
        """This blacklist with what one scope holds for `pattern` (exact or prefix, any
        direction) replaced by `entries` (all that scope's entries of that pattern)."""
        scope = tenant_id or 0
        wanted: dict[str, list[bool]] = {d: [] for d in DIRECTIONS}
        for e in entries:
            for d in DIRECTIONS if e.direction == "both" else (e.direction,):
                wanted[d].append(e.match_kind == "prefix")
        lists = dict(self.lists)
        for d in DIRECTIONS:
            old = lists.get((scope, d))
            lst = old.without(pattern) if old is not None else ScopeList(array("Q"))
            for prefix in wanted[d]:
                lst = lst.with_entry(pattern, prefix)
            if len(lst):
                lists[(scope, d)] = lst
            else:
                lists.pop((scope, d), None)
        return Blacklist(MappingProxyType(lists))
