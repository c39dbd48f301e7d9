"""Decision latency of the whole inbound pipeline (number, tenant, blacklist, PIN, time,
region, distribution) against a realistic snapshot: 10k tenants, 100k numbers, 1M
blacklist entries. Measures p50/p99 per decision and the snapshot's memory, writes
bench/results/decision_pipeline.json.

    .venv/bin/python bench/decision_pipeline.py [--tenants 10000 --numbers 100000 --blacklist 1000000]
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import statistics
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dialplan.blacklist import Blacklist, BlacklistEntry  # noqa: E402
from dialplan.distribution import Memory  # noqa: E402
from dialplan.inbound import InboundCall, decide_inbound  # noqa: E402
from dialplan.region import RegionPolicy, region_of  # noqa: E402
from dialplan.snapshot import BoundDestination, ConfigSnapshot, PinSetting, Tenant, UnifiedNumber  # noqa: E402
from dialplan.time_policy import TimePolicy  # noqa: E402

SH = timezone(timedelta(hours=8))
STRATEGIES = ("sequential", "simultaneous", "round_robin", "longest_idle", "weighted")
MOBILE_PREFIXES = ("138", "139", "150", "186", "137", "135", "158", "189")


def build(tenants: int, numbers: int, blacklist: int, rng: random.Random) -> ConfigSnapshot:
    office = TimePolicy.parse(
        {
            "weekly": [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "18:00"}],
            "holidays": ["2026-10-01", "2026-10-02", "2026-10-03"],
            "workdays": [{"date": "2026-10-10", "as": "fri"}],
            "default": {"kind": "group", "ref": "night"},
        }
    )
    regions = RegionPolicy.parse(
        {
            "rules": [{"province": "上海", "group": "shanghai"}, {"province": "广东", "action": "deny"}],
            "unknown": "allow",
        }
    )
    ts = [Tenant(i, f"t{i}", "active" if i % 50 else "suspended") for i in range(1, tenants + 1)]
    nums = []
    for i in range(numbers):
        dests = tuple(
            BoundDestination(
                rng.choice(MOBILE_PREFIXES) + f"{rng.randrange(10**8):08d}",
                20,
                group=g,
                weight=rng.randint(1, 5),
            )
            for g in ("default", "default", "night", "shanghai")
        )
        nums.append(
            UnifiedNumber(
                i + 1,
                f"400{i:07d}",
                "active",
                (i % tenants) + 1,
                dests,
                distribution=STRATEGIES[i % len(STRATEGIES)],
                time_policy=office if i % 2 == 0 else None,
                region_policy=regions if i % 3 == 0 else None,
                pin=PinSetting("x$y") if i % 20 == 0 else None,
            )
        )
    entries = []
    for i in range(blacklist):
        tenant = None if i % 10 == 0 else (i % tenants) + 1
        if i % 10 == 1:
            entries.append(BlacklistEntry(tenant, f"17{i % 100000:05d}", "prefix", "inbound"))
        else:
            entries.append(
                BlacklistEntry(
                    tenant, f"1{rng.randrange(3, 9)}{rng.randrange(10**9):09d}", "exact", "inbound"
                )
            )
    return ConfigSnapshot.build(ts, nums, datetime.now(UTC), 1, Blacklist.build(entries))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tenants", type=int, default=10_000)
    ap.add_argument("--numbers", type=int, default=100_000)
    ap.add_argument("--blacklist", type=int, default=1_000_000)
    ap.add_argument("--decisions", type=int, default=200_000)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "decision_pipeline.json")
    args = ap.parse_args()
    rng = random.Random(20261122)

    gc.collect()
    tracemalloc.start()
    t0 = time.perf_counter()
    snap = build(args.tenants, args.numbers, args.blacklist, rng)
    build_s = time.perf_counter() - t0
    gc.collect()
    snapshot_bytes, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    callers = [rng.choice(MOBILE_PREFIXES) + f"{rng.randrange(10**8):08d}" for _ in range(5000)]
    callers += ["02161234567", "075512345678", "01062345678", "17012345678", ""]
    for c in callers:  # the region cache is part of the service's steady state
        region_of(c)
    moments = [
        datetime(2026, 11, 23, 10, tzinfo=SH),
        datetime(2026, 11, 23, 22, tzinfo=SH),
        datetime(2026, 10, 1, 11, tzinfo=SH),
        datetime(2026, 10, 10, 10, tzinfo=SH),
    ]
    mem = Memory()
    outcomes: dict[str, int] = {}
    samples = []
    for i in range(args.decisions):
        call = InboundCall(
            rng.choice(callers), f"400{rng.randrange(args.numbers):07d}", str(i), pin_verified=bool(i % 2)
        )
        now = moments[i % len(moments)]
        t = time.perf_counter_ns()
        d = decide_inbound(snap, call, now, lambda _k: mem, rng)
        samples.append(time.perf_counter_ns() - t)
        key = f"{type(d).__name__}:{d.reason.code}"
        outcomes[key] = outcomes.get(key, 0) + 1
    samples.sort()

    def pct(q: float) -> float:
        return round(samples[min(len(samples) - 1, int(q * len(samples)))] / 1000, 2)

    result = {
        "benchmark": "decision_pipeline",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version()},
        "snapshot": {
            "tenants": args.tenants,
            "numbers": args.numbers,
            "blacklist_entries": args.blacklist,
            "build_seconds": round(build_s, 2),
            "memory_mb": round(snapshot_bytes / 2**20, 1),
        },
        "decisions": args.decisions,
        "latency_us": {
            "p50": pct(0.5),
            "p90": pct(0.9),
            "p99": pct(0.99),
            "max": pct(1.0),
            "mean": round(statistics.fmean(samples) / 1000, 2),
        },
        "outcomes": dict(sorted(outcomes.items())),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
