"""FastAGI load straight at the service, no Asterisk: a load generator that plays Asterisk's
side of `AGI(agi://127.0.0.1:4573/route,<linkedid>,<number>)` at a fixed rate (open loop:
session i is due at t0 + i/rate whether or not earlier ones finished), answers every
command as Asterisk does, and measures where the engine waits:

- client decision latency (the headline): the environment's last byte written -> the
  decision command's bytes arrived (EXEC MSet / SET VARIABLE carrying SS_ACTION), the
  arrival being the kernel's receive timestamp (SO_TIMESTAMPNS), so that this process's
  own scheduling cannot inflate it (how late the loop then read it is reported apart);
- the generator's own lag, per session: due time -> connect began, and due time -> the
  environment written. A run's latency figures count ("valid": true) only if every
  session was decided and the send lag's p99 is under 1 ms; otherwise the JSON says
  why and a warning is printed;
- beside them, from the service: the softswitch_decision_seconds histogram delta
  (environment read -> variables sent) and the softswitch_event_loop_lag_seconds delta
  (how late the service's loop woke a 20 ms sleeper during the run).

With --client both (the default) bench/agi_independent.py — separate code, the stock
asyncio loop and streams, run as its own process — drives the same service too: alone at
the full rate after this generator's own phase, then both at once, interleaved at half
the rate each (one schedule on the shared CLOCK_MONOTONIC), so that whatever the service
does falls on both alike; the result says whether they agree within 20% on p50 and p99
(judged on the interleaved phase; the sequential phases' comparison is reported too).

Two cases: `no_money_path` (an unknown number: the decision alone, no database) and
`prepaid_reservation` (the demo's routed number: every session opens a durable prepaid
reservation on one account, as a real call does). For that case the demo tenant's channel
cap and balance are raised for the run (its 4-channel package would refuse all but 4:
CHANNEL_LIMIT, a cheaper path), and afterwards the run's reservations are released, its
call records deleted and the account restored.

    .venv/bin/python bench/agi_direct.py [--rate 300 --count 3000 --case both --client both]

Standalone it holds the stack lock, brings the stack up, seeds the demo data, starts the
service and writes bench/results/agi_direct.json (and the independent client's own output
to bench/results/agi_independent.json); bench/harness.py calls run() with its own service.

What was wrong with the generator before (it reported client p99 52-64 ms, and up to
190 ms inside bench/harness.py, where an independent client saw 0.5 ms):

1. Garbage collection in the generator: the process holds every module it imports
   (asyncpg, httpx, the provisioning code; far more inside the harness) plus 3000 live
   tasks and their results, so a full (generation 2) collection stopped its loop for
   17 ms measured here standalone, several times that in the harness process. Sessions
   whose reply arrived during a collection counted it as the service's latency. Now: a
   collection and gc.freeze() before the run, the collector off during it (0 collections,
   reported), results in preallocated lists instead of a task and an object per session.
2. Sessions started in bursts, by a coarse clock on the shared loop: the scheduler was a
   coroutine on the same loop as every session, sleeping with uvloop's millisecond timers
   (loop.time() itself has 1 ms resolution there); after any hiccup it created every
   overdue session at once, with no pause, so the service received them as a burst and
   queued them (a prepaid burst queues on one account row). Now a clock thread sleeps to
   each due time on CLOCK_MONOTONIC (clock_nanosleep, timer slack 1 us) and hands the
   session to the loop (call_soon_threadsafe, with a short GIL switch interval), which
   connects and writes at once; the next session's socket is made beforehand.
3. Nothing measured the generator: the latency clock started after the connect, so a late
   start was invisible and a run whose offered load was not the intended one still
   reported figures. Now the lag is measured per session and bounds the run's validity.
4. Per-session setup inside the timed span: the environment (24 formatted lines) was built
   after the clock started and each command line decoded before the time was read. Now
   every environment is built before t0, and the decision's time is the kernel's receive
   timestamp of its bytes (before: the time after a StreamReader.readline() had woken
   the session's task, so any delay of the client's loop was counted as the service's).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import json
import math
import os
import platform
import random
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
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
NO_MONEY_NUMBER = "4008000000"  # unknown: refused by the decision alone, no database
CALLER = "13800138000"
TARGET_P99_MS = {"no_money_path": 1.0, "prepaid_reservation": 2.0}  # issue 14's goals
TARGET_MAX_MS = 10.0
LAG_BOUND_P99_MS = 1.0  # the generator's send lag p99 must stay under this
AGREEMENT = 0.20  # the two clients agree if p50 and p99 differ by at most 20%
SESSION_TIMEOUT_S = 10.0
RESULTS = Path(__file__).parent / "results"
INDEPENDENT = Path(__file__).with_name("agi_independent.py")


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


def _reply(line: bytes) -> bytes:
    """Asterisk's answer to a command of the route script: SET VARIABLE returns
    "200 result=1"; EXEC MSet, ANSWER and GET VARIABLE of an unset variable "200 result=0"."""
    return b"200 result=1\n" if line.startswith(b"SET VARIABLE") else b"200 result=0\n"


_DECISION_COMMANDS = (b"EXEC MSet", b'EXEC "MSet"', b"SET VARIABLE")


def _action(line: bytes) -> str:
    rest = line.split(b"SS_ACTION=", 1)[1].decode(errors="replace")
    for sep in ('"', ",", " "):
        rest = rest.split(sep, 1)[0]
    return rest.strip() or "?"


# ---------------------------------------------------------------------------------------
# The load generator
# ---------------------------------------------------------------------------------------


SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; == SCM_TIMESTAMPNS
_CMSG_SPACE = socket.CMSG_SPACE(16)  # one struct timespec


class Generator:
    """`count` sessions due at t0 + i/rate. A clock thread sleeps to each due time and hands
    the session to the event loop, which connects, writes the environment and answers the
    commands. The decision's time
    is the kernel's receive timestamp of the bytes that carry it (SO_TIMESTAMPNS), so a
    late wake of this loop cannot inflate it; the loop's own read time is kept to show by
    how much it would have. Every per-session time in preallocated lists."""

    def __init__(
        self,
        host: str,
        port: int,
        rate: float,
        count: int,
        prefix: str,
        number: str,
        start: float | None = None,
    ) -> None:
        self.host, self.port, self.rate, self.count = host, port, rate, count
        self.start = start  # the first due time on perf_counter (default: 0.2 s after run())
        self.envs = [environment(host, port, f"{prefix}{i}", i, number) for i in range(count)]
        nan = math.nan
        self.due = [nan] * count  # perf_counter
        self.launched = [nan] * count  # perf_counter: the loop began the connect
        self.sent = [nan] * count  # perf_counter: the environment's last byte written
        self.sent_ns = [0] * count  # CLOCK_REALTIME ns, the same instant, for the kernel's stamps
        self.decided_ns = [0] * count  # kernel receive timestamp of the decision (REALTIME ns)
        self.decided = [nan] * count  # perf_counter: when this loop read it
        self.closed = [nan] * count  # perf_counter: the service's close read
        self.actions = [""] * count
        self.errors = [""] * count
        self.unstamped = 0  # decisions read without a kernel timestamp (then: read time)
        self._bufs: dict[int, bytes] = {}
        self._socks: dict[int, socket.socket] = {}
        self._spare: socket.socket | None = None
        self._finished = 0
        self._done: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def run(self) -> float:
        """Runs the schedule; returns the span from the first due time to the last close."""
        loop = self._loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        t0 = time.perf_counter() + 0.2 if self.start is None else self.start
        for i in range(self.count):
            self.due[i] = t0 + i / self.rate
        clock = threading.Thread(target=self._clock, args=(loop,), name="agi-direct-clock", daemon=True)
        clock.start()
        try:
            await asyncio.wait_for(
                asyncio.shield(self._done), self.count / self.rate + 0.2 + SESSION_TIMEOUT_S
            )
        except TimeoutError:
            for i in list(self._socks):
                self.errors[i] = self.errors[i] or "timeout"
                self._end(i)
        clock.join(1.0)
        last = max((c for c in self.closed if not math.isnan(c)), default=t0)
        return last - t0

    def _clock(self, loop: asyncio.AbstractEventLoop) -> None:
        _tight_timer_slack()
        call = loop.call_soon_threadsafe
        launch = self._launch
        perf = time.perf_counter
        for i, due in enumerate(self.due):
            while (left := due - perf()) > 0:
                time.sleep(left)
            call(launch, i)

    def _launch(self, i: int) -> None:
        """On the loop: connect and write the environment, blocking (loopback: the
        handshake completes in the kernel, before the service even accepts: tens of
        microseconds), then watch the socket. The next session's socket is made after,
        outside any session's timed span."""
        assert self._loop is not None
        self.launched[i] = time.perf_counter()
        sock, self._spare = self._spare or _new_socket(), None
        try:
            sock.connect((self.host, self.port))
            sock.sendall(self.envs[i])
            self.sent[i], self.sent_ns[i] = time.perf_counter(), time.time_ns()
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            self.errors[i] = type(exc).__name__
            self.finished_one()
        else:
            self._socks[i] = sock
            self._bufs[i] = b""
            self._loop.add_reader(sock.fileno(), self._readable, i, sock)
        if i + 1 < self.count:
            self._spare = _new_socket()

    def _readable(self, i: int, sock: socket.socket) -> None:
        now = time.perf_counter()
        try:
            data, ancillary, _, _ = sock.recvmsg(65536, _CMSG_SPACE)
        except BlockingIOError:
            return
        except OSError as exc:
            self.errors[i] = type(exc).__name__
            data, ancillary = b"", []
        if not data:
            self.closed[i] = now
            self._end(i)
            return
        *lines, self._bufs[i] = (self._bufs[i] + data).split(b"\n")
        for line in lines:
            if math.isnan(self.decided[i]) and b"SS_ACTION=" in line and line.startswith(_DECISION_COMMANDS):
                self.decided[i] = now
                self.actions[i] = _action(line)
                stamp = [
                    d for level, kind, d in ancillary if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS
                ]
                if stamp:
                    sec, nsec = struct.unpack("qq", stamp[0][:16])
                    self.decided_ns[i] = sec * 1_000_000_000 + nsec
                else:
                    self.unstamped += 1
            try:
                sock.send(_reply(line))
            except OSError as exc:
                self.errors[i] = self.errors[i] or type(exc).__name__

    def _end(self, i: int) -> None:
        sock = self._socks.pop(i, None)
        if sock is None:
            return
        assert self._loop is not None
        self._loop.remove_reader(sock.fileno())
        sock.close()
        self._bufs.pop(i, None)
        self.finished_one()

    def decision_latency(self, i: int) -> float:
        """Seconds from the environment written to the decision's arrival (kernel stamp),
        NaN if there was none."""
        if math.isnan(self.decided[i]):
            return math.nan
        if self.decided_ns[i]:
            return (self.decided_ns[i] - self.sent_ns[i]) / 1e9
        return self.decided[i] - self.sent[i]

    def finished_one(self) -> None:
        self._finished += 1
        if self._finished >= self.count and self._done is not None and not self._done.done():
            self._done.set_result(None)


