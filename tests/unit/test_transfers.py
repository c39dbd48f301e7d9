"""Transfers (DTMF #1 / *2, SIP REFER) decided like calls: dialplan.transfers, pure. Who
may transfer (the Dial options), where the transferred party may go, and what each leg
costs the tenant."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from dialplan.blacklist import Blacklist, BlacklistEntry
from dialplan.inbound import Reject, Route
from dialplan.legs import Direction, Leg
from dialplan.reasons import Reason
from dialplan.snapshot import BoundDestination, ConfigSnapshot, Extension, Tenant, UnifiedNumber
from dialplan.transfers import TransferKind, TransferRequest, decide_transfer, transfer_options
from trunks.selection import TrunkRoute

SH = timezone(timedelta(hours=8))
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=SH)
OWN = "4008001234"
BOUND_MOBILE = "13800000001"
TENANT = Tenant(7, "T", "active", caller_ids=(OWN,))
NUMBER = UnifiedNumber(
    1,
    OWN,
    "active",
    7,
    (BoundDestination("8001", 20, kind="extension"), BoundDestination(BOUND_MOBILE, 25)),
)


def snap(
    number: UnifiedNumber = NUMBER, tenant: Tenant = TENANT, blacklist: Blacklist | None = None
) -> ConfigSnapshot:
    return ConfigSnapshot.build(
        [tenant, Tenant(8, "U", "active", caller_ids=("4008005678",))],
        [number],
        NOW,
        1,
        blacklist=blacklist,
        extensions=[
            Extension(7, "8001", "t7x8001"),
            Extension(7, "8002", "t7x8002"),
            Extension(8, "8003", "t8x8003"),
        ],
        trunk_routes=[TrunkRoute("a", "", 10)],
    )


def transfer(
    target: str, by: str = "t7x8001", number: str = OWN, snapshot: ConfigSnapshot | None = None
) -> Leg:
    req = TransferRequest("9.1", target, by, 7, number, TransferKind.BLIND)
    return decide_transfer(snapshot or snap(), req, NOW, random.Random(1))


def dialled(leg: Leg) -> list[tuple[str, str]]:
    assert isinstance(leg.decision, Route), leg
    return [(m.destination, m.kind) for s in leg.decision.steps for m in s.members]


def test_to_another_extension_is_internal_and_free() -> None:
    leg = transfer("8002")
    assert dialled(leg) == [("t7x8002", "extension")]
    assert (leg.direction, leg.billable) == (Direction.INTERNAL, False)
    assert isinstance(leg.decision, Route) and leg.decision.caller_id == ""  # the caller's own number


def test_to_a_destination_bound_to_the_number_is_a_paid_forwarded_leg() -> None:
    leg = transfer(BOUND_MOBILE)
    assert dialled(leg) == [(BOUND_MOBILE, "mobile")]
    assert isinstance(leg.decision, Route)
    assert leg.decision.steps[0].timeout_s == 25  # the binding's ring timeout
    assert (leg.direction, leg.billable) == (Direction.INBOUND, True)
    assert leg.decision.tenant_id == 7 and leg.decision.number_id == 1
    assert leg.decision.final_action == "hangup"  # no missed-call notice for a transfer


def test_the_number_s_caller_id_mode_applies_to_the_forwarded_leg() -> None:
    unified = UnifiedNumber(1, OWN, "active", 7, NUMBER.destinations, caller_id_mode="unified")
    leg = transfer(BOUND_MOBILE, snapshot=snap(unified))
    assert isinstance(leg.decision, Route) and leg.decision.caller_id == OWN


def test_a_bound_mobile_may_transfer_to_the_tenant_s_extensions_and_bound_destinations_only() -> None:
    # the transferor is the carrier leg of the number's bound mobile (no extension)
    assert dialled(transfer("8002", by="carrier-out")) == [("t7x8002", "extension")]
    assert dialled(transfer(BOUND_MOBILE, by="carrier-out")) == [(BOUND_MOBILE, "mobile")]
    refused = transfer("13911112222", by="carrier-out")
    assert refused.decision == Reject(Reason.TRANSFER_NOT_ALLOWED, 7, 1)
    assert not refused.billable


def test_an_extension_may_transfer_wherever_it_may_call_with_the_same_refusals() -> None:
    out = transfer("13911112222")
    assert dialled(out) == [("13911112222", "external")]
    assert (out.direction, out.billable) == (Direction.OUTBOUND, True)
    assert isinstance(out.decision, Route) and out.decision.caller_id == OWN  # an owned number
    assert transfer("999").decision == Reject(Reason.EXTENSION_NOT_FOUND, 7)
    bl = Blacklist.build([BlacklistEntry(7, "139111", "prefix", "outbound")])
    assert transfer("13911112222", snapshot=snap(blacklist=bl)).decision == Reject(Reason.BLACKLISTED, 7)


def test_parties_that_are_not_the_tenant_s_may_not_transfer() -> None:
    # another tenant's extension, or an unknown endpoint on a call that came in on no number
    assert transfer("8002", by="t8x8003", number="").decision == Reject(Reason.TRANSFER_NOT_ALLOWED, 7)
    assert transfer("8002", by="", number="").decision == Reject(Reason.TRANSFER_NOT_ALLOWED, 7)
    # a call with no tenant (the dialplan passed none)
    req = TransferRequest("9.1", "8002", "t7x8001", None, OWN)
    assert decide_transfer(snap(), req, NOW).decision == Reject(Reason.TRANSFER_NOT_ALLOWED)


def test_a_suspended_tenant_s_transfers_are_refused() -> None:
    suspended = Tenant(7, "T", "suspended", caller_ids=(OWN,))
    assert transfer("8002", snapshot=snap(tenant=suspended)).decision == Reject(Reason.TENANT_SUSPENDED, 7, 1)


def test_a_refusal_is_heard_and_counted_like_any_other() -> None:
    assert Reason.TRANSFER_NOT_ALLOWED.cause == 21 and Reason.TRANSFER_NOT_ALLOWED.prompt


@pytest.mark.parametrize(
    ("direction", "options"),
    [
        (Direction.INBOUND, "t"),  # the answering destination may; the carrier's caller may not
        (Direction.OUTBOUND, "T"),  # the extension that called may; the outside party may not
        (Direction.INTERNAL, "tT"),  # both are the tenant's
    ],
)
def test_who_may_transfer_by_direction(direction: Direction, options: str) -> None:
    assert transfer_options(Leg(Reject(Reason.ROUTED), direction)) == options


def test_a_transfer_leg_lets_its_target_transfer_on_and_a_refusal_lets_nobody() -> None:
    assert transfer_options(transfer(BOUND_MOBILE)) == "t"
    assert transfer_options(transfer("8002")) == "t"
    assert transfer_options(transfer("999")) == "t"  # the extension's own refusal (not dialled anyway)
    assert transfer_options(transfer("13911112222", by="carrier-out")) == ""
