"""The worker's real channels against real servers on loopback: an SMTP server (aiosmtpd)
and an HTTP receiver, deliveries from the real PostgreSQL. What the receiver gets is what
a tenant's systems get: the rendered e-mail, the signed JSON. And what goes wrong is a
state with a reason code: a refused recipient is dead, an SMTP server that is down is
retried, a webhook slower than its deadline times out, a loopback webhook is refused
unless private addresses are allowed."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import asyncpg
import pytest
from aiosmtpd.controller import Controller
from prometheus_client import CollectorRegistry

from softswitch.core.settings import NotifySettings
from softswitch.notify.signing import verify
from softswitch.notify.worker import NoticeDelivery
from tests.db.conftest import new_tenant

HOST = "127.0.0.1"


class Clock:
    """Real time (the signature's timestamp is checked against the receiver's clock)."""

    def now(self) -> datetime:
        return datetime.now(UTC)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:  # noqa: N802
        if address.startswith("nobody@"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        msg = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append(msg)
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    box, port = Mailbox(), free_port()
    controller = Controller(box, hostname=HOST, port=port)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


@pytest.fixture
def receiver() -> Iterator[tuple[list[tuple[str, dict[str, str], bytes]], int]]:
    hits: list[tuple[str, dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path == "/slow":
                time.sleep(2)
            hits.append((self.path, dict(self.headers), body))
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    port = free_port()
    server = ThreadingHTTPServer((HOST, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield hits, port
    finally:
        server.shutdown()
        server.server_close()


async def endpoint(
    conn: asyncpg.Connection, tenant: int, channel: str, address: str, timeout_s: float = 3
) -> int:
    return int(
        await conn.fetchval(
            "INSERT INTO notice_endpoints (tenant_id, channel, address, secret, timeout_s) "
            "VALUES ($1, $2, $3, $4, $5) RETURNING id",
            tenant,
            channel,
            address,
            "whsec_channel-test" if channel == "webhook" else None,
            timeout_s,
        )
    )


async def missed_call(conn: asyncpg.Connection, tenant: int) -> int:
    payload = {"caller": "13912345678", "called": "4008001234", "destinations": ["13800138000"]}
    return int(
        await conn.fetchval(
            "INSERT INTO outbox (tenant_id, kind, payload, created_at) "
            "VALUES ($1, 'missed_call', $2::text::jsonb, now()) RETURNING id",
            tenant,
            json.dumps({**payload, "at": datetime.now(UTC).isoformat()}),
        )
    )


def worker(pool: asyncpg.Pool, tenant: int, smtp_port: int, **kw: Any) -> NoticeDelivery:
    s = NotifySettings(smtp_host=HOST, smtp_port=smtp_port, smtp_from="notices@softswitch.test", **kw)
    return NoticeDelivery(pool, Clock(), s, CollectorRegistry(), tenants=[tenant])


async def states(conn: asyncpg.Connection, tenant: int) -> dict[int, asyncpg.Record]:
    rows = await conn.fetch("SELECT * FROM notice_deliveries WHERE tenant_id = $1", tenant)
    return {r["endpoint_id"]: r for r in rows}


async def test_an_email_and_a_signed_webhook_arrive_as_the_tenant_gets_them(
    pool: asyncpg.Pool, smtp: tuple[Mailbox, int], receiver: tuple[list[Any], int]
) -> None:
    box, smtp_port = smtp
    hits, http_port = receiver
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn)
        mail = await endpoint(conn, tenant, "email", "ops@example.com")
        hook = await endpoint(conn, tenant, "webhook", f"http://{HOST}:{http_port}/hook")
        notice = await missed_call(conn, tenant)
    w = worker(pool, tenant, smtp_port, allow_private_webhooks=True)
    try:
        assert await w.run_once() == 2
    finally:
        await w.stop()
    (msg,) = box.messages
    assert msg["Subject"] == "【通知】未接来电：13912345678 呼叫 4008001234"
    assert msg["To"] == "ops@example.com" and msg["Message-ID"] == f"<notice-{notice}-{mail}@softswitch.test>"
    assert "13800138000" in msg.get_content()
    ((path, headers, body),) = hits
    assert path == "/hook" and headers["Content-Type"] == "application/json"
    assert verify(
        "whsec_channel-test",
        headers["X-Softswitch-Timestamp"],
        body,
        headers["X-Softswitch-Signature"],
        now=int(time.time()),
    )
    doc = json.loads(body)
    assert doc["id"] == headers["X-Softswitch-Delivery"] == f"{notice}-{hook}" and doc["attempt"] == 1
    assert doc["notice"]["payload"]["caller"] == "13912345678"
    async with pool.acquire() as conn:
        rows = await states(conn, tenant)
        assert (rows[mail]["state"], rows[mail]["last_status"]) == ("delivered", 250)
        assert (rows[hook]["state"], rows[hook]["last_status"]) == ("delivered", 204)
        assert await conn.fetchval("SELECT delivered_at FROM outbox WHERE id = $1", notice) is not None


async def test_what_goes_wrong_is_a_state_with_a_reason(
    pool: asyncpg.Pool, smtp: tuple[Mailbox, int], receiver: tuple[list[Any], int]
) -> None:
    box, smtp_port = smtp
    _hits, http_port = receiver
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn)
        refused = await endpoint(conn, tenant, "email", "nobody@example.com")
        loopback = await endpoint(conn, tenant, "webhook", f"http://{HOST}:{http_port}/hook")
        named = await endpoint(conn, tenant, "webhook", f"http://localhost:{http_port}/hook")
        await missed_call(conn, tenant)
    w = worker(pool, tenant, smtp_port)  # private webhooks not allowed
    try:
        assert await w.run_once() == 3
    finally:
        await w.stop()
    async with pool.acquire() as conn:
        rows = await states(conn, tenant)
    assert (rows[refused]["state"], rows[refused]["last_reason"], rows[refused]["last_status"]) == (
        "dead",
        "SMTP_REJECTED",
        550,
    )
    assert (rows[loopback]["state"], rows[loopback]["last_reason"]) == ("dead", "ADDRESS_NOT_ALLOWED")
    assert (rows[named]["state"], rows[named]["last_reason"]) == ("dead", "ADDRESS_NOT_ALLOWED")  # resolved
    assert box.messages == [] and _hits == []


async def test_a_slow_webhook_times_out_and_an_smtp_server_that_is_down_is_retried(
    pool: asyncpg.Pool, receiver: tuple[list[Any], int]
) -> None:
    _hits, http_port = receiver
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn)
        mail = await endpoint(conn, tenant, "email", "ops@example.com")
        slow = await endpoint(conn, tenant, "webhook", f"http://{HOST}:{http_port}/slow", timeout_s=0.5)
        await missed_call(conn, tenant)
    w = worker(pool, tenant, free_port(), allow_private_webhooks=True)  # no SMTP server there
    started = time.monotonic()
    try:
        assert await w.run_once() == 2
    finally:
        await w.stop()
    assert time.monotonic() - started < 1.5  # the slow receiver cost its deadline, not its 2 s
    async with pool.acquire() as conn:
        rows = await states(conn, tenant)
    assert (rows[mail]["state"], rows[mail]["last_reason"], rows[mail]["attempts"]) == (
        "failed",
        "CONNECT_FAILED",
        1,
    )
    assert (rows[slow]["state"], rows[slow]["last_reason"]) == ("failed", "TIMEOUT")
    assert "0.5 s" in rows[slow]["last_error"]
