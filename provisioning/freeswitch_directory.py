"""FreeSWITCH's directory, served on demand (mod_xml_curl) from the SIP accounts Asterisk
reads too: an extension is a user whose digest is its a1-hash — md5(user:realm:password),
the md5_cred kept in ps_auths — never a password. Accounts of a suspended tenant, or a
deleted extension, are not in ps_auths, so FreeSWITCH refuses them as Asterisk does.

Fax (issue 20, item 5; seed 001's tariff: a SIP phone "支持传真", a voice gateway "不支持传真"):
a fax-capable extension's calls carry ``t38_passthru=true`` (a user variable, set on the
channel of every call it places), so its T.38 re-INVITE is passed on to the bridged party
and the far end's answer relayed back; every other account carries ``t38_passthru=false``
and sofia refuses such an offer with 488, as Asterisk does for ``t38_udptl=no``."""

from __future__ import annotations

from collections.abc import Mapping
from xml.sax.saxutils import quoteattr

import asyncpg

NOT_FOUND = (
    '<document type="freeswitch/xml"><section name="result"><result status="not found"/></section></document>'
)


async def a1_hash(conn: asyncpg.Connection, user: str) -> str | None:
    """The digest HA1 of SIP account ``user`` (an extension's endpoint id), if it may register."""
    found: str | None = await conn.fetchval(
        "SELECT md5_cred FROM ps_auths WHERE id = $1 AND auth_type = 'md5' AND md5_cred IS NOT NULL", user
    )
    return found


async def fax_allowed(conn: asyncpg.Connection, user: str) -> bool:
    """Whether SIP account ``user`` is an extension allowed to fax (never a gateway: the
    table's CHECK); an account that is no extension is not."""
    found = await conn.fetchval("SELECT fax_allowed FROM sip_extensions WHERE endpoint_id = $1", user)
    return bool(found)


def user_variables(fax: bool) -> dict[str, str]:
    """The channel variables of every call the account places: sofia takes a T.38 offer
    only with fax_enable_t38 (and without refuse_t38), and passes it to the bridged party
    with t38_passthru."""
    if fax:
        return {"fax_enable_t38": "true", "t38_passthru": "true", "refuse_t38": "false"}
    return {"fax_enable_t38": "false", "t38_passthru": "false", "refuse_t38": "true"}


def user_document(domain: str, user: str, a1: str, variables: Mapping[str, str] | None = None) -> str:
    vars_xml = "".join(
        f"<variable name={quoteattr(k)} value={quoteattr(v)}/>" for k, v in (variables or {}).items()
    )
    return (
        '<document type="freeswitch/xml"><section name="directory">'
        f"<domain name={quoteattr(domain)}><user id={quoteattr(user)}><params>"
        f'<param name="a1-hash" value={quoteattr(a1)}/>'
        "</params>"
        + (f"<variables>{vars_xml}</variables>" if vars_xml else "")
        + "</user></domain></section></document>"
    )


async def directory(conn: asyncpg.Connection, fields: dict[str, str]) -> str:
    """The answer to one mod_xml_curl request (its POSTed form fields)."""
    user, domain = fields.get("user", ""), fields.get("domain", "")
    if fields.get("section") != "directory" or not user or not domain:
        return NOT_FOUND
    found = await a1_hash(conn, user)
    if not found:
        return NOT_FOUND
    return user_document(domain, user, found, user_variables(await fax_allowed(conn, user)))
