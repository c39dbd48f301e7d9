"""Tests for the asyncio ESL client against a small in-process fake FreeSWITCH.

The fake speaks mod_event_socket's wire format byte for byte (LF-terminated headers,
Content-Length bodies, percent-encoded text/event-plain values) and reads commands the
way FreeSWITCH does, without using the codec under test.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest

from softswitch.engines.freeswitch.esl.client import (
    SUBSCRIBED_EVENTS,
    EslClient,
    EslCommandError,
    EslConnectionLost,
    EslNotConnected,
    EslTimeout,
)
from softswitch.engines.freeswitch.esl.codec import EslEvent

PASSWORD = "Sup3r-Secret-ClueCon"
CLIENT_LOGGER = "softswitch.engines.freeswitch.esl.client"
STATUS = "UP 0 years, 0 days, 1 hour, 2 minutes\nFreeSWITCH (Version 1.10.12) is ready\n"
FAREWELL = b"Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"


def reply(text: str, *extra: tuple[str, str]) -> bytes:
    head = "Content-Type: command/reply\n" + f"Reply-Text: {text}\n"
    return (head + "".join(f"{k}: {v}\n" for k, v in extra) + "\n").encode()


def api_response(body: str) -> bytes:
    payload = body.encode()
    return b"Content-Type: api/response\nContent-Length: %d\n\n" % len(payload) + payload


def event(name: str, *pairs: tuple[str, str], body: str | None = None) -> bytes:
    """One event exactly as mod_event_socket writes it (switch_event_serialize)."""
    text = f"Event-Name: {name}\n" + "".join(f"{k}: {quote(v, safe='')}\n" for k, v in pairs)
    if body is not None:
        payload = body.encode()
        data = text.encode() + b"Content-Length: %d\n\n" % len(payload) + payload
    else:
        data = text.encode() + b"\n"
    return b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(data) + data


def disconnect_notice() -> bytes:
    return b"Content-Type: text/disconnect-notice\nContent-Length: %d\n\n" % len(FAREWELL) + FAREWELL


@dataclass
class Command:
    line: str
    headers: dict[str, str]


@dataclass
class Job:
    uuid: str
    command: str
    conn: FakeConn


@dataclass
class FakeConn:
    writer: asyncio.StreamWriter
    heartbeats: bool = True
    subscribed: list[str] = field(default_factory=list)

    def send(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)

    def finish_job(self, job: Job, result: str) -> None:
        self.send(
            event(
                "BACKGROUND_JOB",
                ("Job-UUID", job.uuid),
                ("Job-Command", job.command.split(" ", 1)[0]),
                ("Job-Command-Arg", job.command.partition(" ")[2]),
                body=result,
            )
        )


async def read_command(reader: asyncio.StreamReader) -> Command | None:
    """Read one command the way mod_event_socket does: lines up to an empty line."""
    lines: list[str] = []
    while True:
        raw = await reader.readline()
        if not raw:
            return None
        line = raw.decode().rstrip("\r\n")
        if not line:
            if lines:
                break
            continue  # FreeSWITCH skips leading blank lines
        lines.append(line)
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return Command(lines[0], headers)


class FakeFreeSwitch:
    """mod_event_socket in inbound mode: auth, event plain, api, bgapi, sendmsg, exit.

    ``api`` commands are answered from a small table ("sleep N" blocks the socket for N
    seconds before answering, as a slow synchronous api does in FreeSWITCH). ``bgapi``
    is acknowledged at once; the job is handed to the test (``next_job()``), which
    completes it whenever and in whatever order it likes. HEARTBEAT events are sent
    every ``heartbeat_interval`` seconds to subscribed connections unless silenced.
    """

    def __init__(self, heartbeat_interval: float = 0.05) -> None:
        self.port = 0
        self.heartbeat_interval = heartbeat_interval
        self.received: list[Command] = []
        self.conns: list[FakeConn] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._jobs: asyncio.Queue[Job] = asyncio.Queue()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        # Reuses the previous port on restart so the client reconnects to "the same" switch.
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        self.drop()
        await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.wait_for(asyncio.gather(*self._tasks, return_exceptions=True), 1.0)

    def drop(self) -> None:
        for conn in self.conns:
            conn.writer.close()
        self.conns.clear()

    @property
    def current(self) -> FakeConn:
        return self.conns[-1]

    def count(self, prefix: str) -> int:
        return sum(1 for cmd in self.received if cmd.line.startswith(prefix))

    async def next_job(self) -> Job:
        return await asyncio.wait_for(self._jobs.get(), 1.0)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        conn = FakeConn(writer)
        self.conns.append(conn)
        conn.send(b"Content-Type: auth/request\n\n")
        authed = False
        try:
            while (cmd := await read_command(reader)) is not None:
                self.received.append(cmd)
                verb, _, args = cmd.line.partition(" ")
                if not authed:
                    if verb == "auth" and args == PASSWORD:
                        authed = True
                        conn.send(reply("+OK accepted"))
                        continue
                    conn.send(reply("-ERR invalid") + disconnect_notice())
                    break
                if verb == "event" and args.startswith("plain "):
                    conn.subscribed = args.split()[1:]
                    conn.send(reply("+OK event listener enabled plain"))
                    if "HEARTBEAT" in conn.subscribed:
                        self._spawn(self._heartbeat(conn))
                elif verb == "api":
                    await self._api(conn, args)
                elif verb == "bgapi":
                    job_uuid = cmd.headers.get("Job-UUID", "generated-by-fake")
                    conn.send(reply(f"+OK Job-UUID: {job_uuid}", ("Job-UUID", job_uuid)))
                    self._jobs.put_nowait(Job(job_uuid, args, conn))
                elif verb == "sendmsg":
                    if args.startswith("no-such"):
                        conn.send(reply(f"-ERR invalid session id [{args}]"))
                    else:
                        conn.send(reply("+OK"))
                elif verb == "exit":
                    conn.send(reply("+OK bye") + disconnect_notice())
                    break
                else:
                    conn.send(reply("-ERR command not found"))
        except ConnectionError:
            pass
        finally:
            writer.close()
            if conn in self.conns:
                self.conns.remove(conn)

    async def _api(self, conn: FakeConn, args: str) -> None:
        name, _, rest = args.partition(" ")
        if name == "status":
            conn.send(api_response(STATUS))
        elif name == "sleep":
            await asyncio.sleep(float(rest))  # blocks this socket, like a slow api
            conn.send(api_response(f"+OK slept {rest}\n"))
        elif name == "echo":
            conn.send(api_response(rest))
        else:
            conn.send(api_response(f"-ERR {name} Command not found!\n"))

    async def _heartbeat(self, conn: FakeConn) -> None:
        while not conn.writer.is_closing():
            await asyncio.sleep(self.heartbeat_interval)
            if conn.heartbeats:
                conn.send(event("HEARTBEAT", ("Event-Info", "System Ready"), ("Session-Count", "0")))


async def eventually(predicate: Callable[[], bool], within: float = 2.0) -> None:
    async with asyncio.timeout(within):
        # Polling (ASYNC110) is deliberate: the predicates read plain lists that the
        # client fills from callbacks, so there is no Event to wait on.
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


@dataclass
class Harness:
    client: EslClient
    events: list[EslEvent]
    states: list[bool]

    def event_names(self, *, heartbeats: bool = False) -> list[str]:
        return [e.name for e in self.events if heartbeats or e.name != "HEARTBEAT"]


class RecordingRandom(random.Random):
    """Records the bounds of every uniform() call (the backoff cap)."""

    def __init__(self) -> None:
        super().__init__(7)
        self.caps: list[float] = []
        self.lows: list[float] = []

    def uniform(self, a: float, b: float) -> float:
        self.lows.append(a)
        self.caps.append(b)
        return super().uniform(a, b)


@pytest.fixture
async def server() -> AsyncIterator[FakeFreeSwitch]:
    fake = FakeFreeSwitch()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def make_client(server: FakeFreeSwitch) -> AsyncIterator[Callable[..., Harness]]:
    created: list[EslClient] = []

    def factory(**overrides: Any) -> Harness:
        options: dict[str, Any] = {
            "connect_timeout": 1.0,
            "command_timeout": 1.0,
            "heartbeat_timeout": 1.0,
            "backoff_initial": 0.01,
            "backoff_max": 0.05,
            "job_timeout": 1.0,
            "rng": random.Random(1),
        }
        password = overrides.pop("password", PASSWORD)
        options.update(overrides)
        client = EslClient("127.0.0.1", server.port, password, **options)
        harness = Harness(client, [], [])
        client.add_event_listener(harness.events.append)
        client.add_state_listener(harness.states.append)
        created.append(client)
        return harness

    yield factory
    for client in created:
        await client.stop()


async def started(harness: Harness) -> Harness:
    await harness.client.start()
    assert await harness.client.wait_connected(2.0)
    return harness


# -- auth and subscription ---------------------------------------------------------


async def test_auth_then_subscribe_and_secret_never_shown(
    server: FakeFreeSwitch, make_client: Callable[..., Harness], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=CLIENT_LOGGER)
    h = await started(make_client())

    assert h.client.connected and h.states == [True] and h.client.reconnects == 0
    assert [cmd.line for cmd in server.received[:2]] == [
        f"auth {PASSWORD}",
        "event plain CHANNEL_CREATE CHANNEL_ANSWER CHANNEL_BRIDGE CHANNEL_HANGUP_COMPLETE"
        " BACKGROUND_JOB HEARTBEAT",
    ]
    assert server.current.subscribed == list(SUBSCRIBED_EVENTS)
    await eventually(lambda: "HEARTBEAT" in h.event_names(heartbeats=True))
    assert PASSWORD not in caplog.text
    assert PASSWORD not in repr(h.client)


async def test_wrong_password_never_connects_and_is_not_logged(
    server: FakeFreeSwitch, make_client: Callable[..., Harness], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=CLIENT_LOGGER)
    wrong = "Wrong-Password-Value"
    h = make_client(password=wrong)
    await h.client.start()

    assert not await h.client.wait_connected(0.2)
    assert h.states == []
    assert h.client.last_error is not None and "-ERR invalid" in h.client.last_error
    assert server.count("auth ") >= 2  # it keeps retrying, with backoff
    assert server.count("event ") == 0  # never subscribes without auth
    assert wrong not in caplog.text
    assert wrong not in repr(h.client)
    with pytest.raises(EslNotConnected):
        await h.client.api("status")


async def test_peer_that_is_not_freeswitch_is_rejected() -> None:
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await reader.read()

    fake = await asyncio.start_server(handle, "127.0.0.1", 0)
    client = EslClient(
        "127.0.0.1",
        fake.sockets[0].getsockname()[1],
        PASSWORD,
        connect_timeout=0.05,
        backoff_initial=0.01,
        backoff_max=0.02,
    )
    try:
        await client.start()
        assert not await client.wait_connected(0.15)
        assert client.last_error is not None and "unexpected greeting" in client.last_error
    finally:
        await client.stop()
        fake.close()
        for writer in writers:
            writer.close()
        await fake.wait_closed()
        await asyncio.sleep(0.01)


def test_constructor_rejects_bad_password_and_timeouts() -> None:
    with pytest.raises(ValueError, match="password") as excinfo:
        EslClient("h", 1, "hunter2\nexit")
    assert "hunter2" not in str(excinfo.value)
    with pytest.raises(ValueError, match="heartbeat_timeout"):
        EslClient("h", 1, PASSWORD, heartbeat_timeout=0)


# -- api -------------------------------------------------------------------------


async def test_api_returns_the_response_body(make_client: Callable[..., Harness]) -> None:
    h = await started(make_client())
    assert await h.client.api("status") == STATUS
    assert await h.client.api("echo a: b") == "a: b"


async def test_concurrent_api_replies_are_matched_in_order(make_client: Callable[..., Harness]) -> None:
    h = await started(make_client())
    results = await asyncio.gather(*(h.client.api(f"echo reply-{n}") for n in range(20)))
    assert results == [f"reply-{n}" for n in range(20)]


async def test_api_error_raises_command_error(make_client: Callable[..., Harness]) -> None:
    h = await started(make_client())
    with pytest.raises(EslCommandError, match="Command not found") as excinfo:
        await h.client.api("nosuch arg")
    assert excinfo.value.reply == "-ERR nosuch Command not found!"
    assert excinfo.value.command == "api nosuch"
    assert h.client.connected


async def test_api_timeout_keeps_the_slot_so_the_late_reply_is_not_misattributed(
    server: FakeFreeSwitch, make_client: Callable[..., Harness], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=CLIENT_LOGGER)
    h = await started(make_client())

    with pytest.raises(EslTimeout, match="api sleep"):
        await h.client.api("sleep 0.2", timeout=0.05)
    # The next command's reply comes after the late "+OK slept"; it must get its own.
    assert await h.client.api("status") == STATUS
    assert "late reply to api sleep" in caplog.text
    assert h.client.connected and h.states == [True]


async def test_injection_is_rejected_before_sending(
    server: FakeFreeSwitch, make_client: Callable[..., Harness]
) -> None:
    h = await started(make_client())
    before = len(server.received)
    with pytest.raises(ValueError, match="command line"):
        await h.client.api("status\n\nexit")
    with pytest.raises(ValueError, match="execute-app-arg"):
        await h.client.execute("3f0a6c1e", "playback", "/tmp/a.wav\n\napi shutdown")
    assert len(server.received) == before
    assert await h.client.api("status") == STATUS  # nothing queued a phantom reply slot


async def test_execute_sends_sendmsg_and_minus_err_raises(
    server: FakeFreeSwitch, make_client: Callable[..., Harness]
) -> None:
    h = await started(make_client())
    assert await h.client.execute("3f0a6c1e", "playback", "/tmp/welcome.wav") == "+OK"
    (sendmsg,) = [cmd for cmd in server.received if cmd.line.startswith("sendmsg")]
    assert sendmsg == Command(
        "sendmsg 3f0a6c1e",
        {"call-command": "execute", "execute-app-name": "playback", "execute-app-arg": "/tmp/welcome.wav"},
    )
    with pytest.raises(EslCommandError, match="invalid session id"):
        await h.client.execute("no-such-uuid", "hangup")


# -- bgapi -----------------------------------------------------------------------


async def test_bgapi_jobs_correlated_by_our_job_uuid_when_completed_out_of_order(
    server: FakeFreeSwitch, make_client: Callable[..., Harness]
) -> None:
    h = await started(make_client())
    first = asyncio.create_task(h.client.bgapi("originate sofia/gateway/gw/15551230001 &park()"))
    second = asyncio.create_task(h.client.bgapi("originate sofia/gateway/gw/15551230002 &park()"))
    job_a = await server.next_job()
    job_b = await server.next_job()
    jobs = {job.command.split()[1]: job for job in (job_a, job_b)}
    assert job_a.uuid != job_b.uuid
    assert all(len(job.uuid) == 36 for job in (job_a, job_b))  # our uuid4, not the fake's

    # An unrelated job result goes to the listeners, then the two jobs finish backwards.
    server.current.send(event("BACKGROUND_JOB", ("Job-UUID", "someone-else"), body="+OK other\n"))
    server.current.finish_job(jobs["sofia/gateway/gw/15551230002"], "+OK uuid-two\n")
    # The client reads in order: once the second job is done, the unrelated result before
    # it was read too, and the first job must still be waiting.
    assert await asyncio.wait_for(second, 5) == "+OK uuid-two\n"
    assert not first.done()
    server.current.finish_job(jobs["sofia/gateway/gw/15551230001"], "+OK uuid-one\n")

    assert await first == "+OK uuid-one\n"
    assert h.event_names() == ["BACKGROUND_JOB"]
    assert h.events[-1].job_uuid == "someone-else"


async def test_bgapi_job_error_raises(server: FakeFreeSwitch, make_client: Callable[..., Harness]) -> None:
    h = await started(make_client())
    task = asyncio.create_task(h.client.bgapi("originate sofia/gateway/gw/15551230001 &park()"))
    job = await server.next_job()
    job.conn.finish_job(job, "-ERR USER_BUSY\n")
    with pytest.raises(EslCommandError, match="USER_BUSY") as excinfo:
        await task
    assert excinfo.value.reply == "-ERR USER_BUSY"


async def test_bgapi_without_result_times_out(
    server: FakeFreeSwitch, make_client: Callable[..., Harness]
) -> None:
    h = await started(make_client())
    with pytest.raises(EslTimeout, match="bgapi originate"):
        await h.client.bgapi("originate sofia/gateway/gw/1 &park()", timeout=0.05)
    await server.next_job()
    assert h.client.connected


# -- events ----------------------------------------------------------------------


async def test_events_reach_listeners_decoded_even_if_one_raises(
    server: FakeFreeSwitch, make_client: Callable[..., Harness]
) -> None:
    h = make_client()

    def broken(_: EslEvent) -> None:
        raise RuntimeError("listener bug")

    h.client.add_event_listener(broken)
    await started(h)
    uid = "3f0a6c1e-9d2b-4e8a-a1b2-c3d4e5f60718"
    server.current.send(
        event(
            "CHANNEL_CREATE",
            ("Unique-ID", uid),
            ("Channel-Name", "sofia/internal/1001@192.168.1.10:5060"),
        )
        + event(
            "CHANNEL_ANSWER",
            ("Unique-ID", uid),
            ("Caller-Caller-ID-Name", "Alice Smith"),
            ("Caller-Caller-ID-Number", "+15551230001"),
            ("variable_note", "a: b & c=d%"),
        )
        + event("CHANNEL_HANGUP_COMPLETE", ("Unique-ID", uid), ("Hangup-Cause", "NORMAL_CLEARING"))
    )

    await eventually(
        lambda: h.event_names() == ["CHANNEL_CREATE", "CHANNEL_ANSWER", "CHANNEL_HANGUP_COMPLETE"]
    )
    create, answer, hangup = [e for e in h.events if e.name != "HEARTBEAT"]
    assert create.headers["Channel-Name"] == "sofia/internal/1001@192.168.1.10:5060"
    assert answer.unique_id == uid
    assert answer.headers["Caller-Caller-ID-Name"] == "Alice Smith"
    assert answer.headers["Caller-Caller-ID-Number"] == "+15551230001"
    assert answer.headers["variable_note"] == "a: b & c=d%"
    assert hangup.get("hangup-cause") == "NORMAL_CLEARING"
    assert h.client.connected


async def test_malformed_frame_is_counted_and_survived(
    server: FakeFreeSwitch, make_client: Callable[..., Harness], caplog: pytest.LogCaptureFixture
) -> None:
    h = await started(make_client())
    broken = b"Event-Name: CHANNEL_ANSWER\nthis line has no separator\n\n"
    server.current.send(
        b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(broken)
        + broken
        + event("CHANNEL_BRIDGE", ("Unique-ID", "after-broken"))
    )

    await eventually(lambda: "CHANNEL_BRIDGE" in h.event_names())
    assert h.client.malformed_frames == 1
    assert "CHANNEL_ANSWER" not in h.event_names()
    assert h.client.connected and h.states == [True]
    assert "malformed" in caplog.text
    assert await h.client.api("status") == STATUS


# -- liveness, loss and reconnect -----------------------------------------------


async def test_missing_heartbeat_forces_reconnect(
    server: FakeFreeSwitch, make_client: Callable[..., Harness]
) -> None:
    h = await started(make_client(heartbeat_timeout=0.2))
    await asyncio.sleep(0.3)  # heartbeats every 0.05 s keep an idle connection alive
    assert h.states == [True]
    server.current.heartbeats = False  # the peer goes silent but keeps the socket open

    await eventually(lambda: h.states == [True, False, True])
    assert h.client.reconnects == 1
    assert h.client.last_error is not None and "HEARTBEAT" in h.client.last_error
    assert await h.client.api("status") == STATUS


async def test_disconnect_notice_ends_the_session_and_reconnects(
    server: FakeFreeSwitch, make_client: Callable[..., Harness]
) -> None:
    h = await started(make_client())
    server.current.send(disconnect_notice())
    await eventually(lambda: h.states == [True, False, True])
    assert h.client.last_error is not None and "disconnect notice" in h.client.last_error

    # "exit" is answered with +OK bye, then the notice and a close.
    assert (await h.client.command("exit")).reply_text == "+OK bye"
    await eventually(lambda: h.states == [True, False, True, False, True])
    assert h.client.reconnects == 2


async def test_server_restart_reconnects_with_backoff(
    server: FakeFreeSwitch, make_client: Callable[..., Harness]
) -> None:
    rng = RecordingRandom()
    h = await started(make_client(rng=rng, backoff_initial=0.01, backoff_max=0.04))

    await server.stop()
    await eventually(lambda: h.states == [True, False])
    assert not h.client.connected
    with pytest.raises(EslNotConnected):
        await h.client.api("status")
    await eventually(lambda: len(rng.caps) >= 5)  # several refused attempts while down
    assert h.client.last_error is not None
    await server.start()  # same port

    await eventually(lambda: h.states == [True, False, True])
    assert h.client.reconnects == 1
    # Full jitter in [0, cap]; cap doubles from backoff_initial up to backoff_max.
    assert set(rng.lows) == {0.0}
    assert rng.caps[:5] == pytest.approx([0.01, 0.02, 0.04, 0.04, 0.04])
    assert await h.client.api("status") == STATUS

    # The successful session reset the backoff: the next loss starts again at the initial cap.
    attempts_before = len(rng.caps)
    server.drop()
    await eventually(lambda: h.states == [True, False, True, False, True])
    assert rng.caps[attempts_before] == pytest.approx(0.01)
    assert h.client.reconnects == 2


async def test_pending_bgapi_originate_fails_on_loss_and_is_never_resent(
    server: FakeFreeSwitch, make_client: Callable[..., Harness]
) -> None:
    h = await started(make_client())
    originate = asyncio.create_task(h.client.bgapi("originate sofia/gateway/gw/15551230001 &park()"))
    job = await server.next_job()  # acknowledged (+OK Job-UUID), result still pending

    server.drop()
    with pytest.raises(EslConnectionLost, match="will not be re-sent"):
        await originate
    await eventually(lambda: h.states == [True, False, True])

    # A full round trip on the new connection: anything re-sent would have arrived first.
    assert await h.client.api("status") == STATUS
    assert server.count("bgapi originate") == 1
    assert server.count("auth ") == 2
    # A result for the old job on the new connection would go to listeners, not resolve it.
    server.current.finish_job(job, "+OK too-late\n")
    await eventually(lambda: "BACKGROUND_JOB" in h.event_names())


async def test_stop_fails_pending_commands_and_reports_disconnect(
    server: FakeFreeSwitch, make_client: Callable[..., Harness]
) -> None:
    h = await started(make_client())
    pending = asyncio.create_task(h.client.api("sleep 0.5"))
    await eventually(lambda: server.count("api sleep") == 1)

    await h.client.stop()

    with pytest.raises(EslConnectionLost):
        await pending
    assert not h.client.connected
    assert h.states == [True, False]
    with pytest.raises(EslNotConnected):
        await h.client.api("status")
    with contextlib.suppress(Exception):
        await h.client.stop()  # idempotent
