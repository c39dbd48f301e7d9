"""The phone self-service line walked call by call: keys and effect results in, actions out."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ivr import selfservice as ss
from ivr.actions import Collect, Digits, Hangup, Play, SayNumber, Timeout
from ivr.selfservice import (
    Balance,
    ChangePassword,
    CheckPassword,
    EffectFailed,
    GetBalance,
    LockAccount,
    PasswordChanged,
    PasswordResult,
    Phase,
    RedeemCard,
    RedeemResult,
    SelfServiceConfig,
    SelfServiceEvent,
    Step,
    ToggleResult,
    ToggleTimePolicy,
    advance,
    say_money,
    start,
)

CONFIG = SelfServiceConfig()
ACCOUNT = "02158889999"
ASK_ACCOUNT = Collect(ss.ENTER_ACCOUNT, 10000, 20)
ASK_PASSWORD = Collect(ss.ENTER_PASSWORD, 10000, 20)
MAIN = Collect(ss.MAIN_MENU, 5000, 1)


class Call:
    """One call: feeds events and keeps every step, so tests read like the call."""

    def __init__(self, call_id: str = "1700000000.42", config: SelfServiceConfig = CONFIG) -> None:
        self.config = config
        self.steps = [start(config, call_id)]

    @property
    def state(self) -> ss.SelfServiceState:
        return self.steps[-1].state

    def __call__(self, *events: SelfServiceEvent | str) -> tuple[object, ...]:
        """Feed events (a str is keys); return the actions of the last one."""
        for event in events:
            step = advance(self.config, self.state, Digits(event) if isinstance(event, str) else event)
            self.steps.append(step)
        return self.steps[-1].actions

    def all_actions(self) -> list[object]:
        return [a for s in self.steps for a in s.actions]


def logged_in() -> Call:
    call = Call()
    call(ACCOUNT + "#", "123456#", PasswordResult(ok=True))
    assert call.state.phase is Phase.MAIN
    return call


def test_login_with_star_re_entry() -> None:
    call = Call()
    assert call.steps[0] == Step(ss.SelfServiceState("1700000000.42"), (ASK_ACCOUNT,))
    assert call("0215*") == (ASK_ACCOUNT,)  # '*' = re-enter, not a failure
    assert call.state.failures == 0 and call.state.account == ""
    assert call(ACCOUNT + "#") == (ASK_PASSWORD,)
    assert call("12*3") == (ASK_PASSWORD,)
    assert call("123456") == (CheckPassword(ACCOUNT, "123456"),)
    assert call(PasswordResult(ok=True)) == (MAIN,)
    assert "123456" not in repr(call.all_actions())  # passwords stay out of logs


def test_wrong_password_three_times_locks_and_hangs_up() -> None:
    call = Call()
    call(ACCOUNT + "#", "111111#")
    assert call(PasswordResult(ok=False)) == (Play(ss.PASSWORD_WRONG), ASK_PASSWORD)
    call("222222#")
    assert call(PasswordResult(ok=False)) == (Play(ss.PASSWORD_WRONG), ASK_PASSWORD)
    call("333333#")
    assert call(PasswordResult(ok=False)) == (
        LockAccount(ACCOUNT),
        Play(ss.ACCOUNT_LOCKED),
        Hangup("password_locked"),
    )
    assert call.state.phase is Phase.ENDED
    with pytest.raises(ValueError, match="already ended"):
        call("1")


def test_an_account_already_locked_hangs_up_without_locking_again() -> None:
    call = Call()
    call(ACCOUNT + "#", "123456#")
    assert call(PasswordResult(ok=False, locked=True)) == (Play(ss.ACCOUNT_LOCKED), Hangup("account_locked"))


def test_wrong_password_limit_is_configurable() -> None:
    call = Call(config=SelfServiceConfig.parse({"max_password_attempts": 1}))
    call(ACCOUNT + "#", "111111#")
    assert LockAccount(ACCOUNT) in call(PasswordResult(ok=False))


def test_balance_is_said_in_yuan_and_fen() -> None:
    call = logged_in()
    assert call("1") == (GetBalance(ACCOUNT),)
    assert call(Balance(Decimal("123.45"))) == (
        Play(ss.BALANCE_IS),
        SayNumber(123),
        Play(ss.YUAN),
        SayNumber(45),
        Play(ss.FEN),
        MAIN,
    )


@pytest.mark.parametrize(
    ("amount", "said"),
    [
        ("0", (SayNumber(0), Play(ss.YUAN))),
        ("100.00", (SayNumber(100), Play(ss.YUAN))),
        ("0.05", (SayNumber(0), Play(ss.YUAN), SayNumber(5), Play(ss.FEN))),
        ("12.3456", (SayNumber(12), Play(ss.YUAN), SayNumber(35), Play(ss.FEN))),
        ("-3.10", (Play(ss.OWING), SayNumber(3), Play(ss.YUAN), SayNumber(10), Play(ss.FEN))),
    ],
)
def test_say_money(amount: str, said: tuple[object, ...]) -> None:
    assert say_money(Decimal(amount)) == said


def test_say_money_refuses_nan() -> None:
    with pytest.raises(ValueError, match="cannot say"):
        say_money(Decimal("NaN"))


def test_same_card_twice_in_one_call_is_redeemed_once() -> None:
    call = logged_in()
    assert call("2") == (Collect(ss.ENTER_CARD, 10000, 20),)
    assert call("5000111122223333#") == (Collect(ss.ENTER_CARD_PIN, 10000, 20),)
    key = "ivr-recharge:1700000000.42:5000111122223333"
    assert call("987654#") == (RedeemCard(ACCOUNT, "5000111122223333", "987654", key),)
    assert call(RedeemResult(ok=True, amount=Decimal("50.00"))) == (
        Play(ss.RECHARGE_OK),
        SayNumber(50),
        Play(ss.YUAN),
        MAIN,
    )
    call("2")
    assert call("5000111122223333#") == (Play(ss.CARD_ALREADY_REDEEMED), MAIN)
    redeems = [a for a in call.all_actions() if isinstance(a, RedeemCard)]
    assert len(redeems) == 1
    assert "987654" not in repr(redeems)


def test_a_failed_card_may_be_retried_with_the_same_key() -> None:
    call = logged_in()
    call("2", "5000111122223333#", "000000#")
    assert call(RedeemResult(ok=False, reason="wrong_pin")) == (Play(ss.RECHARGE_FAILED), MAIN)
    call("2", "5000111122223333#")
    (redeem,) = call("987654#")
    assert isinstance(redeem, RedeemCard)
    assert redeem.idempotency_key == ss.idempotency_key("1700000000.42", "5000111122223333")


def test_too_many_failed_cards_hang_up() -> None:
    call = logged_in()
    for _ in range(2):
        call("2", "5000111122223333#", "000000#", RedeemResult(ok=False, reason="wrong_pin"))
    call("2", "5000111122224444#", "000000#")
    assert call(RedeemResult(ok=False, reason="used")) == (
        Play(ss.RECHARGE_FAILED),
        Play(ss.GOODBYE),
        Hangup("card_attempts_exceeded"),
    )


def test_change_password_mismatch_then_match() -> None:
    call = logged_in()
    assert call("3") == (Collect(ss.ENTER_NEW_PASSWORD, 10000, 20),)
    assert call("12345#") == (Play(ss.PASSWORD_RULE), Collect(ss.ENTER_NEW_PASSWORD, 10000, 20))
    assert call("654321#") == (Collect(ss.CONFIRM_NEW_PASSWORD, 10000, 20),)
    assert call("654322#") == (Play(ss.PASSWORD_MISMATCH), Collect(ss.ENTER_NEW_PASSWORD, 10000, 20))
    assert call.state.new_password == ""
    call("654321#")
    assert call("654321#") == (ChangePassword(ACCOUNT, "654321"),)
    assert call(PasswordChanged(ok=True)) == (Play(ss.PASSWORD_CHANGED), MAIN)
    assert "654321" not in repr(call.steps)


def test_change_password_mismatches_count_as_failures() -> None:
    call = logged_in()
    call("3")
    for _ in range(3):
        call("654321#", "111111#")
    assert call("654321#", "111111#")[-1] == Hangup("ivr_no_input")


def test_nine_asks_for_another_account() -> None:
    call = logged_in()
    assert call("9") == (ASK_ACCOUNT,)
    assert call.state.account == ""
    call("02158880000#", "654321#")
    assert call.steps[-1].actions == (CheckPassword("02158880000", "654321"),)


def test_star_repeats_the_main_menu_and_invalid_keys_retry_then_hang_up() -> None:
    call = logged_in()
    assert call("*") == (MAIN,)
    assert call("7") == (Play(ss.INVALID_CHOICE), MAIN)
    assert call(Timeout()) == (Play(ss.NO_INPUT_PROMPT), MAIN)
    assert call("#") == (Play(ss.INVALID_CHOICE), MAIN)
    assert call(Timeout()) == (Play(ss.GOODBYE), Hangup("ivr_no_input"))


def test_account_timeouts_then_hang_up() -> None:
    call = Call()
    call(Timeout(), "", "12a#")
    assert call.steps[-1].actions == (Play(ss.INVALID_ENTRY), ASK_ACCOUNT)
    assert call(Timeout()) == (Play(ss.GOODBYE), Hangup("ivr_no_input"))


def test_supplementary_toggles_the_time_policy() -> None:
    call = logged_in()
    assert call("4") == (Collect(ss.SUPPLEMENTARY_MENU, 5000, 1),)
    assert call("1") == (Collect(ss.TIME_POLICY_ON_OFF, 5000, 1),)
    assert call("2") == (ToggleTimePolicy(ACCOUNT, on=False),)
    assert call(ToggleResult(ok=True)) == (Play(ss.SETTING_SAVED), MAIN)
    call("4", "1", "1")
    assert call.steps[-1].actions == (ToggleTimePolicy(ACCOUNT, on=True),)
    assert call(ToggleResult(ok=False)) == (Play(ss.SETTING_FAILED), MAIN)
    assert call("4", "*") == (MAIN,)


def test_a_failed_effect_fails_closed() -> None:
    call = Call()
    call(ACCOUNT + "#", "123456#")
    assert call(EffectFailed("db timeout")) == (Play(ss.SERVICE_UNAVAILABLE), Hangup("service_unavailable"))


def test_unexpected_events_are_adapter_bugs() -> None:
    call = Call()
    with pytest.raises(ValueError, match="phase 'account' does not expect Balance"):
        call(Balance(Decimal(1)))
    call(ACCOUNT + "#", "123456#")
    with pytest.raises(ValueError, match="phase 'checking_password' does not expect Digits"):
        call("1")


def test_config_parse_refuses_bad_settings() -> None:
    assert SelfServiceConfig.parse({}) == SelfServiceConfig()
    with pytest.raises(ValueError, match="'retries' must be an integer from 0 to 10"):
        SelfServiceConfig.parse({"retries": -1})
    with pytest.raises(ValueError, match="unknown self-service setting 'retry'"):
        SelfServiceConfig.parse({"retry": 2})
    with pytest.raises(ValueError, match="'password_min' is above"):
        SelfServiceConfig.parse({"password_min": 13})


def test_prompts_are_listed_once_each() -> None:
    assert len(set(ss.PROMPTS)) == len(ss.PROMPTS) == 29
    assert all(p.startswith("selfservice/") for p in ss.PROMPTS)
    assert all(p in (ss.__doc__ or "") for p in ss.PROMPTS)
