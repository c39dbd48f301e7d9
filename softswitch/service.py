"""The composition root: every dependency of the running service is built here, once,
from typed settings, and handed to the parts that use it. Nothing else builds pools,
clients or registries, and no module keeps state of its own."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Awaitable, Callable, Iterator

import asyncpg
import uvicorn

from provisioning import registrations
from provisioning.prompts import PromptStore
from provisioning.sip import DEFAULT_REALM
from softswitch.callpath.audit import EngineAudit
from softswitch.callpath.compliance_watch import ComplianceWatch
from softswitch.callpath.ivr_line import IvrLine
from softswitch.callpath.money_batch import MoneyBatches
from softswitch.callpath.prepaid import CallMoney
from softswitch.callpath.recorder import Recorder
from softswitch.callpath.records import CallRecordWriter
from softswitch.callpath.registry import CallRegistry, LiveCall
from softswitch.callpath.routing import CallRouting
from softswitch.callpath.snapshots import SnapshotStore
from softswitch.callpath.voicemail import VoicemailPickup
from softswitch.core.clock import Clock, clock_from_setting
from softswitch.core.db import create_pool
from softswitch.core.loop_lag import LoopLagMonitor
from softswitch.core.metrics import Metrics
from softswitch.core.settings import Settings
from softswitch.edge.bans import EdgeBans, EdgeRpc, EdgeUnavailable
from softswitch.engines.asterisk.agi.server import AgiServer
from softswitch.engines.asterisk.ami.client import AmiClient
from softswitch.engines.asterisk.channel import agi_scripts
from softswitch.engines.asterisk.control import AmiCallControl
from softswitch.engines.asterisk.events import AmiChannelEvents
from softswitch.engines.dispatch import EngineControls
from softswitch.engines.freeswitch.channel import CHANNEL_PREFIX, FsActions, FsPlan, esl_handler
from softswitch.engines.freeswitch.control import BARRIER_SUBCLASS, EslCallControl
from softswitch.engines.freeswitch.esl.client import EslClient
from softswitch.engines.freeswitch.events import CHANNEL_EVENTS, EslChannelEvents
from softswitch.engines.freeswitch.outbound import OutboundServer
from softswitch.http import HttpDeps, create_app
from softswitch.jobs.catalogue import build_scheduler
from softswitch.jobs.scheduler import Scheduler
from softswitch.notify.worker import NoticeDelivery
from trunks.selection import addresses

log = logging.getLogger(__name__)


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn inside our loop: the service, not uvicorn, owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def install_signal_handlers(self) -> None:  # uvicorn < 0.29
        return None


class _AgiMetrics:
    """AgiObserver -> Prometheus."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def session_started(self) -> None:
        self._m.agi_active.inc()

    def session_finished(self, outcome: str) -> None:
        self._m.agi_active.dec()
        self._m.agi_sessions.labels(outcome).inc()

    def protocol_error(self, kind: str) -> None:
        self._m.agi_protocol_errors.labels(kind).inc()


# Q.850 causes by what they say about the network (NER counts the "network" class).
_CAUSE_CLASSES = {
    17: "user_busy",
    18: "no_answer",
    19: "no_answer",
    1: "rejected",
    3: "rejected",
    21: "rejected",
    22: "rejected",
    28: "rejected",
    16: "normal",
    31: "normal",
}


def cause_class(call: LiveCall) -> str:
    if call.answered_at:
        return "answered"
    return _CAUSE_CLASSES.get(call.hangup_cause or 0, "network")