def _new_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(1.0)  # for the connect and the write; then non-blocking
    return sock


def _tight_timer_slack() -> None:
    """Linux lets a sleeping thread wake up to 50 us late (timer slack); ask for 1 us."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(29, 1000, 0, 0, 0)  # PR_SET_TIMERSLACK, ns


@contextlib.contextmanager
def _quiet_runtime() -> Iterator[dict[str, int]]:
    """No garbage collection during the run (after one, and with what exists frozen out
    of later ones), and a short GIL switch interval for the clock thread."""
    gc.collect()
    gc.freeze()
    enabled = gc.isenabled()
    gc.disable()
    switch = sys.getswitchinterval()
    sys.setswitchinterval(0.0002)
    before = sum(g["collections"] for g in gc.get_stats())
    stats = {"gc_collections_during_run": 0}
    try:
        yield stats
    finally:
        stats["gc_collections_during_run"] = sum(g["collections"] for g in gc.get_stats()) - before
        sys.setswitchinterval(switch)
        if enabled:
            gc.enable()
        gc.unfreeze()


def _run_generator(gen: Generator) -> tuple[float, dict[str, int]]:
    try:
        import uvloop  # optional: the stock loop works too, a little slower
    except ImportError:  # pragma: no cover
        runner: Callable[[Any], float] = asyncio.run
    else:
        runner = uvloop.run
    with _quiet_runtime() as stats:
        span = runner(gen.run())
    return span, stats


# ---------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------


def _quantile(values: list[float], q: float) -> float | None:
    """Nearest rank."""
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def _ms(v: float | None) -> float | None:
    return round(v * 1000, 3) if v is not None else None


def _summary(values: list[float], source: str) -> dict[str, Any]:
    return {
        "source": source,
        "count": len(values),
        "p50": _ms(_quantile(values, 0.5)),
        "p99": _ms(_quantile(values, 0.99)),
        "max": _ms(max(values) if values else None),
    }


def _histogram_summary(buckets: list[tuple[float, float]], source: str) -> dict[str, Any]:
    """p50/p99 interpolated in the run's bucket deltas, and the highest bucket reached."""
    buckets = sorted(buckets)
    top: tuple[float, float] | None = None
    prev_le, prev_count = 0.0, 0.0
    for le, count in buckets:
        if count > prev_count:
            top = (prev_le, le)
        prev_le, prev_count = le, count
    return {
        "source": source,
        "count": int(buckets[-1][1]) if buckets else 0,
        "p50": _ms(histogram_quantile(0.5, buckets)),
        "p99": _ms(histogram_quantile(0.99, buckets)),
        "max_bucket_ms": [_ms(top[0]), _ms(top[1]) if top[1] != math.inf else "+Inf"] if top else None,
    }


