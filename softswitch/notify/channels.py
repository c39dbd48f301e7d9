"""The two ways a notice leaves: an e-mail through the platform's SMTP server
(aiosmtplib), and a signed JSON POST to the tenant's webhook (httpx). Each attempt has
its endpoint's deadline for everything it does (resolve, connect, send, answer), and
answers an Outcome instead of raising: a failing endpoint is a state in the log, never an
exception in the worker. Nothing here logs; the errors carry no secret."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiosmtplib
import httpx

from softswitch.core.clock import Clock
from softswitch.core.settings import NotifySettings
from softswitch.notify import retry
from softswitch.notify.render import render_email
from softswitch.notify.retry import Outcome
from softswitch.notify.signing import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    signature,
)
from softswitch.notify.store import Claimed

USER_AGENT = "softswitch-notices/1"


class Channel(Protocol):
    async def send(self, delivery: Claimed) -> Outcome: ...


def webhook_body(delivery: Claimed) -> bytes:
    """What a webhook receives: the notice as the outbox holds it, and the idempotency id."""
    n = delivery.notice
    doc: dict[str, Any] = {
        "id": delivery.idempotency_id,
        "attempt": delivery.attempts,
        "tenant_id": delivery.tenant_id,
        "notice": {
            "id": n.id,
            "kind": n.kind,
            "created_at": n.created_at.isoformat(),
            "payload": n.payload,
        },
    }
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), default=str).encode()


def _not_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    return not ip.is_global or ip.is_multicast


class WebhookChannel:
    def __init__(self, client: httpx.AsyncClient, clock: Clock, allow_private: bool) -> None:
        self._client = client
        self._clock = clock
        self._allow_private = allow_private

    async def send(self, delivery: Claimed) -> Outcome:
        if delivery.secret is None:  # the table's CHECK keeps this from happening
            return Outcome.failed(retry.PROTOCOL_ERROR, "the webhook has no secret", permanent=True)
        try:
            async with asyncio.timeout(delivery.timeout_s):
                refused = await self._refused_address(delivery.address)
                if refused is not None:
                    return refused
                return await self._post(delivery, delivery.secret)
        except TimeoutError:
            return Outcome.failed(retry.TIMEOUT, f"no answer within {delivery.timeout_s:g} s")

    async def _refused_address(self, url: str) -> Outcome | None:
        if self._allow_private:
            return None
        parts = urlsplit(url)
        host = parts.hostname or ""
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, parts.port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM
            )
        except OSError as exc:
            return Outcome.failed(retry.CONNECT_FAILED, f"cannot resolve the webhook's host: {exc}")
        if any(_not_public(str(info[4][0])) for info in infos):
            return Outcome.failed(
                retry.ADDRESS_NOT_ALLOWED,
                "the webhook's host is a loopback, private or link-local address",
                permanent=True,
            )
        return None

    async def _post(self, delivery: Claimed, secret: str) -> Outcome:
        body = webhook_body(delivery)
        stamp = int(self._clock.now().timestamp())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            SIGNATURE_HEADER: signature(secret, stamp, body),
            TIMESTAMP_HEADER: str(stamp),
            DELIVERY_HEADER: delivery.idempotency_id,
            "Idempotency-Key": delivery.idempotency_id,
            EVENT_HEADER: delivery.notice.kind,
        }
        try:
            resp = await self._client.post(
                delivery.address,
                content=body,
                headers=headers,
                timeout=httpx.Timeout(delivery.timeout_s),
                follow_redirects=False,
            )
        except httpx.TimeoutException:
            return Outcome.failed(retry.TIMEOUT, f"no answer within {delivery.timeout_s:g} s")
        except httpx.ConnectError as exc:
            return Outcome.failed(retry.CONNECT_FAILED, f"cannot connect: {exc}")
        except httpx.HTTPError as exc:
            return Outcome.failed(retry.PROTOCOL_ERROR, f"{type(exc).__name__}: {exc}")
        return retry.http_outcome(resp.status_code)


class EmailChannel:
    def __init__(self, settings: NotifySettings, clock: Clock) -> None:
        self._s = settings
        self._clock = clock

    def message(self, delivery: Claimed) -> EmailMessage:
        email = render_email(delivery.notice, delivery.language)
        domain = self._s.smtp_from.rpartition("@")[2] or "localhost"
        msg = EmailMessage()
        msg["From"] = self._s.smtp_from
        msg["To"] = delivery.address
        msg["Subject"] = email.subject
        msg["Date"] = format_datetime(self._clock.now())
        # the same on every attempt: a mail system that got it once can tell
        msg["Message-ID"] = f"<notice-{delivery.idempotency_id}@{domain}>"
        msg[DELIVERY_HEADER] = delivery.idempotency_id
        msg[EVENT_HEADER] = delivery.notice.kind
        msg.set_content(email.body)
        return msg

    async def send(self, delivery: Claimed) -> Outcome:
        s = self._s
        msg = self.message(delivery)
        try:
            async with asyncio.timeout(delivery.timeout_s):
                await aiosmtplib.send(
                    msg,
                    hostname=s.smtp_host,
                    port=s.smtp_port,
                    username=s.smtp_user or None,
                    password=s.smtp_password.get_secret_value() or None,
                    use_tls=s.smtp_tls,
                    start_tls=s.smtp_starttls,
                    timeout=delivery.timeout_s,
                )
        except (TimeoutError, aiosmtplib.SMTPTimeoutError):
            return Outcome.failed(
                retry.TIMEOUT, f"the SMTP server did not finish within {delivery.timeout_s:g} s"
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            first = exc.recipients[0] if exc.recipients else None
            code = first.code if first is not None else 550
            return retry.smtp_outcome(code, first.message if first is not None else "recipient refused")
        except aiosmtplib.SMTPDataError as exc:
            return retry.smtp_outcome(exc.code, exc.message)
        except aiosmtplib.SMTPResponseException as exc:  # login, sender, HELO: the platform's
            return retry.smtp_outcome(exc.code, exc.message, about_the_message=False)
        except (aiosmtplib.SMTPException, OSError) as exc:
            return Outcome.failed(retry.CONNECT_FAILED, f"SMTP {s.smtp_host}:{s.smtp_port}: {exc}")
        return Outcome.ok(250)
