"""The scheduler inside a real `softswitch serve`: restarted with the scheduler on (the
harness runs it off), one job selected and a short tick, the service records its runs in
scheduler_runs under its instance name and counts them on /metrics."""

from __future__ import annotations

import asyncio
import json
import secrets
import time

import asyncpg

from scripts.devstack.process import ServiceProcess
from tests.e2e.conftest import restarted


async def test_the_service_runs_its_jobs_and_shows_them_on_metrics(
    db: asyncpg.Connection, service: ServiceProcess
) -> None:
    instance = f"e2e-{secrets.token_hex(4)}"
    env = {
        "SOFTSWITCH_SCHEDULER__ENABLED": "true",
        "SOFTSWITCH_SCHEDULER__TICK_S": "0.2",
        # Only the purge of outbound attempts past every window: nothing a test relies on.
        "SOFTSWITCH_SCHEDULER__JOBS": json.dumps(["outbound_attempts_purge"]),
        "SOFTSWITCH_SCHEDULER__ATTEMPTS_PURGE_INTERVAL_S": "1",
        "SOFTSWITCH_SCHEDULER__INSTANCE": instance,
    }
    with restarted(service, **env) as svc:
        deadline = time.monotonic() + 10
        while True:
            rows = await db.fetch(
                "SELECT job, outcome, detail::text AS detail FROM scheduler_runs WHERE instance = $1 "
                "AND outcome <> 'running' ORDER BY id",
                instance,
            )
            ok = svc.metric("softswitch_scheduler_runs_total", job="outbound_attempts_purge", outcome="ok")
            if len(rows) >= 2 and ok >= 2:
                break
            assert time.monotonic() < deadline, f"runs {list(map(dict, rows))}, metric {ok}"
            await asyncio.sleep(0.1)
        assert {r["job"] for r in rows} == {"outbound_attempts_purge"}  # no other job ran
        assert all(r["outcome"] == "ok" for r in rows), rows
        assert json.loads(rows[0]["detail"])["kept_s"] >= 86400
        last = svc.metric(
            "softswitch_scheduler_last_success_timestamp_seconds", job="outbound_attempts_purge"
        )
        assert abs(last - time.time()) < 60
