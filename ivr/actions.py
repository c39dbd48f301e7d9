"""What an IVR asks of the channel (actions) and what the channel reports back (events).

The adapter (FastAGI today) performs the actions in order and feeds the caller's answer
to the last `Collect` back as `Digits` or `Timeout`. Nothing here touches a socket."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

TransferKind = Literal["group", "extension", "number"]


@dataclass(frozen=True, slots=True)
class Play:
    prompt: str


@dataclass(frozen=True, slots=True)
class Collect:
    """Play a prompt and collect up to max_digits keys (AGI GET DATA): '#' ends the entry
    early, and the adapter reports Digits, or Timeout when nothing was keyed."""

    prompt: str
    timeout_ms: int
    max_digits: int


@dataclass(frozen=True, slots=True)
class Transfer:
    kind: TransferKind
    ref: str  # group name, extension number or phone number


@dataclass(frozen=True, slots=True)
class Voicemail:
    pass


@dataclass(frozen=True, slots=True)
class Hangup:
    reason: str  # a short code for the call record, e.g. "ivr_no_input"


@dataclass(frozen=True, slots=True)
class SayDigits:
    digits: str


@dataclass(frozen=True, slots=True)
class SayNumber:
    number: int


ChannelAction = Play | Collect | Transfer | Voicemail | Hangup | SayDigits | SayNumber


@dataclass(frozen=True, slots=True)
class Digits:
    """Keys the caller pressed for the last Collect; a trailing '#' may or may not be there
    (GET DATA strips it). An empty string means nothing was keyed, the same as Timeout."""

    digits: str


@dataclass(frozen=True, slots=True)
class Timeout:
    pass


CallerEvent = Digits | Timeout

NO_INPUT = "ivr_no_input"  # hang-up reason: retries ran out without a usable answer
