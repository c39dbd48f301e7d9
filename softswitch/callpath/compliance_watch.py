"""The compliance monitors inside the service, on the stream of call records: when a batch
of records ends a tenant's outbound calls (CallRecordWriter.on_outbound_ended), or a
complaint is registered against it (NOTIFY compliance_complaint), the tenant is judged
again a moment later (provisioning.compliance.watch.evaluate_tenant) — a burst of calls
costs one evaluation per `debounce_s`, not one per call. The scheduler's
`compliance_monitors` job sweeps every active tenant as a safety net.

Every instance exports softswitch_compliance_level (from the shared compliance_levels
table) and softswitch_complaints_30d (from complaints), so the gauges are the same whichever
instance Prometheus scrapes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import get_args

import asyncpg

from provisioning.compliance.schemas import Category
from provisioning.compliance.watch import evaluate_tenant, levels, recent_complaints
from softswitch.core.clock import Clock
from softswitch.core.masking import mask_number
from softswitch.core.metrics import Metrics

log = logging.getLogger(__name__)

COMPLAINT_CHANNEL = "compliance_complaint"
COMPLAINT_CATEGORIES: tuple[str, ...] = get_args(Category)


class ComplianceWatch:
    def __init__(
        self,
        pool: asyncpg.Pool,
        clock: Clock,
        metrics: Metrics,
        debounce_s: float = 0.5,
        gauge_every_s: float = 5.0,
    ) -> None:
        self._pool = pool
        self._clock = clock
        self._metrics = metrics
        self._debounce_s = debounce_s
        self._gauge_every_s = gauge_every_s
        self._dirty: set[int] = set()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._listener: asyncpg.Connection | None = None
        self._exported: set[tuple[str, str]] = set()

    def tenants_changed(self, tenant_ids: set[int]) -> None:
        """Judge these tenants again soon (called from the record writer's task)."""
        self._dirty |= tenant_ids
        self._wake.set()

    async def start(self) -> None:
        self._listener = await self._pool.acquire()
        await self._listener.add_listener(COMPLAINT_CHANNEL, self._on_complaint)
        self._tasks = [
            asyncio.create_task(self._run(), name="compliance-watch"),
            asyncio.create_task(self._export(), name="compliance-levels"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.remove_listener(COMPLAINT_CHANNEL, self._on_complaint)
            await self._pool.release(self._listener)
            self._listener = None

    def _on_complaint(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        with contextlib.suppress(ValueError):
            self.tenants_changed({int(payload)})

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self._debounce_s)  # let the rest of a burst's records land
            self._wake.clear()
            tenants, self._dirty = self._dirty, set()
            for tenant_id in sorted(tenants):
                try:
                    await self.evaluate(tenant_id)
                except asyncio.CancelledError:
                    raise
                except Exception:  # noqa: BLE001 - one tenant's failure never stops the others
                    log.exception("compliance monitors failed for tenant %d", tenant_id)

    async def evaluate(self, tenant_id: int) -> None:
        async with self._pool.acquire() as conn:
            outcomes = await evaluate_tenant(conn, tenant_id, self._clock.now())
        for o in outcomes:
            if o.step.action != "none":
                self._metrics.compliance_actions.labels(o.finding.rule, o.step.action).inc()
            log.warning(
                "compliance: tenant %d %s%s -> %s (value %s, threshold %s), action %s",
                tenant_id,
                o.finding.rule,
                f" [{mask_number(o.finding.subject)}]" if o.finding.subject else "",
                o.finding.level,
                o.finding.value,
                o.finding.threshold,
                o.step.action,
            )
        if outcomes:
            await self.export_levels()

    async def export_levels(self) -> None:
        async with self._pool.acquire() as conn:
            raised = await levels(conn)
            complaints = await recent_complaints(conn, self._clock.now())
        for category in COMPLAINT_CATEGORIES:
            self._metrics.complaints.labels(category).set(complaints.get(category, 0))
        now = {(str(t), rule): n for t, rule, n in raised}
        for key in self._exported - set(now):
            with contextlib.suppress(KeyError):
                self._metrics.compliance_level.remove(*key)
        for (tenant, rule), n in now.items():
            self._metrics.compliance_level.labels(tenant, rule).set(n)
        self._exported = set(now)

    async def _export(self) -> None:
        while True:
            try:
                await self.export_levels()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the gauge waits for the next round
                log.warning("compliance levels not exported: %s", exc)
            await asyncio.sleep(self._gauge_every_s)
