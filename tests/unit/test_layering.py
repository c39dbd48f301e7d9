"""The layering of README's "Layout", enforced on the source (an import-linter of our own:
a few dozen lines of ast, no plug-in to configure).

    softswitch.{service,cli,http}      runtime: composition root, the command, the HTTP app
    softswitch.engines                 Asterisk (FastAGI, AMI), FreeSWITCH (ESL) adapters
    softswitch.edge                    the cluster layout's SIP edge (Kamailio): its bans
    softswitch.callpath                the engine-neutral call path
    provisioning                       services: tenants, numbers, money, ledger, billing, API
    softswitch.notify                  notices to e-mail and webhooks: signing, rendering, delivery
    softswitch.core                    settings, clock, metrics, masking, database
    dialplan ivr rating trunks         pure policy and arithmetic

A module imports only from its own layer or those below; the pure packages import only
each other; development tooling (scripts/) is imported by nothing of the runtime; no
import cycles between modules; an import inside a function says why in a comment.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PURE = ("dialplan", "ivr", "rating", "trunks")
LAYERS = (  # top first
    ("softswitch.service", "softswitch.cli", "softswitch.http"),
    ("softswitch.jobs",),  # the periodic jobs and their scheduler
    ("softswitch.engines",),
    ("softswitch.edge",),  # the SIP edge's bans: their record and API (cluster layout)
    ("softswitch.callpath",),
    ("provisioning",),
    ("softswitch.notify",),  # notice delivery: signing, rendering, channels, the worker
    ("softswitch.core", "softswitch.migrations"),
    PURE,
)
PACKAGES = ("softswitch", "provisioning", *PURE)


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the project module imported
    line: int
    local: bool  # inside a function
    commented: bool  # a comment on its line or the line above says why


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _known(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path) -> Iterator[Import]:
    source = path.read_text()
    lines = source.splitlines()
    tree = ast.parse(source)
    functions = [
        (n.lineno, n.end_lineno or n.lineno)
        for n in ast.walk(tree)
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
    ]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                base = ".".join(pkg[: len(pkg) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        local = any(a < node.lineno <= b for a, b in functions)
        nearby = lines[node.lineno - 2 : node.lineno] if node.lineno > 1 else lines[:1]
        commented = any("#" in text for text in nearby)
        for target in {t for t in map(_known, names) if t and t != module}:
            yield Import(module, target, node.lineno, local, commented)


IMPORTS = [imp for module, path in MODULES.items() for imp in _imports(module, path)]


def _layer(module: str) -> int:
    for i, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    raise AssertionError(f"{module} is in no layer of tests/unit/test_layering.py")


def test_every_module_is_in_a_layer() -> None:
    for module in MODULES:
        if module not in ("softswitch",):
            _layer(module)


def test_no_module_imports_a_layer_above_its_own() -> None:
    upward = [
        f"{i.module}:{i.line} imports {i.target}"
        for i in IMPORTS
        if i.module != "softswitch" and _layer(i.target) < _layer(i.module)
    ]
    assert upward == []


def test_the_pure_packages_import_only_each_other() -> None:
    impure = [
        f"{i.module}:{i.line} imports {i.target}"
        for i in IMPORTS
        if i.module.split(".")[0] in PURE and i.target.split(".")[0] not in PURE
    ]
    assert impure == []


def test_the_runtime_imports_no_development_tooling() -> None:
    offenders = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            name = node.module if isinstance(node, ast.ImportFrom) else None
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [name or ""]
            if any(n == "scripts" or n.startswith("scripts.") for n in names):
                offenders.append(f"{module}:{node.lineno}")
    assert offenders == []


def test_no_import_cycles_between_modules() -> None:
    graph: dict[str, set[str]] = {}
    for i in IMPORTS:
        graph.setdefault(i.module, set()).add(i.target)
    # A package's __init__ importing its own modules is not a cycle of substance.
    cycles = [c for c in _strongly_connected(graph) if len(c) > 1]
    assert cycles == []


def test_an_import_inside_a_function_says_why() -> None:
    silent = [f"{i.module}:{i.line} ({i.target})" for i in IMPORTS if i.local and not i.commented]
    assert silent == []


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iteratively."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in list(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                out.append(sorted(component))
    return out


@pytest.mark.parametrize(
    ("graph", "cyclic"), [({"a": {"b"}, "b": {"a"}}, True), ({"a": {"b"}, "b": set()}, False)]
)
def test_the_cycle_finder_finds_cycles(graph: dict[str, set[str]], cyclic: bool) -> None:
    assert any(len(c) > 1 for c in _strongly_connected(graph)) is cyclic
