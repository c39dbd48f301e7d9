"""An incremental reload patches the snapshot; what it gives must be exactly what a full
build of the changed configuration gives. Generated configurations and changes
(hypothesis): the blacklist patched pattern by pattern or scope by scope, tenants' parts
replaced in a copy-on-write draft; the compact blacklist answers as the plain sets of
entries do; the published version a call holds is never touched."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from dialplan.blacklist import ANONYMOUS, Blacklist, BlacklistEntry
from dialplan.snapshot import (
    BoundDestination,
    ConfigSnapshot,
    Extension,
    PinSetting,
    SnapshotDraft,
    Tenant,
    UnifiedNumber,
)
from dialplan.time_policy import TimePolicy

NOW = datetime(2026, 12, 4, 10, tzinfo=UTC)
TENANTS = (1, 2, 3)

patterns = st.one_of(
    st.just(ANONYMOUS),
    st.text("0123456789", min_size=1, max_size=4),  # short ones: prefixes of each other
    st.text("0123456789", min_size=19, max_size=20),  # too long for an 8-byte code
    st.sampled_from(["13800138000", "1380013", "021"]),
)
entries = st.builds(
    BlacklistEntry,
    st.sampled_from((None, *TENANTS)),
    patterns,
    st.sampled_from(("exact", "prefix")),
    st.sampled_from(("inbound", "outbound", "both")),
)


def key(e: BlacklistEntry) -> tuple[int, str, str, str]:
    """The table's unique key (blacklist_unique)."""
    return (e.tenant_id or 0, e.pattern, e.match_kind, e.direction)


def unique(es: list[BlacklistEntry]) -> list[BlacklistEntry]:
    return list({key(e): e for e in es}.values())


def plain_blocks(es: list[BlacklistEntry], tenant_id: int | None, direction: str, number: str) -> str | None:
    """The rule as the original sets of tuples applied it."""
    number = number or ANONYMOUS
    for scope, who in ((0, "platform"), (tenant_id or -1, "tenant")):
        for e in es:
            if (e.tenant_id or 0) != scope or e.direction not in (direction, "both"):
                continue
            if e.match_kind == "prefix" and e.pattern != ANONYMOUS:
                if number != ANONYMOUS and number.startswith(e.pattern):
                    return who
            elif number == e.pattern:
                return who
    return None


@settings(max_examples=150, deadline=None)
@given(st.lists(entries, max_size=30), st.lists(entries, max_size=30), st.data())
def test_blacklist_patched_by_pattern_equals_a_full_build(
    before: list[BlacklistEntry], added: list[BlacklistEntry], data: st.DataObject
) -> None:
    before = unique(before)
    removed = data.draw(st.lists(st.sampled_from(before), max_size=10)) if before else []
    after = unique([e for e in before if e not in removed] + added)
    bl = Blacklist.build(before)
    for scope, pattern in sorted({(e.tenant_id or 0, e.pattern) for e in removed + added}):
        bl = bl.with_pattern(
            scope, pattern, [e for e in after if (e.tenant_id or 0, e.pattern) == (scope, pattern)]
        )
    assert bl == Blacklist.build(after)


@settings(max_examples=100, deadline=None)
@given(st.lists(entries, max_size=30), st.lists(entries, max_size=30))
def test_blacklist_patched_by_scope_equals_a_full_build(
    before: list[BlacklistEntry], after: list[BlacklistEntry]
) -> None:
    before, after = unique(before), unique(after)
    bl = Blacklist.build(before)
    for scope in (0, *TENANTS):
        fresh = Blacklist.build([e for e in after if (e.tenant_id or 0) == scope])
        bl = bl.with_scope(scope, {d: lst for (_s, d), lst in fresh.lists.items()})
    assert bl == Blacklist.build(after)


callers = st.one_of(patterns, st.just(""), st.text("0123456789+", max_size=22))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(entries, max_size=25),
    callers,
    st.sampled_from((None, *TENANTS)),
    st.sampled_from(("inbound", "outbound")),
)
def test_the_compact_blacklist_answers_as_the_plain_entries(
    es: list[BlacklistEntry], number: str, tenant_id: int | None, direction: str
) -> None:
    es = unique(es)
    # numbers the entries block or nearly block, besides the generated one
    for candidate in {number, *(e.pattern for e in es), *(e.pattern + "5" for e in es)}:
        assert Blacklist.build(es).blocks(tenant_id, direction, candidate) == plain_blocks(
            es, tenant_id, direction, candidate
        ), candidate


OFFICE = TimePolicy.parse(
    {
        "weekly": [{"days": ["mon"], "start": "09:00", "end": "18:00"}],
        "default": {"kind": "group", "ref": "night"},
    }
)


