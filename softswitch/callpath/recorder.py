"""Call recording on the call path: the plan handed to the dialplan when a call is routed,
the file's metadata stored at hang-up (off the hot path) and disk usage against a high-water
mark. The retention purge (provisioning/recordings.py, which also serves search, download,
legal holds and export) is the scheduler's `recording_purge` job.

Files live inside the Asterisk chroot at <spool>/<tenant_id>/<linkedid>.wav (settings
recording.spool). MixMonitor writes them (option b: only the bridged part). On-demand
recordings are started by the DTMF feature code (features.conf automixmon), which writes
to Asterisk's monitor directory as ss<tenant>-<epoch>-<linkedid>.wav; at hang-up they are
moved into the tenant's directory as <linkedid>-<n>.wav, one row per segment."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import shutil
import wave
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import asyncpg

from dialplan.recording import RecordingDecision, decide_recording
from dialplan.snapshot import ConfigSnapshot
from provisioning.recordings import CALL_ID, host_path
from softswitch.callpath.registry import LiveCall
from softswitch.core.clock import Clock
from softswitch.core.metrics import Metrics
from softswitch.core.settings import RecordingSettings

log = logging.getLogger(__name__)

ANNOUNCEMENT = "softswitch/system/recording/notice"  # rendered by PromptStore.render_system
MONITOR_DIR = "/var/spool/asterisk/monitor"  # where automixmon writes (Asterisk's default)
WAV_HEADER = 44
_ON_DEMAND = re.compile(r"^ss(\d+)-(\d+)-(.+)\.wav$")


# ---------------------------------------------------------------------------- files
@dataclass(frozen=True, slots=True)
class RecordingVars:
    """What the dialplan needs: the file's base name (no extension), the announcement."""

    file: str = ""
    announce: str = ""
    on_demand: bool = False


@dataclass(frozen=True, slots=True)
class WavFacts:
    status: str  # stored | missing | empty
    size: int = 0
    duration_s: float = 0.0
    sha256: str | None = None


def wav_facts(path: Path) -> WavFacts:
    """Size, duration (from the WAV header) and sha256 of a recording; blocking."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return WavFacts("missing")
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    try:
        with wave.open(str(path), "rb") as w:
            frames, rate = w.getnframes(), w.getframerate()
        duration = frames / rate if rate else 0.0
    except (wave.Error, EOFError):
        # Asterisk writes the header's sizes when it closes the file; a header left
        # unfinished still has 8 kHz 16-bit mono audio after it.
        frames = max(size - WAV_HEADER, 0) // 2
        duration = frames / 8000
    status = "stored" if frames > 0 else "empty"
    return WavFacts(status, size, round(duration, 3), digest.hexdigest())


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return -1


async def settled_wav(path: Path, wait_s: float) -> WavFacts:
    """An engine closes a file it recorded just after the hang-up: poll until it exists with
    a size that stopped changing (and a header that says it holds audio), or give up after
    wait_s and take it as it is."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    last = -1
    while True:
        size = await asyncio.to_thread(_size, path)
        if size > WAV_HEADER and size == last:
            facts = await asyncio.to_thread(wav_facts, path)
            if facts.status == "stored" or loop.time() >= deadline:
                return facts
        if loop.time() >= deadline:
            return await asyncio.to_thread(wav_facts, path)
        last = size
        await asyncio.sleep(0.2)


def disk_usage_by_tenant(spool_dir: Path) -> dict[str, int]:
    """Bytes under <spool>/<tenant_id>/, by tenant id; blocking."""
    out: dict[str, int] = {}
    if not spool_dir.is_dir():
        return out
    for entry in os.scandir(spool_dir):
        if not entry.is_dir(follow_symlinks=False) or not entry.name.isdigit():
            continue
        total = 0
        for f in os.scandir(entry.path):
            with contextlib.suppress(FileNotFoundError):
                if f.is_file(follow_symlinks=False):
                    total += f.stat(follow_symlinks=False).st_size
        out[entry.name] = total
    return out


