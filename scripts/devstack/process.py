"""`softswitch serve` as a child process, as an operator runs it: started, checked for
readiness, read through its HTTP endpoints, and stopped by its PID. Used by the end-to-end
tests and the benchmarks."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from softswitch.core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
_TYPE_LINE = re.compile(r"^# TYPE (\S+) (\S+)$", re.M)
# A sample name's suffix and the family types it belongs to (Prometheus text format 0.0.4
# names a counter's family with its _total; OpenMetrics without it).
_SUFFIXES = (
    ("_total", {"counter"}),
    ("_bucket", {"histogram"}),
    ("_count", {"histogram", "summary"}),
    ("_sum", {"histogram", "summary"}),
    ("_created", {"counter", "histogram", "summary"}),
)


class MetricAbsent(LookupError):
    """The service's /metrics has no family of that name."""


def metric_family(exposition: str, name: str) -> str | None:
    """The family (its `# TYPE` line's name) a sample name belongs to, or None."""
    families = {m.group(1): m.group(2) for m in _TYPE_LINE.finditer(exposition)}
    if name in families:
        return name
    for suffix, kinds in _SUFFIXES:
        base = name.removesuffix(suffix)
        if base != name and families.get(base) in kinds:
            return base
    return None


def sample_value(exposition: str, name: str, labels: Mapping[str, str]) -> float:
    """The value of the sample `name{labels}` of a Prometheus text exposition: 0.0 when the
    family is exported but that sample is not (yet); MetricAbsent when the family is not."""
    if metric_family(exposition, name) is None:
        raise MetricAbsent(f"no metric family {name!r} in /metrics (no '# TYPE' line for it)")
    want = sorted(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.compile(rf"^{re.escape(name)}(\{{(?P<labels>[^}}]*)\}})? (?P<value>\S+)$", re.M)
    for m in pattern.finditer(exposition):
        got = sorted(m.group("labels").split(",")) if m.group("labels") else []
        if got == want:
            return float(m.group("value"))
    return 0.0


@dataclass
class ServiceProcess:
    """`softswitch serve` as a child process, stopped and started by its PID."""

    settings: Settings
    env: dict[str, str] = field(default_factory=dict)
    token: str = ""  # an operator's API token, sent by get()
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = Path("/tmp/softswitch-e2e-service.log")

    @property
    def base_url(self) -> str:
        return f"http://{self.settings.http.host}:{self.settings.http.port}"

    def start(self, timeout: float = 20.0) -> None:
        """Start it and wait until it is ready; a start that fails leaves nothing running.
        Refuses to start while another service answers on its address (a test would
        otherwise talk to that one)."""
        try:
            httpx.get(self.base_url + "/healthz", timeout=0.5)
        except httpx.HTTPError:
            pass
        else:
            raise RuntimeError(f"another service already answers on {self.base_url}")
        env = {**os.environ, **self.env}
        if not (self.settings.freeswitch.prefix / "bin" / "freeswitch").exists():
            # No FreeSWITCH built here (a laptop): the service drives Asterisk alone.
            env.setdefault("SOFTSWITCH_FREESWITCH__ENABLED", "false")
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "softswitch.cli", "serve"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        try:
            self.wait_ready(timeout)
        except RuntimeError:
            self.stop(signal.SIGKILL)
            raise

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"service exited with {self.proc.returncode}; see {self.log_path}")
            try:
                r = httpx.get(self.base_url + "/readyz", timeout=1.0)
                if r.status_code == 200:
                    return
                last = r.text
            except httpx.HTTPError as exc:
                last = str(exc)
            time.sleep(0.1)
        raise RuntimeError(f"service not ready within {timeout}s: {last}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, sig)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def metrics(self) -> str:
        return httpx.get(self.base_url + "/metrics", timeout=2.0).text

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample of /metrics. Raises MetricAbsent when the service exports
        no such family (a renamed or dropped metric fails the test that reads it); 0.0 for a
        sample of an exported family with labels not seen yet (a counter's new labels)."""
        return sample_value(self.metrics(), name, labels)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.base_url + path, headers=self.headers(), timeout=5.0)

    def request(self, method: str, path: str, **kw: object) -> httpx.Response:
        headers = {**self.headers(), **kw.pop("headers", {})}  # type: ignore[dict-item]
        return httpx.request(method, self.base_url + path, headers=headers, timeout=5.0, **kw)  # type: ignore[arg-type]

    def histogram(self, name: str) -> list[tuple[float, float]]:
        """Cumulative (upper bound, count) buckets of a histogram without labels
        (MetricAbsent when the service exports no such histogram)."""
        text = self.metrics()
        if metric_family(text, f"{name}_bucket") != name:
            raise MetricAbsent(f"no histogram {name!r} in /metrics")
        out = []
        for m in re.finditer(rf'^{re.escape(name)}_bucket\{{le="([^"]+)"\}} (\S+)$', text, re.M):
            out.append((float(m.group(1)), float(m.group(2))))
        return out


STANDBY_HTTP_OFFSET = 11  # the standby's HTTP port: the first's + 11 (8080 -> 8091)


def standby_service(
    settings: Settings, *, token: str = "", env: Mapping[str, str] | None = None, log_path: Path | None = None
) -> ServiceProcess:
    """A second `softswitch serve` on the same database, listening where the engines look
    for the standby (agi.standby_port, freeswitch.socket_standby_port; README: Cluster
    layout), its HTTP port STANDBY_HTTP_OFFSET above the first's."""
    http_port = settings.http.port + STANDBY_HTTP_OFFSET
    return ServiceProcess(
        settings.model_copy(update={"http": settings.http.model_copy(update={"port": http_port})}),
        env={
            "SOFTSWITCH_AGI__PORT": str(settings.agi.standby_port),
            "SOFTSWITCH_FREESWITCH__SOCKET_PORT": str(settings.freeswitch.socket_standby_port),
            "SOFTSWITCH_HTTP__PORT": str(http_port),
            **(env or {}),
        },
        token=token,
        log_path=log_path or Path("/tmp/softswitch-standby.log"),
    )
