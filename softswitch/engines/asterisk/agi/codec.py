"""Sans-IO codec for Asterisk FastAGI.

Nothing here touches a socket or an event loop: the parsers take the bytes the
caller happened to read and return parsed values; the encoder takes a command
and returns the bytes to write.  The asyncio server in ``server.py`` owns the
sockets, so everything in this module can be tested with plain byte strings.

Wire format, as Asterisk's res_agi speaks it:

* On connect Asterisk sends the channel environment, ``agi_key: value\\n`` per
  line, terminated by an empty line.
* The script then writes one command line and reads one response, e.g.
  ``200 result=1 (value) endpos=123``.  A failed syntax check is answered by
  the multi-line ``520-`` block ending with a ``520 `` line.
* When the channel hangs up, Asterisk writes ``HANGUP\\n`` out of band.
"""

from __future__ import annotations

import re
import types
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "MAX_COMMAND_BYTES",
    "AgiEnvironment",
    "AgiEnvironmentParser",
    "AgiHangupNotice",
    "AgiProtocolError",
    "AgiResponse",
    "AgiResponseParser",
    "encode_command",
    "quote_arg",
]

# res_agi reads a command into ``char buf[AGI_BUF_LEN]`` (2048) with fgets, so
# a line of more than 2047 bytes (newline included) is cut in two and the tail
# is executed as a *second* command.  Refusing to build such lines closes a
# command-injection hole for long caller-controlled values.
MAX_COMMAND_BYTES = 2047

# parse_args() stores at most MAX_ARGS - 1 (127) words and silently drops the
# rest; dropping an argument silently would change a command's meaning.
_MAX_WORDS = 127

_VERB_RE = re.compile(r"[A-Z]+(?: [A-Z]+)*")
# The only characters parse_args() treats specially (plus the empty string,
# which vanishes unless quoted).
_NEEDS_QUOTING_RE = re.compile(r'[ \t"\\]')
_FORBIDDEN_CHARS = ("\r", "\n", "\x00")

_STATUS_RE = re.compile(r"([0-9]{3})([ -])(.*)")
_RESULT_RE = re.compile(r"result=(\S*)")
_EXTRA_TAIL_RE = re.compile(r"(?:\s+[A-Za-z0-9_]+=\S*)*\s*")
_KEY_VALUE_RE = re.compile(r"([A-Za-z0-9_]+)=(\S*)")


class AgiProtocolError(Exception):
    """The peer sent bytes that are not valid AGI; the connection is unusable."""


# ---------------------------------------------------------------------------
# Environment
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AgiEnvironment:
    """The variables Asterisk sends before the first command.

    ``values`` holds every variable with the ``agi_`` prefix stripped
    (``values["channel"]``), including the ``arg_N`` ones; ``args`` is the
    ``agi_arg_1 .. agi_arg_N`` values in numeric order.
    """

    # Excluded from hashing: a read-only mapping is not hashable, and equal
    # environments still hash equal through ``args``.
    values: Mapping[str, str] = field(hash=False)
    args: tuple[str, ...] = ()

    def get(self, key: str, default: str = "") -> str:
        """A variable by its name without the ``agi_`` prefix."""
        return self.values.get(key, default)

    @property
    def script(self) -> str:
        """The route name: ``agi://host:port/route?x=1`` -> ``"route"``.

        Falls back to the path of ``agi_request`` when ``agi_network_script``
        is missing (it is only sent for FastAGI).
        """
        raw = self.values.get("network_script")
        if raw is None:
            raw = self.values.get("request", "")
            if "://" in raw:
                after_scheme = raw.split("://", 1)[1]
                raw = after_scheme.split("/", 1)[1] if "/" in after_scheme else ""
        return raw.split("?", 1)[0].lstrip("/")

    @property
    def channel(self) -> str:
        return self.get("channel")

    @property
    def uniqueid(self) -> str:
        return self.get("uniqueid")

    @property
    def callerid(self) -> str:
        return self.get("callerid")

    @property
    def calleridname(self) -> str:
        return self.get("calleridname")

    @property
    def extension(self) -> str:
        return self.get("extension")

    @property
    def context(self) -> str:
        return self.get("context")

    @property
    def dnid(self) -> str:
        return self.get("dnid")


