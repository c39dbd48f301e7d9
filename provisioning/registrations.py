"""Where a tenant's SIP phones are registered right now, as the engines themselves know it:
Asterisk keeps its contacts in astdb (not in the realtime tables: sorcery.conf), listed by
AMI's PJSIPShowContacts; FreeSWITCH keeps its registrations per sofia profile, listed by
`sofia xmlstatus profile <phones> reg` over the Event Socket. Read-only: nothing here
changes an account (provisioning/sip.py writes them)."""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET  # the engine's own answer, on loopback
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

log = logging.getLogger(__name__)

ASK_TIMEOUT_S = 2.0  # a page waits at most this long for an engine
_EXPSECS = re.compile(r"expsecs\((\d{1,10})\)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Contact:
    """One registration of one account (a phone has one, a gateway may have several)."""

    endpoint_id: str
    engine: str  # asterisk | freeswitch
    address: str  # ip:port the REGISTER came from
    uri: str
    user_agent: str
    expires_at: datetime | None


@dataclass
class Registrations:
    contacts: dict[str, list[Contact]] = field(default_factory=dict)  # endpoint_id -> contacts
    unreachable: list[str] = field(default_factory=list)  # engines that could not be asked

    def of(self, endpoint_id: str) -> list[Contact]:
        return self.contacts.get(endpoint_id, [])


def _epoch(value: str | None) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value or ""), UTC)
    except (ValueError, OverflowError, OSError):
        return None


def asterisk_contacts(events: Iterable[Any], wanted: set[str], now: datetime) -> list[Contact]:
    """PJSIPShowContacts' ContactList events of the wanted endpoints, unexpired."""
    out = []
    for ev in events:
        endpoint = ev.get("Endpoint") or (ev.get("ObjectName") or "").split(";")[0]
        if endpoint not in wanted:
            continue
        expires = _epoch(ev.get("ExpirationTime"))
        if expires is not None and expires <= now:
            continue
        addr, port = ev.get("ViaAddr") or "", ev.get("ViaPort") or ""
        out.append(
            Contact(
                endpoint,
                "asterisk",
                f"{addr}:{port}" if addr and port and port != "0" else addr,
                ev.get("Uri") or "",
                ev.get("UserAgent") or "",
                expires,
            )
        )
    return out


def _expsecs(status: str) -> int | None:
    """The seconds left in a sofia status: "Registered(UDP)(unknown) exp(...) expsecs(58)"
    (the text listing writes EXPSECS)."""
    m = _EXPSECS.search(status)
    return int(m.group(1)) if m else None


def freeswitch_contacts(xml: str, wanted: set[str], now: datetime) -> list[Contact] | None:
    """The <registration>s of `sofia xmlstatus profile <p> reg` for the wanted accounts;
    None if the reply is not that XML (no such profile)."""
    try:
        root = ET.fromstring(xml.strip())  # noqa: S314 - FreeSWITCH's own reply on loopback
    except ET.ParseError:
        log.warning("unreadable sofia xmlstatus reply: %.200s", xml)
        return None
    out = []
    for reg in root.iter("registration"):

        def text(tag: str, r: ET.Element = reg) -> str:
            return (r.findtext(tag) or "").strip()

        user = text("sip-auth-user") or text("user").split("@")[0]
        if user not in wanted:
            continue
        secs = _expsecs(text("status"))
        ip, port = text("network-ip"), text("network-port")
        contact = text("contact")
        uri = contact[contact.find("<") + 1 : contact.rfind(">")] if "<" in contact else contact
        out.append(
            Contact(
                user,
                "freeswitch",
                f"{ip}:{port}" if ip and port else ip,
                uri,
                text("agent"),
                now + timedelta(seconds=secs) if secs is not None else None,
            )
        )
    return out


async def of_endpoints(
    ami: Any, esl: Any, endpoint_ids: Iterable[str], now: datetime, phones_profile: str = "phones"
) -> Registrations:
    """The live registrations of these accounts (a tenant's extensions' endpoint ids) on
    every engine the service drives; an engine that does not answer is named unreachable
    (its phones' state is unknown, not "not registered")."""
    wanted = set(endpoint_ids)
    out = Registrations()
    found: list[Contact] = []
    if not wanted:
        return out
    if ami is not None:
        try:
            _, events = await ami.action_list("PJSIPShowContacts", timeout=ASK_TIMEOUT_S)
            found += asterisk_contacts(events, wanted, now)
        except Exception as exc:  # the client's errors (a layer above: not imported here)
            # Asterisk answers "Response: Error" when it has no contacts at all.
            if "no contacts" not in str(getattr(exc, "message", "")).lower():
                log.info("PJSIPShowContacts: %s", exc)
                out.unreachable.append("asterisk")
    if esl is not None:
        try:
            xml = await esl.api(f"sofia xmlstatus profile {phones_profile} reg", timeout=ASK_TIMEOUT_S)
            fs = freeswitch_contacts(xml, wanted, now)
            if fs is None:
                out.unreachable.append("freeswitch")
            else:
                found += fs
        except Exception as exc:  # the client's errors (a layer above: not imported here)
            log.info("sofia xmlstatus: %s", exc)
            out.unreachable.append("freeswitch")
    for c in found:
        out.contacts.setdefault(c.endpoint_id, []).append(c)
    return out
