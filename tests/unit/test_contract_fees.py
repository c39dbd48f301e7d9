"""The contracts' fees as arithmetic (rating/fees.py, rating/cycle.py): each test quotes the
clause it checks, from the seed contracts in ../shared/seeds/."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from rating.cycle import prorate_first_month
from rating.fees import (
    annual_minimum_shortfall,
    contract_year,
    contract_year_bounds,
    early_termination,
    one_off_amount,
    renewal_too_short,
    term_months,
    unused_credit_forfeited,
)

D = Decimal


# ---------------------------------------------------------------- seed 000: the platform fee
def test_the_platform_fee_is_due_once_per_contract_year() -> None:
    """Seed 000 §1.3 and §2.3: "企业通信平台 … 年费 … 按合同期 1000元"; "本合同有效期为壹年 …
    续展期与本合同服务期相同": one fee per year of the contract, years counted from its start."""
    start = date(2026, 3, 15)
    assert contract_year(start, date(2026, 3, 15)) == 1
    assert contract_year(start, date(2027, 3, 14)) == 1
    assert contract_year(start, date(2027, 3, 15)) == 2
    assert contract_year_bounds(start, 2) == (date(2027, 3, 15), date(2028, 3, 15))


def test_a_contract_year_of_a_month_end_start_ends_with_the_month() -> None:
    """Seed 000 §2.3: a year from 29 February runs to 27 February (clamped to the month's end)."""
    assert contract_year_bounds(date(2028, 2, 29), 1) == (date(2028, 2, 29), date(2029, 2, 28))
    assert contract_year(date(2028, 2, 29), date(2029, 2, 27)) == 1
    assert contract_year(date(2028, 2, 29), date(2029, 2, 28)) == 2


def test_no_contract_year_before_the_contract() -> None:
    with pytest.raises(ValueError, match="before the contract"):
        contract_year(date(2026, 3, 15), date(2026, 3, 14))


# ---------------------------------------------------------------- seed 000: renewals
@pytest.mark.parametrize(
    ("original", "renewal", "refused"),
    [(12, 12, False), (12, 24, False), (12, 11, True), (12, 6, True), (12, None, False)],
)
def test_a_renewal_is_not_shorter_than_the_original(
    original: int, renewal: int | None, refused: bool
) -> None:
    """Seed 000 §2.4: "续费周期不低于12月" — renewing for less than the original 12 months is
    refused; an open-ended renewal is never shorter."""
    assert renewal_too_short(original, renewal) is refused


def test_a_contract_of_one_year_is_twelve_months() -> None:
    """Seed 000 §2.3: "本合同有效期为壹年" — 1 January to 31 December is the year."""
    assert term_months(date(2026, 1, 1), date(2026, 12, 31)) == 12
    assert term_months(date(2026, 1, 15), date(2027, 1, 14)) == 12
    assert term_months(date(2026, 1, 15), date(2027, 1, 13)) == 11
    assert term_months(date(2026, 1, 1), date(2026, 1, 1)) == 0


# ---------------------------------------------------------------- seed 000: expiry at the end
def test_call_credit_left_at_the_contracts_end_is_forfeited() -> None:
    """Seed 000 §3.10: "甲方所购产品需在服务期限内使用完毕，合同期结束剩余通话时间将清零" and
    §1.1 "所有预付款项均不可退还": what is left is forfeited, what a live call holds is not
    counted, a debt stays owed."""
    assert unused_credit_forfeited(D("123.4500"), D("0")) == D("123.4500")
    assert unused_credit_forfeited(D("10.00"), D("0.60")) == D("9.40")
    assert unused_credit_forfeited(D("-5.00"), D("0")) == D("0")


# ---------------------------------------------------------------- seed 003: annual minimum
@pytest.mark.parametrize(
    ("usage", "due"),
    [(D("0"), D("2000.00")), (D("812.34"), D("1187.66")), (D("2000"), D("0.00")), (D("2500.10"), D("0.00"))],
)
def test_a_contract_year_under_the_minimum_is_topped_up_to_2000(usage: Decimal, due: Decimal) -> None:
    """Seed 003 §4.2: "预存话费：12000元，最低消费：2000元/1年，计费标准为：0.12元/分钟" — a year
    whose calls cost less than 2000 CNY pays the difference; a year at or over it nothing."""
    assert annual_minimum_shortfall(D("2000"), usage) == due


