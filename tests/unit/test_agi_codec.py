"""Tests for the sans-IO FastAGI codec: bytes in, values out; commands in, bytes out."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softswitch.engines.asterisk.agi.codec import (
    MAX_COMMAND_BYTES,
    AgiEnvironment,
    AgiEnvironmentParser,
    AgiHangupNotice,
    AgiProtocolError,
    AgiResponse,
    AgiResponseParser,
    encode_command,
    quote_arg,
)

# What Asterisk 22 sends for `AGI(agi://127.0.0.1:4573/route,inbound,a b)`
# (setup_env() in res_agi.c; note the empty accountcode value).
ASTERISK_22_ENV = (
    b"agi_network: yes\n"
    b"agi_network_script: route\n"
    b"agi_request: agi://127.0.0.1:4573/route\n"
    b"agi_channel: PJSIP/trunk-cn-00000012\n"
    b"agi_language: en\n"
    b"agi_type: PJSIP\n"
    b"agi_uniqueid: 1718000000.37\n"
    b"agi_version: 22.1.0\n"
    b"agi_callerid: 13800138000\n"
    b"agi_calleridname: Zhang San\n"
    b"agi_callingpres: 0\n"
    b"agi_callingani2: 0\n"
    b"agi_callington: 0\n"
    b"agi_callingtns: 0\n"
    b"agi_dnid: 4008001234\n"
    b"agi_rdnis: unknown\n"
    b"agi_context: from-trunk\n"
    b"agi_extension: 4008001234\n"
    b"agi_priority: 2\n"
    b"agi_enhanced: 0.0\n"
    b"agi_accountcode: \n"
    b"agi_threadid: 140291946370752\n"
    b"agi_arg_1: inbound\n"
    b"agi_arg_2: a b\n"
    b"\n"
)


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


def parse_args(line: str) -> list[str]:
    """Python port of res_agi.c parse_args(): how Asterisk splits a command line.

    Unquoted spaces/tabs separate words; '"' toggles quoting (and starts a word
    when it follows whitespace); a backslash makes the next character literal.
    """
    words: list[list[str]] = []
    quoted = escaped = False
    whitespace = True
    for ch in line:
        if ch == '"' and not escaped:
            quoted = not quoted
            if quoted and whitespace:
                words.append([])
                whitespace = False
            escaped = False
        elif ch in " \t" and not quoted and not escaped:
            whitespace = True
        elif ch == "\\" and not escaped:
            escaped = True
        else:
            if whitespace:
                words.append([])
                whitespace = False
            words[-1].append(ch)
            escaped = False
    return ["".join(word) for word in words]


# ---------------------------------------------------------------------------
# Environment
# ---------------------------------------------------------------------------


def test_environment_from_asterisk_22() -> None:
    parser = AgiEnvironmentParser()
    env = parser.feed(ASTERISK_22_ENV)
    assert isinstance(env, AgiEnvironment)
    assert env.script == "route"
    assert env.channel == "PJSIP/trunk-cn-00000012"
    assert env.uniqueid == "1718000000.37"
    assert env.callerid == "13800138000"
    assert env.calleridname == "Zhang San"
    assert env.extension == "4008001234"
    assert env.context == "from-trunk"
    assert env.dnid == "4008001234"
    assert env.values["accountcode"] == ""
    assert env.values["version"] == "22.1.0"
    assert env.args == ("inbound", "a b")
    assert parser.leftover == b""
    with pytest.raises(TypeError):
        env.values["channel"] = "x"  # type: ignore[index]


def test_environment_crlf_and_leftover() -> None:
    data = ASTERISK_22_ENV.replace(b"\n", b"\r\n") + b"HANGUP\n"
    parser = AgiEnvironmentParser()
    env = parser.feed(data)
    assert env is not None
    assert env.callerid == "13800138000"
    assert parser.leftover == b"HANGUP\n"


def test_environment_byte_by_byte() -> None:
    parser = AgiEnvironmentParser()
    results = [parser.feed(bytes([b])) for b in ASTERISK_22_ENV]
    assert all(r is None for r in results[:-1])
    assert results[-1] is not None and results[-1].args == ("inbound", "a b")


@pytest.mark.parametrize(
    ("script_line", "expected"),
    [
        (b"agi_network_script: route\n", "route"),
        (b"agi_network_script: /route\n", "route"),
        (b"agi_network_script: route?lang=zh\n", "route"),
        (b"agi_request: agi://127.0.0.1:4573/ivr?x=1\n", "ivr"),
        (b"agi_request: agi://127.0.0.1:4573\n", ""),
        (b"", ""),
    ],
)
def test_environment_script(script_line: bytes, expected: str) -> None:
    env = AgiEnvironmentParser().feed(b"agi_channel: Local/1@x-0001;1\n" + script_line + b"\n")
    assert env is not None and env.script == expected


def test_environment_args_in_numeric_order() -> None:
    env = AgiEnvironmentParser().feed(
        b"agi_arg_10: ten\nagi_arg_2: two\nagi_arg_1: one\n"
        + b"".join(b"agi_arg_%d: x\n" % i for i in range(3, 10))
        + b"\n"
    )
    assert env is not None
    assert env.args[:2] == ("one", "two") and env.args[-1] == "ten" and len(env.args) == 10


def test_environment_value_with_colon_and_invalid_utf8() -> None:
    env = AgiEnvironmentParser().feed(b"agi_calleridname: Dr: \xff Who\n\n")
    assert env is not None and env.calleridname == "Dr: \ufffd Who"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"hello world\n\n", "': '"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "': '"),
        (b"agi_channel: x\nfoo: bar\n\n", "agi_"),
        (b"agi_: x\n\n", "agi_"),
        (b"agi_x: " + b"a" * 70_000, "exceeds"),
        (b"agi_x: y\n" * 8000, "exceeds"),
    ],
)
def test_environment_rejects(data: bytes, message: str) -> None:
    parser = AgiEnvironmentParser()
    with pytest.raises(AgiProtocolError, match=message):
        parser.feed(data)
    with pytest.raises(AgiProtocolError):  # sticky: the stream is unusable
        parser.feed(b"\n")


def test_environment_error_before_blank_line() -> None:
    # A bad line is rejected as soon as it is complete, not at the blank line.
    with pytest.raises(AgiProtocolError):
        AgiEnvironmentParser().feed(b"agi_channel: x\nnot an env line\n")


def test_environment_tolerates_trimmed_empty_value() -> None:
    env = AgiEnvironmentParser().feed(b"agi_accountcode:\nagi_channel: x\n\n")
    assert env is not None and env.values["accountcode"] == ""


def test_environment_feed_after_done_goes_to_leftover() -> None:
    parser = AgiEnvironmentParser()
    env = parser.feed(b"agi_channel: x\n\n2")
    assert parser.feed(b"00 result=1\n") is env
    assert parser.leftover == b"200 result=1\n"


# ---------------------------------------------------------------------------
# Quoting and commands
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        ("dial", "dial"),
        ("PJSIP/1001", "PJSIP/1001"),
        ("a,b,c", "a,b,c"),
        ("${CALLERID(num)}", "${CALLERID(num)}"),
        ("张三", "张三"),
        ("", '""'),
        ("a b", '"a b"'),
        ("tab\there", '"tab\there"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("C:\\path", '"C:\\\\path"'),
        ("\\", '"\\\\"'),
        ('"', '"\\""'),
        (" ", '" "'),
    ],
)
def test_quote_arg_table(value: str, wire: str) -> None:
    assert quote_arg(value) == wire
    assert parse_args(wire) == [value]


@pytest.mark.parametrize(
    ("verb", "args", "wire"),
    [
        ("ANSWER", (), b"ANSWER\n"),
        ("SET VARIABLE", ("SS_ACTION", "dial"), b"SET VARIABLE SS_ACTION dial\n"),
        ("SET VARIABLE", ("SS_NAME", "Zhang San"), b'SET VARIABLE SS_NAME "Zhang San"\n'),
        ("STREAM FILE", ("welcome", ""), b'STREAM FILE welcome ""\n'),
        ("EXEC", ("Dial", "PJSIP/1001,30,tT"), b"EXEC Dial PJSIP/1001,30,tT\n"),
        ("VERBOSE", ("ünïcode ok", "1"), 'VERBOSE "ünïcode ok" 1\n'.encode()),
    ],
)
def test_encode_command_table(verb: str, args: tuple[str, ...], wire: bytes) -> None:
    assert encode_command(verb, *args) == wire


def test_encode_command_verb_words_passed_separately() -> None:
    assert encode_command("SET", "VARIABLE", "X", "1") == encode_command("SET VARIABLE", "X", "1")


@pytest.mark.parametrize(
    "value",
    [
        "dial\nEXEC System rm",
        "x\rEXEC System id",
        "nul\x00byte",
        "\n",
    ],
)
def test_injection_rejected(value: str) -> None:
    with pytest.raises(ValueError, match="argument 2"):
        encode_command("SET VARIABLE", "SS_ACTION", value)
    with pytest.raises(ValueError, match="cannot be sent"):
        quote_arg(value)


@pytest.mark.parametrize(
    "verb", ["", "answer", "SET  VARIABLE", " ANSWER", "ANSWER ", "SET VARIABLE\nX", "EXEC1", "É"]
)
def test_bad_verb_rejected(verb: str) -> None:
    with pytest.raises(ValueError, match="verb"):
        encode_command(verb)


def test_overlong_line_rejected() -> None:
    # Asterisk would run the part past its 2047-byte buffer as a second command.
    fits = "x" * (MAX_COMMAND_BYTES - len("SET VARIABLE V \n"))
    assert len(encode_command("SET VARIABLE", "V", fits)) == MAX_COMMAND_BYTES
    with pytest.raises(ValueError, match="2047"):
        encode_command("SET VARIABLE", "V", fits + "x")


def test_too_many_words_rejected() -> None:
    with pytest.raises(ValueError, match="127"):
        encode_command("EXEC", *(["a"] * 127))


def test_unencodable_rejected() -> None:
    with pytest.raises(ValueError, match="UTF-8"):
        encode_command("VERBOSE", "\ud800")


# ---------------------------------------------------------------------------
# Responses
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "code", "result", "data", "extra"),
    [
        (b"200 result=1\n", 200, "1", None, {}),
        (b"200 result=0\n", 200, "0", None, {}),
        (b"200 result=-1\n", 200, "-1", None, {}),
        (b"200 result=0 (timeout)\n", 200, "0", "timeout", {}),
        (b"200 result=1 (some value)\n", 200, "1", "some value", {}),
        (b"200 result=1 ()\n", 200, "1", "", {}),
        (b"200 result=1 (f(x) = (y))\n", 200, "1", "f(x) = (y)", {}),
        (b"200 result=0 endpos=12345\n", 200, "0", None, {"endpos": "12345"}),
        (b"200 result=49 endpos=8000\r\n", 200, "49", None, {"endpos": "8000"}),
        (b"200 result=1 (dtmf) endpos=960\n", 200, "1", "dtmf", {"endpos": "960"}),
        (b"200 result=12 (timeout)\n", 200, "12", "timeout", {}),
        (b"200 result= (timeout)\n", 200, "", "timeout", {}),
        (b"200 result=1 (a) b) endpos=5\n", 200, "1", "a) b", {"endpos": "5"}),
        (b"503 result=-2 Memory allocation failure\n", 503, "-2", None, {}),
        (b"510 Invalid or unknown command\n", 510, None, None, {}),
        (
            b"511 Command Not Permitted on a dead channel or intercept routine\n",
            511,
            None,
            None,
            {},
        ),
        (b"520 Invalid command syntax.  Proper usage not available.\n", 520, None, None, {}),
    ],
)
def test_response_table(
    line: bytes, code: int, result: str | None, data: str | None, extra: dict[str, str]
) -> None:
    items = AgiResponseParser().feed(line)
    assert len(items) == 1
    response = items[0]
    assert isinstance(response, AgiResponse)
    assert (response.code, response.result, response.data, dict(response.extra)) == (
        code,
        result,
        data,
        extra,
    )
    assert response.raw == line.decode().rstrip("\r\n")


def test_response_520_multiline_is_one_response() -> None:
    block = (
        b"520-Invalid command syntax.  Proper usage follows:\n"
        b" Usage: SET VARIABLE <variablename> <value>\n"
        b"\n"
        b"200 result=1 looks like a response but is usage text\n"
        b"520 End of proper usage.\n"
    )
    parser = AgiResponseParser()
    assert parser.feed(block[:60]) == []
    items = parser.feed(block[60:] + b"200 result=1\n")
    assert len(items) == 2
    usage, after = items
    assert isinstance(usage, AgiResponse) and usage.code == 520
    assert "Usage: SET VARIABLE" in usage.raw and usage.raw.endswith("520 End of proper usage.")
    assert usage.result is None
    assert isinstance(after, AgiResponse) and after.result == "1"


def test_hangup_notice_before_response() -> None:
    items = AgiResponseParser().feed(b"HANGUP\n200 result=-1 endpos=0\nHANGUP\r\n")
    assert items[0] == AgiHangupNotice()
    assert isinstance(items[1], AgiResponse) and items[1].result_int == -1
    assert items[2] == AgiHangupNotice()


@pytest.mark.parametrize(
    "data",
    [
        b"hello\n",
        b"\n",
        b"200\n",
        b"200 ok\n",
        b"200-continued\n",
        b"2000 result=1\n",
        b"hangup\n",
        b"200 result=1 (unclosed\n",
        b"\xd9\xa2\xd9\xa0\xd9\xa0 result=1\n",  # Arabic-Indic digits are not a status code
    ],
)
def test_response_rejects(data: bytes) -> None:
    parser = AgiResponseParser()
    with pytest.raises(AgiProtocolError):
        parser.feed(data)
    with pytest.raises(AgiProtocolError):
        parser.feed(b"200 result=1\n")


def test_response_overlong_line() -> None:
    parser = AgiResponseParser(max_line=100)
    with pytest.raises(AgiProtocolError, match="exceeds"):
        parser.feed(b"200 result=1 (" + b"x" * 200)  # no newline yet: still rejected
    with pytest.raises(AgiProtocolError, match="exceeds"):
        AgiResponseParser(max_line=100).feed(b"200 result=1 (" + b"x" * 200 + b")\n")


def test_response_overlong_usage_block() -> None:
    parser = AgiResponseParser(max_line=100)
    with pytest.raises(AgiProtocolError, match="520"):
        parser.feed(b"520-Invalid\n" + b"usage line\n" * 100)


# ---------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------

_cuts = st.lists(st.integers(min_value=0, max_value=10_000), max_size=20)


@settings(max_examples=300)
@given(data=st.binary(max_size=3000), cuts=_cuts)
def test_environment_parser_only_raises_protocol_error(data: bytes, cuts: list[int]) -> None:
    parser = AgiEnvironmentParser(max_bytes=1024)
    try:
        for chunk in _chunks(data, cuts):
            parser.feed(chunk)
    except AgiProtocolError:
        pass


@settings(max_examples=300)
@given(data=st.binary(max_size=3000), cuts=_cuts)
def test_response_parser_only_raises_protocol_error(data: bytes, cuts: list[int]) -> None:
    parser = AgiResponseParser(max_line=512)
    try:
        for chunk in _chunks(data, cuts):
            parser.feed(chunk)
    except AgiProtocolError:
        pass


# Bias the byte alphabet towards what matters to the grammar so the parsers'
# deeper branches are reached, not just "no separator".
_grammar_bytes = st.lists(
    st.sampled_from(
        [
            b"200 ",
            b"520-",
            b"520 ",
            b"result=",
            b"(",
            b")",
            b" ",
            b"\n",
            b"\r",
            b"HANGUP",
            b"agi_",
            b": ",
            b"x",
            b"=",
            b"1",
            b"\xff",
        ]
    ),
    max_size=80,
).map(b"".join)


@settings(max_examples=300)
@given(data=_grammar_bytes, cuts=_cuts)
def test_parsers_grammar_fuzz(data: bytes, cuts: list[int]) -> None:
    for parser in (AgiEnvironmentParser(max_bytes=256), AgiResponseParser(max_line=64)):
        try:
            for chunk in _chunks(data, cuts):
                parser.feed(chunk)
        except AgiProtocolError:
            pass


_sendable_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\r\n\x00"),
    max_size=40,
)


@settings(max_examples=500)
@given(args=st.lists(_sendable_text, max_size=8))
def test_quote_arg_round_trips_through_asterisk_parse_args(args: list[str]) -> None:
    line = encode_command("SET VARIABLE", *args)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert parse_args(line.decode("utf-8")[:-1]) == ["SET", "VARIABLE", *args]


@given(value=_sendable_text)
def test_quote_arg_is_one_word(value: str) -> None:
    assert parse_args(quote_arg(value)) == [value]


_response_lines = st.one_of(
    st.sampled_from(
        [
            "200 result=1\n",
            "200 result=0 (timeout)\n",
            "200 result=0 endpos=12345\n",
            "200 result=-1\n",
            "510 Invalid or unknown command\n",
            "511 Command Not Permitted on a dead channel or intercept routine\n",
            "520-Invalid command syntax.  Proper usage follows:\n Usage: X\n520 End of proper usage.\n",
            "HANGUP\n",
        ]
    ),
    st.builds("200 result=1 ({})\n".format, _sendable_text),
)


@settings(max_examples=200)
@given(lines=st.lists(_response_lines, max_size=10), cuts=_cuts)
def test_response_chunking_invariance(lines: list[str], cuts: list[int]) -> None:
    stream = "".join(lines).encode()
    whole = AgiResponseParser().feed(stream)
    parser = AgiResponseParser()
    pieces = [item for chunk in _chunks(stream, cuts) for item in parser.feed(chunk)]
    assert pieces == whole
    assert len(whole) == len(lines)


@settings(max_examples=200)
@given(
    pairs=st.lists(
        st.tuples(st.from_regex(r"agi_[a-z_0-9]{1,12}", fullmatch=True), _sendable_text),
        max_size=20,
    ),
    tail=st.binary(max_size=20),
    cuts=_cuts,
)
def test_environment_chunking_invariance(pairs: list[tuple[str, str]], tail: bytes, cuts: list[int]) -> None:
    stream = "".join(f"{k}: {v}\n" for k, v in pairs).encode() + b"\n" + tail
    whole_parser = AgiEnvironmentParser()
    whole = whole_parser.feed(stream)
    assert whole is not None
    assert dict(whole.values) == {k[4:]: v for k, v in pairs}
    parser = AgiEnvironmentParser()
    env = None
    for chunk in _chunks(stream, cuts):
        env = parser.feed(chunk)
    assert env == whole
    assert parser.leftover == whole_parser.leftover == tail
