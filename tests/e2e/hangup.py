"""A call ended from the engine's side as soon as the test has seen what it waits for,
instead of the caller's SIPp holding it for a fixed time: the engine hangs up the caller's
channel, the far end's BYE reaches SIPp, which answers it and ends (uac_dtmf.xml's path for
a platform that hangs up). The SIPp run's hold_ms stays the upper bound."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from scripts.devstack.process import ServiceProcess
from scripts.devstack.sipp import SippResult, render_dtmf
from scripts.devstack.stack import LocalStack
from tests.e2e.conftest import Engine

_KEYS_PAUSE = '<pause milliseconds="1200"/>'  # uac_dtmf.xml's wait before keying


def holding_caller(hold_ms: int) -> str:
    """A caller's scenario (uac_dtmf.xml with nothing to key) that, once answered, waits up
    to `hold_ms` for the far end's BYE, answers it and ends, else hangs up itself: for
    run_uac(scenario=..., hold_ms=the same) when the test ends the call (uac_inbound.xml
    would take a BYE during its hold as unexpected)."""
    text = render_dtmf("", hold_ms=hold_ms)
    assert _KEYS_PAUSE in text
    path = Path(tempfile.mkdtemp(prefix="holding-caller-")) / "caller.xml"
    path.write_text(text.replace(_KEYS_PAUSE, "", 1))
    return str(path)


async def hang_up(stack: LocalStack, engine: Engine, linkedid: str) -> None:
    """The engine hangs up the call's first channel (the caller's: its uniqueid, or its
    FreeSWITCH uuid, is the call's linkedid); the legs bridged to it end with it."""
    if engine.is_asterisk:
        listing = await asyncio.to_thread(stack.asterisk_cli, "core show channels concise")
        for line in listing.splitlines():
            fields = line.split("!")
            if fields[-1].strip() == linkedid:  # Channel!Context!...!BridgeID!Uniqueid
                await asyncio.to_thread(stack.asterisk_cli, f"channel request hangup {fields[0]}")
    else:
        await asyncio.to_thread(stack.fs_cli, f"uuid_kill {linkedid}")


def live_call(service: ServiceProcess, caller: str, state: str | None = None) -> dict[str, Any] | None:
    """The service's live call from `caller` (in `state`: ringing, answered, bridged), if any."""
    resp = service.get("/v1/calls/live")
    assert resp.status_code == 200, resp.text
    return next(
        (c for c in resp.json() if c["caller"] == caller and (state is None or c["state"] == state)), None
    )


async def ended_when(
    call: asyncio.Task[SippResult],
    ready: Callable[[], Awaitable[str | None]],
    stack: LocalStack,
    engine: Engine,
    budget: float,
) -> SippResult:
    """The call's result, ended by the engine as soon as `ready()` names its linkedid
    (polled every 50 ms, at most `budget` s). A call that ends by itself first is left to
    end; past the budget it runs on to its own hold and the test's assertions judge it."""
    deadline = time.monotonic() + budget
    while not call.done() and time.monotonic() < deadline:
        linkedid = await ready()
        if linkedid:
            await hang_up(stack, engine, linkedid)
            break
        await asyncio.sleep(0.05)
    return await call
