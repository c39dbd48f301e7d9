"""Runs SIPp against the local stack: the demo, the end-to-end tests and the benchmarks
place real calls through this one module. Every run is bounded in calls and time, and
every background SIPp is stopped by the PID it was started with."""

from __future__ import annotations

import csv
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from scripts.devstack.dtmf_pcap import digit_pcaps

SCENARIOS = Path(__file__).resolve().parents[2] / "sipp-scenarios"
_STATUS = re.compile(r"^SIP/2\.0 (\d{3}) ", re.M)
_RECEIVED = re.compile(r"UDP message received \[\d+\] bytes :\s*\n\s*\n(SIP/2\.0 (\d{3})[^\n]*)")
_RECEIVED_REQUEST = re.compile(r"message received \[\d+\] bytes :\s*\n\s*\n([A-Z]+) (\S+) SIP/2\.0", re.M)


# One message of SIPp's -trace_msg file: its separator line carries the local time.
_TRACE_MESSAGE = re.compile(
    r"^-{20,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\n"
    r"\S+ message (sent|received)[^\n]*\n\s*\n(.*?)(?=^-{20,} \d{4}-|\Z)",
    re.M | re.S,
)
_HEADER = re.compile(r"^(call-id|i|cseq)\s*:\s*(.+?)\s*$", re.M | re.I)


@dataclass(frozen=True)
class SippCall:
    """One call of a SIPp run, as its message trace shows it from the caller's side."""

    call_id: str
    invited_at: float  # epoch seconds of the first INVITE sent
    responses: tuple[tuple[float, int], ...]  # (when, status) of each response to the INVITE
    received_requests: tuple[str, ...]  # methods the far end sent (BYE: it hung up)

    @property
    def statuses(self) -> list[int]:
        return [status for _, status in self.responses]

    @property
    def final_status(self) -> int | None:
        return next((status for _, status in self.responses if status >= 200), None)

    @property
    def final_after_s(self) -> float | None:
        """Seconds from the first INVITE to the first final response."""
        return next((at - self.invited_at for at, status in self.responses if status >= 200), None)


def trace_calls(message_log: str) -> dict[str, SippCall]:
    """The calls of a -trace_msg file by Call-ID, in the order they were placed."""
    invited: dict[str, float] = {}
    responses: dict[str, list[tuple[float, int]]] = {}
    requests: dict[str, list[str]] = {}
    for m in _TRACE_MESSAGE.finditer(message_log):
        at = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        direction, message = m.group(2), m.group(3)
        headers = {k.lower(): v for k, v in _HEADER.findall(message)}
        call_id = headers.get("call-id") or headers.get("i")
        if call_id is None:
            continue
        cseq_method = headers.get("cseq", "").split()[-1:] or [""]
        first = message.split("\n", 1)[0]
        status = _STATUS.match(first)
        if direction == "sent" and first.startswith("INVITE "):
            invited.setdefault(call_id, at)
        elif direction == "received" and status and cseq_method[0] == "INVITE":
            responses.setdefault(call_id, []).append((at, int(status.group(1))))
        elif direction == "received" and not status:
            requests.setdefault(call_id, []).append(first.split(" ", 1)[0])
    return {
        cid: SippCall(cid, at, tuple(responses.get(cid, ())), tuple(requests.get(cid, ())))
        for cid, at in invited.items()
    }


@dataclass
class SippResult:
    returncode: int
    seconds: float
    statuses: list[int] = field(default_factory=list)
    message_log: str = ""
    stats: dict[str, str] = field(default_factory=dict)

    @property
    def received_requests(self) -> list[str]:
        """The methods of the requests this SIPp received (not the ones it sent), in order:
        "BYE" here means the far end hung up."""
        return [m.group(1) for m in _RECEIVED_REQUEST.finditer(self.message_log)]

    @property
    def final_status(self) -> int | None:
        finals = [s for s in self.statuses if s >= 200]
        return finals[-1] if finals else None

    @property
    def calls(self) -> dict[str, SippCall]:
        """Each call of the run by Call-ID (the trace is on for runs of up to 20 calls, or
        with trace=True)."""
        return trace_calls(self.message_log)


