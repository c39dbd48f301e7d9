"""The local FreeSWITCH 1.10, as `stack up` runs it: our Event Socket client against the
real mod_event_socket, its SIP profiles, and a call it cannot hand to the control plane
refused at once with 503 — never a silent hang (issue 13, groundwork)."""

from __future__ import annotations

import asyncio
import time

import pytest

from scripts.devstack.sipp import run_uac
from scripts.devstack.stack import LocalStack
from softswitch.core.settings import Settings
from softswitch.engines.freeswitch.esl.client import EslClient

pytestmark = pytest.mark.stack


def _client(settings: Settings, password: str) -> EslClient:
    fs = settings.freeswitch
    return EslClient(
        fs.esl_host, fs.esl_port, password, connect_timeout=3.0, backoff_initial=0.2, backoff_max=1.0
    )


async def test_the_event_socket_client_drives_the_real_freeswitch(
    stack: LocalStack, settings: Settings
) -> None:
    assert stack.fs_pid() is not None, (
        "stack up did not start FreeSWITCH (is it built? scripts/freeswitch.sh)"
    )
    client = _client(settings, settings.freeswitch.esl_password.get_secret_value())
    await client.start()
    try:
        assert await client.wait_connected(10), client.last_error
        status = await client.api("sofia status")
        for profile, port in (
            ("carrier", settings.freeswitch.carrier_port),
            ("phones", settings.freeswitch.phones_port),
        ):
            line = next((ln for ln in status.splitlines() if ln.strip().startswith(profile)), "")
            assert "RUNNING" in line and f":{port}" in line, status
        assert (await client.api("module_exists mod_xml_curl")).strip() == "true"
    finally:
        await client.stop()


async def test_a_wrong_event_socket_password_is_refused(stack: LocalStack, settings: Settings) -> None:
    client = _client(settings, "ClueCon")
    await client.start()
    try:
        assert not await client.wait_connected(3)
        assert client.last_error and "auth" in client.last_error.lower(), client.last_error
    finally:
        await client.stop()


async def test_a_call_freeswitch_cannot_hand_over_gets_503_at_once(
    stack: LocalStack, settings: Settings
) -> None:
    """Nothing listens on the control plane's socket address yet: the dialplan's fallback
    answers the carrier with 503 after a short tone, in about a second."""
    fs = settings.freeswitch
    started = time.monotonic()
    result = await asyncio.to_thread(
        run_uac, "4008001234", "13800138000", target=f"{fs.sip_host}:{fs.carrier_port}", timeout_s=20
    )
    assert result.final_status == 503, result.message_log[-1500:]
    assert time.monotonic() - started < 6