# ---------------------------------------------------------------- seed 001: early termination
@pytest.mark.parametrize(
    ("ended_on", "fee"),
    [
        (date(2026, 1, 20), D("234.00")),  # the application month: the 6 term months
        (date(2026, 2, 1), D("195.00")),  # month 2 (term month 1) paid: 5 left
        (date(2026, 4, 30), D("117.00")),  # month 4: 3 left
        (date(2026, 6, 15), D("39.00")),  # month 6: 1 left
        (date(2026, 7, 1), D("0.00")),  # month 7, the term's last: nothing
        (date(2026, 9, 1), D("0.00")),  # past month 7 the clause does not apply
    ],
)
def test_leaving_before_the_term_pays_the_rent_of_the_months_left(ended_on: date, fee: Decimal) -> None:
    """Seed 001 §6.3: "套餐协议期六个月，不含申请当月。使用未满 6 个月拆机的，补足剩余月份的套餐月租费"
    and §7.2: "违约金金额=套餐月租费乘以剩余协议期（月）… 协议期超过 7 个月的，此条款不适用".
    An A39 (39 CNY/month) applied for on 10 January 2026: the term is February to July."""
    assert early_termination(D("39"), date(2026, 1, 10), ended_on, 6) == fee


def test_a_contract_signed_to_end_within_the_term_owes_no_month_after_its_end() -> None:
    """Seed 001 §7.2 "剩余协议期（月）": the months left of the agreement — for an A39 from
    10 January agreed to end 15 April and terminated on 5 March, only April is left."""
    assert early_termination(D("39"), date(2026, 1, 10), date(2026, 3, 5), 6, date(2026, 4, 15)) == D("39.00")
    assert early_termination(D("39"), date(2026, 1, 10), date(2026, 3, 5), 6, date(2027, 1, 1)) == D("156.00")


def test_a_package_without_a_term_owes_no_early_termination() -> None:
    """Seed 001's tariff: "商企云通彩铃费 6 元/月 … 无协议期" — no term, no fee."""
    assert early_termination(D("6"), date(2026, 1, 10), date(2026, 1, 20), 0) == D("0.00")


def test_a_contract_ended_before_it_started_owes_nothing() -> None:
    """Seed 001 §6.2: "以…实际开通的日期作为起租日" — no rent before the service opened."""
    assert early_termination(D("39"), date(2026, 2, 1), date(2026, 1, 20), 6) == D("0.00")


# ---------------------------------------------------------------- seed 001: one-off fees
@pytest.mark.parametrize(
    ("price", "quantity", "amount"),
    [
        (D("99"), 1, D("99.00")),
        (D("199"), 4, D("796.00")),
        (D("299"), 3, D("897.00")),
        (D("99"), 2, D("198.00")),
    ],
)
def test_one_off_fees_are_the_unit_price_times_the_units(
    price: Decimal, quantity: int, amount: Decimal
) -> None:
    """Seed 001's tariff: "调测费 99 元/次", "语音网关 199 元/路", "SIP 话机 299 元/台",
    "铃音制作费 99 元/次"."""
    assert one_off_amount(price, quantity) == amount


def test_an_order_of_no_units_is_refused() -> None:
    with pytest.raises(ValueError, match="quantity"):
        one_off_amount(D("299"), 0)


# ---------------------------------------------------------------- seed 001: the CRM seat
def test_the_crm_seat_is_prorated_by_day_in_the_month_of_application() -> None:
    """Seed 001's tariff: "商企云通 CRM 坐席费 9 元/月 … 当月按天" — a seat taken on 21 April
    (10 of 30 days) costs 9 × 10 / 30 = 3.00 that month; from 1 May a full 9.00."""
    assert prorate_first_month(D("9"), 0, date(2026, 4, 21)) == (D("3.00"), 0)
    assert prorate_first_month(D("9"), 0, date(2026, 5, 1)) == (D("9.00"), 0)
    assert prorate_first_month(D("9"), 0, date(2026, 1, 31)) == (D("0.29"), 0)  # 9 / 31, half up
