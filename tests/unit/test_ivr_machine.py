"""The menu step machine: events in, (state, actions) out, walked like a caller would."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.machine import (
    MAX_IDLE_DEFAULTS,
    Collect,
    Digits,
    Hangup,
    IvrState,
    Play,
    Step,
    Timeout,
    Transfer,
    Voicemail,
    advance,
    start,
)
from ivr.menu import MenuSet


def to(menu: str) -> dict[str, str]:
    return {"action": "menu", "target": menu}


DEFINITIONS: dict[str, Any] = {
    "main": {
        "prompt": "welcome",
        "options": {"1": to("sales"), "2": to("support"), "0": {"action": "transfer", "group": "operator"}},
        "invalid_prompt": "invalid",
        "timeout_prompt": "no-input",
        "retries": 2,
        "default": {"action": "voicemail"},
    },
    "sales": {
        "prompt": "sales-menu",
        "options": {
            "1": {"action": "transfer", "group": "sales"},
            "2": to("sales-export"),
            "0": {"action": "back"},
            "*": {"action": "repeat"},
        },
        "timeout_ms": 8000,
    },
    "sales-export": {
        "prompt": "export-menu",
        "options": {"1": {"action": "transfer", "number": "13800138000"}, "9": to("main")},
        "retries": 0,
    },
    "support": {
        "prompt": "support-menu",
        "options": {"1": {"action": "transfer", "extension": "8001"}, "0": {"action": "back"}},
        "direct_dial": True,
        "extension_digits": 4,
        "invalid_prompt": "invalid",
        "retries": 1,
        "default": to("main"),
    },
    "lobby": {"prompt": "welcome", "options": {"0": {"action": "back"}, "1": {"action": "hangup"}}},
}
MENUS = MenuSet.parse(
    DEFINITIONS,
    prompt_exists=lambda _: True,
    known_groups={"operator", "sales"},
    known_extensions={"8001", "8002"},
)


def offer(prompt: str, timeout_ms: int = 5000, max_digits: int = 1) -> Collect:
    return Collect(prompt, timeout_ms, max_digits)


def walk(entry: str, *events: Digits | Timeout) -> list[Step]:
    steps = [start(MENUS, entry)]
    for event in events:
        steps.append(advance(MENUS, steps[-1].state, event))
    return steps


def test_start_offers_the_entry_menu() -> None:
    assert start(MENUS, "main") == Step(IvrState("main"), (offer("welcome"),))
    with pytest.raises(ValueError, match="no IVR menu named 'nope'"):
        start(MENUS, "nope")


def test_two_levels_down_to_a_transfer() -> None:
    steps = walk("main", Digits("1"), Digits("2"), Digits("1"))
    assert [s.actions for s in steps[1:]] == [
        (offer("sales-menu", 8000),),
        (offer("export-menu"),),
        (Transfer("number", "13800138000"),),
    ]
    assert steps[2].state.stack == ("main", "sales")
    assert steps[-1].state.ended
    with pytest.raises(ValueError, match="already ended"):
        advance(MENUS, steps[-1].state, Digits("1"))


def test_invalid_digit_then_retry_then_success() -> None:
    steps = walk("main", Digits("7"), Digits("0"))
    assert steps[1].actions == (Play("invalid"), offer("welcome"))
    assert steps[1].state.failures == 1
    assert steps[2].actions == (Transfer("group", "operator"),)


def test_timeout_plays_timeout_prompt_and_runs_default_when_retries_run_out() -> None:
    steps = walk("main", Timeout(), Digits(""), Timeout())
    assert steps[1].actions == (Play("no-input"), offer("welcome"))
    assert steps[2].actions == (Play("no-input"), offer("welcome"))  # empty digits = nothing keyed
    assert steps[3].actions == (Voicemail(),)
    assert steps[3].state.ended


def test_retries_exhausted_without_default_hangs_up() -> None:
    steps = walk("main", Digits("1"), Timeout(), Digits("5"), Timeout(), Timeout())
    assert steps[2].actions == (offer("sales-menu", 8000),)  # no timeout prompt configured
    assert [s.state.failures for s in steps[2:5]] == [1, 2, 3]
    assert steps[5].actions == (Hangup("ivr_no_input"),)


def test_retries_zero_fails_at_once() -> None:
    steps = walk("main", Digits("1"), Digits("2"), Digits("5"))
    assert steps[3].actions == (Hangup("ivr_no_input"),)


def test_back_pops_and_repeat_replays() -> None:
    steps = walk("main", Digits("1"), Digits("5"), Digits("*"), Digits("0"))
    assert steps[2].state.failures == 1
    assert steps[3] == Step(IvrState("sales", ("main",)), (offer("sales-menu", 8000),))  # failures reset
    assert steps[4] == Step(IvrState("main"), (offer("welcome"),))


def test_back_at_the_top_repeats() -> None:
    steps = walk("lobby", Digits("0"), Digits("1"))
    assert steps[1] == Step(IvrState("lobby"), (offer("welcome"),))
    assert steps[2].actions == (Hangup("ivr_hangup"),)


def test_going_to_a_menu_on_the_stack_unwinds_to_it() -> None:
    steps = walk("main", Digits("1"), Digits("2"), Digits("9"))
    assert steps[3].state == IvrState("main", ())
    assert steps[3].actions == (offer("welcome"),)


def test_direct_dial_known_extension_transfers() -> None:
    steps = walk("main", Digits("2"), Digits("8002#"))
    assert steps[1].actions == (offer("support-menu", max_digits=4),)
    assert steps[2].actions == (Transfer("extension", "8002"),)


@pytest.mark.parametrize("keys", ["8009", "800", "80012", "8#02"])
def test_direct_dial_unknown_or_malformed_extension_is_invalid(keys: str) -> None:
    steps = walk("main", Digits("2"), Digits(keys))
    assert steps[2].actions == (Play("invalid"), offer("support-menu", max_digits=4))


def test_options_still_work_in_a_direct_dial_menu() -> None:
    assert walk("main", Digits("2"), Digits("1#"))[-1].actions == (Transfer("extension", "8001"),)


def test_direct_dial_without_known_extensions_transfers_any_of_the_right_length() -> None:
    unchecked = MenuSet.parse({"support": DEFINITIONS["support"] | {"default": None}}, prompt_exists=bool)
    step = advance(unchecked, start(unchecked, "support").state, Digits("8123"))
    assert step.actions == (Transfer("extension", "8123"),)


def test_a_silent_caller_is_hung_up_even_when_defaults_keep_the_call_in_the_ivr() -> None:
    looping = MenuSet.parse(
        {
            "main": {
                "prompt": "welcome",
                "options": {"1": to("sub"), "0": {"action": "hangup"}},
                "retries": 0,
                "default": to("sub"),
            },
            "sub": {
                "prompt": "sub",
                "options": {"0": {"action": "back"}},
                "retries": 0,
                "default": to("main"),
            },
        },
        prompt_exists=bool,
    )
    step = start(looping, "main")
    menus_offered = []
    for _ in range(MAX_IDLE_DEFAULTS + 1):
        step = advance(looping, step.state, Timeout())
        menus_offered.append(step.state.menu)
    assert menus_offered == ["sub", "main", "sub", "sub"]
    assert step.actions == (Hangup("ivr_no_input"),)


def test_a_valid_key_resets_the_idle_count() -> None:
    steps = walk("main", Digits("2"), Timeout(), Timeout())
    assert steps[3].state == IvrState("main", (), 0, 1)
    assert advance(MENUS, steps[3].state, Digits("2")).state.idle_defaults == 0


names = st.sampled_from(["main", "a", "b", "c"])
choices = st.one_of(
    st.builds(to, names),
    st.sampled_from(
        [{"action": a} for a in ("voicemail", "repeat", "back", "hangup")]
        + [{"action": "transfer", "extension": "8001"}]
    ),
)
random_menus = st.dictionaries(
    names,
    st.fixed_dictionaries(
        {"prompt": st.just("welcome"), "options": st.dictionaries(st.sampled_from("0129*#"), choices)},
        optional={"default": choices, "retries": st.integers(0, 3), "direct_dial": st.booleans()},
    ),
    min_size=1,
    max_size=4,
)
pressed = st.builds(Digits, st.sampled_from(["", "1", "2", "9", "0", "*", "#", "8001", "12"]))
events = st.lists(st.one_of(pressed, st.just(Timeout())), max_size=30)


@settings(max_examples=200, deadline=None)
@given(random_menus, events)
def test_any_valid_menu_set_runs_and_a_silent_caller_is_always_hung_up(
    definitions: dict[str, Any], keys: list[Digits | Timeout]
) -> None:
    try:
        menus = MenuSet.parse(definitions, prompt_exists=bool, known_extensions={"8001"})
    except ValueError:
        return
    entry = next(iter(definitions))
    step = start(menus, entry)
    for event in [*keys, *[Timeout()] * 100]:
        if step.state.ended:
            break
        step = advance(menus, step.state, event)
        assert step.actions and len(step.state.stack) <= len(definitions)
        assert len(set(step.state.stack)) == len(step.state.stack)
    assert step.state.ended
