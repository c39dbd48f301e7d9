"""One table of the hot path's figures (issue 14, item 7), read from the benchmarks' JSON
in bench/results/: figure, goal, measured, pass/fail, and which run it came from. A figure
whose benchmark has not run (or whose run was not valid) says so instead of passing.

    .venv/bin/python bench/report.py          (make bench runs the benchmarks, then this)

Also written to bench/results/summary.json.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


@dataclass(frozen=True)
class Figure:
    name: str
    goal: str
    measured: str
    verdict: str  # pass, FAIL, not run, invalid
    source: str


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


def _dig(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _figure(
    name: str,
    goal: str,
    source: str,
    data: dict[str, Any] | None,
    read: Callable[[dict[str, Any]], Any],
    ok: Callable[[Any], bool],
    fmt: Callable[[Any], str] = str,
    valid: Callable[[dict[str, Any]], bool] | None = None,
) -> Figure:
    if data is None:
        return Figure(name, goal, "-", "not run", source)
    value = read(data)
    if value is None:
        return Figure(name, goal, "-", "not run", source)
    when = data.get("when", "")
    src = f"{source} {when}".strip()
    if valid is not None and not valid(data):
        return Figure(name, goal, fmt(value), "invalid", src)
    return Figure(name, goal, fmt(value), "pass" if ok(value) else "FAIL", src)


def _ms(v: Any) -> str:
    return f"{v:.2f} ms"


def figures() -> list[Figure]:
    agi, cp, res, snap = (
        _load("agi_direct"),
        _load("call_path"),
        _load("reservations"),
        _load("snapshot_memory"),
    )
    out: list[Figure] = []

    def agi_valid(case: str) -> Callable[[dict[str, Any]], bool]:
        return lambda d: bool(_dig(d, "cases", case, "direct", "valid"))

    for case, p99_goal in (("no_money_path", 1.0), ("prepaid_reservation", 2.0)):
        label = "no money path" if case == "no_money_path" else "durable reservation"
        lat = ("cases", case, "direct", "decision_latency_ms_client")
        out.append(
            _figure(
                f"FastAGI 300/s, {label}: client p99",
                f"<= {p99_goal} ms",
                "agi_direct",
                agi,
                lambda d, lat=lat: _dig(d, *lat, "p99"),
                lambda v, g=p99_goal: v <= g,
                _ms,
                agi_valid(case),
            )
        )
        out.append(
            _figure(
                f"FastAGI 300/s, {label}: client max",
                "<= 10 ms",
                "agi_direct",
                agi,
                lambda d, lat=lat: _dig(d, *lat, "max"),
                lambda v: v <= 10.0,
                _ms,
                agi_valid(case),
            )
        )
        out.append(
            _figure(
                f"FastAGI 300/s, {label}: generator send lag p99",
                "< 1 ms",
                "agi_direct",
                agi,
                lambda d, c=case: _dig(d, "cases", c, "direct", "generator", "send_lag_ms", "p99"),
                lambda v: v < 1.0,
                _ms,
            )
        )
        out.append(
            _figure(
                f"FastAGI 300/s, {label}: two clients agree",
                "within 20%",
                "agi_direct",
                agi,
                lambda d, c=case: _dig(d, "cases", c, "clients_agree_within_20pct"),
                bool,
                lambda v: "yes" if v else "no",
            )
        )
    out.append(
        _figure(
            "Saturation: control plane / static dialplan",
            ">= 0.95",
            "call_path",
            cp,
            lambda d: d.get("ratio_control_plane_to_static"),
            lambda v: v >= 0.95,
            lambda v: f"{v:.2f}",
        )
    )
    for path, goal in (("control_plane", 0.5), ("static_dialplan", 0.1)):
        out.append(
            _figure(
                f"Service CPU per call, {path.replace('_', ' ')}",
                f"<= {goal} ms",
                "call_path",
                cp,
                lambda d, p=path: _dig(d, "service_cpu_ms_per_call", p),
                lambda v, g=goal: v <= g,
                _ms,
            )
        )
    for key, goal in (("one_hot_account", 3000), ("many_accounts", 5000)):
        label = "one hot account" if key == "one_hot_account" else "1000 accounts"
        out.append(
            _figure(
                f"Reservations + settlements/s, {label}, 64 callers",
                f">= {goal}/s",
                "reservations",
                res,
                lambda d, k=key: _dig(d, k, "group_commit", "reservations_per_s"),
                lambda v, g=goal: v >= g,
                lambda v: f"{v:.0f}/s",
                lambda d, k=key: bool(_dig(d, k, "group_commit", "invariants", "ok")),
            )
        )

    def longest_reload_block(d: dict[str, Any]) -> float | None:
        reloads = d.get("reload_after_one_change") or {}
        blocks = [r.get("max_loop_block_ms") for r in reloads.values() if isinstance(r, dict)]
        return max(blocks) if blocks and None not in blocks else None

    snapshot_figures: tuple[tuple[str, float, str, Callable[[dict[str, Any]], Any]], ...] = (
        ("Snapshot memory, 10k/100k/1M", 126.0, "MB", lambda d: _dig(d, "full_build", "memory_mb")),
        ("Snapshot build time", 24.5, "s", lambda d: _dig(d, "full_build", "wall_s")),
        ("Reload after one change: longest loop block", 10.0, "ms", longest_reload_block),
        # the periodic safety rebuild (every 10 min) and the fallback when a change is lost
        (
            "Full rebuild while serving: longest loop block",
            10.0,
            "ms",
            lambda d: _dig(d, "full_rebuild_while_serving", "max_loop_block_ms"),
        ),
    )
    for label, goal, unit, get in snapshot_figures:
        out.append(
            _figure(
                label,
                f"<= {goal} {unit}",
                "snapshot_memory",
                snap,
                get,
                lambda v, g=goal: v <= g,
                lambda v, u=unit: f"{v:.1f} {u}",
            )
        )
    return out


def main() -> int:
    rows = figures()
    widths = [max(len(getattr(r, f)) for r in rows) for f in ("name", "goal", "measured", "verdict")]
    head = ("figure", "goal", "measured", "result")
    widths = [max(w, len(h)) for w, h in zip(widths, head, strict=True)]
    line = "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))
    print(line)
    print("-" * len(line))
    for r in rows:
        cells = (r.name, r.goal, r.measured, r.verdict)
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + f"  ({r.source})")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "summary.json").write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
