"""What click-to-dial asks of each engine (with fakes of the AMI and ESL clients): Asterisk
an asynchronous Originate of the agent's endpoint into the extensions' own context at the
number as a phone dials it, the call's id as the channel's, the customer shown to the
agent and the agent's own extension as the caller ID number; FreeSWITCH the same as a
`bgapi originate`; an engine's refusal or absence as a ClickToDialRefused with its code."""

from __future__ import annotations

from typing import Any

import pytest

from provisioning.click_to_dial import (
    Agent,
    ClickToDialRefused,
    _originate,
    _originate_freeswitch,
    display_name,
)


class FakeAmi:
    def __init__(self, error: Exception | None = None) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.error = error

    async def action(
        self, name: str, fields: dict[str, Any], *, timeout: float | None = None
    ) -> dict[str, str]:
        self.sent.append((name, fields))
        if self.error is not None:
            raise self.error
        return {"Response": "Success", "Message": "Originate successfully queued"}


class FakeEsl:
    def __init__(self, error: Exception | None = None) -> None:
        self.sent: list[str] = []
        self.error = error

    async def command(self, verb_line: str) -> str:
        self.sent.append(verb_line)
        if self.error is not None:
            raise self.error
        return "+OK Job-UUID: 1"


AGENT = Agent("8001", "t7x8001", "softswitch")
CALL_ID = "c2d-7-0123456789abcdef"


async def test_asterisk_rings_the_agent_into_the_extensions_context() -> None:
    ami = FakeAmi()
    await _originate(ami, AGENT, "13800138000", display_name("王五", "+8613800138000"), CALL_ID)
    ((name, fields),) = ami.sent
    assert name == "Originate"
    assert fields["Channel"] == "PJSIP/t7x8001"
    assert (fields["Context"], fields["Exten"], fields["Priority"]) == ("from-extensions", "13800138000", "1")
    assert fields["CallerID"] == '"王五 13800138000" <8001>'
    assert fields["Async"] == "true" and fields["ChannelId"] == CALL_ID
    assert int(fields["Timeout"]) > 0


class AmiActionError(Exception):  # named as the client's: only the name is read
    message = "Extension does not exist."


class AmiNotConnected(Exception):
    pass


@pytest.mark.parametrize(
    ("error", "reason", "status"),
    [(AmiActionError(), "ORIGINATE_FAILED", 502), (AmiNotConnected("down"), "ENGINE_UNAVAILABLE", 503)],
)
async def test_an_originate_asterisk_refuses_is_a_refusal_with_its_code(
    error: Exception, reason: str, status: int
) -> None:
    with pytest.raises(ClickToDialRefused) as refused:
        await _originate(FakeAmi(error), AGENT, "13800138000", "x", CALL_ID)
    assert (refused.value.reason, refused.value.kind, refused.value.status) == (reason, reason, status)
    with pytest.raises(ClickToDialRefused, match="ENGINE_UNAVAILABLE"):
        await _originate(None, AGENT, "13800138000", "x", CALL_ID)


async def test_freeswitch_rings_the_agents_registration_into_the_phones_context() -> None:
    esl = FakeEsl()
    await _originate_freeswitch(esl, AGENT, "13800138000", "O'Brien, {x} 13800138000", CALL_ID, "phones")
    (line,) = esl.sent
    assert line.startswith("bgapi originate {")
    variables, _, rest = line.removeprefix("bgapi originate {").partition("}")
    assert rest == "sofia/phones/t7x8001%softswitch 13800138000 XML default"
    pairs = dict(v.split("=", 1) for v in variables.split(","))
    assert pairs["origination_uuid"] == pairs["ss_call_id"] == CALL_ID
    assert pairs["origination_caller_id_number"] == pairs["origination_callee_id_number"] == "8001"
    assert pairs["sip_auth_username"] == "t7x8001"
    assert pairs["origination_caller_id_name"] == "'OBrien x 13800138000'"  # no quote, comma or brace
