"""The event barrier both engines' CallControl use before their channel list counts.

An engine answers a request at once but delivers its events through a queue, so a list
of live channels can overtake channel events still queued. An event of our own, raised
after the list, comes through that queue behind them: once it is read, every event the
engine emitted before the list has reached the registry. Each engine raises its own kind
(Asterisk: an AMI UserEvent; FreeSWITCH: a CUSTOM event), carrying a token of ours."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable


class EventBarrier:
    def __init__(self, timeout_s: float = 5.0) -> None:
        self._timeout = timeout_s
        self._waiting: dict[str, asyncio.Future[None]] = {}

    def passed(self, token: str) -> None:
        """The engine delivered our event with this token (call from its event listener)."""
        waiter = self._waiting.pop(token, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def cross(self, raise_event: Callable[[str], Awaitable[object]]) -> None:
        """Raise the engine's event with a fresh token and wait until it comes back
        (TimeoutError past the timeout)."""
        token = secrets.token_hex(8)
        waiter = asyncio.get_running_loop().create_future()
        self._waiting[token] = waiter
        try:
            await raise_event(token)
            async with asyncio.timeout(self._timeout):
                await waiter
        finally:
            self._waiting.pop(token, None)
