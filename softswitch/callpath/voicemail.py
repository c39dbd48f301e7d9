"""Voicemail on the call path: the calls that may leave a message are noted when their
decision is delivered (a voicemail target, an IVR's voicemail choice, or a routed call
whose number's final action is voicemail), and at hang-up, off the hot path, the file the
engine recorded is picked up: a message (provisioning.voicemail.store_message, with its
notice), or an empty file (removed) or none, which only the call record keeps.

Both engines record to the same place inside the Asterisk chroot
(provisioning.voicemail.voicemail_file): Asterisk's [ss-act] voicemail label, FreeSWITCH's
`record` (softswitch.engines.freeswitch.channel)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from dialplan.inbound import Decision, Route, Voicemail
from provisioning.voicemail import NewMessage, VoicemailSpool, note_no_message, store_message, voicemail_file
from softswitch.callpath.recorder import WavFacts, settled_wav
from softswitch.callpath.registry import LiveCall
from softswitch.core.clock import Clock
from softswitch.core.metrics import Metrics
from softswitch.core.settings import VoicemailSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Expected:
    """A call that may leave a message, as its decision left it."""

    tenant_id: int
    linkedid: str
    number: str  # the number called
    caller: str
    direct: bool  # voicemail was the decision (not a routed call's fall-back)
    inside: str  # the file, inside the chroot


class VoicemailPickup:
    def __init__(
        self,
        pool: asyncpg.Pool,
        clock: Clock,
        metrics: Metrics,
        settings: VoicemailSettings,
        chroot: Path,
    ) -> None:
        self._pool = pool
        self._clock = clock
        self._metrics = metrics
        self._s = settings
        self.files = VoicemailSpool(chroot, settings.spool)
        self._expected: dict[str, Expected] = {}
        self._tasks: set[asyncio.Task[object]] = set()

    def expect(self, decision: Decision, linkedid: str, caller: str, called: str) -> None:
        """Note a call whose delivered decision may end in voicemail."""
        direct = isinstance(decision, Voicemail)
        fallback = isinstance(decision, Route) and decision.final_action == "voicemail"
        if not (direct or fallback) or not decision.tenant_id:
            return
        try:
            inside = voicemail_file(self._s.spool, decision.tenant_id, linkedid)
        except ValueError:
            return  # not an engine's call id: nothing was recorded under it
        number = called if called.isdigit() and len(called) <= 20 else ""
        if not number:
            return
        self._expected[linkedid] = Expected(decision.tenant_id, linkedid, number, caller, direct, inside)

    def on_call_end(self, call: LiveCall) -> None:
        expected = self._expected.pop(call.linkedid, None)
        if expected is None:
            return
        task = asyncio.get_running_loop().create_task(
            self.pick_up(expected, call), name=f"voicemail-{call.linkedid}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def pick_up(self, expected: Expected, call: LiveCall) -> int | None:
        """Store what the call left; the message's id, or None."""
        try:
            return await self._pick_up(expected, call)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a message's bookkeeping never takes the service down
            self._metrics.voicemail_messages.labels("error").inc()
            log.exception("picking up the voicemail of call %s failed", expected.linkedid)
            return None

    async def _pick_up(self, e: Expected, call: LiveCall) -> int | None:
        if not e.direct and call.bridged_at is not None:
            return None  # a destination answered: the call never reached voicemail
        path = self.files.host(e.inside)
        assert path is not None, e.inside  # voicemail_file names a file inside the spool
        # A routed call reached voicemail only if the platform answered it; one that was
        # never answered was given up while ringing.
        reached = e.direct or call.answered_at is not None
        facts = await settled_wav(path, self._s.finalize_wait_s if reached else 0.0)
        if facts.status == "missing" and not reached:
            return None
        if facts.status == "stored" and facts.duration_s < self._s.min_duration_s:
            facts = WavFacts("empty", facts.size, facts.duration_s, facts.sha256)
        if facts.status != "stored":
            self._metrics.voicemail_messages.labels(facts.status).inc()
            if facts.status == "empty":
                log.warning("voicemail of call %s: no audio (%.1f s), removed", e.linkedid, facts.duration_s)
                with contextlib.suppress(FileNotFoundError):
                    await asyncio.to_thread(path.unlink)
            else:
                log.info("voicemail of call %s: the caller left before the recording began", e.linkedid)
            async with self._pool.acquire() as conn:
                await note_no_message(conn, e.linkedid, facts.status)
            return None
        assert facts.sha256 is not None
        msg = NewMessage(
            tenant_id=e.tenant_id,
            number=e.number,
            caller=e.caller,
            called=call.called or e.number,
            linkedid=e.linkedid,
            received_at=call.created_at,
            duration_s=facts.duration_s,
            size_bytes=facts.size,
            sha256=facts.sha256,
            path=e.inside,
        )
        async with self._pool.acquire() as conn:
            message_id = await store_message(conn, msg, self._clock.now())
        if message_id is None:
            return None  # stored already (the same hang-up seen twice)
        self._metrics.voicemail_messages.labels("stored").inc()
        log.info("voicemail of call %s stored: message %s, %.1f s", e.linkedid, message_id, facts.duration_s)
        return message_id

    async def stop(self) -> None:
        """Hang-ups already seen are picked up before the service goes."""
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=self._s.finalize_wait_s + 3)
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
