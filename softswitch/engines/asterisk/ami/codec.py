"""Sans-IO codec for the Asterisk Manager Interface (AMI).

Bytes in, frames out (:class:`AmiParser`); actions in, bytes out (:func:`encode_action`).
Nothing here touches a socket or an event loop, so every edge case of the wire format can
be tested with plain byte strings; :mod:`softswitch.engines.asterisk.ami.client` owns the connection.

Wire format (Asterisk 22, manager.c): after connecting, Asterisk sends one banner line
("Asterisk Call Manager/9.0.0\\r\\n") with no blank line after it. Everything afterwards is a
message: "Key: Value\\r\\n" lines terminated by an empty line. Keys may repeat (Command
output arrives as repeated ``Output:`` headers, Originate takes repeated ``Variable:``), so
a message is an ordered tuple of pairs rather than a dict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

__all__ = [
    "AmiBanner",
    "AmiFrame",
    "AmiMalformed",
    "AmiMessage",
    "AmiParser",
    "AmiProtocolError",
    "encode_action",
]

# Header names the codec itself writes; letting callers pass them in ``fields`` would
# produce a second ActionID and silently break response correlation.
_RESERVED_FIELDS = frozenset({"action", "actionid"})
# Characters that would let a value terminate its header line or the whole message early
# (NUL because Asterisk handles header values as C strings).
_FORBIDDEN_CHARS = ("\r", "\n", "\0")
# How much of an offending line to quote in AmiMalformed.reason; enough to recognise it
# in a log line without copying a whole runaway payload into every log record.
_REASON_QUOTE_CHARS = 80


class AmiProtocolError(Exception):
    """The byte stream cannot be parsed any further; the connection has to be dropped."""


@dataclass(frozen=True)
class AmiMessage:
    """One AMI message (response, event, or anything else the server sends).

    Header names are compared case-insensitively, as Asterisk does (strcasecmp), but
    kept exactly as received.
    """

    headers: tuple[tuple[str, str], ...]
    # The first value of each header by its lower-cased name, built on the first get():
    # an event is read several times (Event, ActionID, then its handler's fields).
    _first: dict[str, str] | None = field(default=None, init=False, repr=False, compare=False)

    def get(self, key: str, default: str | None = None) -> str | None:
        """Return the first value of ``key`` (case-insensitive), or ``default``."""
        first = self._first
        if first is None:
            first = {}
            for name, value in self.headers:
                first.setdefault(name.lower(), value)
            object.__setattr__(self, "_first", first)
        return first.get(key.lower(), default)

    def get_all(self, key: str) -> list[str]:
        """Return every value of ``key`` (case-insensitive), in wire order."""
        wanted = key.lower()
        return [value for name, value in self.headers if name.lower() == wanted]

    @property
    def is_event(self) -> bool:
        return self.get("Event") is not None

    @property
    def is_response(self) -> bool:
        return self.get("Response") is not None

    @property
    def event(self) -> str | None:
        return self.get("Event")

    @property
    def response(self) -> str | None:
        return self.get("Response")

    @property
    def action_id(self) -> str | None:
        return self.get("ActionID")

    def as_dict(self) -> dict[str, str]:
        """Collapse into a dict keyed by the header names as received; the first value wins.

        Lossy by design (repeated headers such as ``Output:`` keep only their first value);
        use :meth:`get_all` for those.
        """
        result: dict[str, str] = {}
        for name, value in self.headers:
            result.setdefault(name, value)
        return result


@dataclass(frozen=True)
class AmiBanner:
    """The greeting line Asterisk sends right after accepting the TCP connection."""

    text: str


@dataclass(frozen=True)
class AmiMalformed:
    """A message that could not be parsed.

    Yielded rather than raised so that one bad frame costs one message, not the whole
    connection: the client logs it and keeps reading.
    """

    raw: bytes
    reason: str


AmiFrame: TypeAlias = AmiBanner | AmiMessage | AmiMalformed


def _split_header(line: str) -> tuple[str, str] | None:
    """Split "Key: Value" on the first ": " (values may contain ": " themselves).

    A line that ends in a bare ":" is accepted as an empty value: Asterisk itself always
    writes "Key: " but some proxies and hand-written test fixtures strip trailing spaces.
    """
    name, sep, value = line.partition(": ")
    if sep:
        return name, value
    if line.endswith(":"):
        return line[:-1], ""
    return None


def _decode(raw: bytes) -> str:
    # Channel variables and CallerID names can carry arbitrary bytes; a replacement
    # character is better than losing the message (or the connection) over one of them.
    return raw.decode("utf-8", errors="replace")


def _strip_eol(raw_line: bytes) -> bytes:
    """Remove "\\n" and an optional preceding "\\r" (tolerates bare-LF peers)."""
    line = raw_line[:-1] if raw_line.endswith(b"\n") else raw_line
    return line[:-1] if line.endswith(b"\r") else line


class AmiParser:
    """Incremental AMI parser: ``feed()`` bytes as they arrive, get complete frames back.

    The first non-empty line is reported as :class:`AmiBanner` unless it looks like a
    header line, in which case the stream is assumed to start without a banner (useful
    when replaying captured traffic).

    ``max_message_bytes`` bounds the memory a single message (including a still
    incomplete line) may occupy. Exceeding it raises :class:`AmiProtocolError`; the
    parser then stays failed, because there is no reliable way to find the next
    message boundary in a stream that has gone wrong that badly.
    """

    def __init__(self, max_message_bytes: int = 1 << 20) -> None:
        if max_message_bytes <= 0:
            raise ValueError("max_message_bytes must be positive")
        self._max_message_bytes = max_message_bytes
        self._buffer = bytearray()
        # Bytes at the start of the buffer already known to contain no "\n"; saves
        # rescanning a long partial line on every small feed().
        self._scanned = 0
        self._lines: list[bytes] = []  # raw lines (with EOL) of the message being built
        self._message_bytes = 0
        self._expect_banner = True
        self._failed = False

    def feed(self, data: bytes) -> list[AmiFrame]:
        """Consume ``data`` and return every frame it completed, in order."""
        if self._failed:
            raise AmiProtocolError("parser failed earlier; the connection must be reset")
        buffer = self._buffer
        buffer += data
        frames: list[AmiFrame] = []
        line_start = 0
        search_from = self._scanned
        while True:
            if not self._expect_banner and not self._lines:
                # Between messages: whole ones at once, as far as they go.
                whole_end = self._whole_messages(buffer, line_start, frames)
                if whole_end > line_start:
                    line_start = whole_end
                    search_from = max(search_from, whole_end)
            newline = buffer.find(b"\n", search_from)
            if newline < 0:
                break
            frame = self._take_line(bytes(buffer[line_start : newline + 1]))
            if frame is not None:
                frames.append(frame)
            line_start = search_from = newline + 1
        del buffer[:line_start]
        self._scanned = len(buffer)
        if self._message_bytes + len(buffer) > self._max_message_bytes:
            self._fail()
        return frames

    def _whole_messages(self, buffer: bytearray, start: int, frames: list[AmiFrame]) -> int:
        """The fast path: complete CRLF messages at the start of the buffer, each decoded
        and split at once; returns where the rest starts. It stops (leaving the rest to the
        line-by-line path, which gives the same frames) at anything it does not expect: a
        bare LF, a line without ': ', an oversized message."""
        limit = self._max_message_bytes
        while True:
            while buffer.startswith(b"\r\n", start):
                start += 2  # blank lines between messages carry nothing
            end = buffer.find(b"\r\n\r\n", start)
            if end < 0 or end - start + 2 > limit:
                return start
            raw = bytes(buffer[start:end])
            if raw.count(b"\n") != raw.count(b"\r\n"):
                return start  # a bare LF inside: the careful path
            headers: list[tuple[str, str]] = []
            for line in _decode(raw).split("\r\n"):
                name, sep, value = line.partition(": ")
                if not sep or not name:
                    return start  # malformed, or a bare "Key:": the careful path
                headers.append((name, value))
            frames.append(AmiMessage(tuple(headers)))
            start = end + 4

    def _take_line(self, raw_line: bytes) -> AmiFrame | None:
        line = _strip_eol(raw_line)
        if self._expect_banner:
            if not line:
                return None  # tolerate blank lines before the greeting
            self._expect_banner = False
            text = _decode(line)
            if _split_header(text) is None:
                return AmiBanner(text)
            # No banner: this line already belongs to the first message.
        if not line:
            # Blank lines between messages (or a doubled terminator) carry nothing.
            return self._finish_message() if self._lines else None
        self._lines.append(raw_line)
        self._message_bytes += len(raw_line)
        if self._message_bytes > self._max_message_bytes:
            self._fail()
        return None

    def _finish_message(self) -> AmiMessage | AmiMalformed:
        lines, self._lines, self._message_bytes = self._lines, [], 0
        headers: list[tuple[str, str]] = []
        for number, raw_line in enumerate(lines, start=1):
            text = _decode(_strip_eol(raw_line))
            pair = _split_header(text)
            if pair is None:
                quoted = text[:_REASON_QUOTE_CHARS]
                return AmiMalformed(b"".join(lines), f"line {number}: no ': ' separator in {quoted!r}")
            if not pair[0]:
                return AmiMalformed(b"".join(lines), f"line {number}: empty header name")
            headers.append(pair)
        return AmiMessage(tuple(headers))

    def _fail(self) -> None:
        size = self._message_bytes + len(self._buffer)
        self._failed = True
        self._buffer.clear()
        self._lines.clear()
        self._message_bytes = 0
        raise AmiProtocolError(
            f"AMI message exceeds {self._max_message_bytes} bytes (at least {size} buffered)"
        )


def _check_text(what: str, text: str) -> None:
    # ``what`` names the field but never quotes the value: the value may be the secret.
    if any(char in text for char in _FORBIDDEN_CHARS):
        raise ValueError(f"{what} contains CR, LF or NUL (header injection)")


def _encode_line(name: str, value: str, what: str) -> bytes:
    try:
        return f"{name}: {value}\r\n".encode()
    except UnicodeEncodeError:  # lone surrogates
        raise ValueError(f"{what} is not encodable as UTF-8") from None


def _field_values(name: str, value: object) -> list[str]:
    if isinstance(value, str | int):  # bool is an int; Asterisk's ast_true() accepts "True"
        return [str(value)]
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        items: list[str] = []
        for item in value:
            if not isinstance(item, str | int):
                raise TypeError(f"AMI field {name!r}: sequence items must be str or int")
            items.append(str(item))
        return items
    raise TypeError(f"AMI field {name!r}: value must be str, int or a sequence of str")


def encode_action(
    action: str,
    action_id: str,
    fields: Mapping[str, str | int | Sequence[str]] | None = None,
) -> bytes:
    """Serialise one AMI action.

    A sequence value becomes repeated header lines in order (``{"Variable": ["A=1",
    "B=2"]}`` -> ``Variable: A=1`` / ``Variable: B=2``); an empty sequence writes nothing.

    Raises ValueError, naming the field but never quoting its value, if anything would
    break the framing: CR, LF or NUL anywhere, an empty field name or one containing
    ':', or a field named Action/ActionID (the codec owns those).
    """
    _check_text("AMI action name", action)
    if not action:
        raise ValueError("AMI action name is empty")
    _check_text("AMI ActionID", action_id)
    parts = [
        _encode_line("Action", action, "AMI action name"),
        _encode_line("ActionID", action_id, "AMI ActionID"),
    ]
    for name, value in (fields or {}).items():
        if not isinstance(name, str):
            raise TypeError(f"AMI field name {name!r} is not a str")
        if not name:
            raise ValueError("AMI field name is empty")
        _check_text(f"AMI field name {name!r}", name)
        if ":" in name:
            raise ValueError(f"AMI field name {name!r} contains ':' (header injection)")
        if name.lower() in _RESERVED_FIELDS:
            raise ValueError(f"AMI field {name!r} is reserved; it is set by encode_action")
        for text in _field_values(name, value):
            _check_text(f"value of AMI field {name!r}", text)
            parts.append(_encode_line(name, text, f"value of AMI field {name!r}"))
    parts.append(b"\r\n")
    return b"".join(parts)
