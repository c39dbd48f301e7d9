"""Phone numbers never reach the logs whole: 13800138000 -> 138****8000."""

from __future__ import annotations


def mask_number(value: str | None) -> str:
    """Hide the middle digits of a phone number: ``13800138000`` -> ``138****8000``.

    Counts only digits (separators and letters are kept as they are), shows
    the first 3 and the last 4 and replaces the rest with ``*``.  Values with
    7 digits or fewer are short extensions and stay readable.
    """
    if not value:
        return ""
    total = sum(ch.isdigit() for ch in value)
    if total <= 7:
        return value
    out: list[str] = []
    seen = 0
    for ch in value:
        if ch.isdigit():
            seen += 1
            out.append(ch if seen <= 3 or seen > total - 4 else "*")
        else:
            out.append(ch)
    return "".join(out)
