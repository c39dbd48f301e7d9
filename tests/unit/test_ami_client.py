"""Tests for the asyncio AMI client against a small in-process fake Asterisk."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from softswitch.engines.asterisk.ami.client import (
    AmiActionError,
    AmiClient,
    AmiConnectionLost,
    AmiNotConnected,
    AmiTimeout,
    full_jitter_backoff,
)
from softswitch.engines.asterisk.ami.codec import AmiMessage, AmiParser

USERNAME = "softswitch"
SECRET = "Sup3r-Secret-Value"
BANNER = b"Asterisk Call Manager/9.0.0\r\n"
CLIENT_LOGGER = "softswitch.engines.asterisk.ami.client"


def frame(*pairs: tuple[str, str]) -> bytes:
    return b"".join(f"{key}: {value}\r\n".encode() for key, value in pairs) + b"\r\n"


def reply(request: AmiMessage, *pairs: tuple[str, str], response: str = "Success") -> bytes:
    assert request.action_id is not None
    return frame(("Response", response), ("ActionID", request.action_id), *pairs)


@dataclass
class FakeConn:
    writer: asyncio.StreamWriter
    answer_ping: bool = True

    def send(self, data: bytes) -> None:
        self.writer.write(data)


class FakeAmi:
    """Just enough of Asterisk's manager: banner, Login, Ping; other actions are handed
    to the test through ``next_action()`` so it can answer them (in any order) or not."""

    def __init__(self) -> None:
        self.port = 0
        self.received: list[AmiMessage] = []
        self.conns: list[FakeConn] = []
        self._handlers: set[asyncio.Task[None]] = set()
        self._actions: asyncio.Queue[tuple[AmiMessage, FakeConn]] = asyncio.Queue()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        # Reuses the previous port on restart so the client reconnects to "the same" PBX.
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        self.drop()
        await self._server.wait_closed()
        # Let connection handlers see EOF and finish, so none is cancelled at loop close.
        await asyncio.wait_for(asyncio.gather(*self._handlers, return_exceptions=True), 1.0)

    def drop(self) -> None:
        for conn in self.conns:
            conn.writer.close()
        self.conns.clear()

    @property
    def current(self) -> FakeConn:
        return self.conns[-1]

    def count(self, action: str) -> int:
        return sum(1 for msg in self.received if msg.get("Action") == action)

    async def next_action(self) -> tuple[AmiMessage, FakeConn]:
        return await asyncio.wait_for(self._actions.get(), 1.0)

    def no_unanswered_actions(self) -> bool:
        return self._actions.empty()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = FakeConn(writer)
        self.conns.append(conn)
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)
        writer.write(BANNER)
        parser = AmiParser()
        try:
            while data := await reader.read(65536):
                for msg in parser.feed(data):
                    assert isinstance(msg, AmiMessage)
                    self.received.append(msg)
                    self._on_action(conn, msg)
        except ConnectionError:
            pass
        finally:
            writer.close()
            if conn in self.conns:
                self.conns.remove(conn)

    def _on_action(self, conn: FakeConn, msg: AmiMessage) -> None:
        action = (msg.get("Action") or "").lower()
        if action == "login":
            if msg.get("Username") == USERNAME and msg.get("Secret") == SECRET:
                # Like Asterisk, FullyBooted follows the login response immediately.
                conn.send(
                    reply(msg, ("Message", "Authentication accepted"))
                    + frame(
                        ("Event", "FullyBooted"),
                        ("Privilege", "system,all"),
                        ("Status", "Fully Booted"),
                    )
                )
            else:
                conn.send(reply(msg, ("Message", "Authentication failed"), response="Error"))
                conn.writer.close()
        elif action == "ping":
            if conn.answer_ping:
                conn.send(reply(msg, ("Ping", "Pong"), ("Timestamp", "1700000000.000000")))
        else:
            self._actions.put_nowait((msg, conn))


async def eventually(predicate: Callable[[], bool], within: float = 2.0) -> None:
    async with asyncio.timeout(within):
        # Polling (ASYNC110) is deliberate: the predicates read plain lists that the
        # client fills from callbacks, so there is no Event to wait on.
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


@dataclass
class Harness:
    client: AmiClient
    events: list[AmiMessage]
    states: list[bool]

    def event_names(self) -> list[str | None]:
        return [e.event for e in self.events]


class RecordingRandom(random.Random):
    """Records the upper bound of every uniform() call (the backoff cap)."""

    def __init__(self) -> None:
        super().__init__(7)
        self.caps: list[float] = []
        self.lows: list[float] = []

    def uniform(self, a: float, b: float) -> float:
        self.lows.append(a)
        self.caps.append(b)
        return super().uniform(a, b)


@pytest.fixture
async def server() -> AsyncIterator[FakeAmi]:
    fake = FakeAmi()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def make_client(server: FakeAmi) -> AsyncIterator[Callable[..., Harness]]:
    created: list[AmiClient] = []

    def factory(**overrides: Any) -> Harness:
        options: dict[str, Any] = {
            "connect_timeout": 1.0,
            "action_timeout": 1.0,
            "ping_interval": 5.0,
            "ping_timeout": 1.0,
            "backoff_initial": 0.01,
            "backoff_max": 0.05,
            "rng": random.Random(1),
        }
        secret = overrides.pop("secret", SECRET)
        options.update(overrides)
        client = AmiClient("127.0.0.1", server.port, USERNAME, secret, **options)
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


# -- login ---------------------------------------------------------------------


async def test_login_sends_credentials_and_reports_state(
    server: FakeAmi, make_client: Callable[..., Harness], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=CLIENT_LOGGER)
    h = await started(make_client())

    assert h.client.connected
    assert h.states == [True]
    assert h.client.reconnects == 0
    (login,) = [m for m in server.received if m.get("Action") == "Login"]
    assert login.get("Username") == USERNAME
    assert login.get("Secret") == SECRET
    assert login.get("Events") == "on"
    await eventually(lambda: h.event_names() == ["FullyBooted"])
    assert SECRET not in caplog.text
    assert SECRET not in repr(h.client)


async def test_wrong_secret_never_connects_and_is_not_logged(
    server: FakeAmi, make_client: Callable[..., Harness], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=CLIENT_LOGGER)
    wrong = "Wrong-Secret-Value"
    h = make_client(secret=wrong)
    await h.client.start()

    assert not await h.client.wait_connected(0.2)
    assert h.states == []
    assert h.client.last_error is not None
    assert "Authentication failed" in h.client.last_error
    assert server.count("Login") >= 2  # it keeps retrying, with backoff
    assert wrong not in caplog.text
    assert wrong not in repr(h.client)
    with pytest.raises(AmiNotConnected):
        await h.client.action("Ping")


@pytest.mark.parametrize(
    ("greeting", "expected_error"),
    [(b"", "no AMI banner"), (b"SSH-2.0-OpenSSH_9.6\r\n", "unexpected greeting")],
)
async def test_peer_that_is_not_asterisk_is_rejected(greeting: bytes, expected_error: str) -> None:
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        writer.write(greeting)
        await reader.read()  # then say nothing more until the client hangs up

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    client = AmiClient(
        "127.0.0.1",
        server.sockets[0].getsockname()[1],
        USERNAME,
        SECRET,
        connect_timeout=0.05,
        backoff_initial=0.01,
        backoff_max=0.02,
    )
    try:
        await client.start()
        assert not await client.wait_connected(0.15)
        assert client.last_error is not None and expected_error in client.last_error
    finally:
        await client.stop()
        server.close()
        for writer in writers:
            writer.close()
        await server.wait_closed()
        await asyncio.sleep(0.01)  # let the handlers observe EOF before the loop closes


async def test_action_before_start_raises_not_connected(
    make_client: Callable[..., Harness],
) -> None:
    with pytest.raises(AmiNotConnected):
        await make_client().client.action("Ping")


# -- actions -------------------------------------------------------------------


async def test_concurrent_actions_correlated_when_answered_out_of_order(
    server: FakeAmi, make_client: Callable[..., Harness]
) -> None:
    h = await started(make_client())
    status = asyncio.create_task(h.client.action("Status", {"Channel": "PJSIP/1001-00000001"}))
    getvar = asyncio.create_task(h.client.action("Getvar", {"Variable": "CDR(src)"}))

    first, conn = await server.next_action()
    second, _ = await server.next_action()
    requests = {first.get("Action"): first, second.get("Action"): second}
    assert requests["Status"].action_id != requests["Getvar"].action_id
    conn.send(reply(requests["Getvar"], ("Variable", "CDR(src)"), ("Value", "1001")))
    conn.send(reply(requests["Status"], ("Message", "Channel status will follow")))

    assert (await getvar).get("Value") == "1001"
    assert (await status).get("Message") == "Channel status will follow"


async def test_action_timeout_drops_pending_and_ignores_late_reply(
    server: FakeAmi, make_client: Callable[..., Harness], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=CLIENT_LOGGER)
    h = await started(make_client())

    with pytest.raises(AmiTimeout):
        await h.client.action("Status", timeout=0.05)
    request, conn = await server.next_action()
    conn.send(reply(request, ("Message", "too late")))

    # A later round trip proves the connection survived and the late reply was consumed.
    getvar = asyncio.create_task(h.client.action("Getvar", {"Variable": "X"}))
    request2, conn = await server.next_action()
    conn.send(reply(request2, ("Value", "ok")))
    assert (await getvar).get("Value") == "ok"
    assert h.client.connected
    assert "unknown ActionID" in caplog.text
    assert all(e.is_event for e in h.events)  # responses never leak to listeners


async def test_error_response_raises_action_error(
    server: FakeAmi, make_client: Callable[..., Harness]
) -> None:
    h = await started(make_client())
    task = asyncio.create_task(h.client.action("Hangup", {"Channel": "PJSIP/nope"}))
    request, conn = await server.next_action()
    conn.send(reply(request, ("Message", "No such channel"), response="Error"))

    with pytest.raises(AmiActionError, match="No such channel") as excinfo:
        await task
    assert excinfo.value.message == "No such channel"
    assert excinfo.value.response.response == "Error"
    assert h.client.connected


async def test_header_injection_is_rejected_before_sending(
    server: FakeAmi, make_client: Callable[..., Harness]
) -> None:
    h = await started(make_client())
    with pytest.raises(ValueError, match="Channel"):
        await h.client.action("Originate", {"Channel": "PJSIP/1\r\nAction: Hangup"})
    assert server.count("Originate") == 0 and server.count("Hangup") == 0


async def test_action_list_collects_events_until_complete(
    server: FakeAmi, make_client: Callable[..., Harness]
) -> None:
    h = await started(make_client())
    await eventually(lambda: h.event_names() == ["FullyBooted"])
    task = asyncio.create_task(h.client.action_list("CoreShowChannels"))
    request, conn = await server.next_action()
    aid = request.action_id
    assert aid is not None
    conn.send(
        reply(request, ("EventList", "start"), ("Message", "Channels will follow"))
        + frame(("Event", "CoreShowChannel"), ("ActionID", aid), ("Channel", "PJSIP/1001-1"))
        # An unrelated event in the middle of the list goes to the listeners.
        + frame(("Event", "Newchannel"), ("Channel", "PJSIP/1002-3"))
        + frame(("Event", "CoreShowChannel"), ("ActionID", aid), ("Channel", "PJSIP/2000-2"))
        + frame(
            ("Event", "CoreShowChannelsComplete"),
            ("ActionID", aid),
            ("EventList", "Complete"),
            ("ListItems", "2"),
        )
    )

    response, events = await task
    assert response.get("EventList") == "start"
    assert [e.get("Channel") for e in events] == ["PJSIP/1001-1", "PJSIP/2000-2"]
    assert {e.event for e in events} == {"CoreShowChannel"}
    assert h.event_names() == ["FullyBooted", "Newchannel"]


# -- events --------------------------------------------------------------------


async def test_events_reach_listeners_even_if_one_raises(
    server: FakeAmi, make_client: Callable[..., Harness]
) -> None:
    h = make_client()

    def broken(event: AmiMessage) -> None:
        raise RuntimeError("listener bug")

    h.client.add_event_listener(broken)
    await started(h)
    server.current.send(
        frame(("Event", "Newchannel"), ("Channel", "PJSIP/1001-1"), ("Uniqueid", "1.1"))
        + frame(("Event", "Hangup"), ("Channel", "PJSIP/1001-1"), ("Cause", "16"))
    )

    await eventually(lambda: h.event_names() == ["FullyBooted", "Newchannel", "Hangup"])
    assert h.events[2].get("Cause") == "16"
    assert h.client.connected


async def test_malformed_frame_is_counted_and_survived(
    server: FakeAmi, make_client: Callable[..., Harness], caplog: pytest.LogCaptureFixture
) -> None:
    h = await started(make_client())
    server.current.send(
        b"Event: Broken\r\nthis line has no separator\r\n\r\n" + frame(("Event", "AfterBroken"))
    )

    await eventually(lambda: "AfterBroken" in h.event_names())
    assert h.client.malformed_frames == 1
    assert "Broken" not in h.event_names()
    assert h.client.connected and h.states == [True]
    assert "malformed" in caplog.text


# -- connection loss and reconnect ---------------------------------------------


async def test_unanswered_keepalive_forces_reconnect(
    server: FakeAmi, make_client: Callable[..., Harness]
) -> None:
    h = await started(make_client(ping_interval=0.05, ping_timeout=0.05))
    await eventually(lambda: server.count("Ping") >= 1)  # keepalive is running
    server.current.answer_ping = False  # the peer goes silent but keeps the socket open

    await eventually(lambda: h.states == [True, False, True])
    assert h.client.reconnects == 1
    assert h.client.last_error is not None and "Ping" in h.client.last_error
    assert await h.client.wait_connected(1.0)


async def test_server_restart_reconnects_with_backoff(
    server: FakeAmi, make_client: Callable[..., Harness]
) -> None:
    rng = RecordingRandom()
    h = await started(make_client(rng=rng, backoff_initial=0.01, backoff_max=0.04))

    await server.stop()
    await eventually(lambda: h.states == [True, False])
    assert not h.client.connected
    await eventually(lambda: len(rng.caps) >= 5)  # several refused attempts while down
    assert h.client.last_error is not None
    await server.start()  # same port

    await eventually(lambda: h.states == [True, False, True])
    assert h.client.reconnects == 1
    # Full jitter in [0, cap]; cap doubles from backoff_initial up to backoff_max.
    assert set(rng.lows) == {0.0}
    assert rng.caps[:5] == pytest.approx([0.01, 0.02, 0.04, 0.04, 0.04])

    # The successful login reset the backoff: the next loss starts again at the initial cap.
    attempts_before = len(rng.caps)
    server.drop()
    await eventually(lambda: h.states == [True, False, True, False, True])
    assert rng.caps[attempts_before] == pytest.approx(0.01)
    assert h.client.reconnects == 2


async def test_pending_originate_fails_on_loss_and_is_never_resent(
    server: FakeAmi, make_client: Callable[..., Harness]
) -> None:
    h = await started(make_client())
    originate = asyncio.create_task(
        h.client.action(
            "Originate",
            {
                "Channel": "PJSIP/1001",
                "Context": "from-internal",
                "Exten": "2000",
                "Priority": 1,
                "Variable": ["CALLER=api", "TRACE=1"],
            },
        )
    )
    request, _ = await server.next_action()
    assert request.get_all("Variable") == ["CALLER=api", "TRACE=1"]

    server.drop()
    with pytest.raises(AmiConnectionLost):
        await originate
    await eventually(lambda: h.states == [True, False, True])

    # A full round trip on the new connection: anything re-sent would have arrived first.
    getvar = asyncio.create_task(h.client.action("Getvar", {"Variable": "X"}))
    request2, conn = await server.next_action()
    assert request2.get("Action") == "Getvar"
    conn.send(reply(request2, ("Value", "1")))
    await getvar
    assert server.count("Originate") == 1
    assert server.no_unanswered_actions()


async def test_stop_fails_pending_actions_and_reports_disconnect(
    server: FakeAmi, make_client: Callable[..., Harness]
) -> None:
    h = await started(make_client())
    pending = asyncio.create_task(h.client.action("Status"))
    await server.next_action()

    await h.client.stop()

    with pytest.raises(AmiConnectionLost):
        await pending
    assert not h.client.connected
    assert h.states == [True, False]
    with pytest.raises(AmiNotConnected):
        await h.client.action("Ping")


# -- backoff -------------------------------------------------------------------


class MaxRandom(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return b


def test_full_jitter_backoff_doubles_and_caps() -> None:
    delays = [full_jitter_backoff(n, 0.5, 30.0, MaxRandom()) for n in range(9)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert full_jitter_backoff(10_000, 0.5, 30.0, MaxRandom()) == 30.0
    rng = random.Random(3)
    assert all(0.0 <= full_jitter_backoff(n, 0.5, 30.0, rng) <= 30.0 for n in range(50))
