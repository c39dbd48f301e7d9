"""FastAGI server over real sockets, with a fake Asterisk written here."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from softswitch.core.masking import mask_number
from softswitch.engines.asterisk.agi.codec import AgiResponse
from softswitch.engines.asterisk.agi.server import (
    AgiCommandError,
    AgiHangup,
    AgiServer,
    AgiSession,
    AgiTimeout,
)

Handler = Callable[[AgiSession], Awaitable[None]]
IO_TIMEOUT = 2.0


def env_bytes(script: str = "route", callerid: str = "13800138000") -> bytes:
    return (
        "agi_network: yes\n"
        f"agi_network_script: {script}\n"
        f"agi_request: agi://127.0.0.1:4573/{script}\n"
        "agi_channel: PJSIP/trunk-cn-00000012\n"
        "agi_language: en\n"
        "agi_type: PJSIP\n"
        "agi_uniqueid: 1718000000.37\n"
        "agi_version: 22.1.0\n"
        f"agi_callerid: {callerid}\n"
        "agi_calleridname: Zhang San\n"
        "agi_dnid: 4008001234\n"
        "agi_context: from-trunk\n"
        "agi_extension: 4008001234\n"
        "agi_priority: 2\n"
        "agi_accountcode: \n"
        "agi_arg_1: inbound\n"
        "\n"
    ).encode()


class RecordingObserver:
    def __init__(self) -> None:
        self.started = 0
        self.outcomes: asyncio.Queue[str] = asyncio.Queue()
        self.protocol_errors: list[str] = []

    def session_started(self) -> None:
        self.started += 1

    def session_finished(self, outcome: str) -> None:
        self.outcomes.put_nowait(outcome)

    def protocol_error(self, kind: str) -> None:
        self.protocol_errors.append(kind)

    async def outcome(self) -> str:
        return await asyncio.wait_for(self.outcomes.get(), IO_TIMEOUT)


class FakeAsterisk:
    """The Asterisk side of one FastAGI connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int, env: bytes | None = None) -> FakeAsterisk:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        fake = cls(reader, writer)
        await fake.send(env_bytes() if env is None else env)
        return fake

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def expect(self, line: bytes) -> None:
        got = await asyncio.wait_for(self.reader.readline(), IO_TIMEOUT)
        assert got == line

    async def exchange(self, line: bytes, reply: bytes) -> None:
        await self.expect(line)
        await self.send(reply)

    async def expect_closed(self) -> None:
        """The server closed the connection without sending anything more."""
        try:
            rest = await asyncio.wait_for(self.reader.read(), IO_TIMEOUT)
        except ConnectionResetError:
            rest = b""
        assert rest == b""

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass


ServerFactory = Callable[..., Awaitable[tuple[AgiServer, RecordingObserver]]]


@pytest.fixture
async def make_server() -> AsyncIterator[ServerFactory]:
    servers: list[AgiServer] = []

    async def factory(handlers: dict[str, Handler], **options: Any) -> tuple[AgiServer, RecordingObserver]:
        observer = RecordingObserver()
        server = AgiServer(handlers.get, port=0, observer=observer, **options)
        await server.start()
        servers.append(server)
        return server, observer

    yield factory
    for server in servers:
        await server.stop(grace=0.5)


# ---------------------------------------------------------------------------
# Happy path
# ---------------------------------------------------------------------------


async def test_handler_sets_variables_exact_bytes(make_server: ServerFactory) -> None:
    seen: dict[str, Any] = {}

    async def route(session: AgiSession) -> None:
        seen["args"] = session.env.args
        seen["callerid"] = session.env.callerid
        await session.set_variable("SS_ACTION", "dial")
        await session.set_variable("SS_TARGET", 'PJSIP/1001 "x"')
        seen["lang"] = await session.get_variable("CHANNEL(language)")
        seen["unset"] = await session.get_variable("NOPE")
        await session.verbose("routed to 1001", level=3)

    server, observer = await make_server({"route": route})
    ast = await FakeAsterisk.connect(server.port)
    await ast.exchange(b"SET VARIABLE SS_ACTION dial\n", b"200 result=1\n")
    await ast.exchange(b'SET VARIABLE SS_TARGET "PJSIP/1001 \\"x\\""\n', b"200 result=1\n")
    await ast.exchange(b"GET VARIABLE CHANNEL(language)\n", b"200 result=1 (en)\n")
    await ast.exchange(b"GET VARIABLE NOPE\n", b"200 result=0\n")
    await ast.exchange(b'VERBOSE "routed to 1001" 3\n', b"200 result=1\n")
    await ast.expect_closed()
    assert await observer.outcome() == "ok"
    assert seen == {"args": ("inbound",), "callerid": "13800138000", "lang": "en", "unset": None}
    assert observer.started == 1 and observer.protocol_errors == []
    await ast.close()


