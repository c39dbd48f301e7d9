"""Call-path saturation through Asterisk (issue 14, items 3 and 4): SIPp ramps the offered
rate through (i) a static dialplan with no control plane (calls from 127.0.0.4) and (ii)
the control plane (calls from the carrier, 127.0.0.2: FastAGI routing, a durable prepaid
reservation, the call record, the settlement), alternating at each rate in one run so drift
hits both alike, past the rate where the static dialplan stops answering every call.

Per phase: calls offered / answered / failed (SIPp's counters), and the CPU time the
service and Asterisk spent (from /proc, utime + stime) per 1000 calls. A rate is clean for
a path when every call offered was answered; for the control plane also every answered
call has a complete record (answered, ended, settled: checked in the database after the
phase). The headline: highest clean rate of the control plane / of the static dialplan
(goal >= 0.95), the service's CPU per routed call (goal <= 0.5 ms) and per static call, whose
engine events it still receives (goal <= 0.1 ms: docker/asterisk/manager.conf filters them
out by account code). Writes bench/results/call_path.json.

    .venv/bin/python bench/call_path.py [--rates 100,150,200,250,300 --seconds 10 --hold-ms 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.quantiles import bucket_delta, histogram_quantile  # noqa: E402
from scripts.devstack.demo import seed  # noqa: E402
from scripts.devstack.process import ServiceProcess  # noqa: E402
from scripts.devstack.sipp import SippResult, SippUas, run_uac  # noqa: E402
from scripts.devstack.stack import LocalStack, exclusive_use  # noqa: E402
from softswitch.core.db import connect  # noqa: E402
from softswitch.core.settings import Settings  # noqa: E402

ROUTED_NUMBER = "4008001234"  # demo data: rings 13800138000, like the static baseline
RATIO_GOAL = 0.95
CPU_GOAL_MS = {"control_plane": 0.5, "static_dialplan": 0.1}
_TICK = os.sysconf("SC_CLK_TCK")


def _seconds(field: str) -> float:
    """SIPp's ElapsedTime(C) is HH:MM:SS:micro (or HH:MM:SS)."""
    parts = field.split(":")
    h, m, s = int(parts[0]), int(parts[1]), int(parts[2])
    frac = int(parts[3]) / 10 ** len(parts[3]) if len(parts) > 3 else 0.0
    return h * 3600 + m * 60 + s + frac


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _summary(r: SippResult) -> dict[str, int]:
    return {
        "offered": int(r.stats.get("TotalCallCreated", 0)),
        "answered": int(r.stats.get("SuccessfulCall(C)", 0)),
        "failed": int(r.stats.get("FailedCall(C)", 0)),
    }


async def _seed(settings: Settings, channels: int) -> None:
    """Demo data, and the routed number's prepaid account sized for the load: every call
    through the control plane reserves a channel and money, so the benchmark measures
    that too (the demo's 4-channel package would refuse most of the offered calls)."""
    conn = await connect(settings)
    try:
        await seed(conn)
        await conn.execute(
            "UPDATE accounts SET channel_cap = $2, balance = GREATEST(balance, 1000000) "
            "WHERE tenant_id = (SELECT tenant_id FROM numbers WHERE number = $1)",
            ROUTED_NUMBER,
            channels,
        )
    finally:
        await conn.close()


async def _records(
    settings: Settings, since: datetime, answered: int, budget_s: float = 30.0
) -> dict[str, int]:
    """The control plane's records of a phase's calls (decided since `since`), once every
    answered call's record is complete or the budget is spent."""
    conn = await connect(settings)
    try:
        deadline = time.monotonic() + budget_s
        while True:
            row = await conn.fetchrow(
                "SELECT count(*) AS decided, count(*) FILTER (WHERE answered_at IS NOT NULL) AS answered, "
                "count(*) FILTER (WHERE answered_at IS NOT NULL AND ended_at IS NOT NULL "
                "AND settled_at IS NOT NULL) AS complete, "
                "(SELECT count(*) FROM reservations r WHERE r.state = 'open' AND r.opened_at >= $1) AS open "
                "FROM calls WHERE decided_at >= $1 AND called = $2",
                since,
                ROUTED_NUMBER,
            )
            out = {k: int(row[k]) for k in ("decided", "answered", "complete", "open")}
            if (out["complete"] >= answered and out["open"] == 0) or time.monotonic() > deadline:
                return out
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="100,150,200,250,300", help="offered calls/s, ascending")
    ap.add_argument("--seconds", type=float, default=10.0, help="per rate and path")
    ap.add_argument("--hold-ms", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "call_path.json")
    args = ap.parse_args()
    settings = Settings()
    with exclusive_use(settings):
        return _bench(args, settings)


