"""Every English source string the portal shows has its Simplified Chinese text: the
`_("...")` literals of the templates and page modules and the menu labels, looked up in
the merged zh_CN catalogues. A missing one is named, with the file that uses it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from provisioning.portal.i18n import catalogue

PORTAL = Path(__file__).resolve().parents[2] / "provisioning" / "portal"
_TEMPLATE_LITERAL = re.compile(r"""\b_\(\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')""")


def _template_strings() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in sorted((PORTAL / "templates").rglob("*.html")):
        for m in _TEMPLATE_LITERAL.finditer(path.read_text()):
            found.setdefault(m.group(1) if m.group(1) is not None else m.group(2), path.name)
    return found


def _python_strings() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in sorted(PORTAL.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            first = node.args[0]
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            if name == "_" and isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.setdefault(first.value, path.name)
            if name == "NavItem" and len(node.args) >= 3:
                label = node.args[2]
                if isinstance(label, ast.Constant) and isinstance(label.value, str):
                    found.setdefault(label.value, path.name)
    return found


def test_the_scan_finds_the_portals_strings() -> None:
    strings = _template_strings() | _python_strings()
    assert "Sign out" in strings and "Dashboard" in strings  # the scan itself works


def test_every_portal_string_has_a_chinese_text() -> None:
    zh = catalogue("zh")
    strings = _template_strings() | _python_strings()
    missing = sorted(f"{where}: {text!r}" for text, where in strings.items() if text not in zh)
    assert not missing, "no zh_CN text for:\n" + "\n".join(missing)


def test_placeholders_survive_translation() -> None:
    zh = catalogue("zh")
    braces = re.compile(r"\{(\w+)\}")
    wrong = [
        text
        for text in _template_strings() | _python_strings()
        if text in zh and set(braces.findall(text)) != set(braces.findall(zh[text]))
    ]
    assert not wrong, wrong