def _agree(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and abs(a - b) <= AGREEMENT * max(abs(b), 1e-9)


def _generator_figures(gen: Generator, span: float, stats: dict[str, int]) -> dict[str, Any]:
    n = gen.count
    connect_lag = [gen.launched[i] - gen.due[i] for i in range(n) if not math.isnan(gen.launched[i])]
    send_lag = [gen.sent[i] - gen.due[i] for i in range(n) if not math.isnan(gen.sent[i])]
    latency = [gen.decision_latency(i) for i in range(n)]
    decided = [v for v in latency if not math.isnan(v)]
    read_lag = [
        gen.decided[i] - gen.sent[i] - latency[i]
        for i in range(n)
        if gen.decided_ns[i] and not math.isnan(latency[i])
    ]
    closed = [gen.closed[i] - gen.sent[i] for i in range(n) if not math.isnan(gen.closed[i] + gen.sent[i])]
    actions: dict[str, int] = {}
    for i in range(n):
        key = gen.actions[i] or (f"error:{gen.errors[i]}" if gen.errors[i] else "no_decision")
        actions[key] = actions.get(key, 0) + 1
    reasons = []
    lag_p99 = _quantile(send_lag, 0.99)
    if lag_p99 is None or lag_p99 * 1000 >= LAG_BOUND_P99_MS:
        reasons.append(
            f"generator send lag p99 {_ms(lag_p99)} ms is not under {LAG_BOUND_P99_MS} ms: "
            "the offered load was not the intended one"
        )
    if len(decided) < n:
        reasons.append(f"{n - len(decided)} of {n} sessions got no decision")
    slow = sorted((i for i in range(n) if not math.isnan(latency[i])), key=lambda i: -latency[i])
    return {
        "valid": not reasons,
        "invalid_reasons": reasons,
        "achieved_sessions_per_s": round((n - 1) / (gen.due[-1] - gen.due[0]), 1) if n > 1 else None,
        "span_s": round(span, 2),
        "outcomes": actions,
        "generator": {
            "how": "a clock thread sleeps to each due time (clock_nanosleep, 1 us timer slack) and "
            "hands the session to the uvloop loop (call_soon_threadsafe), which connects and writes; "
            "the decision's time is the kernel's receive timestamp (SO_TIMESTAMPNS); GC off "
            "and frozen during the run",
            "connect_lag_ms": _summary(connect_lag, "due time (t0 + i/rate) -> the session's connect began"),
            "send_lag_ms": _summary(send_lag, "due time -> the environment's last byte written"),
            "lag_bound_p99_ms": LAG_BOUND_P99_MS,
            "read_lag_ms": _summary(
                read_lag, "the decision's arrival (kernel stamp) -> this loop read it (not in the latency)"
            ),
            "decisions_without_kernel_stamp": gen.unstamped,
            **stats,
        },
        "decision_latency_ms_client": _summary(
            decided,
            "client: environment's last byte written -> the bytes of EXEC MSet with SS_ACTION "
            "arrived (kernel receive timestamp)",
        ),
        "session_ms_client": _summary(closed, "client: environment written -> service's close read"),
        "slowest_sessions": [
            {
                "session": i,
                "due_s": round(gen.due[i] - gen.due[0], 4),
                "ms": _ms(latency[i]),
                "send_lag_ms": _ms(gen.sent[i] - gen.due[i]),
            }
            for i in slow[:10]
        ],
    }


# ---------------------------------------------------------------------------------------
# Against the service
# ---------------------------------------------------------------------------------------


class _ServiceWindow:
    """The service's histograms and CPU over one phase."""

    def __init__(self, service: ServiceProcess) -> None:
        self.service = service

    def __enter__(self) -> _ServiceWindow:
        self.decision0 = self.service.histogram("softswitch_decision_seconds")
        self.lag0 = self.service.histogram("softswitch_event_loop_lag_seconds")
        self.cpu0 = _cpu_seconds(self.service)
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu1 = _cpu_seconds(self.service)
        self.decision1 = self.service.histogram("softswitch_decision_seconds")
        self.lag1 = self.service.histogram("softswitch_event_loop_lag_seconds")
        self.lag_max_gauge = self.service.metric("softswitch_event_loop_lag_max_seconds")

    def figures(self, count: int) -> dict[str, Any]:
        decision = bucket_delta(self.decision0, self.decision1)
        lag = bucket_delta(self.lag0, self.lag1)
        return {
            "decision_latency_ms_service": _histogram_summary(
                decision, "service histogram softswitch_decision_seconds (run delta, interpolated)"
            ),
            "event_loop_lag_ms_service": {
                **_histogram_summary(
                    lag, "service histogram softswitch_event_loop_lag_seconds (run delta, interpolated)"
                ),
                "max_gauge_after_run_ms": _ms(self.lag_max_gauge) if lag else None,
            },
            "service_cpu_seconds_per_1000_sessions": (
                round((self.cpu1 - self.cpu0) / count * 1000, 3)
                if self.cpu0 is not None and self.cpu1 is not None
                else None
            ),
        }


def _direct_phase(
    service: ServiceProcess, settings: Settings, rate: float, count: int, prefix: str, number: str
) -> dict[str, Any]:
    gen = Generator(settings.agi.host, settings.agi.port, rate, count, prefix, number)
    started = datetime.now(UTC).isoformat(timespec="milliseconds")
    with _ServiceWindow(service) as window:
        span, stats = _run_generator(gen)
    out = {
        "client": "bench/agi_direct.py",
        "started_utc": started,
        **_generator_figures(gen, span, stats),
        **window.figures(count),
    }
    _warn_if_invalid("agi_direct", out)
    return out


def _independent_phase(
    service: ServiceProcess, settings: Settings, rate: float, count: int, prefix: str, number: str
) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(INDEPENDENT),
        *("--host", settings.agi.host, "--port", str(settings.agi.port)),
        *("--rate", str(rate), "--count", str(count), "--number", number, "--prefix", prefix),
    ]
    started = datetime.now(UTC).isoformat(timespec="milliseconds")
    with _ServiceWindow(service) as window:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=count / rate + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"agi_independent failed ({done.returncode}): {done.stderr[-2000:]}")
    out: dict[str, Any] = {"started_utc": started, **json.loads(done.stdout), **window.figures(count)}
    return out


