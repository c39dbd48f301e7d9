"""FastAGI load straight at the service, no Asterisk: an asyncio client that plays
Asterisk's side of `AGI(agi://127.0.0.1:4573/route,<linkedid>,4008001234)` at a fixed
rate (open loop: a session starts every 1/rate s whether or not earlier ones finished)
for a bounded count, answers every command as Asterisk does ("200 result=0" for EXEC
MSet and the like), and measures the decision latency on both sides:

- client side: environment written -> the decision's command (EXEC MSet, SS_ACTION last)
  read, and -> the service closing the socket (the whole session);
- service side: the softswitch_decision_seconds histogram delta over the run (the same
  span the service reports for real calls: environment read -> variables sent).

Target: decision p99 <= 2 ms at 300 sessions/s. Every routed decision opens a real prepaid
reservation in PostgreSQL, as a real call would; the demo tenant's 4-channel package
would refuse all but 4 of them (CHANNEL_LIMIT, a different and cheaper path), so for the
run the tenant's channel cap and balance are raised, and afterwards the run's
reservations are released, its call records deleted and the account restored.

    .venv/bin/python bench/agi_direct.py [--rate 300 --count 3000]

Standalone it holds the stack lock, brings the stack up, seeds the demo data, starts the
service and writes bench/results/agi_direct.json; bench/harness.py calls run() with its
own running service.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.quantiles import bucket_delta, histogram_quantile  # noqa: E402
from provisioning.ledger import release_reservation  # noqa: E402
from scripts.devstack.process import ServiceProcess  # noqa: E402
from softswitch.core.db import connect  # noqa: E402
from softswitch.core.settings import Settings  # noqa: E402

DEMO_NUMBER = "4008001234"  # scripts/devstack/demo.py: routed to 13800138000
CALLER = "13800138000"
TARGET_P99_MS = 2.0


@dataclass
class Outcome:
    to_decision: float | None = None  # seconds, env written -> decision command read
    to_close: float | None = None  # seconds, env written -> socket closed by the service
    action: str = ""
    error: str = ""


def environment(host: str, port: int, linkedid: str, seq: int, number: str = DEMO_NUMBER) -> bytes:
    """What Asterisk 22 sends for AGI(agi://host:port/route,${CHANNEL(linkedid)},${SS_CALLED})
    from [ss-route] on an inbound PJSIP channel of the carrier."""
    chan = f"PJSIP/carrier-in-{seq:08x}"
    lines = [
        ("agi_network", "yes"),
        ("agi_network_script", "route"),
        ("agi_request", f"agi://{host}:{port}/route"),
        ("agi_channel", chan),
        ("agi_language", "en"),
        ("agi_type", "PJSIP"),
        ("agi_uniqueid", linkedid),
        ("agi_version", "22.0.0"),
        ("agi_callerid", CALLER),
        ("agi_calleridname", "unknown"),
        ("agi_callingpres", "0"),
        ("agi_callingani2", "0"),
        ("agi_callington", "0"),
        ("agi_callingtns", "0"),
        ("agi_dnid", number),
        ("agi_rdnis", "unknown"),
        ("agi_context", "ss-route"),
        ("agi_extension", "s"),
        ("agi_priority", "1"),
        ("agi_enhanced", "0.0"),
        ("agi_accountcode", ""),
        ("agi_threadid", str(139800000000000 + seq)),
        ("agi_arg_1", linkedid),
        ("agi_arg_2", number),
    ]
    return ("".join(f"{k}: {v}\n" for k, v in lines) + "\n").encode()


def _reply(command: str) -> bytes:
    """Asterisk's answer to a command of the route script: EXEC MSet (and ANSWER, SET
    VARIABLE) return "200 result=0"; GET VARIABLE of an unset variable does too."""
    return b"200 result=0\n"


async def one_session(
    host: str, port: int, linkedid: str, seq: int, timeout: float, number: str = DEMO_NUMBER
) -> Outcome:
    out = Outcome()
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                started = time.perf_counter()
                writer.write(environment(host, port, linkedid, seq, number))
                await writer.drain()
                while True:
                    line = await reader.readline()
                    if not line:
                        out.to_close = time.perf_counter() - started
                        break
                    cmd = line.decode(errors="replace").strip()
                    if cmd.startswith(("EXEC MSet", 'EXEC "MSet"')):
                        if out.to_decision is None:
                            out.to_decision = time.perf_counter() - started
                        i = cmd.find("SS_ACTION=")
                        if i >= 0:
                            out.action = cmd[i + len("SS_ACTION=") :].split()[0].strip('"')
                    writer.write(_reply(cmd))
                    await writer.drain()
            finally:
                writer.close()
    except (TimeoutError, OSError) as exc:
        out.error = type(exc).__name__
    return out


async def load(
    host: str, port: int, rate: float, count: int, run_id: str, number: str = DEMO_NUMBER
) -> tuple[list[Outcome], float]:
    """`count` sessions started every 1/rate s (open loop); returns outcomes and the span."""
    loop = asyncio.get_running_loop()
    t0 = loop.time() + 0.05
    tasks = []
    for i in range(count):
        delay = t0 + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one_session(host, port, f"agidirect-{run_id}-{i}", i, 10.0, number)))
    outcomes = await asyncio.gather(*tasks)
    return list(outcomes), loop.time() - t0


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q * len(s) + 0.5)) - 1))]


def _ms(v: float | None) -> float | None:
    return round(v * 1000, 3) if v is not None else None


async def _prepare(settings: Settings, count: int) -> dict[str, Any]:
    """Give the demo tenant room for `count` open reservations; returns what to restore."""
    conn = await connect(settings)
    try:
        row = await conn.fetchrow(
            "SELECT a.tenant_id, a.channel_cap, a.balance FROM numbers n "
            "JOIN accounts a ON a.tenant_id = n.tenant_id WHERE n.number = $1",
            DEMO_NUMBER,
        )
        if row is None:
            raise SystemExit(
                f"{DEMO_NUMBER} has no funded tenant: run `python -m scripts.devstack demo seed`"
            )
        topup = Decimal(count)  # 60 s slices at 0.12/min reserve 0.12 each; 1.00 is ample
        await conn.execute(
            "UPDATE accounts SET channel_cap = channel_cap + $2, balance = balance + $3 WHERE tenant_id = $1",
            row["tenant_id"],
            count,
            topup,
        )
        return {"tenant_id": row["tenant_id"], "added_cap": count, "topup": topup}
    finally:
        await conn.close()


async def _restore(settings: Settings, saved: dict[str, Any] | None, run_id: str) -> dict[str, int]:
    await asyncio.sleep(1.5)  # the service's batched call-record writer flushes
    conn = await connect(settings)
    try:
        open_ids = [
            r["call_id"]
            for r in await conn.fetch(
                "SELECT call_id FROM reservations WHERE call_id LIKE $1 AND state = 'open'",
                f"agidirect-{run_id}-%",
            )
        ]
        now = datetime.now(UTC)
        for call_id in open_ids:
            await release_reservation(conn, call_id, now, "bench agi_direct: no call")
        deleted_res = await conn.execute(
            "DELETE FROM reservations WHERE call_id LIKE $1", f"agidirect-{run_id}-%"
        )
        deleted_calls = await conn.execute(
            "DELETE FROM calls WHERE linkedid LIKE $1", f"agidirect-{run_id}-%"
        )
        if saved is None:
            return {"call_records_deleted": int(deleted_calls.split()[-1])}
        await conn.execute(
            "UPDATE accounts SET channel_cap = channel_cap - $2, balance = balance - $3 WHERE tenant_id = $1",
            saved["tenant_id"],
            saved["added_cap"],
            saved["topup"],
        )
        return {
            "reservations_released": len(open_ids),
            "reservations_deleted": int(deleted_res.split()[-1]),
            "call_records_deleted": int(deleted_calls.split()[-1]),
        }
    finally:
        await conn.close()


def run(
    service: ServiceProcess,
    settings: Settings,
    rate: float = 300.0,
    count: int = 3000,
    number: str = DEMO_NUMBER,
) -> dict[str, Any]:
    """Drive the running service's FastAGI port; returns the result as a dict. With another
    `number` than the demo's (e.g. an unknown one: a pure decision, no database), the
    account is left alone."""
    run_id = f"{random.getrandbits(32):08x}"
    saved = asyncio.run(_prepare(settings, count)) if number == DEMO_NUMBER else None
    try:
        before = service.histogram("softswitch_decision_seconds")
        cpu_before = _cpu_seconds(service)
        outcomes, span = _run_loop(settings.agi.host, settings.agi.port, rate, count, run_id, number)
        cpu_after = _cpu_seconds(service)
        after = service.histogram("softswitch_decision_seconds")
    finally:
        cleanup = asyncio.run(_restore(settings, saved, run_id))
    buckets = bucket_delta(before, after)
    svc_p50, svc_p99 = histogram_quantile(0.5, buckets), histogram_quantile(0.99, buckets)
    decided = [o.to_decision for o in outcomes if o.to_decision is not None]
    closed = [o.to_close for o in outcomes if o.to_close is not None]
    actions: dict[str, int] = {}
    for o in outcomes:
        key = o.action or (f"error:{o.error}" if o.error else "no_decision")
        actions[key] = actions.get(key, 0) + 1
    return {
        "benchmark": "agi_direct",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "number": number,
        "path": "routed: prepaid reservation in PostgreSQL" if saved else "no money path",
        "offered_sessions_per_s": rate,
        "sessions": count,
        "achieved_sessions_per_s": round(count / span, 1) if span else None,
        "outcomes": actions,
        "decision_latency_ms_client": {
            "source": "client: environment written -> EXEC MSet (the decision) read",
            "count": len(decided),
            "p50": _ms(_quantile(decided, 0.5)),
            "p99": _ms(_quantile(decided, 0.99)),
            "max": _ms(max(decided) if decided else None),
        },
        "session_ms_client": {
            "source": "client: environment written -> service closed the socket",
            "p50": _ms(_quantile(closed, 0.5)),
            "p99": _ms(_quantile(closed, 0.99)),
        },
        "decision_latency_ms_service": {
            "source": "service histogram softswitch_decision_seconds (run delta, interpolated)",
            "count": int(buckets[-1][1]) if buckets else 0,
            "p50": _ms(svc_p50),
            "p99": _ms(svc_p99),
        },
        "target_p99_ms": TARGET_P99_MS,
        "meets_target_service_p99": svc_p99 is not None and svc_p99 * 1000 <= TARGET_P99_MS,
        "meets_target_client_p99": bool(decided) and (_quantile(decided, 0.99) or 0) * 1000 <= TARGET_P99_MS,
        "service_cpu_seconds_per_1000_sessions": (
            round((cpu_after - cpu_before) / count * 1000, 3) if cpu_before is not None else None
        ),
        "cleanup": cleanup,
    }


def _run_loop(
    host: str, port: int, rate: float, count: int, run_id: str, number: str
) -> tuple[list[Outcome], float]:
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(load(host, port, rate, count, run_id, number))
    return uvloop.run(load(host, port, rate, count, run_id, number))


def _cpu_seconds(service: ServiceProcess) -> float | None:
    """utime + stime of the service process (/proc/<pid>/stat fields 14 and 15)."""
    if service.proc is None:
        return None
    return proc_cpu_seconds(service.proc.pid)


def proc_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(") ", 1)[1].split()
    # fields[0] is field 3 (state): utime is field 14, stime field 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=300.0, help="sessions per second offered")
    ap.add_argument("--count", type=int, default=3000, help="sessions in all")
    ap.add_argument("--number", default=DEMO_NUMBER, help="called number (default: the demo's routed one)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "agi_direct.json")
    args = ap.parse_args()

    from scripts.devstack.demo import seed
    from scripts.devstack.stack import LocalStack, exclusive_use

    settings = Settings()
    with exclusive_use(settings):
        LocalStack(settings).up()

        async def _seed() -> None:
            conn = await connect(settings)
            try:
                await seed(conn)
            finally:
                await conn.close()

        asyncio.run(_seed())
        service = ServiceProcess(settings, log_path=Path("/tmp/softswitch-bench-service.log"))
        service.start()
        try:
            result = run(service, settings, args.rate, args.count, args.number)
        finally:
            service.stop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
