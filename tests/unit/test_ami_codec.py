"""Tests for the sans-IO AMI codec: real-looking Asterisk 22 frames, chunking, injection."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from softswitch.engines.asterisk.ami.codec import (
    AmiBanner,
    AmiFrame,
    AmiMalformed,
    AmiMessage,
    AmiParser,
    AmiProtocolError,
    encode_action,
)

BANNER = b"Asterisk Call Manager/9.0.0\r\n"

LOGIN_OK = b"Response: Success\r\nActionID: ss-1\r\nMessage: Authentication accepted\r\n\r\n"

FULLY_BOOTED = (
    b"Event: FullyBooted\r\n"
    b"Privilege: system,all\r\n"
    b"Uptime: 12\r\n"
    b"LastReload: 12\r\n"
    b"Status: Fully Booted\r\n"
    b"\r\n"
)

NEWCHANNEL = (
    b"Event: Newchannel\r\n"
    b"Privilege: call,all\r\n"
    b"Channel: PJSIP/1001-00000001\r\n"
    b"ChannelState: 0\r\n"
    b"ChannelStateDesc: Down\r\n"
    b"CallerIDNum: 1001\r\n"
    b"CallerIDName: Alice\r\n"
    b"ConnectedLineNum: <unknown>\r\n"
    b"ConnectedLineName: <unknown>\r\n"
    b"Language: en\r\n"
    b"AccountCode: \r\n"
    b"Context: from-internal\r\n"
    b"Exten: 2000\r\n"
    b"Priority: 1\r\n"
    b"Uniqueid: 1700000000.1\r\n"
    b"Linkedid: 1700000000.1\r\n"
    b"\r\n"
)

CORE_SHOW_CHANNELS = (
    b"Response: Success\r\n"
    b"ActionID: ss-2\r\n"
    b"EventList: start\r\n"
    b"Message: Channels will follow\r\n"
    b"\r\n"
    b"Event: CoreShowChannel\r\n"
    b"ActionID: ss-2\r\n"
    b"Channel: PJSIP/1001-00000001\r\n"
    b"Context: from-internal\r\n"
    b"Application: Dial\r\n"
    b"ApplicationData: PJSIP/2000,30\r\n"
    b"Duration: 00:00:07\r\n"
    b"\r\n"
    b"Event: CoreShowChannel\r\n"
    b"ActionID: ss-2\r\n"
    b"Channel: PJSIP/2000-00000002\r\n"
    b"Context: from-internal\r\n"
    b"Application: AppDial\r\n"
    b"ApplicationData: (Outgoing Line)\r\n"
    b"Duration: 00:00:05\r\n"
    b"\r\n"
    b"Event: CoreShowChannelsComplete\r\n"
    b"ActionID: ss-2\r\n"
    b"EventList: Complete\r\n"
    b"ListItems: 2\r\n"
    b"\r\n"
)

COMMAND_OUTPUT = (
    b"Response: Success\r\n"
    b"ActionID: ss-3\r\n"
    b"Message: Command output follows\r\n"
    b"Output: System uptime: 1 hour, 2 minutes, 3 seconds\r\n"
    b"Output: Last reload: 1 hour, 2 minutes, 3 seconds\r\n"
    b"Output: \r\n"
    b"\r\n"
)


def parse_all(data: bytes, chunks: Iterator[bytes] | None = None) -> list[AmiFrame]:
    parser = AmiParser()
    frames: list[AmiFrame] = []
    for chunk in chunks if chunks is not None else [data]:
        frames.extend(parser.feed(chunk))
    return frames


def chunked(data: bytes, size: int) -> Iterator[bytes]:
    return (data[i : i + size] for i in range(0, len(data), size))


def split_at(data: bytes, points: list[int]) -> list[bytes]:
    cuts = [0, *sorted({p % (len(data) + 1) for p in points}), len(data)]
    return [data[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]


# -- table tests over real-looking frames --------------------------------------

STREAM = BANNER + LOGIN_OK + FULLY_BOOTED + NEWCHANNEL + CORE_SHOW_CHANNELS + COMMAND_OUTPUT


@pytest.mark.parametrize("chunk_size", [None, 1, 2, 3, 7, 64, 1000])
def test_real_stream_parses_identically_for_any_chunk_size(chunk_size: int | None) -> None:
    chunks = None if chunk_size is None else chunked(STREAM, chunk_size)
    frames = parse_all(STREAM, chunks)

    assert frames[0] == AmiBanner("Asterisk Call Manager/9.0.0")
    messages = frames[1:]
    assert all(isinstance(m, AmiMessage) for m in messages)
    kinds = [m.response or m.event for m in messages if isinstance(m, AmiMessage)]
    assert kinds == [
        "Success",
        "FullyBooted",
        "Newchannel",
        "Success",
        "CoreShowChannel",
        "CoreShowChannel",
        "CoreShowChannelsComplete",
        "Success",
    ]


def test_login_response() -> None:
    (banner, login) = parse_all(BANNER + LOGIN_OK)
    assert banner == AmiBanner("Asterisk Call Manager/9.0.0")
    assert isinstance(login, AmiMessage)
    assert login.is_response and not login.is_event
    assert login.response == "Success"
    assert login.action_id == "ss-1"
    assert login.get("message") == "Authentication accepted"


def test_fully_booted_event() -> None:
    (event,) = parse_all(FULLY_BOOTED)  # no banner: stream starts with a header line
    assert isinstance(event, AmiMessage)
    assert event.is_event and not event.is_response
    assert event.event == "FullyBooted"
    assert event.action_id is None
    assert event.get("Status") == "Fully Booted"


def test_newchannel_event_keeps_empty_values_and_order() -> None:
    (event,) = parse_all(NEWCHANNEL)
    assert isinstance(event, AmiMessage)
    assert event.get("AccountCode") == ""
    assert event.get("ConnectedLineNum") == "<unknown>"
    assert event.headers[0] == ("Event", "Newchannel")
    assert event.headers[-1] == ("Linkedid", "1700000000.1")
    assert len(event.headers) == 16


def test_core_show_channels_event_list() -> None:
    frames = parse_all(CORE_SHOW_CHANNELS)
    assert all(isinstance(f, AmiMessage) for f in frames)
    response, first, second, complete = frames
    assert isinstance(response, AmiMessage) and isinstance(complete, AmiMessage)
    assert response.get("EventList") == "start"
    assert {f.action_id for f in frames if isinstance(f, AmiMessage)} == {"ss-2"}
    assert isinstance(first, AmiMessage) and isinstance(second, AmiMessage)
    assert first.get("ApplicationData") == "PJSIP/2000,30"
    assert second.get("ApplicationData") == "(Outgoing Line)"
    assert complete.get("EventList") == "Complete"
    assert complete.get("ListItems") == "2"


def test_command_output_lines_are_repeated_headers_split_on_first_separator() -> None:
    (response,) = parse_all(COMMAND_OUTPUT)
    assert isinstance(response, AmiMessage)
    assert response.get_all("Output") == [
        "System uptime: 1 hour, 2 minutes, 3 seconds",
        "Last reload: 1 hour, 2 minutes, 3 seconds",
        "",
    ]
    assert response.get("output") == "System uptime: 1 hour, 2 minutes, 3 seconds"
    assert response.as_dict()["Output"] == "System uptime: 1 hour, 2 minutes, 3 seconds"


def test_bare_lf_line_endings_are_tolerated() -> None:
    data = STREAM.replace(b"\r\n", b"\n")
    assert parse_all(data) == parse_all(STREAM)


def test_mixed_line_endings_and_blank_lines_between_messages() -> None:
    data = b"\r\n" + BANNER + b"Event: A\nX: 1\r\n\n\r\n\r\nEvent: B\r\n\n"
    assert parse_all(data) == [
        AmiBanner("Asterisk Call Manager/9.0.0"),
        AmiMessage((("Event", "A"), ("X", "1"))),
        AmiMessage((("Event", "B"),)),
    ]


def test_header_with_bare_trailing_colon_is_an_empty_value() -> None:
    assert parse_all(b"Event: A\r\nAccountCode:\r\n\r\n") == [
        AmiMessage((("Event", "A"), ("AccountCode", "")))
    ]


def test_line_without_separator_makes_only_that_message_malformed() -> None:
    data = BANNER + b"Event: A\r\nthis is not a header\r\n\r\n" + FULLY_BOOTED
    banner, bad, good = parse_all(data)
    assert isinstance(bad, AmiMalformed)
    assert "line 2" in bad.reason
    assert "this is not a header" in bad.reason
    assert bad.raw == b"Event: A\r\nthis is not a header\r\n"
    assert isinstance(good, AmiMessage) and good.event == "FullyBooted"


def test_empty_header_name_is_malformed() -> None:
    (bad,) = parse_all(b"Event: A\r\n: orphan\r\n\r\n")
    assert isinstance(bad, AmiMalformed)
    assert "line 2" in bad.reason


def test_non_utf8_bytes_are_replaced_not_fatal() -> None:
    (event,) = parse_all(b"Event: Newchannel\r\nCallerIDName: Caf\xe9 \xff\r\n\r\n")
    assert isinstance(event, AmiMessage)
    assert event.get("CallerIDName") == "Caf\ufffd \ufffd"


def test_oversized_message_raises_and_parser_stays_failed() -> None:
    parser = AmiParser(max_message_bytes=64)
    assert parser.feed(b"Event: A\r\n\r\n") == [AmiMessage((("Event", "A"),))]
    with pytest.raises(AmiProtocolError):
        parser.feed(b"Event: Big\r\n" + b"Output: " + b"x" * 100 + b"\r\n\r\n")
    with pytest.raises(AmiProtocolError):
        parser.feed(b"Event: A\r\n\r\n")


def test_oversized_partial_line_raises_before_its_end_arrives() -> None:
    parser = AmiParser(max_message_bytes=64)
    parser.feed(b"Event: A\r\nOutput: ")
    with pytest.raises(AmiProtocolError):
        parser.feed(b"x" * 64)


def test_message_of_exactly_the_limit_is_accepted() -> None:
    message = b"Event: A\r\n\r\n"
    parser = AmiParser(max_message_bytes=len(message) - 2)  # the terminator is not buffered
    assert parser.feed(message) == [AmiMessage((("Event", "A"),))]


def test_long_partial_line_in_tiny_chunks_is_not_quadratic() -> None:
    parser = AmiParser()
    parser.feed(b"Event: A\r\nOutput: ")
    for _ in range(2000):
        assert parser.feed(b"y" * 200) == []  # 400 kB; rescanning would take seconds
    (message,) = parser.feed(b"\r\n\r\n")
    assert isinstance(message, AmiMessage)
    assert message.get("Output") == "y" * 400_000


# -- AmiMessage ----------------------------------------------------------------


def test_message_accessors() -> None:
    msg = AmiMessage((("Response", "Success"), ("actionid", "7"), ("Output", "a"), ("OUTPUT", "b")))
    assert msg.get("ActionID") == "7"
    assert msg.action_id == "7"
    assert msg.get("Missing") is None
    assert msg.get("Missing", "dflt") == "dflt"
    assert msg.get_all("output") == ["a", "b"]
    assert msg.get_all("Missing") == []
    assert msg.as_dict() == {"Response": "Success", "actionid": "7", "Output": "a", "OUTPUT": "b"}
    assert AmiMessage((("Output", "a"), ("Output", "b"))).as_dict() == {"Output": "a"}
    assert msg.is_response and not msg.is_event and msg.event is None


# -- encode_action -------------------------------------------------------------


def test_encode_action_basic_and_repeated_fields() -> None:
    data = encode_action(
        "Originate",
        "ss-9",
        {
            "Channel": "PJSIP/1001",
            "Context": "from-internal",
            "Exten": "2000",
            "Priority": 1,
            "Timeout": 30000,
            "Async": "true",
            "Variable": ["A=1", "B=2"],
        },
    )
    assert data == (
        b"Action: Originate\r\n"
        b"ActionID: ss-9\r\n"
        b"Channel: PJSIP/1001\r\n"
        b"Context: from-internal\r\n"
        b"Exten: 2000\r\n"
        b"Priority: 1\r\n"
        b"Timeout: 30000\r\n"
        b"Async: true\r\n"
        b"Variable: A=1\r\n"
        b"Variable: B=2\r\n"
        b"\r\n"
    )


def test_encode_action_without_fields_and_with_empty_sequence() -> None:
    assert encode_action("Ping", "1") == b"Action: Ping\r\nActionID: 1\r\n\r\n"
    assert encode_action("Ping", "1", {"Variable": []}) == b"Action: Ping\r\nActionID: 1\r\n\r\n"


def test_encode_action_values_may_contain_separator() -> None:
    data = encode_action("Command", "1", {"Command": "core show uptime: x"})
    (msg,) = parse_all(data)
    assert isinstance(msg, AmiMessage)
    assert msg.get("Command") == "core show uptime: x"


@pytest.mark.parametrize(
    ("action", "action_id", "fields", "named"),
    [
        ("Originate", "1", {"Channel": "PJSIP/1\r\nAction: Hangup"}, "Channel"),
        ("Originate", "1", {"Channel": "PJSIP/1\nAction: Hangup"}, "Channel"),
        ("Originate", "1", {"Channel": "PJSIP/1\rX"}, "Channel"),
        ("Originate", "1", {"Channel": "PJSIP/1\0"}, "Channel"),
        ("Originate", "1", {"Variable": ["A=1", "B=2\r\n"]}, "Variable"),
        ("Originate", "1", {"Chan\nnel": "x"}, "Chan"),
        ("Originate", "1", {"Channel: x\r\nFoo": "x"}, "Channel"),
        ("Originate", "1", {"A:B": "x"}, "A:B"),
        ("Originate", "1", {"": "x"}, "empty"),
        ("Originate", "1", {"ActionID": "other"}, "ActionID"),
        ("Originate", "1", {"action": "Hangup"}, "action"),
        ("Ping\r\nAction: Hangup", "1", None, "action name"),
        ("", "1", None, "action name"),
        ("Ping", "1\r\nAction: Hangup", None, "ActionID"),
        ("Ping", "1", {"Channel": "\udcff"}, "Channel"),
    ],
)
def test_encode_action_rejects_header_injection(
    action: str, action_id: str, fields: dict[str, str | list[str]] | None, named: str
) -> None:
    with pytest.raises(ValueError, match=named):
        encode_action(action, action_id, fields)


def test_encode_action_error_never_quotes_the_value() -> None:
    with pytest.raises(ValueError) as excinfo:
        encode_action("Login", "1", {"Username": "admin", "Secret": "hunter2\r\n"})
    assert "Secret" in str(excinfo.value)
    assert "hunter2" not in str(excinfo.value)


@pytest.mark.parametrize("value", [b"bytes", 1.5, None, ["ok", None]])
def test_encode_action_rejects_unsupported_value_types(value: object) -> None:
    with pytest.raises(TypeError, match="Channel"):
        encode_action("Originate", "1", {"Channel": value})  # type: ignore[dict-item]


# -- property tests ------------------------------------------------------------


@settings(max_examples=300, deadline=500, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.binary(max_size=4000),
    splits=st.lists(st.integers(min_value=0, max_value=4000), max_size=30),
    limit=st.sampled_from([16, 256, 1 << 20]),
    prefix=st.sampled_from([b"", BANNER, BANNER + b"Event: A\r\n"]),
)
def test_arbitrary_bytes_only_ever_raise_protocol_error(
    data: bytes, splits: list[int], limit: int, prefix: bytes
) -> None:
    parser = AmiParser(max_message_bytes=limit)
    for chunk in split_at(prefix + data, splits):
        try:
            frames = parser.feed(chunk)
        except AmiProtocolError:
            return
        assert all(isinstance(f, AmiBanner | AmiMessage | AmiMalformed) for f in frames)


_KEY_CHARS = st.characters(exclude_categories=["Cs"], exclude_characters="\r\n\0:")
_VALUE_CHARS = st.characters(exclude_categories=["Cs"], exclude_characters="\r\n\0")
_keys = st.text(_KEY_CHARS, min_size=1, max_size=12).filter(lambda k: k.lower() not in {"action", "actionid"})
_values = st.text(_VALUE_CHARS, max_size=20)


@settings(max_examples=300)
@given(
    action=st.text(_VALUE_CHARS, min_size=1, max_size=20),
    action_id=st.text(_VALUE_CHARS, max_size=20),
    pairs=st.lists(st.tuples(_keys, _values), max_size=12),
)
def test_encode_then_parse_round_trips(action: str, action_id: str, pairs: list[tuple[str, str]]) -> None:
    fields: dict[str, list[str]] = {}
    for key, value in pairs:
        fields.setdefault(key, []).append(value)
    expected = (
        ("Action", action),
        ("ActionID", action_id),
        *((key, value) for key, values in fields.items() for value in values),
    )

    frames = AmiParser().feed(BANNER + encode_action(action, action_id, fields))

    assert frames == [AmiBanner("Asterisk Call Manager/9.0.0"), AmiMessage(expected)]


_messages = st.lists(st.tuples(_keys, _values), min_size=1, max_size=6)


@settings(max_examples=300)
@given(
    messages=st.lists(_messages, max_size=6),
    bare_lf=st.booleans(),
    include_bad=st.booleans(),
    split_data=st.data(),
)
def test_chunking_invariance(
    messages: list[list[tuple[str, str]]],
    bare_lf: bool,
    include_bad: bool,
    split_data: st.DataObject,
) -> None:
    eol = "\n" if bare_lf else "\r\n"
    stream = BANNER + b"".join(("".join(f"{k}: {v}{eol}" for k, v in msg) + eol).encode() for msg in messages)
    if include_bad:
        stream += b"Event: A\r\nno separator here\r\n\r\n" + FULLY_BOOTED
    points = split_data.draw(st.lists(st.integers(0, len(stream)), max_size=40))

    whole = AmiParser().feed(stream)
    pieces: list[AmiFrame] = []
    parser = AmiParser()
    for chunk in split_at(stream, points):
        pieces.extend(parser.feed(chunk))

    assert pieces == whole
    expected_messages = [AmiMessage(tuple(msg)) for msg in messages]
    assert whole[1 : 1 + len(messages)] == expected_messages


_PIECES = [
    b"Event: Newchannel",
    b"Key: v",
    b"Channel: PJSIP/a-1",
    b"\r\n",
    b"\n",
    b"\r",
    b":",
    b": ",
    b"x",
    b"\xff",
]


@given(pieces=st.lists(st.sampled_from(_PIECES), max_size=80), whole_first=st.booleans())
def test_whole_messages_parse_as_the_line_by_line_path_does(pieces: list[bytes], whole_first: bool) -> None:
    """The parser's fast path (a whole CRLF message decoded and split at once) gives the
    frames the line-by-line path gives, bare LFs, stray CRs and malformed lines included."""
    data = b"".join(pieces) + b"\r\n\r\n"
    whole, by_byte = AmiParser(), AmiParser()
    whole.feed(BANNER)
    by_byte.feed(BANNER)
    frames_whole = whole.feed(data)
    frames_by_byte = [frame for i in range(len(data)) for frame in by_byte.feed(data[i : i + 1])]
    assert frames_whole == frames_by_byte
