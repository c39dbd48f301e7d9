"""Where a policy step sends a call: a destination group, an IVR menu, an announcement
then hang-up, or voicemail."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

TargetKind = Literal["group", "ivr", "announcement", "voicemail"]


@dataclass(frozen=True, slots=True)
class Target:
    kind: TargetKind
    ref: str = ""  # group name, IVR menu name, or prompt name

    @staticmethod
    def parse(raw: Mapping[str, Any] | None, default: Target | None = None) -> Target:
        if not raw:
            if default is None:
                raise ValueError("a target is required")
            return default
        kind = raw.get("kind")
        if kind not in ("group", "ivr", "announcement", "voicemail"):
            raise ValueError(f"unknown target kind {kind!r}")
        ref = str(raw.get("ref", "default" if kind == "group" else ""))
        if kind in ("ivr", "announcement") and not ref:
            raise ValueError(f"a {kind} target needs a ref")
        return Target(kind, ref)


DEFAULT_GROUP = Target("group", "default")
