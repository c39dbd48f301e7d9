"""The portal's languages: Simplified Chinese by default, English on request.

Templates and pages write English source strings (`_("Balance")`); the Chinese texts
live in gettext catalogues, one per feature, `locale/zh_CN/<feature>.po`, read with
Babel. A string without a translation shows in English (and a test lists it)."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from babel.messages.pofile import read_po

LOCALE_DIR = Path(__file__).parent / "locale"
LANGUAGES = ("zh", "en")
DEFAULT_LANGUAGE = "zh"
_CATALOGUE_OF = {"zh": "zh_CN"}

Translate = Callable[..., str]


@cache
def catalogue(lang: str) -> dict[str, str]:
    """msgid -> translated text, every feature's .po merged (an empty msgstr is no text)."""
    folder = _CATALOGUE_OF.get(lang)
    out: dict[str, str] = {}
    if folder is None:
        return out
    for po in sorted((LOCALE_DIR / folder).glob("*.po")):
        with po.open("rb") as fh:
            for message in read_po(fh, locale=folder):
                if message.id and isinstance(message.id, str) and message.string:
                    out[message.id] = str(message.string)
    return out


def pick_language(cookie: str | None, accept_language: str | None) -> str:
    """The cookie the language switch sets wins; then the browser's first preference
    between the two; then Chinese."""
    if cookie in LANGUAGES:
        return cookie
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("en"):
            return "en"
        if tag.startswith("zh"):
            return "zh"
    return DEFAULT_LANGUAGE


def translator(lang: str) -> Translate:
    texts = catalogue(lang)

    def _(msgid: str, **values: Any) -> str:
        text = texts.get(msgid, msgid)
        return text.format(**values) if values else text

    return _
