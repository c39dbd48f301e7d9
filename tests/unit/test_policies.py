"""Table-driven tests of the pure routing steps: time, region, blacklist, distribution."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from dialplan.blacklist import Blacklist, BlacklistEntry
from dialplan.distribution import Member, Memory, Strategy, plan
from dialplan.region import UNKNOWN, Region, RegionPolicy, normalise_place, region_of
from dialplan.targets import Target
from dialplan.time_policy import TimePolicy

SHANGHAI = timezone(timedelta(hours=8))
DAY, NIGHT, HOLIDAY = Target("group", "day"), Target("announcement", "closed"), Target("group", "duty")

OFFICE = TimePolicy.parse(
    {
        "weekly": [
            {
                "days": ["mon", "tue", "wed", "thu", "fri"],
                "start": "09:00",
                "end": "18:00",
                "target": {"kind": "group", "ref": "day"},
            },
            {"days": ["sat"], "start": "10:00", "end": "12:00", "target": {"kind": "group", "ref": "day"}},
            {"days": ["sun"], "start": "22:00", "end": "24:00", "target": {"kind": "group", "ref": "day"}},
        ],
        "holidays": ["2026-10-01", "2026-10-02"],
        "holiday_target": {"kind": "group", "ref": "duty"},
        "workdays": [{"date": "2026-10-10", "as": "fri"}],  # a Saturday worked as a Friday
        "exceptions": [
            {"date": "2026-11-25", "start": "12:00", "end": "13:00", "target": {"kind": "voicemail"}}
        ],
        "default": {"kind": "announcement", "ref": "closed"},
    }
)


def sh(y: int, mo: int, d: int, h: int, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=SHANGHAI)


@pytest.mark.parametrize(
    ("now", "target", "why"),
    [
        (sh(2026, 11, 23, 9, 0), DAY, "weekly"),  # Monday, opening minute
        (sh(2026, 11, 23, 8, 59, 59), NIGHT, "outside_hours"),  # one second before
        (sh(2026, 11, 23, 17, 59), DAY, "weekly"),
        (sh(2026, 11, 23, 18, 0), NIGHT, "outside_hours"),  # [start, end): 18:00 is closed
        (sh(2026, 11, 27, 17, 30), DAY, "weekly"),  # Friday
        (sh(2026, 11, 28, 11, 0), DAY, "weekly"),  # Saturday morning window
        (sh(2026, 11, 28, 15, 0), NIGHT, "outside_hours"),  # Saturday afternoon
        (sh(2026, 11, 29, 23, 59, 59), DAY, "weekly"),  # Sunday window runs to 24:00 ...
        (sh(2026, 11, 30, 0, 0), NIGHT, "outside_hours"),  # ... and Monday 00:00 is closed
        (sh(2026, 10, 1, 10, 0), HOLIDAY, "holiday"),  # National Day, a Thursday
        (sh(2026, 10, 10, 10, 30), DAY, "makeup_workday"),  # make-up Saturday uses Friday rules
        (sh(2026, 10, 10, 17, 0), DAY, "makeup_workday"),  # (plain Saturday would be closed)
        (sh(2026, 11, 25, 12, 30), Target("voicemail"), "exception"),  # one-off lunch closure
        (sh(2026, 11, 25, 13, 0), DAY, "weekly"),
    ],
)
def test_time_policy_in_shanghai(now: datetime, target: Target, why: str) -> None:
    assert OFFICE.target_at(now) == (target, why)


def test_time_policy_reads_utc_instants_in_the_tenants_zone() -> None:
    # 2026-11-23 00:59 UTC is 08:59 in Shanghai (closed); 01:00 UTC is 09:00 (open).
    assert OFFICE.target_at(datetime(2026, 11, 23, 0, 59, tzinfo=UTC))[0] == NIGHT
    assert OFFICE.target_at(datetime(2026, 11, 23, 1, 0, tzinfo=UTC))[0] == DAY
    # Sunday 22:30 in Shanghai is still Sunday 14:30 UTC: the local weekday decides.
    assert OFFICE.target_at(datetime(2026, 11, 29, 14, 30, tzinfo=UTC))[0] == DAY


def test_time_policy_other_zone() -> None:
    ny = TimePolicy.parse(
        {"weekly": [{"days": ["mon"], "start": "09:00", "end": "17:00"}]}, tenant_timezone="America/New_York"
    )
    assert ny.target_at(datetime(2026, 11, 23, 14, 0, tzinfo=UTC))[1] == "weekly"  # 09:00 EST
    assert ny.target_at(datetime(2026, 11, 23, 13, 59, tzinfo=UTC))[1] == "outside_hours"


@pytest.mark.parametrize(
    "raw",
    [
        {"weekly": [{"days": ["monday"], "start": "09:00", "end": "18:00"}]},
        {"weekly": [{"days": ["mon"], "start": "18:00", "end": "09:00"}]},
        {"weekly": [{"days": ["mon"], "start": "25:00", "end": "26:00"}]},
        {"timezone": "Mars/Olympus"},
        {"default": {"kind": "teleport"}},
        {"workdays": [{"date": "2026-10-10", "as": "someday"}]},
    ],
)
def test_time_policy_rejects_bad_definitions(raw: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises((ValueError, KeyError)):
        TimePolicy.parse(raw)


@pytest.mark.parametrize(
    ("number", "region"),
    [
        ("13917001234", Region("上海", "上海")),  # Shanghai mobile segment
        ("+8613917001234", Region("上海", "上海")),
        ("13800138000", Region("北京", "北京")),  # Beijing mobile segment
        ("01062345678", Region("北京", "北京")),  # Beijing fixed line (area code 010)
        ("02161234567", Region("上海", "上海")),  # Shanghai fixed line (021)
        ("075512345678", Region("广东", "深圳")),  # Shenzhen fixed line (0755)
        ("07732345678", Region("广西", "桂林")),  # Guilin: the geocoder writes 广西桂林市
        ("04712345678", Region("内蒙古", "呼和浩特")),  # Hohhot
        ("17012345678", UNKNOWN),  # a segment the geocoder places only as "China"
        ("4008001234", UNKNOWN),  # a 400 number has no region
        ("", UNKNOWN),
        ("anonymous", UNKNOWN),
        ("12345", UNKNOWN),
        ("+14155550123", UNKNOWN),  # not a Chinese number
    ],
)
def test_region_of(number: str, region: Region) -> None:
    assert region_of(number) == region
    assert region_of(number).known == bool(region.province)


@pytest.mark.parametrize(
    ("raw", "norm"),
    [("广东省", "广东"), ("深圳市", "深圳"), ("上海", "上海"), ("广西壮族自治区", "广西"), ("市", "市")],
)
def test_normalise_place(raw: str, norm: str) -> None:
    assert normalise_place(raw) == norm


BL = Blacklist.build(
    [
        BlacklistEntry(None, "13000000000", "exact", "inbound"),  # platform, exact
        BlacklistEntry(None, "170", "prefix", "both"),  # platform, prefix, both ways
        BlacklistEntry(7, "1391700", "prefix", "inbound"),  # tenant 7
        BlacklistEntry(7, "anonymous", "exact", "inbound"),
        BlacklistEntry(8, "13800138000", "exact", "outbound"),
    ]
)


@pytest.mark.parametrize(
    ("tenant", "direction", "number", "who"),
    [
        (7, "inbound", "13000000000", "platform"),
        (9, "inbound", "13000000000", "platform"),  # platform entries apply to everyone
        (7, "outbound", "13000000000", None),  # inbound-only entry
        (9, "outbound", "17012345678", "platform"),  # 'both' blocks outbound too
        (7, "inbound", "13917001234", "tenant"),
        (9, "inbound", "13917001234", None),  # another tenant's list does not apply
        (7, "inbound", "", "tenant"),  # no caller ID is anonymous
        (9, "inbound", "", None),
        (8, "outbound", "13800138000", "tenant"),
        (8, "inbound", "13800138000", None),
        (7, "inbound", "1391", None),  # shorter than the prefix
    ],
)
def test_blacklist(tenant: int, direction: str, number: str, who: str | None) -> None:
    assert BL.blocks(tenant, direction, number) == who


A, B, C = Member("13800000001", 20), Member("13800000002", 25, weight=3), Member("13800000003", 30)


def dests(steps) -> list[list[str]]:  # type: ignore[no-untyped-def]
    return [[m.destination for m in s.members] for s in steps]


def test_sequential_and_simultaneous() -> None:
    rng = random.Random(1)
    assert dests(plan(Strategy.SEQUENTIAL, [A, B, C], Memory(), rng)) == [
        [A.destination],
        [B.destination],
        [C.destination],
    ]
    steps = plan(Strategy.SIMULTANEOUS, [A, B, C], Memory(), rng)
    assert dests(steps) == [[A.destination, B.destination, C.destination]]
    assert steps[0].timeout_s == 30
    assert plan(Strategy.SEQUENTIAL, [], Memory(), rng) == ()


def test_round_robin_rotates_with_memory() -> None:
    rng = random.Random(1)
    firsts = [
        plan(Strategy.ROUND_ROBIN, [A, B, C], Memory(round_robin_next=i), rng)[0].members[0] for i in range(4)
    ]
    assert firsts == [A, B, C, A]


def test_longest_idle_first() -> None:
    t = datetime(2026, 11, 23, 9, tzinfo=UTC)
    mem = Memory(last_call={A.destination: t, B.destination: t - timedelta(hours=1)})
    assert dests(plan(Strategy.LONGEST_IDLE, [A, B, C], mem, random.Random(1))) == [
        [C.destination],
        [B.destination],
        [A.destination],  # never called, then oldest
    ]


def test_weighted_is_a_permutation_biased_by_weight() -> None:
    rng = random.Random(42)
    firsts = [
        plan(Strategy.WEIGHTED, [A, B, C], Memory(), rng)[0].members[0].destination for _ in range(2000)
    ]
    share_b = firsts.count(B.destination) / len(firsts)
    assert 0.5 < share_b < 0.7  # weight 3 of 5
    for _ in range(20):
        assert sorted(dests(plan(Strategy.WEIGHTED, [A, B, C], Memory(), rng))) == sorted(
            [[A.destination], [B.destination], [C.destination]]
        )


@pytest.mark.parametrize(
    ("rule", "caller", "action"),
    [
        ({"province": "Shanghai", "action": "deny"}, "13917001234", "deny"),
        ({"province": "shanghai", "action": "deny"}, "13917001234", "deny"),
        ({"province": "上海市", "action": "deny"}, "13917001234", "deny"),
        ({"province": "Guangdong", "city": "Shenzhen", "action": "deny"}, "075512345678", "deny"),
        ({"province": "Inner Mongolia", "action": "deny"}, "04712345678", "deny"),
        ({"province": "Guangxi", "action": "deny"}, "07732345678", "deny"),
        ({"province": "Shanghai", "action": "deny"}, "13800138000", "allow"),  # a Beijing caller
    ],
)
def test_region_rules_in_english_or_chinese_match_alike(rule: dict, caller: str, action: str) -> None:  # type: ignore[type-arg]
    policy = RegionPolicy.parse({"rules": [rule], "default": "allow"})
    assert policy.decide(region_of(caller)).action == action


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        ({"province": "Shanhai"}, "rules[0].province"),
        ({"province": "Guangdong", "city": "Shenzen"}, "rules[0].city"),
    ],
)
def test_a_latin_name_that_is_no_place_is_refused_naming_the_field(rule: dict, field: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError, match=re.escape(field)):
        RegionPolicy.parse({"rules": [rule]})


def test_the_english_place_table_is_what_the_geocoder_data_regenerates() -> None:
    from dialplan import place_names
    from scripts.gen_place_names import tables

    assert (place_names.PROVINCES_EN, place_names.CITIES_EN) == tables()
