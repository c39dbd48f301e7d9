"""A notice as an e-mail, in Chinese or English: subject and plain-text body from the
outbox row's kind and payload, times in the tenant's time zone, money in yuan to the cent
(rating.money.to_charge, the one rounding rule). The tenant reads its own callers'
numbers in full here; the logs never see these texts. Pure: everything is passed in.

A kind without a template of its own (one added later) is still delivered: its payload's
fields, one a line."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from rating.money import to_charge

LANGUAGES = ("zh", "en")


@dataclass(frozen=True, slots=True)
class Notice:
    id: int
    kind: str
    payload: Mapping[str, Any]
    created_at: datetime
    tenant_name: str
    timezone: str  # the tenant's, e.g. Asia/Shanghai


@dataclass(frozen=True, slots=True)
class Email:
    subject: str
    body: str


_PREFIX = {"zh": "【通知】", "en": "[Notice] "}
_GREETING = {"zh": "{name}，您好：", "en": "Dear {name},"}
_FOOTER = {
    "zh": "通知编号 {id}（{kind}），生成于 {at}。此邮件由系统自动发送，请勿直接回复。",
    "en": "Notice {id} ({kind}), written {at}. This message was sent automatically; please do not reply.",
}
_RULES = {
    "robocall": ("群呼", "robocalling"),
    "one_ring": ("一声响", "one-ring calls"),
    "failed_rate": ("呼叫失败率", "failed-call rate"),
    "avg_duration": ("平均通话时长", "average call duration"),
    "call_frequency": ("呼叫频次", "call frequency"),
    "numbers_in_use": ("外显号码数", "caller numbers in use"),
    "complaints": ("投诉量", "complaints"),
}
_LEVELS = {
    "warning": ("预警", "warning"),
    "critical": ("严重", "critical"),
    "ok": ("恢复正常", "back to normal"),
}
_ACTIONS = {
    "notice": ("仅通知", "notice only"),
    "alert": ("告警运营方", "operator alerted"),
    "throttle": ("外呼限速", "outbound calls throttled"),
    "suspend": ("暂停外呼", "outbound calls suspended"),
}


def _pick(table: Mapping[str, tuple[str, str]], key: Any, lang: str) -> str:
    pair = table.get(str(key))
    return str(key) if pair is None else pair[0 if lang == "zh" else 1]


def _money(value: Any) -> str:
    try:
        return str(to_charge(Decimal(str(value))))
    except (InvalidOperation, ValueError, TypeError):
        return str(value)


def _when(value: Any, tz: ZoneInfo) -> str:
    """An instant as the tenant's local time; anything else as it is."""
    if isinstance(value, datetime):
        at = value
    else:
        try:
            at = datetime.fromisoformat(str(value))
        except ValueError:
            return str(value)
    if at.tzinfo is None:
        return at.strftime("%Y-%m-%d %H:%M")
    try:
        return f"{at.astimezone(tz):%Y-%m-%d %H:%M} ({tz.key})"
    except OverflowError:  # an instant at the calendar's edge: as written
        return str(value)


def _day(value: Any) -> str:
    try:
        return date.fromisoformat(str(value)[:10]).isoformat()
    except ValueError:
        return str(value)


def _list(value: Any, lang: str) -> str:
    items = value if isinstance(value, list) else [value]
    return ("、" if lang == "zh" else ", ").join(str(v) for v in items) or ("无" if lang == "zh" else "none")


