"""Asyncio AMI client: owns the TCP connection, login, keepalive and reconnection.

All framing lives in :mod:`softswitch.engines.asterisk.ami.codec`; this module only moves bytes and
correlates responses with the actions that caused them (by ActionID).

Reconnection policy: a supervisor task connects, logs in and reads until anything goes
wrong (EOF, socket error, protocol error, missed keepalive), then fails every in-flight
action with :class:`AmiConnectionLost` and reconnects with capped exponential backoff and
full jitter. Actions are never replayed on the new connection: whether a lost action
took effect is unknowable from here, and only the caller can decide whether repeating it
is safe.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import secrets
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from softswitch.engines.asterisk.ami.codec import (
    AmiBanner,
    AmiFrame,
    AmiMalformed,
    AmiMessage,
    AmiParser,
    encode_action,
)
from softswitch.engines.supervision import SupervisedClient, full_jitter_backoff

__all__ = [
    "AmiActionError",
    "AmiClient",
    "AmiConnectionLost",
    "AmiError",
    "AmiNotConnected",
    "AmiTimeout",
    "full_jitter_backoff",
]

logger = logging.getLogger(__name__)

ActionFields = Mapping[str, str | int | Sequence[str]]
EventListener = Callable[[AmiMessage], None]
StateListener = Callable[[bool], None]

_READ_SIZE = 64 * 1024
# Malformed frames are logged with at most this much of their raw bytes.
_LOG_RAW_BYTES = 200
# Every Asterisk manager greeting starts with this ("Asterisk Call Manager/9.0.0").
_BANNER_PREFIX = "Asterisk Call Manager"


class AmiError(Exception):
    """Base class of everything the AMI client raises."""


class AmiActionError(AmiError):
    """Asterisk answered ``Response: Error``."""

    def __init__(self, action: str, response: AmiMessage) -> None:
        self.action = action
        self.response = response
        self.message = response.get("Message", "") or ""
        super().__init__(f"{action} failed: {self.message or '(no message)'}")


class AmiTimeout(AmiError):
    """No response arrived within the action's timeout."""


class AmiNotConnected(AmiError):
    """The client is not logged in right now."""


class AmiConnectionLost(AmiError):
    """The connection died while the action was in flight; it may or may not have run."""


class _KeepaliveExpired(AmiError):
    """Ping went unanswered; the peer (or the path to it) is considered dead."""


@dataclass
class _Pending:
    """An action waiting for its Response (and, for list actions, its events)."""

    name: str
    future: asyncio.Future[tuple[AmiMessage, list[AmiMessage]]]
    collect_list: bool
    response: AmiMessage | None = None
    events: list[AmiMessage] = field(default_factory=list)
    list_complete: bool = False

    def resolve(self, value: tuple[AmiMessage, list[AmiMessage]]) -> None:
        if not self.future.done():
            self.future.set_result(value)

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


