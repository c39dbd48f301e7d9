"""Customers' data as the schemas take it (phone numbers to E.164 with the CN default
region, tags) and the click-to-dial's pure parts: what the outbound path dials for an
E.164 number, what the agent's phone shows, and a call's state from its record and its
live call."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from provisioning.click_to_dial import _state, dial_digits, display_name
from provisioning.schemas import CustomerCreate, CustomerUpdate, e164


@pytest.mark.parametrize(
    ("written", "stored"),
    [
        ("13800138000", "+8613800138000"),
        ("138 0013 8000", "+8613800138000"),
        ("+86 138-0013-8000", "+8613800138000"),
        ("010-6552 9988", "+861065529988"),
        ("(021) 6321 8888", "+862163218888"),
        ("+1 650 253 0000", "+16502530000"),
    ],
)
def test_numbers_are_stored_e164_with_china_as_the_default_region(written: str, stored: str) -> None:
    assert e164(written) == stored


@pytest.mark.parametrize("bad", ["12345", "abc", "+86 138", "1380013800000000"])
def test_what_is_not_a_valid_number_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="phone number"):
        e164(bad)


def test_a_customer_keeps_each_number_once_and_names_the_phones_field_when_one_is_bad() -> None:
    c = CustomerCreate(
        name="张三", phones=["13800138000", "138 0013 8000", " ", "010 6552 9988"], tags=["vip", "vip"]
    )
    assert c.phones == ["+8613800138000", "+861065529988"]
    assert c.tags == ["vip"]
    with pytest.raises(ValidationError) as err:
        CustomerUpdate(phones=["13800138000", "999"])
    assert [e["loc"][0] for e in err.value.errors()] == ["phones"]
    with pytest.raises(ValidationError):
        CustomerCreate(name="x", tags=["a,b"])
    with pytest.raises(ValidationError):
        CustomerCreate(name="x", email="not-an-email")
    assert CustomerCreate(name="x", email="").email == ""


@pytest.mark.parametrize(
    ("number", "dialled"),
    [
        ("+8613800138000", "13800138000"),  # mobile: 11 digits
        ("+861065529988", "01065529988"),  # fixed line: trunk 0 and area code
        ("+16502530000", "0016502530000"),  # abroad: 00
    ],
)
def test_the_outbound_path_dials_numbers_as_the_phones_do(number: str, dialled: str) -> None:
    assert dial_digits(number) == dialled


def test_the_agents_phone_shows_the_customer_without_quoting_tricks() -> None:
    assert display_name("王五", "+8613800138000") == "王五 13800138000"
    assert display_name('Eve" <sip:x>\r\n', "+8613800138000") == "Eve sip:x 13800138000"
    assert display_name("", "+8613800138000") == "13800138000"
    long = display_name("长" * 100, "+8613800138000")
    assert len(long) == 60 and long.endswith("长 13800138000")


@dataclass
class _Live:
    answered_at: datetime | None = None
    bridged_at: datetime | None = None
    ended_at: datetime | None = None
    hangup_cause_text: str = ""


T0 = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


def _rec(action: str = "dial", reason: str = "ROUTED", ended: bool = False) -> dict[str, object]:
    return {"action": action, "reason": reason, "ended_at": T0 if ended else None}


@pytest.mark.parametrize(
    ("record", "live", "now", "expected"),
    [
        (None, None, T0, ("ringing_agent", "")),  # not reported by the engine yet
        (None, None, T0 + timedelta(minutes=5), ("failed", "NOT_STARTED")),
        (None, _Live(), T0, ("ringing_agent", "")),
        (None, _Live(ended_at=T0, hangup_cause_text="No answer"), T0, ("agent_no_answer", "NO_ANSWER")),
        (None, _Live(answered_at=T0), T0, ("calling_customer", "")),  # answered, not decided yet
        (_rec(), _Live(answered_at=T0), T0, ("calling_customer", "ROUTED")),
        (_rec(), _Live(answered_at=T0, bridged_at=T0), T0, ("connected", "ROUTED")),
        (_rec(), _Live(answered_at=T0, ended_at=T0), T0, ("ended", "ROUTED")),
        (_rec(ended=True), None, T0, ("ended", "ROUTED")),
        (_rec("reject", "NO_BALANCE"), _Live(answered_at=T0), T0, ("refused", "NO_BALANCE")),
        (_rec("reject", "CALLER_ID_NOT_OWNED", ended=True), None, T0, ("refused", "CALLER_ID_NOT_OWNED")),
    ],
)
def test_a_calls_state_reads_its_decision_first_then_the_engines_events(
    record: dict[str, object] | None, live: _Live | None, now: datetime, expected: tuple[str, str]
) -> None:
    assert _state(record, live, T0, now) == expected
