"""Call-path benchmark: SIPp at a fixed rate for a bounded number of calls through
(i) a static dialplan with no control plane and (ii) the control plane, in the same run,
alternating rounds so drift hits both alike. Writes bench/results/call_path.json.

    .venv/bin/python bench/call_path.py --rate 100 --calls 1000 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.quantiles import bucket_delta, histogram_quantile  # noqa: E402
from scripts.devstack.demo import seed  # noqa: E402
from scripts.devstack.process import ServiceProcess  # noqa: E402
from scripts.devstack.sipp import SippResult, SippUas, run_uac  # noqa: E402
from scripts.devstack.stack import LocalStack, exclusive_use  # noqa: E402
from softswitch.core.db import connect  # noqa: E402
from softswitch.core.settings import Settings  # noqa: E402

ROUTED_NUMBER = "4008001234"  # demo data: rings 13800138000, like the static baseline


def _seconds(field: str) -> float:
    """SIPp's ElapsedTime(C) is HH:MM:SS:micro (or HH:MM:SS)."""
    parts = field.split(":")
    h, m, s = int(parts[0]), int(parts[1]), int(parts[2])
    frac = int(parts[3]) / 10 ** len(parts[3]) if len(parts) > 3 else 0.0
    return h * 3600 + m * 60 + s + frac


def _summary(results: list[SippResult], hold_ms: int) -> dict[str, float | int]:
    attempted = sum(int(r.stats.get("TotalCallCreated", 0)) for r in results)
    answered = sum(int(r.stats.get("SuccessfulCall(C)", 0)) for r in results)
    failed = sum(int(r.stats.get("FailedCall(C)", 0)) for r in results)
    # Calls are created over (elapsed - one hold time): the last call still has to run.
    busy = sum(
        max(_seconds(r.stats["ElapsedTime(C)"]) - hold_ms / 1000, 1e-9)
        for r in results
        if "ElapsedTime(C)" in r.stats
    )
    return {
        "attempted": attempted,
        "answered": answered,
        "failed": failed,
        "achieved_cps": round(answered / busy, 2) if busy else 0.0,
        "sipp_exit_codes": [r.returncode for r in results],
    }


async def _seed(settings: Settings, channels: int) -> None:
    """Demo data, and the routed number's prepaid account sized for the load: every call
    through the control plane reserves a channel and money, so the benchmark measures
    that too (the demo's 4-channel package would refuse most of the offered calls)."""
    conn = await connect(settings)
    try:
        await seed(conn)
        await conn.execute(
            "UPDATE accounts SET channel_cap = $2, balance = GREATEST(balance, 100000) "
            "WHERE tenant_id = (SELECT tenant_id FROM numbers WHERE number = $1)",
            ROUTED_NUMBER,
            channels,
        )
    finally:
        await conn.close()


def _decisions(service: ServiceProcess) -> dict[str, float]:
    """softswitch_call_decisions_total by reason, as scraped now."""
    out: dict[str, float] = {}
    for line in service.metrics().splitlines():
        if line.startswith("softswitch_call_decisions_total{"):
            labels, value = line.rsplit(" ", 1)
            reason = labels.split('reason="', 1)[1].split('"', 1)[0]
            out[reason] = out.get(reason, 0.0) + float(value)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=100.0, help="calls per second offered")
    ap.add_argument("--calls", type=int, default=1000, help="calls per round and path")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--hold-ms", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "call_path.json")
    args = ap.parse_args()

    settings = Settings()
    with exclusive_use(settings):
        return _bench(args, settings)


def _bench(args: argparse.Namespace, settings: Settings) -> int:
    LocalStack(settings).up()
    asyncio.run(_seed(settings, int(args.rate * (args.hold_ms / 1000 + 2) * 2) + 50))
    service = ServiceProcess(settings, log_path=Path("/tmp/softswitch-bench-service.log"))
    service.start()
    runs: dict[str, list[SippResult]] = {"static_dialplan": [], "control_plane": []}
    timeout = args.calls / args.rate + args.hold_ms / 1000 + 60
    try:
        with SippUas(ring_ms=10):
            before = service.histogram("softswitch_decision_seconds")
            reasons_before = _decisions(service)
            for _ in range(args.rounds):
                for path, ip in (
                    ("static_dialplan", settings.asterisk.baseline_in_host),
                    ("control_plane", settings.asterisk.carrier_in_host),
                ):
                    runs[path].append(
                        run_uac(
                            ROUTED_NUMBER,
                            local_ip=ip,
                            calls=args.calls,
                            rate=args.rate,
                            hold_ms=args.hold_ms,
                            limit=int(args.rate * 10),
                            timeout_s=timeout,
                        )
                    )
                    time.sleep(2)  # let the last calls' CDRs and hang-ups drain
            after = service.histogram("softswitch_decision_seconds")
            reasons_after = _decisions(service)
    finally:
        service.stop()

    buckets = bucket_delta(before, after)
    base, cp = _summary(runs["static_dialplan"], args.hold_ms), _summary(runs["control_plane"], args.hold_ms)
    p50, p99 = histogram_quantile(0.5, buckets), histogram_quantile(0.99, buckets)
    result = {
        "benchmark": "call_path",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
        "offered_cps": args.rate,
        "calls_per_round": args.calls,
        "rounds": args.rounds,
        "hold_ms": args.hold_ms,
        "static_dialplan": base,
        "control_plane": cp,
        "cps_ratio_control_plane_to_static": (
            round(cp["achieved_cps"] / base["achieved_cps"], 3) if base["achieved_cps"] else None
        ),
        "answered_ratio_control_plane_to_static": (
            round(cp["answered"] / base["answered"], 3) if base["answered"] else None
        ),
        "decisions_by_reason": {
            k: int(v - reasons_before.get(k, 0.0))
            for k, v in reasons_after.items()
            if v > reasons_before.get(k, 0.0)
        },
        "decision_latency_ms": {
            "source": "service histogram softswitch_decision_seconds (delta over the run)",
            "count": int(buckets[-1][1]) if buckets else 0,
            "p50": round(p50 * 1000, 3) if p50 is not None else None,
            "p99": round(p99 * 1000, 3) if p99 is not None else None,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