def _minutes(seconds: Any) -> str:
    try:
        return str(int(seconds) // 60)
    except (ValueError, TypeError, OverflowError):
        return str(seconds)


Text = tuple[str, list[str]]  # subject (without the prefix), body lines


def _low_balance(p: Mapping[str, Any], lang: str, tz: ZoneInfo) -> Text:
    balance, reserved, threshold = (
        _money(p.get("balance")),
        _money(p.get("reserved", 0)),
        _money(p.get("threshold")),
    )
    if lang == "zh":
        return f"账户余额不足：{balance} 元", [
            f"您的账户余额为 {balance} 元（通话占用 {reserved} 元），已低于提醒阈值 {threshold} 元。",
            "余额用尽后服务将自动停止，请及时充值。",
        ]
    return f"Low balance: {balance} CNY", [
        f"Your balance is {balance} CNY ({reserved} CNY held by calls), below the reminder threshold of "
        f"{threshold} CNY.",
        "Service stops automatically when the balance runs out: please recharge in time.",
    ]


def _package_low(p: Mapping[str, Any], lang: str, tz: ZoneInfo) -> Text:
    left, total = _minutes(p.get("included_seconds_left")), _minutes(p.get("allowance_s"))
    if lang == "zh":
        return f"套餐分钟数即将用完：剩余 {left} 分钟", [
            f"本月套餐包含 {total} 分钟，目前剩余 {left} 分钟。超出部分按套餐外资费计费。",
        ]
    return f"Package nearly used: {left} minutes left", [
        f"This month's package includes {total} minutes; {left} are left. Beyond the package, calls are "
        "charged at the out-of-package rate.",
    ]


def _contract_expiring(p: Mapping[str, Any], lang: str, tz: ZoneInfo) -> Text:
    ends, months, package = _day(p.get("ends_on")), p.get("months_ahead"), p.get("package", "")
    if lang == "zh":
        return f"合同将于 {ends} 到期", [
            f"您的套餐 {package} 的合同将于 {ends} 到期（提前 {months} 个月提醒）。",
            "请在到期前办理续约，续约期限不短于原合同期限。",
        ]
    return f"Contract expires on {ends}", [
        f"The contract of your package {package} ends on {ends} (a reminder {months} month(s) ahead).",
        "Please renew before it ends; a renewal runs no shorter than the original term.",
    ]


def _suspended(p: Mapping[str, Any], lang: str, tz: ZoneInfo) -> Text:
    reasons, at = _list(p.get("reasons", []), lang), _when(p.get("at"), tz)
    if lang == "zh":
        return "服务已暂停", [
            f"您的服务已于 {at} 暂停，原因：{reasons}。",
            "充值或结清欠费后服务将自动恢复；暂停 7 天未续费的，合同终止并释放号码。",
        ]
    return "Service suspended", [
        f"Your service was suspended at {at}; reasons: {reasons}.",
        "It resumes once the account is paid; after 7 days suspended without renewal the contract ends "
        "and the numbers are released.",
    ]


def _resumed(p: Mapping[str, Any], lang: str, tz: ZoneInfo) -> Text:
    since = _when(p.get("suspended_at"), tz)
    if lang == "zh":
        return "服务已恢复", [f"您自 {since} 起暂停的服务已恢复。"]
    return "Service resumed", [f"Your service, suspended since {since}, has resumed."]


def _terminated(p: Mapping[str, Any], lang: str, tz: ZoneInfo) -> Text:
    reasons, since = _list(p.get("reasons", []), lang), _when(p.get("suspended_at"), tz)
    if lang == "zh":
        return "合同已终止", [
            f"您的服务自 {since} 暂停后未续费，合同已终止，号码已释放。原因：{reasons}。",
        ]
    return "Contract terminated", [
        f"Your service, suspended since {since} without renewal, has ended and its numbers were released; "
        f"reasons: {reasons}.",
    ]


def _missed_call(p: Mapping[str, Any], lang: str, tz: ZoneInfo) -> Text:
    caller, called, at = p.get("caller") or "", p.get("called", ""), _when(p.get("at"), tz)
    tried = _list(p.get("destinations") or [], lang)
    if lang == "zh":
        who = caller or "未显示号码"
        return f"未接来电：{who} 呼叫 {called}", [
            f"{at}，{who} 呼叫 {called}，无人接听。",
            f"已振铃：{tried}。",
        ]
    who = caller or "a caller without caller ID"
    return f"Missed call from {who} to {called}", [
        f"At {at}, {who} called {called}; nobody answered.",
        f"Rang: {tried}.",
    ]


def _seconds(value: Any) -> str:
    try:
        return str(max(round(float(value)), 1))
    except (ValueError, TypeError, OverflowError):
        return str(value)


def _new_voicemail(p: Mapping[str, Any], lang: str, tz: ZoneInfo) -> Text:
    caller, called, at = p.get("caller") or "", p.get("called", ""), _when(p.get("at"), tz)
    seconds, message = _seconds(p.get("duration_s", 0)), p.get("message_id", "")
    if lang == "zh":
        who = caller or "未显示号码"
        return f"新语音留言：{who} 呼叫 {called}", [
            f"{at}，{who} 呼叫 {called}，留言 {seconds} 秒。",
            f"留言编号 {message}，可通过 API 收听。",
        ]
    who = caller or "a caller without caller ID"
    return f"New voicemail from {who} to {called}", [
        f"At {at}, {who} called {called} and left a message of {seconds} s.",
        f"Message {message}: listen to it through the API.",
    ]


def _compliance_notice(p: Mapping[str, Any], lang: str, tz: ZoneInfo) -> Text:
    rule, level = _pick(_RULES, p.get("rule"), lang), _pick(_LEVELS, p.get("level"), lang)
    action, at = _pick(_ACTIONS, p.get("action"), lang), _when(p.get("at"), tz)
    value, threshold, subject = p.get("value"), p.get("threshold"), p.get("subject") or ""
    if lang == "zh":
        about = f"（号码 {subject}）" if subject else ""
        return f"合规{level}：{rule}", [
            f"{at}，监测项「{rule}」{about}达到{level}级别：当前值 {value}，阈值 {threshold}。",
            f"达到严重级别时的处理：{action}。",
        ]
    about = f" (number {subject})" if subject else ""
    return f"Compliance {level}: {rule}", [
        f"At {at}, the monitor '{rule}'{about} reached {level}: value {value}, threshold {threshold}.",
        f"At critical: {action}.",
    ]


def _onboarding_reminder(p: Mapping[str, Any], lang: str, tz: ZoneInfo) -> Text:
    due, missing = _when(p.get("due_at"), tz), _list(p.get("missing", []), lang)
    if lang == "zh":
        return f"请于 {due} 前提交开户资料", [
            f"以下资料尚未提交或未通过审核：{missing}。",
            "付款后 7 天内未提交齐全的，预留号码可能被更换。",
        ]
    return f"Onboarding documents due by {due}", [
        f"Still outstanding or not approved: {missing}.",
        "Documents are due within 7 days of payment, else the reserved numbers may be replaced.",
    ]


def _onboarding_released(p: Mapping[str, Any], lang: str, tz: ZoneInfo) -> Text:
    released, missing = _list(p.get("released", []), lang), _list(p.get("missing", []), lang)
    if lang == "zh":
        return "开户资料逾期，预留号码已释放", [
            f"资料（{missing}）在期限内未齐全，以下号码已释放：{released}。",
        ]
    return "Onboarding documents overdue: reserved numbers released", [
        f"The documents ({missing}) were not complete in time; these numbers were released: {released}.",
    ]


def _generic(kind: str, p: Mapping[str, Any], lang: str) -> Text:
    lines = [f"{k}: {json.dumps(v, ensure_ascii=False, default=str)}" for k, v in sorted(p.items())]
    return (f"平台通知：{kind}" if lang == "zh" else f"Platform notice: {kind}"), lines


_KINDS: dict[str, Callable[[Mapping[str, Any], str, ZoneInfo], Text]] = {
    "low_balance": _low_balance,
    "package_low": _package_low,
    "contract_expiring": _contract_expiring,
    "suspended": _suspended,
    "resumed": _resumed,
    "terminated": _terminated,
    "missed_call": _missed_call,
    "new_voicemail": _new_voicemail,
    "compliance_notice": _compliance_notice,
    "onboarding_reminder": _onboarding_reminder,
    "onboarding_released": _onboarding_released,
}
KINDS = tuple(_KINDS)


def render_email(notice: Notice, language: str) -> Email:
    lang = language if language in LANGUAGES else "zh"
    tz = ZoneInfo(notice.timezone)
    template = _KINDS.get(notice.kind)
    subject, lines = (
        template(notice.payload, lang, tz) if template else _generic(notice.kind, notice.payload, lang)
    )
    footer = _FOOTER[lang].format(id=notice.id, kind=notice.kind, at=_when(notice.created_at, tz))
    body = "\n".join([_GREETING[lang].format(name=notice.tenant_name), "", *lines, "", "--", footer, ""])
    # a subject is one line whatever a payload holds
    return Email(" ".join((_PREFIX[lang] + subject).split()), body)
