"""The e2e harness's own tools, without the stack: a metric read from /metrics fails when
its family is gone (a renamed metric never reads as 0.0); each call of a SIPp trace by
its Call-ID (what it heard, and when); the stack lock is shared by
api/db tests, exclusive for e2e sessions, benchmarks and stack commands, and reentrant
within one process."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from scripts.devstack.process import MetricAbsent, metric_family, sample_value
from scripts.devstack.sipp import SippResult, trace_calls
from scripts.devstack.stack import exclusive_use, shared_use
from softswitch.core.settings import Settings, StackSettings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def exposition() -> str:
    r = CollectorRegistry()
    Counter("softswitch_c", "a counter", ["reason"], registry=r).labels("ROUTED").inc(3)
    Counter("softswitch_plain", "no labels", registry=r)
    Gauge("softswitch_g", "a gauge", ["tenant"], registry=r)  # no sample yet
    Gauge("softswitch_generation", "a gauge", registry=r).set(7)
    Histogram("softswitch_h_seconds", "a histogram", registry=r).observe(0.02)
    return generate_latest(r).decode()


def test_a_present_sample_is_read(exposition: str) -> None:
    assert sample_value(exposition, "softswitch_c_total", {"reason": "ROUTED"}) == 3.0
    assert sample_value(exposition, "softswitch_generation", {}) == 7.0
    assert sample_value(exposition, "softswitch_plain_total", {}) == 0.0
    assert sample_value(exposition, "softswitch_h_seconds_count", {}) == 1.0


def test_labels_not_seen_yet_of_an_exported_family_read_zero(exposition: str) -> None:
    assert sample_value(exposition, "softswitch_c_total", {"reason": "CHANNEL_LIMIT"}) == 0.0
    assert sample_value(exposition, "softswitch_g", {"tenant": "1"}) == 0.0


@pytest.mark.parametrize(
    "name",
    [
        "softswitch_gone_total",  # never exported
        "softswitch_c",  # a counter is read by its sample name, _total
        "softswitch_generation_total",  # a gauge has no _total
        "softswitch_h_seconds_total",
        "softswitch_c_total_bucket",
    ],
)
def test_an_absent_family_raises(exposition: str, name: str) -> None:
    with pytest.raises(MetricAbsent, match=name):
        sample_value(exposition, name, {})


def test_families_of_suffixed_samples() -> None:
    openmetrics = "# TYPE softswitch_x counter\nsoftswitch_x_total 1\n# TYPE softswitch_h histogram\n"
    assert metric_family(openmetrics, "softswitch_x_total") == "softswitch_x"
    assert metric_family(openmetrics, "softswitch_h_bucket") == "softswitch_h"
    assert metric_family(openmetrics, "softswitch_h_sum") == "softswitch_h"
    assert metric_family(openmetrics, "softswitch_x_bucket") is None


# ------------------------------------------------------------------ the stack lock
PROBE = """
import fcntl, sys
fh = open(sys.argv[1], "a+")
mode = fcntl.LOCK_EX if sys.argv[2] == "ex" else fcntl.LOCK_SH
try:
    fcntl.flock(fh, mode | fcntl.LOCK_NB)
except BlockingIOError:
    print("busy")
else:
    print("got")
"""


HOLDER = """
import sys
from pathlib import Path
from scripts.devstack.stack import exclusive_use
from tests.unit.test_devstack_harness import _lock_settings
with exclusive_use(_lock_settings(Path(sys.argv[1]))):
    print("held", flush=True)
    sys.stdin.readline()
"""


def _lock_settings(tmp_path: Path) -> Settings:
    return Settings().model_copy(update={"stack": StackSettings(dir=tmp_path)})


def _another_process_gets(tmp_path: Path, mode: str) -> bool:
    """Whether another process would get the stack lock in `mode` ("ex" or "sh") now."""
    lock = tmp_path / "run" / "exclusive.lock"
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(lock), mode], capture_output=True, text=True, check=True, timeout=10
    )
    return out.stdout.strip() == "got"


def test_shared_users_share_and_keep_an_exclusive_one_out(tmp_path: Path) -> None:
    s = _lock_settings(tmp_path)
    with shared_use(s):
        assert _another_process_gets(tmp_path, "sh")
        assert not _another_process_gets(tmp_path, "ex")
    assert _another_process_gets(tmp_path, "ex")


def test_the_lock_is_reentrant_within_a_process(tmp_path: Path) -> None:
    """An e2e session (exclusive) runs its own api/db fixtures (shared) without waiting on
    itself, in either order; the outer hold's mode comes back when the inner one ends."""
    s = _lock_settings(tmp_path)
    with exclusive_use(s):
        with shared_use(s), exclusive_use(s):
            assert not _another_process_gets(tmp_path, "sh")
        assert not _another_process_gets(tmp_path, "sh")
        assert "pid " in (tmp_path / "run" / "exclusive.lock").read_text()
    with shared_use(s):
        with exclusive_use(s):
            assert not _another_process_gets(tmp_path, "sh")
        assert _another_process_gets(tmp_path, "sh") and not _another_process_gets(tmp_path, "ex")
    assert _another_process_gets(tmp_path, "ex")
    assert (tmp_path / "run" / "exclusive.lock").read_text() == ""  # no stale holder named


