"""provisioning.registrations reads the engines' own listings: Asterisk's ContactList events
(PJSIPShowContacts) and FreeSWITCH's `sofia xmlstatus profile phones reg`, keeping only the
asked accounts and unexpired contacts; an engine that cannot answer makes the state
unknown, while Asterisk's "No Contacts found" error is an answer (nobody registered)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from provisioning.registrations import asterisk_contacts, freeswitch_contacts, of_endpoints

NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


def _contact(endpoint: str, expires: datetime, **kw: str) -> dict[str, str]:
    return {
        "Event": "ContactList",
        "ObjectName": f"{endpoint};@4d211b07",
        "Endpoint": endpoint,
        "ViaAddr": "127.0.0.5",
        "ViaPort": "5060",
        "Uri": f"sip:{endpoint}@127.0.0.5:5060",
        "UserAgent": "softswitch-sipp-phone",
        "ExpirationTime": str(int(expires.timestamp())),
        **kw,
    }


# as mod_sofia 1.10 writes it (the text listing says EXP/EXPSECS, the XML lower case)
FS_XML = """<?xml version="1.0" encoding="ISO-8859-1"?>
<profile>
  <registrations>
    <registration>
        <call-id>1-2@127.0.0.6</call-id>
        <user>t7x801@softswitch</user>
        <contact>&quot;&quot; &lt;sip:t7x801@127.0.0.6:41000&gt;</contact>
        <agent>Yealink T46U</agent>
        <status>Registered(UDP)(unknown) exp(2026-12-03 18:01:00) expsecs(58)</status>
        <ping-status>Reachable</ping-status>
        <host>fs</host>
        <network-ip>127.0.0.6</network-ip>
        <network-port>41000</network-port>
        <sip-auth-user>t7x801</sip-auth-user>
        <sip-auth-realm>softswitch</sip-auth-realm>
    </registration>
    <registration>
        <user>t8x801@softswitch</user>
        <status>Registered(UDP)(unknown) exp(2026-12-03 18:01:00) expsecs(30)</status>
        <sip-auth-user>t8x801</sip-auth-user>
    </registration>
  </registrations>
</profile>
"""


def test_asterisk_contacts_of_the_asked_accounts_only_and_unexpired() -> None:
    later = NOW + timedelta(seconds=40)
    events = [
        _contact("t7x801", later),
        _contact("t8x801", later),  # another tenant's phone
        _contact("t7x802", NOW - timedelta(seconds=1)),  # expired, not yet pruned
    ]
    found = asterisk_contacts(events, {"t7x801", "t7x802"}, NOW)
    assert [(c.endpoint_id, c.address, c.user_agent, c.expires_at) for c in found] == [
        ("t7x801", "127.0.0.5:5060", "softswitch-sipp-phone", later)
    ]
    assert found[0].engine == "asterisk" and found[0].uri == "sip:t7x801@127.0.0.5:5060"


def test_freeswitch_registrations_with_their_time_left() -> None:
    found = freeswitch_contacts(FS_XML, {"t7x801"}, NOW)
    assert found is not None and len(found) == 1
    c = found[0]
    assert (c.endpoint_id, c.engine, c.address, c.uri, c.user_agent) == (
        "t7x801",
        "freeswitch",
        "127.0.0.6:41000",
        "sip:t7x801@127.0.0.6:41000",
        "Yealink T46U",
    )
    assert c.expires_at == NOW + timedelta(seconds=58)
    assert freeswitch_contacts("<profile><registrations>\n</registrations></profile>", {"t7x801"}, NOW) == []
    assert freeswitch_contacts("Invalid Profile!", {"t7x801"}, NOW) is None


class _Refused(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(f"PJSIPShowContacts failed: {message}")
        self.message = message


class _Ami:
    def __init__(self, events: list[Any] | None = None, error: Exception | None = None) -> None:
        self.events, self.error = events or [], error

    async def action_list(self, name: str, timeout: float) -> tuple[dict[str, str], list[Any]]:
        assert name == "PJSIPShowContacts"
        if self.error is not None:
            raise self.error
        return {"Response": "Success"}, self.events


class _Esl:
    def __init__(self, reply: str = "", error: Exception | None = None) -> None:
        self.reply, self.error = reply, error
        self.commands: list[str] = []

    async def api(self, command: str, timeout: float) -> str:
        self.commands.append(command)
        if self.error is not None:
            raise self.error
        return self.reply


async def test_both_engines_are_asked_and_their_contacts_merged() -> None:
    esl = _Esl(FS_XML)
    regs = await of_endpoints(
        _Ami([_contact("t7x801", NOW + timedelta(seconds=60))]), esl, ["t7x801"], NOW, "phones"
    )
    assert [c.engine for c in regs.of("t7x801")] == ["asterisk", "freeswitch"]
    assert regs.of("t7x999") == [] and regs.unreachable == []
    assert esl.commands == ["sofia xmlstatus profile phones reg"]


async def test_no_contacts_at_all_is_an_answer_but_a_silent_engine_is_unknown() -> None:
    nobody = await of_endpoints(_Ami(error=_Refused("No Contacts found")), None, ["t7x801"], NOW)
    assert nobody.unreachable == [] and nobody.of("t7x801") == []
    down = await of_endpoints(
        _Ami(error=ConnectionError("not logged in")), _Esl(error=TimeoutError()), ["t7x801"], NOW
    )
    assert down.unreachable == ["asterisk", "freeswitch"]
    bad = await of_endpoints(None, _Esl("-ERR no reply"), ["t7x801"], NOW)
    assert bad.unreachable == ["freeswitch"]
    # nothing asked, nothing to ask
    assert (await of_endpoints(_Ami(error=ConnectionError()), None, [], NOW)).unreachable == []
