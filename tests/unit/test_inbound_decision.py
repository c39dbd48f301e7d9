"""decide_inbound(snapshot, call, now): one table row per outcome, plus a property over
generated snapshots."""

from __future__ import annotations

from datetime import UTC, datetime
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialplan.distribution import DialStep, Member
from dialplan.inbound import InboundCall, Reject, Route, decide_inbound
from dialplan.reasons import Reason
from dialplan.snapshot import BoundDestination, ConfigSnapshot, Tenant, UnifiedNumber

NOW = datetime(2026, 11, 23, 14, 30, tzinfo=UTC)

MOBILE = BoundDestination("13800138000", 20)
FIXED = BoundDestination("02112345678", 45)


def snapshot_of(*numbers: UnifiedNumber) -> ConfigSnapshot:
    tenants = [
        Tenant(1, "Acme", "active"),
        Tenant(2, "Sleepy", "suspended"),
        Tenant(3, "Gone", "terminated"),
    ]
    return ConfigSnapshot.build(tenants, list(numbers), NOW, generation=7)


def call_to(called: str) -> InboundCall:
    return InboundCall(caller="13900139000", called=called, linkedid="1700000000.1")


# number, called, expected decision
CASES = [
    pytest.param(
        UnifiedNumber(10, "4001234567", "active", 1, (MOBILE, FIXED)),
        "4001234567",
        Route(
            (
                DialStep((Member(MOBILE.destination, MOBILE.ring_timeout_s),), MOBILE.ring_timeout_s),
                DialStep(
                    (Member(FIXED.destination, FIXED.ring_timeout_s, kind=FIXED.kind),), FIXED.ring_timeout_s
                ),
            ),
            tenant_id=1,
            number_id=10,
            why="default",
        ),
        id="routed",
    ),
    pytest.param(
        UnifiedNumber(10, "4001234567", "active", 1, (MOBILE,)),
        "4009999999",
        Reject(Reason.UNKNOWN_NUMBER),
        id="unknown-number",
    ),
    pytest.param(
        UnifiedNumber(11, "4001234568", "active", 2, (MOBILE,)),
        "4001234568",
        Reject(Reason.TENANT_SUSPENDED, 2, 11),
        id="tenant-suspended",
    ),
    pytest.param(
        UnifiedNumber(12, "4001234569", "active", 3, (MOBILE,)),
        "4001234569",
        Reject(Reason.TENANT_SUSPENDED, 3, 12),
        id="tenant-terminated",
    ),
    pytest.param(
        UnifiedNumber(13, "4001234570", "active", None, (MOBILE,)),
        "4001234570",
        Reject(Reason.NUMBER_NOT_ACTIVE, None, 13),
        id="unassigned-number-not-in-service",
    ),
    pytest.param(
        UnifiedNumber(14, "4001234571", "active", 99, (MOBILE,)),
        "4001234571",
        Reject(Reason.TENANT_SUSPENDED, 99, 14),
        id="tenant-id-not-in-snapshot",
    ),
    *[
        pytest.param(
            UnifiedNumber(20, "95123", state, 1, (MOBILE,)),
            "95123",
            Reject(Reason.NUMBER_NOT_ACTIVE, 1, 20),
            id=f"number-{state}",
        )
        for state in ("reserved", "pending_approval", "suspended", "released")
    ],
    pytest.param(
        UnifiedNumber(30, "4001230000", "active", 1, ()),
        "4001230000",
        Reject(Reason.NO_DESTINATION, 1, 30),
        id="no-destination",
    ),
]


@pytest.mark.parametrize(("number", "called", "expected"), CASES)
def test_decide_inbound_table(number: UnifiedNumber, called: str, expected: Route | Reject) -> None:
    assert decide_inbound(snapshot_of(number), call_to(called), NOW) == expected


def test_route_keeps_destinations_in_order_with_their_ring_timeouts() -> None:
    dests = (BoundDestination("13800138000", 15), BoundDestination("13900139000", 25), FIXED)
    number = UnifiedNumber(10, "4001234567", "active", 1, dests)
    decision = decide_inbound(snapshot_of(number), call_to("4001234567"), NOW)
    assert isinstance(decision, Route)
    assert [(s.members[0].destination, s.timeout_s) for s in decision.steps] == [
        ("13800138000", 15),
        ("13900139000", 25),
        ("02112345678", 45),
    ]
    assert decision.reason is Reason.ROUTED