def _interleaved_phase(
    service: ServiceProcess, settings: Settings, rate: float, count: int, prefix: str, number: str
) -> dict[str, Any]:
    """Both clients at once, each at half the rate, their sessions alternating on one
    schedule (CLOCK_MONOTONIC is shared by every process): the service sees the full rate,
    and whatever it does (a stall, a slow commit) falls on both clients alike."""
    half = count // 2
    start = time.perf_counter() + 1.5  # the independent process is up and built its sessions
    cmd = [
        sys.executable,
        str(INDEPENDENT),
        *("--host", settings.agi.host, "--port", str(settings.agi.port)),
        *("--rate", str(rate / 2), "--count", str(half), "--number", number, "--prefix", f"{prefix}i-"),
        *("--start", repr(start + 1 / rate)),
    ]
    gen = Generator(settings.agi.host, settings.agi.port, rate / 2, half, f"{prefix}d-", number, start=start)
    started = datetime.now(UTC).isoformat(timespec="milliseconds")
    with _ServiceWindow(service) as window:
        other = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        span, stats = _run_generator(gen)
        stdout, stderr = other.communicate(timeout=half / rate * 2 + 60)
    if other.returncode != 0:
        raise RuntimeError(f"agi_independent failed ({other.returncode}): {stderr[-2000:]}")
    direct = {"client": "bench/agi_direct.py", **_generator_figures(gen, span, stats)}
    _warn_if_invalid("agi_direct (interleaved)", direct)
    independent = json.loads(stdout)
    d, i = direct["decision_latency_ms_client"], independent["decision_latency_ms"]
    return {
        "how": f"both clients at once, {rate / 2:g} sessions/s each, alternating: {rate:g}/s offered",
        "started_utc": started,
        "clients_agree_within_20pct": _agree(d["p50"], i["p50"]) and _agree(d["p99"], i["p99"]),
        "agreement": _agreement(d, i),
        "direct": direct,
        "independent": independent,
        **window.figures(2 * half),
    }


