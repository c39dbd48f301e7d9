"""What the compliance duties cost on the real PostgreSQL (issue 15). Writes
bench/results/compliance.json and prints it.

1. The outbound gate: a call's money path (open the reservation, settle it) with the gate
   (softswitch.callpath.outbound_gate.gated_reservation: the account lock, the per-callee
   and pace counters, the pure check, the attempt row) and without it
   (provisioning.ledger.open_reservation), alternating round by round in one run, on
   accounts of their own: per-operation latency p50/p99/max and operations a second, one
   worker and `--workers` concurrent ones.
2. The monitors: one evaluation of a tenant (provisioning.compliance.watch.evaluate_tenant,
   every monitor rule, nothing changing) with 0, 100, 1,000 and 10,000 outbound call
   records in its windows: p50 and max over `--runs` evaluations.

    .venv/bin/python bench/compliance.py [--ops 2000 --workers 16 --runs 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dialplan.compliance import OutboundRules, Window  # noqa: E402
from provisioning.compliance.watch import evaluate_tenant  # noqa: E402
from provisioning.ledger import Grant, open_reservation, settle_reservation  # noqa: E402
from scripts.devstack.stack import LocalStack  # noqa: E402
from softswitch.callpath.outbound_gate import OutboundAttempt, gated_reservation  # noqa: E402
from softswitch.core.db import create_pool, migrate_and_grant  # noqa: E402
from softswitch.core.settings import Settings  # noqa: E402


def quantile(values: list[float], q: float) -> float:
    """The nearest-rank quantile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


RULES = OutboundRules((Window(60, 1), Window(3600, 5), Window(86400, 20)), None, None)  # the defaults


async def new_tenant(pool: Any, tag: str) -> int:
    async with pool.acquire() as conn:
        tid = await conn.fetchval(
            "INSERT INTO tenants (name) VALUES ($1) RETURNING id", f"bench compliance {tag}"
        )
        await conn.execute(
            "INSERT INTO accounts (tenant_id, balance, channel_cap) VALUES ($1, 1000000, 100000)", tid
        )
    return int(tid)


async def money_path(pool: Any, tenant: int, ops: int, workers: int, gated: bool, tag: str) -> dict[str, Any]:
    """`ops` calls (open + settle), each to a callee of its own, by `workers` at once."""
    latencies: list[float] = []
    counter = iter(range(ops))
    refused = 0

    async def worker() -> None:
        nonlocal refused
        async with pool.acquire() as conn:
            for i in counter:
                call_id = f"bc-{tag}-{gated:d}-{i}"
                now = datetime.now(UTC)
                t0 = time.perf_counter()
                if gated:
                    attempt = OutboundAttempt(f"139{i:08d}", "4008001234", RULES)
                    got = await gated_reservation(conn, attempt, tenant, call_id, "", 60, now, None)
                else:
                    got = await open_reservation(conn, tenant, call_id, "", 60, now)
                latencies.append((time.perf_counter() - t0) * 1000)
                if isinstance(got, Grant):
                    await settle_reservation(conn, call_id, 30, now + timedelta(seconds=30))
                else:
                    refused += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    elapsed = time.perf_counter() - t0
    return {
        "ops": ops,
        "refused": refused,
        "ops_per_s": round(ops / elapsed, 1),
        "open_ms_p50": round(quantile(latencies, 0.5), 3),
        "open_ms_p99": round(quantile(latencies, 0.99), 3),
        "open_ms_max": round(max(latencies), 3),
    }


async def gate(pool: Any, ops: int, workers: int, rounds: int) -> dict[str, Any]:
    tag = f"{random.getrandbits(32):x}"
    out: dict[str, Any] = {}
    for w in (1, workers):
        runs: dict[str, list[dict[str, Any]]] = {"plain": [], "gated": []}
        for r in range(rounds):
            for mode in ("plain", "gated") if r % 2 == 0 else ("gated", "plain"):
                tenant = await new_tenant(pool, f"{tag}-{w}-{r}-{mode}")
                runs[mode].append(
                    await money_path(pool, tenant, ops // rounds, w, mode == "gated", f"{tag}{w}{r}")
                )
        out[f"workers_{w}"] = {
            mode: {
                k: round(sorted(x[k] for x in v)[len(v) // 2], 3)
                for k in ("ops_per_s", "open_ms_p50", "open_ms_p99", "open_ms_max")
            }
            | {"refused": sum(x["refused"] for x in v)}
            for mode, v in runs.items()
        }
        plain, gated = out[f"workers_{w}"]["plain"], out[f"workers_{w}"]["gated"]
        out[f"workers_{w}"]["gate_extra_ms_p50"] = round(gated["open_ms_p50"] - plain["open_ms_p50"], 3)
    return out


async def monitors(pool: Any, runs: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    tag = f"{random.getrandbits(32):x}"
    for n in (0, 100, 1000, 10000):
        tenant = await new_tenant(pool, f"{tag}-mon-{n}")
        now = datetime.now(UTC)
        async with pool.acquire() as conn:
            rows = [
                (
                    f"bm-{tag}-{n}-{i}",
                    tenant,
                    f"139{i:08d}",
                    now - timedelta(seconds=500 * i / max(n, 1)),
                    "400800" + f"{i % 7:04d}",
                )
                for i in range(n)
            ]
            await conn.executemany(
                "INSERT INTO calls (linkedid, uniqueid, tenant_id, caller, called, action, reason, "
                "decided_at, alerted_at, answered_at, ended_at, direction, caller_id_shown) "
                "SELECT $1, $1, $2, '1001', $3, 'dial', 'ROUTED', t, t + interval '1 s', t + interval '3 s', "
                "t + interval '90 s', 'outbound', $5 FROM (SELECT $4::timestamptz AS t) AS at",
                rows,
            )
            await evaluate_tenant(conn, tenant, now)  # the first evaluation records the levels
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                await evaluate_tenant(conn, tenant, now)
                times.append((time.perf_counter() - t0) * 1000)
        out[f"calls_{n}"] = {"ms_p50": round(quantile(times, 0.5), 3), "ms_max": round(max(times), 3)}
    return out


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "compliance.json")
    args = ap.parse_args()
    settings = Settings()
    LocalStack(settings).pg_up()
    await migrate_and_grant(settings)
    pool = await create_pool(settings)
    try:
        result = {
            "bench": "compliance",
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "gate": await gate(pool, args.ops, args.workers, args.rounds),
            "monitor_evaluation": await monitors(pool, args.runs),
        }
    finally:
        await pool.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
