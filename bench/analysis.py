"""Incoming-call analysis (provisioning/analysis.py) on a million call records of one
tenant, in a PostgreSQL cluster of its own (initdb in a temporary directory, the same
binaries and shared_buffers as the dev stack; removed at the end), so the dev database and
the tests never see the data. Writes bench/results/analysis.json and prints it.

1. Load: 1,000,000 inbound call records COPYed into `calls` with the analysis triggers
   on (the aggregates are built by the triggers themselves, as calls end), spread over a
   year with a daily and weekly shape, 5 numbers, ~200,000 callers (a few frequent, most
   calling once or twice) on real mobile segments of every province and on fixed lines,
   some withheld; then every caller placed (dialplan.region.region_of).
2. Query: the service's call_analysis() for a month, a quarter and a year — warm (the same
   connection, several runs) and cold (the cluster restarted and the OS page cache
   dropped before each run, a new connection): p50 and max.
3. Write cost: the call record writer's own statements (CallRecordWriter._write, batches
   of 500 ends as in production) ending calls with the analysis triggers and without them
   (ALTER TABLE ... DISABLE TRIGGER), alternating in one run: microseconds per call end.

    .venv/bin/python bench/analysis.py [--calls 1000000 --runs 7 --cold-runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from provisioning.analysis import call_analysis, place_callers  # noqa: E402
from provisioning.engine import Ctx  # noqa: E402
from provisioning.roles import Principal, Role  # noqa: E402
from scripts.devstack.stack import PG_BIN  # noqa: E402
from softswitch.callpath.records import CallRecordWriter, DecisionRecord, EndRecord  # noqa: E402
from softswitch.core.clock import FixedClock  # noqa: E402
from softswitch.core.metrics import Metrics  # noqa: E402
from softswitch.core.migrate import migrate  # noqa: E402

PORT = 55499
YEAR_START = datetime(2025, 12, 1, tzinfo=UTC) - timedelta(hours=8)  # local midnight, Shanghai
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
PERIODS = {
    "month": (date(2026, 11, 1), date(2026, 11, 30)),
    "quarter": (date(2026, 9, 1), date(2026, 11, 30)),
    "year": (date(2025, 12, 1), date(2026, 11, 30)),
}
HOUR_WEIGHTS = [1, 1, 1, 1, 1, 2, 4, 8, 20, 40, 45, 42, 30, 35, 44, 45, 40, 30, 18, 12, 9, 6, 4, 2]
DAY_WEIGHTS = [10, 10, 10, 10, 9, 5, 4]  # Monday … Sunday
FIXED = ["010", "021", "020", "0755", "0571", "028", "027", "025", "029", "0532", "0731", "0591"]


class Cluster:
    """A throw-away PostgreSQL cluster, run as the postgres user like the dev stack's."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="softswitch-bench-analysis-"))
        self.data = self.dir / "data"
        self.sock = self.dir / "run"
        self.log = self.dir / "postgresql.log"

    def _pg(self, *cmd: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *cmd], check=True, capture_output=True, cwd="/")

    def init(self) -> None:
        self.sock.mkdir(parents=True)
        shutil.chown(self.dir, "postgres", "postgres")
        shutil.chown(self.sock, "postgres", "postgres")
        self._pg(str(PG_BIN / "initdb"), "-D", str(self.data), "-E", "UTF8", "--auth-local=trust",
                 "--auth-host=trust")  # fmt: skip
        self.start()
        for sql in ("CREATE ROLE softswitch LOGIN", "CREATE DATABASE softswitch OWNER softswitch"):
            self._pg("psql", "-h", str(self.sock), "-p", str(PORT), "-d", "postgres", "-c", sql)

    def start(self) -> None:
        opts = f"-p {PORT} -k {self.sock} -c listen_addresses=127.0.0.1 -c shared_buffers=256MB"
        self._pg(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-o", opts, "start")

    def stop(self) -> None:
        self._pg(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def cold(self) -> None:
        """Restart (empty shared buffers) and drop the OS page cache."""
        self.stop()
        subprocess.run(["sync"], check=True)
        try:
            Path("/proc/sys/vm/drop_caches").write_text("3\n")
        except OSError:
            pass  # not root: shared buffers are still cold
        self.start()

    def remove(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


async def connect() -> asyncpg.Connection:
    return await asyncpg.connect(host="127.0.0.1", port=PORT, user="softswitch", database="softswitch")


def _callers(rng: random.Random, count: int) -> list[str]:
    from phonenumbers.geodata import GEOCODE_DATA

    segments = [p[2:] for p in GEOCODE_DATA if p.startswith("861") and len(p) == 9]
    out = []
    for i in range(count):
        r = rng.random()
        if r < 0.8:
            out.append(f"{rng.choice(segments)}{rng.randint(0, 9999):04d}")
        elif r < 0.98:
            code = rng.choice(FIXED)
            out.append(f"{code}{rng.randint(10 ** (10 - len(code)), 10 ** (11 - len(code)) - 1)}")
        else:
            out.append(f"+1415{rng.randint(10**6, 10**7 - 1)}" if i % 2 else "anonymous")
    return out


def _rows(
    rng: random.Random, offset: int, n: int, tenant: int, numbers: list[int], callers: list[str]
) -> io.BytesIO:
    """`n` ended inbound call records as COPY text."""
    days = [YEAR_START + timedelta(days=d) for d in range(365)]
    day_w = [DAY_WEIGHTS[(d.date() + timedelta(days=1)).weekday()] for d in days]  # local weekday
    number_w = [50, 25, 12, 8, 5][: len(numbers)]
    buf = io.StringIO()
    picks_day = rng.choices(days, day_w, k=n)
    picks_hour = rng.choices(range(24), HOUR_WEIGHTS, k=n)
    picks_number = rng.choices(numbers, number_w, k=n)
    # callers: a Zipf-like head (frequent callers) and a long tail
    weights = [1.0 / (i + 1) ** 0.6 for i in range(len(callers))]
    picks_caller = rng.choices(callers, weights, k=n)
    for i in range(n):
        start = picks_day[i] + timedelta(hours=picks_hour[i], seconds=rng.randint(0, 3599))
        r = rng.random()
        action, answered = ("reject", None) if r < 0.05 else ("dial", None)
        if action == "dial" and r < 0.80:
            answered = start + timedelta(seconds=rng.randint(2, 25))
        ended = (answered or start) + timedelta(
            seconds=rng.randint(5, 900) if answered else rng.randint(1, 40)
        )
        buf.write(
            f"bench-{offset + i}\tbench-{offset + i}\t{tenant}\t{picks_number[i]}\t{picks_caller[i]}\t"
            f"4008001234\t{action}\t"
            f"{'ROUTED' if action == 'dial' else 'CLOSED'}\t{start.isoformat()}\t"
            f"{answered.isoformat() if answered else chr(92) + 'N'}\t{ended.isoformat()}\t16\tinbound\n"
        )
    return io.BytesIO(buf.getvalue().encode())


COLUMNS = [
    "linkedid", "uniqueid", "tenant_id", "number_id", "caller", "called", "action", "reason", "decided_at",
    "answered_at", "ended_at", "hangup_cause", "direction",
]  # fmt: skip


async def load(n: int, rng: random.Random) -> dict[str, Any]:
    conn = await connect()
    try:
        await migrate(conn)
        tenant = await conn.fetchval("INSERT INTO tenants (name) VALUES ('bench analysis') RETURNING id")
        numbers = [
            await conn.fetchval(
                "INSERT INTO numbers (number, kind, tenant_id, state) "
                "VALUES ($1, 'unified_400', $2, 'active') RETURNING id",
                f"400800{k:04d}",
                tenant,
            )
            for k in range(5)
        ]
        callers = _callers(rng, max(10, n // 5))
        t0 = time.perf_counter()
        chunk = 100_000
        for start in range(0, n, chunk):
            data = _rows(rng, start, min(chunk, n - start), tenant, numbers, callers)
            await conn.copy_to_table("calls", source=data, columns=COLUMNS, format="text")
        copy_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        moved = 0
        while m := await place_callers(conn, tenant, 250_000):
            moved += m
        place_s = time.perf_counter() - t0
        await conn.execute("VACUUM ANALYZE")
        sizes = {
            r["relname"]: {"rows": r["n"], "mb": round(r["bytes"] / 2**20, 1)}
            for r in await conn.fetch(
                "SELECT c.relname, c.reltuples::bigint AS n, pg_total_relation_size(c.oid) AS bytes "
                "FROM pg_class c "
                "WHERE c.relname IN ('calls', 'call_analysis_calls', 'call_analysis_hours', "
                "'call_analysis_places', 'caller_places')"
            )
        }
        distinct = await conn.fetchval(
            "SELECT count(DISTINCT caller) FROM calls WHERE tenant_id = $1", tenant
        )
        return {
            "tenant_id": tenant,
            "calls": await conn.fetchval("SELECT count(*) FROM calls WHERE tenant_id = $1", tenant),
            "distinct_callers": distinct,
            "numbers": len(numbers),
            "copy_with_triggers_s": round(copy_s, 1),
            "copy_with_triggers_us_per_call": round(copy_s / n * 1e6, 1),
            "placing_callers_s": round(place_s, 1),
            "calls_placed": moved,
            "tables": sizes,
        }
    finally:
        await conn.close()


async def one_query(conn: asyncpg.Connection, tenant: int, period: tuple[date, date]) -> tuple[float, int]:
    ctx = Ctx(conn, Principal(None, "bench", Role.PLATFORM_ADMIN), FixedClock(NOW), tenant)
    t0 = time.perf_counter()
    got = await call_analysis(ctx, *period)
    return (time.perf_counter() - t0) * 1000, got.totals.calls


def summary(ms: list[float]) -> dict[str, float]:
    return {"p50_ms": round(statistics.median(ms), 2), "max_ms": round(max(ms), 2), "runs": len(ms)}


async def queries(cluster: Cluster, tenant: int, runs: int, cold_runs: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, period in PERIODS.items():
        cold, calls = [], 0
        for _ in range(cold_runs):
            cluster.cold()
            conn = await connect()
            try:
                ms, calls = await one_query(conn, tenant, period)
                cold.append(ms)
            finally:
                await conn.close()
        conn = await connect()
        try:
            warm = [(await one_query(conn, tenant, period))[0] for _ in range(runs)]
        finally:
            await conn.close()
        out[name] = {"from": str(period[0]), "to": str(period[1]), "calls_in_period": calls,
                     "cold": summary(cold), "warm": summary(warm)}  # fmt: skip
    return out


async def write_cost(rounds: int, per_round: int) -> dict[str, Any]:
    """The writer's end statements with and without the analysis triggers, alternating."""
    pool = await asyncpg.create_pool(host="127.0.0.1", port=PORT, user="softswitch", database="softswitch",
                                     min_size=1, max_size=2)  # fmt: skip
    assert pool is not None
    writer = CallRecordWriter(pool, Metrics())
    rng = random.Random(5)
    results: dict[str, list[float]] = {"with_trigger": [], "without_trigger": []}
    decide_us: dict[str, list[float]] = {"with_trigger": [], "without_trigger": []}
    try:
        async with pool.acquire() as conn:
            tenant = await conn.fetchval(
                "INSERT INTO tenants (name) VALUES ('bench write cost') RETURNING id"
            )
            number = await conn.fetchval(
                "INSERT INTO numbers (number, kind, tenant_id, state) "
                "VALUES ('4008009999', 'unified_400', $1, 'active') RETURNING id",
                tenant,
            )
            callers = _callers(rng, 2000)
            # the callers are known (placed), as most callers of a running tenant are
            await conn.executemany(
                "INSERT INTO caller_places (caller, province, city) VALUES ($1, '广东', '深圳') "
                "ON CONFLICT DO NOTHING",
                [(c,) for c in callers],
            )
        k = 0
        for r in range(rounds * 2):
            mode = "with_trigger" if r % 2 == 0 else "without_trigger"
            async with pool.acquire() as conn:
                verb = "ENABLE" if mode == "with_trigger" else "DISABLE"
                for trig in ("calls_analysis_insert", "calls_analysis_update"):
                    await conn.execute(f"ALTER TABLE calls {verb} TRIGGER {trig}")
            now = NOW + timedelta(minutes=r)
            decisions = []
            for _ in range(per_round):
                k += 1
                decisions.append(
                    DecisionRecord(
                        f"wc-{k}",
                        f"wc-{k}",
                        tenant,
                        number,
                        rng.choice(callers),
                        "4008009999",
                        "dial",
                        "ROUTED",
                        ("13800138000",),
                        now,
                        100,
                    )  # fmt: skip
                )
            t0 = time.perf_counter()
            for i in range(0, per_round, 500):
                await writer._write(list(decisions[i : i + 500]))
            decide_us[mode].append((time.perf_counter() - t0) / per_round * 1e6)
            ends = [EndRecord(d.linkedid, now + timedelta(seconds=3), now + timedelta(seconds=60), 16)
                    for d in decisions]  # fmt: skip
            t0 = time.perf_counter()
            for i in range(0, per_round, 500):
                await writer._write(list(ends[i : i + 500]))
            results[mode].append((time.perf_counter() - t0) / per_round * 1e6)
        async with pool.acquire() as conn:
            for trig in ("calls_analysis_insert", "calls_analysis_update"):
                await conn.execute(f"ALTER TABLE calls ENABLE TRIGGER {trig}")
    finally:
        await pool.close()
    med = {m: statistics.median(v) for m, v in results.items()}
    return {
        "operation": "CallRecordWriter._write of call ends (UPDATE calls SET answered_at, ended_at ... + the "
        "missed-call outbox statement), batches of 500, one transaction per batch",
        "rounds_each": rounds,
        "calls_per_round": per_round,
        "end_us_per_call": {m: round(v, 1) for m, v in med.items()},
        "end_us_per_call_rounds": {m: [round(x, 1) for x in v] for m, v in results.items()},
        "trigger_adds_us_per_call_end": round(med["with_trigger"] - med["without_trigger"], 1),
        "decision_insert_us_per_call": {m: round(statistics.median(v), 1) for m, v in decide_us.items()},
    }


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--cold-runs", type=int, default=3)
    ap.add_argument("--write-rounds", type=int, default=5)
    ap.add_argument("--write-calls", type=int, default=5000)
    ap.add_argument("--keep", action="store_true", help="leave the bench cluster (its directory is printed)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "analysis.json")
    args = ap.parse_args()
    cluster = Cluster()
    try:
        cluster.init()
        loaded = await load(args.calls, random.Random(2026))
        result = {
            "benchmark": "analysis",
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count()},
            "postgres": "separate cluster, shared_buffers=256MB (as the dev stack)",
            "load": loaded,
            "query": "provisioning.analysis.call_analysis(): place new callers (none left) + the hours and "
            "places aggregates of the period + the tenant's numbers",
            "cold_means": "cluster restarted and OS page cache dropped before each run, new connection",
            "queries": await queries(cluster, loaded["tenant_id"], args.runs, args.cold_runs),
            "write_cost": await write_cost(args.write_rounds, args.write_calls),
        }
    finally:
        if args.keep:
            print(f"bench cluster kept in {cluster.dir} (port {PORT})", file=sys.stderr)
        else:
            cluster.remove()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
