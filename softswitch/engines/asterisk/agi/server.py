"""Asyncio FastAGI server: owns the sockets, drives the sans-IO codec.

Asterisk runs ``AGI(agi://127.0.0.1:4573/route)``, connects here, sends its
environment and then waits for commands.  Each connection becomes one
:class:`AgiSession` handed to the handler registered for the script name
("route").  The handler's job is to set a few channel variables quickly; the
dialplan acts on them after AGI() returns.

Failure policy: every connection ends with the socket closed and exactly one
``session_finished(outcome)`` on the observer; no per-connection failure can
stop the server from serving the next call.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import traceback
from collections.abc import Awaitable, Callable
from typing import Literal, Protocol

from softswitch.core.masking import mask_number
from softswitch.engines.asterisk.agi.codec import (
    AgiEnvironment,
    AgiEnvironmentParser,
    AgiHangupNotice,
    AgiProtocolError,
    AgiResponse,
    AgiResponseParser,
    encode_command,
)

__all__ = [
    "AgiCommandError",
    "AgiError",
    "AgiHandler",
    "AgiHangup",
    "AgiObserver",
    "AgiOutcome",
    "AgiServer",
    "AgiSession",
    "AgiTimeout",
    "NullAgiObserver",
]

logger = logging.getLogger(__name__)

AgiOutcome = Literal["ok", "hangup", "timeout", "protocol_error", "handler_error", "no_handler"]
AgiHandler = Callable[["AgiSession"], Awaitable[None]]

_READ_SIZE = 64 * 1024
_CLOSE_TIMEOUT = 1.0  # don't let a peer that stopped reading hold a closing socket


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


class AgiError(Exception):
    """Base class for failures of an AGI session seen by a handler."""


class AgiHangup(AgiError):
    """The channel hung up (HANGUP notice, 511, or Asterisk closed the socket)."""


class AgiCommandError(AgiError):
    """Asterisk rejected or failed a command (510, 520, result=-1 in a helper...)."""

    def __init__(self, message: str, response: AgiResponse) -> None:
        super().__init__(message)
        self.response = response


class AgiTimeout(AgiError):
    """No response within the command's timeout.

    The reply may still arrive later and would be mistaken for the answer to
    the next command, so the session is unusable afterwards: every later
    command raises AgiTimeout too.
    """


# ---------------------------------------------------------------------------
# Observer (metrics hook)
# ---------------------------------------------------------------------------


class AgiObserver(Protocol):
    """Hook for metrics; the service wires Prometheus to it.

    ``session_started`` is called when a connection is accepted and
    ``session_finished`` exactly once when it is closed, so started - finished
    is the number of live connections.  Implementations must be cheap and
    must not block; exceptions they raise are logged and ignored.
    """

    def session_started(self) -> None: ...

    def session_finished(self, outcome: AgiOutcome) -> None: ...

    def protocol_error(self, kind: str) -> None: ...


class NullAgiObserver:
    """Observer that records nothing."""

    def session_started(self) -> None:
        return None

    def session_finished(self, outcome: AgiOutcome) -> None:
        return None

    def protocol_error(self, kind: str) -> None:
        return None


# ---------------------------------------------------------------------------
# Log hygiene
# ---------------------------------------------------------------------------


def _mask_channel(channel: str) -> str:
    """Mask a channel name but keep its sequence suffix for correlation.

    ``Local/13800138000@ctx-0000001a;1`` -> ``Local/138****8000@ctx-0000001a;1``;
    the part after the last "-" is Asterisk's counter, not a number.
    """
    prefix, sep, suffix = channel.rpartition("-")
    if not sep:
        return mask_number(channel)
    return f"{mask_number(prefix)}-{suffix}"


_LONG_DIGIT_RUN = re.compile(r"\d{8,}")


def _scrub(text: str) -> str:
    """Mask number-like digit runs inside free text (exception messages, tracebacks).

    Only runs of 8+ digits are touched, so line numbers stay readable.
    """
    return _LONG_DIGIT_RUN.sub(lambda m: mask_number(m.group()), text)


# ---------------------------------------------------------------------------
# Session
# ---------------------------------------------------------------------------


class AgiSession:
    """One FastAGI connection as seen by a handler.

    A background task reads the socket all the time, so a ``HANGUP`` notice is
    noticed even between commands (``hung_up`` turns True and a command in
    flight fails at once with AgiHangup instead of waiting for its reply).
    Commands are serialised: at most one is in flight.

    Timeouts: ``command(timeout=None)`` uses the server's ``command_timeout``;
    the media helpers (stream_file, get_data, say_*, exec) default to
    ``media_timeout`` (the server passes its call deadline) because their
    duration depends on prompt length and on the caller, not on Asterisk.
    """

    def __init__(
        self,
        env: AgiEnvironment,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        command_timeout: float,
        media_timeout: float | None = None,
        leftover: bytes = b"",
        on_protocol_error: Callable[[str], None] | None = None,
        max_line: int = 16 * 1024,
    ) -> None:
        self.env = env
        self._reader = reader
        self._writer = writer
        self._command_timeout = command_timeout
        self._media_timeout = media_timeout
        self._on_protocol_error = on_protocol_error
        self._parser = AgiResponseParser(max_line=max_line)
        self._lock = asyncio.Lock()
        self._waiter: asyncio.Future[AgiResponse] | None = None
        self._hung_up = False
        # Set once the stream can no longer be trusted (protocol error, a
        # command timed out, socket closed): later commands fail fast with it.
        self._broken: Exception | None = None
        self._pending_leftover = leftover
        self._read_task: asyncio.Task[None] | None = None

    # -- lifecycle (driven by the server) ----------------------------------

    def start(self) -> None:
        """Start the background reader; bytes after the environment go first."""
        leftover, self._pending_leftover = self._pending_leftover, b""
        if leftover:
            self._feed(leftover)
        if self._broken is None:
            self._read_task = asyncio.get_running_loop().create_task(
                self._read_loop(), name=f"agi-read-{self.env.uniqueid}"
            )

    async def close(self) -> None:
        """Stop the background reader (the server closes the socket)."""
        task, self._read_task = self._read_task, None
        if task is not None and not task.done():
            task.cancel()
            # wait() rather than `await task`: the reader's own CancelledError
            # must not look like a cancellation of the caller.
            await asyncio.wait([task])

    # -- state --------------------------------------------------------------

    @property
    def hung_up(self) -> bool:
        """True once the channel hung up or Asterisk closed the connection."""
        return self._hung_up

    # -- raw command ----------------------------------------------------------

    # ASYNC109: the per-command timeout is deliberate API.  A caller-side
    # asyncio.timeout() could not mark the session desynchronised when it fires.
    async def command(
        self,
        verb: str,
        *args: str,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> AgiResponse:
        """Send one command and return its 200 response.

        Raises AgiHangup (hung up before or during the command, or 511),
        AgiCommandError (510, 520 or any other non-200 code), AgiTimeout (no
        reply within ``timeout``, default ``command_timeout``),
        AgiProtocolError (Asterisk's reply was unparseable) and ValueError
        (the command cannot be encoded safely; nothing is sent).
        """
        effective = self._command_timeout if timeout is None else timeout
        return await self._command(verb, args, effective)

    async def _command(self, verb: str, args: tuple[str, ...], limit: float | None) -> AgiResponse:
        line = encode_command(verb, *args)  # validate before touching any state
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("agi %s >> %s", self.env.uniqueid, _scrub(line.decode(errors="replace").rstrip()))
        async with self._lock:
            self._raise_if_unusable()
            waiter: asyncio.Future[AgiResponse] = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            try:
                async with asyncio.timeout(limit):
                    self._writer.write(line)
                    await self._writer.drain()
                    response = await waiter
            except TimeoutError:
                error = AgiTimeout(f"{verb}: no response within {limit}s")
                self._broken = error
                raise AgiTimeout(*error.args) from None
            except ConnectionError as exc:
                self._mark_gone()
                raise AgiHangup(f"{verb}: connection lost ({type(exc).__name__})") from exc
            finally:
                self._waiter = None
        if response.code == 200:
            return response
        if response.code == 511:
            self._hung_up = True
            raise AgiHangup(f"{verb}: {response.raw}")
        first_line = response.raw.split("\n", 1)[0]
        raise AgiCommandError(f"{verb}: {first_line}", response)

    def _raise_if_unusable(self) -> None:
        if self._hung_up:
            raise AgiHangup("channel already hung up")
        broken = self._broken
        if broken is not None:
            # A fresh instance each time: re-raising one object would keep
            # growing its traceback.
            raise type(broken)(*broken.args)

    # -- helpers ----------------------------------------------------------------

    async def answer(self) -> None:
        response = await self.command("ANSWER")
        if response.result_int != 0:
            raise AgiCommandError(f"ANSWER failed: {response.raw}", response)

    async def hangup(self) -> None:
        """Hang up the channel; later commands raise AgiHangup.

        Finding the channel already gone (HANGUP notice, 511) is success here.
        """
        try:
            response = await self.command("HANGUP")
        except AgiHangup:
            return
        finally:
            self._hung_up = True
        if response.result_int != 1:
            raise AgiCommandError(f"HANGUP failed: {response.raw}", response)

    async def set_variable(self, name: str, value: str) -> None:
        response = await self.command("SET VARIABLE", name, value)
        if response.result_int != 1:
            raise AgiCommandError(f"SET VARIABLE {name} failed: {response.raw}", response)

    async def get_variable(self, name: str) -> str | None:
        """The variable's value, "" when set but empty, None when unset."""
        response = await self.command("GET VARIABLE", name)
        if response.result_int == 1:
            return response.data if response.data is not None else ""
        return None

    async def exec(
        self,
        app: str,
        *app_args: str,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> AgiResponse:
        """Run a dialplan application: ``exec("Dial", "PJSIP/1001", "30")``.

        The arguments are joined with "," into one AGI argument, exactly like
        ``Dial(PJSIP/1001,30)`` in the dialplan.  An argument containing ","
        is refused (ValueError): it would silently become two application
        arguments, which lets a caller-controlled value inject e.g. Dial
        options.  result=-2 (no such application) raises AgiCommandError.
        """
        for index, arg in enumerate(app_args, start=1):
            if "," in arg:
                raise ValueError(f"{app} argument {index} contains ',', which would split it")
        args = (app, ",".join(app_args)) if app_args else (app,)
        response = await self._command("EXEC", args, self._media(timeout))
        if response.result_int == -2:
            raise AgiCommandError(f"EXEC {app}: application not found", response)
        return response

    async def stream_file(
        self,
        name: str,
        escape_digits: str = "",
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> str | None:
        """Play a prompt; returns the escape digit pressed, or None."""
        response = await self._command("STREAM FILE", (name, escape_digits), self._media(timeout))
        return self._digit_result("STREAM FILE", response)

    async def get_data(
        self,
        prompt: str,
        timeout_ms: int,
        max_digits: int,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> tuple[str, bool]:
        """Play ``prompt`` and collect digits: ``(digits, timed_out)``."""
        response = await self._command(
            "GET DATA", (prompt, str(int(timeout_ms)), str(int(max_digits))), self._media(timeout)
        )
        if response.result is None or response.result == "-1":
            raise AgiCommandError(f"GET DATA failed: {response.raw}", response)
        return response.result, response.data == "timeout"

    async def say_digits(
        self,
        digits: str,
        escape_digits: str = "",
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> str | None:
        response = await self._command("SAY DIGITS", (digits, escape_digits), self._media(timeout))
        return self._digit_result("SAY DIGITS", response)

    async def say_number(
        self,
        n: int,
        escape_digits: str = "",
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> str | None:
        response = await self._command("SAY NUMBER", (str(int(n)), escape_digits), self._media(timeout))
        return self._digit_result("SAY NUMBER", response)

    async def verbose(self, message: str, level: int = 1) -> None:
        """Write to the Asterisk console/log (level 1-4)."""
        await self.command("VERBOSE", message, str(int(level)))

    def _media(self, timeout: float | None) -> float | None:
        return self._media_timeout if timeout is None else timeout

    @staticmethod
    def _digit_result(verb: str, response: AgiResponse) -> str | None:
        # Playback commands answer 0 (finished), -1 (failure or hangup) or the
        # ASCII code of the escape digit pressed.
        code = response.result_int
        if code is None or code < 0 or code > 0x10FFFF:
            raise AgiCommandError(f"{verb} failed: {response.raw}", response)
        return chr(code) if code else None

    # -- background reader ------------------------------------------------------

    async def _read_loop(self) -> None:
        # Keeps reading after a timed-out command too, so a later HANGUP or
        # EOF still flips hung_up; only an unparseable stream ends it early.
        try:
            while not isinstance(self._broken, AgiProtocolError):
                data = await self._reader.read(_READ_SIZE)
                if not data:
                    self._mark_gone()
                    return
                self._feed(data)
        except (ConnectionError, OSError):
            self._mark_gone()

    def _feed(self, data: bytes) -> None:
        try:
            items = self._parser.feed(data)
        except AgiProtocolError as exc:
            self._protocol_failure("response", exc)
            return
        for item in items:
            if isinstance(item, AgiHangupNotice):
                self._hung_up = True
                self._fail_waiter(AgiHangup("channel hung up"))
            elif self._hung_up or self._broken is not None:
                # Replies after a hangup or a timed-out command answer
                # something we have already given up on.
                continue
            elif self._waiter is not None and not self._waiter.done():
                self._waiter.set_result(item)
            else:
                self._protocol_failure(
                    "unsolicited_response",
                    AgiProtocolError(f"AGI response with no command in flight: code {item.code}"),
                )
                return

    def _protocol_failure(self, kind: str, exc: AgiProtocolError) -> None:
        self._broken = exc
        self._fail_waiter(AgiProtocolError(*exc.args))
        if self._on_protocol_error is not None:
            self._on_protocol_error(kind)

    def _mark_gone(self) -> None:
        # Asterisk closing the FastAGI socket means the AGI is over for it.
        self._hung_up = True
        self._fail_waiter(AgiHangup("connection closed by Asterisk"))

    def _fail_waiter(self, exc: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)


# ---------------------------------------------------------------------------
# Server
# ---------------------------------------------------------------------------


class AgiServer:
    """Accepts FastAGI connections and runs the handler for each script.

    ``handler_for(script)`` maps the script name (``agi://host:port/route`` ->
    ``"route"``) to an async handler, or None.  With no handler the connection
    is closed without sending anything: Asterisk then ends AGI() normally
    (AGISTATUS=SUCCESS), so the dialplan must detect "nothing was set" itself,
    e.g. by checking that its result variable is empty.
    """

    def __init__(
        self,
        handler_for: Callable[[str], AgiHandler | None],
        *,
        host: str = "127.0.0.1",
        port: int = 4573,
        env_timeout: float = 2.0,
        command_timeout: float = 5.0,
        call_deadline: float = 30.0,
        observer: AgiObserver | None = None,
    ) -> None:
        self._handler_for = handler_for
        self._host = host
        self.port = port
        self._env_timeout = env_timeout
        self._command_timeout = command_timeout
        self._call_deadline = call_deadline
        self._observer: AgiObserver = observer if observer is not None else NullAgiObserver()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False

    @property
    def active_sessions(self) -> int:
        return len(self._tasks)

    async def start(self) -> None:
        """Bind and start accepting; with port 0, ``port`` holds the real one after."""
        if self._server is not None:
            raise RuntimeError("AgiServer already started")
        self._stopping = False
        self._server = await asyncio.start_server(self._on_connection, self._host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        logger.info("FastAGI server listening on %s:%d", self._host, self.port)

    @property
    def listening(self) -> bool:
        """Whether new connections are accepted (False from the moment stop() begins)."""
        return self._server is not None

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting now; give live sessions ``grace`` seconds, then cancel them."""
        self._stopping = True
        server, self._server = self._server, None
        if server is not None:
            server.close()  # closes the listening socket: new connects are refused
        pending = set(self._tasks)
        if pending:
            _, pending = await asyncio.wait(pending, timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            logger.warning("cancelled %d FastAGI session(s) still running after %.1fs", len(pending), grace)
            await asyncio.gather(*pending, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    # -- per connection ---------------------------------------------------------

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._stopping:
            # Accepted in the instant before the listener closed: not a session.
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._notify(self._observer.session_started)
        outcome: AgiOutcome = "protocol_error"
        session: AgiSession | None = None
        script = "?"
        try:
            _set_nodelay(writer)
            env, leftover, outcome_if_none = await self._read_environment(reader)
            if env is None:
                outcome = outcome_if_none
                return
            script = env.script
            logger.debug(
                "FastAGI session script=%r channel=%s uniqueid=%s callerid=%s exten=%s",
                script,
                _mask_channel(env.channel),
                env.uniqueid,
                mask_number(env.callerid),
                mask_number(env.extension),
            )
            handler = self._handler_for(script)
            if handler is None:
                logger.warning("no FastAGI handler for script %r; closing without commands", script)
                outcome = "no_handler"
                return
            session = AgiSession(
                env,
                reader,
                writer,
                command_timeout=self._command_timeout,
                media_timeout=self._call_deadline,
                leftover=leftover,
                on_protocol_error=self._on_session_protocol_error,
            )
            session.start()
            deadline = asyncio.timeout(self._call_deadline)
            try:
                async with deadline:
                    await handler(session)
                outcome = "ok"
            except Exception as exc:
                outcome = self._classify(exc, session, deadline.expired())
                failure: Exception = exc
                if deadline.expired() and isinstance(exc, TimeoutError):
                    failure = AgiTimeout(f"call deadline of {self._call_deadline}s exceeded")
                self._log_failure(script, env, outcome, failure)
        except asyncio.CancelledError:
            # Only stop() cancels us: the shutdown grace period ran out.
            outcome = "timeout"
            raise
        except Exception as exc:
            # handler_for() itself failed, or a bug here: keep serving.
            outcome = "handler_error"
            detail = _scrub("".join(traceback.format_exception(exc)))
            logger.error("FastAGI connection for %r failed:\n%s", script, detail)
        finally:
            try:
                if session is not None:
                    await session.close()
            finally:
                await _close_writer(writer)
                self._tasks.discard(task)
                self._notify(self._observer.session_finished, outcome)

    async def _read_environment(
        self, reader: asyncio.StreamReader
    ) -> tuple[AgiEnvironment | None, bytes, AgiOutcome]:
        """Read the environment block: (env, leftover bytes, outcome if env is None)."""
        parser = AgiEnvironmentParser()
        received = 0
        try:
            async with asyncio.timeout(self._env_timeout):
                while True:
                    data = await reader.read(_READ_SIZE)
                    if not data:
                        if received:
                            logger.warning("FastAGI peer closed mid-environment after %d bytes", received)
                            self._notify(self._observer.protocol_error, "truncated_environment")
                            return None, b"", "protocol_error"
                        # Connect-and-close, e.g. a TCP health check.
                        return None, b"", "hangup"
                    received += len(data)
                    env = parser.feed(data)
                    if env is not None:
                        return env, parser.leftover, "ok"
        except TimeoutError:
            logger.warning(
                "FastAGI environment not complete within %.1fs (%d bytes); dropping",
                self._env_timeout,
                received,
            )
            return None, b"", "timeout"
        except AgiProtocolError as exc:
            logger.warning("bad FastAGI environment: %s", _scrub(str(exc)))
            self._notify(self._observer.protocol_error, "environment")
            return None, b"", "protocol_error"
        except (ConnectionError, OSError) as exc:
            logger.info("FastAGI peer went away during the environment: %s", type(exc).__name__)
            return None, b"", "hangup"

    @staticmethod
    def _classify(exc: Exception, session: AgiSession, deadline_expired: bool) -> AgiOutcome:
        if deadline_expired and isinstance(exc, TimeoutError):
            return "timeout"
        if isinstance(exc, AgiHangup):
            return "hangup"
        if isinstance(exc, AgiTimeout):
            return "timeout"
        if isinstance(exc, AgiProtocolError):
            return "protocol_error"
        if session.hung_up:
            # Whatever the handler tripped over, the caller was already gone.
            return "hangup"
        return "handler_error"

    def _log_failure(self, script: str, env: AgiEnvironment, outcome: AgiOutcome, exc: Exception) -> None:
        where = f"script={script!r} uniqueid={env.uniqueid} channel={_mask_channel(env.channel)}"
        if outcome == "handler_error":
            detail = _scrub("".join(traceback.format_exception(exc)))
            logger.error("FastAGI handler failed (%s):\n%s", where, detail)
        elif outcome == "hangup":
            logger.info("FastAGI caller hung up (%s): %s", where, _scrub(str(exc)))
        else:
            reason = _scrub(str(exc)) or type(exc).__name__
            logger.warning("FastAGI session %s (%s): %s", outcome, where, reason)

    def _on_session_protocol_error(self, kind: str) -> None:
        logger.warning("bad FastAGI response stream (%s)", kind)
        self._notify(self._observer.protocol_error, kind)

    @staticmethod
    def _notify(hook: Callable[..., None], *args: str) -> None:
        # A broken metrics hook must never take a call down with it.
        try:
            hook(*args)
        except Exception:
            logger.exception("AGI observer hook %s failed", getattr(hook, "__name__", hook))


def _set_nodelay(writer: asyncio.StreamWriter) -> None:
    # Every command is one short line answered by one short line: Nagle would
    # add delay to each round trip.
    sock = writer.get_extra_info("socket")
    if sock is None:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass  # not TCP (e.g. a test over a Unix socket)


async def _close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        async with asyncio.timeout(_CLOSE_TIMEOUT):
            await writer.wait_closed()
    except (TimeoutError, ConnectionError, OSError):
        pass
