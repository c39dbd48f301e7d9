"""Tests for the sans-IO ESL codec: exact FreeSWITCH frames, chunking, injection."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from softswitch.engines.freeswitch.esl.codec import (
    EslCommand,
    EslEvent,
    EslFrame,
    EslMalformed,
    EslParsed,
    EslParser,
    EslProtocolError,
    encode_command,
)

AUTH_REQUEST = b"Content-Type: auth/request\n\n"
AUTH_OK = b"Content-Type: command/reply\nReply-Text: +OK accepted\n\n"
AUTH_ERR = b"Content-Type: command/reply\nReply-Text: -ERR invalid\n\n"
SUBSCRIBED = b"Content-Type: command/reply\nReply-Text: +OK event listener enabled plain\n\n"
BGAPI_REPLY = (
    b"Content-Type: command/reply\n"
    b"Reply-Text: +OK Job-UUID: 7f4db78a-17d7-11dd-b7a0-db4edd065621\n"
    b"Job-UUID: 7f4db78a-17d7-11dd-b7a0-db4edd065621\n"
    b"\n"
)
STATUS_OUTPUT = (
    b"UP 0 years, 0 days, 1 hour, 2 minutes, 3 seconds, 4 milliseconds, 5 microseconds\n"
    b"FreeSWITCH (Version 1.10.12 -release 64bit) is ready\n"
)
API_RESPONSE = b"Content-Type: api/response\nContent-Length: %d\n\n" % len(STATUS_OUTPUT) + STATUS_OUTPUT

ANSWER_BODY = (
    b"Event-Name: CHANNEL_ANSWER\n"
    b"Core-UUID: 0d5b9a7c-1111-4c1e-9b1a-5f1e3c2d4b6a\n"
    b"FreeSWITCH-Hostname: fs1.example.com\n"
    b"Event-Date-Local: 2024-05-01%2012%3A34%3A56\n"
    b"Event-Date-GMT: Wed,%2001%20May%202024%2010%3A34%3A56%20GMT\n"
    b"Unique-ID: 3f0a6c1e-9d2b-4e8a-a1b2-c3d4e5f60718\n"
    b"Channel-Name: sofia/internal/1001%40192.168.1.10%3A5060\n"
    b"Caller-Caller-ID-Name: Alice%20Smith\n"
    b"Caller-Caller-ID-Number: %2B15551230001\n"
    b"Caller-Destination-Number: 2000\n"
    b"variable_sip_h_X-Note: a%3A%20b\n"
    b"\n"
)
ANSWER_EVENT = b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(ANSWER_BODY) + ANSWER_BODY

JOB_OUTPUT = b"+OK 3f0a6c1e-9d2b-4e8a-a1b2-c3d4e5f60718\n"
JOB_BODY = (
    b"Event-Name: BACKGROUND_JOB\n"
    b"Core-UUID: 0d5b9a7c-1111-4c1e-9b1a-5f1e3c2d4b6a\n"
    b"Job-UUID: 7f4db78a-17d7-11dd-b7a0-db4edd065621\n"
    b"Job-Command: originate\n"
    b"Job-Command-Arg: sofia/gateway/carrier/15551230002%20%26park()\n"
    + b"Content-Length: %d\n\n" % len(JOB_OUTPUT)
    + JOB_OUTPUT
)
JOB_EVENT = b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(JOB_BODY) + JOB_BODY

HEARTBEAT_BODY = b"Event-Name: HEARTBEAT\nUp-Time: 0%20years,%200%20days\nSession-Count: 3\n\n"
HEARTBEAT_EVENT = (
    b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(HEARTBEAT_BODY) + HEARTBEAT_BODY
)

FAREWELL = b"Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
DISCONNECT_NOTICE = b"Content-Type: text/disconnect-notice\nContent-Length: %d\n\n" % len(FAREWELL) + FAREWELL
BARE_DISCONNECT_NOTICE = b"Content-Type: text/disconnect-notice\n\n"


def parse_all(data: bytes, chunks: Iterator[bytes] | list[bytes] | None = None) -> list[EslParsed]:
    parser = EslParser()
    frames: list[EslParsed] = []
    for chunk in chunks if chunks is not None else [data]:
        frames.extend(parser.feed(chunk))
    return frames


def chunked(data: bytes, size: int) -> Iterator[bytes]:
    return (data[i : i + size] for i in range(0, len(data), size))


def split_at(data: bytes, points: list[int]) -> list[bytes]:
    cuts = [0, *sorted({p % (len(data) + 1) for p in points}), len(data)]
    return [data[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]


def only(data: bytes) -> EslParsed:
    (frame,) = parse_all(data)
    return frame


# -- table tests over exact frames ---------------------------------------------

STREAM = (
    AUTH_REQUEST
    + AUTH_OK
    + SUBSCRIBED
    + API_RESPONSE
    + BGAPI_REPLY
    + ANSWER_EVENT
    + HEARTBEAT_EVENT
    + JOB_EVENT
    + DISCONNECT_NOTICE
)


@pytest.mark.parametrize("chunk_size", [None, 1, 2, 3, 7, 64, 1000])
def test_real_stream_parses_identically_for_any_chunk_size(chunk_size: int | None) -> None:
    chunks = None if chunk_size is None else chunked(STREAM, chunk_size)
    frames = parse_all(STREAM, chunks)

    kinds = [f.content_type if isinstance(f, EslFrame) else type(f).__name__ for f in frames]
    assert kinds == [
        "auth/request",
        "command/reply",
        "command/reply",
        "api/response",
        "command/reply",
        "EslEvent",
        "EslEvent",
        "EslEvent",
        "text/disconnect-notice",
    ]
    assert frames == parse_all(STREAM)


def test_auth_request() -> None:
    assert only(AUTH_REQUEST) == EslFrame((("Content-Type", "auth/request"),), b"")


@pytest.mark.parametrize(
    ("data", "reply_text"),
    [(AUTH_OK, "+OK accepted"), (AUTH_ERR, "-ERR invalid")],
)
def test_command_reply(data: bytes, reply_text: str) -> None:
    frame = only(data)
    assert isinstance(frame, EslFrame)
    assert frame.content_type == "command/reply"
    assert frame.reply_text == reply_text
    assert frame.get("reply-text") == reply_text  # names compare case-insensitively
    assert frame.body == b""


def test_bgapi_reply_value_containing_separator_splits_on_the_first_one() -> None:
    frame = only(BGAPI_REPLY)
    assert isinstance(frame, EslFrame)
    assert frame.reply_text == "+OK Job-UUID: 7f4db78a-17d7-11dd-b7a0-db4edd065621"
    assert frame.job_uuid == "7f4db78a-17d7-11dd-b7a0-db4edd065621"


@pytest.mark.parametrize("cut", [1, 20, len(API_RESPONSE) - len(STATUS_OUTPUT), len(API_RESPONSE) - 1])
def test_api_response_body_split_across_feeds(cut: int) -> None:
    parser = EslParser()
    assert parser.feed(API_RESPONSE[:cut]) == []
    (frame,) = parser.feed(API_RESPONSE[cut:] + AUTH_OK)[:1]
    assert isinstance(frame, EslFrame)
    assert frame.content_type == "api/response"
    assert frame.body == STATUS_OUTPUT
    assert frame.text.startswith("UP 0 years")


def test_api_response_body_that_looks_like_headers_is_only_a_body() -> None:
    body = b"Content-Type: command/reply\nReply-Text: +OK\n\n"
    data = b"Content-Type: api/response\nContent-Length: %d\n\n" % len(body) + body + AUTH_OK
    first, second = parse_all(data)
    assert isinstance(first, EslFrame) and first.body == body
    assert isinstance(second, EslFrame) and second.reply_text == "+OK accepted"


def test_event_plain_values_are_percent_decoded() -> None:
    event = only(ANSWER_EVENT)
    assert isinstance(event, EslEvent)
    assert event.name == "CHANNEL_ANSWER"
    assert event.unique_id == "3f0a6c1e-9d2b-4e8a-a1b2-c3d4e5f60718"
    assert event.headers["Caller-Caller-ID-Name"] == "Alice Smith"
    assert event.headers["Caller-Caller-ID-Number"] == "+15551230001"
    assert event.headers["Channel-Name"] == "sofia/internal/1001@192.168.1.10:5060"
    assert event.headers["Event-Date-Local"] == "2024-05-01 12:34:56"
    assert event.headers["variable_sip_h_X-Note"] == "a: b"
    assert event.get("caller-caller-id-name") == "Alice Smith"
    assert event.get("Missing") is None and event.get("Missing", "d") == "d"
    assert event.body == ""
    assert list(event.headers)[0] == "Event-Name"


def test_background_job_event_has_a_nested_body() -> None:
    event = only(JOB_EVENT)
    assert isinstance(event, EslEvent)
    assert event.name == "BACKGROUND_JOB"
    assert event.job_uuid == "7f4db78a-17d7-11dd-b7a0-db4edd065621"
    assert event.headers["Job-Command-Arg"] == "sofia/gateway/carrier/15551230002 &park()"
    assert event.body == JOB_OUTPUT.decode()


def test_outer_header_order_does_not_matter() -> None:
    swapped = b"Content-Type: text/event-plain\nContent-Length: %d\n\n" % len(HEARTBEAT_BODY) + HEARTBEAT_BODY
    assert parse_all(swapped) == parse_all(HEARTBEAT_EVENT)
    heartbeat = only(HEARTBEAT_EVENT)
    assert isinstance(heartbeat, EslEvent)
    assert heartbeat.name == "HEARTBEAT"
    assert heartbeat.headers["Up-Time"] == "0 years, 0 days"


@pytest.mark.parametrize(("data", "body"), [(DISCONNECT_NOTICE, FAREWELL), (BARE_DISCONNECT_NOTICE, b"")])
def test_disconnect_notice_with_and_without_body(data: bytes, body: bytes) -> None:
    frame = only(data)
    assert isinstance(frame, EslFrame)
    assert frame.content_type == "text/disconnect-notice"
    assert frame.body == body


def test_other_content_types_are_plain_frames() -> None:
    log = b"Content-Type: log/data\nContent-Length: 5\n\nhello"
    frame = only(log)
    assert isinstance(frame, EslFrame) and frame.content_type == "log/data" and frame.body == b"hello"


def test_crlf_and_blank_lines_between_frames_are_tolerated() -> None:
    data = b"\n\n" + AUTH_OK.replace(b"\n", b"\r\n") + b"\n" + AUTH_ERR
    assert parse_all(data) == parse_all(AUTH_OK + AUTH_ERR)


def test_header_with_bare_trailing_colon_is_an_empty_value() -> None:
    assert only(b"Content-Type: command/reply\nReply-Text:\n\n") == EslFrame(
        (("Content-Type", "command/reply"), ("Reply-Text", ""))
    )


def test_content_length_zero_means_no_body() -> None:
    data = b"Content-Type: api/response\nContent-Length: 0\n\n" + AUTH_OK
    first, second = parse_all(data)
    assert isinstance(first, EslFrame) and first.body == b""
    assert isinstance(second, EslFrame) and second.reply_text == "+OK accepted"


# -- malformed frames are survived ---------------------------------------------


def test_line_without_separator_makes_only_that_frame_malformed() -> None:
    data = b"Content-Type: command/reply\nthis is not a header\n\n" + AUTH_OK
    bad, good = parse_all(data)
    assert isinstance(bad, EslMalformed)
    assert "line 2" in bad.reason and "this is not a header" in bad.reason
    assert bad.raw == b"Content-Type: command/reply\nthis is not a header\n"
    assert isinstance(good, EslFrame) and good.reply_text == "+OK accepted"


def test_malformed_frame_with_content_length_still_skips_its_body() -> None:
    body = b"Reply-Text: +OK looks like a frame\n\n"
    data = b"garbage line\nContent-Length: %d\n\n" % len(body) + body + AUTH_OK
    bad, good = parse_all(data)
    assert isinstance(bad, EslMalformed) and bad.raw.endswith(body)
    assert isinstance(good, EslFrame) and good.reply_text == "+OK accepted"


def test_empty_header_name_is_malformed() -> None:
    bad = only(b"Content-Type: command/reply\n: orphan\n\n")
    assert isinstance(bad, EslMalformed) and "line 2" in bad.reason


def event_frame(body: bytes) -> bytes:
    return b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(body) + body


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"Event-Name: CHANNEL_ANSWER\nbroken line\n\n", "event line 2"),
        (b"Unique-ID: x\n\n", "without Event-Name"),
        (b"Event-Name: BACKGROUND_JOB\nContent-Length: 50\n\n+OK short\n", "Content-Length says 50"),
        (b"Event-Name: BACKGROUND_JOB\nContent-Length: ten\n\n+OK\n", "not a number"),
        (b"Event-Name: X\n: orphan\n\n", "empty header name"),
    ],
)
def test_bad_event_body_is_malformed_and_the_stream_continues(body: bytes, reason: str) -> None:
    bad, good = parse_all(event_frame(body) + HEARTBEAT_EVENT)
    assert isinstance(bad, EslMalformed)
    assert reason in bad.reason
    assert isinstance(good, EslEvent) and good.name == "HEARTBEAT"


def test_non_utf8_and_bad_percent_escapes_are_replaced_not_fatal() -> None:
    body = b"Event-Name: CHANNEL_CREATE\nCaller-Caller-ID-Name: Caf\xe9 %FF %ZZ 100%\n\n"
    event = only(event_frame(body))
    assert isinstance(event, EslEvent)
    assert event.headers["Caller-Caller-ID-Name"] == "Caf\ufffd \ufffd %ZZ 100%"


def test_event_without_final_blank_line_is_accepted() -> None:
    event = only(event_frame(b"Event-Name: HEARTBEAT\nSession-Count: 1"))
    assert isinstance(event, EslEvent) and event.headers["Session-Count"] == "1"


# -- unrecoverable streams -------------------------------------------------------


@pytest.mark.parametrize("value", [b"ten", b"-5", b"1_0", b"+5", b"\xd9\xa1", b"", b"1e3"])
def test_content_length_that_is_not_a_number_is_a_protocol_error(value: bytes) -> None:
    parser = EslParser()
    with pytest.raises(EslProtocolError, match="Content-Length"):
        parser.feed(b"Content-Type: api/response\nContent-Length: " + value + b"\n\nbody")
    with pytest.raises(EslProtocolError):
        parser.feed(AUTH_OK)  # stays failed


def test_oversized_content_length_fails_before_the_body_arrives() -> None:
    parser = EslParser(max_frame_bytes=1000)
    with pytest.raises(EslProtocolError, match="exceeds"):
        parser.feed(b"Content-Type: api/response\nContent-Length: 999999999999\n\n")


def test_oversized_partial_header_line_raises_before_its_end_arrives() -> None:
    parser = EslParser(max_frame_bytes=64)
    parser.feed(b"Content-Type: command/reply\nReply-Text: ")
    with pytest.raises(EslProtocolError):
        parser.feed(b"x" * 64)
    with pytest.raises(EslProtocolError):
        parser.feed(AUTH_OK)


def test_frame_of_exactly_the_limit_is_accepted() -> None:
    body = b"0123456789"
    headers = b"Content-Type: api/response\nContent-Length: 10\n"
    parser = EslParser(max_frame_bytes=len(headers) + len(body))
    (frame,) = parser.feed(headers + b"\n" + body)
    assert isinstance(frame, EslFrame) and frame.body == body
    with pytest.raises(EslProtocolError):
        EslParser(max_frame_bytes=len(headers) + len(body) - 1).feed(headers + b"\n" + body)


def test_parser_rejects_non_positive_limit() -> None:
    with pytest.raises(ValueError):
        EslParser(max_frame_bytes=0)


def test_long_partial_line_and_long_body_in_tiny_chunks_are_not_quadratic() -> None:
    parser = EslParser()
    parser.feed(b"Content-Type: command/reply\nReply-Text: ")
    for _ in range(2000):
        assert parser.feed(b"y" * 200) == []  # 400 kB; rescanning would take seconds
    (reply,) = parser.feed(b"\n\n")
    assert isinstance(reply, EslFrame) and reply.reply_text == "y" * 400_000

    parser.feed(b"Content-Type: api/response\nContent-Length: 400000\n\n")
    for _ in range(1999):
        assert parser.feed(b"z" * 200) == []
    (api,) = parser.feed(b"z" * 200)
    assert isinstance(api, EslFrame) and len(api.body) == 400_000


# -- encode_command --------------------------------------------------------------


def test_encode_simple_commands() -> None:
    assert encode_command("auth ClueCon") == b"auth ClueCon\n\n"
    assert encode_command("api status") == b"api status\n\n"
    assert (
        encode_command("event plain CHANNEL_CREATE CHANNEL_ANSWER CHANNEL_BRIDGE HEARTBEAT")
        == b"event plain CHANNEL_CREATE CHANNEL_ANSWER CHANNEL_BRIDGE HEARTBEAT\n\n"
    )


def test_encode_bgapi_with_job_uuid() -> None:
    data = encode_command(
        "bgapi originate {origination_caller_id_number=1001}sofia/gateway/gw/2000 &park()",
        {"Job-UUID": "c7709e9c-1517-11dc-842a-d3a3942d3d63"},
    )
    assert data == (
        b"bgapi originate {origination_caller_id_number=1001}sofia/gateway/gw/2000 &park()\n"
        b"Job-UUID: c7709e9c-1517-11dc-842a-d3a3942d3d63\n"
        b"\n"
    )


def test_encode_sendmsg_execute() -> None:
    data = encode_command(
        "sendmsg 3f0a6c1e-9d2b-4e8a-a1b2-c3d4e5f60718",
        {
            "call-command": "execute",
            "execute-app-name": "playback",
            "execute-app-arg": "/usr/share/freeswitch/sounds/en/us/callie/ivr/8000/ivr-welcome.wav",
            "loops": 1,
        },
    )
    assert data == (
        b"sendmsg 3f0a6c1e-9d2b-4e8a-a1b2-c3d4e5f60718\n"
        b"call-command: execute\n"
        b"execute-app-name: playback\n"
        b"execute-app-arg: /usr/share/freeswitch/sounds/en/us/callie/ivr/8000/ivr-welcome.wav\n"
        b"loops: 1\n"
        b"\n"
    )


def test_encode_body_gets_content_length() -> None:
    data = encode_command("sendevent NOTIFY", {"profile": "internal"}, "héllo\n")
    assert data == b"sendevent NOTIFY\nprofile: internal\nContent-Length: 7\n\nh\xc3\xa9llo\n"
    assert encode_command("api status", body=b"") == b"api status\n\n"


@pytest.mark.parametrize(
    ("verb_line", "headers", "named"),
    [
        ("api status\nexit", None, "command line"),
        ("api status\r", None, "command line"),
        ("api status\0", None, "command line"),
        ("", None, "command line"),
        ("   ", None, "command line"),
        ("api \udcff", None, "command line"),
        ("bgapi status", {"Job-UUID": "x\n\nauth other"}, "Job-UUID"),
        ("bgapi status", {"Job-UUID": "x\r"}, "Job-UUID"),
        ("sendmsg u", {"execute-app-arg": "a\0b"}, "execute-app-arg"),
        ("sendmsg u", {"execute-app-arg": "\udcff"}, "execute-app-arg"),
        ("sendmsg u", {"call-command\n": "x"}, "call-command"),
        ("sendmsg u", {"a:b": "x"}, "a:b"),
        ("sendmsg u", {"": "x"}, "empty"),
        ("sendmsg u", {"Content-Length": "5"}, "Content-Length"),
        ("sendmsg u", {"content-length": "5"}, "content-length"),
    ],
)
def test_encode_command_rejects_injection(verb_line: str, headers: dict[str, str] | None, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        encode_command(verb_line, headers)


def test_encode_command_error_never_quotes_the_value() -> None:
    with pytest.raises(ValueError) as excinfo:
        encode_command("auth hunter2\n\napi shutdown")
    assert "command line" in str(excinfo.value)
    assert "hunter2" not in str(excinfo.value)


@pytest.mark.parametrize("value", [b"bytes", 1.5, None, ["a"]])
def test_encode_command_rejects_unsupported_header_types(value: object) -> None:
    with pytest.raises(TypeError, match="execute-app-arg"):
        encode_command("sendmsg u", {"execute-app-arg": value})  # type: ignore[dict-item]


def test_encode_command_rejects_unsupported_body_type() -> None:
    with pytest.raises(TypeError, match="body"):
        encode_command("sendevent X", body=5)  # type: ignore[arg-type]


def test_commands_mode_reads_what_freeswitch_reads() -> None:
    data = (
        b"auth ClueCon\n\n"
        b"bgapi status\nJob-UUID: u-1\n\n"
        b"sendevent NOTIFY\nprofile: internal\nContent-Length: 5\n\nhello"
        b"sendmsg x\nbroken\n\n"
        b"exit\n\n"
    )
    frames = EslParser(commands=True).feed(data)
    assert frames[:3] == [
        EslCommand("auth ClueCon"),
        EslCommand("bgapi status", (("Job-UUID", "u-1"),)),
        EslCommand("sendevent NOTIFY", (("profile", "internal"), ("Content-Length", "5")), b"hello"),
    ]
    assert isinstance(frames[3], EslMalformed) and "line 2" in frames[3].reason
    assert frames[4] == EslCommand("exit")
    assert isinstance(frames[1], EslCommand) and frames[1].get("job-uuid") == "u-1"


# -- property tests --------------------------------------------------------------


@settings(max_examples=300, deadline=500, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.binary(max_size=4000),
    splits=st.lists(st.integers(min_value=0, max_value=4000), max_size=30),
    limit=st.sampled_from([16, 256, 1 << 20]),
    prefix=st.sampled_from(
        [b"", AUTH_REQUEST, b"Content-Length: 40\nContent-Type: text/event-plain\n\n", b"Content-Length: "]
    ),
    commands=st.booleans(),
)
def test_arbitrary_bytes_only_ever_raise_protocol_error(
    data: bytes, splits: list[int], limit: int, prefix: bytes, commands: bool
) -> None:
    parser = EslParser(max_frame_bytes=limit, commands=commands)
    for chunk in split_at(prefix + data, splits):
        try:
            frames = parser.feed(chunk)
        except EslProtocolError:
            return
        assert all(isinstance(f, EslFrame | EslEvent | EslCommand | EslMalformed) for f in frames)


_NAME_CHARS = st.characters(exclude_categories=["Cs"], exclude_characters="\r\n\0:")
_VALUE_CHARS = st.characters(exclude_categories=["Cs"], exclude_characters="\r\n\0")
_names = st.text(_NAME_CHARS, min_size=1, max_size=12).filter(lambda n: n.lower() != "content-length")
_values = st.text(_VALUE_CHARS, max_size=20)


@settings(max_examples=300)
@given(
    verb_line=st.text(_VALUE_CHARS, min_size=1, max_size=30).filter(str.strip),
    pairs=st.dictionaries(_names, _values, max_size=8),
    body=st.one_of(st.none(), st.binary(max_size=60), st.text(max_size=20)),
)
def test_encode_then_parse_round_trips(
    verb_line: str, pairs: dict[str, str], body: bytes | str | None
) -> None:
    payload = body.encode() if isinstance(body, str) else (body or b"")
    expected_headers = tuple(pairs.items())
    if payload:
        expected_headers += (("Content-Length", str(len(payload))),)

    frames = EslParser(commands=True).feed(encode_command(verb_line, pairs, body) + b"exit\n\n")

    assert frames == [EslCommand(verb_line, expected_headers, payload), EslCommand("exit")]


def server_frame(pairs: list[tuple[str, str]], body: bytes) -> bytes:
    head = "".join(f"{name}: {value}\n" for name, value in pairs).encode()
    if body:
        head += b"Content-Length: %d\n" % len(body)
    return head + b"\n" + body


def event_bytes(name: str, pairs: list[tuple[str, str]], body: bytes) -> bytes:
    inner = f"Event-Name: {quote(name, safe='')}\n".encode()
    inner += "".join(f"{key}: {quote(value, safe='')}\n" for key, value in pairs).encode()
    inner += (b"Content-Length: %d\n\n" % len(body) + body) if body else b"\n"
    return event_frame(inner)


_frames = st.one_of(
    st.builds(
        server_frame,
        st.lists(st.tuples(_names, _values), min_size=1, max_size=5),
        st.binary(max_size=40),
    ),
    st.builds(
        event_bytes,
        st.text(_NAME_CHARS, min_size=1, max_size=12).filter(str.strip),
        st.lists(st.tuples(_names.filter(lambda n: n.lower() != "event-name"), _values), max_size=5),
        st.binary(max_size=40),
    ),
    st.just(b"broken\nContent-Length: 3\n\nabc"),
    st.just(event_frame(b"Event-Name: X\nbroken\n\n")),
)


@settings(max_examples=300)
@given(frames=st.lists(_frames, max_size=8), crlf=st.booleans(), split_data=st.data())
def test_chunking_invariance(frames: list[bytes], crlf: bool, split_data: st.DataObject) -> None:
    stream = b"".join(frames)
    if crlf:  # only the outer framing of the first frame; bodies must stay byte-exact
        stream = AUTH_REQUEST.replace(b"\n", b"\r\n") + stream
    points = split_data.draw(st.lists(st.integers(0, len(stream)), max_size=40))

    whole = EslParser().feed(stream)
    pieces: list[EslParsed] = []
    parser = EslParser()
    for chunk in split_at(stream, points):
        pieces.extend(parser.feed(chunk))

    assert pieces == whole
    assert len(whole) == len(frames) + (1 if crlf else 0)


@settings(max_examples=200)
@given(
    name=st.text(_NAME_CHARS, min_size=1, max_size=12).filter(str.strip),
    pairs=st.dictionaries(_names.filter(lambda n: n.lower() not in {"event-name"}), _values, max_size=6),
    body=st.binary(max_size=40),
)
def test_event_values_survive_percent_encoding(name: str, pairs: dict[str, str], body: bytes) -> None:
    (event,) = EslParser().feed(event_bytes(name, list(pairs.items()), body))
    assert isinstance(event, EslEvent)
    assert event.name == name
    for key, value in pairs.items():
        assert event.headers[key] == value
    assert event.body == body.decode("utf-8", errors="replace")
