"""IVR menu sets: what a save accepts, and what it refuses with the menu and key named."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.menu import Choice, MenuSet

PROMPTS = {"welcome", "sales-menu", "support-menu", "invalid", "no-input", "night"}
GROUPS = {"sales", "support", "operator"}
EXTENSIONS = {"8001", "8002"}


def parse(menus: dict[str, Any], **kwargs: Any) -> MenuSet:
    kwargs.setdefault("known_groups", GROUPS)
    kwargs.setdefault("known_extensions", EXTENSIONS)
    return MenuSet.parse(menus, prompt_exists=PROMPTS.__contains__, **kwargs)


def to(menu: str) -> dict[str, str]:
    return {"action": "menu", "target": menu}


BACK = {"action": "back"}
HANGUP = {"action": "hangup"}

TWO_LEVELS: dict[str, dict[str, Any]] = {
    "main": {
        "prompt": "welcome",
        "options": {"1": to("sales"), "2": to("support"), "0": {"action": "transfer", "group": "operator"}},
        "invalid_prompt": "invalid",
        "timeout_prompt": "no-input",
        "default": {"action": "voicemail"},
    },
    "sales": {
        "prompt": "sales-menu",
        "options": {"1": {"action": "transfer", "group": "sales"}, "0": BACK, "9": to("main")},
    },
    "support": {
        "prompt": "support-menu",
        "options": {"1": {"action": "transfer", "extension": "8001"}, "0": BACK, "*": {"action": "repeat"}},
        "direct_dial": True,
        "extension_digits": 4,
    },
}


def test_two_level_menu_with_back_exits_is_valid() -> None:
    menus = parse(TWO_LEVELS)
    assert menus["main"].options["1"] == Choice("menu", "sales")
    assert menus["main"].options["0"] == Choice("transfer", "operator", "group")
    assert menus["main"].default == Choice("voicemail")
    assert menus["main"].timeout_ms == 5000 and menus["main"].retries == 3
    assert menus["support"].max_digits == 4 and menus["main"].max_digits == 1
    assert menus.extensions == frozenset(EXTENSIONS)


def test_stored_rows_parse_and_duplicate_names_fail() -> None:
    rows = [{"name": name, "definition": d} for name, d in TWO_LEVELS.items()]
    assert set(MenuSet.from_rows(rows, prompt_exists=PROMPTS.__contains__).menus) == set(TWO_LEVELS)
    with pytest.raises(ValueError, match="two menus are named 'main'"):
        MenuSet.from_rows([*rows, rows[0]], prompt_exists=PROMPTS.__contains__)


def test_unchecked_groups_and_extensions_are_accepted() -> None:
    menus = {"main": {"prompt": "welcome", "options": {"1": {"action": "transfer", "group": "anything"}}}}
    assert parse(menus, known_groups=None, known_extensions=None).extensions is None


def test_a_ring_with_one_exit_is_valid() -> None:
    ring = {
        "a": {"prompt": "welcome", "options": {"1": to("b")}},
        "b": {"prompt": "welcome", "options": {"1": to("c")}},
        "c": {"prompt": "welcome", "options": {"1": to("a")}, "default": HANGUP},
    }
    parse(ring)


def test_back_leaves_a_ring_entered_from_outside() -> None:
    menus = {
        "main": {"prompt": "welcome", "options": {"1": to("a"), "0": HANGUP}},
        "a": {"prompt": "welcome", "options": {"1": to("b"), "0": BACK}},
        "b": {"prompt": "welcome", "options": {"1": to("a"), "0": BACK}},
    }
    parse(menus)


def with_(menu: str, **changes: Any) -> dict[str, Any]:
    menus = {name: dict(d) for name, d in TWO_LEVELS.items()}
    menus[menu].update(changes)
    return menus


def options(menu: str, **opts: Any) -> dict[str, Any]:
    return with_(menu, options={**TWO_LEVELS[menu]["options"], **opts})


ERRORS = [
    pytest.param(options("sales", **{"5": {"action": "dance"}}), "menu 'sales' key '5'", "unknown action"),
    pytest.param(options("main", **{"3": "sales"}), "menu 'main' key '3'", "must be an object"),
    pytest.param(options("main", **{"3": to("billing")}), "menu 'main' key '3'", "'billing' does not exist"),
    pytest.param(with_("main", default=to("nowhere")), "menu 'main' key 'default'", "does not exist"),
    pytest.param(
        options("sales", **{"2": {"action": "transfer", "group": "marketing"}}),
        "menu 'sales' key '2'",
        "unknown group 'marketing'",
    ),
    pytest.param(
        options("support", **{"2": {"action": "transfer", "extension": "8009"}}),
        "menu 'support' key '2'",
        "unknown extension '8009'",
    ),
    pytest.param(
        options("support", **{"2": {"action": "transfer", "group": "sales", "number": "13800138000"}}),
        "menu 'support' key '2'",
        "exactly one of",
    ),
    pytest.param(
        options("support", **{"2": {"action": "transfer", "number": "call-me"}}),
        "menu 'support' key '2'",
        "must be 3 to 20 digits",
    ),
    pytest.param(with_("sales", prompt="missing-sound"), "menu 'sales' key 'prompt'", "does not exist"),
    pytest.param(with_("main", invalid_prompt="gone"), "menu 'main' key 'invalid_prompt'", "'gone'"),
    pytest.param(with_("main", prompt=""), "menu 'main' key 'prompt'", "is required"),
    pytest.param(with_("main", timeout_ms=10), "menu 'main' key 'timeout_ms'", "from 500 to 60000"),
    pytest.param(with_("main", retries=True), "menu 'main' key 'retries'", "integer"),
    pytest.param(with_("main", direct_dial="yes"), "menu 'main' key 'direct_dial'", "true or false"),
    pytest.param(with_("main", timout_ms=3000), "menu 'main'", "unknown key 'timout_ms'"),
    pytest.param(options("main", **{"12": HANGUP}), "menu 'main' key '12'", "one of 0-9"),
    pytest.param(with_("main", options={}, default=None), "menu 'main' key 'options'", "needs options"),
    pytest.param(
        {
            "main": {"prompt": "welcome", "options": {"1": to("a"), "0": HANGUP}},
            "a": {"prompt": "welcome", "options": {"1": to("b"), "*": {"action": "repeat"}}},
            "b": {"prompt": "welcome", "options": {"1": to("a")}},
        },
        "menu 'a' key 'options'",
        "loop without an exit through menus 'a', 'b'",
    ),
    pytest.param(
        {
            "main": {"prompt": "welcome", "options": {"1": to("a")}},
            "a": {"prompt": "welcome", "options": {"0": BACK, "9": to("main")}},
        },
        "menu 'main' key 'options'",
        "loop without an exit",
    ),
    pytest.param(
        {"main": {"prompt": "welcome", "options": {"1": to("main"), "2": {"action": "repeat"}}}},
        "menu 'main'",
        "loop without an exit",
    ),
    pytest.param(
        {f"m{i}": {"prompt": "welcome", "options": {"1": to(f"m{i + 1}"), "0": HANGUP}} for i in range(5)}
        | {"m5": {"prompt": "welcome", "options": {"0": BACK}}},
        "menu 'm4' key '1'",
        "'m5' is at depth 6 from entry 'm0', deeper than max_depth 5",
    ),
]


@pytest.mark.parametrize(("menus", "where", "why"), ERRORS)
def test_invalid_menus_name_menu_and_key(menus: dict[str, Any], where: str, why: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse(menus)
    assert where in str(raised.value)
    assert why in str(raised.value)


def test_depth_counts_from_given_entries() -> None:
    chain = {f"m{i}": {"prompt": "welcome", "options": {"1": to(f"m{i + 1}"), "0": HANGUP}} for i in range(3)}
    chain["m3"] = {"prompt": "welcome", "options": {"0": BACK}}
    parse(chain, max_depth=4)
    with pytest.raises(ValueError, match="'m3' is at depth 4 from entry 'm0'"):
        parse(chain, max_depth=3)
    parse(chain, max_depth=3, entries=["m1"])
    with pytest.raises(ValueError, match="entry menu 'night' does not exist"):
        parse(chain, entries=["night"])


def test_a_ring_nothing_leads_into_is_measured_from_each_member() -> None:
    ring = {
        "main": {"prompt": "welcome", "options": {"1": to("sub"), "0": HANGUP}},
        "sub": {"prompt": "welcome", "options": {"9": to("main")}},
    }
    parse(ring, max_depth=2)
    with pytest.raises(ValueError, match="depth 2"):
        parse(ring, max_depth=1)


# Random menu graphs: whatever the shape, parse either accepts or raises ValueError.
names = st.sampled_from(["main", "a", "b", "c", "d"])
good_actions = st.one_of(
    st.builds(lambda t: {"action": "menu", "target": t}, names),
    st.builds(lambda g: {"action": "transfer", "group": g}, st.just("sales")),
    st.sampled_from([{"action": a} for a in ("voicemail", "repeat", "back", "hangup")]),
)
bad_actions = st.one_of(
    st.builds(lambda g: {"action": "transfer", "group": g}, st.sampled_from(["nope", ""])),
    st.builds(lambda e: {"action": "transfer", "extension": e}, st.sampled_from(["8001", "80x1", "9"])),
    st.builds(lambda n: {"action": "transfer", "number": n}, st.sampled_from(["13800138000", "1"])),
    st.sampled_from([{"action": "menu"}, {"action": "fly"}, {}, None, 3, "sales", ["x"]]),
)
keys = st.sampled_from("1234567890*#")
well_formed = st.fixed_dictionaries(
    {"prompt": st.just("welcome"), "options": st.dictionaries(keys, good_actions, min_size=1, max_size=4)},
    optional={"default": good_actions, "retries": st.integers(0, 3), "direct_dial": st.booleans()},
)
noisy = st.fixed_dictionaries(
    {"prompt": st.sampled_from(["welcome", "missing", "", None])},
    optional={
        "options": st.one_of(
            st.dictionaries(st.sampled_from(["1", "0", "10", "x"]), st.one_of(good_actions, bad_actions)),
            st.none(),
            st.lists(st.integers()),
        ),
        "default": st.one_of(good_actions, bad_actions),
        "retries": st.one_of(st.integers(-1, 12), st.booleans(), st.text(max_size=2)),
        "timeout_ms": st.one_of(st.integers(0, 100000), st.floats(allow_nan=True)),
        "direct_dial": st.one_of(st.booleans(), st.just("yes")),
        "extension_digits": st.integers(0, 10),
        "invalid_prompt": st.sampled_from(["invalid", "missing"]),
        "colour": st.just("blue"),
    },
)
menu_sets = st.one_of(
    st.dictionaries(names, well_formed, min_size=1, max_size=5),
    st.dictionaries(names, st.one_of(well_formed, noisy), min_size=1, max_size=5),
    st.dictionaries(st.one_of(names, st.just("")), st.one_of(st.none(), st.integers(), noisy), max_size=3),
)


@settings(max_examples=300, deadline=None)
@given(menu_sets, st.integers(0, 6))
def test_random_menu_graphs_validate_or_raise_value_error(menus: dict[str, Any], max_depth: int) -> None:
    try:
        parsed = parse(menus, max_depth=max_depth)
    except ValueError as e:
        assert str(e)
        return
    for menu in parsed.menus.values():
        for _, choice in menu.choices():
            assert choice.action != "menu" or choice.target in parsed


def test_random_graphs_include_valid_ones() -> None:
    """Keeps the property above honest: the generator must reach the accepting branch."""
    accepted = []

    @settings(max_examples=100, deadline=None, database=None)
    @given(st.dictionaries(names, well_formed, min_size=1, max_size=5))
    def collect(menus: dict[str, Any]) -> None:
        try:
            accepted.append(parse(menus))
        except ValueError:
            pass

    collect()
    assert accepted
