"""Request and response models of the compliance rules and complaints. The params of each
rule kind have their own model (validated against the kind named in the URL, so a wrong
value is reported under body.params.<field>); thresholds are Decimal, serialised as strings
like money."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from dialplan.compliance import ACTIONS

Action = Literal["notice", "alert", "throttle", "suspend"]
assert set(Action.__args__) == set(ACTIONS)  # type: ignore[attr-defined]
COMPLAINT_CATEGORIES = ("harassment", "robocall", "one_ring", "fraud", "caller_id", "other")
Category = Literal["harassment", "robocall", "one_ring", "fraud", "caller_id", "other"]
# The longest window a monitor may look back over: a year (and a day, for leap years).
MAX_WINDOW_S = 366 * 86400
_HHMM = re.compile(r"^(?:[01][0-9]|2[0-3]):[0-5][0-9]$")
_AMOUNT = re.compile(r"^[0-9]{1,10}(?:\.[0-9]{1,4})?$")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# ------------------------------------------------------------------------ params per kind
class CalleeFrequencyParams(_In):
    # [seconds, max_calls]: at most max_calls calls let through to one callee per `seconds`
    windows: list[tuple[int, int]] = Field(min_length=1, max_length=6)

    @field_validator("windows")
    @classmethod
    def _windows(cls, value: list[tuple[int, int]]) -> list[tuple[int, int]]:
        for seconds, max_calls in value:
            if not 0 < seconds <= MAX_WINDOW_S:
                raise ValueError(f"a window's seconds must be 1 to {MAX_WINDOW_S}, not {seconds}")
            if not 1 <= max_calls <= 1_000_000:
                raise ValueError(f"a window's max_calls must be 1 to 1000000, not {max_calls}")
        spans = [s for s, _ in value]
        if spans != sorted(set(spans)):
            raise ValueError("windows must be in ascending order of seconds, each span once")
        return value


class CallingHoursParams(_In):
    # in the tenant's time zone, [start, end); end before start runs past midnight
    start: str
    end: str

    @field_validator("start")
    @classmethod
    def _start(cls, value: str) -> str:
        if not _HHMM.match(value):
            raise ValueError(f"start must be HH:MM from 00:00 to 23:59, not {value!r}")
        return value

    @field_validator("end")
    @classmethod
    def _end(cls, value: str) -> str:
        if value != "24:00" and not _HHMM.match(value):
            raise ValueError(f"end must be HH:MM from 00:01 to 24:00, not {value!r}")
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> CallingHoursParams:
        if self.start == self.end:
            raise ValueError("end equals start: an empty span (disable the rule instead of no hours)")
        return self


class DailySpendCapParams(_In):
    amount: str  # a decimal string (CNY): exact, never a float

    @field_validator("amount")
    @classmethod
    def _amount(cls, value: str) -> str:
        if not _AMOUNT.match(value) or Decimal(value) <= 0:
            raise ValueError(
                f"amount must be a positive decimal string with at most 4 decimals, not {value!r}"
            )
        return value


class _Window(_In):
    window_s: int = Field(gt=0, le=MAX_WINDOW_S)
    # the pace a throttle allows when the rule's action is "throttle" (10 when absent)
    throttle_per_min: int | None = Field(None, ge=1, le=10_000)


class RobocallParams(_Window):
    max_answer_rate: float = Field(ge=0, le=1)
    max_avg_talk_s: float = Field(ge=0, le=3600)
    min_calls: int = Field(ge=1, le=1_000_000)


class OneRingParams(_Window):
    ring_s: int = Field(gt=0, le=60)
    min_calls: int = Field(ge=1, le=1_000_000)


class FailedRateParams(_Window):
    min_calls: int = Field(ge=1, le=1_000_000)


class AvgDurationParams(_Window):
    min_calls: int = Field(ge=1, le=1_000_000)
    below: bool = True  # the level is reached at or BELOW the threshold


class WindowParams(_Window):
    pass


PARAMS: dict[str, type[_In]] = {
    "callee_frequency": CalleeFrequencyParams,
    "calling_hours": CallingHoursParams,
    "daily_spend_cap": DailySpendCapParams,
    "robocall": RobocallParams,
    "one_ring": OneRingParams,
    "failed_rate": FailedRateParams,
    "avg_duration": AvgDurationParams,
    "call_frequency": WindowParams,
    "numbers_in_use": WindowParams,
    "complaints": WindowParams,
}
# Kinds whose warning/critical are shares of calls, 0..1.
RATIO_KINDS = frozenset({"one_ring", "failed_rate"})


# ------------------------------------------------------------------------ rules
Threshold = Decimal | None


class RuleWrite(_In):
    """The whole rule of one kind (PUT replaces it). `params` are checked against the kind."""

    params: dict[str, Any] = Field(description="the kind's parameters (see README, compliance)")
    warning: Threshold = Field(None, max_digits=14, decimal_places=4, ge=0)
    critical: Threshold = Field(None, max_digits=14, decimal_places=4, ge=0)
    action: Action = "notice"
    enabled: bool = True


class RuleRead(_Out):
    id: int
    tenant_id: int | None
    kind: str
    params: dict[str, Any]
    warning: Decimal | None
    critical: Decimal | None
    action: str
    enabled: bool
    version: int
    updated_at: datetime


class EffectiveRuleRead(RuleRead):
    """A tenant's rule of one kind as the call path and the monitors apply it."""

    source: Literal["tenant", "platform"] = Field(
        description="tenant: the tenant's own row replaces the platform's; platform: the default"
    )


class RuleList(BaseModel):
    items: list[RuleRead]


class EffectiveRuleList(BaseModel):
    items: list[EffectiveRuleRead]


# ------------------------------------------------------------------------ complaints
class ComplaintCreate(_In):
    number: str = Field(pattern=r"^[0-9]{3,20}$", description="the enterprise's caller number complained of")
    callee: str = Field(pattern=r"^[0-9]{3,20}$", description="who complained: the called party")
    category: Category
    occurred_at: AwareDatetime = Field(description="when the complained-of call was made (not in the future)")
    note: str = Field("", max_length=2000)


class ComplaintRead(_Out):
    id: int
    tenant_id: int
    number: str
    callee: str = Field(description="masked (138****8000) for the tenant's own users")
    category: str
    occurred_at: datetime
    note: str
    created_at: datetime
    created_by: int | None


class ComplaintPage(BaseModel):
    items: list[ComplaintRead]
    next_after: int | None = None