async def test_media_helpers(make_server: ServerFactory) -> None:
    seen: dict[str, Any] = {}

    async def ivr(session: AgiSession) -> None:
        await session.answer()
        seen["stream"] = await session.stream_file("welcome", "12#")
        seen["silent"] = await session.stream_file("menu")
        seen["data"] = await session.get_data("enter-pin", 3000, 4)
        seen["data_full"] = await session.get_data("enter-pin", 3000, 4)
        seen["say"] = await session.say_digits("1234")
        seen["num"] = await session.say_number(42, "#")
        seen["exec"] = (await session.exec("Dial", "PJSIP/1001", "30", "tT")).result
        await session.exec("Playback", "hello world")
        await session.exec("Answer")
        await session.hangup()
        try:
            await session.set_variable("X", "1")
        except AgiHangup:
            seen["after_hangup"] = "AgiHangup"

    server, observer = await make_server({"ivr": ivr})
    ast = await FakeAsterisk.connect(server.port, env_bytes("ivr"))
    await ast.exchange(b"ANSWER\n", b"200 result=0\n")
    await ast.exchange(b"STREAM FILE welcome 12#\n", b"200 result=49 endpos=8000\n")
    await ast.exchange(b'STREAM FILE menu ""\n', b"200 result=0 endpos=16000\n")
    await ast.exchange(b"GET DATA enter-pin 3000 4\n", b"200 result=12 (timeout)\n")
    await ast.exchange(b"GET DATA enter-pin 3000 4\n", b"200 result=1234\n")
    await ast.exchange(b'SAY DIGITS 1234 ""\n', b"200 result=0\n")
    await ast.exchange(b"SAY NUMBER 42 #\n", b"200 result=35\n")
    await ast.exchange(b"EXEC Dial PJSIP/1001,30,tT\n", b"200 result=0\n")
    await ast.exchange(b'EXEC Playback "hello world"\n', b"200 result=0\n")
    await ast.exchange(b"EXEC Answer\n", b"200 result=0\n")
    await ast.exchange(b"HANGUP\n", b"200 result=1\nHANGUP\n")
    await ast.expect_closed()
    assert await observer.outcome() == "ok"
    assert seen == {
        "stream": "1",
        "silent": None,
        "data": ("12", True),
        "data_full": ("1234", False),
        "say": None,
        "num": "#",
        "exec": "0",
        "after_hangup": "AgiHangup",
    }
    await ast.close()


async def test_exec_refuses_comma_in_app_argument(make_server: ServerFactory) -> None:
    errors: list[str] = []

    async def route(session: AgiSession) -> None:
        try:
            await session.exec("Dial", "PJSIP/1001,30,tTL(1)", "30")
        except ValueError as exc:
            errors.append(str(exc))
        try:
            await session.set_variable("SS_ACTION", "dial\nEXEC System reboot")
        except ValueError as exc:
            errors.append(str(exc))

    server, observer = await make_server({"route": route})
    ast = await FakeAsterisk.connect(server.port)
    await ast.expect_closed()  # nothing at all was sent
    assert await observer.outcome() == "ok"
    assert "argument 1" in errors[0] and "argument 2" in errors[1]
    await ast.close()


# ---------------------------------------------------------------------------
# Hangups and command errors
# ---------------------------------------------------------------------------


async def test_hangup_notice_mid_command(make_server: ServerFactory) -> None:
    seen: list[str] = []

    async def route(session: AgiSession) -> None:
        await session.set_variable("SS_ACTION", "dial")
        try:
            await session.stream_file("welcome")
        except AgiHangup:
            seen.append("hangup")
            assert session.hung_up
        try:
            await session.set_variable("SS_AFTER", "1")  # must not reach the wire
        except AgiHangup:
            seen.append("refused")
            raise

    server, observer = await make_server({"route": route})
    ast = await FakeAsterisk.connect(server.port)
    await ast.exchange(b"SET VARIABLE SS_ACTION dial\n", b"200 result=1\n")
    # The HANGUP notice precedes the reply; the handler must not wait for it.
    await ast.exchange(b'STREAM FILE welcome ""\n', b"HANGUP\n")
    await ast.expect_closed()
    assert await observer.outcome() == "hangup"
    assert seen == ["hangup", "refused"]
    await ast.close()

    # The server survived: a second call is served normally.
    seen.clear()
    ast = await FakeAsterisk.connect(server.port)
    await ast.exchange(b"SET VARIABLE SS_ACTION dial\n", b"200 result=1\n")
    await ast.exchange(b'STREAM FILE welcome ""\n', b"200 result=0 endpos=100\n")
    await ast.exchange(b"SET VARIABLE SS_AFTER 1\n", b"200 result=1\n")
    await ast.expect_closed()
    assert await observer.outcome() == "ok"
    await ast.close()


