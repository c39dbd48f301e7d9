"""Sans-IO codec for the FreeSWITCH Event Socket (mod_event_socket).

Bytes in, frames out (:class:`EslParser`); commands in, bytes out (:func:`encode_command`).
Nothing here touches a socket or an event loop, so every edge case of the wire format can
be tested with plain byte strings; :mod:`softswitch.engines.freeswitch.esl.client` owns the connection.

Wire format (mod_event_socket.c, inbound mode). Everything FreeSWITCH sends is a frame:
"Key: Value\\n" header lines (LF, not CRLF) terminated by an empty line, followed by exactly
``Content-Length`` bytes of body when that header is present::

    Content-Type: auth/request                      greeting, right after accept()

    Content-Type: command/reply                     answer to auth, event, bgapi, sendmsg...
    Reply-Text: +OK accepted

    Content-Type: api/response                      answer to ``api``; body = command output
    Content-Length: 14

    UP 0 years, ...

    Content-Length: 512                             one event (``event plain ...``)
    Content-Type: text/event-plain

    Event-Name: CHANNEL_ANSWER                      the body is itself a header block with
    Caller-Caller-ID-Name: Alice%20Smith            percent-encoded values, an empty line,
    ...                                             and, for events with a body (e.g.
    Content-Length: 41                              BACKGROUND_JOB), its own Content-Length
                                                    and body
    +OK 8b0e...

    Content-Type: text/disconnect-notice            sent just before FreeSWITCH closes the
    Content-Length: 67                              socket (the body is a human farewell;
                                                    older versions send no body at all)

Outer header values are plain text; only the header values *inside* a text/event-plain
body are percent-encoded (switch_event_serialize), and :class:`EslEvent` holds them
decoded. Commands go the other way: a command line, optional "Key: Value" lines, an empty
line, and an optional body announced by Content-Length (:func:`encode_command`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NoReturn, TypeAlias
from urllib.parse import unquote

__all__ = [
    "EslCommand",
    "EslEvent",
    "EslFrame",
    "EslMalformed",
    "EslParsed",
    "EslParser",
    "EslProtocolError",
    "decode_event",
    "encode_command",
]

# Characters that would let a value end its line or the whole command early (NUL because
# FreeSWITCH handles the command as a C string).
_FORBIDDEN_CHARS = ("\r", "\n", "\0")
# The codec writes Content-Length itself (from ``body``); a second one from the caller
# would make FreeSWITCH read the wrong number of body bytes and lose the framing.
_RESERVED_HEADERS = frozenset({"content-length"})
# How much of an offending line to quote in EslMalformed.reason.
_REASON_QUOTE_CHARS = 80
# Plain ASCII digits only: int() would also accept "1_0", "+5" and non-ASCII digits.
# Twelve digits are far beyond any sane frame and keep int() trivially cheap.
_CONTENT_LENGTH = re.compile(rb"[0-9]{1,12}")

CONTENT_TYPE_EVENT_PLAIN = "text/event-plain"


class EslProtocolError(Exception):
    """The byte stream cannot be parsed any further; the connection has to be dropped."""


def _get(headers: tuple[tuple[str, str], ...], key: str, default: str | None) -> str | None:
    wanted = key.lower()
    for name, value in headers:
        if name.lower() == wanted:
            return value
    return default


@dataclass(frozen=True)
class EslFrame:
    """One frame from FreeSWITCH: its outer headers (as received, in order) and its body.

    Header names are compared case-insensitively, as FreeSWITCH does (strcasecmp).
    """

    headers: tuple[tuple[str, str], ...]
    body: bytes = b""

    def get(self, key: str, default: str | None = None) -> str | None:
        """Return the first value of ``key`` (case-insensitive), or ``default``."""
        return _get(self.headers, key, default)

    @property
    def content_type(self) -> str | None:
        return self.get("Content-Type")

    @property
    def reply_text(self) -> str | None:
        """``Reply-Text`` of a command/reply ("+OK accepted", "-ERR invalid", ...)."""
        return self.get("Reply-Text")

    @property
    def job_uuid(self) -> str | None:
        return self.get("Job-UUID")

    @property
    def text(self) -> str:
        """The body as text (invalid UTF-8 replaced, never fatal)."""
        return _decode(self.body)


@dataclass(frozen=True)
class EslEvent:
    """One text/event-plain event, values percent-decoded.

    ``headers`` keeps the names as received; if a name repeats, the first value wins.
    ``body`` is the event's own body (the job output of a BACKGROUND_JOB), or "".

    Values are percent-decoded when read (``get``), not when the event is parsed: an
    event carries every channel variable, and a listener reads a handful of them.
    """

    name: str
    raw: dict[str, str]  # header name -> value as sent (percent-encoded)
    body: str = ""

    @functools.cached_property
    def headers(self) -> dict[str, str]:
        return {k: _unquote(v) for k, v in self.raw.items()}

    @functools.cached_property
    def _by_lower_name(self) -> dict[str, str]:
        # Built at the first miss of an exact name, not scanned again at every miss: a
        # listener asks for variables an event may not carry (ss_call_id on a caller leg).
        out: dict[str, str] = {}
        for k, v in self.raw.items():
            out.setdefault(k.lower(), v)
        return out

    def get(self, key: str, default: str | None = None) -> str | None:
        """Return the value of ``key``, matching the name case-insensitively."""
        value = self.raw.get(key)
        if value is None:
            value = self._by_lower_name.get(key.lower())
            if value is None:
                return default
        return _unquote(value)

    @property
    def unique_id(self) -> str | None:
        """The channel UUID (``Unique-ID``) of channel events."""
        return self.get("Unique-ID")

    @property
    def job_uuid(self) -> str | None:
        """The ``Job-UUID`` of a BACKGROUND_JOB event."""
        return self.get("Job-UUID")


def _unquote(value: str) -> str:
    return unquote(value, errors="replace") if "%" in value else value


@dataclass(frozen=True)
class EslCommand:
    """One command as a client sends it (parsed with ``EslParser(commands=True)``).

    What FreeSWITCH itself reads; useful for fake servers and round-trip tests.
    """

    line: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    def get(self, key: str, default: str | None = None) -> str | None:
        """Return the first value of ``key`` (case-insensitive), or ``default``."""
        return _get(self.headers, key, default)


@dataclass(frozen=True)
class EslMalformed:
    """A frame that could not be parsed.

    Yielded rather than raised so that one bad frame costs one frame, not the whole
    connection: the client logs it and keeps reading. Its Content-Length (if readable)
    was honoured, so the stream stays in step.
    """

    raw: bytes
    reason: str


EslParsed: TypeAlias = EslFrame | EslEvent | EslCommand | EslMalformed


def _decode(raw: bytes) -> str:
    # Caller ID names and channel variables can carry arbitrary bytes; a replacement
    # character is better than losing the frame (or the connection) over one of them.
    return raw.decode("utf-8", errors="replace")


def _strip_eol(raw_line: bytes) -> bytes:
    """Remove "\\n" and an optional preceding "\\r" (tolerates CRLF peers)."""
    line = raw_line[:-1] if raw_line.endswith(b"\n") else raw_line
    return line[:-1] if line.endswith(b"\r") else line


def _split_header(line: str) -> tuple[str, str] | None:
    """Split "Key: Value" on the first ": " (values may contain ": " themselves).

    A line ending in a bare ":" is an empty value (tolerated, like the AMI codec).
    """
    name, sep, value = line.partition(": ")
    if sep:
        return name, value
    if line.endswith(":"):
        return line[:-1], ""
    return None


def _parse_header_lines(
    lines: list[bytes], first_number: int = 1
) -> tuple[tuple[tuple[str, str], ...], str | None]:
    """Parse raw header lines; returns the good pairs and the first problem (or None).

    The bad lines are skipped rather than ending the parse, so that a Content-Length
    further down is still honoured and the stream stays in step.
    """
    pairs: list[tuple[str, str]] = []
    problem: str | None = None
    for number, raw_line in enumerate(lines, start=first_number):
        text = _decode(_strip_eol(raw_line))
        pair = _split_header(text)
        if pair is None:
            problem = problem or f"line {number}: no ': ' separator in {text[:_REASON_QUOTE_CHARS]!r}"
            continue
        if not pair[0]:
            problem = problem or f"line {number}: empty header name"
            continue
        pairs.append(pair)
    return tuple(pairs), problem


def _content_length(value: str) -> int | None:
    raw = value.strip(" \t").encode("utf-8", errors="replace")
    if not _CONTENT_LENGTH.fullmatch(raw):
        return None
    return int(raw)


def _end_of_headers(body: bytes) -> tuple[int, int]:
    """(end of the header block, start of what follows the empty line) in an event body;
    the whole body when it has no empty line. LF or CRLF lines."""
    candidates = [(i, i + 2) for i in (body.find(b"\n\n"),) if i >= 0]
    candidates += [(i, i + 3) for i in (body.find(b"\n\r\n"),) if i >= 0]
    if body.startswith(b"\n"):
        candidates.append((-1, 1))
    elif body.startswith(b"\r\n"):
        candidates.append((-1, 2))
    if not candidates:
        return len(body), len(body)
    head_end, rest = min(candidates)
    return max(head_end, 0), rest


def decode_event(body: bytes) -> EslEvent | str:
    """Decode the body of a text/event-plain frame; returns the reason on failure.

    The hot path of the engine's events (each carries every channel variable, 150 and
    more headers): one decode and one split of the header block, and percent-decoding
    only when a value is read (EslEvent.get)."""
    head_end, rest_at = _end_of_headers(body)
    headers: dict[str, str] = {}
    text = _decode(body[:head_end])
    for number, line in enumerate(text.split("\n") if text else (), start=1):
        if line.endswith("\r"):
            line = line[:-1]
        name, sep, value = line.partition(": ")
        if not sep:
            if not line.endswith(":"):
                return f"event line {number}: no ': ' separator in {line[:_REASON_QUOTE_CHARS]!r}"
            name, value = line[:-1], ""
        if not name:
            return f"event line {number}: empty header name"
        if name not in headers:
            headers[name] = value
    event_body = ""
    length_text = headers.get("Content-Length")
    if length_text is None:
        length_text = next((v for k, v in headers.items() if k.lower() == "content-length"), None)
    length_text = None if length_text is None else _unquote(length_text)
    if length_text is not None:
        length = _content_length(length_text)
        if length is None:
            return f"event Content-Length is not a number: {length_text[:_REASON_QUOTE_CHARS]!r}"
        rest = body[rest_at:]
        if len(rest) < length:
            return f"event body has {len(rest)} bytes, its Content-Length says {length}"
        event_body = _decode(rest[:length])
    event_name = headers.get("Event-Name")
    if not event_name:
        event_name = next((v for k, v in headers.items() if k.lower() == "event-name"), None)
    if not event_name:
        return "event without Event-Name"
    return EslEvent(name=_unquote(event_name), raw=headers, body=event_body)


class EslParser:
    """Incremental ESL parser: ``feed()`` bytes as they arrive, get complete frames back.

    By default it reads what FreeSWITCH sends: every frame becomes an :class:`EslFrame`,
    except text/event-plain frames, which are decoded into :class:`EslEvent`. With
    ``commands=True`` it reads what a client sends (the first line of each frame is the
    command line) and yields :class:`EslCommand`.

    ``max_frame_bytes`` bounds one frame (header lines plus body, including a still
    incomplete line). Exceeding it, or a Content-Length that is not a number (the next
    frame boundary is then unknowable), raises :class:`EslProtocolError`; the parser then
    stays failed and the connection has to be reset. A Content-Length that would exceed
    the limit fails as soon as the headers are complete, before any body is buffered.
    """

    def __init__(self, max_frame_bytes: int = 4 << 20, *, commands: bool = False) -> None:
        if max_frame_bytes <= 0:
            raise ValueError("max_frame_bytes must be positive")
        self._max_frame_bytes = max_frame_bytes
        self._commands = commands
        self._buffer = bytearray()
        # Bytes at the start of the buffer already known to contain no "\n" (header state
        # only); saves rescanning a long partial line on every small feed().
        self._scanned = 0
        self._lines: list[bytes] = []  # raw header lines (with EOL) of the frame being built
        self._header_bytes = 0
        # The parsed header block of a frame whose body is still being read.
        self._headers: tuple[tuple[str, str], ...] = ()
        self._problem: str | None = None
        # Set once the headers are complete and a body is announced: (bytes still wanted).
        self._body_length: int | None = None
        self._failed = False

    def feed(self, data: bytes) -> list[EslParsed]:
        """Consume ``data`` and return every frame it completed, in order."""
        if self._failed:
            raise EslProtocolError("parser failed earlier; the connection must be reset")
        buffer = self._buffer
        buffer += data
        frames: list[EslParsed] = []
        pos = 0
        search_from = self._scanned
        while True:
            if self._body_length is not None:
                if len(buffer) - pos < self._body_length:
                    break
                end = pos + self._body_length
                frames.append(self._finish(bytes(buffer[pos:end])))
                pos = search_from = end
                continue
            newline = buffer.find(b"\n", max(pos, search_from))
            if newline < 0:
                break
            frame = self._take_line(bytes(buffer[pos : newline + 1]))
            if frame is not None:
                frames.append(frame)
            pos = search_from = newline + 1
        del buffer[:pos]
        if self._body_length is None:
            self._scanned = len(buffer)
            if self._header_bytes + len(buffer) > self._max_frame_bytes:
                self._fail(f"ESL frame headers exceed {self._max_frame_bytes} bytes")
        else:
            self._scanned = 0
        return frames

    def _take_line(self, raw_line: bytes) -> EslParsed | None:
        if _strip_eol(raw_line):
            self._lines.append(raw_line)
            self._header_bytes += len(raw_line)
            if self._header_bytes > self._max_frame_bytes:
                self._fail(f"ESL frame headers exceed {self._max_frame_bytes} bytes")
            return None
        if not self._lines:
            return None  # blank lines between frames carry nothing
        # End of the header block: is a body announced?
        if self._commands:
            # Line 1 is the command line; FreeSWITCH numbers headers from line 2 too.
            self._headers, self._problem = _parse_header_lines(self._lines[1:], first_number=2)
        else:
            self._headers, self._problem = _parse_header_lines(self._lines)
        length_text = _get(self._headers, "Content-Length", None)
        if length_text is None:
            return self._finish(b"")
        length = _content_length(length_text)
        if length is None:
            self._fail(f"Content-Length is not a number: {length_text[:_REASON_QUOTE_CHARS]!r}")
        if self._header_bytes + length > self._max_frame_bytes:
            self._fail(f"ESL frame of {self._header_bytes + length} bytes exceeds {self._max_frame_bytes}")
        if length == 0:
            return self._finish(b"")
        self._body_length = length
        return None

    def _finish(self, body: bytes) -> EslParsed:
        lines, self._lines = self._lines, []
        pairs, problem = self._headers, self._problem
        self._headers, self._problem = (), None
        self._header_bytes = 0
        self._body_length = None
        raw = b"".join(lines) + (b"\n" + body if body else b"")
        if problem is not None:
            return EslMalformed(raw, problem)
        if self._commands:
            return EslCommand(_decode(_strip_eol(lines[0])), pairs, body)
        frame = EslFrame(pairs, body)
        content_type = (frame.content_type or "").strip().lower()
        if content_type != CONTENT_TYPE_EVENT_PLAIN:
            return frame
        event = decode_event(body)
        if isinstance(event, str):
            return EslMalformed(raw, event)
        return event

    def _fail(self, reason: str) -> NoReturn:
        self._failed = True
        self._buffer.clear()
        self._lines.clear()
        self._header_bytes = 0
        self._body_length = None
        self._headers, self._problem = (), None
        raise EslProtocolError(reason)


def _check_text(what: str, text: str) -> None:
    # ``what`` names the field but never quotes the value: the value may be a secret
    # (the auth command line carries the password).
    if any(char in text for char in _FORBIDDEN_CHARS):
        raise ValueError(f"{what} contains CR, LF or NUL (command injection)")


def _encode_text(text: str, what: str) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError:  # lone surrogates
        raise ValueError(f"{what} is not encodable as UTF-8") from None


def encode_command(
    verb_line: str,
    headers: Mapping[str, str | int] | None = None,
    body: str | bytes | None = None,
) -> bytes:
    """Serialise one ESL command: ``verb_line``, header lines, an empty line, the body.

    ``encode_command("api status")`` -> ``b"api status\\n\\n"``;
    ``encode_command("bgapi status", {"Job-UUID": u})`` -> ``b"bgapi status\\nJob-UUID: u\\n\\n"``.
    A non-empty ``body`` is announced with a Content-Length header written by the codec.

    Raises ValueError, naming the field but never quoting its value, if anything would
    break the framing: CR, LF or NUL in the command line, a header name or value, an
    empty or blank command line, an empty header name or one containing ':', or a header
    named Content-Length (the codec owns it).
    """
    if not isinstance(verb_line, str):
        raise TypeError("ESL command line must be a str")
    _check_text("ESL command line", verb_line)
    if not verb_line.strip():
        raise ValueError("ESL command line is empty")
    parts = [_encode_text(verb_line, "ESL command line"), b"\n"]
    for name, value in (headers or {}).items():
        if not isinstance(name, str):
            raise TypeError(f"ESL header name {name!r} is not a str")
        if not name:
            raise ValueError("ESL header name is empty")
        _check_text(f"ESL header name {name!r}", name)
        if ":" in name:
            raise ValueError(f"ESL header name {name!r} contains ':' (command injection)")
        if name.lower() in _RESERVED_HEADERS:
            raise ValueError(f"ESL header {name!r} is reserved; it is set by encode_command")
        if not isinstance(value, str | int):  # bool is an int; switch_true() accepts "True"
            raise TypeError(f"ESL header {name!r}: value must be str or int")
        text = str(value)
        what = f"value of ESL header {name!r}"
        _check_text(what, text)
        parts += [_encode_text(name, f"ESL header name {name!r}"), b": ", _encode_text(text, what), b"\n"]
    if isinstance(body, str):
        payload = _encode_text(body, "ESL command body")
    elif body is None or isinstance(body, bytes):
        payload = body or b""
    else:
        raise TypeError("ESL command body must be str, bytes or None")
    if payload:
        parts.append(f"Content-Length: {len(payload)}\n".encode())
    parts.append(b"\n")
    parts.append(payload)
    return b"".join(parts)
