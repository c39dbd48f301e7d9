"""SIP accounts are real: an extension created, changed or deleted through the API, or its
tenant suspended and resumed, is what the real Asterisk accepts on the very next REGISTER
(SIPp with digest auth) — no reload, no sleep."""

from __future__ import annotations

import asyncio
import hashlib
import random
import secrets
from typing import Any

import asyncpg
import pytest

from scripts.devstack.sipp import SippResult, run_register
from scripts.devstack.stack import LocalStack
from tests.e2e.conftest import ServiceProcess

pytestmark = pytest.mark.stack


def _ok(response: Any, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return response.json() if response.content else {}


def _new_tenant(service: ServiceProcess) -> int:
    name = f"e2e sip {secrets.token_hex(4)}"
    return _ok(service.request("POST", "/v1/tenants", json={"name": name}), 201)["id"]


def _new_extension(service: ServiceProcess, tenant_id: int, password: str) -> dict[str, Any]:
    extension = str(random.randint(8000, 8999))
    return _ok(
        service.request(
            "POST",
            f"/v1/tenants/{tenant_id}/extensions",
            json={"extension": extension, "display_name": "E2E phone", "password": password},
        ),
        201,
    )


def _password() -> str:
    return secrets.token_hex(8)


async def _register(username: str, password: str) -> SippResult:
    result = await asyncio.to_thread(run_register, username, password)
    assert result.statuses, f"no answer to REGISTER (rc={result.returncode})"
    return result


async def test_new_extension_registers_at_once_and_only_with_its_password(
    service: ServiceProcess, db: asyncpg.Connection, stack: LocalStack
) -> None:
    tenant_id = _new_tenant(service)
    password = _password()
    ext = _new_extension(service, tenant_id, password)
    eid = ext["endpoint_id"]
    assert (eid, ext["realm"]) == (f"t{tenant_id}x{ext['extension']}", "softswitch")

    # Right after the API answered: no sleep, no reload.
    good = await _register(eid, password)
    assert good.final_status == 200, good.message_log[-2000:]
    assert good.statuses[0] == 401  # challenged first, accepted with the digest
    assert good.returncode == 0
    assert f"sip:{eid}@127.0.0.5" in stack.asterisk_cli(f"pjsip show aor {eid}")  # the phone's contact

    bad = await _register(eid, password + "x")
    assert bad.final_status in (401, 403), bad.message_log[-2000:]

    # Asterisk reads the digest's HA1 only; the password itself is kept nowhere.
    auth = await db.fetchrow("SELECT * FROM ps_auths WHERE id = $1", eid)
    assert auth is not None
    assert (auth["auth_type"], auth["username"], auth["realm"]) == ("md5", eid, "softswitch")
    expected = hashlib.md5(f"{eid}:softswitch:{password}".encode()).hexdigest()  # noqa: S324
    assert auth["md5_cred"] == expected
    assert auth["password"] is None and auth["password_digest"] is None
    for table in ("ps_auths", "ps_endpoints", "ps_aors", "sip_extensions"):
        key = "endpoint_id" if table == "sip_extensions" else "id"
        row = await db.fetchrow(f"SELECT * FROM {table} WHERE {key} = $1", eid)
        assert row is not None
        assert all(password not in str(v) for v in dict(row).values()), table


async def test_password_change_takes_effect_at_once(service: ServiceProcess) -> None:
    tenant_id = _new_tenant(service)
    old, new = _password(), _password()
    ext = _new_extension(service, tenant_id, old)
    eid = ext["endpoint_id"]
    assert (await _register(eid, old)).final_status == 200

    changed = _ok(
        service.request(
            "PATCH",
            f"/v1/tenants/{tenant_id}/extensions/{ext['id']}",
            json={"password": new},
            headers={"If-Match": f'"{ext["version"]}"'},
        )
    )
    assert changed["version"] == ext["version"] + 1

    assert (await _register(eid, old)).final_status in (401, 403)
    fresh = await _register(eid, new)
    assert fresh.final_status == 200, fresh.message_log[-2000:]


async def test_deleted_extension_no_longer_registers(service: ServiceProcess, db: asyncpg.Connection) -> None:
    tenant_id = _new_tenant(service)
    password = _password()
    ext = _new_extension(service, tenant_id, password)
    eid = ext["endpoint_id"]
    assert (await _register(eid, password)).final_status == 200

    deleted = service.request(
        "DELETE",
        f"/v1/tenants/{tenant_id}/extensions/{ext['id']}",
        headers={"If-Match": f'"{ext["version"]}"'},
    )
    assert deleted.status_code == 204, deleted.text

    gone = await _register(eid, password)
    assert gone.final_status in (401, 403, 404), gone.message_log[-2000:]
    for table in ("ps_endpoints", "ps_auths", "ps_aors"):
        assert await db.fetchval(f"SELECT count(*) FROM {table} WHERE id = $1", eid) == 0


async def test_suspended_tenant_cannot_register_until_resumed(service: ServiceProcess) -> None:
    tenant_id = _new_tenant(service)
    password = _password()
    eid = _new_extension(service, tenant_id, password)["endpoint_id"]
    assert (await _register(eid, password)).final_status == 200

    assert _ok(service.request("POST", f"/v1/tenants/{tenant_id}/suspend"))["state"] == "suspended"
    refused = await _register(eid, password)
    assert refused.final_status in (401, 403, 404), refused.message_log[-2000:]

    assert _ok(service.request("POST", f"/v1/tenants/{tenant_id}/resume"))["state"] == "active"
    back = await _register(eid, password)
    assert back.final_status == 200, back.message_log[-2000:]


async def test_unknown_account_is_refused(service: ServiceProcess) -> None:
    result = await _register(f"t999999x{random.randint(10, 99)}", _password())
    assert result.final_status in (401, 403, 404), result.message_log[-2000:]