def _agreement(d: dict[str, Any], i: dict[str, Any]) -> dict[str, Any]:
    return {
        "rule": "|direct - independent| <= 20% of independent, for p50 and for p99",
        "p50_ms": {"direct": d["p50"], "independent": i["p50"], "agree": _agree(d["p50"], i["p50"])},
        "p99_ms": {"direct": d["p99"], "independent": i["p99"], "agree": _agree(d["p99"], i["p99"])},
        "max_ms": {"direct": d["max"], "independent": i["max"]},
    }


def _warn_if_invalid(who: str, result: dict[str, Any]) -> None:
    if not result["valid"]:
        print(
            f"WARNING: {who}: latency figures NOT valid: {'; '.join(result['invalid_reasons'])}",
            file=sys.stderr,
            flush=True,
        )


def _header(rate: float, count: int, number: str, money: bool) -> dict[str, Any]:
    return {
        "benchmark": "agi_direct",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "number": number,
        "path": "routed: durable prepaid reservation in PostgreSQL" if money else "no money path",
        "offered_sessions_per_s": rate,
        "sessions": count,
    }


def run(
    service: ServiceProcess,
    settings: Settings,
    rate: float = 300.0,
    count: int = 3000,
    number: str = DEMO_NUMBER,
) -> dict[str, Any]:
    """This generator alone against the running service; returns the result as a dict.
    With another `number` than the demo's (e.g. an unknown one: a pure decision, no
    database), the account is left alone."""
    money = number == DEMO_NUMBER
    direct, cleanup = _with_account(
        settings, money, count, lambda prefix: _direct_phase(service, settings, rate, count, prefix, number)
    )
    target = TARGET_P99_MS["prepaid_reservation" if money else "no_money_path"]
    client = direct["decision_latency_ms_client"]
    return {
        **_header(rate, count, number, money),
        **direct,
        "target_p99_ms": target,
        "target_max_ms": TARGET_MAX_MS,
        "meets_target_client": direct["valid"]
        and client["p99"] is not None
        and client["p99"] <= target
        and client["max"] <= TARGET_MAX_MS,
        "cleanup": cleanup,
    }


