"""An independent FastAGI client, the cross-check of bench/agi_direct.py: small, sharing no
code with it (standard library only), written another way — the stock asyncio loop
instead of uvloop, streams instead of a Protocol, the schedule kept by the loop itself
instead of a clock thread.

One session per call, at a fixed rate (open loop: session i is due at t0 + i/rate whether
or not earlier ones finished): connect, send the AGI environment Asterisk 22 sends for
``AGI(agi://host:port/route,<linkedid>,<number>)`` from a PJSIP channel, answer every
command as Asterisk does (``200 result=1`` to SET VARIABLE, ``200 result=0`` to the rest,
EXEC MSet included) until the service closes the socket.

Measured, per session, on time.perf_counter():
- lag: due time -> the session's connect began (the generator's own lateness; the
  loop's timer wakes up to 1 ms late, so the last millisecond before each due time is
  spent yielding to the loop, which keeps serving the sessions in flight);
- decision: the environment's last byte written -> the line carrying SS_ACTION read
  (EXEC MSet, or SET VARIABLE SS_ACTION): where the engine waits;
- session: the environment written -> the service closed the socket.
Garbage collection is off during the run (the few objects made are freed by reference
counting; a collection would stall the loop and be counted as the service's latency).

    python bench/agi_independent.py --port 4573 --rate 300 --count 3000 --number 4008000000

prints one JSON object (or writes it with --out).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import sys
import time
from pathlib import Path

SPIN_S = 0.001  # the timer's resolution: yield this last stretch instead of sleeping


def asterisk_environment(host: str, port: int, linkedid: str, number: str, n: int) -> bytes:
    pairs = {
        "agi_network": "yes",
        "agi_network_script": "route",
        "agi_request": f"agi://{host}:{port}/route",
        "agi_channel": f"PJSIP/carrier-in-{n + 0x10000:08x}",
        "agi_language": "en",
        "agi_type": "PJSIP",
        "agi_uniqueid": linkedid,
        "agi_version": "22.0.0",
        "agi_callerid": "13800138000",
        "agi_calleridname": "unknown",
        "agi_callingpres": "0",
        "agi_callingani2": "0",
        "agi_callington": "0",
        "agi_callingtns": "0",
        "agi_dnid": number,
        "agi_rdnis": "unknown",
        "agi_context": "ss-route",
        "agi_extension": "s",
        "agi_priority": "1",
        "agi_enhanced": "0.0",
        "agi_accountcode": "",
        "agi_threadid": str(140100000000000 + n),
        "agi_arg_1": linkedid,
        "agi_arg_2": number,
    }
    return "".join(f"{k}: {v}\n" for k, v in pairs.items()).encode() + b"\n"


def answer_to(line: bytes) -> bytes:
    return b"200 result=1\n" if line.startswith(b"SET VARIABLE") else b"200 result=0\n"


def action_in(line: bytes) -> str:
    text = line.decode(errors="replace")
    value = text[text.index("SS_ACTION=") + len("SS_ACTION=") :]
    return value.replace('"', " ").replace(",", " ").split()[0] if value.strip() else "?"


class Session:
    __slots__ = ("due", "connect", "sent", "decided", "closed", "action", "error")

    def __init__(self, due: float) -> None:
        self.due = due
        self.connect = self.sent = self.decided = self.closed = math.nan
        self.action = ""
        self.error = ""


async def one(host: str, port: int, env: bytes, s: Session, timeout: float) -> None:
    s.connect = time.perf_counter()
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(env)
            s.sent = time.perf_counter()
            await writer.drain()
            while True:
                line = await reader.readline()
                now = time.perf_counter()
                if not line:
                    s.closed = now
                    break
                if math.isnan(s.decided) and b"SS_ACTION=" in line:
                    s.decided = now
                    s.action = action_in(line)
                writer.write(answer_to(line))
    except (TimeoutError, OSError) as exc:
        s.error = type(exc).__name__
    finally:
        if writer is not None:
            writer.close()


async def drive(
    host: str, port: int, rate: float, count: int, prefix: str, number: str, start: float | None = None
) -> list[Session]:
    envs = [asterisk_environment(host, port, f"{prefix}{n}", number, n) for n in range(count)]
    t0 = time.perf_counter() + 0.1 if start is None else start
    sessions = [Session(t0 + n / rate) for n in range(count)]
    tasks = []
    for n, s in enumerate(sessions):
        wait = s.due - time.perf_counter() - SPIN_S
        if wait > 0:
            await asyncio.sleep(wait)
        while time.perf_counter() < s.due:  # noqa: ASYNC110 - a spin that keeps the loop serving
            await asyncio.sleep(0)
        tasks.append(asyncio.create_task(one(host, port, envs[n], s, 10.0)))
    await asyncio.gather(*tasks)
    return sessions


def nearest_rank(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def summary(values: list[float]) -> dict[str, float | int | None]:
    def ms(v: float | None) -> float | None:
        return None if v is None else round(v * 1000, 3)

    return {
        "count": len(values),
        "p50": ms(nearest_rank(values, 0.50)),
        "p99": ms(nearest_rank(values, 0.99)),
        "max": ms(max(values) if values else None),
    }


def measure(
    host: str, port: int, rate: float, count: int, prefix: str, number: str, start: float | None = None
) -> dict[str, object]:
    gc.collect()
    gc.freeze()
    gc.disable()
    collections_before = sum(g["collections"] for g in gc.get_stats())
    started = time.perf_counter()
    try:
        sessions = asyncio.run(drive(host, port, rate, count, prefix, number, start))
    finally:
        collections = sum(g["collections"] for g in gc.get_stats()) - collections_before
        gc.enable()
        gc.unfreeze()
    wall = time.perf_counter() - started
    outcomes: dict[str, int] = {}
    for s in sessions:
        key = s.action or (f"error:{s.error}" if s.error else "no_decision")
        outcomes[key] = outcomes.get(key, 0) + 1
    ok = [s for s in sessions if not math.isnan(s.decided)]
    return {
        "client": "bench/agi_independent.py",
        "loop": "asyncio (stock selector loop)",
        "host": host,
        "port": port,
        "number": number,
        "offered_sessions_per_s": rate,
        "sessions": count,
        "wall_s": round(wall, 2),
        "outcomes": outcomes,
        "gc_collections_during_run": collections,
        "lag_ms": {
            "source": "due time (t0 + i/rate) -> the session's connect began",
            **summary([s.connect - s.due for s in sessions if not math.isnan(s.connect)]),
        },
        "send_lag_ms": {
            "source": "due time -> the environment's last byte written",
            **summary([s.sent - s.due for s in sessions if not math.isnan(s.sent)]),
        },
        "decision_latency_ms": {
            "source": "environment's last byte written -> the line with SS_ACTION read",
            **summary([s.decided - s.sent for s in ok]),
        },
        "session_ms": {
            "source": "environment written -> the service closed the socket",
            **summary([s.closed - s.sent for s in sessions if not math.isnan(s.closed + s.sent)]),
        },
        "slowest_ms": sorted(
            (
                {
                    "session": n,
                    "due_s": round(s.due - sessions[0].due, 4),
                    "ms": round((s.decided - s.sent) * 1000, 3),
                }
                for n, s in enumerate(sessions)
                if not math.isnan(s.decided)
            ),
            key=lambda d: -float(d["ms"]),
        )[:10],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=4573)
    ap.add_argument("--rate", type=float, default=300.0)
    ap.add_argument("--count", type=int, default=3000)
    ap.add_argument("--number", default="4008000000", help="called number (default: an unknown one)")
    ap.add_argument("--prefix", default="agiindep-", help="linkedid prefix (session n is <prefix><n>)")
    ap.add_argument(
        "--start",
        type=float,
        help="the first session's due time on time.perf_counter() (CLOCK_MONOTONIC, the same in "
        "every process of this machine): to interleave with another client",
    )
    ap.add_argument("--out", type=Path, help="write the JSON here instead of stdout")
    args = ap.parse_args()
    result = measure(args.host, args.port, args.rate, args.count, args.prefix, args.number, args.start)
    text = json.dumps(result, indent=2) + "\n"
    if args.out:
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