@pytest.mark.parametrize(
    ("reason", "code", "cause"),
    [
        (Reason.ROUTED, "ROUTED", 16),
        (Reason.UNKNOWN_NUMBER, "UNKNOWN_NUMBER", 1),
        (Reason.NUMBER_NOT_ACTIVE, "NUMBER_NOT_ACTIVE", 1),
        (Reason.TENANT_SUSPENDED, "TENANT_SUSPENDED", 21),
        (Reason.NO_DESTINATION, "NO_DESTINATION", 3),
        (Reason.ALL_DESTINATIONS_FAILED, "ALL_DESTINATIONS_FAILED", 19),
        (Reason.CONTROL_PLANE_UNAVAILABLE, "CONTROL_PLANE_UNAVAILABLE", 34),
        (Reason.BLACKLISTED, "BLACKLISTED", 21),
        (Reason.PIN_FAILED, "PIN_FAILED", 21),
        (Reason.REGION_DENIED, "REGION_DENIED", 21),
        (Reason.CLOSED, "CLOSED", 16),
        (Reason.VOICEMAIL, "VOICEMAIL", 16),
        (Reason.IVR, "IVR", 16),
        (Reason.EXTENSION_NOT_FOUND, "EXTENSION_NOT_FOUND", 1),
        (Reason.NO_ROUTE, "NO_ROUTE", 3),
        (Reason.CALLER_ID_NOT_OWNED, "CALLER_ID_NOT_OWNED", 21),
        (Reason.EXTENSION_UNKNOWN, "EXTENSION_UNKNOWN", 21),
        (Reason.NO_BALANCE, "NO_BALANCE", 21),
        (Reason.CHANNEL_LIMIT, "CHANNEL_LIMIT", 17),
        (Reason.BILLING_UNAVAILABLE, "BILLING_UNAVAILABLE", 34),
        (Reason.BALANCE_EXHAUSTED, "BALANCE_EXHAUSTED", 16),
        (Reason.CALLING_HOURS, "CALLING_HOURS", 21),
        (Reason.CALLEE_FREQUENCY, "CALLEE_FREQUENCY", 21),
        (Reason.OUTBOUND_SUSPENDED, "OUTBOUND_SUSPENDED", 21),
        (Reason.OUTBOUND_THROTTLED, "OUTBOUND_THROTTLED", 34),
        (Reason.SPEND_CAP, "SPEND_CAP", 21),
        (Reason.TRANSFER_NOT_ALLOWED, "TRANSFER_NOT_ALLOWED", 21),
        (Reason.PBX_UNREGISTERED, "PBX_UNREGISTERED", 20),
    ],
)
def test_reason_code_and_q850_cause(reason: Reason, code: str, cause: int) -> None:
    assert (reason.code, reason.cause) == (code, cause)


def test_every_reason_is_covered_by_the_cause_table() -> None:
    table = test_reason_code_and_q850_cause.pytestmark[0].args[1]  # type: ignore[attr-defined]
    assert {r for r, _, _ in table} == set(Reason)


def test_empty_snapshot_rejects_as_unknown() -> None:
    assert decide_inbound(ConfigSnapshot(), call_to("4001234567"), NOW) == Reject(Reason.UNKNOWN_NUMBER)


def test_snapshot_mappings_are_read_only() -> None:
    snap = snapshot_of(UnifiedNumber(10, "4001234567", "active", 1, (MOBILE,)))
    assert isinstance(snap.tenants, MappingProxyType)
    assert isinstance(snap.numbers, MappingProxyType)
    with pytest.raises(TypeError):
        snap.tenants[4] = Tenant(4, "Intruder", "active")  # type: ignore[index]
    with pytest.raises(TypeError):
        snap.numbers["4001234567"] = UnifiedNumber(99, "4001234567", "active", 1)  # type: ignore[index]
    with pytest.raises(TypeError):
        del snap.numbers["4001234567"]  # type: ignore[attr-defined]
    assert isinstance(ConfigSnapshot().tenants, MappingProxyType)
    assert isinstance(ConfigSnapshot().numbers, MappingProxyType)


def test_snapshot_is_frozen() -> None:
    snap = ConfigSnapshot()
    with pytest.raises(AttributeError):
        snap.generation = 2  # type: ignore[misc]


# --- property: Route iff number, tenant and state line up --------------------------------

TENANT_STATES = ("active", "suspended", "terminated")
NUMBER_STATES = ("reserved", "pending_approval", "active", "suspended", "released")

tenants_st = st.lists(
    st.builds(
        Tenant,
        id=st.integers(1, 6),
        name=st.text(max_size=5),
        state=st.sampled_from(TENANT_STATES),
    ),
    max_size=6,
    unique_by=lambda t: t.id,
)
destinations_st = st.lists(
    st.builds(
        BoundDestination,
        destination=st.from_regex(r"[0-9]{4,11}", fullmatch=True),
        ring_timeout_s=st.integers(1, 120),
    ),
    max_size=3,
).map(tuple)
numbers_st = st.lists(
    st.builds(
        UnifiedNumber,
        id=st.integers(1, 1000),
        number=st.sampled_from(["4001", "4002", "4003", "95123", "95124"]),
        state=st.sampled_from(NUMBER_STATES),
        tenant_id=st.none() | st.integers(1, 8),
        destinations=destinations_st,
    ),
    max_size=5,
    unique_by=lambda n: n.number,
)


@settings(max_examples=150, deadline=None)
@given(
    tenants=tenants_st,
    numbers=numbers_st,
    called=st.sampled_from(["4001", "4002", "4003", "95123", "95124", "110"]),
)
def test_route_iff_everything_lines_up(
    tenants: list[Tenant], numbers: list[UnifiedNumber], called: str
) -> None:
    snap = ConfigSnapshot.build(tenants, numbers, NOW, generation=1)
    decision = decide_inbound(snap, call_to(called), NOW)  # never raises

    number = next((n for n in numbers if n.number == called), None)
    tenant = next((t for t in tenants if number and t.id == number.tenant_id), None)
    should_route = (
        number is not None
        and tenant is not None
        and tenant.state == "active"
        and number.state == "active"
        and bool(number.group("default"))
    )
    assert isinstance(decision, Route) == should_route
    assert isinstance(decision, Route | Reject)
    if isinstance(decision, Route):
        assert number is not None and tenant is not None
        # no policies here: the default group, in position order (sequential distribution)
        assert decision.destinations == tuple(d.destination for d in number.group("default"))
        assert (decision.tenant_id, decision.number_id) == (tenant.id, number.id)
    else:
        assert decision.reason is not Reason.ROUTED
        if number is None:
            assert decision == Reject(Reason.UNKNOWN_NUMBER)
        else:
            assert decision.number_id == number.id