class Service:
    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or clock_from_setting(settings.fixed_now)
        self.metrics = Metrics()
        self.registry = CallRegistry(self.clock)
        self.metrics.calls_active.set_function(lambda: len(self.registry.live()))
        a = settings.ami
        self.ami = AmiClient(
            a.host,
            a.port,
            a.username,
            a.secret.get_secret_value(),
            action_timeout=a.action_timeout,
            ping_interval=a.ping_interval,
            ping_timeout=a.ping_timeout,
            backoff_initial=a.backoff_initial,
            backoff_max=a.backoff_max,
        )
        f = settings.freeswitch
        self.esl: EslClient | None = None
        if f.enabled:
            self.esl = EslClient(
                f.esl_host,
                f.esl_port,
                f.esl_password.get_secret_value(),
                command_timeout=f.command_timeout,
                heartbeat_timeout=f.heartbeat_timeout,
                backoff_initial=f.backoff_initial,
                backoff_max=f.backoff_max,
                events=(*CHANNEL_EVENTS, "BACKGROUND_JOB", "HEARTBEAT", "CUSTOM", BARRIER_SUBCLASS),
            )
        self.esl_server: OutboundServer | None = None
        self._esl_logged_in_once = False
        self.pool: asyncpg.Pool | None = None
        self.snapshots: SnapshotStore | None = None
        self.records: CallRecordWriter | None = None
        self.compliance: ComplianceWatch | None = None
        self.agi: AgiServer | None = None
        self.money: CallMoney | None = None
        self.money_batches: MoneyBatches | None = None
        self.recorder: Recorder | None = None
        self.voicemail: VoicemailPickup | None = None
        self.audit: EngineAudit | None = None
        self.scheduler: Scheduler | None = None
        self.notices: NoticeDelivery | None = None
        self.loop_lag = LoopLagMonitor(self.metrics.event_loop_lag, self.metrics.event_loop_lag_max)
        self._http: _EmbeddedUvicorn | None = None
        self._http_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._logged_in_once = False

    async def start(self) -> None:
        s = self.settings
        self.pool = await create_pool(s)
        self.snapshots = SnapshotStore(self.pool, s.database.dsn(), self.clock, self.metrics)
        await self.snapshots.start()
        self.records = CallRecordWriter(self.pool, self.metrics)
        await self.records.start()
        self.compliance = ComplianceWatch(self.pool, self.clock, self.metrics)
        self.records.on_outbound_ended(self.compliance.tenants_changed)
        await self.compliance.start()
        if s.notify.enabled:  # the outbox's notices to the tenants' e-mail and webhooks
            self.notices = NoticeDelivery(self.pool, self.clock, s.notify, self.metrics.registry)
            await self.notices.start()
        self.registry.add_end_listener(self._on_call_end)

        self.ami.add_event_listener(AmiChannelEvents(self.registry).on_event)
        self.control: AmiCallControl | EngineControls = AmiCallControl(
            self.ami, s.asterisk.unmanaged_accountcode
        )
        self.ami.add_state_listener(self._on_ami_state)
        await self.ami.start()
        if self.esl is not None:
            self.esl.add_event_listener(EslChannelEvents(self.registry).on_event)
            self.control = EngineControls(self.control, [(CHANNEL_PREFIX, EslCallControl(self.esl))])
            self.esl.add_state_listener(self._on_esl_state)
            await self.esl.start()
        watch = asyncio.get_running_loop().create_task(self._watch_database(), name="db-watch")
        self._background.add(watch)

        snapshots = self.snapshots
        metrics = self.metrics
        self.money_batches = MoneyBatches(
            self.pool, on_batch=lambda kind, n: metrics.money_batch_size.labels(kind).observe(n)
        )
        self.money_batches.start()
        self.money = CallMoney(
            self.pool,
            self.control,
            self.registry,
            self.clock,
            self.metrics,
            s.prepaid,
            spend_cap=lambda tenant: snapshots.current.compliance.spend_cap(tenant),
            batches=self.money_batches,
        )
        self.registry.add_end_listener(self.money.on_call_end)
        self.registry.add_leg_end_listener(self.money.on_leg_end)
        await self.money.start()
        self.recorder = Recorder(self.pool, self.clock, self.metrics, s.recording, s.asterisk.chroot)
        self.registry.add_end_listener(self.recorder.on_call_end)
        await self.recorder.start()
        self.voicemail = VoicemailPickup(self.pool, self.clock, self.metrics, s.voicemail, s.asterisk.chroot)
        self.registry.add_end_listener(self.voicemail.on_call_end)
        self.audit = EngineAudit(
            self.control,
            self.registry,
            self.money,
            self.pool,
            self.clock,
            self.metrics,
            s.prepaid.reconcile_interval_s,
            list_lag_s=s.freeswitch.channel_list_lag_s if self.esl is not None else 0.0,
        )
        await self.audit.start()
        await self.loop_lag.start()
        routing = CallRouting(
            self.snapshots,
            self.clock,
            self.metrics,
            self.records,
            self.money,
            recorder=self.recorder,
            voicemail=self.voicemail,
            registry=self.registry,
        )
        routing.pbx_registered = self._pbx_registered
        prompts = PromptStore(s.asterisk.sounds_dir)
        ivr = IvrLine(self.snapshots, self.clock, self.pool, prompts, routing.deliver)
        routing.selfservice = ivr.selfservice
        routing.selfservice_numbers = frozenset(s.ivr.selfservice_numbers)
        self._handlers = agi_scripts(
            routing.route, routing.extension, ivr.menu, trunk="carrier-out", transfer=routing.transfer
        )
        self.agi = AgiServer(
            self._handlers.get,
            host=s.agi.host,
            port=s.agi.port,
            env_timeout=s.agi.env_timeout,
            command_timeout=s.agi.command_timeout,
            call_deadline=s.agi.call_deadline,
            observer=_AgiMetrics(self.metrics),
        )
        await self.agi.start()
        if self.esl is not None:
            f = s.freeswitch
            plan = FsPlan(
                carrier_out=f"{s.asterisk.carrier_out_host}:{s.asterisk.carrier_out_port}",
                phones_profile=f.phones_profile,
                realm=DEFAULT_REALM,
                sounds=f.sounds_dir,
                custom_sounds=s.asterisk.sounds_dir,
                files_root=s.asterisk.chroot,  # the recorder's paths are inside Asterisk's tree
                voicemail_spool=s.voicemail.spool,
            )
            snapshots = self.snapshots
            actions = FsActions(plan, ivr.menu, lambda: addresses(snapshots.current.trunk_routes))
            handler = esl_handler(routing.route, routing.extension, actions, plan, transfer=routing.transfer)
            self.esl_server = OutboundServer(
                handler,
                f.socket_host,
                f.socket_port,
                command_timeout=f.command_timeout,
                on_session=lambda outcome: self.metrics.esl_sessions.labels(outcome).inc(),
            )
            await self.esl_server.start()

        # The cluster layout's SIP edge: its bans recorded here (softswitch/edge/bans.py).
        self.edge_bans: EdgeBans | None = None
        if s.edge.enabled:
            self.edge_bans = EdgeBans(EdgeRpc(s.edge.rpc_url), s.edge.ban_s, self.clock, self.metrics)
            sync = asyncio.get_running_loop().create_task(self._sync_edge_bans(), name="edge-bans")
            self._background.add(sync)
        app = create_app(
            HttpDeps(
                self.metrics,
                self.ami,
                self.pool,
                self.registry,
                self.clock,
                self.settings,
                self.esl,
                self.edge_bans,
            )
        )
        config = uvicorn.Config(
            app,
            host=s.http.host,
            port=s.http.port,
            log_level="warning",
            lifespan="off",
            access_log=False,
        )
        self._http = _EmbeddedUvicorn(config)
        self._http_task = asyncio.create_task(self._http.serve(), name="http")
        while not self._http.started:
            if self._http_task.done():
                raise RuntimeError(f"HTTP server failed to start on {s.http.host}:{s.http.port}")
            await asyncio.sleep(0.01)
        if s.scheduler.enabled:
            self.scheduler = build_scheduler(s, self.pool, self.clock, self.metrics)
            await self.scheduler.start()
        log.info(
            "softswitch serving: agi=%s:%d http=%s:%d ami=%s:%d",
            s.agi.host,
            s.agi.port,
            s.http.host,
            s.http.port,
            s.ami.host,
            s.ami.port,
        )
        # Everything built so far (imports, the snapshot, pools) lives as long as the
        # service: out of the collector's sight, a full collection no longer walks it —
        # one took 11-99 ms of the event loop while calls waited (bench/agi_direct.py).
        gc.collect()
        gc.freeze()

    async def _pbx_registered(self, endpoint_id: str, channel: str) -> bool | None:
        """Whether a customer PBX trunk holds a registration on the engine carrying the call
        (None: that engine could not be asked)."""
        on_fs = channel.startswith(CHANNEL_PREFIX)
        regs = await registrations.of_endpoints(
            None if on_fs else self.ami,
            self.esl if on_fs else None,
            [endpoint_id],
            self.clock.now(),
            self.settings.freeswitch.phones_profile,
        )
        if regs.unreachable:
            return None
        return bool(regs.of(endpoint_id))

    async def stop(self, grace: float = 10.0) -> None:
        """Stop taking calls; let live AGI sessions finish their current step; flush."""
        if self.scheduler is not None:
            await self.scheduler.stop()
        if self.agi is not None:
            await self.agi.stop(grace)
        if self.esl_server is not None:
            await self.esl_server.stop(grace)
        if self._http is not None and self._http_task is not None:
            self._http.should_exit = True
            await asyncio.gather(self._http_task, return_exceptions=True)
        if self.audit is not None:
            await self.audit.stop()
        await self.loop_lag.stop()
        if self.money is not None:
            await self.money.stop()
        if self.money_batches is not None:
            await self.money_batches.stop()
        await self.ami.stop()
        if self.esl is not None:
            await self.esl.stop()
        if self.recorder is not None:
            await self.recorder.stop()
        if self.voicemail is not None:
            await self.voicemail.stop()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self.records is not None:
            await self.records.stop()
        if self.compliance is not None:
            await self.compliance.stop()
        if self.notices is not None:
            await self.notices.stop()
        if self.snapshots is not None:
            await self.snapshots.stop()
        if self.pool is not None:
            await self.pool.close()

    # ------------------------------------------------------------------ AMI wiring
    def _on_call_end(self, call: LiveCall) -> None:
        self.metrics.calls_ended.labels("yes" if call.answered_at else "no").inc()
        self.metrics.calls_ended_by_cause.labels(cause_class(call)).inc()
        if call.answered_at and call.ended_at and call.times_exact:
            self.metrics.talk_seconds.observe((call.ended_at - call.answered_at).total_seconds())
        if call.alerted_at:
            self.metrics.post_dial_delay.observe((call.alerted_at - call.created_at).total_seconds())
        # A call whose answer or end was not seen as it happened gets its record's times
        # from the engine's CDR (softswitch.callpath.audit), not from when we noticed.
        if self.records is not None and call.times_exact:
            self.records.ended(call)

    def _on_ami_state(self, up: bool) -> None:
        self.metrics.ami_connected.set(1 if up else 0)
        if not up:
            return
        if self._logged_in_once:
            self.metrics.ami_reconnects.inc()
        self._logged_in_once = True
        task = asyncio.get_running_loop().create_task(self._reconcile(), name="ami-reconcile")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _on_esl_state(self, up: bool) -> None:
        self.metrics.esl_connected.set(1 if up else 0)
        if not up:
            return
        if self._esl_logged_in_once:
            self.metrics.esl_reconnects.inc()
        self._esl_logged_in_once = True
        task = asyncio.get_running_loop().create_task(self._reconcile(), name="esl-reconcile")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _watch_database(self) -> None:
        """softswitch_database_up, whether or not anyone probes /readyz."""
        while True:
            try:
                assert self.pool is not None
                async with self.pool.acquire(timeout=2.0) as conn:
                    await conn.fetchval("SELECT 1", timeout=2.0)
                self.metrics.database_up.set(1)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - any failure means down
                self.metrics.database_up.set(0)
            await asyncio.sleep(5.0)

    async def _sync_edge_bans(self) -> None:
        """The edge's bans into sip_bans, every edge.sync_interval_s (the edge bans at once
        by itself; this is the record, the audit and the metric)."""
        assert self.edge_bans is not None and self.pool is not None
        down = False
        while True:
            try:
                async with self.pool.acquire(timeout=2.0) as conn:
                    await self.edge_bans.sync(conn)
                down = False
            except asyncio.CancelledError:
                raise
            except EdgeUnavailable as exc:
                if not down:  # once per outage
                    log.warning("the SIP edge's bans cannot be read: %s", exc)
                down = True
            except Exception:  # noqa: BLE001 - the next round tries again
                log.exception("recording the SIP edge's bans failed")
            await asyncio.sleep(self.settings.edge.sync_interval_s)

    async def _reconcile(self) -> None:
        """Events were lost while AMI was away: check against the live channels at once."""
        if self.audit is not None:
            await self.audit.check()


async def serve_until_signalled(
    settings: Settings, after_start: Callable[[Service], Awaitable[None]] | None = None
) -> None:
    service = Service(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await service.start()
    try:
        if after_start is not None:
            await after_start(service)
        await stop.wait()
        log.info("shutting down: finishing live AGI steps")
    finally:
        await service.stop()


def run_service(settings: Settings, after_start: Callable[[Service], Awaitable[None]] | None = None) -> None:
    try:
        import uvloop  # here, so a machine without it still runs (on the stock loop)
    except ImportError:  # pragma: no cover - uvloop is optional off Linux
        asyncio.run(serve_until_signalled(settings, after_start))
    else:
        uvloop.run(serve_until_signalled(settings, after_start))
