"""The FreeSWITCH adapter's own logic, against a scripted peer speaking the outbound Event
Socket (fault injection: malformed frames, a hang-up mid-application) and as pure
functions. The call path through the real FreeSWITCH is tested in tests/e2e (engine
parametrised)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pytest

from dialplan.distribution import DialStep, Member
from softswitch.callpath.control import ControlError
from softswitch.callpath.registry import CallRegistry
from softswitch.core.clock import FixedClock
from softswitch.engines.freeswitch.channel import FsActions, FsPlan, facts_of
from softswitch.engines.freeswitch.control import live_channels_of, uuid_of
from softswitch.engines.freeswitch.esl.codec import EslCommand, EslParser
from softswitch.engines.freeswitch.events import EslChannelEvents
from softswitch.engines.freeswitch.outbound import ChannelGone, OutboundServer, OutboundSession

A = "0a1b2c3d-0000-4000-8000-00000000000a"
B = "0a1b2c3d-0000-4000-8000-00000000000b"
PLAN = FsPlan("127.0.0.3:5060", "phones", "softswitch", Path("/s"), Path("/c"), Path("/r"))


def _reply(headers: dict[str, str]) -> bytes:
    head = "".join(f"{k}: {quote(v)}\n" for k, v in headers.items())
    return f"Content-Type: command/reply\nReply-Text: +OK\n{head}\n".encode()


def _event(name: str, **headers: str) -> bytes:
    body = f"Event-Name: {name}\n" + "".join(f"{k}: {quote(v)}\n" for k, v in headers.items()) + "\n"
    return f"Content-Length: {len(body)}\nContent-Type: text/event-plain\n\n{body}".encode()


class ScriptedFreeSwitch:
    """Plays FreeSWITCH's side of one outbound socket: answers connect with the channel's
    data, acknowledges every command, and completes each executed application."""

    def __init__(self, port: int, data: dict[str, str], on_execute: dict[str, bytes] | None = None) -> None:
        self.port, self.data, self.on_execute = port, data, on_execute or {}
        self.commands: list[EslCommand] = []

    async def call(self, extra_before_connect: bytes = b"") -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        parser = EslParser(commands=True)
        writer.write(extra_before_connect)
        try:
            while data := await reader.read(65536):
                for cmd in parser.feed(data):
                    assert isinstance(cmd, EslCommand)
                    self.commands.append(cmd)
                    if cmd.line == "connect":
                        writer.write(_reply(self.data))
                        continue
                    writer.write(b"Content-Type: command/reply\nReply-Text: +OK\n\n")
                    app = cmd.get("execute-app-name")
                    if app is not None:
                        writer.write(self.on_execute.get(app, b""))
                        writer.write(
                            _event(
                                "CHANNEL_EXECUTE_COMPLETE",
                                **{"Unique-ID": A, "Application-UUID": cmd.get("Event-UUID") or ""},
                                variable_DIALSTATUS="NOANSWER" if app == "bridge" else "",
                            )
                        )
                await writer.drain()
        finally:
            writer.close()


@pytest.fixture
async def served() -> AsyncIterator[tuple[OutboundServer, list[OutboundSession], int]]:
    seen: list[OutboundSession] = []

    async def handler(session: OutboundSession) -> None:
        seen.append(session)
        done = await session.execute("playback", "/s/hello.wav")
        assert done.get("Application-UUID")
        await session.hangup()

    server = OutboundServer(handler, "127.0.0.1", 0)
    await server.start()
    assert server._server is not None
    port = server._server.sockets[0].getsockname()[1]
    yield server, seen, port
    await server.stop(1)


async def test_connect_first_then_one_application_awaited_by_its_uuid(
    served: tuple[OutboundServer, list[OutboundSession], int],
) -> None:
    _, seen, port = served
    fs = ScriptedFreeSwitch(port, {"Unique-ID": A, "Caller-Caller-ID-Number": "13912345678"})
    await asyncio.wait_for(fs.call(), 5)
    lines = [c.line for c in fs.commands]
    assert lines[:4] == [  # connect at once: else FreeSWITCH parks the call
        "connect",
        f"filter Unique-ID {A}",
        "event plain CHANNEL_EXECUTE_COMPLETE CHANNEL_HANGUP",
        "linger",
    ]
    play = fs.commands[4]
    assert (play.get("execute-app-name"), play.body) == ("playback", b"/s/hello.wav")
    assert play.get("content-type") == "text/plain" and play.get("Event-UUID")
    assert fs.commands[-1].get("call-command") == "hangup"
    assert seen[0].data["Caller-Caller-ID-Number"] == "13912345678"  # percent-decoded


async def test_a_malformed_frame_is_skipped_and_the_call_goes_on(
    served: tuple[OutboundServer, list[OutboundSession], int],
) -> None:
    _, _, port = served
    # an event whose body has no Event-Name and a header line without ": ": one frame
    # each, framing intact (a Content-Length that is not a number could not be survived)
    body = b"no separator here\n\n"
    garbage = b"Content-Length: %d\nContent-Type: text/event-plain\n\n%s" % (len(body), body)
    garbage += b"Reply-Text +OK\n\n"
    fs = ScriptedFreeSwitch(port, {"Unique-ID": A}, on_execute={"playback": garbage})
    await asyncio.wait_for(fs.call(), 5)
    assert fs.commands[-1].get("call-command") == "hangup"


async def test_a_hang_up_fails_what_waits_and_nothing_after_it_is_sent() -> None:
    async def handler(session: OutboundSession) -> None:
        with pytest.raises(ChannelGone):
            await session.execute("bridge", "sofia/carrier/1@x")
        with pytest.raises(ChannelGone):
            await session.execute("playback", "x")

    server = OutboundServer(handler, "127.0.0.1", 0)
    await server.start()
    assert server._server is not None
    port = server._server.sockets[0].getsockname()[1]
    hangup = _event("CHANNEL_HANGUP", **{"Unique-ID": A, "Hangup-Cause": "NORMAL_CLEARING"})

    class HangsUp(ScriptedFreeSwitch):
        async def call(self, extra_before_connect: bytes = b"") -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            parser = EslParser(commands=True)
            while data := await reader.read(65536):
                for cmd in parser.feed(data):
                    assert isinstance(cmd, EslCommand)
                    self.commands.append(cmd)
                    writer.write(
                        _reply(self.data)
                        if cmd.line == "connect"
                        else b"Content-Type: command/reply\nReply-Text: +OK\n\n"
                    )
                    if cmd.get("execute-app-name") == "bridge":
                        writer.write(hangup)
                        await writer.drain()
                        writer.close()
                        return
                await writer.drain()

    fs = HangsUp(port, {"Unique-ID": A})
    await asyncio.wait_for(fs.call(), 5)
    await server.stop(2)
    assert [c.get("execute-app-name") for c in fs.commands if c.get("execute-app-name")] == ["bridge"]


def test_facts_of_a_carrier_call_and_of_an_extensions_call() -> None:
    class S:
        def __init__(self, data: dict[str, str]) -> None:
            self.data, self.uuid = data, data["Unique-ID"]

        def var(self, name: str) -> str:
            return self.data.get(f"variable_{name}", "")

    carrier = S(
        {
            "Unique-ID": A,
            "Caller-Context": "public",
            "Caller-Caller-ID-Number": "anonymous",
            "Caller-Destination-Number": "4008001234",
        }
    )
    f = facts_of(carrier)  # type: ignore[arg-type]
    assert (f.linkedid, f.channel, f.caller, f.called, f.endpoint) == (
        A,
        f"freeswitch/{A}",
        "",
        "4008001234",
        "",
    )
    phone = S(
        {
            "Unique-ID": B,
            "Caller-Context": "default",
            "Caller-Caller-ID-Number": "8001",
            "Caller-Destination-Number": "8002",
            "variable_sip_auth_username": "t5x8001",
        }
    )
    assert facts_of(phone).endpoint == "t5x8001"  # type: ignore[arg-type]


def test_a_step_rings_its_members_at_once_each_leg_with_the_hard_stop() -> None:
    actions = FsActions(PLAN, ivr=lambda _c: asyncio.sleep(0), trunks=lambda: {"trunk-t1": "10.0.0.9:5070"})
    step = DialStep(
        (
            Member("13800138000", 20),
            Member("13900139000", 20, kind="external", via="trunk-t1"),
            Member("t5x8002", 20, kind="extension"),
        ),
        20,
    )
    dial = actions.dial_string(step, A, 60)
    assert dial.startswith(f"{{call_uuid={A},ss_call_id={A},call_timeout=20,leg_timeout=20}}")
    legs = dial.split("}", 1)[1].split(",")
    assert legs == [
        "[execute_on_answer='sched_hangup +60 ALLOTTED_TIMEOUT']sofia/carrier/13800138000@127.0.0.3:5060",
        "[execute_on_answer='sched_hangup +60 ALLOTTED_TIMEOUT']sofia/carrier/13900139000@10.0.0.9:5070",
        "[execute_on_answer='sched_hangup +60 ALLOTTED_TIMEOUT']sofia/phones/t5x8002%softswitch",
    ]
    assert "execute_on_answer" not in actions.dial_string(step, A, 0)  # no money, no hard stop


def test_events_fold_into_one_call_by_call_uuid() -> None:
    clock = FixedClock(datetime(2026, 12, 2, tzinfo=UTC))
    registry = CallRegistry(clock)
    events = EslChannelEvents(registry)

    class E:
        def __init__(self, name: str, **h: str) -> None:
            self.name, self.h = name, h

        def get(self, key: str, default: str | None = None) -> str | None:
            return self.h.get(key, default)

    for e in (
        E(
            "CHANNEL_CREATE",
            **{"Unique-ID": A, "Caller-Caller-ID-Number": "139", "Caller-Destination-Number": "400"},
        ),
        E("CHANNEL_CREATE", **{"Unique-ID": B, "Channel-Call-UUID": A}),
        E("CHANNEL_PROGRESS", **{"Unique-ID": B, "Channel-Call-UUID": A}),
        E("CHANNEL_ANSWER", **{"Unique-ID": B, "Channel-Call-UUID": A}),
        E("CHANNEL_ANSWER", **{"Unique-ID": A}),
        E("CHANNEL_BRIDGE", **{"Unique-ID": A}),
        E(
            "CHANNEL_HANGUP_COMPLETE",
            **{"Unique-ID": B, "Channel-Call-UUID": A, "variable_hangup_cause_q850": "16"},
        ),
    ):
        events.on_event(e)
    [call] = registry.live()
    assert (call.linkedid, call.callee_channel, call.state) == (A, f"freeswitch/{B}", "bridged")
    events.on_event(E("CHANNEL_HANGUP_COMPLETE", **{"Unique-ID": A, "variable_hangup_cause_q850": "x"}))
    assert registry.live() == [] and registry.recent()[0].hangup_cause == 0


def test_the_channel_list_as_live_channels_and_bad_names_refused() -> None:
    listing = json.dumps(
        {
            "row_count": 2,
            "rows": [
                {"uuid": A, "call_uuid": A, "callstate": "ACTIVE", "cid_num": "139", "dest": "400"},
                {"uuid": B, "call_uuid": A, "callstate": "RINGING", "cid_num": "139", "dest": "138"},
            ],
        }
    )
    chans = live_channels_of(listing)
    assert [(c.uniqueid, c.linkedid, c.up) for c in chans] == [(A, A, True), (B, A, False)]
    assert live_channels_of('{"row_count": 0}') == []
    with pytest.raises(ControlError):
        live_channels_of("-ERR no reply")
    assert uuid_of(f"freeswitch/{A}") == A
    for bad in ("PJSIP/carrier-0001", f"freeswitch/{A} ; hupall", "freeswitch/"):
        with pytest.raises(ControlError):
            uuid_of(bad)


class LingersAfterHangUp(ScriptedFreeSwitch):
    """FreeSWITCH with `linger`: the caller hangs up while `playback` runs; the playback's
    completion follows the CHANNEL_HANGUP, what was queued behind it never runs, and the
    socket stays open until the control plane closes it."""

    async def call(self, extra_before_connect: bytes = b"") -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        parser = EslParser(commands=True)
        hangup = _event("CHANNEL_HANGUP", **{"Unique-ID": A, "Hangup-Cause": "NORMAL_CLEARING"})
        try:
            while data := await reader.read(65536):
                for cmd in parser.feed(data):
                    assert isinstance(cmd, EslCommand)
                    self.commands.append(cmd)
                    writer.write(
                        _reply(self.data)
                        if cmd.line == "connect"
                        else b"Content-Type: command/reply\nReply-Text: +OK\n\n"
                    )
                    if cmd.get("execute-app-name") == "record":  # queued behind the playback
                        playback = next(c for c in self.commands if c.get("execute-app-name") == "playback")
                        writer.write(hangup)
                        writer.write(b"Content-Type: text/disconnect-notice\nContent-Disposition: linger\n\n")
                        completed = {"Unique-ID": A, "Application-UUID": playback.get("Event-UUID") or ""}
                        writer.write(_event("CHANNEL_EXECUTE_COMPLETE", **completed))
                await writer.drain()
        finally:
            writer.close()


async def test_what_was_queued_behind_the_hang_up_fails_and_the_socket_is_closed() -> None:
    """The voicemail's vm-intro then record, the caller gone during the intro: the playback
    still reports its end, the record fails within AFTER_HANGUP_S instead of waiting for a
    completion that never comes (the socket FreeSWITCH keeps open for it)."""
    outcome: dict[str, object] = {}

    async def handler(session: OutboundSession) -> None:
        intro = await session.queue("playback", "/s/vm-intro.wav")
        started = asyncio.get_running_loop().time()
        with pytest.raises(ChannelGone, match="hung up before it ran"):
            await session.execute("record", "/s/vm.wav 120 200 3")
        outcome["waited_s"] = asyncio.get_running_loop().time() - started
        outcome["intro"] = (await intro).get("Application-UUID")

    server = OutboundServer(handler, "127.0.0.1", 0)
    await server.start()
    assert server._server is not None
    port = server._server.sockets[0].getsockname()[1]
    fs = LingersAfterHangUp(port, {"Unique-ID": A})
    await asyncio.wait_for(fs.call(), 10)  # returns once the control plane closed the socket
    await server.stop(1)
    assert outcome["intro"]  # the running application's completion was still taken
    assert isinstance(outcome["waited_s"], float) and outcome["waited_s"] < 3, outcome