def _read_stats(path: Path) -> dict[str, str]:
    """The last row of SIPp's -trace_stat CSV (cumulative counters), as a dict."""
    if not path.exists():
        return {}
    rows = list(csv.reader(path.read_text().splitlines(), delimiter=";"))
    if len(rows) < 2:
        return {}
    return dict(zip(rows[0], rows[-1], strict=False))


def _run(
    scenario: str,
    local_ip: str,
    target: str,
    args: list[str],
    *,
    calls: int = 1,
    timeout_s: float = 60.0,
    trace: bool | None = None,
) -> SippResult:
    """Run one bounded SIPp client (`calls` calls, at most timeout_s) and read its traces
    (the message trace of every call when `trace`; by default for up to 20 calls)."""
    with tempfile.TemporaryDirectory(prefix="sipp-") as tmp:
        msg_file = Path(tmp) / "messages.log"
        stat_file = Path(tmp) / "stats.csv"
        cmd = [
            "sipp",
            "-sf",
            str(SCENARIOS / scenario),
            "-i",
            local_ip,
            *args,
            "-m",
            str(calls),
            "-nostdin",
            "-timeout",
            f"{int(timeout_s)}s",
            "-timeout_error",
            "-trace_stat",
            "-stf",
            str(stat_file),
            "-fd",
            "1",
        ]
        if trace or (trace is None and calls <= 20):  # a load run's would cost more than its calls
            cmd += ["-trace_msg", "-message_file", str(msg_file)]
        cmd.append(target)
        started = time.monotonic()
        proc = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=timeout_s + 15,
            check=False,
            cwd=tmp,
        )
        seconds = time.monotonic() - started
        log = msg_file.read_text(errors="replace") if msg_file.exists() else ""
        statuses = [int(m.group(2)) for m in _RECEIVED.finditer(log)]
        return SippResult(proc.returncode, seconds, statuses, log, _read_stats(stat_file))


def render_dtmf(digits: str, hold_ms: int = 3000, gap_ms: int = 450, pcap_dir: Path | None = None) -> str:
    """uac_dtmf.xml with the digits rendered in: SIPp substitutes no keywords inside
    play_pcap_audio, so each digit becomes its own <exec> of a telephone-event pcap made
    for this call (scripts.devstack.dtmf_pcap: sequence numbers that keep increasing). A ','
    is a pause of 2.5 s, as dialers write it; a 'w' one of 0.5 s (Asterisk's SendDTMF)."""
    keys = [d for d in digits if d not in ",w"]
    pcaps = iter(digit_pcaps("".join(keys), pcap_dir or Path(tempfile.mkdtemp(prefix="dtmf-")), gap_ms))
    lines = []
    for d in digits:
        if d == ",":  # the far end is speaking, not listening
            lines.append('  <pause milliseconds="2500"/>')
            continue
        if d == "w":  # the far end answers at once (a step with no prompt to wait out)
            lines.append('  <pause milliseconds="500"/>')
            continue
        lines.append(f'  <nop><action><exec play_pcap_audio="{next(pcaps)}"/></action></nop>')
        lines.append(f'  <pause milliseconds="{gap_ms}"/>')
    text = (SCENARIOS / "uac_dtmf.xml").read_text()
    return text.replace("@@DTMF@@", "\n".join(lines)).replace("@@HOLD_MS@@", str(hold_ms))


def run_uac(
    called: str,
    caller: str = "13800138000",
    *,
    scenario: str = "uac_inbound.xml",
    hold_ms: int = 500,
    local_ip: str = "127.0.0.2",
    target: str = "127.0.0.1:5060",
    calls: int = 1,
    rate: float | None = None,
    limit: int | None = None,
    timeout_s: float = 60.0,
    extra: tuple[str, ...] = (),
    dtmf: str | None = None,
    dtmf_gap_ms: int = 450,
    trace: bool | None = None,
) -> SippResult:
    """Place `calls` calls to `called` and wait for SIPp to finish (bounded by timeout_s).
    With `dtmf`, the caller keys those digits (RFC 2833) once the call is answered, then
    waits up to hold_ms for the far end to hang up before hanging up itself. `trace` keeps
    the message trace of a run of more than 20 calls (SippResult.calls)."""
    args = ["-s", called, "-key", "caller", caller, "-d", str(hold_ms)]
    if dtmf is not None:
        with tempfile.TemporaryDirectory(prefix="sipp-dtmf-") as tmp:
            scenario_file = Path(tmp) / "dtmf.xml"
            scenario_file.write_text(render_dtmf(dtmf, hold_ms, dtmf_gap_ms, Path(tmp)))
            return run_uac(
                called,
                caller,
                scenario=str(scenario_file),
                hold_ms=hold_ms,
                local_ip=local_ip,
                target=target,
                calls=calls,
                rate=rate,
                limit=limit,
                timeout_s=timeout_s,
                extra=extra,
                trace=trace,
            )
    if rate is not None:
        args += ["-r", str(rate)]
    if limit is not None:
        args += ["-l", str(limit)]
    return _run(scenario, local_ip, target, [*args, *extra], calls=calls, timeout_s=timeout_s, trace=trace)


