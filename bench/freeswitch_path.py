"""FreeSWITCH call-path benchmark: SIPp at fixed rates through FreeSWITCH's carrier profile,
(i) to its static dialplan with no control plane and (ii) handed to the control plane over
the outbound Event Socket, in the same run; the arms' order alternates from rate to rate and
round to round, so drift hits both alike.
Writes bench/results/freeswitch_path.json.

    .venv/bin/python bench/freeswitch_path.py --rates 25,50,100 --round-s 10 --rounds 1

(i) calls from 127.0.0.4 (settings.asterisk.baseline_in_host): context `static` bridges
them to 13800138000 at 127.0.0.3:5060; (ii) calls from 127.0.0.2 to the demo number
4008001234 (rings 13800138000): `socket ... async full`, then the service decides, reserves
and bridges. A SIPp UAS on 127.0.0.3:5060 answers as the destination carrier after 10 ms.

Per rate and arm: SIPp's counts (answered = got a 200 OK; refused = ended cleanly on an
error status), the answered CPS; the caller's post-dial delay (INVITE to the first 180/183)
and answer delay (INVITE to 200) from SIPp's response-time repartition of a copy of
sipp-scenarios/uac_inbound.xml with 1 ms buckets; FreeSWITCH's own timing of each caller
leg (its CHANNEL_HANGUP_COMPLETE over the inbound Event Socket); the service's
softswitch_decision_seconds delta; CPU of the service, FreeSWITCH and the machine. The
added delay of the control plane is the control-plane arm's quantile minus the static arm's.
Between runs, FreeSWITCH's channels must drain; what is left (callers SIPp abandoned at its
timeout) is hung up and counted, so no run inherits another's load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.agi_direct import _quantile, proc_cpu_seconds  # noqa: E402
from bench.call_path import ROUTED_NUMBER, _seconds, _seed  # noqa: E402
from bench.harness import _delta_by, _histogram, parse_metrics  # noqa: E402
from bench.quantiles import bucket_delta, histogram_quantile  # noqa: E402
from scripts.devstack.process import ServiceProcess  # noqa: E402
from scripts.devstack.sipp import SCENARIOS, SippResult, SippUas, run_uac  # noqa: E402
from scripts.devstack.stack import LocalStack, exclusive_use  # noqa: E402
from softswitch.core.settings import Settings  # noqa: E402
from softswitch.engines.freeswitch.esl.client import EslClient  # noqa: E402
from softswitch.engines.freeswitch.esl.codec import EslEvent  # noqa: E402

OUT = Path(__file__).parent / "results" / "freeswitch_path.json"
SERVICE_LOG = Path("/tmp/softswitch-bench-freeswitch-service.log")
ARMS = ("static_dialplan", "control_plane")
SIPP_GRACE_S = 10  # past the last call's hold time, SIPp gives up on what is still running
DRAIN_S = 5  # after SIPp ends, how long FreeSWITCH's channels may take to go
SETTLE_S = 3  # then how long the service may take to see its calls end
# SIPp's response times are whole milliseconds; 1 ms buckets where the figures lie.
RTD_BOUNDS_MS = (
    *range(1, 31),
    *range(32, 101, 2),
    *range(105, 201, 5),
    *range(210, 401, 10),
    *range(450, 1001, 50),
    1500,
    2000,
    3000,
    5000,
    10000,
)
RTDS = {"pdd": "invite_to_first_180_or_183", "answer": "invite_to_200"}
FIGURES = {
    "attempted": "SIPp TotalCallCreated",
    "answered": "calls that got a 200 OK (SIPp's count of the INVITE-to-200 timer)",
    "refused": "SIPp SuccessfulCall(C) - answered: ended cleanly on an error status (uac_inbound.xml "
    "ACKs 403/404/486/503... and counts the call as successful)",
    "failed": "SIPp FailedCall(C) (retransmission timeouts, unexpected messages)",
    "unfinished": "attempted - successful - failed: still running when SIPp's -timeout (round + hold "
    f"+ {SIPP_GRACE_S} s) ended it; SIPp sends no CANCEL/BYE for them",
    "answered_cps": "answered / sum over rounds of max(SIPp elapsed - hold, (attempted-1)/rate)",
    "answered_share": "answered / attempted",
    "all_answered": "every call attempted got a 200 OK, in every round",
    "sipp_ms.invite_to_first_180_or_183": "the caller's post-dial delay: from SIPp sending the INVITE "
    "to the first 180 or 183 (whole ms, SIPp's clock); p50/p99 interpolated in 1 ms buckets (up to "
    "30 ms, coarser above) of SIPp's ResponseTimeRepartition; mean is SIPp's own",
    "sipp_ms.invite_to_200": "the same to the 200 OK (includes the destination's ring_ms)",
    "freeswitch_a_leg": "FreeSWITCH's own timing of each caller leg, from its CHANNEL_HANGUP_COMPLETE "
    "(this benchmark's own inbound Event Socket subscription, caller legs only): "
    "created_to_progress = min(progress_uepoch, progress_media_uepoch) - start_uepoch (ringing "
    "sent to the caller), created_to_answer = answer_uepoch - start_uepoch, exact per-call "
    "nearest-rank quantiles; FreeSWITCH's clock is as coarse as clock_step_us_observed "
    "(20 ms when lightly loaded here)",
    "service": "deltas of the service's metrics from just before a run to after its drain, summed "
    "over the arm's rounds: decisions by reason, outbound Event Socket sessions by outcome, calls "
    "ended (answered yes/no), the engine audit's corrections, prepaid reservations and "
    "reconciliations, and softswitch_decision_seconds (from the call handed over to the decision "
    "delivered, prepaid reservation included) p50/p99, bucket-interpolated (bench.quantiles)",
    "cpu": "over the SIPp part of each run: machine busy share of all cores (/proc/stat), and the "
    "service's, FreeSWITCH's and this benchmark's own process's (its Event Socket reader; SIPp not "
    "included) CPU seconds per wall second (cores used)",
    "leftover_channels": f"FreeSWITCH channels still up {DRAIN_S} s after SIPp ended, by direction, "
    "state, call state and application (then hung up: hupall NORMAL_CLEARING, as this benchmark "
    "holds the stack alone); after each run the service gets up to "
    f"{SETTLE_S} s more until softswitch_calls_active is 0 (service_calls_active_after otherwise)",
    "added_delay_ms": "control_plane quantile minus static_dialplan quantile at the same rate "
    "(a difference of quantiles, not a quantile of per-call differences)",
    "max_rate_all_answered": "the highest offered rate at which the arm answered every call in "
    "every round (None: at no rate)",
    "capped quantiles": "a quantile in the open top bucket is reported as the highest finite bound: "
    f"{RTD_BOUNDS_MS[-1]} ms for SIPp's timers, 1000 ms for softswitch_decision_seconds (the prepaid "
    "reservation gives up after 1 s: BILLING_UNAVAILABLE); read those as 'at least'",
    "summary": "the headline figures of per_rate, repeated",
}


# ---------------------------------------------------------------------------- SIPp
def timed_scenario(tmp: Path) -> Path:
    """uac_inbound.xml with two named response timers: pdd (to the first 180/183) and
    answer (to the 200), and millisecond repartition buckets."""
    text = (SCENARIOS / "uac_inbound.xml").read_text()
    for old, new in (
        ('<recv response="180" optional="true"/>', '<recv response="180" optional="true" rtd="pdd"/>'),
        ('<recv response="183" optional="true"/>', '<recv response="183" optional="true" rtd="pdd"/>'),
        ('rrs="true" rtd="true"', 'rrs="true" rtd="answer"'),
    ):
        if text.count(old) != 1:
            raise RuntimeError(f"sipp-scenarios/uac_inbound.xml changed: {old!r} is not there once")
        text = text.replace(old, new)
    bounds = ", ".join(str(b) for b in RTD_BOUNDS_MS)
    text, n = re.subn(
        r'<ResponseTimeRepartition value="[^"]*"/>', f'<ResponseTimeRepartition value="{bounds}"/>', text
    )
    if n != 1:
        raise RuntimeError("sipp-scenarios/uac_inbound.xml changed: no ResponseTimeRepartition")
    path = tmp / "uac_inbound_timed.xml"
    path.write_text(text)
    return path


def rtd_buckets(results: list[SippResult], rtd: str) -> list[tuple[float, float]]:
    """Cumulative (upper bound ms, count) of one response timer over runs; SIPp's
    `_<N` holds the times below N ms, `_>=N` the rest (+Inf)."""
    prefix = f"ResponseTimeRepartition{rtd}_"
    counts: Counter[float] = Counter()
    for r in results:
        for key, value in r.stats.items():
            if key.startswith(prefix) and value.strip():
                label = key[len(prefix) :]
                bound = float("inf") if label.startswith(">=") else float(label.lstrip("<"))
                counts[bound] += int(value)
    out: list[tuple[float, float]] = []
    total = 0.0
    for bound in sorted(counts):
        total += counts[bound]
        out.append((bound, total))
    return out


def _count(results: list[SippResult], rtd: str) -> int:
    buckets = rtd_buckets(results, rtd)
    return int(buckets[-1][1]) if buckets else 0


def rtd_figures(results: list[SippResult], rtd: str) -> dict[str, Any]:
    buckets = rtd_buckets(results, rtd)
    count = _count(results, rtd)
    weighted = 0.0
    for r in results:  # SIPp's cumulative mean per run, weighted by that run's count
        mean = r.stats.get(f"ResponseTime{rtd}(C)")
        if mean:
            weighted += _seconds(mean) * 1000 * _count([r], rtd)
    p50, p99 = histogram_quantile(0.5, buckets), histogram_quantile(0.99, buckets)
    return {
        "count": count,
        "mean": round(weighted / count, 2) if count else None,
        "p50": round(p50, 2) if p50 is not None else None,
        "p99": round(p99, 2) if p99 is not None else None,
    }


def sipp_counts(results: list[SippResult], hold_ms: int, rate: float) -> dict[str, Any]:
    attempted = sum(int(r.stats.get("TotalCallCreated", 0)) for r in results)
    successful = sum(int(r.stats.get("SuccessfulCall(C)", 0)) for r in results)
    failed = sum(int(r.stats.get("FailedCall(C)", 0)) for r in results)
    answered = _count(results, "answer")
    busy = sum(
        max(
            _seconds(r.stats["ElapsedTime(C)"]) - hold_ms / 1000,
            (int(r.stats["TotalCallCreated"]) - 1) / rate,
        )
        for r in results
        if "ElapsedTime(C)" in r.stats and "TotalCallCreated" in r.stats
    )
    return {
        "attempted": attempted,
        "answered": answered,
        "refused": successful - answered,
        "failed": failed,
        "unfinished": attempted - successful - failed,
        "answered_cps": round(answered / busy, 2) if busy > 0 else None,
        "answered_share": round(answered / attempted, 4) if attempted else None,
        "all_answered": bool(results)
        and all(
            int(r.stats.get("TotalCallCreated", 0)) > 0
            and _count([r], "answer") == int(r.stats["TotalCallCreated"])
            for r in results
        ),
        "sipp_exit_codes": [r.returncode for r in results],
    }


# ---------------------------------------------------------------------------- FreeSWITCH's view
class CallerLegs:
    """Caller legs' CHANNEL_HANGUP_COMPLETE, each filed under the latest run of its arm
    (told apart by the source address), so late hang-ups land with their own run."""

    FIELDS = (
        "Hangup-Cause",
        "variable_ss_reason",
        "variable_start_uepoch",
        "variable_progress_uepoch",
        "variable_progress_media_uepoch",
        "variable_answer_uepoch",
    )

    def __init__(self, arm_of_ip: dict[str, str]) -> None:
        self.arm_of_ip = arm_of_ip
        self.current: dict[str, str] = {}  # arm -> key of its latest run
        self.legs: dict[str, list[dict[str, str]]] = {}
        self.unattributed = 0

    def on_event(self, event: EslEvent) -> None:
        if event.name != "CHANNEL_HANGUP_COMPLETE" or event.get("Call-Direction") != "inbound":
            return
        arm = self.arm_of_ip.get(event.get("variable_sip_network_ip") or "")
        key = self.current.get(arm or "")
        if key is None:
            self.unattributed += 1
            return
        self.legs.setdefault(key, []).append({f: event.get(f) or "" for f in self.FIELDS})


def _us(leg: dict[str, str], name: str) -> int:
    value = leg.get(f"variable_{name}", "")
    return int(value) if value.isdigit() else 0


def clock_step_us(legs: list[dict[str, str]]) -> int | None:
    """The smallest step between distinct channel creation times: FreeSWITCH's clock
    resolution as its channel timestamps show it."""
    starts = sorted({_us(leg, "start_uepoch") for leg in legs} - {0})
    steps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    return min(steps) if steps else None


def leg_figures(legs: list[dict[str, str]]) -> dict[str, Any]:
    progress, answer = [], []
    for leg in legs:
        start = _us(leg, "start_uepoch")
        marks = [t for t in (_us(leg, "progress_uepoch"), _us(leg, "progress_media_uepoch")) if t]
        if start and marks:
            progress.append((min(marks) - start) / 1000)
        if start and _us(leg, "answer_uepoch"):
            answer.append((_us(leg, "answer_uepoch") - start) / 1000)

    def q(values: list[float]) -> dict[str, Any]:
        p50, p99 = _quantile(values, 0.5), _quantile(values, 0.99)
        return {
            "count": len(values),
            "p50": round(p50, 2) if p50 is not None else None,
            "p99": round(p99, 2) if p99 is not None else None,
        }

    return {
        "legs_seen": len(legs),
        "hangup_causes": dict(Counter(leg["Hangup-Cause"] for leg in legs).most_common()),
        "ss_reason": dict(Counter(leg["variable_ss_reason"] or "-" for leg in legs).most_common()),
        "created_to_progress_ms": q(progress),
        "created_to_answer_ms": q(answer),
        "clock_step_us_observed": clock_step_us(legs),
    }


# ---------------------------------------------------------------------------- the service and CPU
def service_delta(before: dict, after: dict) -> dict[str, Any]:  # type: ignore[type-arg]
    buckets = bucket_delta(
        _histogram(before, "softswitch_decision_seconds"), _histogram(after, "softswitch_decision_seconds")
    )
    return {
        "decisions_by_reason": _delta_by(before, after, "softswitch_call_decisions_total", "reason"),
        "esl_sessions_by_outcome": _delta_by(before, after, "softswitch_esl_sessions_total", "outcome"),
        "calls_ended": _delta_by(before, after, "softswitch_calls_ended_total", "answered"),
        "engine_audit_corrections": _delta_by(
            before, after, "softswitch_engine_audit_corrections_total", "kind"
        ),
        "reservations": _delta_by(before, after, "softswitch_prepaid_reservations_total", "result"),
        "reservations_reconciled": _delta_by(before, after, "softswitch_prepaid_reconciled_total", "action"),
        "buckets": buckets,
    }


def _sum_buckets(series: list[list[tuple[float, float]]]) -> list[tuple[float, float]]:
    total: dict[float, float] = {}
    for buckets in series:
        for le, count in buckets:
            total[le] = total.get(le, 0.0) + count
    return sorted(total.items())


def merge_service(deltas: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in (k for k in deltas[0] if k != "buckets"):
        total: Counter[str] = Counter()
        for d in deltas:
            total.update(d[name])
        out[name] = dict(sorted(total.items()))
    out["decision_latency"] = decision_figures(_sum_buckets([d["buckets"] for d in deltas]))
    return out


def decision_figures(buckets: list[tuple[float, float]]) -> dict[str, Any]:
    p50, p99 = histogram_quantile(0.5, buckets), histogram_quantile(0.99, buckets)
    return {
        "count": int(buckets[-1][1]) if buckets else 0,
        "p50_ms": round(p50 * 1000, 3) if p50 is not None else None,
        "p99_ms": round(p99 * 1000, 3) if p99 is not None else None,
    }


def _machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:9]]
    idle = values[3] + values[4]  # idle, iowait
    return sum(values) - idle, sum(values)


class CpuMeter:
    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids

    def sample(self) -> dict[str, float]:
        busy, total = _machine_jiffies()
        out = {"_t": time.monotonic(), "_busy": float(busy), "_total": float(total)}
        for name, pid in self.pids.items():
            try:
                out[name] = proc_cpu_seconds(pid)
            except OSError:
                pass
        return out

    @staticmethod
    def delta(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
        wall = b["_t"] - a["_t"]
        total = b["_total"] - a["_total"]
        share = (b["_busy"] - a["_busy"]) / total if total else 0.0
        out = {"machine_busy_share": round(share, 3)}
        ours = 0.0
        for name in a:
            if not name.startswith("_") and name in b and wall > 0:
                cores = (b[name] - a[name]) / wall
                ours += cores
                out[f"{name}_cores"] = round(cores, 3)
        # SIPp, PostgreSQL, Asterisk and whatever else runs on the machine
        out["other_cores"] = round(share * (os.cpu_count() or 1) - ours, 3)
        return out


# ---------------------------------------------------------------------------- the run
@dataclass
class Run:
    rnd: int
    rate: float
    arm: str
    sipp: SippResult
    service: dict[str, Any]
    cpu: dict[str, float]
    drain: dict[str, Any]

    @property
    def key(self) -> str:
        return f"{self.rate:g}/{self.arm}"


@dataclass
class Collected:
    runs: list[Run] = field(default_factory=list)
    fs_version: str = ""
    before: dict[str, Any] = field(default_factory=dict)  # channels up before the first run
    after_service_stopped: dict[str, Any] = field(default_factory=dict)
    esl_reconnects: int = 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="25,50,100", help="offered calls per second, comma-separated")
    ap.add_argument("--round-s", type=float, default=10.0, help="seconds of calls per round, rate and arm")
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="rounds; each runs every rate through both arms, the arms' order alternating by rate and round",
    )
    ap.add_argument("--hold-ms", type=int, default=1000)
    ap.add_argument("--ring-ms", type=int, default=10, help="the destination's ringing before it answers")
    ap.add_argument(
        "--no-engine-events",
        action="store_true",
        help="skip this benchmark's own Event Socket subscription (FreeSWITCH's per-leg timing)",
    )
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    args.rate_list = [float(r) for r in args.rates.split(",") if r.strip()]
    if not args.rate_list or min(args.rate_list) <= 0:
        ap.error("--rates: one or more positive numbers")

    settings = Settings()
    asked = time.monotonic()
    with exclusive_use(settings):
        started = time.monotonic()
        result = _bench(args, settings)
    result["waited_for_the_stack_s"] = round(started - asked, 1)
    result["wall_s"] = round(time.monotonic() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


def _bench(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    stack = LocalStack(settings)
    stack.up()
    fs_pid = stack.fs_pid()
    if fs_pid is None:
        raise SystemExit("FreeSWITCH is not running (build it: scripts/freeswitch.sh, then stack up)")
    asyncio.run(_seed(settings, int(max(args.rate_list) * (args.hold_ms / 1000 + 2) * 2) + 50))
    ip_of = {
        "static_dialplan": settings.asterisk.baseline_in_host,
        "control_plane": settings.asterisk.carrier_in_host,
    }
    legs = CallerLegs({ip: arm for arm, ip in ip_of.items()})
    SERVICE_LOG.write_bytes(b"")
    service = ServiceProcess(settings, log_path=SERVICE_LOG)
    service.start()
    try:
        assert service.proc is not None
        cpu = CpuMeter({"service": service.proc.pid, "freeswitch": fs_pid, "this_benchmark": os.getpid()})
        deadline = time.monotonic() + 10
        while service.metric("softswitch_esl_connected") != 1.0:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the service did not connect to FreeSWITCH's Event Socket; see {SERVICE_LOG}"
                )
            time.sleep(0.1)
        with tempfile.TemporaryDirectory(prefix="bench-fs-") as tmp, SippUas(ring_ms=args.ring_ms):
            scenario = timed_scenario(Path(tmp))
            got = asyncio.run(_rounds(args, settings, service, cpu, legs, scenario, ip_of))
    finally:
        service.stop()
        stopped = asyncio.run(_after_stop(settings))
    got.after_service_stopped = stopped
    return _report(args, settings, got, legs, ip_of)


async def _channels(esl: EslClient) -> int:
    text = await esl.api("show channels count")
    m = re.search(r"(\d+) total", text)
    return int(m.group(1)) if m else -1


async def _channel_kinds(esl: EslClient) -> dict[str, int]:
    text = await esl.api("show channels as delim |")
    lines = [line.split("|") for line in text.splitlines() if "|" in line]
    if not lines:
        return {}
    col = {name: i for i, name in enumerate(lines[0])}
    kinds: Counter[str] = Counter()
    for row in lines[1:]:
        kinds[
            " ".join(
                row[col[c]] if col.get(c, 99) < len(row) else "?"
                for c in ("direction", "state", "callstate", "application")
            )
        ] += 1
    return dict(kinds.most_common(6))


async def _drain(esl: EslClient, service: ServiceProcess | None) -> dict[str, Any]:
    """Wait for FreeSWITCH's channels to go and hang up what stays (we hold the stack
    alone); then give the service time to see its calls end."""
    deadline = time.monotonic() + DRAIN_S
    left = await _channels(esl)
    while left > 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        left = await _channels(esl)
    out: dict[str, Any] = {"leftover_channels": left}
    if left > 0:
        out["leftover_kinds"] = await _channel_kinds(esl)
        await esl.api("hupall NORMAL_CLEARING")
    if service is not None:
        deadline = time.monotonic() + SETTLE_S
        active = service.metric("softswitch_calls_active")
        while active > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            active = service.metric("softswitch_calls_active")
        await asyncio.sleep(0.5)  # the last settlements and call records
        out["service_calls_active_after"] = int(service.metric("softswitch_calls_active"))
    return out


async def _after_stop(settings: Settings) -> dict[str, Any]:
    """FreeSWITCH's channels once the service (and its outbound sockets) are gone: the
    stack is left with none."""
    fs = settings.freeswitch
    esl = EslClient(fs.esl_host, fs.esl_port, fs.esl_password.get_secret_value(), command_timeout=20.0)
    await esl.start()
    try:
        if not await esl.wait_connected(10):
            return {"error": esl.last_error}
        return await _drain(esl, None)
    finally:
        await esl.stop()


async def _rounds(
    args: argparse.Namespace,
    settings: Settings,
    service: ServiceProcess,
    cpu: CpuMeter,
    legs: CallerLegs,
    scenario: Path,
    ip_of: dict[str, str],
) -> Collected:
    """Every round: every rate through both arms (the arms' order alternating), with
    FreeSWITCH's caller legs collected over the inbound Event Socket meanwhile."""
    fs = settings.freeswitch
    target = f"{fs.sip_host}:{fs.carrier_port}"
    hold_s = args.hold_ms / 1000
    got = Collected()
    events = ("HEARTBEAT", "BACKGROUND_JOB")
    esl = EslClient(
        fs.esl_host,
        fs.esl_port,
        fs.esl_password.get_secret_value(),
        heartbeat_timeout=3600.0,  # the filter below drops HEARTBEAT
        command_timeout=20.0,
        events=events if args.no_engine_events else ("CHANNEL_HANGUP_COMPLETE", *events),
    )
    esl.add_event_listener(legs.on_event)
    await esl.start()
    try:
        if not await esl.wait_connected(10):
            raise RuntimeError(f"Event Socket {fs.esl_host}:{fs.esl_port}: {esl.last_error}")
        got.fs_version = (await esl.api("version")).strip()
        if not args.no_engine_events:
            await esl.command("filter Call-Direction inbound")  # caller legs only: half the events
        got.before = await _drain(esl, None)
        for rnd in range(args.rounds):
            for i, rate in enumerate(args.rate_list):
                calls = max(1, int(rate * args.round_s))
                for arm in ARMS if (rnd + i) % 2 == 0 else ARMS[::-1]:
                    key = f"{rate:g}/{arm}"
                    print(
                        f"freeswitch_path: round {rnd + 1}, {key}, {calls} calls", file=sys.stderr, flush=True
                    )
                    legs.current[arm] = key
                    before = parse_metrics(service.metrics())
                    cpu0 = cpu.sample()
                    result = await asyncio.to_thread(
                        run_uac,
                        ROUTED_NUMBER,
                        scenario=str(scenario),
                        local_ip=ip_of[arm],
                        target=target,
                        calls=calls,
                        rate=rate,
                        hold_ms=args.hold_ms,
                        limit=int(rate * (hold_s + 10)),
                        timeout_s=calls / rate + hold_s + SIPP_GRACE_S,
                    )
                    cpu1 = cpu.sample()
                    drain = await _drain(esl, service)
                    after = parse_metrics(service.metrics())
                    got.runs.append(
                        Run(
                            rnd, rate, arm, result, service_delta(before, after), cpu.delta(cpu0, cpu1), drain
                        )
                    )
        got.esl_reconnects = esl.reconnects
    finally:
        await esl.stop()
    return got


def _report(
    args: argparse.Namespace,
    settings: Settings,
    got: Collected,
    legs: CallerLegs,
    ip_of: dict[str, str],
) -> dict[str, Any]:
    fs = settings.freeswitch
    target = f"{fs.sip_host}:{fs.carrier_port}"
    per_rate: dict[str, Any] = {}
    cp_deltas: list[dict[str, Any]] = []
    for rate in args.rate_list:
        arms: dict[str, Any] = {}
        for arm in ARMS:
            runs = [r for r in got.runs if r.rate == rate and r.arm == arm]
            results = [r.sipp for r in runs]
            figures = sipp_counts(results, args.hold_ms, rate)
            figures["sipp_ms"] = {label: rtd_figures(results, rtd) for rtd, label in RTDS.items()}
            if not args.no_engine_events:
                figures["freeswitch_a_leg"] = leg_figures(legs.legs.get(f"{rate:g}/{arm}", []))
            figures["service"] = merge_service([r.service for r in runs])
            figures["leftover_channels"] = sum(r.drain["leftover_channels"] for r in runs)
            figures["rounds"] = [
                {
                    "round": r.rnd + 1,
                    **{
                        k: v
                        for k, v in sipp_counts([r.sipp], args.hold_ms, rate).items()
                        if k not in ("all_answered", "answered_share")
                    },
                    "pdd_ms": {q: rtd_figures([r.sipp], "pdd")[q] for q in ("p50", "p99")},
                    "decision_latency": decision_figures(r.service["buckets"]),
                    "cpu": r.cpu,
                    **r.drain,
                }
                for r in runs
            ]
            if arm == "control_plane":
                cp_deltas += [r.service for r in runs]
            arms[arm] = figures
        base, cp = arms["static_dialplan"], arms["control_plane"]
        added: dict[str, Any] = {}
        for label in RTDS.values():
            b, c = base["sipp_ms"][label], cp["sipp_ms"][label]
            added[f"sipp_{label}"] = {q: _diff(c[q], b[q]) for q in ("mean", "p50", "p99")}
        if not args.no_engine_events:
            for name in ("created_to_progress_ms", "created_to_answer_ms"):
                b, c = base["freeswitch_a_leg"][name], cp["freeswitch_a_leg"][name]
                added[f"freeswitch_{name.removesuffix('_ms')}"] = {
                    q: _diff(c[q], b[q]) for q in ("p50", "p99")
                }
        per_rate[f"{rate:g}"] = {
            "offered_cps": rate,
            **arms,
            "answered_share_ratio_control_plane_to_static": (
                round(cp["answered_share"] / base["answered_share"], 4)
                if base["answered_share"] and cp["answered_share"] is not None
                else None
            ),
            "added_delay_ms": added,
        }

    summary = {
        rate: {
            "answered_share": {arm: r[arm]["answered_share"] for arm in ARMS},
            "answered_share_ratio_control_plane_to_static": r["answered_share_ratio_control_plane_to_static"],
            **{
                f"pdd_{q}_ms": {
                    **{arm: r[arm]["sipp_ms"]["invite_to_first_180_or_183"][q] for arm in ARMS},
                    "added": r["added_delay_ms"]["sipp_invite_to_first_180_or_183"][q],
                }
                for q in ("p50", "p99")
            },
            "decision_ms": {
                q: r["control_plane"]["service"]["decision_latency"][f"{q}_ms"] for q in ("p50", "p99")
            },
        }
        for rate, r in per_rate.items()
    }
    max_rate = {
        arm: max((r for r in args.rate_list if per_rate[f"{r:g}"][arm]["all_answered"]), default=None)
        for arm in ARMS
    }
    return {
        "benchmark": "freeswitch_path",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "kernel": platform.release(),
            "freeswitch": got.fs_version,
        },
        "arguments": {
            "rates": args.rate_list,
            "round_s": args.round_s,
            "rounds": args.rounds,
            "hold_ms": args.hold_ms,
            "ring_ms": args.ring_ms,
            "engine_events": not args.no_engine_events,
        },
        "setup": {
            "target": f"FreeSWITCH carrier profile {target}",
            "static_dialplan": f"from {ip_of['static_dialplan']}: context static, bridge to 13800138000 "
            f"at {settings.asterisk.carrier_out_host}:{settings.asterisk.carrier_out_port}, no control plane",
            "control_plane": f"from {ip_of['control_plane']} to {ROUTED_NUMBER}: socket "
            f"{fs.socket_host}:{fs.socket_port} async full; the service decides (prepaid "
            "reservation included) and bridges to 13800138000",
            "destination": f"SIPp uas_answer.xml on {settings.asterisk.carrier_out_host}:"
            f"{settings.asterisk.carrier_out_port}: 180 at once, 200 after ring_ms",
            "caller": "a copy of sipp-scenarios/uac_inbound.xml with response timers pdd and answer",
            "order": [f"round {r.rnd + 1}: {r.key}" for r in got.runs],
        },
        "figures": FIGURES,
        "summary": summary,
        "per_rate": per_rate,
        "max_rate_all_answered": max_rate,
        "max_rate_ratio_control_plane_to_static": (
            round(max_rate["control_plane"] / max_rate["static_dialplan"], 3)
            if max_rate["control_plane"] and max_rate["static_dialplan"]
            else None
        ),
        "decision_latency_all_rates": {
            "source": "service histogram softswitch_decision_seconds, delta over the control-plane rounds",
            **merge_service(cp_deltas)["decision_latency"],
        }
        if cp_deltas
        else None,
        "freeswitch_channels_before_first_run": got.before,
        "freeswitch_channels_after_service_stopped": got.after_service_stopped,
        "freeswitch_legs_unattributed": legs.unattributed,
        "esl_reconnects_of_this_benchmark": got.esl_reconnects,
        "service_log": str(SERVICE_LOG),
    }


def _diff(a: Any, b: Any) -> float | None:
    return round(a - b, 2) if a is not None and b is not None else None


if __name__ == "__main__":
    raise SystemExit(main())
