"""The phone self-service line (seed 001) as a pure step machine: "balance press 1;
recharge press 2; change password press 3; supplementary services press 4; other number
press 9; enter the number ending with #, * to re-enter; enter the password".

Effects (password check, balance, card redemption, ...) are requested as actions; the
adapter performs them and feeds the result back as the next event. Every effect fails
closed: `EffectFailed` plays "service unavailable" and hangs up.

Entries end with '#' (GET DATA strips it; a trailing '#' is accepted too); a '*' anywhere
in an entry means "re-enter" and asks again without counting a failure. An invalid entry or
a timeout is retried `retries` times, then the call hangs up with "ivr_no_input".

Wrong passwords are counted per account in this call; the adapter's password check keeps
its own count across calls and answers `locked=True` for an account already locked.

Recharge: the idempotency key of `RedeemCard` is derived from (call id, card number), so a
card redeemed in this call is not redeemed again: the machine refuses a card it has already
redeemed in this call, and the adapter redeems with one SQL statement that marks the card
used only if it is unused and records the key, returning the recorded outcome when the key
is seen again (single use is enforced in SQL, not here). A failed attempt records nothing,
so the same card with the right PIN can still be redeemed. One prompt covers every failure
reason so the line does not tell a card-number guesser which numbers exist.

Prompts (sound files under `selfservice/`)::

    selfservice/enter-account         enter the number ending with #, * to re-enter
    selfservice/enter-password        enter the password ending with #
    selfservice/password-wrong        the password is wrong
    selfservice/account-locked        the account is locked
    selfservice/main-menu             balance 1, recharge 2, change password 3,
                                      supplementary services 4, other number 9, * repeats
    selfservice/invalid-choice        that key is not an option
    selfservice/invalid-entry         that entry is not valid
    selfservice/no-input              we did not hear your entry
    selfservice/balance-is            your balance is
    selfservice/owing                 you owe (before a negative amount)
    selfservice/yuan                  yuan (元)
    selfservice/fen                   fen (分)
    selfservice/enter-card            enter the recharge card number ending with #
    selfservice/enter-card-pin        enter the card password ending with #
    selfservice/recharge-ok           recharged (followed by the amount)
    selfservice/recharge-failed       the card could not be used
    selfservice/card-already-redeemed this card has already been used in this call
    selfservice/enter-new-password    enter the new password, 6 to 12 digits, ending with #
    selfservice/password-rule         the password must be 6 to 12 digits
    selfservice/confirm-new-password  enter the new password again
    selfservice/password-mismatch     the two entries differ
    selfservice/password-changed      the password has been changed
    selfservice/password-change-failed  the password could not be changed
    selfservice/supplementary-menu    time policy 1, * returns to the main menu
    selfservice/time-policy-on-off    switch the time policy on 1, off 2, * returns
    selfservice/setting-saved         the setting has been saved
    selfservice/setting-failed        the setting could not be saved
    selfservice/service-unavailable   the service is unavailable, please call later
    selfservice/goodbye               goodbye
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any, NamedTuple

from ivr.actions import NO_INPUT, ChannelAction, Collect, Digits, Hangup, Play, SayNumber, Timeout

ENTER_ACCOUNT = "selfservice/enter-account"
ENTER_PASSWORD = "selfservice/enter-password"
PASSWORD_WRONG = "selfservice/password-wrong"
ACCOUNT_LOCKED = "selfservice/account-locked"
MAIN_MENU = "selfservice/main-menu"
INVALID_CHOICE = "selfservice/invalid-choice"
INVALID_ENTRY = "selfservice/invalid-entry"
NO_INPUT_PROMPT = "selfservice/no-input"
BALANCE_IS = "selfservice/balance-is"
OWING = "selfservice/owing"
YUAN = "selfservice/yuan"
FEN = "selfservice/fen"
ENTER_CARD = "selfservice/enter-card"
ENTER_CARD_PIN = "selfservice/enter-card-pin"
RECHARGE_OK = "selfservice/recharge-ok"
RECHARGE_FAILED = "selfservice/recharge-failed"
CARD_ALREADY_REDEEMED = "selfservice/card-already-redeemed"
ENTER_NEW_PASSWORD = "selfservice/enter-new-password"
PASSWORD_RULE = "selfservice/password-rule"
CONFIRM_NEW_PASSWORD = "selfservice/confirm-new-password"
PASSWORD_MISMATCH = "selfservice/password-mismatch"
PASSWORD_CHANGED = "selfservice/password-changed"
PASSWORD_CHANGE_FAILED = "selfservice/password-change-failed"
SUPPLEMENTARY_MENU = "selfservice/supplementary-menu"
TIME_POLICY_ON_OFF = "selfservice/time-policy-on-off"
SETTING_SAVED = "selfservice/setting-saved"
SETTING_FAILED = "selfservice/setting-failed"
SERVICE_UNAVAILABLE = "selfservice/service-unavailable"
GOODBYE = "selfservice/goodbye"

PROMPTS = (
    ENTER_ACCOUNT,
    ENTER_PASSWORD,
    PASSWORD_WRONG,
    ACCOUNT_LOCKED,
    MAIN_MENU,
    INVALID_CHOICE,
    INVALID_ENTRY,
    NO_INPUT_PROMPT,
    BALANCE_IS,
    OWING,
    YUAN,
    FEN,
    ENTER_CARD,
    ENTER_CARD_PIN,
    RECHARGE_OK,
    RECHARGE_FAILED,
    CARD_ALREADY_REDEEMED,
    ENTER_NEW_PASSWORD,
    PASSWORD_RULE,
    CONFIRM_NEW_PASSWORD,
    PASSWORD_MISMATCH,
    PASSWORD_CHANGED,
    PASSWORD_CHANGE_FAILED,
    SUPPLEMENTARY_MENU,
    TIME_POLICY_ON_OFF,
    SETTING_SAVED,
    SETTING_FAILED,
    SERVICE_UNAVAILABLE,
    GOODBYE,
)  # every prompt the line plays, for checking that the sound files are installed

# Hang-up reasons for the call record
PASSWORD_LOCKED = "password_locked"  # this call's wrong passwords locked the account
ALREADY_LOCKED = "account_locked"
CARD_ATTEMPTS = "card_attempts_exceeded"
UNAVAILABLE = "service_unavailable"

MAX_ENTRY_DIGITS = 20


class Phase(StrEnum):
    ACCOUNT = "account"
    PASSWORD = "password"
    CHECKING_PASSWORD = "checking_password"
    MAIN = "main"
    GETTING_BALANCE = "getting_balance"
    CARD_NUMBER = "card_number"
    CARD_PIN = "card_pin"
    REDEEMING = "redeeming"
    NEW_PASSWORD = "new_password"
    CONFIRM_PASSWORD = "confirm_password"
    CHANGING_PASSWORD = "changing_password"
    SUPPLEMENTARY = "supplementary"
    TIME_POLICY = "time_policy"
    TOGGLING = "toggling"
    ENDED = "ended"


_ENTRIES = {
    Phase.ACCOUNT: ENTER_ACCOUNT,
    Phase.PASSWORD: ENTER_PASSWORD,
    Phase.CARD_NUMBER: ENTER_CARD,
    Phase.CARD_PIN: ENTER_CARD_PIN,
    Phase.NEW_PASSWORD: ENTER_NEW_PASSWORD,
    Phase.CONFIRM_PASSWORD: CONFIRM_NEW_PASSWORD,
}
_MENUS = {
    Phase.MAIN: MAIN_MENU,
    Phase.SUPPLEMENTARY: SUPPLEMENTARY_MENU,
    Phase.TIME_POLICY: TIME_POLICY_ON_OFF,
}


@dataclass(frozen=True, slots=True)
class SelfServiceConfig:
    max_password_attempts: int = 3  # wrong passwords before the account is locked
    retries: int = 3  # invalid entries or timeouts tolerated at one prompt
    max_card_failures: int = 3  # failed redemptions in one call before hanging up
    menu_timeout_ms: int = 5000
    entry_timeout_ms: int = 10000  # numbers and passwords take longer to key
    password_min: int = 6
    password_max: int = 12

    @staticmethod
    def parse(raw: Mapping[str, Any]) -> SelfServiceConfig:
        limits = {
            "max_password_attempts": (1, 10),
            "retries": (0, 10),
            "max_card_failures": (1, 10),
            "menu_timeout_ms": (500, 60000),
            "entry_timeout_ms": (500, 60000),
            "password_min": (4, MAX_ENTRY_DIGITS),
            "password_max": (4, MAX_ENTRY_DIGITS),
        }
        unknown = [k for k in raw if k not in limits]
        if unknown:
            raise ValueError(f"unknown self-service setting {unknown[0]!r}")
        values = {}
        for key, (low, high) in limits.items():
            value = raw.get(key, getattr(SelfServiceConfig(), key))
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"self-service setting {key!r} must be an integer from {low} to {high}")
            values[key] = value
        if values["password_min"] > values["password_max"]:
            raise ValueError("self-service setting 'password_min' is above 'password_max'")
        return SelfServiceConfig(**values)


# Actions: effects the adapter performs, each answered by an event below.
@dataclass(frozen=True, slots=True)
class CheckPassword:
    account: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class LockAccount:
    """Lock the account (the adapter also writes an audit record); no answer expected."""

    account: str


@dataclass(frozen=True, slots=True)
class GetBalance:
    account: str


@dataclass(frozen=True, slots=True)
class RedeemCard:
    account: str
    card: str
    pin: str = field(repr=False)
    idempotency_key: str = ""


@dataclass(frozen=True, slots=True)
class ChangePassword:
    account: str
    new_password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class ToggleTimePolicy:
    account: str
    on: bool


# What the adapter must do outside the channel (the database), each answered by an event.
Effect = CheckPassword | LockAccount | GetBalance | RedeemCard | ChangePassword | ToggleTimePolicy
SelfServiceAction = ChannelAction | Effect


# Events: the results of those effects.
@dataclass(frozen=True, slots=True)
class PasswordResult:
    ok: bool
    locked: bool = False


@dataclass(frozen=True, slots=True)
class Balance:
    amount: Decimal


@dataclass(frozen=True, slots=True)
class RedeemResult:
    ok: bool
    amount: Decimal | None = None  # credited amount when ok
    reason: str = ""  # for the call record; the caller hears one failure prompt


@dataclass(frozen=True, slots=True)
class PasswordChanged:
    ok: bool


@dataclass(frozen=True, slots=True)
class ToggleResult:
    ok: bool


@dataclass(frozen=True, slots=True)
class EffectFailed:
    """The adapter could not perform the requested effect (database down, timeout)."""

    reason: str = ""


SelfServiceEvent = (
    Digits | Timeout | PasswordResult | Balance | RedeemResult | PasswordChanged | ToggleResult | EffectFailed
)


@dataclass(frozen=True, slots=True)
class SelfServiceState:
    call_id: str
    phase: Phase = Phase.ACCOUNT
    account: str = ""
    failures: int = 0  # invalid entries and timeouts at the current prompt
    wrong_passwords: int = 0  # for the current account
    card: str = ""  # the card being redeemed
    new_password: str = field(default="", repr=False)  # first entry, awaiting confirmation
    redeemed: frozenset[str] = frozenset()  # cards redeemed in this call
    card_failures: int = 0


class Step(NamedTuple):
    state: SelfServiceState
    actions: tuple[SelfServiceAction, ...]


def start(config: SelfServiceConfig, call_id: str) -> Step:
    if not call_id:
        raise ValueError("the self-service line needs the call id (it keys card redemptions)")
    state = SelfServiceState(call_id)
    return Step(state, (_ask(config, Phase.ACCOUNT),))


def idempotency_key(call_id: str, card: str) -> str:
    return f"ivr-recharge:{call_id}:{card}"


def say_money(amount: Decimal) -> tuple[ChannelAction, ...]:
    """'N yuan M fen', rounded to the fen; fen left out when zero; 'owing' before a debt."""
    if not amount.is_finite():
        raise ValueError(f"cannot say the amount {amount}")
    cents = int((abs(amount) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    yuan, fen = divmod(cents, 100)
    said: list[ChannelAction] = [Play(OWING)] if amount < 0 and cents else []
    said += [SayNumber(yuan), Play(YUAN)]
    if fen:
        said += [SayNumber(fen), Play(FEN)]
    return tuple(said)


_WAITING: dict[Phase, type] = {
    Phase.CHECKING_PASSWORD: PasswordResult,
    Phase.GETTING_BALANCE: Balance,
    Phase.REDEEMING: RedeemResult,
    Phase.CHANGING_PASSWORD: PasswordChanged,
    Phase.TOGGLING: ToggleResult,
}


def advance(config: SelfServiceConfig, state: SelfServiceState, event: SelfServiceEvent) -> Step:
    phase = state.phase
    if phase is Phase.ENDED:
        raise ValueError("the self-service call has already ended")
    if isinstance(event, Digits | Timeout):
        if phase in _ENTRIES:
            return _on_entry(config, state, event)
        if phase in _MENUS:
            return _on_menu(config, state, event)
    elif isinstance(event, EffectFailed) and phase in _WAITING:
        return _end(state, UNAVAILABLE, Play(SERVICE_UNAVAILABLE))
    elif _WAITING.get(phase) is type(event):
        return _on_result(config, state, event)
    raise ValueError(f"self-service in phase {phase.value!r} does not expect {type(event).__name__}")


def _ask(config: SelfServiceConfig, phase: Phase) -> Collect:
    if phase in _MENUS:
        return Collect(_MENUS[phase], config.menu_timeout_ms, 1)
    return Collect(_ENTRIES[phase], config.entry_timeout_ms, MAX_ENTRY_DIGITS)


def _goto(config: SelfServiceConfig, state: SelfServiceState, phase: Phase, *said: SelfServiceAction) -> Step:
    return Step(replace(state, phase=phase, failures=0), (*said, _ask(config, phase)))


def _end(state: SelfServiceState, reason: str, *said: SelfServiceAction) -> Step:
    return Step(replace(state, phase=Phase.ENDED, new_password=""), (*said, Hangup(reason)))


def _retry(
    config: SelfServiceConfig, state: SelfServiceState, prompt: str, phase: Phase | None = None
) -> Step:
    failures = state.failures + 1
    if failures > config.retries:
        return _end(state, NO_INPUT, Play(GOODBYE))
    phase = phase or state.phase
    return Step(replace(state, phase=phase, failures=failures), (Play(prompt), _ask(config, phase)))


def _keys(event: Digits | Timeout) -> str:
    return event.digits.rstrip("#") if isinstance(event, Digits) else ""


def _on_entry(config: SelfServiceConfig, state: SelfServiceState, event: Digits | Timeout) -> Step:
    if isinstance(event, Digits) and "*" in event.digits:
        return Step(state, (_ask(config, state.phase),))  # the caller asked to re-enter
    value = _keys(event)
    if not value:
        return _retry(config, state, NO_INPUT_PROMPT)
    if not (value.isascii() and value.isdigit()):
        return _retry(config, state, INVALID_ENTRY)
    phase = state.phase
    if phase is Phase.ACCOUNT:
        wrong = state.wrong_passwords if value == state.account else 0
        return _goto(config, replace(state, account=value, wrong_passwords=wrong), Phase.PASSWORD)
    if phase is Phase.PASSWORD:
        checking = replace(state, phase=Phase.CHECKING_PASSWORD, failures=0)
        return Step(checking, (CheckPassword(state.account, value),))
    if phase is Phase.CARD_NUMBER:
        if value in state.redeemed:
            return _goto(config, state, Phase.MAIN, Play(CARD_ALREADY_REDEEMED))
        return _goto(config, replace(state, card=value), Phase.CARD_PIN)
    if phase is Phase.CARD_PIN:
        key = idempotency_key(state.call_id, state.card)
        redeeming = replace(state, phase=Phase.REDEEMING, failures=0)
        return Step(redeeming, (RedeemCard(state.account, state.card, value, key),))
    if phase is Phase.NEW_PASSWORD:
        if not config.password_min <= len(value) <= config.password_max:
            return _retry(config, state, PASSWORD_RULE)
        # failures carry over to the confirmation: a mismatch counts against the pair
        confirming = replace(state, phase=Phase.CONFIRM_PASSWORD, new_password=value)
        return Step(confirming, (_ask(config, Phase.CONFIRM_PASSWORD),))
    assert phase is Phase.CONFIRM_PASSWORD
    if value != state.new_password:
        return _retry(config, replace(state, new_password=""), PASSWORD_MISMATCH, Phase.NEW_PASSWORD)
    changing = replace(state, phase=Phase.CHANGING_PASSWORD, failures=0, new_password="")
    return Step(changing, (ChangePassword(state.account, value),))


def _on_menu(config: SelfServiceConfig, state: SelfServiceState, event: Digits | Timeout) -> Step:
    key = event.digits if isinstance(event, Digits) else ""
    key = key if key == "#" else key.rstrip("#")
    if not key:
        return _retry(config, state, NO_INPUT_PROMPT)
    phase = state.phase
    if phase is Phase.MAIN:
        if key == "1":
            return Step(replace(state, phase=Phase.GETTING_BALANCE, failures=0), (GetBalance(state.account),))
        if key == "2":
            return _goto(config, state, Phase.CARD_NUMBER)
        if key == "3":
            return _goto(config, state, Phase.NEW_PASSWORD)
        if key == "4":
            return _goto(config, state, Phase.SUPPLEMENTARY)
        if key == "9":
            return _goto(config, replace(state, account="", wrong_passwords=0), Phase.ACCOUNT)
        if key == "*":
            return _goto(config, state, Phase.MAIN)
    elif key == "*":
        return _goto(config, state, Phase.MAIN)
    elif phase is Phase.SUPPLEMENTARY and key == "1":
        return _goto(config, state, Phase.TIME_POLICY)
    elif phase is Phase.TIME_POLICY and key in ("1", "2"):
        toggling = replace(state, phase=Phase.TOGGLING, failures=0)
        return Step(toggling, (ToggleTimePolicy(state.account, key == "1"),))
    return _retry(config, state, INVALID_CHOICE)


def _on_result(config: SelfServiceConfig, state: SelfServiceState, event: SelfServiceEvent) -> Step:
    if isinstance(event, PasswordResult):
        if event.locked:
            return _end(state, ALREADY_LOCKED, Play(ACCOUNT_LOCKED))
        if event.ok:
            return _goto(config, replace(state, wrong_passwords=0), Phase.MAIN)
        wrong = state.wrong_passwords + 1
        if wrong >= config.max_password_attempts:
            locked = replace(state, wrong_passwords=wrong)
            return _end(locked, PASSWORD_LOCKED, LockAccount(state.account), Play(ACCOUNT_LOCKED))
        return _goto(config, replace(state, wrong_passwords=wrong), Phase.PASSWORD, Play(PASSWORD_WRONG))
    if isinstance(event, Balance):
        return _goto(config, state, Phase.MAIN, Play(BALANCE_IS), *say_money(event.amount))
    if isinstance(event, RedeemResult):
        if event.ok:
            credited = say_money(event.amount) if event.amount is not None else ()
            done = replace(state, card="", redeemed=state.redeemed | {state.card})
            return _goto(config, done, Phase.MAIN, Play(RECHARGE_OK), *credited)
        failed = replace(state, card="", card_failures=state.card_failures + 1)
        if failed.card_failures >= config.max_card_failures:
            return _end(failed, CARD_ATTEMPTS, Play(RECHARGE_FAILED), Play(GOODBYE))
        return _goto(config, failed, Phase.MAIN, Play(RECHARGE_FAILED))
    if isinstance(event, PasswordChanged):
        return _goto(
            config, state, Phase.MAIN, Play(PASSWORD_CHANGED if event.ok else PASSWORD_CHANGE_FAILED)
        )
    assert isinstance(event, ToggleResult)
    return _goto(config, state, Phase.MAIN, Play(SETTING_SAVED if event.ok else SETTING_FAILED))
