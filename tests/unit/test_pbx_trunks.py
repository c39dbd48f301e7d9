"""Customer PBX trunks (issue 20): the decisions that deliver a tenant's numbers and the
extensions behind its own PBX to that PBX, fail over when it holds no registration, and
let its callers dial the platform's extensions on-net and outside numbers with an owned
caller ID. Pure: dialplan/, the Asterisk dial strings, and the per-PBX channel count."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

from dialplan.distribution import DialStep, Member
from dialplan.extension_calls import ExtensionCall, decide_extension_call
from dialplan.inbound import InboundCall, Reject, Route, Voicemail, decide_inbound, ivr_transfer
from dialplan.legs import Direction, Leg
from dialplan.reasons import Reason
from dialplan.snapshot import BoundDestination, ConfigSnapshot, Extension, Tenant, UnifiedNumber
from dialplan.transfers import TransferKind, TransferRequest, decide_transfer
from softswitch.callpath.pbx import PbxChannels, pbx_endpoints
from softswitch.engines.asterisk.contract import dial_string
from trunks.selection import TrunkRoute

SH = timezone(timedelta(hours=8))
NOW = datetime(2026, 12, 4, 10, 0, tzinfo=SH)
OWN, DID = "4008001234", "02150008101"
TENANT = Tenant(7, "T", "active", caller_ids=(OWN, "02150001234"))
PBX = Extension(7, "8000", "t7x8000", site="beijing", range_first="8100", range_last="8199", channels=1)
DESK = Extension(7, "6001", "t7x6001")
MOBILE = BoundDestination("13800000001", 20)


def number(*dests: BoundDestination, final: str = "missed_call", num: str = OWN) -> UnifiedNumber:
    return UnifiedNumber(1, num, "active", 7, dests, final_action=final)


def snap(*numbers: UnifiedNumber) -> ConfigSnapshot:
    return ConfigSnapshot.build(
        [TENANT],
        list(numbers) or [number(BoundDestination("8000", 20, kind="pbx"))],
        NOW,
        1,
        extensions=[PBX, DESK, Extension(8, "8101", "t8x8101")],
        trunk_routes=[TrunkRoute("a", "", 10)],
    )


def inbound(s: ConfigSnapshot, called: str = OWN, down: frozenset[str] = frozenset()):  # type: ignore[no-untyped-def]
    return decide_inbound(
        s, InboundCall("13900000000", called, "1.1"), NOW, rng=random.Random(1), unregistered=down
    )


def members(decision: object) -> list[tuple[str, str, str]]:
    assert isinstance(decision, Route), decision
    return [(m.destination, m.kind, m.via) for s in decision.steps for m in s.members]


def test_snapshot_finds_the_pbx_behind_an_extension_of_its_range_only() -> None:
    s = snap()
    assert s.pbx_behind(7, "8100") == PBX and s.pbx_behind(7, "8199") == PBX
    assert (
        s.pbx_behind(7, "8200") is None
        and s.pbx_behind(7, "81050") is None
        and s.pbx_behind(7, "810") is None
    )
    assert s.pbx_behind(8, "8101") is None  # another tenant's


def test_a_number_bound_to_the_pbx_is_delivered_with_the_number_in_the_request_uri() -> None:
    d = inbound(snap())
    assert members(d) == [(OWN, "pbx", "t7x8000")]
    assert isinstance(d, Route) and d.reason is Reason.ROUTED
    assert dial_string(d.steps[0], "carrier-out") == f"PJSIP/{OWN}@t7x8000"


def test_a_bound_extension_behind_the_pbx_is_delivered_as_that_extension() -> None:
    d = inbound(snap(number(BoundDestination("8105", 20, kind="extension"))))
    assert members(d) == [("8105", "pbx", "t7x8000")]


def test_an_unregistered_pbx_fails_over_to_the_bound_mobile_with_the_reason() -> None:
    s = snap(number(BoundDestination("8000", 20, kind="pbx"), MOBILE))
    assert members(inbound(s)) == [(OWN, "pbx", "t7x8000"), ("13800000001", "mobile", "")]
    d = inbound(s, down=frozenset({"t7x8000"}))
    assert members(d) == [("13800000001", "mobile", "")]
    assert (
        isinstance(d, Route) and d.reason is Reason.PBX_UNREGISTERED and d.why.endswith("+pbx_unregistered")
    )


def test_an_unregistered_pbx_with_no_other_destination_goes_to_voicemail_or_is_refused() -> None:
    down = frozenset({"t7x8000"})
    vm = inbound(snap(number(BoundDestination("8000", 20, kind="pbx"), final="voicemail")), down=down)
    assert vm == Voicemail(7, 1, Reason.PBX_UNREGISTERED)
    refused = inbound(snap(), down=down)
    assert isinstance(refused, Reject) and refused.reason is Reason.PBX_UNREGISTERED
    assert refused.reason.cause == 20  # 480 Temporarily Unavailable


def test_a_pbx_binding_naming_a_phone_is_no_destination() -> None:
    d = inbound(snap(number(BoundDestination("6001", 20, kind="pbx"))))
    assert isinstance(d, Reject) and d.reason is Reason.NO_DESTINATION


def dial_from(endpoint: str, dialled: str, cli: str = "", s: ConfigSnapshot | None = None, **kw) -> Leg:  # type: ignore[no-untyped-def]
    return decide_extension_call(
        s or snap(), ExtensionCall(endpoint, dialled, "2.1", cli), NOW, random.Random(1), **kw
    )


def test_a_platform_extension_dials_an_extension_behind_the_pbx_on_net() -> None:
    leg = dial_from("t7x6001", "8123", "6001")
    assert (leg.direction, leg.billable) == (Direction.INTERNAL, False)
    assert members(leg.decision) == [("8123", "pbx", "t7x8000")]
    assert isinstance(leg.decision, Route) and leg.decision.caller_id == "6001"
    down = dial_from("t7x6001", "8123", "6001", unregistered=frozenset({"t7x8000"}))
    assert isinstance(down.decision, Reject) and down.decision.reason is Reason.PBX_UNREGISTERED


def test_the_pbx_dials_a_platform_extension_showing_its_own_caller() -> None:
    leg = dial_from("t7x8000", "6001", "8101")
    assert (leg.direction, leg.billable) == (Direction.INTERNAL, False)
    assert members(leg.decision) == [("t7x6001", "extension", "")]
    assert isinstance(leg.decision, Route) and leg.decision.caller_id == "8101"
    # a caller it does not own shows the trunk's account number
    assert dial_from("t7x8000", "6001", "9999").decision.caller_id == "8000"  # type: ignore[union-attr]


def test_the_pbx_does_not_loop_into_its_own_range() -> None:
    leg = dial_from("t7x8000", "8123", "8101")
    assert isinstance(leg.decision, Reject) and leg.decision.reason is Reason.EXTENSION_NOT_FOUND


def test_the_pbx_calls_out_with_the_enterprises_caller_id_billed() -> None:
    leg = dial_from("t7x8000", "13912345678", "8101")
    assert (leg.direction, leg.billable) == (Direction.OUTBOUND, True)
    assert isinstance(leg.decision, Route) and leg.decision.caller_id == OWN
    assert members(leg.decision) == [("13912345678", "external", "trunk-a")]
    # a PBX presenting an owned number keeps it, a foreign one is replaced
    assert dial_from("t7x8000", "13912345678", "02150001234").decision.caller_id == "02150001234"  # type: ignore[union-attr]
    assert dial_from("t7x8000", "13912345678", "02199999999").decision.caller_id == OWN  # type: ignore[union-attr]


def test_ivr_and_transfer_reach_an_extension_behind_the_pbx() -> None:
    s = snap()
    assert members(ivr_transfer(s, OWN, "extension", "8150")) == [("8150", "pbx", "t7x8000")]
    assert isinstance(ivr_transfer(s, OWN, "extension", "8000"), Reject)  # the trunk's account itself
    req = TransferRequest("3.1", "8150", "t7x6001", 7, "", TransferKind.BLIND)
    leg = decide_transfer(s, req, NOW, random.Random(1))
    assert (leg.direction, leg.billable) == (Direction.INTERNAL, False)
    assert members(leg.decision) == [("8150", "pbx", "t7x8000")]


def test_pbx_channels_cap_each_trunk_and_free_at_the_end() -> None:
    s = snap()
    route = Route((DialStep((Member(OWN, 20, kind="pbx", via="t7x8000"),), 20),), 7, 1)
    assert pbx_endpoints(route) == ("t7x8000",)
    chans = PbxChannels()
    assert chans.take(s, "a", pbx_endpoints(route)) is None
    assert chans.take(s, "a", ("t7x8000",)) is None  # the same call keeps its channel
    assert chans.take(s, "b", ("t7x8000",)) == PBX  # the trunk's one channel is in use
    assert chans.take(s, "c", ("t7x6001",)) is None  # a phone holds no PBX channel
    chans.release("a")
    assert chans.in_use("t7x8000") == 0
    assert chans.take(s, "b", ("t7x8000",)) is None


def test_freeswitch_rings_the_pbx_contact_with_the_dialled_user() -> None:
    """FreeSWITCH expands the bridge argument: the PBX's registered contact (sofia_contact),
    its user part replaced by the dialled number (the group last: %1 then digits would be
    read as a group number)."""
    from pathlib import Path

    from softswitch.engines.freeswitch.channel import FsPlan, pbx_target

    plan = FsPlan("127.0.0.3:5060", "phones", "softswitch", Path("/s"), Path("/c"), Path("/r"))
    assert pbx_target(plan, "t7x8000", OWN) == (
        "${regex(${sofia_contact(phones/t7x8000@softswitch)}"
        f"|^sofia/[^/]+/sip:[^@]*(@.*)$|sofia/phones/sip:{OWN}%1)}}"
    )


# ---------------------------------------------------------------------------- the call path's edge
class _Channel:
    """A call the engine handed over: its facts, and the leg it was given."""

    def __init__(self, caller: str, called: str, linkedid: str, endpoint: str = "") -> None:
        from softswitch.callpath.control import CallFacts

        self.facts = CallFacts(linkedid, linkedid, f"PJSIP/x-{linkedid}", caller, called, endpoint)
        self.legs: list[Leg] = []

    async def deliver(self, leg: Leg, recording: object) -> None:
        self.legs.append(leg)


def _routing(s: ConfigSnapshot, registered: dict[str, bool | None]):  # type: ignore[no-untyped-def]
    from softswitch.callpath.records import CallRecordWriter
    from softswitch.callpath.routing import CallRouting
    from softswitch.callpath.snapshots import SnapshotStore
    from softswitch.core.clock import FixedClock
    from softswitch.core.metrics import Metrics

    clock, metrics = FixedClock(NOW), Metrics()
    store = SnapshotStore(None, "", clock, metrics)  # type: ignore[arg-type]
    store.current = s
    routing = CallRouting(store, clock, metrics, CallRecordWriter(None, metrics), rng=random.Random(1))  # type: ignore[arg-type]
    asked: list[tuple[str, str]] = []

    async def check(endpoint: str, channel: str) -> bool | None:
        asked.append((endpoint, channel))
        return registered.get(endpoint)

    routing.pbx_registered = check
    return routing, asked


async def test_the_call_path_asks_the_engine_and_fails_over_when_the_pbx_is_unregistered() -> None:
    s = snap(number(BoundDestination("8000", 20, kind="pbx"), MOBILE))
    routing, asked = _routing(s, {"t7x8000": False})
    chan = _Channel("13900000000", OWN, "L1")
    await routing.route(chan)  # type: ignore[arg-type]
    assert asked == [("t7x8000", "PJSIP/x-L1")]
    (leg,) = chan.legs
    assert leg.decision.reason is Reason.PBX_UNREGISTERED and members(leg.decision) == [
        ("13800000001", "mobile", "")
    ]
    # registered, or an engine that cannot say: the PBX rings
    for answer in (True, None):
        routing, _ = _routing(s, {"t7x8000": answer})
        chan = _Channel("13900000000", OWN, "L2")
        await routing.route(chan)  # type: ignore[arg-type]
        assert members(chan.legs[0].decision)[0] == (OWN, "pbx", "t7x8000")


async def test_the_call_path_holds_the_pbx_to_its_channels() -> None:
    routing, _ = _routing(snap(), {"t7x8000": True})
    first, second = _Channel("13900000000", OWN, "A"), _Channel("13900000001", OWN, "B")
    await routing.route(first)  # type: ignore[arg-type]
    await routing.route(second)  # type: ignore[arg-type]
    assert isinstance(first.legs[0].decision, Route)
    refused = second.legs[0].decision
    assert isinstance(refused, Reject) and refused.reason is Reason.CHANNEL_LIMIT
    assert refused.why == "pbx_channels:8000"
    # a call from the PBX itself holds one of its channels too
    out = _Channel("8101", "13912345678", "C", endpoint="t7x8000")
    await routing.extension(out)  # type: ignore[arg-type]
    assert isinstance(out.legs[0].decision, Reject) and out.legs[0].decision.reason is Reason.CHANNEL_LIMIT
    routing.pbx_channels.release("A")  # the first call ended
    again = _Channel("8101", "13912345678", "D", endpoint="t7x8000")
    await routing.extension(again)  # type: ignore[arg-type]
    assert isinstance(again.legs[0].decision, Route) and again.legs[0].direction is Direction.OUTBOUND
