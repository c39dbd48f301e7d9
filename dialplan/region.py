"""The caller's region (province, city) from the number, with phonenumbers' geocoder:
mobile segments (138 0013 …) and fixed-line area codes (021 …) both resolve. A number the
geocoder cannot place (or places only as "China") has an unknown region, handled
explicitly by the policy."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import phonenumbers
from phonenumbers import geocoder

from dialplan.place_names import CITIES_EN, PROVINCES_EN

_MUNICIPALITIES = ("北京", "上海", "天津", "重庆")
_AUTONOMOUS = ("内蒙古", "广西", "西藏", "宁夏", "新疆", "香港", "澳门")
_PROVINCE = re.compile(r"^(.+?(?:省|自治区|特别行政区))(.*)$")
_SUFFIXES = (
    "维吾尔自治区",
    "壮族自治区",
    "回族自治区",
    "特别行政区",
    "自治区",
    "自治州",
    "省",
    "市",
    "地区",
    "盟",
)


def normalise_place(name: str) -> str:
    """'广东省' -> '广东', '深圳市' -> '深圳', '上海' -> '上海'."""
    name = name.strip()
    for suffix in _SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def canonical_place(name: str, english: Mapping[str, str], where: str) -> str:
    """A rule's province or city as the region step compares it: Chinese names are
    normalised ('广东省' -> '广东'), English ones as the geocoder spells them mapped to
    Chinese ('Shanghai' -> '上海'); a Latin name that is not a place could never match, so
    it is refused, naming the field."""
    name = name.strip()
    if not name.isascii():
        return normalise_place(name)
    if not name:
        return ""
    found = english.get(" ".join(name.lower().split()))
    if found is None:
        raise ValueError(
            f"{where}: {name!r} is no {where.rsplit('.', 1)[-1]} of China we know (give it in Chinese)"
        )
    return found


@dataclass(frozen=True, slots=True)
class Region:
    province: str  # normalised, e.g. '上海', '广东'; '' when unknown
    city: str  # normalised, e.g. '上海', '深圳'; '' when unknown

    @property
    def known(self) -> bool:
        return bool(self.province)


UNKNOWN = Region("", "")


@lru_cache(maxsize=200_000)
def region_of(number: str) -> Region:
    """Region of a caller number as delivered by the network (national or +86 form)."""
    digits = number.strip()
    if not digits or digits in ("anonymous", "unknown"):
        return UNKNOWN
    try:
        parsed = phonenumbers.parse(digits, "CN")
    except phonenumbers.NumberParseException:
        return UNKNOWN
    if parsed.country_code != 86 or not phonenumbers.is_valid_number(parsed):
        return UNKNOWN
    return place_of_description(geocoder.description_for_number(parsed, "zh"))


def place_of_description(place: str) -> Region:
    """The geocoder's Chinese description ('广东省深圳市', '上海市') as a Region."""
    if not place or place == "中国":
        return UNKNOWN
    for city in _MUNICIPALITIES:
        if place.startswith(city):
            return Region(city, city)
    for region in _AUTONOMOUS:  # the geocoder writes '广西南宁市', without 壮族自治区
        if place.startswith(region) and not _PROVINCE.match(place):
            rest = place[len(region) :]
            return Region(region, normalise_place(rest) if rest else "")
    m = _PROVINCE.match(place)
    if m:
        return Region(normalise_place(m.group(1)), normalise_place(m.group(2)) if m.group(2) else "")
    return Region(normalise_place(place), "")


@dataclass(frozen=True, slots=True)
class RegionRule:
    province: str  # normalised; '' matches any
    city: str  # normalised; '' matches any
    action: str  # allow | deny | route
    group: str = ""

    def matches(self, region: Region) -> bool:
        return (not self.province or self.province == region.province) and (
            not self.city or self.city == region.city
        )


@dataclass(frozen=True, slots=True)
class RegionPolicy:
    """Allow, deny or route by the caller's province/city; the first matching rule wins.
    A caller whose region is unknown gets the `unknown` action — an explicit choice."""

    rules: tuple[RegionRule, ...]
    unknown: RegionRule
    default: RegionRule

    @staticmethod
    def _action(raw: object, where: str) -> RegionRule:
        if raw in ("allow", "deny"):
            return RegionRule("", "", str(raw))
        if isinstance(raw, dict) and raw.get("group"):
            return RegionRule("", "", "route", str(raw["group"]))
        raise ValueError(f"{where} must be 'allow', 'deny' or {{'group': name}}, got {raw!r}")

    @staticmethod
    def parse(raw: dict) -> RegionPolicy:  # type: ignore[type-arg]
        rules = []
        for i, r in enumerate(raw.get("rules", [])):
            if not r.get("province") and not r.get("city"):
                raise ValueError(f"rule {i} needs a province or a city")
            action = r.get("action", "route" if r.get("group") else "allow")
            if action not in ("allow", "deny", "route"):
                raise ValueError(f"rule {i}: action must be allow, deny or route")
            if action == "route" and not r.get("group"):
                raise ValueError(f"rule {i}: route needs a group")
            rules.append(
                RegionRule(
                    canonical_place(r.get("province", ""), PROVINCES_EN, f"rules[{i}].province"),
                    canonical_place(r.get("city", ""), CITIES_EN, f"rules[{i}].city"),
                    action,
                    r.get("group", ""),
                )
            )
        return RegionPolicy(
            tuple(rules),
            RegionPolicy._action(raw.get("unknown", "allow"), "unknown"),
            RegionPolicy._action(raw.get("default", "allow"), "default"),
        )

    def decide(self, region: Region) -> RegionRule:
        if not region.known:
            return self.unknown
        return next((r for r in self.rules if r.matches(region)), self.default)
