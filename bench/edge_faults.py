"""Faults under load in the cluster layout (issue 18, item 4): calls at a steady rate from
the carrier through the SIP edge (Kamailio, 127.0.0.10) over both engines, handed to two
control-plane instances (the first, and its standby that the engines ask when the first
does not answer), while one part fails:

1. ``baseline``: everything up;
2. ``instance_killed``: the first instance killed with SIGKILL a third into the phase; new
   calls go to the standby. It is started again after the phase, and every answered call
   of the phase must then be settled exactly once (the calls in progress on the killed
   one are the reconcilers');
3. ``asterisk_killed``: Asterisk killed with SIGKILL a third into the phase; the edge's
   probe takes it out of rotation and new calls go to FreeSWITCH. Asterisk is started
   again after the phase;
4. ``recovered``: the next phase, with Asterisk back in rotation.

Per phase: calls offered / answered / failed (SIPp's counters), the calls decided by each
engine (the call records), how long the failed part was out of rotation (the edge's
dispatcher list, polled every 100 ms), and for the instance phase whether every answered
call was settled once. Writes bench/results/edge_faults.json.

    .venv/bin/python bench/edge_faults.py [--rate 30 --seconds 15 --hold-ms 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.call_path import ROUTED_NUMBER, _seed, _summary  # noqa: E402
from scripts.devstack.edge import KamailioEdge  # noqa: E402
from scripts.devstack.process import ServiceProcess, standby_service  # noqa: E402
from scripts.devstack.sipp import SippResult, SippUas, run_uac  # noqa: E402
from scripts.devstack.stack import LocalStack, exclusive_use  # noqa: E402
from softswitch.core.db import connect  # noqa: E402
from softswitch.core.settings import Settings  # noqa: E402

ASTERISK_CALL = re.compile(r"^softswitch-\d+\.\d+$")  # Asterisk's linkedids; FreeSWITCH's are UUIDs


async def _records(settings: Settings, since: datetime, until: datetime) -> dict[str, Any]:
    conn = await connect(settings)
    try:
        rows = await conn.fetch(
            "SELECT c.linkedid, c.answered_at IS NOT NULL AS answered, c.settled_at IS NOT NULL AS settled, "
            "(SELECT count(*) FROM ledger_entries l "
            "WHERE l.kind = 'call' AND l.idempotency_key = c.linkedid) AS entries "
            "FROM calls c WHERE c.decided_at >= $1 AND c.decided_at < $2 AND c.called = $3",
            since,
            until,
            ROUTED_NUMBER,
        )
    finally:
        await conn.close()
    by_engine = {"asterisk": 0, "freeswitch": 0}
    for r in rows:
        by_engine["asterisk" if ASTERISK_CALL.match(r["linkedid"]) else "freeswitch"] += 1
    answered = [r for r in rows if r["answered"]]
    return {
        "decided": len(rows),
        "decided_by_engine": by_engine,
        "answered": len(answered),
        "answered_settled": sum(1 for r in answered if r["settled"]),
        "charged_more_than_once": sum(1 for r in answered if r["entries"] > 1),
    }


def _out_of_rotation(edge: KamailioEdge, uri: str, stop: threading.Event, seen: dict[str, float]) -> None:
    """Poll the edge's dispatcher: when `uri` left the rotation and came back (monotonic)."""
    while not stop.is_set():
        try:
            active = edge.engines().get(uri, True)
        except Exception:  # noqa: BLE001 - the edge busy for a moment: poll again
            active = True
        now = time.monotonic()
        if not active and "out" not in seen:
            seen["out"] = now
        if active and "out" in seen and "back" not in seen:
            seen["back"] = now
        time.sleep(0.1)


def _load(settings: Settings, rate: float, seconds: float, hold_ms: int) -> SippResult:
    return run_uac(
        ROUTED_NUMBER,
        local_ip=settings.asterisk.carrier_in_host,
        target=f"{settings.edge.host}:{settings.edge.port}",
        calls=int(rate * seconds),
        rate=rate,
        hold_ms=hold_ms,
        limit=int(rate * 10),
        timeout_s=seconds + hold_ms / 1000 + 60,
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=30.0, help="offered calls/s")
    ap.add_argument("--seconds", type=float, default=15.0, help="per phase")
    ap.add_argument("--hold-ms", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "edge_faults.json")
    args = ap.parse_args()
    settings = Settings()
    with exclusive_use(settings):
        return _bench(args, settings)


def _bench(args: argparse.Namespace, settings: Settings) -> int:
    stack = LocalStack(settings)
    stack.up()
    edge = KamailioEdge(stack)
    edge.up()
    asyncio.run(_seed(settings, int(args.rate * (args.hold_ms / 1000 + 2) * 2) + 50))
    env = {"SOFTSWITCH_SCHEDULER__ENABLED": "false"}
    first = ServiceProcess(settings, env=env, log_path=Path("/tmp/softswitch-bench-service.log"))
    standby = standby_service(settings, env=env, log_path=Path("/tmp/softswitch-bench-standby.log"))
    first.start()
    standby.start()
    asterisk_uri = f"sip:{settings.asterisk.sip_host}:{settings.asterisk.sip_port}"
    phases: list[dict[str, Any]] = []
    try:
        with SippUas(ring_ms=10):
            for name in ("baseline", "instance_killed", "asterisk_killed", "recovered"):
                since = datetime.now(UTC)
                seen: dict[str, float] = {}
                stop = threading.Event()
                poller = threading.Thread(target=_out_of_rotation, args=(edge, asterisk_uri, stop, seen))
                poller.start()
                result: list[SippResult] = []

                def offer(into: list[SippResult] = result) -> None:
                    into.append(_load(settings, args.rate, args.seconds, args.hold_ms))

                load = threading.Thread(target=offer)
                started = time.monotonic()
                load.start()
                fault_at = None
                if name in ("instance_killed", "asterisk_killed"):
                    time.sleep(args.seconds / 3)
                    fault_at = time.monotonic()
                    if name == "instance_killed":
                        first.stop(signal.SIGKILL)
                    else:
                        pid = stack.asterisk_pid()
                        assert pid is not None
                        os.kill(pid, signal.SIGKILL)
                load.join()
                until = datetime.now(UTC)
                if name == "instance_killed":
                    first.start()  # its reconciler, and the standby's, settle what it left
                if name == "asterisk_killed":
                    stack.asterisk_up()
                    deadline = time.monotonic() + 30
                    while not edge.engines().get(asterisk_uri) and time.monotonic() < deadline:
                        time.sleep(0.1)
                    first.wait_ready(30)
                time.sleep(args.hold_ms / 1000 + 3)  # the last calls end and are settled
                stop.set()
                poller.join()
                phase: dict[str, Any] = {"phase": name, "rate": args.rate, **_summary(result[0])}
                phase["records"] = asyncio.run(_records(settings, since, until))
                if fault_at is not None:
                    phase["fault_after_s"] = round(fault_at - started, 2)
                if "out" in seen and fault_at is not None:
                    phase["asterisk_out_of_rotation_after_s"] = round(seen["out"] - fault_at, 2)
                if "back" in seen and "out" in seen:
                    phase["asterisk_out_of_rotation_for_s"] = round(seen["back"] - seen["out"], 2)
                print(json.dumps(phase), flush=True)
                phases.append(phase)
    finally:
        standby.stop()
        first.stop()
        if stack.asterisk_pid() is None:
            stack.asterisk_up()
    result_doc = {
        "benchmark": "edge_faults",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "rate": args.rate,
        "seconds_per_phase": args.seconds,
        "hold_ms": args.hold_ms,
        "phases": phases,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result_doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
