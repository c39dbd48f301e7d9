"""Prepaid reservation throughput and latency on the real PostgreSQL: one hot account
(every call of a big tenant contends for the same row lock) against many accounts, in
the same run. Each operation is a full call's money path: open (channel + first slice)
then settle. Writes bench/results/reservations.json.

    .venv/bin/python bench/reservations.py [--seconds 10 --workers 32 --accounts 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from provisioning.ledger import Grant, open_reservation, settle_reservation  # noqa: E402
from scripts.devstack.stack import LocalStack  # noqa: E402
from softswitch.core.db import create_pool, migrate_and_grant  # noqa: E402
from softswitch.core.settings import Settings  # noqa: E402


async def make_accounts(pool, n: int, tag: str) -> list[int]:  # type: ignore[no-untyped-def]
    async with pool.acquire() as conn:
        ids = await conn.fetch(
            "INSERT INTO tenants (name) SELECT $1 || g FROM generate_series(1, $2) g RETURNING id",
            f"bench {tag} ",
            n,
        )
        tenant_ids = [r["id"] for r in ids]
        await conn.executemany(
            "INSERT INTO accounts (tenant_id, balance, channel_cap) VALUES ($1, 1000000, 100000)",
            [(t,) for t in tenant_ids],
        )
    return tenant_ids


async def run(pool, tenants: list[int], seconds: float, workers: int) -> dict[str, object]:  # type: ignore[no-untyped-def]
    open_lat: list[float] = []
    settle_lat: list[float] = []
    refused = 0
    stop = time.monotonic() + seconds
    run_id = f"{random.getrandbits(40):x}"

    async def worker(w: int) -> None:
        nonlocal refused
        i = 0
        while time.monotonic() < stop:
            i += 1
            call = f"bench-{run_id}-{w}-{i}"
            tenant = random.choice(tenants)
            async with pool.acquire() as conn:
                t0 = time.perf_counter()
                g = await open_reservation(conn, tenant, call, "", 60, datetime.now(UTC))
                t1 = time.perf_counter()
                if not isinstance(g, Grant):
                    refused += 1
                    continue
                await settle_reservation(conn, call, random.randint(1, 300), datetime.now(UTC))
                t2 = time.perf_counter()
            open_lat.append(t1 - t0)
            settle_lat.append(t2 - t1)

    started = time.monotonic()
    await asyncio.gather(*(worker(w) for w in range(workers)))
    elapsed = time.monotonic() - started

    def pct(xs: list[float], q: float) -> float:
        xs = sorted(xs)
        return round(xs[min(len(xs) - 1, int(q * len(xs)))] * 1000, 3) if xs else 0.0

    return {
        "accounts": len(tenants),
        "calls": len(open_lat),
        "refused": refused,
        "reservations_per_s": round(len(open_lat) / elapsed, 1),
        "open_ms": {"p50": pct(open_lat, 0.5), "p99": pct(open_lat, 0.99)},
        "settle_ms": {"p50": pct(settle_lat, 0.5), "p99": pct(settle_lat, 0.99)},
    }


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--workers", type=int, default=32)
    ap.add_argument("--accounts", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "reservations.json")
    args = ap.parse_args()
    settings = Settings()
    LocalStack(settings).pg_up()
    await migrate_and_grant(settings)
    db = settings.database.model_copy(update={"pool_max": args.workers + 2, "pool_min": args.workers})
    pool = await create_pool(settings.model_copy(update={"database": db}))
    try:
        hot = await make_accounts(pool, 1, "hot")
        many = await make_accounts(pool, args.accounts, "many")
        result = {
            "benchmark": "reservations",
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "workers": args.workers,
            "seconds_each": args.seconds,
            "operation": "open reservation (channel + first 60 s slice) then settle (ledger + call record)",
            "one_hot_account": await run(pool, hot, args.seconds, args.workers),
            "many_accounts": await run(pool, many, args.seconds, args.workers),
        }
    finally:
        await pool.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