def _bench(args: argparse.Namespace, settings: Settings) -> int:
    rates = [float(r) for r in args.rates.split(",")]
    stack = LocalStack(settings)
    stack.up()
    asyncio.run(_seed(settings, int(max(rates) * (args.hold_ms / 1000 + 2) * 2) + 50))
    service = ServiceProcess(settings, log_path=Path("/tmp/softswitch-bench-service.log"))
    service.start()
    assert service.proc is not None
    asterisk_pid = stack._recorded_pid("asterisk")
    assert asterisk_pid is not None
    phases: list[dict[str, Any]] = []
    clean = {"static_dialplan": 0.0, "control_plane": 0.0}
    try:
        with SippUas(ring_ms=10):
            before = service.histogram("softswitch_decision_seconds")
            for rate in rates:
                calls = int(rate * args.seconds)
                for path, ip in (
                    ("static_dialplan", settings.asterisk.baseline_in_host),
                    ("control_plane", settings.asterisk.carrier_in_host),
                ):
                    since = datetime.now(UTC)
                    cpu0 = (cpu_seconds(service.proc.pid), cpu_seconds(asterisk_pid))
                    r = run_uac(
                        ROUTED_NUMBER,
                        local_ip=ip,
                        calls=calls,
                        rate=rate,
                        hold_ms=args.hold_ms,
                        limit=int(rate * 10),
                        timeout_s=args.seconds + args.hold_ms / 1000 + 60,
                    )
                    phase: dict[str, Any] = {"path": path, "rate": rate, **_summary(r)}
                    if path == "control_plane":
                        phase["records"] = asyncio.run(_records(settings, since, phase["answered"]))
                    else:
                        time.sleep(2)  # the last calls' hang-ups and CDRs drain
                    cpu1 = (cpu_seconds(service.proc.pid), cpu_seconds(asterisk_pid))
                    n = max(phase["offered"], 1)
                    phase["service_cpu_ms_per_call"] = round((cpu1[0] - cpu0[0]) * 1000 / n, 3)
                    phase["asterisk_cpu_ms_per_call"] = round((cpu1[1] - cpu0[1]) * 1000 / n, 3)
                    ok = phase["answered"] == phase["offered"] == calls and phase["failed"] == 0
                    if path == "control_plane":
                        rec = phase["records"]
                        ok = ok and rec["complete"] == phase["answered"] and rec["open"] == 0
                    phase["clean"] = ok
                    if ok:
                        clean[path] = max(clean[path], rate)
                    phases.append(phase)
                    print(json.dumps(phase), flush=True)
                static_now = next(p for p in phases if p["rate"] == rate and p["path"] == "static_dialplan")
                if not static_now["clean"]:
                    break  # past the point where the static dialplan fails
            after = service.histogram("softswitch_decision_seconds")
    finally:
        service.stop()

    buckets = bucket_delta(before, after)
    p50, p99 = histogram_quantile(0.5, buckets), histogram_quantile(0.99, buckets)

    def cpu_at(path: str) -> float | None:
        """CPU per call at the highest rate both paths ran clean (the same load for both)."""
        both = [p for p in phases if p["path"] == path and p["rate"] <= min(clean.values())]
        return both[-1]["service_cpu_ms_per_call"] if both else None

    ratio = round(clean["control_plane"] / clean["static_dialplan"], 3) if clean["static_dialplan"] else None
    cpu = {path: cpu_at(path) for path in CPU_GOAL_MS}
    result = {
        "benchmark": "call_path",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "seconds_per_phase": args.seconds,
        "hold_ms": args.hold_ms,
        "phases": phases,
        "highest_clean_rate": clean,
        "ratio_control_plane_to_static": ratio,
        "ratio_goal": RATIO_GOAL,
        "service_cpu_ms_per_call": cpu,
        "service_cpu_goal_ms": CPU_GOAL_MS,
        "decision_latency_ms": {
            "source": "service histogram softswitch_decision_seconds (delta over the run)",
            "count": int(buckets[-1][1]) if buckets else 0,
            "p50": round(p50 * 1000, 3) if p50 is not None else None,
            "p99": round(p99 * 1000, 3) if p99 is not None else None,
        },
        "pass": {
            "ratio": ratio is not None and ratio >= RATIO_GOAL,
            **{f"cpu_{k}": v is not None and v <= CPU_GOAL_MS[k] for k, v in cpu.items()},
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "phases"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
