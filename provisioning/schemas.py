"""Request and response models of the provisioning API. Field names are column names.
Money is Decimal (serialised as a string); ID numbers are masked on read."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    computed_field,
    field_validator,
    model_validator,
)

from dialplan.time_policy import DEFAULT_TIMEZONE

Digits = Field(pattern=r"^[0-9]+$")
# The largest id the API accepts: ids beyond it are not ours, and not representable in JSON
# clients (a double holds integers exactly up to 2**53).
MAX_ID = 2**53


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


def _check_tz(value: str | None) -> str | None:
    if value is None:
        return value
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (use an IANA name like Asia/Shanghai)") from None
    return value


# ------------------------------------------------------------------------------ tenants
EntityKind = Literal["company", "sole_trader"]
IdKind = Literal["resident_id", "passport", "hk_macao_permit", "taiwan_permit"]
RecordingPolicy = Literal["all", "inbound", "outbound", "none", "on_demand"]


class TenantCreate(_In):
    name: str = Field(min_length=1, max_length=200)
    timezone: str = DEFAULT_TIMEZONE
    credit_code: str | None = Field(None, pattern=r"^[0-9A-HJ-NPQRTUWXY]{18}$")
    entity_kind: EntityKind = "company"
    legal_person_name: str = Field("", max_length=100)
    legal_person_id_kind: IdKind = "resident_id"
    legal_person_id_number: str = Field("", pattern=r"^[0-9A-Za-z]{0,30}$")
    business_category: str = Field("general", pattern=r"^[a-z_]{2,40}$")
    after_sales_line: bool = False
    emergency_contact_name: str = Field("", max_length=100)
    emergency_contact_phone: str = Field("", pattern=r"^[0-9]{0,20}$")
    paid_at: datetime | None = None

    _tz = field_validator("timezone")(_check_tz)


class TenantUpdate(_In):
    name: str | None = Field(None, min_length=1, max_length=200)
    timezone: str | None = None
    credit_code: str | None = Field(None, pattern=r"^[0-9A-HJ-NPQRTUWXY]{18}$")
    entity_kind: EntityKind | None = None
    legal_person_name: str | None = Field(None, max_length=100)
    legal_person_id_kind: IdKind | None = None
    legal_person_id_number: str | None = Field(None, pattern=r"^[0-9A-Za-z]{0,30}$")
    business_category: str | None = Field(None, pattern=r"^[a-z_]{2,40}$")
    after_sales_line: bool | None = None
    emergency_contact_name: str | None = Field(None, max_length=100)
    emergency_contact_phone: str | None = Field(None, pattern=r"^[0-9]{0,20}$")
    paid_at: datetime | None = None
    outbound_cli_policy: Literal["replace", "refuse"] | None = None
    # The phone self-service line's password (6-12 digits); kept only hashed.
    selfservice_password: str | None = Field(None, pattern=r"^[0-9]{6,12}$")
    # Call recording: the policy, whether callers hear that calls are recorded, retention.
    recording_policy: RecordingPolicy | None = None
    recording_announce: bool | None = None
    recording_retention_days: int | None = Field(None, ge=1, le=3650)
    # Voicemail messages: kept this many whole local days after the day they came in.
    voicemail_retention_days: int | None = Field(None, ge=1, le=3650)

    _tz = field_validator("timezone")(_check_tz)


class TenantRead(_Out):
    id: int
    name: str
    state: str
    timezone: str
    credit_code: str | None
    entity_kind: str
    legal_person_name: str
    legal_person_id_kind: str
    legal_person_id_number: str
    business_category: str
    after_sales_line: bool
    emergency_contact_name: str
    emergency_contact_phone: str
    paid_at: datetime | None
    suspended_at: datetime | None
    terminated_at: datetime | None
    outbound_cli_policy: str
    recording_policy: str = "none"
    recording_announce: bool = True
    recording_retention_days: int = 30
    voicemail_retention_days: int = 30
    version: int
    created_at: datetime


class DocumentCreate(_In):
    kind: Literal[
        "business_licence",
        "legal_person_id",
        "signed_contract",
        "anti_fraud_commitment",
        "phone_bill_proof",
        "destination_real_name_commitment",
        "holding_id_photo",
        "industry_licence",
    ]
    status: Literal["missing", "submitted"] = "missing"
    reference: str = Field("", max_length=500)
    note: str = Field("", max_length=500)


class DocumentUpdate(_In):
    status: Literal["missing", "submitted", "approved", "rejected"] | None = None
    reference: str | None = Field(None, max_length=500)
    note: str | None = Field(None, max_length=500)


class DocumentRead(_Out):
    id: int
    tenant_id: int
    kind: str
    status: str
    due_at: datetime | None
    reference: str
    note: str
    version: int
    updated_at: datetime


# ------------------------------------------------------------------------------ numbers
NumberKind = Literal["unified_400", "unified_95", "did", "caller_id"]


class NumberCreate(_In):
    number: str = Field(pattern=r"^[0-9]{3,20}$")
    kind: NumberKind


Distribution = Literal["sequential", "simultaneous", "round_robin", "longest_idle", "weighted"]


class NumberRoutingUpdate(_In):
    """How a unified number routes (its life cycle has its own actions)."""

    distribution: Distribution | None = None
    time_policy_id: int | None = Field(None, ge=1)
    region_policy_id: int | None = Field(None, ge=1)
    greeting_prompt: str | None = Field(None, pattern=r"^[a-z0-9/_-]{0,80}$")
    caller_id_mode: Literal["caller", "unified"] | None = None
    whisper: bool | None = None
    final_action: Literal["hangup", "voicemail", "missed_call"] | None = None
    recording_policy: RecordingPolicy | None = Field(None, description="null: the tenant's policy")


class NumberRead(_Out):
    id: int
    number: str
    kind: str
    tenant_id: int | None
    state: str
    distribution: str
    time_policy_id: int | None
    region_policy_id: int | None
    greeting_prompt: str
    caller_id_mode: str
    whisper: bool
    final_action: str
    recording_policy: str | None = None
    approved_at: datetime | None
    released_at: datetime | None
    available_after: datetime | None
    version: int
    created_at: datetime


class BindingCreate(_In):
    number_id: int = Field(ge=1)
    destination: str = Field(pattern=r"^[0-9]{2,20}$")
    kind: Literal["mobile", "fixed", "extension", "pbx"] = "mobile"
    position: int = Field(0, ge=0, le=1000)
    ring_timeout_s: int = Field(30, ge=5, le=300)
    owner_name: str = Field(min_length=1, max_length=100)
    owner_id_number: str = Field(pattern=r"^[0-9A-Za-z]{6,30}$")
    group_name: str = Field("default", pattern=r"^[a-z0-9_-]{1,40}$")
    weight: int = Field(1, ge=1, le=1000)


class BindingUpdate(_In):
    destination: str | None = Field(None, pattern=r"^[0-9]{2,20}$")
    kind: Literal["mobile", "fixed", "extension", "pbx"] | None = None
    position: int | None = Field(None, ge=0, le=1000)
    ring_timeout_s: int | None = Field(None, ge=5, le=300)
    owner_name: str | None = Field(None, min_length=1, max_length=100)
    owner_id_number: str | None = Field(None, pattern=r"^[0-9A-Za-z]{6,30}$")
    group_name: str | None = Field(None, pattern=r"^[a-z0-9_-]{1,40}$")
    weight: int | None = Field(None, ge=1, le=1000)


class BindingRead(_Out):
    id: int
    tenant_id: int | None
    number_id: int
    destination: str
    kind: str
    position: int
    ring_timeout_s: int
    owner_name: str
    owner_id_number: str
    group_name: str
    weight: int
    version: int


# ------------------------------------------------------------------------------ SIP
class ExtensionCreate(_In):
    extension: str = Field(pattern=r"^[0-9]{2,6}$")
    display_name: str = Field("", max_length=80, pattern=r'^[^"<>\\\r\n]*$')
    site: str = Field("main", pattern=r"^[a-z0-9_-]{1,40}$")
    device_kind: Literal["phone", "gateway", "pbx"] = "phone"
    fax_allowed: bool = False
    # a customer's PBX trunk (device_kind pbx): the extensions behind it and its channels
    range_first: str | None = Field(
        None, pattern=r"^[0-9]{2,6}$", description="pbx: first extension behind it"
    )
    range_last: str | None = Field(None, pattern=r"^[0-9]{2,6}$", description="pbx: last extension behind it")
    channels: int | None = Field(None, ge=1, le=1000, description="pbx: its own channel cap (trunk modules)")
    password: str = Field(min_length=10, max_length=128, pattern=r"^[\x21-\x7e]+$")
    outbound_caller_id: str = Field("", pattern=r"^[0-9]{0,20}$")
    recording_policy: RecordingPolicy | None = Field(None, description="null: the tenant's policy")


class ExtensionUpdate(_In):
    display_name: str | None = Field(None, max_length=80, pattern=r'^[^"<>\\\r\n]*$')
    site: str | None = Field(None, pattern=r"^[a-z0-9_-]{1,40}$")
    device_kind: Literal["phone", "gateway"] | None = None
    fax_allowed: bool | None = None
    password: str | None = Field(None, min_length=10, max_length=128, pattern=r"^[\x21-\x7e]+$")
    outbound_caller_id: str | None = Field(None, pattern=r"^[0-9]{0,20}$")
    recording_policy: RecordingPolicy | None = Field(None, description="null: the tenant's policy")


class ExtensionRead(_Out):
    id: int
    tenant_id: int
    extension: str
    display_name: str
    site: str
    device_kind: str
    fax_allowed: bool
    range_first: str | None = None
    range_last: str | None = None
    channels: int = 0
    endpoint_id: str = Field(description="the SIP username the device registers with")
    realm: str
    outbound_caller_id: str
    recording_policy: str | None = None
    version: int
    created_at: datetime


# ------------------------------------------------------------------------------ packages
class PackageCreate(_In):
    code: str = Field(pattern=r"^[A-Za-z0-9_-]{1,40}$")
    name: str = Field(min_length=1, max_length=200)
    kind: Literal[
        "line",
        "extension_module",
        "combined",
        "trunk",
        "platform",
        "prestored",
        "unified_400",
        "addon",
    ]
    monthly_rent: Decimal = Field(Decimal(0), ge=0, max_digits=12, decimal_places=2)
    caller_id_numbers: int = Field(0, ge=0, le=1000)
    channels: int = Field(0, ge=0, le=1000)
    extensions: int = Field(0, ge=0, le=10000)
    included_minutes: int = Field(0, ge=0, le=10_000_000)
    overage_rate: Decimal = Field(Decimal(0), ge=0, max_digits=10, decimal_places=4)
    first_increment_s: int = Field(60, ge=1, le=3600)
    increment_s: int = Field(60, ge=1, le=3600)
    split_billing: bool = False
    min_term_months: int = Field(0, ge=0, le=120)
    period_months: int = Field(1, ge=1, le=120)
    package_total: Decimal | None = Field(None, ge=0, max_digits=12, decimal_places=2)
    annual_fee: Decimal | None = Field(None, ge=0, max_digits=12, decimal_places=2)
    prestored_amount: Decimal | None = Field(None, ge=0, max_digits=12, decimal_places=2)
    annual_minimum: Decimal | None = Field(None, ge=0, max_digits=12, decimal_places=2)
    active: bool = True
    note: str = Field("", max_length=500)


class PackageUpdate(_In):
    name: str | None = Field(None, min_length=1, max_length=200)
    monthly_rent: Decimal | None = Field(None, ge=0, max_digits=12, decimal_places=2)
    included_minutes: int | None = Field(None, ge=0, le=10_000_000)
    overage_rate: Decimal | None = Field(None, ge=0, max_digits=10, decimal_places=4)
    active: bool | None = None
    note: str | None = Field(None, max_length=500)


class PackageRead(_Out):
    id: int
    code: str
    name: str
    kind: str
    monthly_rent: Decimal
    caller_id_numbers: int
    channels: int
    extensions: int
    included_minutes: int
    overage_rate: Decimal
    first_increment_s: int
    increment_s: int
    split_billing: bool
    min_term_months: int
    period_months: int
    package_total: Decimal | None
    annual_fee: Decimal | None
    prestored_amount: Decimal | None
    annual_minimum: Decimal | None
    active: bool
    note: str
    version: int


class SubscriptionCreate(_In):
    package_id: int = Field(ge=1)
    starts_on: date
    ends_on: date | None = None


class SubscriptionUpdate(_In):
    ends_on: date | None = None
    state: Literal["active", "suspended", "ended"] | None = None


class SubscriptionRead(_Out):
    id: int
    tenant_id: int
    package_id: int
    starts_on: date
    ends_on: date | None
    state: str
    version: int
    created_at: datetime


# ------------------------------------------------------------------------------ policies
_POLICY_DEFINITION = (
    "A time policy: weekly, holidays ([date] or [{date, name}]), holiday_target, workdays, "
    "exceptions, default. A region policy: rules [{province, city, action, group}], unknown, "
    "default; provinces and cities in Chinese or in English as the geocoder spells them are "
    "saved as the Chinese names calls are matched on ('Shanghai' -> '上海'), and a name that "
    "could never match is a 422 naming it (loc ... definition, rules, <i>, province)."
)


class PolicyCreate(_In):
    name: str = Field(min_length=1, max_length=100)
    enabled: bool = True
    definition: dict[str, Any] = Field(description=_POLICY_DEFINITION)


class PolicyUpdate(_In):
    name: str | None = Field(None, min_length=1, max_length=100)
    enabled: bool | None = None
    definition: dict[str, Any] | None = Field(None, description=_POLICY_DEFINITION)


class PolicyRead(_Out):
    id: int
    tenant_id: int
    name: str
    enabled: bool
    definition: dict[str, Any]
    version: int


class MenuCreate(_In):
    name: str = Field(min_length=1, max_length=100)
    definition: dict[str, Any]


class MenuUpdate(_In):
    name: str | None = Field(None, min_length=1, max_length=100)
    definition: dict[str, Any] | None = None


class MenuRead(_Out):
    id: int
    tenant_id: int
    name: str
    definition: dict[str, Any]
    version: int


class BlacklistCreate(_In):
    pattern: str = Field(pattern=r"^([0-9]{1,20}|anonymous)$")
    match_kind: Literal["exact", "prefix"] = "exact"
    direction: Literal["inbound", "outbound", "both"] = "inbound"
    note: str = Field("", max_length=200)


class BlacklistUpdate(_In):
    note: str | None = Field(None, max_length=200)


class BlacklistRead(_Out):
    id: int
    tenant_id: int | None
    pattern: str
    match_kind: str
    direction: str
    note: str
    version: int
    created_at: datetime


class PinCreate(_In):
    number_id: int = Field(ge=1)
    pin: str = Field(pattern=r"^[0-9]{4,8}$")
    enabled: bool = True
    max_attempts: int = Field(3, ge=1, le=10)


class PinUpdate(_In):
    pin: str | None = Field(None, pattern=r"^[0-9]{4,8}$")
    enabled: bool | None = None
    max_attempts: int | None = Field(None, ge=1, le=10)


class PinRead(_Out):
    id: int
    tenant_id: int
    number_id: int
    enabled: bool
    max_attempts: int
    version: int


# ------------------------------------------------------------------------------ customers (CRM)
PHONE_REGION = "CN"  # numbers written without a country code are Chinese


def e164(value: str) -> str:
    """A phone number as E.164 ("138 0013 8000" -> "+8613800138000"); ValueError if it is
    not a valid number (phonenumbers, default region CN)."""
    text = value.strip()
    try:
        parsed = phonenumbers.parse(text, PHONE_REGION)
    except phonenumbers.NumberParseException:
        raise ValueError(f"not a phone number: {text!r}") from None
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError(f"not a valid phone number: {text!r}")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _phones(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    out: list[str] = []
    for v in value:
        if not v.strip():
            continue
        n = e164(v)
        if n not in out:
            out.append(n)
    return out


def _tags(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    out: list[str] = []
    for v in value:
        t = v.strip()
        if not t:
            continue
        if len(t) > 30 or "," in t:
            raise ValueError(f"a tag has at most 30 characters and no comma: {t!r}")
        if t not in out:
            out.append(t)
    return out


_EMAIL = r"^([^@\s]{1,64}@[^@\s]{1,188}\.[^@\s]{1,63})?$"


class CustomerCreate(_In):
    name: str = Field(min_length=1, max_length=100)
    company: str = Field("", max_length=200)
    phones: list[str] = Field(
        default_factory=list, max_length=10, description="any notation; stored as E.164 (default region CN)"
    )
    email: str = Field("", max_length=254, pattern=_EMAIL)
    tags: list[str] = Field(default_factory=list, max_length=20)

    _p = field_validator("phones")(_phones)
    _t = field_validator("tags")(_tags)


class CustomerUpdate(_In):
    name: str | None = Field(None, min_length=1, max_length=100)
    company: str | None = Field(None, max_length=200)
    phones: list[str] | None = Field(None, max_length=10)
    email: str | None = Field(None, max_length=254, pattern=_EMAIL)
    tags: list[str] | None = Field(None, max_length=20)

    _p = field_validator("phones")(_phones)
    _t = field_validator("tags")(_tags)


class CustomerRead(_Out):
    id: int
    tenant_id: int
    name: str
    company: str
    phones: list[str] = Field(description="E.164")
    email: str
    tags: list[str]
    version: int
    created_at: datetime
    updated_at: datetime


class CustomerNoteCreate(_In):
    customer_id: int = Field(ge=1, le=MAX_ID)
    body: str = Field(min_length=1, max_length=2000)


class CustomerNoteRead(_Out):
    id: int
    tenant_id: int
    customer_id: int
    body: str
    author: str = Field(description="who wrote it (username)")
    version: int
    created_at: datetime


class ClickToDialCreate(_In):
    number: str = Field(min_length=3, max_length=40, description="the customer's number, any notation")
    extension: str | None = Field(
        None, pattern=r"^[0-9]{2,6}$", description="the agent's extension; none: the user's own"
    )
    customer_id: int | None = Field(None, ge=1, le=MAX_ID)


class ClickToDialRead(BaseModel):
    call_id: str = Field(description="the call's id (its linkedid in the call records)")
    state: str = Field(
        description="ringing_agent, calling_customer, connected, ended, agent_no_answer, refused, failed"
    )
    reason: str = Field("", description="the call path's reason code (ROUTED, NO_BALANCE, ...)")
    extension: str
    number: str = Field(description="E.164")
    dialled: str = Field(description="what the outbound path dials")
    caller_id: str = Field("", description="what the customer is shown (the enterprise's number)")
    requested_at: datetime
    answered_at: datetime | None = None
    ended_at: datetime | None = None


# ------------------------------------------------------------------------------ trunks
class TrunkCreate(_In):
    name: str = Field(pattern=r"^[a-z0-9_-]{2,40}$")
    kind: Literal["carrier", "customer_pbx"] = "carrier"
    tenant_id: int | None = Field(None, ge=1)
    host: str = Field(pattern=r"^[A-Za-z0-9.-]{1,253}$")
    port: int = Field(5060, ge=1, le=65535)
    channels: int = Field(30, ge=1, le=10000)
    enabled: bool = True


class TrunkUpdate(_In):
    host: str | None = Field(None, pattern=r"^[A-Za-z0-9.-]{1,253}$")
    port: int | None = Field(None, ge=1, le=65535)
    channels: int | None = Field(None, ge=1, le=10000)
    enabled: bool | None = None


class TrunkRead(_Out):
    id: int
    tenant_id: int | None
    name: str
    kind: str
    host: str
    port: int
    channels: int
    enabled: bool
    version: int


class TrunkRouteCreate(_In):
    trunk_id: int = Field(ge=1)
    prefix: str = Field("", pattern=r"^[0-9]{0,20}$")
    priority: int = Field(100, ge=0, le=10000)
    weight: int = Field(100, ge=1, le=10000)


class TrunkRouteUpdate(_In):
    prefix: str | None = Field(None, pattern=r"^[0-9]{0,20}$")
    priority: int | None = Field(None, ge=0, le=10000)
    weight: int | None = Field(None, ge=1, le=10000)


class TrunkRouteRead(_Out):
    id: int
    trunk_id: int
    prefix: str
    priority: int
    weight: int
    version: int


# ------------------------------------------------------------------------------ users
Roles = Literal["platform_admin", "operator_staff", "tenant_admin", "tenant_readonly"]


_PASSWORD = Field(
    None,
    min_length=10,
    max_length=200,
    description="the web portal's login password (kept only as an argon2id hash); "
    "setting it ends the user's portal sessions and lifts a lockout",
)


class UserCreate(_In):
    username: str = Field(pattern=r"^[a-z0-9_.@-]{3,64}$")
    display_name: str = Field("", max_length=100)
    role: Roles
    tenant_id: int | None = Field(None, ge=1)
    password: SecretStr | None = _PASSWORD


class UserUpdate(_In):
    display_name: str | None = Field(None, max_length=100)
    disabled: bool | None = None
    password: SecretStr | None = _PASSWORD


class UserRead(_Out):
    id: int
    username: str
    display_name: str
    role: str
    tenant_id: int | None
    disabled: bool
    version: int
    created_at: datetime
    locked_until: datetime | None = Field(None, description="portal logins refused until then")


class TokenCreate(_In):
    name: str = Field("", max_length=100)
    expires_at: datetime | None = None


class TokenRead(_Out):
    id: int
    user_id: int
    name: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class TokenIssued(TokenRead):
    token: str = Field(description="shown once; only its SHA-256 is kept")


# ------------------------------------------------------------------------------ money and calls
class AccountRead(_Out):
    """The tenant's prepaid account as the call path sees it (money in CNY)."""

    tenant_id: int
    balance: Decimal = Field(description="money on the account; negative: a debt")
    credit_limit: Decimal = Field(description="how far below zero calls may take the balance")
    reserved: Decimal = Field(description="money held by reservations of calls in progress")
    available: Decimal = Field(
        description="what new calls may still reserve: balance - reserved + credit_limit"
    )
    channel_cap: int = Field(description="simultaneous calls the package allows")
    channels_in_use: int = Field(description="calls holding a channel now (open reservations)")
    included_seconds_left: int = Field(description="the package's included seconds left this period")
    included_reserved_s: int = Field(description="of those, seconds held by calls in progress")
    included_seconds_free: int = Field(description="included seconds new calls may use: left - reserved")
    included_minutes_free: int = Field(description="included_seconds_free in whole minutes (rounded down)")
    allowance_month: date | None = Field(description="the month (its 1st) the included allowance is for")
    rate_per_minute: Decimal = Field(description="the rate beyond the included minutes")
    first_increment_s: int
    increment_s: int
    currency: str
    version: int

    @model_validator(mode="before")
    @classmethod
    def _derived(cls, data: Any) -> Any:
        """From an accounts row: what is available and what is free, computed (exactly)."""
        if not isinstance(data, Mapping):
            return data
        out = dict(data)
        if {"balance", "reserved", "credit_limit"} <= out.keys():
            out.setdefault("available", out["balance"] - out["reserved"] + out["credit_limit"])
        if {"included_seconds_left", "included_reserved_s"} <= out.keys():
            free = max(out["included_seconds_left"] - out["included_reserved_s"], 0)
            out.setdefault("included_seconds_free", free)
            out.setdefault("included_minutes_free", free // 60)
        return out


class RechargeCreate(_In):
    amount: Decimal = Field(gt=0, le=Decimal("1000000"), max_digits=12, decimal_places=2)
    reference: str = Field("", max_length=200)


_BILLED_LEG = (
    "which part of the call the enterprise is charged for: 'call', the whole call from its "
    "answer; 'forwarded' (split billing, 400/4008 numbers of a split-billing package), the "
    "forwarded leg from a bound destination's answer, the caller paying their own local "
    "access; null until settled"
)


class CallCharge(BaseModel):
    """A call entry's call on the statement: the enterprise's part of it."""

    billed_leg: Literal["call", "forwarded"] | None = Field(description=_BILLED_LEG)
    billsec: int | None = Field(description="seconds the enterprise is charged for")
    talk_s: int | None = Field(description="the caller's talk: answer to end")
    minutes: int | None = Field(description="billsec as started minutes")


class LedgerRead(_Out):
    id: int
    tenant_id: int
    kind: str
    amount: Decimal
    balance_after: Decimal
    reference: str
    idempotency_key: str | None
    created_at: datetime
    call: CallCharge | None = Field(
        None, description="for a call entry on the statement: the call's charged part"
    )


class CallRead(_Out):
    id: int
    linkedid: str
    tenant_id: int | None
    number_id: int | None
    caller: str
    called: str
    action: str
    reason: str
    destinations: list[str]
    decided_at: datetime
    answered_at: datetime | None
    ended_at: datetime | None
    hangup_cause: int | None
    direction: str = Field(description="inbound, outbound or internal")
    why: str = Field(
        description="the decision's detail: how the group was chosen ('weekly', 'holiday', "
        "'weekly+region' ...), or what closed the call ('holiday: 2026-10-01 国庆节', "
        "'after hours: mon 09:00-18:00')"
    )
    forwarded_answered_at: datetime | None = Field(
        None, description="when a bound destination answered: the forwarded leg's start"
    )
    billed_leg: Literal["call", "forwarded"] | None = Field(None, description=_BILLED_LEG)
    billsec: int | None = Field(
        description="seconds of talk the enterprise is charged for (set at settlement): the "
        "forwarded leg's with billed_leg 'forwarded', else the whole call's"
    )
    billable_s: int | None = Field(description="billsec rounded up to the tariff's increments")
    minutes: int | None = Field(None, description="billable_s as started minutes")
    included_used_s: int | None = Field(
        description="of those, seconds taken from the package's included minutes"
    )
    amount: Decimal | None = Field(description="the call's charge (CNY), rounded once; null until settled")
    settled_at: datetime | None
    voicemail_outcome: Literal["stored", "empty", "missing"] | None = Field(
        None, description="the call went to voicemail: a message (stored), no audio (empty), none (missing)"
    )
    voicemail_id: int | None = Field(None, description="the message it left (GET .../voicemail/{id})")

    @computed_field(description="the caller's talk: answer to end, whole seconds; null until ended")  # type: ignore[prop-decorator]
    @property
    def talk_s(self) -> int | None:
        if self.answered_at is None or self.ended_at is None:
            return None
        return max(int((self.ended_at - self.answered_at).total_seconds()), 0)


class NoticeRead(_Out):
    """A notice the platform wrote for the tenant (outbox): low balance, package nearly used,
    contract expiring, suspended, resumed, terminated; ``payload`` holds its figures."""

    id: int
    tenant_id: int | None
    kind: str
    dedupe_key: str | None
    payload: dict[str, Any]
    created_at: datetime
    delivered_at: datetime | None

    @field_validator("payload", mode="before")
    @classmethod
    def _json_text(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value


class AuditRead(_Out):
    id: int
    at: datetime
    actor: str
    tenant_id: int | None
    entity: str
    entity_id: str
    action: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None

    @field_validator("before", "after", mode="before")
    @classmethod
    def _json_text(cls, value: Any) -> Any:
        # Entries written through a jsonb codec before the fix hold the JSON as a string.
        return json.loads(value) if isinstance(value, str) else value


# ------------------------------------------------------------------------------ recharge cards
class CardBatchCreate(_In):
    count: int = Field(ge=1, le=10000)
    face_value: Decimal = Field(gt=0, le=Decimal("100000"), max_digits=12, decimal_places=2)
    expires_at: datetime = Field(description="with a UTC offset; must be in the future")
    note: str = Field("", max_length=500)

    @field_validator("expires_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("expires_at needs a UTC offset, e.g. 2027-01-01T00:00:00+08:00")
        return value


class CardBatchRead(_Out):
    id: int
    created_at: datetime
    created_by: str
    count: int
    face_value: Decimal
    expires_at: datetime
    note: str
    unused: int = Field(0, description="cards not redeemed (expired ones included)")
    redeemed: int = 0
    void: int = 0


class IssuedCard(BaseModel):
    card_number: str
    pin: str = Field(description="shown once; only a salted SHA-256 is kept")


class CardBatchIssued(CardBatchRead):
    cards: list[IssuedCard]


class CardRedemptionCreate(_In):
    card_number: str = Field(pattern=r"^[0-9]{16}$")
    pin: str = Field(pattern=r"^[0-9]{8}$")


class RechargeRead(LedgerRead):
    source: Literal["card", "operator"]
    card_number: str | None = Field(None, description="masked: the last four digits")


# ------------------------------------------------------------------------------ statements, reports
class KindTotal(BaseModel):
    kind: str
    count: int
    total: Decimal


class StatementRead(BaseModel):
    tenant_id: int
    timezone: str
    from_date: date
    to_date: date = Field(description="inclusive")
    period_start: datetime
    period_end: datetime = Field(description="exclusive")
    opening_balance: Decimal
    closing_balance: Decimal
    credits: Decimal
    debits: Decimal
    by_kind: list[KindTotal]
    entries: list[LedgerRead]
    next_after: int | None = Field(None, description="more entries: pass as after")


class ReportTotals(BaseModel):
    offered: int
    answered: int
    minutes: int
    amount: Decimal
    asr: Decimal | None = Field(description="answered / offered, 4 decimals")
    acd_s: Decimal | None = Field(description="mean billsec of answered calls, seconds, 1 decimal")


class ReportRow(ReportTotals):
    period: date = Field(description="the day, or the first day of the month, in the tenant's zone")


class ReportRead(BaseModel):
    tenant_id: int
    timezone: str
    granularity: Literal["day", "month"]
    from_date: date
    to_date: date = Field(description="inclusive")
    rows: list[ReportRow]
    totals: ReportTotals


class LiveCallsRead(BaseModel):
    tenant_id: int
    as_of: datetime
    window_hours: int
    items: list[CallRead]
