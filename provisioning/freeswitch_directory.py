"""FreeSWITCH's directory, served on demand (mod_xml_curl) from the SIP accounts Asterisk
reads too: an extension is a user whose digest is its a1-hash — md5(user:realm:password),
the md5_cred kept in ps_auths — never a password. Accounts of a suspended tenant, or a
deleted extension, are not in ps_auths, so FreeSWITCH refuses them as Asterisk does."""

from __future__ import annotations

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


def user_document(domain: str, user: str, a1: str) -> str:
    return (
        '<document type="freeswitch/xml"><section name="directory">'
        f"<domain name={quoteattr(domain)}><user id={quoteattr(user)}><params>"
        f'<param name="a1-hash" value={quoteattr(a1)}/>'
        "</params></user></domain></section></document>"
    )


async def directory(conn: asyncpg.Connection, fields: dict[str, str]) -> str:
    """The answer to one mod_xml_curl request (its POSTed form fields)."""
    user, domain = fields.get("user", ""), fields.get("domain", "")
    if fields.get("section") != "directory" or not user or not domain:
        return NOT_FOUND
    found = await a1_hash(conn, user)
    return user_document(domain, user, found) if found else NOT_FOUND