@st.composite
def configurations(draw: st.DrawFn) -> tuple[list[Tenant], list[UnifiedNumber], list[Extension]]:
    tenants = [
        Tenant(t, f"t{t}", draw(st.sampled_from(("active", "suspended"))), caller_ids=(f"9{t}",))
        for t in draw(st.sets(st.sampled_from(TENANTS)))
    ]
    numbers = []
    for i, number in enumerate(sorted(draw(st.sets(st.sampled_from([f"400{k}" for k in range(8)]))))):
        dests = tuple(
            BoundDestination(
                f"13{i}{j}", draw(st.sampled_from((20, 30))), draw(st.sampled_from(("default", "night")))
            )
            for j in range(draw(st.integers(0, 2)))
        )
        numbers.append(
            UnifiedNumber(
                i,
                number,
                draw(st.sampled_from(("active", "pending_approval"))),
                draw(st.sampled_from((None, *TENANTS))),
                dests,
                time_policy=draw(st.sampled_from((None, OFFICE))),
                pin=draw(st.sampled_from((None, PinSetting("salt$hash")))),
            )
        )
    exts = [
        Extension(t, e, f"ep{t}-{e}")
        for t in TENANTS
        for e in sorted(draw(st.sets(st.sampled_from(("801", "802")))))
    ]
    return tenants, numbers, exts


def built(
    config: tuple[list[Tenant], list[UnifiedNumber], list[Extension]], generation: int
) -> ConfigSnapshot:
    tenants, numbers, exts = config
    return ConfigSnapshot.build(tenants, numbers, NOW, generation, extensions=exts)


def part(config: tuple[list[Tenant], list[UnifiedNumber], list[Extension]], tenant_id: int) -> dict:  # type: ignore[type-arg]
    tenants, numbers, exts = config
    records, policies = SnapshotDraft.records_of(n for n in numbers if n.tenant_id == tenant_id)
    return {
        "tenant": next((t for t in tenants if t.id == tenant_id), None),
        "numbers": records,
        "policies": policies,
        "extensions": [e for e in exts if e.tenant_id == tenant_id],
        "menus": None,
    }


@settings(max_examples=150, deadline=None)
@given(configurations(), configurations())
def test_tenants_replaced_in_a_draft_equal_a_full_build(
    before: tuple[list[Tenant], list[UnifiedNumber], list[Extension]],
    after: tuple[list[Tenant], list[UnifiedNumber], list[Extension]],
) -> None:
    _, numbers_after, _ = after
    published = built(before, 1)
    frozen = (dict(published.tenants), dict(published.numbers.items()), dict(published.owned))
    draft = SnapshotDraft(published)
    for tenant_id in TENANTS:
        p = part(after, tenant_id)
        draft.replace_tenant(tenant_id, p["tenant"], p["numbers"], p["policies"], p["extensions"], p["menus"])
    # then the numbers no tenant held before or holds now, read again whatever they are now
    now = {n.number: n for n in numbers_after}
    touched = {k for k, n in published.numbers.items() if n.tenant_id is None}
    touched |= {k for k, n in now.items() if n.tenant_id is None}
    for number in sorted(touched):
        draft.drop_number(number)
        if number in now:
            records, policies = SnapshotDraft.records_of([now[number]])
            draft.put_record(records[0], policies)
    patched = draft.finish(NOW, 2)
    full = built(after, 2)
    assert patched == full
    assert {t: set(k.numbers) for t, k in patched.owned.items() if k.numbers} == {
        t: set(k.numbers) for t, k in full.owned.items() if k.numbers
    }
    # the version a call in flight holds is as it was
    assert (dict(published.tenants), dict(published.numbers.items()), dict(published.owned)) == frozen


def test_a_number_record_reads_back_as_the_number() -> None:
    n = UnifiedNumber(
        7,
        "4008001234",
        "active",
        3,
        (BoundDestination("13800138000", 20, "night", 2, "fixed"), BoundDestination("801", kind="extension")),
        distribution="weighted",
        time_policy=OFFICE,
        pin=PinSetting("s$h", 5),
        greeting="hello",
        caller_id_mode="unified",
        whisper=True,
        final_action="voicemail",
        recording_policy="all",
    )
    snap = ConfigSnapshot.build(
        [Tenant(3, "t3", "active")], [n, replace(n, number="4008001235", tenant_id=None)], NOW, 1
    )
    assert snap.numbers["4008001234"] == n
    assert snap.numbers.get("4008001235") == replace(n, number="4008001235", tenant_id=None)
    assert snap.numbers.get("4008009999") is None
    assert snap.owned[3].numbers == ("4008001234",)
