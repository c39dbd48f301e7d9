"""Asyncio FreeSWITCH Event Socket client (inbound mode): owns the TCP connection, auth,
event subscription, liveness and reconnection.

All framing lives in :mod:`softswitch.engines.freeswitch.esl.codec`; this module only moves bytes and
correlates replies with the commands that caused them.

Correlation. ESL has no request id: FreeSWITCH reads the commands of one socket one at a
time and answers each (command/reply or api/response) before reading the next, so the
n-th reply on a connection belongs to the n-th command sent on it. The client therefore
keeps a FIFO of reply slots, appended in exactly the order the bytes are written. A
command that times out keeps its slot: its late reply is consumed and discarded when it
comes, and never mistaken for the answer to a later command. ``bgapi`` results arrive
later, as BACKGROUND_JOB events, and are matched by Job-UUID; the client supplies its own
uuid4 ``Job-UUID`` header, so the match never depends on parsing the reply.

Liveness. The client subscribes to HEARTBEAT, which FreeSWITCH fires every 20 s
(event-heartbeat-interval). If no frame at all (heartbeat, event or reply) arrives within
``heartbeat_timeout`` the connection is considered dead, closed and re-established. A
synchronous ``api`` that runs longer than that holds FreeSWITCH's reader for this socket,
so use ``bgapi`` for anything slow (originate in particular).

Reconnection policy: a supervisor task connects, authenticates, subscribes and reads
until anything goes wrong (EOF, disconnect notice, socket error, protocol error, missed
heartbeat), then fails every in-flight command and background job with
:class:`EslConnectionLost` and reconnects with capped exponential backoff and full jitter.
Nothing is ever re-sent on the new connection: whether a lost command took effect is
unknowable from here (an ``originate`` may well have placed the call), and only the caller
can decide whether repeating it is safe.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from softswitch.engines.freeswitch.esl.codec import (
    EslCommand,
    EslEvent,
    EslFrame,
    EslMalformed,
    EslParsed,
    EslParser,
    encode_command,
)
from softswitch.engines.supervision import SupervisedClient

__all__ = [
    "SUBSCRIBED_EVENTS",
    "EslClient",
    "EslCommandError",
    "EslConnectionLost",
    "EslError",
    "EslNotConnected",
    "EslTimeout",
]

logger = logging.getLogger(__name__)

EventListener = Callable[[EslEvent], None]
StateListener = Callable[[bool], None]

# Subscribed right after auth, in the plain (percent-encoded headers) format.
SUBSCRIBED_EVENTS = (
    "CHANNEL_CREATE",
    "CHANNEL_ANSWER",
    "CHANNEL_BRIDGE",
    "CHANNEL_HANGUP_COMPLETE",
    "BACKGROUND_JOB",
    "HEARTBEAT",
)

_READ_SIZE = 64 * 1024
# Malformed frames are logged with at most this much of their raw bytes.
_LOG_RAW_BYTES = 200
_AUTH_REQUEST = "auth/request"
_COMMAND_REPLY = "command/reply"
_API_RESPONSE = "api/response"
_DISCONNECT_NOTICE = "text/disconnect-notice"
_REPLY_TYPES = frozenset({_COMMAND_REPLY, _API_RESPONSE})
# api/response bodies that mean "the command failed" ("-USAGE: ..." on bad syntax).
_API_ERROR_PREFIXES = ("-ERR", "-USAGE")


class EslError(Exception):
    """Base class of everything the ESL client raises."""


class EslCommandError(EslError):
    """FreeSWITCH answered ``-ERR`` (command/reply Reply-Text, api/response body, or the
    body of the BACKGROUND_JOB of a ``bgapi``)."""

    def __init__(self, command: str, reply: str) -> None:
        self.command = command
        self.reply = reply
        super().__init__(f"{command} failed: {reply or '(no reply text)'}")


class EslTimeout(EslError):
    """No reply (or background job result) arrived within the timeout."""


class EslNotConnected(EslError):
    """The client is not authenticated and subscribed right now."""


class EslConnectionLost(EslError):
    """The connection died while the command was in flight; it may or may not have run."""


class _HeartbeatExpired(EslError):
    """No frame at all within heartbeat_timeout; the peer (or the path) is considered dead."""


@dataclass
class _Pending:
    """A command (reply slot) or a background job waiting for its answer."""

    label: str
    future: asyncio.Future[EslFrame | EslEvent]

    def resolve(self, value: EslFrame | EslEvent) -> bool:
        if self.future.done():
            return False
        self.future.set_result(value)
        return True

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


@dataclass
class _Connection:
    """Per-connection state; a new one per reconnect, so nothing leaks across sockets."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    parser: EslParser
    frames: deque[EslParsed] = field(default_factory=deque)
    # Reply slots in the order the commands were written (ESL answers in order).
    replies: deque[_Pending] = field(default_factory=deque)
    # bgapi jobs by the Job-UUID we sent.
    jobs: dict[str, _Pending] = field(default_factory=dict)
    closed: bool = False


