"""Reading SIPp's message trace: a BYE the caller SENT is not a BYE it RECEIVED."""

from __future__ import annotations

from scripts.devstack.sipp import SippResult

SENT_BYE = """----------------------------------------------- 2026-12-03 12:00:01.000000
UDP message sent (380 bytes):

BYE sip:4001234567@127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.2:5061;branch=z9hG4bK-1
CSeq: 2 BYE
Content-Length: 0

----------------------------------------------- 2026-12-03 12:00:01.010000
UDP message received [300] bytes :

SIP/2.0 200 OK
CSeq: 2 BYE
Content-Length: 0
"""

RECEIVED_BYE = """----------------------------------------------- 2026-12-03 12:00:01.000000
UDP message received [420] bytes :

BYE sip:13800138000@127.0.0.2:5061 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-2
CSeq: 102 BYE
Content-Length: 0
"""


def test_a_bye_the_caller_sent_is_not_counted_as_received() -> None:
    result = SippResult(0, 1.0, message_log=SENT_BYE)
    assert result.received_requests == []


def test_a_bye_from_the_network_is_received() -> None:
    result = SippResult(0, 1.0, message_log=SENT_BYE + RECEIVED_BYE)
    assert result.received_requests == ["BYE"]
