"""Prometheus for real (issue 19, item 6): Debian's /usr/bin/prometheus scrapes the running
service every second, five calls go through Asterisk (two answered, one busy, one ringing
out unanswered, one refused by the control plane), and the PromQL of docs/metrics.md for
ASR, NER, ACD and PDD, evaluated through Prometheus's HTTP API over a window holding only
those calls, returns what those calls were."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from scripts.devstack.process import ServiceProcess
from scripts.devstack.sipp import SippResult, SippUas, run_uac
from softswitch.core.settings import Settings
from tests.conftest import IN_CI
from tests.e2e.conftest import active_number, engine_of, mobile, unique_caller
from tests.e2e.test_routing import bind

pytestmark = pytest.mark.stack

PROMETHEUS = Path("/usr/bin/prometheus")
DOCS = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


def documented(heading: str) -> list[str]:
    """The PromQL blocks of docs/metrics.md under the `### <heading>…` section, in order."""
    text = DOCS.read_text()
    start = text.index(f"### {heading}")
    section = text[start : text.find("\n#", start + 1)]
    blocks = re.findall(r"```promql\n(.*?)```", section, re.S)
    assert blocks, f"no PromQL under '### {heading}' in {DOCS}"
    return [b.strip() for b in blocks]


@dataclass(frozen=True)
class Prometheus:
    url: str

    def query(self, expr: str, at: float) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.url}/api/v1/query", params={"query": expr, "time": f"{at:.3f}"}, timeout=5)
        body = r.json()
        assert r.status_code == 200 and body["status"] == "success", (expr, r.text)
        return body["data"]["result"]

    def scalar(self, expr: str, at: float) -> float:
        result = self.query(expr, at)
        assert len(result) == 1, (expr, result)
        return float(result[0]["value"][1])

    def last_scrape(self) -> float:
        """The timestamp of the newest sample of the service's scrape (0 before the first)."""
        result = self.query('timestamp(up{job="softswitch"})', time.time())
        return float(result[0]["value"][1]) if result else 0.0

    def scraped_after(self, moment: float, budget: float = 5.0) -> float:
        """Waits for a scrape that began after `moment`; its timestamp."""
        deadline = time.monotonic() + budget
        while (t := self.last_scrape()) <= moment:
            assert time.monotonic() < deadline, f"Prometheus scraped nothing after {moment} in {budget} s"
            time.sleep(0.1)
        return t


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def prometheus(service: ServiceProcess) -> Iterator[Prometheus]:
    if not PROMETHEUS.exists():
        if IN_CI:
            pytest.fail(f"CI=true and {PROMETHEUS} is missing (scripts/bootstrap.sh installs prometheus)")
        pytest.skip(f"{PROMETHEUS} is missing (scripts/bootstrap.sh installs prometheus)")
    target = service.base_url.removeprefix("http://")
    with tempfile.TemporaryDirectory(prefix="e2e-prometheus-") as tmp:
        config = Path(tmp) / "prometheus.yml"
        # docker/prometheus/prometheus.yml's job, scraped every second.
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: softswitch\n"
            "    metrics_path: /metrics\n"
            f"    static_configs: [{{targets: ['{target}']}}]\n"
        )
        port = _free_port()
        log = open(Path(tmp) / "prometheus.log", "wb")  # noqa: SIM115 - the child owns it
        proc = subprocess.Popen(
            [
                str(PROMETHEUS),
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp}/data",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        try:
            prom = Prometheus(f"http://127.0.0.1:{port}")
            deadline = time.monotonic() + 10
            while True:
                assert proc.poll() is None, (Path(tmp) / "prometheus.log").read_text()[-2000:]
                try:
                    if httpx.get(f"{prom.url}/-/ready", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "Prometheus not ready within 10 s"
                time.sleep(0.1)
            yield prom
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            log.close()


def _histogram_delta(before: str, after: str, name: str) -> dict[str, float]:
    """{le or '_sum'/'_count': increase} of a histogram without labels between two expositions."""

    def parse(text: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith(f'{name}_bucket{{le="'):
                le = line.split('"')[1]
                out[le] = float(line.rsplit(" ", 1)[1])
            elif line.startswith((f"{name}_sum ", f"{name}_count ")):
                key, value = line.split(" ")
                out[key.removeprefix(name)] = float(value)
        return out

    b, a = parse(before), parse(after)
    assert a, f"no histogram {name} in /metrics"
    return {k: a[k] - b.get(k, 0.0) for k in a}


def _wait_idle(service: ServiceProcess, budget: float = 10.0) -> None:
    """No call of an earlier test still live: its end would land in this test's window."""
    deadline = time.monotonic() + budget
    while service.metric("softswitch_calls_active") > 0:
        assert time.monotonic() < deadline, "calls of earlier tests still live after 10 s"
        time.sleep(0.1)


def _ended(service: ServiceProcess) -> float:
    return service.metric("softswitch_calls_ended_total", answered="yes") + service.metric(
        "softswitch_calls_ended_total", answered="no"
    )


async def test_prometheus_scrapes_the_service_and_the_documented_ratios_are_those_of_the_calls(
    db: asyncpg.Connection,
    service: ServiceProcess,
    settings: Settings,
    destination_carrier: SippUas,
    prometheus: Prometheus,
) -> None:
    carrier = engine_of(settings, "asterisk").carrier
    # One tenant a call: active_number's package has one channel.
    plans = {"answered_1s": (mobile(), 1000), "answered_2s": (mobile(), 2000), "busy": (mobile("98"), 500)}
    plans["no_answer"] = (mobile("99"), 500)
    numbers: dict[str, str] = {}
    for name, (dest, _hold) in plans.items():
        tenant, number_id, number = active_number(service)
        bind(service, tenant, number_id, dest, ring_timeout_s=5)
        numbers[name] = number
    numbers["refused"] = "4009" + unique_caller()[-6:]  # no such number
    plans["refused"] = ("", 500)
    callers = {name: unique_caller() for name in numbers}

    _wait_idle(service)
    opened = prometheus.scraped_after(time.time())  # the window's first sample: before any call
    before = service.metrics()
    ended_before = _ended(service)

    def call(name: str) -> SippResult:
        return run_uac(numbers[name], callers[name], hold_ms=plans[name][1], target=carrier, timeout_s=30)

    outcomes = await asyncio.gather(*(asyncio.to_thread(call, n) for n in numbers))
    results = dict(zip(numbers, outcomes, strict=True))
    finals = {name: r.final_status for name, r in results.items()}
    assert finals == {
        "answered_1s": 200,
        "answered_2s": 200,
        "busy": 486,
        "no_answer": 480,
        "refused": 404,
    }, {n: r.message_log[-800:] for n, r in results.items() if r.final_status not in (200,)}

    # Every call's end seen by the service, then a scrape after that: the window's last sample.
    deadline = time.monotonic() + 5
    while _ended(service) < ended_before + 5:
        assert time.monotonic() < deadline, "the service did not see the 5 calls end within 5 s"
        await asyncio.sleep(0.05)
    after = service.metrics()
    at = await asyncio.to_thread(prometheus.scraped_after, time.time())
    # The window's edges are the two samples themselves: Prometheus 2's range [at - window,
    # at] holds both, and increase() extrapolates nothing, so it counts exactly these calls.
    window = f"{round((at - opened) * 1000)}ms"

    def ratio(expr: str) -> float:
        return prometheus.scalar(expr.replace("[5m]", f"[{window}]"), at)

    ended = prometheus.scalar(f"sum(increase(softswitch_calls_ended_total[{window}]))", at)
    assert ended == 5, window
    # ASR as documented: answered / ended calls.
    asr = ratio(documented("ASR")[0])
    assert asr == pytest.approx(2 / 5, abs=1e-9), (
        window,
        opened,
        at,
        prometheus.query(f"softswitch_calls_ended_total[{window}]", at),
        _ended(service) - ended_before,
    )

    # NER as documented, and each cause class's share of the calls.
    ner = ratio(documented("NER")[0])
    assert ner == pytest.approx(1.0, abs=1e-9)  # no network failure among the five
    shares = prometheus.query(
        f"sum by (cause_class) (increase(softswitch_calls_ended_by_cause_total[{window}]))"
        f" / scalar(sum(increase(softswitch_calls_ended_by_cause_total[{window}])))",
        at,
    )
    got_shares = {s["metric"]["cause_class"]: round(float(s["value"][1]), 9) for s in shares}
    assert {k: v for k, v in got_shares.items() if v} == {
        "answered": 0.4,
        "user_busy": 0.2,
        "no_answer": 0.2,
        "rejected": 0.2,
    }

    # ACD as documented against the answered calls' records (answer to hang-up).
    talked = []
    for name in ("answered_1s", "answered_2s"):
        row = await db.fetchrow(
            "SELECT answered_at, ended_at FROM calls WHERE caller = $1 ORDER BY id DESC LIMIT 1",
            callers[name],
        )
        assert row is not None and row["answered_at"] and row["ended_at"], (name, row)
        talked.append((row["ended_at"] - row["answered_at"]).total_seconds())
    acd = ratio(documented("ACD")[0])
    assert acd == pytest.approx(sum(talked) / 2, abs=1e-3), talked
    assert 1.0 <= talked[0] < 2.0 <= talked[1] < 3.0, talked

    # PDD: observed for the four calls that rang a destination (the refused one rang none).
    # Its mean, as docs/metrics.md documents it, equals the service's own sum/count.
    pdd = _histogram_delta(before, after, "softswitch_post_dial_delay_seconds")
    assert pdd["_count"] == 4, pdd
    quantiles, mean_expr = documented("PDD")[:2]
    mean = ratio(mean_expr)
    assert mean == pytest.approx(pdd["_sum"] / 4, rel=1e-9)
    # Each documented quantile lands in the bucket holding the observation of its rank
    # (histogram_quantile interpolates inside that bucket).
    bounds = sorted((float(le), n) for le, n in pdd.items() if not le.startswith("_"))
    for expr in quantiles.splitlines():
        q = float(re.match(r"histogram_quantile\(([0-9.]+),", expr).group(1))  # type: ignore[union-attr]
        value = ratio(expr)
        upper = next(le for le, n in bounds if n >= q * 4)
        lower = max([le for le, _n in bounds if le < upper], default=0.0)
        assert lower <= value <= upper, (expr, value, bounds)