@dataclass
class _Connection:
    """Per-connection state; a new one per reconnect, so nothing leaks across sockets."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    parser: AmiParser
    frames: deque[AmiFrame] = field(default_factory=deque)
    pending: dict[str, _Pending] = field(default_factory=dict)
    closed: bool = False


class AmiClient(SupervisedClient):
    """Long-lived AMI connection to one Asterisk.

    ``start()`` returns at once; the connection is established (and re-established) in
    the background. Use :meth:`wait_connected` or a state listener to find out when
    actions can be sent.
    """

    protocol = "AMI"

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        secret: str,
        *,
        connect_timeout: float = 5.0,
        action_timeout: float = 5.0,
        ping_interval: float = 10.0,
        ping_timeout: float = 5.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        for what, value in (("username", username), ("secret", secret)):
            # Fail at construction rather than on every login attempt forever; the
            # message never quotes the value.
            if any(char in value for char in "\r\n\0"):
                raise ValueError(f"AMI {what} contains CR, LF or NUL")
        for what, number in (
            ("connect_timeout", connect_timeout),
            ("action_timeout", action_timeout),
            ("ping_interval", ping_interval),
            ("ping_timeout", ping_timeout),
            ("backoff_initial", backoff_initial),
            ("backoff_max", backoff_max),
        ):
            if number <= 0:
                raise ValueError(f"{what} must be positive")
        super().__init__(host, port, backoff_initial=backoff_initial, backoff_max=backoff_max, rng=rng)
        self._username = username
        self._secret = secret
        self._connect_timeout = connect_timeout
        self._action_timeout = action_timeout
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout

        # Random prefix: ActionIDs stay unique across client instances sharing one
        # Asterisk, which makes them greppable in Asterisk's own manager debug log.
        self._id_prefix = f"ss-{secrets.token_hex(4)}-"
        self._id_counter = itertools.count(1)

        self._conn: _Connection | None = None

    def __repr__(self) -> str:
        # Explicit so that the secret can never sneak in via a future dataclass/attrs.
        return f"<AmiClient {self._username}@{self._host}:{self._port} connected={self._connected}>"

    # -- observation -------------------------------------------------------------

    # -- lifecycle ---------------------------------------------------------------

    # -- actions -----------------------------------------------------------------

    # ``timeout`` is a parameter rather than left to the caller's asyncio.timeout()
    # (ASYNC109) because expiry must also drop the ActionID from the pending table.
    async def action(
        self,
        name: str,
        fields: ActionFields | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> AmiMessage:
        """Send one action and return its Response.

        Raises AmiNotConnected if not logged in, AmiActionError on ``Response: Error``,
        AmiTimeout if no Response arrives in ``timeout`` seconds (default: the client's
        action_timeout), AmiConnectionLost if the connection dies first.

        The action is never re-sent automatically, not even after a reconnect. After
        AmiTimeout or AmiConnectionLost, Asterisk may or may not have executed it; the
        caller decides whether to retry. That matters for Originate in particular, which
        is not idempotent: retrying blindly can place the same call twice.
        """
        conn = self._require_connection()
        response, _ = await self._request(conn, name, fields, timeout, collect_list=False)
        return response

    async def action_list(
        self,
        name: str,
        fields: ActionFields | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> tuple[AmiMessage, list[AmiMessage]]:
        """Send an action answered with ``EventList: start`` and collect its events.

        Returns the Response and the events carrying this ActionID, up to but excluding
        the ``EventList: Complete`` marker (e.g. CoreShowChannelsComplete). ``timeout``
        covers the whole exchange. A Success response without ``EventList: start``
        returns an empty list. Errors and retry semantics are as for :meth:`action`.
        Note that some list actions answer ``Response: Error`` when the list is empty
        (PJSIPShowEndpoints: "No endpoints found"); that surfaces as AmiActionError.
        """
        conn = self._require_connection()
        return await self._request(conn, name, fields, timeout, collect_list=True)

    def _require_connection(self) -> _Connection:
        conn = self._conn
        if not self._connected or conn is None or conn.closed:
            raise AmiNotConnected(f"not logged in to AMI at {self._host}:{self._port}")
        return conn

    def _next_action_id(self) -> str:
        return f"{self._id_prefix}{next(self._id_counter)}"

    async def _request(
        self,
        conn: _Connection,
        name: str,
        fields: ActionFields | None,
        response_timeout: float | None,
        *,
        collect_list: bool,
    ) -> tuple[AmiMessage, list[AmiMessage]]:
        action_id = self._next_action_id()
        # Encode before registering: a ValueError (header injection) leaves no pending entry.
        data = encode_action(name, action_id, fields)
        effective_timeout = self._action_timeout if response_timeout is None else response_timeout
        pending = _Pending(
            name=name,
            future=asyncio.get_running_loop().create_future(),
            collect_list=collect_list,
        )
        conn.pending[action_id] = pending
        # Field values are deliberately not logged: Login carries the secret and
        # Originate variables may carry anything.
        logger.debug("AMI -> %s (ActionID %s)", name, action_id)
        try:
            async with asyncio.timeout(effective_timeout):
                try:
                    conn.writer.write(data)
                    await conn.writer.drain()
                except (ConnectionError, OSError) as exc:
                    raise AmiConnectionLost(f"{name}: send failed: {exc}") from exc
                return await pending.future
        except TimeoutError:
            raise AmiTimeout(
                f"{name} (ActionID {action_id}): no response within {effective_timeout}s"
            ) from None
        finally:
            # Dropping the entry is what makes a late reply "unknown" (logged, ignored).
            conn.pending.pop(action_id, None)

    # -- supervisor --------------------------------------------------------------

    async def _run_session(self) -> None:
        """Connect, log in and serve one connection; only ever ends by raising."""
        try:
            async with asyncio.timeout(self._connect_timeout):
                reader, writer = await asyncio.open_connection(self._host, self._port)
        except TimeoutError:
            raise AmiTimeout(f"TCP connect took longer than {self._connect_timeout}s") from None
        conn = _Connection(reader=reader, writer=writer, parser=AmiParser())
        self._conn = conn
        logged_in = False
        try:
            await self._handshake(conn)
            logged_in = True
            self._on_logged_in()
            await self._serve(conn)
        finally:
            self._teardown(conn, logged_in)

    async def _handshake(self, conn: _Connection) -> None:
        try:
            async with asyncio.timeout(self._connect_timeout):
                first = await self._next_frame(conn)
        except TimeoutError:
            raise AmiTimeout(f"no AMI banner within {self._connect_timeout}s") from None
        if not isinstance(first, AmiBanner) or not first.text.startswith(_BANNER_PREFIX):
            raise AmiError(f"unexpected greeting from AMI peer: {first!r:.120}")
        logger.debug("AMI %s:%s: banner %r", self._host, self._port, first.text)

        login_id = self._next_action_id()
        conn.writer.write(
            encode_action(
                "Login",
                login_id,
                {"Username": self._username, "Secret": self._secret, "Events": "on"},
            )
        )
        logger.debug("AMI %s:%s: logging in as %r", self._host, self._port, self._username)
        try:
            async with asyncio.timeout(self._action_timeout):
                await conn.writer.drain()
                response = await self._await_login_response(conn, login_id)
        except TimeoutError:
            raise AmiTimeout(f"no Login response within {self._action_timeout}s") from None
        if (response.response or "").lower() != "success":
            raise AmiActionError("Login", response)

    async def _await_login_response(self, conn: _Connection, login_id: str) -> AmiMessage:
        while True:
            frame = await self._next_frame(conn)
            if isinstance(frame, AmiMessage) and frame.is_response:
                if frame.action_id == login_id:
                    return frame
            # Nothing else is expected before the login response; handle it anyway.
            self._dispatch(conn, frame)

    async def _next_frame(self, conn: _Connection) -> AmiFrame:
        while not conn.frames:
            data = await conn.reader.read(_READ_SIZE)
            if not data:
                raise AmiConnectionLost("connection closed by peer")
            conn.frames.extend(conn.parser.feed(data))
        return conn.frames.popleft()

    def _on_logged_in(self) -> None:
        self._sessions += 1
        self._connected = True
        self._connected_event.set()
        logger.info(
            "AMI %s:%s: logged in as %r (login #%d)",
            self._host,
            self._port,
            self._username,
            self._sessions,
        )
        self._notify_state(True)

    async def _serve(self, conn: _Connection) -> None:
        """Read and keep alive until either fails; always ends with an exception."""
        reader_task = asyncio.create_task(self._read_loop(conn), name="ami-reader")
        ping_task = asyncio.create_task(self._keepalive(conn), name="ami-keepalive")
        try:
            done, _ = await asyncio.wait({reader_task, ping_task}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # re-raise whatever ended the session
            raise AmiConnectionLost("session ended")  # unreachable: both loops are endless
        finally:
            for task in (reader_task, ping_task):
                task.cancel()
            await asyncio.gather(reader_task, ping_task, return_exceptions=True)

    async def _read_loop(self, conn: _Connection) -> None:
        while True:
            # Frames left over from the handshake (FullyBooted often shares a TCP
            # segment with the login response) are dispatched first, in order.
            self._dispatch(conn, await self._next_frame(conn))

    async def _keepalive(self, conn: _Connection) -> None:
        while True:
            await asyncio.sleep(self._ping_interval)
            try:
                await self._request(conn, "Ping", None, self._ping_timeout, collect_list=False)
            except AmiTimeout:
                raise _KeepaliveExpired(f"no Ping response within {self._ping_timeout}s") from None
            except AmiActionError:
                pass  # an answer, even an error, proves the connection is alive

    def _teardown(self, conn: _Connection, logged_in: bool) -> None:
        conn.closed = True
        if self._conn is conn:
            self._conn = None
        # Flip the state before failing waiters, so a caller that catches
        # AmiConnectionLost already sees connected == False.
        self._connected = False
        self._connected_event.clear()
        conn.writer.close()
        pending = list(conn.pending.values())
        conn.pending.clear()
        for entry in pending:
            entry.fail(
                AmiConnectionLost(
                    f"{entry.name}: connection lost before the response; it may or may not"
                    " have been executed and will not be re-sent"
                )
            )
        if logged_in:
            self._notify_state(False)

    # -- dispatch ----------------------------------------------------------------

    def _dispatch(self, conn: _Connection, frame: AmiFrame) -> None:
        if isinstance(frame, AmiMalformed):
            self._malformed_frames += 1
            logger.warning(
                "AMI %s:%s: skipping malformed frame (%s): %r",
                self._host,
                self._port,
                frame.reason,
                frame.raw[:_LOG_RAW_BYTES],
            )
            return
        if isinstance(frame, AmiBanner):
            return  # the codec only yields one, first; nothing to do mid-stream
        action_id = frame.action_id
        if frame.is_response:
            self._on_response(conn, frame, action_id)
        elif frame.is_event:
            pending = conn.pending.get(action_id) if action_id is not None else None
            if pending is not None and pending.collect_list:
                self._on_list_event(pending, frame)
            else:
                self._notify_event(frame)
        else:
            logger.debug(
                "AMI %s:%s: ignoring message that is neither response nor event: %r",
                self._host,
                self._port,
                frame.as_dict(),
            )

    def _on_response(self, conn: _Connection, msg: AmiMessage, action_id: str | None) -> None:
        pending = conn.pending.get(action_id) if action_id is not None else None
        if pending is None:
            logger.debug(
                "AMI %s:%s: response for unknown ActionID %s (late reply after a timeout?)",
                self._host,
                self._port,
                action_id,
            )
            return
        if (msg.response or "").lower() == "error":
            pending.fail(AmiActionError(pending.name, msg))
            return
        if pending.collect_list and (msg.get("EventList") or "").lower() == "start":
            pending.response = msg
            if pending.list_complete:  # the Complete event overtook the response
                pending.resolve((msg, pending.events))
            return
        pending.resolve((msg, []))

    def _on_list_event(self, pending: _Pending, event: AmiMessage) -> None:
        if (event.get("EventList") or "").lower() == "complete":
            pending.list_complete = True
            if pending.response is not None:
                pending.resolve((pending.response, pending.events))
            return
        pending.events.append(event)

    def _notify_event(self, event: AmiMessage) -> None:
        for cb in list(self._event_listeners):
            try:
                cb(event)
            except Exception:
                logger.exception("AMI event listener %r failed on %s", cb, event.event)