# ---------------------------------------------------------------------------- live calls
@dataclass
class Pending:
    tenant_id: int
    linkedid: str
    mode: str  # record | on_demand
    caller: str
    called: str
    direction: str
    files: list[str] = field(default_factory=list)  # inside the chroot, with .wav


class Recorder:
    def __init__(
        self,
        pool: asyncpg.Pool,
        clock: Clock,
        metrics: Metrics,
        settings: RecordingSettings,
        chroot: Path,
    ) -> None:
        self._pool = pool
        self._clock = clock
        self._metrics = metrics
        self._s = settings
        self._root = chroot
        self.spool_dir = chroot / settings.spool.lstrip("/")
        self.storage_full = False
        self._pending: dict[str, Pending] = {}
        self._tasks: set[asyncio.Task[object]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._tenants_seen: set[str] = set()

    # -------------------------------------------------------------- the decision
    def plan(
        self,
        snapshot: ConfigSnapshot,
        tenant_id: int,
        linkedid: str,
        caller: str,
        called: str,
        direction: str,
        endpoint: str = "",
    ) -> RecordingVars | None:
        decision: RecordingDecision = decide_recording(
            snapshot,
            tenant_id,
            direction,
            number=called if direction == "inbound" else "",
            endpoint=endpoint,
            storage_full=self.storage_full,
        )
        if decision.why == "stopped_high_water":
            self._metrics.recordings.labels("stopped_high_water").inc()
            log.error(
                "call %s of tenant %s not recorded: recording storage past its high-water mark",
                linkedid,
                tenant_id,
            )
            return None
        if not decision.records or not CALL_ID.match(linkedid):
            return None
        announce = ANNOUNCEMENT if decision.announce else ""
        p = self._pending.get(linkedid)
        if p is None:
            p = self._pending[linkedid] = Pending(
                tenant_id, linkedid, decision.mode, caller, called, direction
            )
        if decision.mode == "on_demand":
            p.mode = "on_demand" if not p.files else p.mode
            return RecordingVars("", announce, on_demand=True)
        # A second routed leg of the same call (a transfer) records into a file of its own.
        suffix = f"-{len(p.files)}" if p.files else ""
        base = f"{self._s.spool.rstrip('/')}/{tenant_id}/{linkedid}{suffix}"
        p.files.append(base + ".wav")
        p.mode = "record"
        return RecordingVars(base, announce)

    # -------------------------------------------------------------- hang-up
    def on_call_end(self, call: LiveCall) -> None:
        p = self._pending.pop(call.linkedid, None)
        if p is None:
            return
        task = asyncio.get_running_loop().create_task(self.finalize(p, call), name=f"rec-{call.linkedid}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def finalize(self, p: Pending, call: LiveCall) -> list[int]:
        """Store what the call left on disk; returns the recording ids written."""
        try:
            return await self._finalize(p, call)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a recording's bookkeeping never takes the service down
            log.exception("storing the recording of call %s failed", p.linkedid)
            return []

    async def _finalize(self, p: Pending, call: LiveCall) -> list[int]:
        bridged = call.bridged_at is not None
        files = list(p.files)
        if p.mode == "on_demand" or files:
            files += await asyncio.to_thread(self._collect_on_demand, p, len(files))
        started = call.bridged_at or call.answered_at or call.created_at
        ids: list[int] = []
        for segment, inside in enumerate(files):
            path = host_path(self._root, self._s.spool, inside)
            if path is None:
                continue
            # MixMonitor closes the file just after the hang-up
            facts = await settled_wav(path, self._s.finalize_wait_s if bridged else 0.0)
            if not bridged and facts.status != "stored":
                # Nobody answered: MixMonitor (option b) had nothing to record.
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                continue
            self._metrics.recordings.labels(facts.status).inc()
            if facts.status == "missing":
                log.error("recording of call %s is missing: %s was never written", p.linkedid, inside)
            elif facts.status == "empty":
                log.warning("recording of call %s is empty (no audio): %s", p.linkedid, inside)
            rec_id = await self._store(p, segment, inside, facts, started)
            if rec_id is not None:
                ids.append(rec_id)
        return ids

    def _collect_on_demand(self, p: Pending, first_segment: int) -> list[str]:
        """Move the call's automixmon files into the tenant's directory (blocking)."""
        monitor = self._root / MONITOR_DIR.lstrip("/")
        found = []
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(monitor):
                m = _ON_DEMAND.match(entry.name)
                if m and m.group(1) == str(p.tenant_id) and m.group(3) == p.linkedid:
                    found.append((int(m.group(2)), entry.name))
        out = []
        for n, (_, name) in enumerate(sorted(found), start=first_segment):
            inside = f"{self._s.spool.rstrip('/')}/{p.tenant_id}/{p.linkedid}" + (f"-{n}" if n else "")
            target = self._root / (inside + ".wav").lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                os.replace(monitor / name, target)
                out.append(inside + ".wav")
        return out

    async def _store(
        self, p: Pending, segment: int, inside: str, facts: WavFacts, started: datetime
    ) -> int | None:
        async with self._pool.acquire() as conn, conn.transaction():
            rec_id: int | None = await conn.fetchval(
                "INSERT INTO recordings (tenant_id, call_linkedid, segment, mode, path, status, size_bytes, "
                "duration_s, sha256, caller, called, direction, started_at, created_at) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) "
                "ON CONFLICT DO NOTHING RETURNING id",
                p.tenant_id,
                p.linkedid,
                segment,
                p.mode,
                inside,
                facts.status,
                facts.size,
                facts.duration_s,
                facts.sha256,
                p.caller,
                p.called,
                p.direction,
                started,
                self._clock.now(),
            )
            if rec_id is not None and segment == 0:
                await conn.execute(
                    "UPDATE calls SET recording_id = $1 WHERE linkedid = $2 AND recording_id IS NULL",
                    rec_id,
                    p.linkedid,
                )
        return rec_id

    # -------------------------------------------------------------- disk and retention
    async def measure(self) -> bool:
        """Disk usage per tenant (metric) and whether storage is past its high-water mark."""
        usage = await asyncio.to_thread(disk_usage_by_tenant, self.spool_dir)
        for tenant in self._tenants_seen - set(usage):
            self._metrics.recording_disk_bytes.labels(tenant).set(0)
        for tenant, size in usage.items():
            self._metrics.recording_disk_bytes.labels(tenant).set(size)
        self._tenants_seen |= set(usage)
        total = sum(usage.values())
        full = bool(self._s.high_water_bytes) and total >= self._s.high_water_bytes
        try:
            fs = shutil.disk_usage(self.spool_dir if self.spool_dir.exists() else self._root)
            percent = 100.0 * (fs.total - fs.free) / fs.total if fs.total else 0.0
        except OSError:
            percent = 0.0
        full = full or percent >= self._s.high_water_percent
        if full and not self.storage_full:
            log.error(
                "ALERT recording storage past its high-water mark (%d bytes of recordings, "
                "filesystem %.1f%% used): new recordings stop",
                total,
                percent,
            )
        elif self.storage_full and not full:
            log.warning("recording storage back under its high-water mark: recording resumes")
        self.storage_full = full
        return full

    async def start(self) -> None:
        with contextlib.suppress(OSError):
            await self.measure()
        self._loop_task = asyncio.create_task(self._run(), name="recordings-supervisor")

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
        # Hang-ups already seen are stored before the service goes.
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=self._s.finalize_wait_s + 3)
        tasks = [*self._tasks, *([self._loop_task] if self._loop_task else [])]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self) -> None:
        # The retention purge is the scheduler's `recording_purge` job (softswitch/jobs),
        # run by one instance; this loop only watches the storage.
        while True:
            await asyncio.sleep(self._s.usage_interval_s)
            try:
                await self.measure()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the supervisor keeps running
                log.exception("recording supervisor step failed")