class AgiEnvironmentParser:
    """Incremental parser for the environment block.

    Feed it whatever was read from the socket; it returns the environment once
    the terminating empty line has arrived and keeps any bytes after that line
    in ``leftover`` (they belong to the response stream).  Lines are checked as
    soon as they are complete, so garbage is rejected without waiting for the
    blank line or the size limit.  After an error every further ``feed``
    raises again: the stream cannot be resynchronised.
    """

    def __init__(self, max_bytes: int = 64 * 1024) -> None:
        self._max_bytes = max_bytes
        self._buffer = bytearray()
        self._consumed = 0  # bytes of complete lines already parsed
        self._values: dict[str, str] = {}
        self._result: AgiEnvironment | None = None
        self._error: AgiProtocolError | None = None
        self.leftover: bytes = b""

    @property
    def done(self) -> bool:
        return self._result is not None

    def feed(self, data: bytes) -> AgiEnvironment | None:
        if self._error is not None:
            raise self._error
        if self._result is not None:
            # Already complete: anything more is response-stream data.
            self.leftover += data
            return self._result
        self._buffer += data
        try:
            return self._parse()
        except AgiProtocolError as exc:
            self._error = exc
            self._buffer.clear()
            raise

    def _parse(self) -> AgiEnvironment | None:
        while True:
            newline = self._buffer.find(b"\n")
            if newline < 0:
                if self._consumed + len(self._buffer) > self._max_bytes:
                    raise AgiProtocolError(
                        f"AGI environment exceeds {self._max_bytes} bytes without an empty line"
                    )
                return None
            self._consumed += newline + 1
            if self._consumed > self._max_bytes:
                raise AgiProtocolError(
                    f"AGI environment exceeds {self._max_bytes} bytes without an empty line"
                )
            line = bytes(self._buffer[:newline])
            del self._buffer[: newline + 1]
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                self.leftover = bytes(self._buffer)
                self._buffer.clear()
                self._result = self._build()
                return self._result
            self._add_line(line.decode("utf-8", errors="replace"))

    def _add_line(self, line: str) -> None:
        key, sep, value = line.partition(": ")
        if not sep:
            # Tolerate "agi_accountcode:" for an empty value, in case something
            # in between trimmed trailing whitespace; anything else is garbage.
            if line.endswith(":") and ": " not in line:
                key, value = line[:-1], ""
            else:
                raise AgiProtocolError(f"AGI environment line has no ': ' separator: {_preview(line)}")
        if not key.startswith("agi_") or len(key) == len("agi_"):
            raise AgiProtocolError(f"AGI environment key does not start with 'agi_': {_preview(key)}")
        self._values[key[len("agi_") :]] = value

    def _build(self) -> AgiEnvironment:
        numbered: list[tuple[int, str]] = []
        for key, value in self._values.items():
            suffix = key[len("arg_") :]
            if key.startswith("arg_") and suffix.isdigit() and suffix.isascii():
                numbered.append((int(suffix), value))
        numbered.sort()
        return AgiEnvironment(
            values=types.MappingProxyType(dict(self._values)),
            args=tuple(value for _, value in numbered),
        )


# ---------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------


def quote_arg(value: str, *, name: str = "argument") -> str:
    """Render one AGI argument so that Asterisk's parse_args() yields ``value``.

    Values without spaces, tabs, quotes or backslashes go out as-is (keeps the
    wire readable in ``agi set debug on``); anything else, and the empty string,
    is double-quoted with ``"`` and ``\\`` backslash-escaped.  CR, LF and NUL
    cannot be represented at all (they end the command line early, which would
    let a value inject a second command), so they raise ``ValueError``; ``name``
    says which argument in that message.
    """
    for bad in _FORBIDDEN_CHARS:
        if bad in value:
            raise ValueError(f"AGI {name} contains {bad!r}, which cannot be sent to Asterisk")
    if value and not _NEEDS_QUOTING_RE.search(value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def encode_command(verb: str, *args: str) -> bytes:
    """Encode one command line: ``encode_command("SET VARIABLE", "X", "a b")``.

    ``verb`` is the command name, possibly several words ("SET VARIABLE",
    "GET DATA"); it is sent verbatim and must match ``[A-Z]+( [A-Z]+)*`` so a
    verb can never smuggle arguments.  Each of ``args`` is one argument, quoted
    as needed by :func:`quote_arg`.  Passing the verb's words separately
    (``encode_command("SET", "VARIABLE", ...)``) yields the same bytes, since
    plain upper-case words need no quoting.

    Raises ValueError for a bad verb, an argument with CR/LF/NUL (or that is
    not encodable as UTF-8), more than 127 words, or a line longer than
    Asterisk's 2047-byte read buffer.
    """
    if not _VERB_RE.fullmatch(verb):
        raise ValueError(f"AGI verb must be upper-case words separated by single spaces: {verb!r}")
    if verb.count(" ") + 1 + len(args) > _MAX_WORDS:
        raise ValueError(f"AGI command has more than {_MAX_WORDS} words; Asterisk would drop some")
    parts = [verb]
    for index, arg in enumerate(args, start=1):
        if not isinstance(arg, str):
            raise TypeError(f"AGI argument {index} must be str, not {type(arg).__name__}")
        parts.append(quote_arg(arg, name=f"argument {index}"))
    line = " ".join(parts) + "\n"
    try:
        encoded = line.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"AGI command for {verb} is not encodable as UTF-8: {exc.reason}") from exc
    if len(encoded) > MAX_COMMAND_BYTES:
        raise ValueError(
            f"AGI command {verb} is {len(encoded)} bytes; Asterisk reads at most "
            f"{MAX_COMMAND_BYTES} and would run the excess as a separate command"
        )
    return encoded


