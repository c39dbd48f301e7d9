"""The local FreeSWITCH 1.10, as `stack up` runs it: our Event Socket client against the
real mod_event_socket, its SIP profiles, and SIP accounts served from provisioning. The
call path through it is tested with Asterisk's, parametrised over the engine (the
``engine`` fixture of tests/e2e/conftest.py)."""

from __future__ import annotations

import asyncio
import random
import secrets

import pytest

from scripts.devstack.process import ServiceProcess
from scripts.devstack.sipp import run_register
from scripts.devstack.stack import LocalStack
from softswitch.core.settings import Settings
from softswitch.engines.freeswitch.esl.client import EslClient
from tests.e2e.conftest import api_ok

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


async def _register_fs(settings: Settings, username: str, password: str) -> int:
    fs = settings.freeswitch
    result = await asyncio.to_thread(
        run_register, username, password, target=f"{fs.sip_host}:{fs.phones_port}", local_ip="127.0.0.6"
    )
    assert result.statuses, f"no answer to REGISTER (rc={result.returncode})"
    return result.final_status


async def test_sip_accounts_are_live_on_freeswitch_from_the_same_provisioning(
    service: ServiceProcess, settings: Settings
) -> None:
    """The directory is served to FreeSWITCH on demand (mod_xml_curl) from PostgreSQL, with
    the account's a1-hash: REGISTER works right after the API creates the extension, and
    fails with a wrong password, while the tenant is suspended and after delete."""
    tenant_id = api_ok(
        service.request("POST", "/v1/tenants", json={"name": f"fs {secrets.token_hex(4)}"}), 201
    )["id"]
    password = secrets.token_hex(8)
    ext = api_ok(
        service.request(
            "POST",
            f"/v1/tenants/{tenant_id}/extensions",
            json={
                "extension": str(random.randint(8000, 8999)),
                "display_name": "FS phone",
                "password": password,
            },
        ),
        201,
    )
    eid = ext["endpoint_id"]
    assert await _register_fs(settings, eid, password) == 200
    assert await _register_fs(settings, eid, password + "x") in (401, 403)

    api_ok(service.request("POST", f"/v1/tenants/{tenant_id}/suspend"))
    assert await _register_fs(settings, eid, password) in (401, 403, 404)
    api_ok(service.request("POST", f"/v1/tenants/{tenant_id}/resume"))
    assert await _register_fs(settings, eid, password) == 200

    current = api_ok(service.request("GET", f"/v1/tenants/{tenant_id}/extensions/{ext['id']}"))
    deleted = service.request(
        "DELETE",
        f"/v1/tenants/{tenant_id}/extensions/{ext['id']}",
        headers={"If-Match": f'"{current["version"]}"'},
    )
    assert deleted.status_code == 204, deleted.text
    assert await _register_fs(settings, eid, password) in (401, 403, 404)


def test_the_directory_answers_only_freeswitch(service: ServiceProcess) -> None:
    form = {"section": "directory", "user": "t1x801", "domain": "127.0.0.1"}
    assert service.request("POST", "/v1/freeswitch/directory", data=form).status_code == 401
