"""Notices as e-mails: every kind the platform writes has its own subject and body in
Chinese and English, read from the payload the writers really store; times in the
tenant's zone, money to the cent; the tenant sees its callers' numbers in full."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softswitch.notify.render import KINDS, Notice, render_email

AT = datetime(2026, 12, 4, 4, 30, tzinfo=UTC)  # 12:30 in Shanghai


def notice(kind: str, payload: dict[str, Any], tz: str = "Asia/Shanghai") -> Notice:
    # the payload as the writers store it: JSON text with Decimals and datetimes as str
    stored = json.loads(json.dumps(payload, default=str, ensure_ascii=False))
    return Notice(42, kind, stored, AT, "深圳某某科技有限公司", tz)


MISSED = {
    "caller": "13912345678",
    "called": "4008001234",
    "number_id": 9,
    "destinations": ["13800138000"],
    "at": "2026-12-04T04:29:10.5+00:00",
}


def test_a_missed_call_names_the_caller_in_full_and_the_local_time() -> None:
    zh = render_email(notice("missed_call", MISSED), "zh")
    assert zh.subject == "【通知】未接来电：13912345678 呼叫 4008001234"
    assert "2026-12-04 12:29 (Asia/Shanghai)" in zh.body and "13800138000" in zh.body
    assert zh.body.startswith("深圳某某科技有限公司，您好：")
    en = render_email(notice("missed_call", MISSED), "en")
    assert en.subject == "[Notice] Missed call from 13912345678 to 4008001234"
    assert "At 2026-12-04 12:29 (Asia/Shanghai), 13912345678 called 4008001234" in en.body
    assert "Notice 42 (missed_call)" in en.body


def test_a_missed_call_without_caller_id() -> None:
    en = render_email(notice("missed_call", {**MISSED, "caller": ""}), "en")
    assert en.subject == "[Notice] Missed call from a caller without caller ID to 4008001234"


def test_times_follow_the_tenants_zone() -> None:
    en = render_email(notice("missed_call", MISSED, tz="Europe/London"), "en")
    assert "2026-12-04 04:29 (Europe/London)" in en.body


def test_low_balance_in_yuan_to_the_cent() -> None:
    payload = {"balance": Decimal("12.345"), "reserved": Decimal("0.5"), "threshold": Decimal("20")}
    zh = render_email(notice("low_balance", payload), "zh")
    assert zh.subject == "【通知】账户余额不足：12.35 元"  # ROUND_HALF_UP, the one rule
    assert "已低于提醒阈值 20.00 元" in zh.body and "通话占用 0.50 元" in zh.body
    assert render_email(notice("low_balance", payload), "en").subject == "[Notice] Low balance: 12.35 CNY"


def test_contract_expiring_three_and_one_months_ahead() -> None:
    for months in (3, 1):
        p = {"subscription_id": 5, "package": "A59", "ends_on": "2027-03-01", "months_ahead": months}
        zh = render_email(notice("contract_expiring", p), "zh")
        assert zh.subject == "【通知】合同将于 2027-03-01 到期"
        assert f"提前 {months} 个月提醒" in zh.body and "A59" in zh.body
        en = render_email(notice("contract_expiring", p), "en")
        assert en.subject == "[Notice] Contract expires on 2027-03-01"
        assert f"{months} month(s) ahead" in en.body


def test_package_nearly_used_in_minutes() -> None:
    p = {"included_seconds_left": 1500, "allowance_s": 17940}
    assert render_email(notice("package_low", p), "zh").subject == "【通知】套餐分钟数即将用完：剩余 25 分钟"
    assert "includes 299 minutes; 25 are left" in render_email(notice("package_low", p), "en").body


def test_a_compliance_warning_names_the_rule_level_and_figures() -> None:
    p = {
        "rule": "failed_rate",
        "subject": "",
        "level": "warning",
        "value": "0.72",
        "threshold": "0.7",
        "action": "notice",
        "at": AT.isoformat(),
    }
    zh = render_email(notice("compliance_notice", p), "zh")
    assert zh.subject == "【通知】合规预警：呼叫失败率"
    assert "当前值 0.72，阈值 0.7" in zh.body
    en = render_email(
        notice(
            "compliance_notice",
            {
                **p,
                "level": "critical",
                "rule": "call_frequency",
                "subject": "02112345678",
                "action": "throttle",
            },
        ),
        "en",
    )
    assert en.subject == "[Notice] Compliance critical: call frequency"
    assert "(number 02112345678)" in en.body and "outbound calls throttled" in en.body


@pytest.mark.parametrize(
    ("kind", "payload", "zh", "en"),
    [
        ("suspended", {"reasons": ["balance"], "at": AT}, "服务已暂停", "Service suspended"),
        ("resumed", {"suspended_at": AT}, "服务已恢复", "Service resumed"),
        ("terminated", {"reasons": ["balance"], "suspended_at": AT}, "合同已终止", "Contract terminated"),
        (
            "onboarding_reminder",
            {"due_at": AT, "due_at_local": "x", "missing": ["business_licence"], "left": "2d"},
            "请于 2026-12-04 12:30 (Asia/Shanghai) 前提交开户资料",
            "Onboarding documents due by 2026-12-04 12:30 (Asia/Shanghai)",
        ),
        (
            "onboarding_released",
            {"due_at": AT, "missing": ["business_licence"], "released": ["4008001234"]},
            "开户资料逾期，预留号码已释放",
            "Onboarding documents overdue: reserved numbers released",
        ),
    ],
)
def test_the_life_cycle_notices(kind: str, payload: dict[str, Any], zh: str, en: str) -> None:
    assert render_email(notice(kind, payload), "zh").subject == "【通知】" + zh
    assert render_email(notice(kind, payload), "en").subject == "[Notice] " + en


def test_every_kind_has_both_languages_and_an_unknown_kind_still_renders() -> None:
    for kind in KINDS:
        zh, en = render_email(notice(kind, {}), "zh"), render_email(notice(kind, {}), "en")
        assert zh.subject.startswith("【通知】") and en.subject.startswith("[Notice] ")
        assert zh.body != en.body
    other = render_email(notice("voicemail", {"caller": "13912345678", "duration_s": 12}), "en")
    assert other.subject == "[Notice] Platform notice: voicemail"
    assert 'caller: "13912345678"' in other.body and "duration_s: 12" in other.body


def test_instants_at_the_calendars_edge_are_shown_as_written() -> None:
    en = render_email(notice("missed_call", {**MISSED, "at": "0001-01-01T00:00:00+05:00"}), "en")
    assert "At 0001-01-01T00:00:00+05:00," in en.body


def test_a_subject_stays_one_line_whatever_the_payload_holds() -> None:
    evil = render_email(notice("missed_call", {**MISSED, "called": "4008001234\r\nBcc: x@y"}), "en")
    assert "\n" not in evil.subject and "\r" not in evil.subject


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
FIELDS = st.sampled_from(
    [
        "caller",
        "called",
        "at",
        "balance",
        "reserved",
        "threshold",
        "ends_on",
        "months_ahead",
        "reasons",
        "suspended_at",
        "included_seconds_left",
        "allowance_s",
        "rule",
        "level",
        "value",
        "due_at",
        "missing",
        "released",
        "destinations",
        "subject",
        "action",
        "package",
    ]
)


@settings(max_examples=300, deadline=None)  # a loaded machine: no per-example deadline
@given(
    st.sampled_from([*KINDS, "something_new"]),
    st.dictionaries(FIELDS, JSON, max_size=8),
    st.sampled_from(["zh", "en"]),
)
def test_any_payload_renders_and_the_subject_is_one_line(
    kind: str, payload: dict[str, Any], lang: str
) -> None:
    email = render_email(notice(kind, payload), lang)
    assert email.subject and "\n" not in email.subject and "\r" not in email.subject
    assert email.body.endswith("\n")
