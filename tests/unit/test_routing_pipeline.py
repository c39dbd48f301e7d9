"""The inbound pipeline's order and outcomes, and extension/outbound decisions, as tables."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from dialplan.blacklist import Blacklist, BlacklistEntry
from dialplan.extension_calls import ExtensionCall, decide_extension_call
from dialplan.inbound import AskPin, Decision, InboundCall, Reject, Route, RunIvr, Voicemail, decide_inbound
from dialplan.reasons import Reason
from dialplan.region import RegionPolicy
from dialplan.snapshot import BoundDestination, ConfigSnapshot, Extension, PinSetting, Tenant, UnifiedNumber
from dialplan.time_policy import TimePolicy
from provisioning.rules import hash_pin
from trunks.selection import TrunkRoute

SH = timezone(timedelta(hours=8))
MONDAY_10 = datetime(2026, 11, 23, 10, 0, tzinfo=SH)
MONDAY_22 = datetime(2026, 11, 23, 22, 0, tzinfo=SH)
SHANGHAI_MOBILE, BEIJING_FIXED, UNKNOWN_CALLER = "13917001234", "01062345678", "17012345678"

HOURS = TimePolicy.parse(
    {
        "weekly": [
            {
                "days": ["mon", "tue", "wed", "thu", "fri"],
                "start": "09:00",
                "end": "18:00",
                "target": {"kind": "group", "ref": "default"},
            }
        ],
        "default": {"kind": "group", "ref": "night"},
    }
)
REGIONS = RegionPolicy.parse(
    {
        "rules": [{"province": "上海", "group": "shanghai"}, {"city": "深圳", "action": "deny"}],
        "unknown": "allow",
        "default": "allow",
    }
)
BASE = UnifiedNumber(
    1,
    "4008001234",
    "active",
    7,
    (
        BoundDestination("13800000001", 20),
        BoundDestination("13800000002", 25),
        BoundDestination("13800000009", 20, group="night"),
        BoundDestination("13800000021", 20, group="shanghai"),
        BoundDestination("8001", 15, group="desk", kind="extension"),
    ),
)
TENANT = Tenant(7, "T", "active", caller_ids=("4008001234", "02150001234"))


def snap(number: UnifiedNumber = BASE, **kw) -> ConfigSnapshot:  # type: ignore[no-untyped-def]
    return ConfigSnapshot.build(
        [
            TENANT,
            Tenant(8, "U", "active", outbound_cli_policy="refuse", caller_ids=("02150009999",)),
            Tenant(9, "S", "suspended"),
        ],
        [number],
        MONDAY_10,
        1,
        blacklist=kw.get("blacklist"),
        extensions=[
            Extension(7, "8001", "t7x8001", "main"),
            Extension(7, "8002", "t7x8002", "branch"),
            Extension(8, "9001", "t8x9001", outbound_caller_id="02150009999"),
            Extension(9, "7001", "t9x7001"),
        ],
        trunk_routes=[TrunkRoute("a", "", 10), TrunkRoute("b", "", 20)],
    )


def call(caller: str = SHANGHAI_MOBILE, **kw) -> InboundCall:  # type: ignore[no-untyped-def]
    return InboundCall(caller, "4008001234", "1.1", **kw)


def first(decision) -> list[str]:  # type: ignore[no-untyped-def]
    assert isinstance(decision, Route), decision
    return [m.destination for m in decision.steps[0].members]


def test_blacklist_comes_before_the_pin() -> None:
    bl = Blacklist.build([BlacklistEntry(7, "139", "prefix", "inbound")])
    number = replace(BASE, pin=PinSetting(hash_pin("1234")))
    d = decide_inbound(snap(number, blacklist=bl), call(), MONDAY_10)
    assert d == Reject(Reason.BLACKLISTED, 7, 1)
    assert isinstance(decide_inbound(snap(number), call(), MONDAY_10), AskPin)
    assert first(decide_inbound(snap(number), call(pin_verified=True), MONDAY_10)) == ["13800000001"]


def test_platform_blacklist_and_anonymous() -> None:
    bl = Blacklist.build([BlacklistEntry(None, "anonymous", "exact", "inbound")])
    assert decide_inbound(snap(blacklist=bl), call(""), MONDAY_10).reason is Reason.BLACKLISTED
    assert isinstance(decide_inbound(snap(blacklist=bl), call(), MONDAY_10), Route)


@pytest.mark.parametrize(
    ("when", "caller", "expected"),
    [
        (MONDAY_10, BEIJING_FIXED, ["13800000001"]),  # office hours, no region rule: default
        (MONDAY_10, SHANGHAI_MOBILE, ["13800000021"]),  # Shanghai callers to the Shanghai group
        (MONDAY_22, SHANGHAI_MOBILE, ["13800000009"]),  # after hours: the night group
        (MONDAY_10, UNKNOWN_CALLER, ["13800000001"]),  # unknown region: allowed, default group
    ],
)
def test_time_then_region(when: datetime, caller: str, expected: list[str]) -> None:
    number = replace(BASE, time_policy=HOURS, region_policy=REGIONS)
    assert first(decide_inbound(snap(number), call(caller), when)) == expected


def test_region_deny_and_unknown_deny() -> None:
    number = replace(BASE, region_policy=REGIONS)
    assert decide_inbound(snap(number), call("075512345678"), MONDAY_10).reason is Reason.REGION_DENIED
    strict = replace(BASE, region_policy=RegionPolicy.parse({"unknown": "deny"}))
    assert decide_inbound(snap(strict), call(UNKNOWN_CALLER), MONDAY_10).reason is Reason.REGION_DENIED
    assert isinstance(decide_inbound(snap(strict), call(BEIJING_FIXED), MONDAY_10), Route)


@pytest.mark.parametrize(
    ("default_target", "kind"),
    [
        ({"kind": "announcement", "ref": "softswitch/closed"}, Reject),
        ({"kind": "voicemail"}, Voicemail),
        ({"kind": "ivr", "ref": "night-menu"}, RunIvr),
    ],
)
def test_after_hours_targets(default_target: dict, kind: type) -> None:  # type: ignore[type-arg]
    policy = TimePolicy.parse(
        {"weekly": [{"days": ["mon"], "start": "09:00", "end": "18:00"}], "default": default_target}
    )
    d = decide_inbound(snap(replace(BASE, time_policy=policy)), call(), MONDAY_22)
    assert isinstance(d, kind)
    if isinstance(d, Reject):
        assert (d.reason, d.announcement) == (Reason.CLOSED, "softswitch/closed")
    if isinstance(d, RunIvr):
        assert d.menu == "night-menu"


def test_custom_answering_and_distribution() -> None:
    number = replace(
        BASE,
        distribution="simultaneous",
        caller_id_mode="unified",
        whisper=True,
        greeting="softswitch/welcome",
        final_action="voicemail",
    )
    d = decide_inbound(snap(number), call(), MONDAY_10)
    assert isinstance(d, Route)
    assert [[m.destination for m in s.members] for s in d.steps] == [["13800000001", "13800000002"]]
    assert (d.caller_id, d.whisper, d.greeting, d.final_action) == (
        "4008001234",
        "4008001234",
        "softswitch/welcome",
        "voicemail",
    )


def test_round_robin_uses_the_memory_it_is_given() -> None:
    from dialplan.distribution import Memory

    number = replace(BASE, distribution="round_robin")
    d = decide_inbound(snap(number), call(), MONDAY_10, memory=lambda key: Memory(round_robin_next=1))
    assert first(d) == ["13800000002"]


def test_an_extension_destination_dials_its_endpoint() -> None:
    policy = TimePolicy.parse({"default": {"kind": "group", "ref": "desk"}})
    d = decide_inbound(snap(replace(BASE, time_policy=policy)), call(), MONDAY_10)
    assert isinstance(d, Route) and d.steps[0].members[0].kind == "extension"
    assert first(d) == ["t7x8001"]


def ext_call(endpoint: str, dialled: str, cli: str = "") -> Decision:
    return decide_extension_call(
        snap(), ExtensionCall(endpoint, dialled, "2.1", cli), MONDAY_10, random.Random(1)
    ).decision


def test_extension_calls() -> None:
    internal = ext_call("t7x8001", "8002")  # across sites, same tenant
    assert isinstance(internal, Route) and first(internal) == ["t7x8002"] and internal.caller_id == "8001"
    assert ext_call("t7x8001", "9001").reason is Reason.EXTENSION_NOT_FOUND  # another tenant's
    assert ext_call("nobody", "8002").reason is Reason.EXTENSION_UNKNOWN
    assert ext_call("t9x7001", "13800000000").reason is Reason.TENANT_SUSPENDED


def test_outbound_caller_id_must_be_owned() -> None:
    owned = ext_call("t7x8001", "13800000000", cli="02150001234")
    assert isinstance(owned, Route) and owned.caller_id == "02150001234" and owned.next_on == "congestion"
    assert [s.members[0].via for s in owned.steps] == ["trunk-a", "trunk-b"]  # failover order
    replaced = ext_call("t7x8001", "13800000000", cli="13999999999")
    assert isinstance(replaced, Route) and replaced.caller_id == "4008001234"
    assert replaced.why == "outbound+cli_replaced"
    # no claim (the phone presents its own extension): the configured caller ID is used
    assert ext_call("t8x9001", "13800000000", cli="9001").caller_id == "02150009999"  # type: ignore[union-attr]
    # a claimed number the tenant does not own, under the 'refuse' policy
    assert ext_call("t8x9001", "13800000000", cli="13999999999").reason is Reason.CALLER_ID_NOT_OWNED
    refused = decide_extension_call(
        replace(snap(), endpoints={"t8x9001": Extension(8, "9001", "t8x9001")}),
        ExtensionCall("t8x9001", "13800000000", "2.2", "13999999999"),
        MONDAY_10,
    ).decision
    assert refused.reason is Reason.CALLER_ID_NOT_OWNED


def test_outbound_blacklist_and_no_route() -> None:
    bl = Blacklist.build([BlacklistEntry(7, "1380000", "prefix", "outbound")])
    d = decide_extension_call(
        snap(blacklist=bl), ExtensionCall("t7x8001", "13800000000", "3.1"), MONDAY_10
    ).decision
    assert d.reason is Reason.BLACKLISTED
    no_trunks = replace(snap(), trunk_routes=())
    d = decide_extension_call(no_trunks, ExtensionCall("t7x8001", "13800000000", "3.2"), MONDAY_10).decision
    assert d.reason is Reason.NO_ROUTE
