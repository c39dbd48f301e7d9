"""Calls from extensions to their tenant's own unified numbers are internal, decided like
an inbound call to that number with the extension as caller (issue 11, item 7), and
whatever leaves through a carrier shows only an owned number, with no display name
(item 8). Pure: dialplan.extension_calls and dialplan.legs."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from dialplan.blacklist import Blacklist, BlacklistEntry
from dialplan.extension_calls import ExtensionCall, decide_extension_call, from_extension
from dialplan.inbound import AskPin, Reject, Route, RunIvr, ivr_transfer
from dialplan.legs import CallerName, Direction, Leg
from dialplan.reasons import Reason
from dialplan.snapshot import BoundDestination, ConfigSnapshot, Extension, PinSetting, Tenant, UnifiedNumber
from dialplan.time_policy import TimePolicy
from provisioning.rules import hash_pin
from softswitch.engines.asterisk.channel import endpoint_of as _endpoint_of
from softswitch.engines.asterisk.contract import asterisk_variables
from trunks.selection import TrunkRoute

SH = timezone(timedelta(hours=8))
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=SH)
OWN = "4008001234"
OTHERS = "4008005678"  # another tenant's number, hosted on this platform too
TENANT = Tenant(7, "T", "active", caller_ids=(OWN, "02150001234"))
DESK = UnifiedNumber(1, OWN, "active", 7, (BoundDestination("8002", 20, kind="extension"),))
MOBILE = BoundDestination("13800000001", 20)


def snap(number: UnifiedNumber = DESK, **kw) -> ConfigSnapshot:  # type: ignore[no-untyped-def]
    return ConfigSnapshot.build(
        [TENANT, Tenant(8, "U", "active", caller_ids=(OTHERS,))],
        [number, UnifiedNumber(2, OTHERS, "active", 8, (MOBILE,))],
        NOW,
        1,
        blacklist=kw.get("blacklist"),
        extensions=[
            Extension(7, "8001", "t7x8001", outbound_caller_id=kw.get("outbound_cli", "")),
            Extension(7, "8002", "t7x8002"),
            Extension(8, "8001", "t8x8001"),
        ],
        trunk_routes=[TrunkRoute("a", "", 10)],
    )


def dial(dialled: str, snapshot: ConfigSnapshot | None = None, **kw) -> Leg:  # type: ignore[no-untyped-def]
    call = ExtensionCall("t7x8001", dialled, "9.1", kw.pop("cli", "8001"), **kw)
    return decide_extension_call(snapshot or snap(), call, NOW, random.Random(1))


def members(leg: Leg) -> list[tuple[str, str, str]]:
    assert isinstance(leg.decision, Route), leg
    return [(m.destination, m.kind, m.via) for s in leg.decision.steps for m in s.members]


def test_own_number_rings_its_bound_extension_inside_free_of_charge() -> None:
    leg = dial(OWN)
    assert (leg.direction, leg.billable, leg.caller_name) == (Direction.INTERNAL, False, CallerName.KEEP)
    assert members(leg) == [("t7x8002", "extension", "")]  # no trunk anywhere
    route = leg.decision
    assert isinstance(route, Route)
    assert (route.number_id, route.tenant_id, route.caller_id) == (1, 7, "8001")


def test_own_number_bound_to_a_mobile_leaves_only_for_that_leg_showing_an_owned_number() -> None:
    leg = dial(OWN, snap(replace(DESK, destinations=(MOBILE,))))
    assert (leg.direction, leg.billable, leg.caller_name) == (Direction.INTERNAL, True, CallerName.NONE)
    # the bound mobile over the default carrier, not the 400 number over an outbound trunk
    assert members(leg) == [("13800000001", "mobile", "")]
    assert isinstance(leg.decision, Route) and leg.decision.caller_id == OWN  # never "8001"
    configured = dial(OWN, snap(replace(DESK, destinations=(MOBILE,)), outbound_cli="02150001234"))
    assert isinstance(configured.decision, Route) and configured.decision.caller_id == "02150001234"
    # an outbound caller ID the tenant does not own is not shown
    foreign = dial(OWN, snap(replace(DESK, destinations=(MOBILE,)), outbound_cli="13999999999"))
    assert isinstance(foreign.decision, Route) and foreign.decision.caller_id == OWN


def test_the_numbers_unified_caller_id_mode_still_applies() -> None:
    leg = dial(OWN, snap(replace(DESK, caller_id_mode="unified")))
    assert isinstance(leg.decision, Route) and leg.decision.caller_id == OWN


def test_own_ivr_number_runs_the_menu() -> None:
    ivr = TimePolicy.parse({"default": {"kind": "ivr", "ref": "main"}})
    leg = dial(OWN, snap(replace(DESK, time_policy=ivr)))
    assert leg.decision == RunIvr("main", 7, 1) and leg.direction is Direction.INTERNAL


def test_own_number_policy_refusals_stay_inside() -> None:
    closed = TimePolicy.parse({"default": {"kind": "announcement", "ref": "softswitch/closed"}})
    leg = dial(OWN, snap(replace(DESK, time_policy=closed)))
    assert isinstance(leg.decision, Reject) and leg.decision.reason is Reason.CLOSED
    not_active = dial(OWN, snap(replace(DESK, state="suspended")))
    assert isinstance(not_active.decision, Reject)
    assert (not_active.decision.reason, not_active.direction) == (
        Reason.NUMBER_NOT_ACTIVE,
        Direction.INTERNAL,
    )
    # the number's inbound blacklist sees the extension as the caller
    bl = Blacklist.build([BlacklistEntry(7, "8001", "exact", "inbound")])
    blocked = dial(OWN, snap(blacklist=bl))
    assert isinstance(blocked.decision, Reject) and blocked.decision.reason is Reason.BLACKLISTED


def test_own_number_with_a_pin_asks_for_it_then_routes() -> None:
    pinned = snap(replace(DESK, pin=PinSetting(hash_pin("2468"))))
    assert isinstance(dial(OWN, pinned).decision, AskPin)
    assert members(dial(OWN, pinned, pin_verified=True)) == [("t7x8002", "extension", "")]


def test_another_tenants_number_goes_out_like_any_outside_number() -> None:
    leg = dial(OTHERS)
    assert (leg.direction, leg.billable, leg.caller_name) == (Direction.OUTBOUND, True, CallerName.NONE)
    assert members(leg) == [(OTHERS, "external", "trunk-a")]
    assert isinstance(leg.decision, Route) and leg.decision.caller_id in TENANT.caller_ids


def test_extension_to_extension_keeps_the_name_and_is_free() -> None:
    leg = dial("8002")
    assert (leg.direction, leg.billable, leg.caller_name) == (Direction.INTERNAL, False, CallerName.KEEP)


@pytest.mark.parametrize("cli", ["8001", "02150001234", "13999999999"])
def test_an_outside_call_shows_no_display_name(cli: str) -> None:
    leg = dial("13800000000", cli=cli)
    assert leg.caller_name is CallerName.NONE
    out = dict(asterisk_variables(leg.decision, "carrier-out", caller_name=leg.caller_name))
    assert out["SS_CALLERID_NAME"] == "none" and out["SS_CALLERID"] in TENANT.caller_ids


def test_an_ivr_transfer_to_an_outside_number_from_an_extension_shows_an_owned_number() -> None:
    me = snap().endpoints["t7x8001"]
    transfer = ivr_transfer(snap(), OWN, "external", "13800000002")
    leg = from_extension(snap(), me, transfer, OWN)
    assert (leg.direction, leg.billable, leg.caller_name) == (Direction.INTERNAL, True, CallerName.NONE)
    assert isinstance(leg.decision, Route) and leg.decision.caller_id == OWN
    to_desk = from_extension(snap(), me, ivr_transfer(snap(), OWN, "extension", "8002"), OWN)
    assert (to_desk.billable, to_desk.caller_name) == (False, CallerName.KEEP)


@pytest.mark.parametrize(
    ("channel", "endpoint"),
    [
        ("PJSIP/t7x8001-0000002a", "t7x8001"),
        ("PJSIP/carrier-in-00000001", "carrier-in"),
        ("Local/8001@from-extensions-00000001;1", ""),
        ("", ""),
    ],
)
def test_endpoint_of_a_channel_name(channel: str, endpoint: str) -> None:
    assert _endpoint_of(channel) == endpoint
