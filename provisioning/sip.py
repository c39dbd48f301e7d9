"""SIP accounts are real: an extension's PJSIP endpoint, auth (md5_cred only) and aor rows
are written to Asterisk's realtime tables in the same transaction as the extension, and
exist only while the tenant is active — Asterisk reads them on every REGISTER."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg

from provisioning.engine import Ctx, Invalid, Values
from provisioning.rules import sip_md5_cred
from trunks.selection import endpoint_for

DEFAULT_REALM = "softswitch"
EXTENSION_CONTEXT = "from-extensions"


def endpoint_id_for(tenant_id: int, extension: str) -> str:
    return f"t{tenant_id}x{extension}"


def _kept(values: Values, before: Mapping[str, Any] | None, column: str, default: Any) -> Any:
    if values.get(column) is not None:
        return values[column]
    return default if before is None else before[column]


async def prepare_extension(ctx: Ctx, values: Values, before: Mapping[str, Any] | None) -> Values:
    # Seed 001's tariff: a voice gateway "不支持传真" (no fax), a SIP phone "支持传真".
    if _kept(values, before, "device_kind", "phone") == "gateway" and _kept(
        values, before, "fax_allowed", False
    ):
        raise Invalid(
            "a voice gateway carries no fax (seed 001 tariff): fax_allowed must be false", "fax_allowed"
        )
    password = values.pop("password", None)
    if before is None:
        assert ctx.tenant_id is not None and password is not None
        values["endpoint_id"] = endpoint_id_for(ctx.tenant_id, values["extension"])
        values["realm"] = DEFAULT_REALM
    endpoint_id = values.get("endpoint_id") or (before or {})["endpoint_id"]
    realm = values.get("realm") or (before or {})["realm"]
    if password is not None:
        values["md5_cred"] = sip_md5_cred(endpoint_id, realm, password)
    return values


def _endpoint_row(ext: Mapping[str, Any]) -> dict[str, str]:
    name = ext["display_name"] or ext["extension"]
    return {
        "id": ext["endpoint_id"],
        "transport": "transport-udp",
        "aors": ext["endpoint_id"],
        "auth": ext["endpoint_id"],
        "context": EXTENSION_CONTEXT,
        "disallow": "all",
        "allow": "ulaw,alaw",
        "direct_media": "no",
        "rtp_symmetric": "yes",
        "force_rport": "yes",
        "rewrite_contact": "yes",
        "callerid": f'"{name}" <{ext["extension"]}>',
        "t38_udptl": "yes" if ext["fax_allowed"] else "no",
        # The phone's P-Asserted-Identity becomes its caller ID; the control plane then
        # checks that the tenant owns it before it leaves through a trunk.
        "trust_id_inbound": "yes",
        "accountcode": str(ext["tenant_id"]),
        "set_var": f"SS_TENANT_ID={ext['tenant_id']}",
    }


async def write_pjsip(conn: asyncpg.Connection, ext: Mapping[str, Any]) -> None:
    eid = ext["endpoint_id"]
    await remove_pjsip(conn, eid)
    ep = _endpoint_row(ext)
    cols = ", ".join(f'"{k}"' for k in ep)
    marks = ", ".join(f"${i}" for i in range(1, len(ep) + 1))
    await conn.execute(f"INSERT INTO ps_endpoints ({cols}) VALUES ({marks})", *ep.values())
    await conn.execute(
        "INSERT INTO ps_auths (id, auth_type, username, realm, md5_cred) VALUES ($1, 'md5', $2, $3, $4)",
        eid,
        eid,
        ext["realm"],
        ext["md5_cred"],
    )
    # A phone has one registration; a gateway may register several ports.
    max_contacts = "1" if ext["device_kind"] == "phone" else "8"
    await conn.execute(
        "INSERT INTO ps_aors (id, max_contacts, remove_existing, qualify_frequency) "
        "VALUES ($1, $2, 'yes', '0')",
        eid,
        max_contacts,
    )


async def remove_pjsip(conn: asyncpg.Connection, endpoint_id: str) -> None:
    for table in ("ps_endpoints", "ps_auths", "ps_aors"):
        await conn.execute(f"DELETE FROM {table} WHERE id = $1", endpoint_id)


async def tenant_is_active(conn: asyncpg.Connection, tenant_id: int) -> bool:
    return bool(await conn.fetchval("SELECT state = 'active' FROM tenants WHERE id = $1", tenant_id))


async def after_extension_write(
    ctx: Ctx, action: str, before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
) -> None:
    if after is None:
        assert before is not None
        await remove_pjsip(ctx.conn, before["endpoint_id"])
    elif await tenant_is_active(ctx.conn, after["tenant_id"]):
        await write_pjsip(ctx.conn, after)


async def sync_tenant_accounts(conn: asyncpg.Connection, tenant_id: int, active: bool) -> int:
    """Suspension removes every SIP account of the tenant from Asterisk's view; resumption
    writes them back from what we keep (md5_cred). Returns how many were touched."""
    rows = await conn.fetch("SELECT * FROM sip_extensions WHERE tenant_id = $1", tenant_id)
    for ext in rows:
        if active:
            await write_pjsip(conn, ext)
        else:
            await remove_pjsip(conn, ext["endpoint_id"])
    return len(rows)


async def after_trunk_write(
    ctx: Ctx, action: str, before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
) -> None:
    """A trunk is an outbound PJSIP endpoint `trunk-<name>` with a static contact; calls
    leave through it as PJSIP/<number>@trunk-<name> (trunks/selection.py)."""

    if before is not None:
        await remove_pjsip(ctx.conn, endpoint_for(before["name"]))
    if after is None or not after["enabled"]:
        return
    eid = endpoint_for(after["name"])
    await ctx.conn.execute(
        "INSERT INTO ps_endpoints (id, transport, aors, context, disallow, allow, direct_media, "
        '"send_pai", "send_rpid", "send_connected_line") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)',
        eid,
        "transport-udp",
        eid,
        "refuse",
        "all",
        "ulaw,alaw",
        "no",
        "yes",
        "yes",
        "no",
    )
    await ctx.conn.execute(
        "INSERT INTO ps_aors (id, contact, qualify_frequency) VALUES ($1, $2, '0')",
        eid,
        f"sip:{after['host']}:{after['port']}",
    )
