"""Prepaid reservation throughput and latency on the real PostgreSQL: one hot account
(every call of a big tenant contends for the same row lock) against many accounts, in
the same run, each through the service's group commit (softswitch/callpath/money_batch:
what the call path uses) and, for comparison, one transaction per call (the path before
issue 14). Each operation is a full call's money path: open (channel + first slice), then
settle (ledger entry, call record). After each run the invariants are checked on every
account: balance - reserved >= -credit_limit, channels_in_use <= cap, nothing left open,
the ledger equal to the charges. Writes bench/results/reservations.json.

    .venv/bin/python bench/reservations.py [--seconds 10 --workers 64 --accounts 1000]

Goals (issue 14, item 5): >= 3000 calls/s on one hot account with 64 concurrent callers,
>= 5000/s across 1000 accounts.
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

from provisioning.ledger import (  # noqa: E402
    Grant,
    OpenRequest,
    SettleRequest,
    open_reservation,
    settle_reservation,
)
from scripts.devstack.stack import LocalStack  # noqa: E402
from softswitch.callpath.money_batch import MoneyBatches  # noqa: E402
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


GOALS = {"one_hot_account": 3000.0, "many_accounts": 5000.0}


async def run(pool, tenants: list[int], seconds: float, workers: int, batched: bool) -> dict[str, object]:  # type: ignore[no-untyped-def]
    open_lat: list[float] = []
    settle_lat: list[float] = []
    refused = 0
    stop = time.monotonic() + seconds
    run_id = f"{random.getrandbits(40):x}"
    batches = MoneyBatches(pool) if batched else None
    if batches is not None:
        batches.start()

    async def worker(w: int) -> None:
        nonlocal refused
        i = 0
        while time.monotonic() < stop:
            i += 1
            call = f"bench-{run_id}-{w}-{i}"
            tenant = random.choice(tenants)
            billsec = random.randint(1, 300)
            if batches is not None:
                t0 = time.perf_counter()
                g = await batches.open(OpenRequest(tenant, call, "", 60, datetime.now(UTC)))
                t1 = time.perf_counter()
                if not isinstance(g, Grant):
                    refused += 1
                    continue
                await batches.settle(SettleRequest(call, billsec, datetime.now(UTC)))
                t2 = time.perf_counter()
            else:
                async with pool.acquire() as conn:
                    t0 = time.perf_counter()
                    g = await open_reservation(conn, tenant, call, "", 60, datetime.now(UTC))
                    t1 = time.perf_counter()
                    if not isinstance(g, Grant):
                        refused += 1
                        continue
                    await settle_reservation(conn, call, billsec, datetime.now(UTC))
                    t2 = time.perf_counter()
            open_lat.append(t1 - t0)
            settle_lat.append(t2 - t1)

    started = time.monotonic()
    try:
        await asyncio.gather(*(worker(w) for w in range(workers)))
    finally:
        if batches is not None:
            await batches.stop()
    elapsed = time.monotonic() - started

    def pct(xs: list[float], q: float) -> float:
        xs = sorted(xs)
        return round(xs[min(len(xs) - 1, int(q * len(xs)))] * 1000, 3) if xs else 0.0

    result: dict[str, object] = {
        "path": "group commit (money_batch)" if batched else "one transaction per call",
        "accounts": len(tenants),
        "calls": len(open_lat),
        "refused": refused,
        "reservations_per_s": round(len(open_lat) / elapsed, 1),
        "open_ms": {"p50": pct(open_lat, 0.5), "p99": pct(open_lat, 0.99)},
        "settle_ms": {"p50": pct(settle_lat, 0.5), "p99": pct(settle_lat, 0.99)},
    }
    if batches is not None:
        result["batches"] = {
            "open": batches.opens.batches,
            "settle": batches.settles.batches,
            "mean_open_batch": round(batches.opens.items / max(batches.opens.batches, 1), 1),
        }
    result["invariants"] = await invariants(pool, tenants, run_id)
    return result


async def invariants(pool, tenants: list[int], run_id: str) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """Checked on every account of the run after it: nothing held, nothing below the
    credit limit, the ledger equal to what the calls were charged."""
    async with pool.acquire() as conn:
        bad = await conn.fetchval(
            "SELECT count(*) FROM accounts WHERE tenant_id = ANY($1) AND (balance - reserved < -credit_limit "
            "OR channels_in_use > channel_cap OR channels_in_use <> 0 OR reserved <> 0)",
            tenants,
        )
        open_left = await conn.fetchval(
            "SELECT count(*) FROM reservations WHERE call_id LIKE $1 AND state = 'open'", f"bench-{run_id}-%"
        )
        charged = await conn.fetchval(
            "SELECT COALESCE(sum(charged), 0) FROM reservations WHERE call_id LIKE $1", f"bench-{run_id}-%"
        )
        ledger = await conn.fetchval(
            "SELECT COALESCE(-sum(amount), 0) FROM ledger_entries "
            "WHERE kind = 'call' AND idempotency_key LIKE $1",
            f"bench-{run_id}-%",
        )
    return {
        "accounts_breaking_a_limit": bad,
        "reservations_left_open": open_left,
        "charged": str(charged),
        "ledger": str(ledger),
        "ok": bad == 0 and open_left == 0 and charged == ledger,
    }


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--workers", type=int, default=64)
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
        result: dict[str, object] = {
            "benchmark": "reservations",
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "workers": args.workers,
            "seconds_each": args.seconds,
            "operation": "open reservation (channel + first 60 s slice) then settle (ledger + call record)",
        }
        for name, accounts in (("one_hot_account", hot), ("many_accounts", many)):
            batched = await run(pool, accounts, args.seconds, args.workers, batched=True)
            single = await run(pool, accounts, args.seconds, args.workers, batched=False)
            rate = float(batched["reservations_per_s"])  # type: ignore[arg-type]
            result[name] = {
                "group_commit": batched,
                "per_call_transaction": single,
                "goal_per_s": GOALS[name],
                "pass": rate >= GOALS[name] and bool(batched["invariants"]["ok"]),  # type: ignore[index]
            }
    finally:
        await pool.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
