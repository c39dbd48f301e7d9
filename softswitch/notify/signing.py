"""Webhook signatures: ``X-Softswitch-Signature: sha256=<hex HMAC-SHA256(secret,
"<timestamp>.<body>")>`` with ``X-Softswitch-Timestamp: <unix seconds>``. The timestamp
is signed with the body, so a receiver that rejects old timestamps rejects replays too.
Pure: no clock, no I/O."""

from __future__ import annotations

import hashlib
import hmac
import secrets

SIGNATURE_HEADER = "X-Softswitch-Signature"
TIMESTAMP_HEADER = "X-Softswitch-Timestamp"
DELIVERY_HEADER = "X-Softswitch-Delivery"  # the idempotency id: the same on every retry
EVENT_HEADER = "X-Softswitch-Event"  # the notice's kind
SCHEME = "sha256="


def new_secret() -> str:
    """A webhook's key: 32 random bytes, URL-safe text (shown once, at creation)."""
    return "whsec_" + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The header's value for this body sent at `timestamp` (unix seconds)."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return SCHEME + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, header: str, now: int, tolerance_s: int = 300) -> bool:
    """What a receiver checks: the signature matches (in constant time) and the timestamp
    is within `tolerance_s` of its own clock."""
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs(now - sent) > tolerance_s:
        return False
    return hmac.compare_digest(signature(secret, sent, body), header.strip())
