"""Phone numbers never reach the logs whole: 13800138000 -> 138****8000."""

from __future__ import annotations


def mask_number(value: str | None) -> str:
    if not value:
        return ""
    if len(value) <= 7:
        return value[:1] + "*" * (len(value) - 1)
    return value[:3] + "*" * (len(value) - 7) + value[-4:]