def compare(
    service: ServiceProcess,
    settings: Settings,
    rate: float = 300.0,
    count: int = 3000,
    number: str = DEMO_NUMBER,
    pause_s: float = 3.0,
) -> dict[str, Any]:
    """Against the same service, in one run: this generator alone at the full rate, then
    bench/agi_independent.py (its own process) alone at the full rate, then both at once,
    interleaved at half the rate each. Whether the clients agree within 20% is judged on
    the interleaved phase, where both see the same service; the sequential phases are
    compared too, but a stall of the service falls into one of them, not both."""
    money = number == DEMO_NUMBER
    cleanup = {}
    # Each phase gets its own account room and cleanup: left open, one phase's
    # reservations would be released by the service's audit (after its 10 s grace) during
    # the next, on the same account row, and the phases would not see one load.
    direct, cleanup["direct"] = _with_account(
        settings, money, count, lambda prefix: _direct_phase(service, settings, rate, count, prefix, number)
    )
    time.sleep(pause_s)
    independent, cleanup["independent"] = _with_account(
        settings,
        money,
        count,
        lambda prefix: _independent_phase(service, settings, rate, count, prefix, number),
    )
    time.sleep(pause_s)
    both, cleanup["interleaved"] = _with_account(
        settings,
        money,
        count,
        lambda prefix: _interleaved_phase(service, settings, rate, count, prefix, number),
    )
    d, i = direct["decision_latency_ms_client"], independent["decision_latency_ms"]
    target = TARGET_P99_MS["prepaid_reservation" if money else "no_money_path"]
    valid = direct["valid"] and both["direct"]["valid"]
    return {
        **_header(rate, count, number, money),
        "valid": valid,
        "clients_agree_within_20pct": both["clients_agree_within_20pct"],
        "agreement": both["agreement"],
        "sequential_agreement": {
            "agree_within_20pct": _agree(d["p50"], i["p50"]) and _agree(d["p99"], i["p99"]),
            **_agreement(d, i),
        },
        "target_p99_ms": target,
        "target_max_ms": TARGET_MAX_MS,
        "meets_target_client": bool(
            valid
            and d["p99"] is not None
            and d["p99"] <= target
            and d["max"] <= TARGET_MAX_MS
            and i["p99"] is not None
            and i["p99"] <= target
            and i["max"] <= TARGET_MAX_MS
        ),
        "direct": direct,
        "independent": independent,
        "interleaved": both,
        "cleanup": cleanup,
    }