async def test_hangup_notice_between_commands(make_server: ServerFactory) -> None:
    noticed = asyncio.Event()
    seen: list[bool] = []

    async def route(session: AgiSession) -> None:
        # The handler is busy elsewhere (a DB lookup, say) when Asterisk hangs up.
        for _ in range(200):
            if session.hung_up:
                break
            await asyncio.sleep(0.005)
        seen.append(session.hung_up)
        noticed.set()
        await session.set_variable("SS_ACTION", "dial")

    server, observer = await make_server({"route": route})
    ast = await FakeAsterisk.connect(server.port, env_bytes() + b"HANGUP\n")
    await asyncio.wait_for(noticed.wait(), IO_TIMEOUT)
    await ast.expect_closed()
    assert await observer.outcome() == "hangup"
    assert seen == [True]
    await ast.close()


async def test_511_dead_channel_is_hangup(make_server: ServerFactory) -> None:
    seen: list[bool] = []

    async def route(session: AgiSession) -> None:
        try:
            await session.answer()
        finally:
            seen.append(session.hung_up)

    server, observer = await make_server({"route": route})
    ast = await FakeAsterisk.connect(server.port)
    await ast.exchange(b"ANSWER\n", b"511 Command Not Permitted on a dead channel or intercept routine\n")
    await ast.expect_closed()
    assert await observer.outcome() == "hangup"
    assert seen == [True]
    await ast.close()


async def test_510_and_520_are_command_errors(make_server: ServerFactory) -> None:
    responses: list[AgiResponse] = []

    async def route(session: AgiSession) -> None:
        for verb in ("FROB", "SET VARIABLE"):
            try:
                await session.command(verb)
            except AgiCommandError as exc:
                responses.append(exc.response)
        await session.set_variable("SS_ACTION", "dial")  # still usable
        await session.command("FROB")  # unhandled: handler_error

    server, observer = await make_server({"route": route})
    ast = await FakeAsterisk.connect(server.port)
    await ast.exchange(b"FROB\n", b"510 Invalid or unknown command\n")
    await ast.exchange(
        b"SET VARIABLE\n",
        b"520-Invalid command syntax.  Proper usage follows:\n"
        b" Usage: SET VARIABLE <variablename> <value>\n"
        b"520 End of proper usage.\n",
    )
    await ast.exchange(b"SET VARIABLE SS_ACTION dial\n", b"200 result=1\n")
    await ast.exchange(b"FROB\n", b"510 Invalid or unknown command\n")
    await ast.expect_closed()
    assert await observer.outcome() == "handler_error"
    assert [r.code for r in responses] == [510, 520]
    assert "Usage: SET VARIABLE" in responses[1].raw
    await ast.close()


async def test_command_timeout_poisons_session(make_server: ServerFactory) -> None:
    seen: list[str] = []

    async def route(session: AgiSession) -> None:
        try:
            await session.set_variable("SS_ACTION", "dial")
        except AgiTimeout:
            seen.append("timeout")
        try:
            await session.set_variable("SS_ACTION", "dial")
        except AgiTimeout:
            seen.append("still broken")
            raise

    server, observer = await make_server({"route": route}, command_timeout=0.2)
    ast = await FakeAsterisk.connect(server.port)
    await ast.expect(b"SET VARIABLE SS_ACTION dial\n")
    await ast.expect_closed()  # the second command never reaches the wire
    assert await observer.outcome() == "timeout"
    assert seen == ["timeout", "still broken"]
    await ast.close()


# ---------------------------------------------------------------------------
# Bad peers, deadlines
# ---------------------------------------------------------------------------