class EslClient(SupervisedClient):
    """Long-lived inbound Event Socket connection to one FreeSWITCH.

    ``start()`` returns at once; the connection is established (and re-established) in
    the background. Use :meth:`wait_connected` or a state listener to find out when
    commands can be sent.
    """

    protocol = "ESL"

    def __init__(
        self,
        host: str,
        port: int,
        password: str,
        *,
        connect_timeout: float = 5.0,
        command_timeout: float = 5.0,
        heartbeat_timeout: float = 60.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        job_timeout: float = 120.0,
        rng: random.Random | None = None,
        events: tuple[str, ...] = SUBSCRIBED_EVENTS,
    ) -> None:
        # Fail at construction rather than on every auth attempt forever; the message
        # never quotes the value.
        if any(char in password for char in "\r\n\0"):
            raise ValueError("ESL password contains CR, LF or NUL")
        if not password:
            raise ValueError("ESL password is empty")
        for what, number in (
            ("connect_timeout", connect_timeout),
            ("command_timeout", command_timeout),
            ("heartbeat_timeout", heartbeat_timeout),
            ("backoff_initial", backoff_initial),
            ("backoff_max", backoff_max),
            ("job_timeout", job_timeout),
        ):
            if number <= 0:
                raise ValueError(f"{what} must be positive")
        super().__init__(host, port, backoff_initial=backoff_initial, backoff_max=backoff_max, rng=rng)
        self._password = password
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._heartbeat_timeout = heartbeat_timeout
        self._job_timeout = job_timeout
        # Liveness and bgapi depend on HEARTBEAT and BACKGROUND_JOB; after CUSTOM, every
        # word is a subclass name.
        if not {"HEARTBEAT", "BACKGROUND_JOB"} <= set(events):
            raise ValueError("the ESL subscription must include HEARTBEAT and BACKGROUND_JOB")
        self._subscription = " ".join(events)

        self._conn: _Connection | None = None

    def __repr__(self) -> str:
        # Explicit so that the password can never sneak in via a future dataclass/attrs.
        return f"<EslClient {self._host}:{self._port} connected={self._connected}>"

    # -- observation -------------------------------------------------------------

    # -- lifecycle ---------------------------------------------------------------

    # -- commands ----------------------------------------------------------------

    async def api(self, cmd: str, *, timeout: float | None = None) -> str:  # noqa: ASYNC109
        """Run ``api <cmd>`` and return its output (the api/response body, verbatim).

        Raises EslNotConnected if not connected, EslCommandError if the output starts
        with ``-ERR`` or ``-USAGE``, EslTimeout if no reply arrives in ``timeout`` seconds
        (default: the client's command_timeout), EslConnectionLost if the connection dies
        first. Never re-sent automatically; see :meth:`command`.
        """
        frame = await self.command(f"api {cmd}", timeout=timeout)
        return frame.text

    async def bgapi(self, cmd: str, *, timeout: float | None = None) -> str:  # noqa: ASYNC109
        """Run ``bgapi <cmd>`` and return the job's output (the BACKGROUND_JOB body).

        ``timeout`` (default: the client's job_timeout) covers the whole exchange; the
        command/reply alone must also arrive within command_timeout. The result is
        matched by a Job-UUID generated here and sent with the command.

        Raises EslCommandError if FreeSWITCH refuses the command or the job's output
        starts with ``-ERR`` (``bgapi originate`` -> "-ERR USER_BUSY"), EslTimeout,
        EslConnectionLost if the connection dies before the result arrives (the job may
        have run: an originate may have placed the call) and EslNotConnected. Never re-sent.
        """
        conn = self._require_connection()
        job_uuid = str(uuid.uuid4())
        label = f"bgapi {_command_word(cmd)} (Job-UUID {job_uuid})"
        # Encode before registering: a ValueError (injection) leaves no pending entry.
        data = encode_command(f"bgapi {cmd}", {"Job-UUID": job_uuid})
        job = _Pending(label, asyncio.get_running_loop().create_future())
        # Registered before the command is written, so even a result that overtook the
        # reply would be matched.
        conn.jobs[job_uuid] = job
        effective_timeout = self._job_timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(effective_timeout):
                reply = await self._send(conn, data, label, self._command_timeout)
                if reply.job_uuid is not None and reply.job_uuid != job_uuid:
                    logger.warning(
                        "ESL %s:%s: %s: reply names Job-UUID %s; still waiting for ours",
                        self._host,
                        self._port,
                        label,
                        reply.job_uuid,
                    )
                event = await job.future
        except TimeoutError:
            raise EslTimeout(f"{label}: no result within {effective_timeout}s") from None
        finally:
            conn.jobs.pop(job_uuid, None)
        assert isinstance(event, EslEvent)
        if event.body.startswith("-ERR"):
            raise EslCommandError(label, event.body.strip())
        return event.body

    async def execute(
        self,
        channel_uuid: str,
        app: str,
        arg: str | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> str:
        """Run dialplan application ``app`` on a channel (``sendmsg`` / ``call-command:
        execute``) and return the Reply-Text. The reply only says the request was
        queued; the application's progress is reported by CHANNEL_EXECUTE* events."""
        headers = {"call-command": "execute", "execute-app-name": app}
        if arg is not None:
            headers["execute-app-arg"] = arg
        frame = await self.command(f"sendmsg {channel_uuid}", headers, timeout=timeout)
        return frame.reply_text or ""

    async def command(
        self,
        verb_line: str,
        headers: Mapping[str, str | int] | None = None,
        body: str | bytes | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> EslFrame:
        """Send one raw command and return its reply frame (command/reply or api/response).

        Raises EslNotConnected, EslCommandError on a ``-ERR`` reply, EslTimeout if no reply
        arrives in ``timeout`` seconds (default: command_timeout), EslConnectionLost if
        the connection dies first.

        The command is never re-sent automatically, not even after a reconnect. After
        EslTimeout or EslConnectionLost, FreeSWITCH may or may not have executed it; the
        caller decides whether to retry. That matters for ``originate`` in particular,
        which is not idempotent: retrying blindly can place the same call twice.
        """
        conn = self._require_connection()
        label = _label(verb_line)
        data = encode_command(verb_line, headers, body)
        effective_timeout = self._command_timeout if timeout is None else timeout
        return await self._send(conn, data, label, effective_timeout)

    def _require_connection(self) -> _Connection:
        conn = self._conn
        if not self._connected or conn is None or conn.closed:
            raise EslNotConnected(f"not connected to FreeSWITCH ESL at {self._host}:{self._port}")
        return conn

    async def _send(self, conn: _Connection, data: bytes, label: str, reply_timeout: float) -> EslFrame:
        """Write one encoded command, wait for the reply in its slot, check for -ERR."""
        pending = _Pending(label, asyncio.get_running_loop().create_future())
        # Slot and write with no await in between: slot order == wire order.
        conn.replies.append(pending)
        # Only the label is logged: arguments may carry anything (auth carries the password).
        logger.debug("ESL -> %s", label)
        try:
            async with asyncio.timeout(reply_timeout):
                try:
                    conn.writer.write(data)
                    await conn.writer.drain()
                except (ConnectionError, OSError) as exc:
                    raise EslConnectionLost(f"{label}: send failed: {exc}") from exc
                reply = await pending.future
        except TimeoutError:
            # The slot stays queued (its future is now cancelled): the late reply, if
            # any, is consumed by it instead of being taken for the next command's.
            raise EslTimeout(f"{label}: no reply within {reply_timeout}s") from None
        assert isinstance(reply, EslFrame)
        _check_reply(label, reply)
        return reply

    # -- supervisor --------------------------------------------------------------

    async def _run_session(self) -> None:
        """Connect, authenticate, subscribe and serve one connection; only ever ends by raising."""
        try:
            async with asyncio.timeout(self._connect_timeout):
                reader, writer = await asyncio.open_connection(self._host, self._port)
        except TimeoutError:
            raise EslTimeout(f"TCP connect took longer than {self._connect_timeout}s") from None
        conn = _Connection(reader=reader, writer=writer, parser=EslParser())
        self._conn = conn
        established = False
        try:
            await self._handshake(conn)
            established = True
            self._on_established()
            await self._read_loop(conn)
        finally:
            self._teardown(conn, established)

    async def _handshake(self, conn: _Connection) -> None:
        try:
            async with asyncio.timeout(self._connect_timeout):
                first = await self._next_frame(conn)
        except TimeoutError:
            raise EslTimeout(f"no auth/request within {self._connect_timeout}s") from None
        if not isinstance(first, EslFrame) or first.content_type != _AUTH_REQUEST:
            raise EslError(f"unexpected greeting from ESL peer: {first!r:.120}")

        # The command line carries the password: written directly, never logged.
        conn.writer.write(encode_command(f"auth {self._password}"))
        logger.debug("ESL %s:%s: authenticating", self._host, self._port)
        await self._handshake_step(conn, "auth")
        subscribe = "event plain " + self._subscription
        conn.writer.write(encode_command(subscribe))
        logger.debug("ESL -> %s", subscribe)
        await self._handshake_step(conn, "event plain")

    async def _handshake_step(self, conn: _Connection, label: str) -> None:
        try:
            async with asyncio.timeout(self._command_timeout):
                await conn.writer.drain()
                reply = await self._await_handshake_reply(conn)
        except TimeoutError:
            raise EslTimeout(f"no {label} reply within {self._command_timeout}s") from None
        if not (reply.reply_text or "").startswith("+OK"):
            raise EslCommandError(label, reply.reply_text or "")

    async def _await_handshake_reply(self, conn: _Connection) -> EslFrame:
        while True:
            frame = await self._next_frame(conn)
            if isinstance(frame, EslFrame) and frame.content_type == _COMMAND_REPLY:
                return frame
            # Nothing else is expected during the handshake; handle it anyway (this is
            # also where a disconnect notice after a rejected auth ends the session).
            self._dispatch(conn, frame)

    async def _next_frame(self, conn: _Connection) -> EslParsed:
        while not conn.frames:
            data = await conn.reader.read(_READ_SIZE)
            if not data:
                raise EslConnectionLost("connection closed by peer")
            conn.frames.extend(conn.parser.feed(data))
        return conn.frames.popleft()

    def _on_established(self) -> None:
        self._sessions += 1
        self._connected = True
        self._connected_event.set()
        logger.info(
            "ESL %s:%s: authenticated and subscribed (session #%d)",
            self._host,
            self._port,
            self._sessions,
        )
        self._notify_state(True)

    async def _read_loop(self, conn: _Connection) -> None:
        """Read and dispatch until the connection fails; always ends with an exception."""
        while True:
            # The deadline restarts with every frame: HEARTBEAT every 20 s keeps an idle
            # but healthy connection well inside it.
            try:
                async with asyncio.timeout(self._heartbeat_timeout):
                    frame = await self._next_frame(conn)
            except TimeoutError:
                raise _HeartbeatExpired(
                    f"no HEARTBEAT (or any frame) within {self._heartbeat_timeout}s"
                ) from None
            self._dispatch(conn, frame)

    def _teardown(self, conn: _Connection, established: bool) -> None:
        conn.closed = True
        if self._conn is conn:
            self._conn = None
        # Flip the state before failing waiters, so a caller that catches
        # EslConnectionLost already sees connected == False.
        self._connected = False
        self._connected_event.clear()
        conn.writer.close()
        pending = [*conn.replies, *conn.jobs.values()]
        conn.replies.clear()
        conn.jobs.clear()
        for entry in pending:
            entry.fail(
                EslConnectionLost(
                    f"{entry.label}: connection lost before the answer; it may or may not"
                    " have been executed and will not be re-sent"
                )
            )
        if established:
            self._notify_state(False)

    # -- dispatch ----------------------------------------------------------------

    def _dispatch(self, conn: _Connection, frame: EslParsed) -> None:
        if isinstance(frame, EslMalformed):
            self._malformed_frames += 1
            logger.warning(
                "ESL %s:%s: skipping malformed frame (%s): %r",
                self._host,
                self._port,
                frame.reason,
                frame.raw[:_LOG_RAW_BYTES],
            )
            return
        if isinstance(frame, EslEvent):
            self._on_event(conn, frame)
            return
        if isinstance(frame, EslCommand):
            return  # only a commands-mode parser yields these
        content_type = frame.content_type
        if content_type in _REPLY_TYPES:
            self._on_reply(conn, frame)
        elif content_type == _DISCONNECT_NOTICE:
            raise EslConnectionLost("FreeSWITCH sent a disconnect notice")
        else:
            logger.debug("ESL %s:%s: ignoring frame of Content-Type %r", self._host, self._port, content_type)

    def _on_reply(self, conn: _Connection, frame: EslFrame) -> None:
        if not conn.replies:
            logger.debug(
                "ESL %s:%s: %s with no command waiting; ignored",
                self._host,
                self._port,
                frame.content_type,
            )
            return
        pending = conn.replies.popleft()
        if not pending.resolve(frame):
            logger.debug(
                "ESL %s:%s: late reply to %s (after a timeout?) discarded",
                self._host,
                self._port,
                pending.label,
            )

    def _on_event(self, conn: _Connection, event: EslEvent) -> None:
        if event.name == "BACKGROUND_JOB":
            job_uuid = event.job_uuid
            job = conn.jobs.get(job_uuid) if job_uuid is not None else None
            if job is not None:
                job.resolve(event)
                return
        for cb in list(self._event_listeners):
            try:
                cb(event)
            except Exception:
                logger.exception("ESL event listener %r failed on %s", cb, event.name)


def _command_word(cmd: str) -> str:
    words = cmd.split(maxsplit=1)
    return words[0] if words else ""


def _label(verb_line: str) -> str:
    """What may be logged of a command line: the verb, plus the api name for api/bgapi.

    Arguments never are: they may carry secrets (auth) or anything at all (originate).
    """
    words = verb_line.split()
    if not words:
        return ""
    if words[0].lower() in {"api", "bgapi"} and len(words) > 1:
        return f"{words[0]} {words[1]}"
    return words[0]


def _check_reply(label: str, reply: EslFrame) -> None:
    if reply.content_type == _API_RESPONSE:
        text = reply.text
        if text.startswith(_API_ERROR_PREFIXES):
            raise EslCommandError(label, text.strip())
        return
    reply_text = reply.reply_text or ""
    if reply_text.startswith("-"):
        raise EslCommandError(label, reply_text)