def run_register(
    username: str,
    password: str,
    *,
    scenario: str = "uac_register.xml",
    local_ip: str = "127.0.0.5",
    target: str = "127.0.0.1:5060",
    timeout_s: float = 10.0,
    extra: tuple[str, ...] = (),
) -> SippResult:
    """REGISTER `username` (an extension's endpoint_id) with digest auth, once. The result's
    final_status is 200 when Asterisk accepted the credentials, 401/403/404 when not."""
    args = ["-s", username, "-au", username, "-ap", password]
    return _run(scenario, local_ip, target, [*args, *extra], timeout_s=timeout_s)


def phone_args(
    endpoint_id: str, password: str, answers_with: str | Path, target: str, message_file: Path | None = None
) -> tuple[str, ...]:
    """SippUas flags for a SIP phone: REGISTER as the extension `endpoint_id` (digest
    auth, once) to `target`, then answer calls to it with the out-of-call scenario
    `answers_with`; `message_file` traces its messages."""
    trace = ("-trace_msg", "-message_file", str(message_file)) if message_file is not None else ()
    return (
        "-oocsf",
        str(answers_with),
        *("-s", endpoint_id, "-au", endpoint_id, "-ap", password, "-m", "1"),
        *trace,
        target,
    )


class SippUas:
    """A background SIPp answering as the bound destinations' carrier."""

    def __init__(
        self,
        scenario: str = "uas_answer.xml",
        *,
        local_ip: str = "127.0.0.3",
        port: int = 5060,
        ring_ms: int = 200,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.cmd = [
            "sipp",
            "-sf",
            str(SCENARIOS / scenario),
            "-i",
            local_ip,
            "-p",
            str(port),
            "-d",
            str(ring_ms),
            "-nostdin",
            *extra,
        ]
        self.proc: subprocess.Popen[bytes] | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="sipp-uas-")

    def start(self) -> SippUas:
        err = Path(self._tmp.name) / "stderr.log"
        with open(err, "wb") as stderr:
            self.proc = subprocess.Popen(
                self.cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                cwd=self._tmp.name,
                start_new_session=True,
            )
        # ready once its SIP socket is bound (at most 0.3 s, as a fixed wait was)
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline and self.proc.poll() is None and not self._bound():
            time.sleep(0.01)
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"SIPp exited at start ({self.proc.returncode}): {' '.join(self.cmd)}\n"
                + err.read_text(errors="replace")[-2000:]
            )
        return self

    def _bound(self) -> bool:
        """Whether this SIPp holds a UDP socket on its address and port (Linux's /proc)."""
        assert self.proc is not None
        host, port = self.cmd[self.cmd.index("-i") + 1], int(self.cmd[self.cmd.index("-p") + 1])
        local = f"{socket.inet_aton(host)[::-1].hex().upper()}:{port:04X}"
        try:
            with open("/proc/net/udp") as f:
                inodes = {row[9] for row in (line.split() for line in f.readlines()[1:]) if row[1] == local}
            fds = Path(f"/proc/{self.proc.pid}/fd")
            return any(os.readlink(fd) in {f"socket:[{i}]" for i in inodes} for fd in fds.iterdir())
        except OSError:  # the process is gone, or /proc is not Linux's
            return False

    def stop(self) -> None:
        self.pause()
        self._tmp.cleanup()

    def pause(self) -> None:
        """Stop the process only: ``start()`` runs it again."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)

    def __enter__(self) -> SippUas:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