async def test_garbage_environment_then_good_call(make_server: ServerFactory) -> None:
    calls: list[str] = []

    async def route(session: AgiSession) -> None:
        calls.append(session.env.script)
        await session.set_variable("SS_ACTION", "dial")

    server, observer = await make_server({"route": route})
    bad = await FakeAsterisk.connect(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await bad.expect_closed()
    assert await observer.outcome() == "protocol_error"
    assert observer.protocol_errors == ["environment"]
    await bad.close()

    good = await FakeAsterisk.connect(server.port)
    await good.exchange(b"SET VARIABLE SS_ACTION dial\n", b"200 result=1\n")
    await good.expect_closed()
    assert await observer.outcome() == "ok"
    assert calls == ["route"]
    await good.close()


async def test_garbage_response_is_protocol_error(make_server: ServerFactory) -> None:
    async def route(session: AgiSession) -> None:
        await session.set_variable("SS_ACTION", "dial")

    server, observer = await make_server({"route": route})
    ast = await FakeAsterisk.connect(server.port)
    await ast.exchange(b"SET VARIABLE SS_ACTION dial\n", b"OK, sure\n")
    await ast.expect_closed()
    assert await observer.outcome() == "protocol_error"
    assert observer.protocol_errors == ["response"]
    await ast.close()


async def test_incomplete_environment_dropped_after_env_timeout(
    make_server: ServerFactory,
) -> None:
    server, observer = await make_server({}, env_timeout=0.2)
    loop = asyncio.get_running_loop()
    ast = await FakeAsterisk.connect(server.port, b"agi_network: yes\nagi_channel: x\n")
    started = loop.time()
    await ast.expect_closed()
    assert 0.15 < loop.time() - started < 1.5
    assert await observer.outcome() == "timeout"
    await ast.close()


async def test_connect_and_close_is_not_a_protocol_error(make_server: ServerFactory) -> None:
    server, observer = await make_server({})
    ast = await FakeAsterisk.connect(server.port, b"")
    await ast.close()
    assert await observer.outcome() == "hangup"
    ast = await FakeAsterisk.connect(server.port, b"agi_network: yes\n")
    await ast.close()
    assert await observer.outcome() == "protocol_error"
    assert observer.protocol_errors == ["truncated_environment"]


async def test_no_handler_closes_without_sending(make_server: ServerFactory) -> None:
    server, observer = await make_server({})
    ast = await FakeAsterisk.connect(server.port, env_bytes("unknown"))
    await ast.expect_closed()
    assert await observer.outcome() == "no_handler"
    await ast.close()


async def test_call_deadline_cuts_slow_handler(make_server: ServerFactory) -> None:
    cancelled: list[bool] = []

    async def slow(session: AgiSession) -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    server, observer = await make_server({"route": slow}, call_deadline=0.2)
    ast = await FakeAsterisk.connect(server.port)
    await ast.expect_closed()
    assert await observer.outcome() == "timeout"
    assert cancelled == [True]
    assert server.active_sessions == 0
    await ast.close()


async def test_call_deadline_cuts_command_waiting_for_reply(make_server: ServerFactory) -> None:
    async def route(session: AgiSession) -> None:
        await session.stream_file("long-prompt")  # media helpers wait until the deadline

    server, observer = await make_server({"route": route}, call_deadline=0.3)
    ast = await FakeAsterisk.connect(server.port)
    await ast.expect(b'STREAM FILE long-prompt ""\n')
    await ast.expect_closed()
    assert await observer.outcome() == "timeout"
    await ast.close()


async def test_handler_error_is_logged_masked_and_server_survives(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(session: AgiSession) -> None:
        raise RuntimeError(f"no route for {session.env.callerid}")

    async def route(session: AgiSession) -> None:
        await session.set_variable("SS_ACTION", "dial")

    caplog.set_level(logging.DEBUG, logger="softswitch.engines.asterisk.agi")
    server, observer = await make_server({"broken": broken, "route": route})
    ast = await FakeAsterisk.connect(server.port, env_bytes("broken"))
    await ast.expect_closed()
    assert await observer.outcome() == "handler_error"
    await ast.close()
    assert "13800138000" not in caplog.text
    assert "138****8000" in caplog.text and "RuntimeError" in caplog.text

    ast = await FakeAsterisk.connect(server.port)
    await ast.exchange(b"SET VARIABLE SS_ACTION dial\n", b"200 result=1\n")
    await ast.expect_closed()
    assert await observer.outcome() == "ok"
    await ast.close()


async def test_broken_observer_does_not_break_calls() -> None:
    class Exploding:
        def session_started(self) -> None:
            raise RuntimeError("metrics down")

        def session_finished(self, outcome: str) -> None:
            raise RuntimeError("metrics down")

        def protocol_error(self, kind: str) -> None:
            raise RuntimeError("metrics down")

    done = asyncio.Event()

    async def route(session: AgiSession) -> None:
        await session.set_variable("SS_ACTION", "dial")
        done.set()

    server = AgiServer({"route": route}.get, port=0, observer=Exploding())
    await server.start()
    try:
        ast = await FakeAsterisk.connect(server.port)
        await ast.exchange(b"SET VARIABLE SS_ACTION dial\n", b"200 result=1\n")
        await ast.expect_closed()
        assert done.is_set()
        await ast.close()
    finally:
        await server.stop(grace=0.5)


# ---------------------------------------------------------------------------
# Shutdown
# ---------------------------------------------------------------------------


async def test_stop_lets_in_flight_command_finish_and_refuses_new(
    make_server: ServerFactory,
) -> None:
    results: list[str | None] = []

    async def route(session: AgiSession) -> None:
        results.append(await session.get_variable("SS_ROUTE"))
        await session.set_variable("SS_ACTION", "dial")

    server, observer = await make_server({"route": route})
    ast = await FakeAsterisk.connect(server.port)
    await ast.expect(b"GET VARIABLE SS_ROUTE\n")
    assert server.active_sessions == 1

    stopping = asyncio.create_task(server.stop(grace=2.0))
    await asyncio.sleep(0)  # one turn of the loop: stop() closes the listener before its first await
    assert not server.listening
    with pytest.raises(OSError):
        await FakeAsterisk.connect(server.port)
    assert not stopping.done()

    await ast.send(b"200 result=1 (pstn)\n")
    await ast.exchange(b"SET VARIABLE SS_ACTION dial\n", b"200 result=1\n")
    await asyncio.wait_for(stopping, IO_TIMEOUT)
    await ast.expect_closed()
    assert await observer.outcome() == "ok"
    assert results == ["pstn"] and server.active_sessions == 0
    await ast.close()


async def test_stop_cancels_sessions_after_grace(make_server: ServerFactory) -> None:
    async def route(session: AgiSession) -> None:
        await session.get_variable("NEVER_ANSWERED")

    server, observer = await make_server({"route": route})
    ast = await FakeAsterisk.connect(server.port)
    await ast.expect(b"GET VARIABLE NEVER_ANSWERED\n")
    loop = asyncio.get_running_loop()
    started = loop.time()
    await server.stop(grace=0.2)
    assert loop.time() - started < 1.0
    await ast.expect_closed()
    assert await observer.outcome() == "timeout"
    assert server.active_sessions == 0
    await ast.close()


# ---------------------------------------------------------------------------
# Property: garbage never takes the server down
# ---------------------------------------------------------------------------


async def _garbage_then_good_call(garbage: bytes, as_response: bool) -> None:
    observer = RecordingObserver()

    async def route(session: AgiSession) -> None:
        await session.set_variable("SS_ACTION", "dial")

    server = AgiServer({"route": route}.get, port=0, observer=observer, command_timeout=1.0, env_timeout=1.0)
    await server.start()
    try:
        bad = await FakeAsterisk.connect(server.port, env_bytes() if as_response else garbage)
        if as_response:
            await bad.expect(b"SET VARIABLE SS_ACTION dial\n")
            await bad.send(garbage)
        await bad.close()
        await observer.outcome()

        good = await FakeAsterisk.connect(server.port)
        await good.exchange(b"SET VARIABLE SS_ACTION dial\n", b"200 result=1\n")
        await good.expect_closed()
        assert await observer.outcome() == "ok"
        await good.close()
        assert server.active_sessions == 0
    finally:
        await server.stop(grace=0.5)


_garbage = st.one_of(
    st.binary(max_size=2000),
    st.lists(
        st.sampled_from(
            [b"agi_x: y\n", b"\n", b"200 result=1\n", b"HANGUP\n", b"520-x\n", b"(", b"\xff", b"x"]
        ),
        max_size=30,
    ).map(b"".join),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=_garbage, as_response=st.booleans())
def test_random_garbage_never_crashes_server(garbage: bytes, as_response: bool) -> None:
    asyncio.run(_garbage_then_good_call(garbage, as_response))


def test_mask_number() -> None:
    assert mask_number("13800138000") == "138****8000"
    assert mask_number("+86 138-0013-8000") == "+86 1**-****-8000"
    assert mask_number("PJSIP/13800138000-0000001a") == "PJSIP/138********-***0001a"
    assert mask_number("1001") == "1001"
    assert mask_number("1234567") == "1234567"
    assert mask_number("") == ""
