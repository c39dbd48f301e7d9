"""IVR menus as data: a tenant's menus (stored as `{"name": ..., "definition": {...}}`)
parsed and validated as one set when saved, so that a bad menu fails the save, not a call.

A definition::

    {"prompt": "welcome", "options": {"1": {"action": "menu", "target": "sales"},
                                      "0": {"action": "transfer", "group": "operator"}},
     "timeout_ms": 5000, "timeout_prompt": "no-input", "invalid_prompt": "invalid",
     "retries": 3, "direct_dial": true, "extension_digits": 4,
     "default": {"action": "voicemail"}}

Actions: menu (target), transfer (exactly one of group / extension / number), voicemail,
repeat, back, hangup. `retries` is how many times the menu is offered again after an
invalid key or a timeout; then the default action runs (no default: hang up)."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ivr.actions import TransferKind

KEYS = frozenset("0123456789*#")
ChoiceKind = Literal["menu", "transfer", "voicemail", "repeat", "back", "hangup"]
CHOICE_KINDS: tuple[ChoiceKind, ...] = ("menu", "transfer", "voicemail", "repeat", "back", "hangup")
TRANSFER_KINDS: tuple[TransferKind, ...] = ("group", "extension", "number")
MENU_KEYS = frozenset(
    {
        "prompt",
        "options",
        "timeout_ms",
        "timeout_prompt",
        "invalid_prompt",
        "retries",
        "direct_dial",
        "extension_digits",
        "default",
    }
)
_DIGITS = re.compile(r"^[0-9]+$")
_PHONE = re.compile(r"^\+?[0-9]{3,20}$")


@dataclass(frozen=True, slots=True)
class Choice:
    """What a key (or running out of retries) does."""

    action: ChoiceKind
    target: str = ""  # sub-menu name, or the transfer's group / extension / number
    via: TransferKind | None = None  # for a transfer

    @property
    def ends_menu(self) -> bool:
        """True when the call leaves the IVR (and so any loop of menus)."""
        return self.action in ("transfer", "voicemail", "hangup")


@dataclass(frozen=True, slots=True)
class Menu:
    name: str
    prompt: str
    options: Mapping[str, Choice]
    timeout_ms: int = 5000
    timeout_prompt: str | None = None
    invalid_prompt: str | None = None
    retries: int = 3
    direct_dial: bool = False
    extension_digits: int = 4
    default: Choice | None = None  # None: hang up with "ivr_no_input"

    @property
    def max_digits(self) -> int:
        return self.extension_digits if self.direct_dial else 1

    def choices(self) -> Iterable[tuple[str, Choice]]:
        """(key, choice) for every option and the default; the key names it in errors."""
        yield from self.options.items()
        if self.default is not None:
            yield "default", self.default


@dataclass(frozen=True, slots=True)
class MenuSet:
    menus: Mapping[str, Menu]
    # Extensions a caller may dial directly; None when not checked here (the adapter's
    # dial of an unknown extension then fails like any other dial).
    extensions: frozenset[str] | None = None

    def __getitem__(self, name: str) -> Menu:
        try:
            return self.menus[name]
        except KeyError:
            raise ValueError(f"no IVR menu named {name!r}") from None

    def __contains__(self, name: object) -> bool:
        return name in self.menus

    @staticmethod
    def from_rows(rows: Iterable[Mapping[str, Any]], **kwargs: Any) -> MenuSet:
        """Parse stored rows `{"name": ..., "definition": {...}}`; kwargs as for parse()."""
        menus: dict[str, Any] = {}
        for row in rows:
            name = row.get("name")
            if not isinstance(name, str):
                raise ValueError(f"a menu name must be a string, got {name!r}")
            if name in menus:
                raise ValueError(f"two menus are named {name!r}")
            menus[name] = row.get("definition")
        return MenuSet.parse(menus, **kwargs)

    @staticmethod
    def parse(
        menus: Mapping[str, Any],
        *,
        prompt_exists: Callable[[str], bool],
        max_depth: int = 5,
        known_groups: Collection[str] | None = None,
        known_extensions: Collection[str] | None = None,
        entries: Collection[str] | None = None,
    ) -> MenuSet:
        """Validate a tenant's menus (name -> definition) as a whole.

        `entries` are the menus a call may start in (the numbers' and time policies' IVR
        targets); by default every menu that no other menu leads to, and, for a ring of
        menus that nothing outside leads into, each of its members. Depth counts the
        entry menu as level 1."""
        if not isinstance(menus, Mapping) or not menus:
            raise ValueError("a menu set needs at least one menu")
        if max_depth < 1:
            raise ValueError(f"max_depth must be at least 1, got {max_depth}")
        parsed = {}
        for name, raw in menus.items():
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f"a menu name must be a non-empty string, got {name!r}")
            parsed[name] = _parse_menu(name, raw, prompt_exists, known_groups, known_extensions)
        for menu in parsed.values():
            for key, choice in menu.choices():
                if choice.action == "menu" and choice.target not in parsed:
                    raise ValueError(
                        f"menu {menu.name!r} key {key!r}: sub-menu {choice.target!r} does not exist"
                    )
        _check_loops(parsed)
        _check_depth(parsed, max_depth, entries)
        extensions = None if known_extensions is None else frozenset(known_extensions)
        return MenuSet(parsed, extensions)


def _parse_menu(
    name: str,
    raw: Any,
    prompt_exists: Callable[[str], bool],
    known_groups: Collection[str] | None,
    known_extensions: Collection[str] | None,
) -> Menu:
    where = f"menu {name!r}"
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: the definition must be an object, got {type(raw).__name__}")
    unknown = [key for key in raw if key not in MENU_KEYS]
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(MENU_KEYS))})")

    def prompt(key: str, required: bool) -> str | None:
        value = raw.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value:
            raise ValueError(f"{where} key {key!r}: a prompt name is required")
        if not prompt_exists(value):
            raise ValueError(f"{where} key {key!r}: prompt {value!r} does not exist")
        return value

    def integer(key: str, default: int, low: int, high: int) -> int:
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"{where} key {key!r}: must be an integer from {low} to {high}, got {value!r}")
        return value

    main_prompt = prompt("prompt", True)
    assert main_prompt is not None
    direct_dial = raw.get("direct_dial", False)
    if not isinstance(direct_dial, bool):
        raise ValueError(f"{where} key 'direct_dial': must be true or false, got {direct_dial!r}")
    options_raw = raw.get("options", {})
    if not isinstance(options_raw, Mapping):
        raise ValueError(f"{where} key 'options': must be an object of key -> action")
    options = {}
    for key, action in options_raw.items():
        if key not in KEYS or len(key) != 1:
            raise ValueError(f"{where} key {key!r}: an option key is one of 0-9, * or #")
        options[key] = _parse_choice(where, key, action, known_groups, known_extensions)
    default_raw = raw.get("default")
    default = (
        None
        if default_raw is None
        else _parse_choice(where, "default", default_raw, known_groups, known_extensions)
    )
    if not options and default is None and not direct_dial:
        raise ValueError(f"{where} key 'options': a menu needs options, a default or direct dial")
    return Menu(
        name=name,
        prompt=main_prompt,
        options=options,
        timeout_ms=integer("timeout_ms", 5000, 500, 60000),
        timeout_prompt=prompt("timeout_prompt", False),
        invalid_prompt=prompt("invalid_prompt", False),
        retries=integer("retries", 3, 0, 10),
        direct_dial=direct_dial,
        extension_digits=integer("extension_digits", 4, 2, 8),
        default=default,
    )


def _parse_choice(
    where: str,
    key: str,
    raw: Any,
    known_groups: Collection[str] | None,
    known_extensions: Collection[str] | None,
) -> Choice:
    where = f"{where} key {key!r}"
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: an action must be an object like {{'action': 'menu', 'target': ...}}")
    action = raw.get("action")
    if action not in CHOICE_KINDS:
        raise ValueError(f"{where}: unknown action {action!r} (allowed: {', '.join(CHOICE_KINDS)})")
    if action == "menu":
        target = raw.get("target")
        if not isinstance(target, str) or not target:
            raise ValueError(f"{where}: a menu action needs a target menu name")
        return Choice("menu", target)
    if action != "transfer":
        return Choice(action)
    given = [k for k in TRANSFER_KINDS if raw.get(k) not in (None, "")]
    if len(given) != 1:
        raise ValueError(f"{where}: a transfer needs exactly one of group, extension or number")
    via = given[0]
    ref = raw[via]
    if not isinstance(ref, str):
        raise ValueError(f"{where}: the transfer {via} must be a string, got {ref!r}")
    if via == "group" and known_groups is not None and ref not in known_groups:
        raise ValueError(f"{where}: transfer to unknown group {ref!r}")
    if via == "extension":
        if not _DIGITS.match(ref):
            raise ValueError(f"{where}: extension {ref!r} must be digits")
        if known_extensions is not None and ref not in known_extensions:
            raise ValueError(f"{where}: transfer to unknown extension {ref!r}")
    if via == "number" and not _PHONE.match(ref):
        raise ValueError(f"{where}: number {ref!r} must be 3 to 20 digits")
    return Choice("transfer", ref, via)


def _edges(menus: Mapping[str, Menu]) -> dict[str, set[str]]:
    return {name: {c.target for _, c in menu.choices() if c.action == "menu"} for name, menu in menus.items()}


def _reachable(edges: Mapping[str, set[str]], start: str) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for nxt in edges[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _components(edges: Mapping[str, set[str]]) -> list[set[str]]:
    """Strongly connected sets of menus (tenants have tens of menus: quadratic is fine)."""
    reach = {name: _reachable(edges, name) for name in edges}
    done: set[str] = set()
    out = []
    for name in edges:  # insertion order, so errors name menus in a stable order
        if name not in done:
            component = {other for other in reach[name] if name in reach[other]}
            done |= component
            out.append(component)
    return out


def _check_loops(menus: Mapping[str, Menu]) -> None:
    """A ring of menus needs a way out. "back" counts as one when callers can come into the
    ring from a menu outside it (they can go back the way they came)."""
    edges = _edges(menus)
    for component in _components(edges):
        first = next(n for n in menus if n in component)
        if len(component) == 1 and first not in edges[first]:
            continue  # not a loop
        entered_from_outside = any(edges[other] & component for other in menus if other not in component)
        exits = any(
            choice.ends_menu
            or (choice.action == "menu" and choice.target not in component)
            or (choice.action == "back" and entered_from_outside)
            for name in component
            for _, choice in menus[name].choices()
        )
        if not exits:
            ring = ", ".join(repr(n) for n in menus if n in component)
            raise ValueError(
                f"menu {first!r} key 'options': loop without an exit through menus {ring}: "
                "add a transfer, voicemail or hangup option (or default) to one of them"
            )


def _check_depth(menus: Mapping[str, Menu], max_depth: int, entries: Collection[str] | None) -> None:
    edges = _edges(menus)
    if entries is None:
        targeted_from = {name: {o for o in menus if name in edges[o] and o != name} for name in menus}
        starts: list[str] = []
        for component in _components(edges):
            if not any(targeted_from[n] - component for n in component):
                starts.extend(n for n in menus if n in component)
    else:
        starts = list(entries)
        for name in starts:
            if name not in menus:
                raise ValueError(f"entry menu {name!r} does not exist")
    for entry in starts:
        depth = {entry: 1}
        queue = deque([entry])
        while queue:
            name = queue.popleft()
            for key, choice in menus[name].choices():
                if choice.action != "menu" or choice.target in depth:
                    continue
                depth[choice.target] = depth[name] + 1
                if depth[choice.target] > max_depth:
                    raise ValueError(
                        f"menu {name!r} key {key!r}: sub-menu {choice.target!r} is at depth "
                        f"{depth[choice.target]} from entry {entry!r}, deeper than max_depth {max_depth}"
                    )
                queue.append(choice.target)