# ---------------------------------------------------------------------------
# Responses
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AgiResponse:
    """One response to one command.

    ``result`` is the token after ``result=`` (possibly empty, e.g. GET DATA
    with no digits; None when the line has no ``result=``, as for 510/511/520),
    ``data`` is the text inside the parentheses after it (None when absent),
    ``extra`` the ``key=value`` words after that (``endpos``), ``raw`` the full
    text without the trailing newline (all lines for a 520 block).
    """

    code: int
    result: str | None
    data: str | None
    extra: Mapping[str, str] = field(hash=False)
    raw: str

    @property
    def ok(self) -> bool:
        return self.code == 200

    @property
    def result_int(self) -> int | None:
        """``result`` as an integer, or None when it is absent or not numeric."""
        if self.result is None:
            return None
        try:
            return int(self.result)
        except ValueError:
            return None


@dataclass(frozen=True)
class AgiHangupNotice:
    """The out-of-band ``HANGUP`` line Asterisk sends when the channel hangs up."""


def _parse_status_line(code: int, rest: str, raw: str) -> AgiResponse:
    match = _RESULT_RE.match(rest)
    if match is None:
        if code == 200:
            raise AgiProtocolError(f"AGI 200 response without result=: {_preview(raw)}")
        # 510/511/520 carry a human-readable text only.
        return AgiResponse(code, None, None, types.MappingProxyType({}), raw)
    result = match.group(1)
    tail = rest[match.end() :]
    data: str | None = None
    stripped = tail.lstrip(" ")
    if stripped.startswith("("):
        body = stripped[1:]
        # The data is free text (GET VARIABLE returns the value verbatim, which
        # may contain ")"), so take the right-most ")" after which only
        # key=value words follow; fall back to the first ")".
        close = -1
        position = len(body)
        while True:
            position = body.rfind(")", 0, position)
            if position < 0:
                break
            if _EXTRA_TAIL_RE.fullmatch(body[position + 1 :]):
                close = position
                break
        if close < 0:
            close = body.find(")")
        if close < 0:
            raise AgiProtocolError(f"AGI response has an unclosed '(': {_preview(raw)}")
        data = body[:close]
        tail = body[close + 1 :]
    extra = {m.group(1): m.group(2) for m in _KEY_VALUE_RE.finditer(tail)}
    return AgiResponse(code, result, data, types.MappingProxyType(extra), raw)


class AgiResponseParser:
    """Incremental parser for the stream of responses and HANGUP notices.

    ``feed`` returns everything completed by the new bytes, in order.  A 520
    usage block is collected and returned as a single AgiResponse.  Lines
    longer than ``max_line`` (and 520 blocks longer than four times that) are
    a protocol error, so a misbehaving peer cannot make us buffer without
    bound.  After an error every further ``feed`` raises again.
    """

    def __init__(self, max_line: int = 16 * 1024) -> None:
        self._max_line = max_line
        self._max_block = 4 * max_line
        self._buffer = bytearray()
        self._usage: list[str] | None = None  # lines of an open 520 block
        self._usage_bytes = 0
        self._error: AgiProtocolError | None = None

    def feed(self, data: bytes) -> list[AgiResponse | AgiHangupNotice]:
        if self._error is not None:
            raise self._error
        self._buffer += data
        out: list[AgiResponse | AgiHangupNotice] = []
        try:
            while True:
                newline = self._buffer.find(b"\n")
                if newline < 0:
                    if len(self._buffer) > self._max_line:
                        raise AgiProtocolError(f"AGI response line exceeds {self._max_line} bytes")
                    return out
                if newline > self._max_line:
                    raise AgiProtocolError(f"AGI response line exceeds {self._max_line} bytes")
                line_bytes = bytes(self._buffer[:newline])
                del self._buffer[: newline + 1]
                if line_bytes.endswith(b"\r"):
                    line_bytes = line_bytes[:-1]
                item = self._line(line_bytes.decode("utf-8", errors="replace"), newline + 1)
                if item is not None:
                    out.append(item)
        except AgiProtocolError as exc:
            self._error = exc
            self._buffer.clear()
            raise

    def _line(self, line: str, size: int) -> AgiResponse | AgiHangupNotice | None:
        if self._usage is not None:
            self._usage_bytes += size
            if self._usage_bytes > self._max_block:
                raise AgiProtocolError(f"AGI 520 usage block exceeds {self._max_block} bytes")
            self._usage.append(line)
            if line.startswith("520 "):
                lines, self._usage = self._usage, None
                raw = "\n".join(lines)
                return AgiResponse(520, None, None, types.MappingProxyType({}), raw)
            return None
        if line == "HANGUP":
            return AgiHangupNotice()
        match = _STATUS_RE.fullmatch(line)
        if match is None:
            raise AgiProtocolError(f"unparseable AGI response line: {_preview(line)}")
        code = int(match.group(1))
        if match.group(2) == "-":
            if code != 520:
                raise AgiProtocolError(f"unexpected AGI continuation line: {_preview(line)}")
            self._usage = [line]
            self._usage_bytes = size
            return None
        return _parse_status_line(code, match.group(3), line)


def _preview(text: str, limit: int = 60) -> str:
    """A short repr for error messages; peers may send megabytes of junk."""
    return repr(text if len(text) <= limit else text[:limit] + "...")
