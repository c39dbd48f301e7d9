"""API tokens: random, shown once, kept only as SHA-256."""

from __future__ import annotations

import hashlib
import secrets

TOKEN_PREFIX = "sst_"


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def display_prefix(token: str) -> str:
    """Enough of the token to tell tokens apart in a list, never enough to use it."""
    return token[: len(TOKEN_PREFIX) + 6]
