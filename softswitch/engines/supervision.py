"""What the AMI and ESL clients share: one long-lived connection kept alive by a
supervisor task. The supervisor runs a session (the subclass's `_run_session`: connect,
authenticate, serve until the connection fails — it only ever ends by raising), then
reconnects after a full-jitter exponential backoff that resets once a session got as far
as being established. Listeners hear events and connection state; their exceptions are
logged and swallowed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

StateListener = Callable[[bool], None]


def full_jitter_backoff(attempt: int, initial: float, maximum: float, rng: random.Random) -> float:
    """Delay before reconnect attempt ``attempt`` (0-based): uniform in [0, cap].

    cap = min(maximum, initial * 2**attempt). Full jitter (rather than a fixed
    exponential delay) keeps a fleet of control-plane instances from reconnecting to a
    restarted switch in lock-step.
    """
    # Cap the exponent so large attempt counts cannot overflow the float.
    cap = min(maximum, initial * 2.0 ** min(attempt, 64))
    return rng.uniform(0.0, cap)


def describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class SupervisedClient:
    protocol = "?"  # for logs and the supervisor task's name: "AMI", "ESL"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        backoff_initial: float,
        backoff_max: float,
        rng: random.Random | None,
    ) -> None:
        self._host = host
        self._port = port
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._rng = rng if rng is not None else random.Random()
        self._event_listeners: list[Callable[[Any], None]] = []
        self._state_listeners: list[StateListener] = []
        self._supervisor: asyncio.Task[None] | None = None
        self._connected = False
        self._connected_event = asyncio.Event()
        self._sessions = 0  # sessions that got as far as being established
        self._last_error: str | None = None
        self._malformed_frames = 0

    # -- observation -------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while the session is established (logged in / authenticated)."""
        return self._connected

    @property
    def reconnects(self) -> int:
        """Number of established sessions after the first one."""
        return max(0, self._sessions - 1)

    @property
    def last_error(self) -> str | None:
        """Why the most recent connection attempt or session ended (kept after recovery)."""
        return self._last_error

    @property
    def malformed_frames(self) -> int:
        """Frames the codec could not parse (each logged and skipped)."""
        return self._malformed_frames

    def add_event_listener(self, cb: Callable[[Any], None]) -> None:
        """Call ``cb`` for every event not consumed by a pending request.

        Called synchronously from the reader: keep it short and hand real work to a
        task or queue. Exceptions are logged and swallowed.
        """
        self._event_listeners.append(cb)

    def add_state_listener(self, cb: StateListener) -> None:
        """Call ``cb(True)`` after each established session and ``cb(False)`` when it is lost."""
        self._state_listeners.append(cb)

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Start the background supervisor (no-op if already running)."""
        if self._supervisor is not None and not self._supervisor.done():
            return
        self._supervisor = asyncio.create_task(
            self._supervise(), name=f"{self.protocol.lower()}-supervisor-{self._host}:{self._port}"
        )

    async def stop(self) -> None:
        """Close the connection and stop reconnecting; requests in flight fail."""
        task, self._supervisor = self._supervisor, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    # The explicit timeout (ASYNC109) is the documented API: callers want a bool, not
    # to wrap the call in their own cancel scope.
    async def wait_connected(self, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait until connected; False if that did not happen within ``timeout`` seconds."""
        if self._connected:
            return True
        try:
            async with asyncio.timeout(timeout):
                await self._connected_event.wait()
        except TimeoutError:
            return False
        return True

    # -- supervisor --------------------------------------------------------------

    async def _run_session(self) -> None:
        raise NotImplementedError

    async def _supervise(self) -> None:
        attempt = 0
        while True:
            sessions_before = self._sessions
            try:
                await self._run_session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure at all means "reconnect"
                self._last_error = describe(exc)
            established = self._sessions > sessions_before
            logger.warning(
                "%s %s:%s: %s: %s",
                self.protocol,
                self._host,
                self._port,
                "connection lost" if established else "connection attempt failed",
                self._last_error,
            )
            if established:
                attempt = 0  # a session that got as far as being established resets the backoff
            delay = full_jitter_backoff(attempt, self._backoff_initial, self._backoff_max, self._rng)
            attempt += 1
            logger.info("%s %s:%s: reconnecting in %.2fs", self.protocol, self._host, self._port, delay)
            await asyncio.sleep(delay)

    def _notify_state(self, connected: bool) -> None:
        for cb in list(self._state_listeners):
            try:
                cb(connected)
            except Exception:
                logger.exception("%s state listener %r failed (connected=%s)", self.protocol, cb, connected)
