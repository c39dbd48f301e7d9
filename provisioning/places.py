"""Region rules as they are saved: each rule's province and city in the form the region
step matches on (``dialplan.region``: the geocoder's Chinese names, normalised), so that
what an operator reads back is what calls are compared with. English names as the
geocoder spells them are mapped to those ("Shanghai" -> "上海"); a name — English or
Chinese — that the geocoder never produces for a Chinese number, or a city it never
places in the rule's province, could never match and is refused, naming the field."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from dialplan.place_names import CITIES_EN, PROVINCES_EN
from dialplan.region import canonical_place, place_of_description


@dataclass(frozen=True)
class Places:
    provinces: frozenset[str]
    cities: frozenset[str]
    pairs: frozenset[tuple[str, str]]  # (province, city)
    cities_en: Mapping[str, str]  # English (lower case) -> Chinese, municipalities included


@lru_cache(maxsize=1)
def known_places() -> Places:
    """Every (province, city) the region step can produce, from phonenumbers' geocoder
    data for +86 — the same data and the same reading (``place_of_description``)."""
    from phonenumbers.geodata import GEOCODE_DATA  # here: loading it costs 0.6 s, paid on first use

    pairs = set()
    for prefix, names in GEOCODE_DATA.items():
        if prefix.startswith("86") and "zh" in names:
            region = place_of_description(names["zh"])
            if region.known:
                pairs.add((region.province, region.city))
    # The geocoder's English names give Beijing, Shanghai, Tianjin and Chongqing as
    # provinces only; the region step gives each as its own city too.
    municipalities = {en: zh for en, zh in PROVINCES_EN.items() if (zh, zh) in pairs}
    return Places(
        frozenset(p for p, _ in pairs),
        frozenset(c for _, c in pairs if c),
        frozenset(pairs),
        {**municipalities, **CITIES_EN},
    )


class PlaceError(ValueError):
    """A rule's name that could never match; ``path`` is its place in the definition."""

    def __init__(self, path: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.path = path


def _where(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def canonical_region_definition(definition: Mapping[str, Any]) -> dict[str, Any]:
    """The definition with each rule's province/city in canonical form. Raises PlaceError
    for a name that could never match. Rules that are not objects are left for
    ``RegionPolicy.parse`` to refuse."""
    out = dict(definition)
    rules = definition.get("rules")
    if not isinstance(rules, list):
        return out
    places = known_places()
    canonical_rules: list[Any] = []
    for i, rule in enumerate(rules):
        if not isinstance(rule, Mapping):
            canonical_rules.append(rule)
            continue
        rule = dict(rule)
        names: dict[str, str] = {}
        for key, english, known in (
            ("province", PROVINCES_EN, places.provinces),
            ("city", places.cities_en, places.cities),
        ):
            raw = rule.get(key)
            if raw is None:
                continue
            path: tuple[str | int, ...] = ("rules", i, key)
            if not isinstance(raw, str):
                raise PlaceError(path, f"{_where(path)} must be a string")
            try:
                name = canonical_place(raw, english, _where(path))
            except ValueError as exc:
                raise PlaceError(path, str(exc)) from None
            if name and name not in known:
                raise PlaceError(
                    path, f"{_where(path)}: {raw.strip()!r} is no {key} of China's numbering we know"
                )
            names[key] = name
            rule[key] = name
        province, city = names.get("province", ""), names.get("city", "")
        if province and city and (province, city) not in places.pairs:
            path = ("rules", i, "city")
            raise PlaceError(path, f"{_where(path)}: {city} is not in {province}")
        canonical_rules.append(rule)
    out["rules"] = canonical_rules
    return out
