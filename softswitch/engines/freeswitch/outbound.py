"""The outbound Event Socket: FreeSWITCH's dialplan hands every call to the control plane
(``socket 127.0.0.1:8084 async full``, docker/freeswitch/dialplan.xml) and this server
drives it, one connection per call, the way FastAGI does for Asterisk.

One connection, in order (mod_event_socket.c, outbound mode):

- ``connect`` — sent at once: a connection accepted without it parks the call until the
  caller gives up. The reply is a command/reply frame whose headers are the channel's
  data and variables, percent-encoded (switch_event_serialize with encoding on).
- ``filter Unique-ID <uuid>`` and ``event plain CHANNEL_EXECUTE_COMPLETE
  CHANNEL_HANGUP`` — this channel's two events the session waits on (``myevents`` would
  send every event of the channel, each with all its variables); ``linger`` — the socket
  stays open after the hang-up so the last events still arrive.
- ``sendmsg`` / ``call-command: execute`` with an ``Event-UUID`` per application: the
  reply only says it was queued (async mode); the application has run when the channel's
  CHANNEL_EXECUTE_COMPLETE names the same ``Application-UUID``, with the channel's
  variables as they are then (what ``bridge`` and ``play_and_get_digits`` leave behind).

Framing is the sans-IO codec's (softswitch.engines.freeswitch.esl.codec); a malformed
frame is logged and skipped, a lost connection fails what waits on it. The replies to
commands on one socket come in the order the commands were sent (as for the inbound
client), so a FIFO of reply slots correlates them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from urllib.parse import unquote

from softswitch.engines.freeswitch.esl.codec import (
    EslEvent,
    EslFrame,
    EslMalformed,
    EslParser,
    encode_command,
)

log = logging.getLogger(__name__)

_READ_SIZE = 64 * 1024
# After the hang-up, how long an awaited application may still take to report its end.
AFTER_HANGUP_S = 2.0


class ChannelGone(Exception):
    """The channel hung up, or its socket closed, before the request was answered."""


class OutboundSession:
    """One call FreeSWITCH handed over, on its own socket."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, command_timeout: float
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._timeout = command_timeout
        self._parser = EslParser()
        self._replies: deque[asyncio.Future[EslFrame]] = deque()
        self._apps: dict[str, asyncio.Future[EslEvent]] = {}
        self._listeners: list[Callable[[EslEvent], None]] = []
        self._reader_task: asyncio.Task[None] | None = None
        self.data: dict[str, str] = {}  # the channel's data and variables, from `connect`
        self.hung_up = asyncio.Event()
        self.hangup_cause = ""

    # ------------------------------------------------------------------ the channel's facts
    @property
    def uuid(self) -> str:
        return self.data.get("Unique-ID", "")

    def var(self, name: str) -> str:
        """A channel variable as `connect` (or a later refresh) reported it."""
        return self.data.get(f"variable_{name}", "")

    # ------------------------------------------------------------------ lifecycle
    async def open(self) -> None:
        """connect, then this channel's two events and linger: afterwards ``data`` holds
        the channel's facts."""
        self._reader_task = asyncio.get_running_loop().create_task(self._read(), name="esl-outbound-read")
        reply = await self._command("connect")
        self.data = {name: unquote(value) for name, value in reply.headers}
        # Not `myevents` (every event of the channel, each with all its variables: most of
        # the cost of a call here): only what the session waits on. Sent back to back.
        replies = [
            await self._write(f"filter Unique-ID {self.uuid}"),
            await self._write("event plain CHANNEL_EXECUTE_COMPLETE CHANNEL_HANGUP"),
            await self._write("linger"),
        ]
        for r in replies:
            async with asyncio.timeout(self._timeout):
                frame = await r
            if (frame.reply_text or "").startswith("-ERR"):
                raise ChannelGone(f"setting up the socket: {frame.reply_text}")

    async def close(self) -> None:
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()
        self._fail(ChannelGone("the socket was closed"))

    # ------------------------------------------------------------------ requests
    async def execute(
        self,
        app: str,
        arg: str = "",
        timeout: float | None = None,  # noqa: ASYNC109
        lock: bool = True,
    ) -> EslEvent:
        """Run one dialplan application on the channel and wait until it has run: the
        CHANNEL_EXECUTE_COMPLETE, whose variables are the channel's at that moment.
        ``timeout`` None waits as long as the application runs (a bridge rings for its
        own timeout; the hang-up ends every application). ``lock``: see ``queue``."""
        done = await self.queue(app, arg, lock)
        try:
            async with asyncio.timeout(timeout):
                return await self._ran(app, done)
        except TimeoutError:
            raise ChannelGone(f"{app}: not done within {timeout} s") from None

    async def _ran(self, app: str, done: asyncio.Future[EslEvent]) -> EslEvent:
        """The application's completion; after the channel's hang-up at most
        AFTER_HANGUP_S more. The application running at the hang-up completes at once, one
        still queued behind it never runs: without the bound its handler would wait as long
        as FreeSWITCH lingers on the socket, which is until the service closes it."""
        hung_up = asyncio.ensure_future(self.hung_up.wait())
        try:
            await asyncio.wait((done, hung_up), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            done.cancel()  # as an awaited future is when its waiter is cancelled
            raise
        finally:
            hung_up.cancel()
        if not done.done():
            try:
                async with asyncio.timeout(AFTER_HANGUP_S):
                    return await done
            except TimeoutError:
                raise ChannelGone(f"{app}: the channel hung up before it ran") from None
        return done.result()

    async def queue(self, app: str, arg: str = "", lock: bool = True) -> asyncio.Future[EslEvent]:
        """Send one application without waiting for it to run; the future completes when
        it has. FreeSWITCH runs what a socket sends in order, and everything queued by the
        time its channel thread looks runs in one go — one 20 ms tick for several
        applications instead of one each."""
        if self.hung_up.is_set():
            raise ChannelGone(f"{app}: the channel has hung up")
        app_uuid = str(uuid.uuid4())
        done: asyncio.Future[EslEvent] = asyncio.get_running_loop().create_future()
        self._apps[app_uuid] = done
        done.add_done_callback(lambda _: self._apps.pop(app_uuid, None))
        # event-lock: while this application runs, the channel takes no further queued
        # message — without it a blocking one (playback) runs the next (bridge) from inside
        # itself, at once. Once it is done, the next runs in the same pass. An application
        # sent with lock=False (a bridge, after which nothing is queued until it is done)
        # lets the channel take, while it runs, what is broadcast to it: the feature codes
        # bound with bind_digit_action (the caller's own *3) run on it mid-bridge.
        headers = {
            "call-command": "execute",
            "execute-app-name": app,
            "Event-UUID": app_uuid,
        }
        if lock:
            headers["event-lock"] = "true"
        # The argument goes as the body: no length limit and no header escaping.
        reply = await self._write("sendmsg", headers, body=arg or None)

        def refused(r: asyncio.Future[EslFrame]) -> None:
            if done.done():
                return
            if r.cancelled() or r.exception() is not None:
                done.set_exception(ChannelGone(f"{app}: no reply"))
            elif (r.result().reply_text or "").startswith("-ERR"):
                done.set_exception(ChannelGone(f"{app}: {r.result().reply_text}"))
            else:
                return
            done.exception()  # retrieved: the caller may never await an application it queued

        reply.add_done_callback(refused)
        return done

    async def api(self, command: str) -> str:
        """Run an API command (``api <command>``) now: unlike an application it is not
        queued on the channel, so it runs while the channel takes no messages (an
        application run by a feature code holds the channel's event lock). Returns its
        output; ``-ERR`` is ChannelGone."""
        frame = await self._command(f"api {command}")
        body = frame.body.decode("utf-8", "replace")
        if body.startswith("-ERR") or body.startswith("-USAGE"):
            raise ChannelGone(f"api {command.split(' ', 1)[0]}: {body.strip()}")
        return body

    async def hangup(self, cause: str = "NORMAL_CLEARING") -> None:
        if self.hung_up.is_set():
            return
        with contextlib.suppress(ChannelGone):
            await self._command("sendmsg", {"call-command": "hangup", "hangup-cause": cause})

    async def _write(
        self, line: str, headers: dict[str, str] | None = None, body: str | None = None
    ) -> asyncio.Future[EslFrame]:
        """Send one command; the future is its reply (replies come in the order sent)."""
        if body is not None:
            # sendmsg takes the application's argument from a body only when told its type.
            headers = {**(headers or {}), "content-type": "text/plain"}
        data = encode_command(line, headers, body)
        reply: asyncio.Future[EslFrame] = asyncio.get_running_loop().create_future()
        self._replies.append(reply)
        try:
            self._writer.write(data)
            await self._writer.drain()
        except (ConnectionError, OSError) as exc:
            raise ChannelGone(f"{line}: {exc}") from exc
        return reply

    async def _command(
        self, line: str, headers: dict[str, str] | None = None, body: str | None = None
    ) -> EslFrame:
        reply = await self._write(line, headers, body)
        try:
            async with asyncio.timeout(self._timeout):
                frame = await reply
        except TimeoutError:
            raise ChannelGone(f"{line}: no reply within {self._timeout} s") from None
        text = frame.reply_text or ""
        if text.startswith("-ERR"):
            raise ChannelGone(f"{line}: {text}")
        return frame

    def add_listener(self, cb: Callable[[EslEvent], None]) -> None:
        self._listeners.append(cb)

    # ------------------------------------------------------------------ reading
    async def _read(self) -> None:
        try:
            while True:
                data = await self._reader.read(_READ_SIZE)
                if not data:
                    break
                for frame in self._parser.feed(data):
                    self._dispatch(frame)
        except (ConnectionError, OSError) as exc:
            log.info("outbound ESL socket of %s lost: %s", self.uuid or "?", exc)
        except Exception:  # noqa: BLE001 - a protocol error ends this call's socket only
            log.exception("outbound ESL socket of %s: unreadable stream", self.uuid or "?")
        self.hung_up.set()
        self._fail(ChannelGone("the socket closed"))

    def _dispatch(self, frame: object) -> None:
        if isinstance(frame, EslMalformed):
            log.warning("outbound ESL: skipping malformed frame (%s)", frame.reason)
            return
        if isinstance(frame, EslEvent):
            self._on_event(frame)
            return
        if not isinstance(frame, EslFrame):
            return
        if frame.content_type in ("command/reply", "api/response"):
            while self._replies:
                waiter = self._replies.popleft()
                if not waiter.done():
                    waiter.set_result(frame)
                    break
        elif frame.content_type == "text/disconnect-notice":
            self.hung_up.set()

    def _on_event(self, event: EslEvent) -> None:
        name = event.name
        if name == "CHANNEL_EXECUTE_COMPLETE":
            waiter = self._apps.get(event.get("Application-UUID") or "")
            if waiter is not None and not waiter.done():
                waiter.set_result(event)
        elif name in ("CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE") and event.unique_id == self.uuid:
            self.hangup_cause = event.get("Hangup-Cause") or self.hangup_cause
            self.hung_up.set()
        for cb in list(self._listeners):
            try:
                cb(event)
            except Exception:
                log.exception("outbound ESL listener failed on %s", name)

    def _fail(self, exc: Exception) -> None:
        waiters: list[asyncio.Future[EslFrame] | asyncio.Future[EslEvent]] = [
            *self._replies,
            *self._apps.values(),
        ]
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(exc)
                waiter.exception()  # retrieved: nobody may be waiting any more
        self._replies.clear()


SessionHandler = Callable[[OutboundSession], Awaitable[None]]


class OutboundServer:
    """Accepts FreeSWITCH's outbound sockets and runs ``handler`` for each call."""

    def __init__(
        self,
        handler: SessionHandler,
        host: str,
        port: int,
        command_timeout: float = 5.0,
        on_session: Callable[[str], None] | None = None,
    ) -> None:
        self._handler = handler
        self._host = host
        self._port = port
        self._timeout = command_timeout
        self._on_session = on_session or (lambda outcome: None)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self._host, self._port, reuse_address=True)

    async def stop(self, grace: float = 5.0) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        session = OutboundSession(reader, writer, self._timeout)
        outcome = "ok"
        try:
            await session.open()
            await self._handler(session)
        except ChannelGone as exc:
            outcome = "hangup"
            log.info("call %s ended while being handled: %s", session.uuid or "?", exc)
        except asyncio.CancelledError:
            # The service stops (past its grace): the socket closes and FreeSWITCH goes on
            # with the call (a bridge in progress stays up), then its dialplan's fallback.
            outcome = "cancelled"
            log.info("call %s left to FreeSWITCH: the service is stopping", session.uuid or "?")
        except Exception:
            outcome = "error"
            log.exception("call %s: handler failed", session.uuid or "?")
        finally:
            await session.close()
            self._tasks.discard(task)
            self._on_session(outcome)
