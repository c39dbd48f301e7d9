"""Request and response models of the notification endpoints and the delivery log.
Addresses are checked per channel (an e-mail address; an http(s) URL of printable ASCII),
kinds are notice kinds' names (a kind added later is allowed), and no text reaches the
database with a control character in it."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

Channel = Literal["email", "webhook"]
Language = Literal["zh", "en"]
DeliveryState = Literal["pending", "delivered", "failed", "dead"]
_KIND = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
_PRINTABLE = re.compile(r"^[\x21-\x7e]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_address(channel: str, address: str) -> str:
    """The address if it is one for the channel; ValueError saying what is wrong."""
    if not 3 <= len(address) <= 500:
        raise ValueError("an address has 3 to 500 characters")
    if channel == "email":
        if not _EMAIL.match(address):
            raise ValueError(f"not an e-mail address: {address!r}")
        return address
    if not _PRINTABLE.match(address):
        raise ValueError("a webhook URL is printable ASCII without spaces (percent-encode the rest)")
    try:
        parts = urlsplit(address)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        raise ValueError(f"not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("a webhook URL starts with http:// or https:// and names a host")
    if parts.fragment:
        raise ValueError("a webhook URL has no #fragment")
    return address


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


def _kinds(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    for kind in value:
        if not _KIND.match(kind):
            raise ValueError(f"not a notice kind: {kind!r} (lower case, digits and _, e.g. missed_call)")
    if len(set(value)) != len(value):
        raise ValueError("a kind is named once")
    return value


def _description(value: str | None) -> str | None:
    if value is not None and _CONTROL.search(value):
        raise ValueError("a description has no control characters")
    return value


class EndpointCreate(_In):
    channel: Channel
    address: str = Field(description="an e-mail address, or the webhook's http(s) URL", max_length=500)
    kinds: list[str] = Field(
        default_factory=list, max_length=30, description="the notice kinds it wants; empty: every kind"
    )
    language: Language = Field("zh", description="the e-mails' language")
    enabled: bool = True
    timeout_s: float = Field(5.0, ge=0.5, le=30, description="one attempt's deadline, seconds")
    description: str = Field("", max_length=200)

    @field_validator("kinds")
    @classmethod
    def _check_kinds(cls, value: list[str]) -> list[str]:
        _kinds(value)
        return value

    @field_validator("description")
    @classmethod
    def _check_description(cls, value: str) -> str:
        _description(value)
        return value

    @field_validator("address")
    @classmethod
    def _address(cls, value: str, info: ValidationInfo) -> str:
        channel = info.data.get("channel")
        return check_address(channel, value) if channel is not None else value


class EndpointUpdate(_In):
    address: str | None = Field(None, max_length=500)
    kinds: list[str] | None = Field(None, max_length=30)
    language: Language | None = None
    enabled: bool | None = None
    timeout_s: float | None = Field(None, ge=0.5, le=30)
    description: str | None = Field(None, max_length=200)

    @field_validator("kinds")
    @classmethod
    def _check_kinds(cls, value: list[str] | None) -> list[str] | None:
        return _kinds(value)

    @field_validator("description")
    @classmethod
    def _check_description(cls, value: str | None) -> str | None:
        return _description(value)


class EndpointRead(_Out):
    id: int
    tenant_id: int
    channel: Channel
    address: str
    kinds: list[str]
    language: Language
    enabled: bool
    timeout_s: float
    description: str
    version: int
    created_at: datetime
    updated_at: datetime


class EndpointCreated(EndpointRead):
    secret: str | None = Field(
        None, description="the webhook's signing key (HMAC-SHA256): shown only in this answer"
    )


class EndpointPage(BaseModel):
    items: list[EndpointRead]
    next_after: int | None = None


class DeliveryRead(_Out):
    id: int
    notice_id: int
    tenant_id: int
    endpoint_id: int
    channel: Channel
    address: str
    state: DeliveryState
    attempts: int
    next_attempt_at: datetime
    last_attempt_at: datetime | None
    last_status: int | None = Field(description="the last attempt's HTTP status or SMTP reply code")
    last_reason: str = Field(description="the last failure's reason code, e.g. HTTP_STATUS, TIMEOUT")
    last_error: str
    delivered_at: datetime | None
    created_at: datetime


class DeliveryPage(BaseModel):
    items: list[DeliveryRead]
    next_after: int | None = None


class NoticeDeliveries(BaseModel):
    """One notice and its delivery to each endpoint; delivered_at is set when every
    delivery is delivered (and stays empty for a notice that had none)."""

    notice_id: int
    kind: str
    created_at: datetime
    delivered_at: datetime | None
    items: list[DeliveryRead]
