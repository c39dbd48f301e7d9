"""A menu set run as a pure step machine: `start` and `advance` return the next state and
the actions the adapter performs; the caller's answer comes back as the next event.

Going to a menu already on the "back" stack (a "0 -> main menu" option) returns to it
rather than stacking it again, so the stack never holds a menu twice. A caller who never
presses a key is hung up: a default that keeps the call in the IVR may run at most
MAX_IDLE_DEFAULTS times in a row before the machine hangs up with "ivr_no_input"."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

from ivr.actions import (
    NO_INPUT,
    CallerEvent,
    ChannelAction,
    Collect,
    Digits,
    Hangup,
    Play,
    SayDigits,
    SayNumber,
    Timeout,
    Transfer,
    Voicemail,
)
from ivr.menu import Choice, Menu, MenuSet

__all__ = [
    "Collect",
    "Digits",
    "Hangup",
    "IvrState",
    "MAX_IDLE_DEFAULTS",
    "Play",
    "SayDigits",
    "SayNumber",
    "Step",
    "Timeout",
    "Transfer",
    "Voicemail",
    "advance",
    "start",
]

MAX_IDLE_DEFAULTS = 3
OPTION_HANGUP = "ivr_hangup"  # hang-up reason when the caller chose a "hangup" option


@dataclass(frozen=True, slots=True)
class IvrState:
    menu: str
    stack: tuple[str, ...] = ()  # menus "back" returns to, innermost last
    failures: int = 0  # invalid keys and timeouts on this visit to the menu
    idle_defaults: int = 0  # defaults taken since the caller last pressed a valid key
    ended: bool = False


class Step(NamedTuple):
    state: IvrState
    actions: tuple[ChannelAction, ...]


def start(menus: MenuSet, entry: str) -> Step:
    menu = menus[entry]
    return Step(IvrState(entry), (_offer(menu),))


def advance(menus: MenuSet, state: IvrState, event: CallerEvent) -> Step:
    if state.ended:
        raise ValueError("the IVR has already ended this call")
    menu = menus[state.menu]
    if isinstance(event, Digits) and event.digits:
        # '#' may be an option of its own; otherwise it only ended the entry
        keys = event.digits if event.digits in menu.options else (event.digits.rstrip("#") or "#")
        choice = menu.options.get(keys)
        if choice is not None:
            return _run(menus, replace(state, idle_defaults=0), choice)
        if _dials_extension(menus, menu, keys):
            return Step(replace(state, ended=True), (Transfer("extension", keys),))
        return _fail(menus, state, menu, menu.invalid_prompt)
    if isinstance(event, Digits | Timeout):
        return _fail(menus, state, menu, menu.timeout_prompt)
    raise ValueError(f"an IVR menu expects Digits or Timeout, got {event!r}")


def _offer(menu: Menu) -> Collect:
    return Collect(menu.prompt, menu.timeout_ms, menu.max_digits)


def _dials_extension(menus: MenuSet, menu: Menu, keys: str) -> bool:
    return (
        menu.direct_dial
        and len(keys) == menu.extension_digits
        and keys.isascii()
        and keys.isdigit()
        and (menus.extensions is None or keys in menus.extensions)
    )


def _fail(menus: MenuSet, state: IvrState, menu: Menu, prompt: str | None) -> Step:
    failures = state.failures + 1
    if failures <= menu.retries:
        said = (Play(prompt),) if prompt else ()
        return Step(replace(state, failures=failures), (*said, _offer(menu)))
    if menu.default is None:
        return Step(replace(state, ended=True), (Hangup(NO_INPUT),))
    if not menu.default.ends_menu and state.idle_defaults >= MAX_IDLE_DEFAULTS:
        return Step(replace(state, ended=True), (Hangup(NO_INPUT),))
    return _run(menus, replace(state, idle_defaults=state.idle_defaults + 1), menu.default)


def _run(menus: MenuSet, state: IvrState, choice: Choice) -> Step:
    if choice.action == "transfer":
        assert choice.via is not None
        return Step(replace(state, ended=True), (Transfer(choice.via, choice.target),))
    if choice.action == "voicemail":
        return Step(replace(state, ended=True), (Voicemail(),))
    if choice.action == "hangup":
        return Step(replace(state, ended=True), (Hangup(OPTION_HANGUP),))
    if choice.action == "menu":
        return _enter(menus, state, choice.target)
    if choice.action == "back" and state.stack:
        return _enter(menus, state, state.stack[-1])
    # "repeat", or "back" at the entry menu
    return Step(replace(state, failures=0), (_offer(menus[state.menu]),))


def _enter(menus: MenuSet, state: IvrState, target: str) -> Step:
    if target == state.menu:
        stack = state.stack
    elif target in state.stack:
        stack = state.stack[: state.stack.index(target)]
    else:
        stack = (*state.stack, state.menu)
    return Step(replace(state, menu=target, stack=stack, failures=0), (_offer(menus[target]),))