def _with_account(
    settings: Settings, money: bool, count: int, phase: Callable[[str], dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, int]]:
    """Runs `phase(linkedid_prefix)` with room on the demo account (if `money`), then
    releases and deletes what the phase left."""
    run_id = f"{random.getrandbits(32):08x}"
    saved = asyncio.run(_prepare(settings, count)) if money else None
    try:
        result = phase(f"agidirect-{run_id}-")
    finally:
        cleanup = asyncio.run(_restore(settings, saved, run_id))
    return result, cleanup


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


CASES = {"no_money_path": NO_MONEY_NUMBER, "prepaid_reservation": DEMO_NUMBER}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=300.0, help="sessions per second offered")
    ap.add_argument("--count", type=int, default=3000, help="sessions per client and case")
    ap.add_argument("--case", choices=["both", *CASES], default="both")
    ap.add_argument("--client", choices=["both", "direct"], default="both")
    ap.add_argument("--out", type=Path, default=RESULTS / "agi_direct.json")
    ap.add_argument("--independent-out", type=Path, default=RESULTS / "agi_independent.json")
    args = ap.parse_args()

    from scripts.devstack.demo import seed
    from scripts.devstack.stack import LocalStack, exclusive_use

    settings = Settings()
    cases = list(CASES) if args.case == "both" else [args.case]
    results: dict[str, Any] = {}
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
            time.sleep(2.0)  # the service's start-up work (snapshot, first audit) is done
            for case in cases:
                print(f"agi_direct: {case} ...", file=sys.stderr, flush=True)
                if args.client == "both":
                    results[case] = compare(service, settings, args.rate, args.count, CASES[case])
                else:
                    results[case] = run(service, settings, args.rate, args.count, CASES[case])
                time.sleep(2.0)
        finally:
            service.stop()
    out = {
        "benchmark": "agi_direct",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "valid": all(r["valid"] for r in results.values()),
        "clients_agree_within_20pct": (
            all(r["clients_agree_within_20pct"] for r in results.values()) if args.client == "both" else None
        ),
        "cases": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    if args.client == "both":
        independent = {
            case: {"alone": r["independent"], "interleaved": r["interleaved"]["independent"]}
            for case, r in results.items()
        }
        args.independent_out.write_text(json.dumps(independent, indent=2) + "\n")
    print(json.dumps(_brief(out), indent=2))
    for case, r in results.items():
        if not r["valid"]:
            print(f"WARNING: {case}: this run's latency figures are NOT valid", file=sys.stderr)
    return 0


def _brief(out: dict[str, Any]) -> dict[str, Any]:
    """The figures that matter, per case, for the terminal."""
    brief: dict[str, Any] = {
        "valid": out["valid"],
        "clients_agree_within_20pct": out["clients_agree_within_20pct"],
    }
    for case, r in out["cases"].items():
        d = r.get("direct", r)
        row = {
            "generator_send_lag_ms": {k: d["generator"]["send_lag_ms"][k] for k in ("p50", "p99", "max")},
            "client_direct_ms": {k: d["decision_latency_ms_client"][k] for k in ("p50", "p99", "max")},
            "service_histogram_ms": {k: d["decision_latency_ms_service"][k] for k in ("p50", "p99")},
            "service_loop_lag_ms": {
                "p99": d["event_loop_lag_ms_service"]["p99"],
                "max_bucket": d["event_loop_lag_ms_service"]["max_bucket_ms"],
            },
        }
        if "independent" in r:
            ind = r["independent"]
            row["client_independent_ms"] = {k: ind["decision_latency_ms"][k] for k in ("p50", "p99", "max")}
            row["independent_send_lag_ms"] = {k: ind["send_lag_ms"][k] for k in ("p50", "p99", "max")}
            row["independent_service_loop_lag_ms"] = {
                "p99": ind["event_loop_lag_ms_service"]["p99"],
                "max_bucket": ind["event_loop_lag_ms_service"]["max_bucket_ms"],
            }
            row["interleaved_client_ms"] = {
                who: {k: v[k] for k in ("p50", "p99", "max")}
                for who, v in (
                    ("direct", r["interleaved"]["direct"]["decision_latency_ms_client"]),
                    ("independent", r["interleaved"]["independent"]["decision_latency_ms"]),
                )
            }
            row["agree_interleaved"] = r["clients_agree_within_20pct"]
            row["agree_sequential"] = r["sequential_agreement"]["agree_within_20pct"]
        brief[case] = row
    return brief


if __name__ == "__main__":
    raise SystemExit(main())
