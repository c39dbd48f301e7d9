"""Voicemail without a database: where a call's message is recorded (both engines name the
same file), which stored paths are served, the new_voicemail notice in both languages, and
which delivered decisions the pick-up waits for."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from dialplan.distribution import DialStep, Member
from dialplan.inbound import Reject, Route, Voicemail
from dialplan.reasons import Reason
from provisioning.engine import NotFound
from provisioning.voicemail import VoicemailSpool, voicemail_file
from softswitch.callpath.voicemail import VoicemailPickup
from softswitch.core.clock import FixedClock
from softswitch.core.metrics import Metrics
from softswitch.core.settings import VoicemailSettings
from softswitch.notify.render import KINDS, Notice, render_email

SPOOL = "/var/spool/asterisk/softswitch-vm"


def test_the_file_of_a_call_is_named_by_tenant_and_call_id() -> None:
    assert voicemail_file(SPOOL, 12, "1733300000.42") == f"{SPOOL}/12-1733300000.42.wav"
    uuid = "0f8e2b1c-1d2e-4f5a-9b8c-7d6e5f4a3b2c"  # FreeSWITCH's call UUID
    assert voicemail_file(SPOOL + "/", 3, uuid) == f"{SPOOL}/3-{uuid}.wav"
    for bad in ("../../etc/passwd", "1.2/../x", "", "a b"):
        with pytest.raises(ValueError, match="not a call id"):
            voicemail_file(SPOOL, 1, bad)


def test_only_a_file_of_the_messages_own_tenant_inside_the_spool_is_served(tmp_path: Path) -> None:
    files = VoicemailSpool(tmp_path, SPOOL)
    mine = tmp_path / SPOOL.lstrip("/") / "7-1.1.wav"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"RIFF")
    (tmp_path / SPOOL.lstrip("/") / "8-1.1.wav").write_bytes(b"RIFF")
    (tmp_path / "secret").write_text("x")
    assert files.file_of({"id": 1, "tenant_id": 7, "path": f"{SPOOL}/7-1.1.wav"}) == mine.resolve()
    for tenant, path in (
        (7, f"{SPOOL}/8-1.1.wav"),  # another tenant's file
        (7, f"{SPOOL}/7-../../../../secret"),  # out of the spool
        (7, f"{SPOOL}/7-2.2.wav"),  # not on disk
        (71, f"{SPOOL}/7-1.1.wav"),  # a prefix of another tenant's id
    ):
        with pytest.raises(NotFound):
            files.file_of({"id": 1, "tenant_id": tenant, "path": path})


def _notice(payload: dict[str, object]) -> Notice:
    at = datetime(2026, 12, 4, 2, 30, tzinfo=UTC)
    return Notice(9, "new_voicemail", payload, at, "Acme", "Asia/Shanghai")


def test_the_new_voicemail_notice_in_chinese_and_english() -> None:
    assert "new_voicemail" in KINDS
    payload = {
        "message_id": 41,
        "caller": "13912345678",
        "called": "4008001234",
        "at": "2026-12-04T02:30:00+00:00",
        "duration_s": 4.4,
    }
    zh, en = render_email(_notice(payload), "zh"), render_email(_notice(payload), "en")
    assert zh.subject == "【通知】新语音留言：13912345678 呼叫 4008001234"
    assert "2026-12-04 10:30 (Asia/Shanghai)，13912345678 呼叫 4008001234，留言 4 秒。" in zh.body
    assert "留言编号 41" in zh.body
    assert en.subject == "[Notice] New voicemail from 13912345678 to 4008001234"
    assert "At 2026-12-04 10:30 (Asia/Shanghai), 13912345678 called 4008001234" in en.body
    withheld = render_email(_notice({**payload, "caller": ""}), "en")
    assert withheld.subject == "[Notice] New voicemail from a caller without caller ID to 4008001234"


def _route(final_action: str) -> Route:
    step = DialStep((Member("13800138000", 20),), 20)
    return Route((step,), 5, 2, final_action=final_action)


def test_the_pick_up_waits_for_voicemail_decisions_and_routed_calls_that_fall_back_to_it(
    tmp_path: Path,
) -> None:
    clock = FixedClock(datetime.now(UTC))
    pickup = VoicemailPickup(None, clock, Metrics(), VoicemailSettings(), tmp_path)  # type: ignore[arg-type]
    cases = {
        "1.1": Voicemail(5, 2),
        "1.2": _route("voicemail"),
        "1.3": _route("missed_call"),
        "1.4": Reject(Reason.CLOSED, 5, 2),
        "1.5": Voicemail(None, None),  # type: ignore[arg-type]  # no tenant: nobody's mailbox
        "not an id": Voicemail(5, 2),
    }
    for linkedid, decision in cases.items():
        pickup.expect(decision, linkedid, "13912345678", "4008001234")
    expected = pickup._expected  # noqa: SLF001 - what the hang-up will look for
    assert set(expected) == {"1.1", "1.2"}
    assert expected["1.1"].direct and not expected["1.2"].direct
    assert expected["1.2"].inside == f"{SPOOL}/5-1.2.wav" and expected["1.2"].number == "4008001234"
