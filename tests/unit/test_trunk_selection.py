from __future__ import annotations

import random
from collections import Counter

from trunks.selection import TrunkRoute, dial_strings, select_trunks

ROUTES = [
    TrunkRoute("default-a", "", priority=100),
    TrunkRoute("mobile-a", "13", priority=10, weight=300),
    TrunkRoute("mobile-b", "13", priority=10, weight=100),
    TrunkRoute("mobile-backup", "13", priority=20),
    TrunkRoute("shanghai", "021", priority=10),
    TrunkRoute("off", "0755", enabled=False),
]


def test_longest_prefix_then_priority() -> None:
    rng = random.Random(3)
    got = select_trunks(ROUTES, "13800138000", rng)
    assert set(got[:2]) == {"mobile-a", "mobile-b"} and got[2] == "mobile-backup"
    assert select_trunks(ROUTES, "02161234567", rng) == ("shanghai",)
    assert select_trunks(ROUTES, "075512345678", rng) == ("default-a",)  # disabled longer prefix
    assert select_trunks([], "13800138000", rng) == ()


def test_weight_biases_the_first_choice() -> None:
    rng = random.Random(7)
    firsts = Counter(select_trunks(ROUTES, "13800138000", rng)[0] for _ in range(4000))
    assert 0.7 < firsts["mobile-a"] / 4000 < 0.8  # 300 of 400


def test_dial_strings() -> None:
    assert dial_strings(("a", "b"), "13800138000") == (
        "PJSIP/13800138000@trunk-a",
        "PJSIP/13800138000@trunk-b",
    )
