"""The delivery worker inside the service: wakes on NOTIFY notice_delivery (a notice was
written for an endpoint) and every `poll_interval_s` (retries coming due, a missed
NOTIFY), claims due deliveries (softswitch.notify.store) and runs each attempt as a task
of its own under its endpoint's deadline. At most `concurrency` attempts are in flight,
at most one per endpoint: a slow or failing endpoint delays only its own notices, never
another endpoint's nor the call path (which only writes the outbox row).

Logs name the notice, the endpoint and the outcome's reason code; never an address, a
secret, or a phone number of a payload."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Mapping, Sequence

import asyncpg
import httpx
from prometheus_client import CollectorRegistry

from softswitch.core.clock import Clock
from softswitch.core.settings import NotifySettings
from softswitch.notify import retry, store
from softswitch.notify.channels import Channel, EmailChannel, WebhookChannel
from softswitch.notify.metrics import NoticeMetrics
from softswitch.notify.retry import Outcome, RetryPolicy, after_attempt
from softswitch.notify.store import Claimed

log = logging.getLogger(__name__)


class NoticeDelivery:
    def __init__(
        self,
        pool: asyncpg.Pool,
        clock: Clock,
        settings: NotifySettings,
        registry: CollectorRegistry,
        channels: Mapping[str, Channel] | None = None,
        draw: Callable[[], float] = random.random,
        tenants: Sequence[int] | None = None,
    ) -> None:
        """`channels`: how each channel sends (default: SMTP, and httpx closed by stop());
        `tenants`: deliver only theirs (a test's, or a targeted run); None: everyone's."""
        self._pool = pool
        self._clock = clock
        self._s = settings
        self._metrics = NoticeMetrics(registry)
        self._own_client: httpx.AsyncClient | None = None
        if channels is None:
            # httpx logs every request's URL at INFO, and a tenant's URL can carry the
            # receiver's own credentials: its warnings only
            logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger("httpx").level))
            self._own_client = httpx.AsyncClient(
                limits=httpx.Limits(max_connections=settings.concurrency * 2), trust_env=False
            )
            channels = {
                "email": EmailChannel(settings, clock),
                "webhook": WebhookChannel(self._own_client, clock, settings.allow_private_webhooks),
            }
        self._channels: dict[str, Channel] = dict(channels)
        self._draw = draw
        self._tenants = tenants
        self.policy = RetryPolicy(settings.max_attempts, settings.backoff_initial_s, settings.backoff_max_s)
        self._wake = asyncio.Event()
        self._inflight: dict[asyncio.Task[None], int] = {}  # attempt -> its endpoint
        self._task: asyncio.Task[None] | None = None
        self._listener: asyncpg.Connection | None = None
        self._gauge_at = float("-inf")

    async def start(self) -> None:
        self._listener = await self._pool.acquire()
        await self._listener.add_listener(store.CHANNEL, self._notified)
        self._task = asyncio.create_task(self._run(), name="notice-delivery")
        self._wake.set()  # what was due while no instance ran

    async def stop(self, grace: float = 2.0) -> None:
        """Stop claiming; attempts in flight get `grace` seconds, then are cancelled (their
        claims run out and are retried, here or by another instance)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._inflight:
            _done, pending = await asyncio.wait(list(self._inflight), timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.remove_listener(store.CHANNEL, self._notified)
            await self._pool.release(self._listener)
            self._listener = None
        if self._own_client is not None:
            await self._own_client.aclose()
            self._own_client = None

    def _notified(self, _conn: object, _pid: int, _channel: str, _payload: str) -> None:
        self._wake.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._s.poll_interval_s)
            self._wake.clear()
            try:
                await self.dispatch()
                if loop.time() - self._gauge_at >= self._s.poll_interval_s:
                    self._gauge_at = loop.time()
                    await self.refresh_pending()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the database away: the next poll tries again
                log.exception("notice delivery: claiming failed")
                await asyncio.sleep(min(1.0, self._s.poll_interval_s))

    async def dispatch(self) -> list[asyncio.Task[None]]:
        """Claim what is due into the free slots and start those attempts."""
        free = self._s.concurrency - len(self._inflight)
        if free <= 0:
            return []
        async with self._pool.acquire() as conn:
            batch = await store.claim(
                conn,
                self._clock.now(),
                free,
                self._s.lease_s,
                busy_endpoints=set(self._inflight.values()),
                tenants=self._tenants,
            )
        started = []
        for claimed in batch:
            task = asyncio.create_task(self._attempt(claimed), name=f"notice-{claimed.id}")
            self._inflight[task] = claimed.endpoint_id
            task.add_done_callback(self._finished)
            started.append(task)
        if batch and len(batch) == free:
            self._wake.set()  # the slots were the limit: there may be more due
        return started

    async def run_once(self) -> int:
        """Claim what is due now, attempt it and wait for the outcomes (tests, one-off runs)."""
        tasks = await self.dispatch()
        await asyncio.gather(*tasks)
        return len(tasks)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.pop(task, None)
        self._wake.set()  # a slot and an endpoint are free again

    async def _attempt(self, claimed: Claimed) -> None:
        outcome = await self._send(claimed)
        step = after_attempt(outcome, claimed.attempts, self.policy, self._clock.now(), self._draw())
        try:
            async with self._pool.acquire() as conn:
                written = await store.record(conn, claimed, outcome, step)
        except Exception:  # noqa: BLE001 - unrecorded: the claim runs out and it is retried
            log.exception(
                "notice %d: the outcome of delivery %d was not recorded", claimed.notice.id, claimed.id
            )
            return
        if not written:
            log.warning("notice %d: delivery %d was claimed again meanwhile", claimed.notice.id, claimed.id)
            return
        self._metrics.deliveries.labels(claimed.channel, step.state).inc()
        what = f"notice {claimed.notice.id} ({claimed.notice.kind}) to endpoint {claimed.endpoint_id}"
        if step.state == "delivered":
            log.info("%s delivered by %s, attempt %d", what, claimed.channel, claimed.attempts)
        elif step.state == "failed":
            # this instance wakes for its own retry, not just at the next poll
            wait = (step.next_attempt_at - self._clock.now()).total_seconds()
            if wait < self._s.poll_interval_s:
                asyncio.get_running_loop().call_later(max(wait, 0.0), self._wake.set)
            log.warning(
                "%s: attempt %d failed (%s%s), next at %s",
                what,
                claimed.attempts,
                outcome.reason,
                f" {outcome.status}" if outcome.status is not None else "",
                step.next_attempt_at.isoformat(timespec="seconds"),
            )
        else:
            log.warning(
                "%s: given up after attempt %d (%s%s)",
                what,
                claimed.attempts,
                outcome.reason,
                f" {outcome.status}" if outcome.status is not None else "",
            )

    async def _send(self, claimed: Claimed) -> Outcome:
        if not claimed.usable:
            return Outcome.failed(
                retry.ENDPOINT_DISABLED, "the endpoint was disabled or removed", permanent=True
            )
        channel = self._channels.get(claimed.channel)
        if channel is None:
            return Outcome.failed(retry.PROTOCOL_ERROR, f"no channel {claimed.channel!r}", permanent=True)
        try:
            return await channel.send(claimed)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a channel's bug is one failed attempt
            log.exception("notice %d: the %s channel failed", claimed.notice.id, claimed.channel)
            return Outcome.failed(retry.PROTOCOL_ERROR, type(exc).__name__)

    async def refresh_pending(self) -> None:
        async with self._pool.acquire() as conn:
            counts = await store.open_by_channel(conn)
        for channel in ("email", "webhook"):
            self._metrics.pending.labels(channel).set(counts.get(channel, 0))