def test_an_exclusive_holder_elsewhere_keeps_shared_users_waiting(tmp_path: Path) -> None:
    """A benchmark restarting PostgreSQL under the lock keeps another process's db tests out."""
    s = _lock_settings(tmp_path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            HOLDER,
            str(tmp_path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        got = threading.Event()

        def db_tests() -> None:
            with shared_use(s):
                got.set()

        waiter = threading.Thread(target=db_tests, daemon=True)
        waiter.start()
        assert not got.wait(0.5), "a shared user got in while another process held the stack exclusively"
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert got.wait(10), "the shared user did not get the stack once it was released"
        waiter.join(5)
    finally:
        holder.kill()
        holder.wait(5)


# ------------------------------------------------------------------ SIPp's message trace
def _msg(at: str, direction: str, first: str, call_id: str, cseq: str) -> str:
    head = "UDP message sent (300 bytes):" if direction == "sent" else "UDP message received [300] bytes :"
    return (
        f"----------------------------------------------- 2026-12-03 12:00:{at}\n{head}\n\n"
        f"{first}\nVia: SIP/2.0/UDP 127.0.0.2:5061\nCall-ID: {call_id}\nCSeq: {cseq}\nContent-Length: 0\n\n"
    )


TRACE = "".join(
    [
        _msg("01.000000", "sent", "INVITE sip:4001@127.0.0.1 SIP/2.0", "1-9@h", "1 INVITE"),
        _msg("01.100000", "sent", "INVITE sip:4001@127.0.0.1 SIP/2.0", "2-9@h", "1 INVITE"),
        _msg("01.400000", "sent", "INVITE sip:4001@127.0.0.1 SIP/2.0", "1-9@h", "1 INVITE"),  # again
        _msg("01.150000", "received", "SIP/2.0 100 Trying", "2-9@h", "1 INVITE"),
        _msg("01.250000", "received", "SIP/2.0 486 Busy Here", "2-9@h", "1 INVITE"),
        _msg("01.250500", "sent", "ACK sip:4001@127.0.0.1 SIP/2.0", "2-9@h", "1 ACK"),
        _msg("01.500000", "received", "SIP/2.0 180 Ringing", "1-9@h", "1 INVITE"),
        _msg("02.000000", "received", "SIP/2.0 200 OK", "1-9@h", "1 INVITE"),
        _msg("05.000000", "sent", "BYE sip:4001@127.0.0.1 SIP/2.0", "1-9@h", "2 BYE"),
        _msg("05.010000", "received", "SIP/2.0 200 OK", "1-9@h", "2 BYE"),  # not the INVITE's
    ]
).replace("Call-ID: 2-9@h", "i: 2-9@h")  # the compact form


def test_each_call_of_a_trace_by_call_id() -> None:
    calls = SippResult(0, 4.0, message_log=TRACE).calls
    assert list(calls) == ["1-9@h", "2-9@h"]
    answered, busy = calls["1-9@h"], calls["2-9@h"]
    assert (answered.statuses, answered.final_status) == ([180, 200], 200)
    assert answered.final_after_s == pytest.approx(1.0)  # from the first INVITE, not the resent one
    assert answered.received_requests == ()  # its own BYE is not the network's
    assert (busy.statuses, busy.final_status, busy.final_after_s) == ([100, 486], 486, pytest.approx(0.15))


def test_a_bye_from_the_network_belongs_to_its_call() -> None:
    bye = _msg("04.000000", "received", "BYE sip:13800138000@127.0.0.2:5061 SIP/2.0", "1-9@h", "102 BYE")
    calls = trace_calls(TRACE + bye)
    assert calls["1-9@h"].received_requests == ("BYE",)
    assert calls["2-9@h"].received_requests == ()
