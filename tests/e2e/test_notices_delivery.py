"""Notices reach people (issue 17.7), end to end: the service as `softswitch serve` runs
it, a real SMTP server (aiosmtpd) and real HTTP webhook receivers on loopback, a real
SIPp call to a number whose destination is busy (a missed call): the first through
Asterisk, the second through FreeSWITCH.

The tenant's own admin adds the endpoints through the API: an e-mail address, a webhook
that works, one that answers 500 until it recovers, and (for the second notice) one that
never answers within its 1 s deadline. The e-mail arrives with the missed call's subject,
the webhook with a valid signature; the failing webhook is retried with backoff under
the same idempotency id and gets the notice once it recovers, while the e-mail and the
working webhook receive the next notice at once; the delivery log shows each state
through the API."""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from scripts.devstack.process import ServiceProcess
from scripts.devstack.sipp import SippUas, run_uac
from scripts.devstack.stack import LocalStack
from softswitch.core.settings import Settings
from softswitch.notify.signing import verify
from tests.e2e.conftest import (
    OWNER,
    Engine,
    active_number,
    api_ok,
    changed,
    engine_of,
    mobile,
    require_freeswitch,
    restarted,
    unique_caller,
    wait_for,
)

pytestmark = pytest.mark.stack
HOST = "127.0.0.1"
BACKOFF_S = 0.6  # the first retry waits 0.3-0.6 s, the next 0.6-1.2 s (at most 1.2 s)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------- SMTP
class Mailbox:
    """aiosmtpd's handler: every message it accepted, as the recipient got it."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        msg = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        with self.lock:
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


# ---------------------------------------------------------------------------- webhooks
@dataclass
class Hit:
    path: str
    at: float  # time.monotonic() when it arrived
    headers: dict[str, str]
    body: bytes
    answered: int


@dataclass
class Receivers:
    """/ok answers 204; /flaky 500 until `recovered` is set, then 204; /slow answers after 3 s."""

    port: int
    hits: list[Hit] = field(default_factory=list)
    recovered: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"

    def of(self, path: str) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if h.path == path]


@pytest.fixture
def webhooks() -> Iterator[Receivers]:
    receivers = Receivers(free_port())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path == "/slow":
                time.sleep(3)
            status = 500 if self.path == "/flaky" and not receivers.recovered.is_set() else 204
            with receivers.lock:
                receivers.hits.append(Hit(self.path, time.monotonic(), dict(self.headers), body, status))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((HOST, receivers.port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receivers
    finally:
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------------------- helpers
def tenant_token(service: ServiceProcess, role: str, tenant_id: int) -> dict[str, str]:
    body = {
        "username": f"ntc-{role.replace('_', '-')}-{secrets.token_hex(3)}",
        "role": role,
        "tenant_id": tenant_id,
    }
    user = api_ok(service.request("POST", "/v1/users", json=body), 201)
    token = api_ok(service.request("POST", f"/v1/users/{user['id']}/tokens", json={"name": "notices"}), 201)
    return {"Authorization": f"Bearer {token['token']}"}


def add_endpoint(service: ServiceProcess, tenant: int, auth: dict[str, str], **body: Any) -> dict[str, Any]:
    return api_ok(
        service.request("POST", f"/v1/tenants/{tenant}/notice-endpoints", json=body, headers=auth), 201
    )


def missed_call(number: str, engine: Engine) -> str:
    """A call from a new caller that the busy destination turns into a missed-call notice."""
    caller = unique_caller()
    result = run_uac(number, caller, target=engine.carrier, timeout_s=20)
    assert result.final_status == 486, (engine.name, result.message_log[-1500:])  # busy: every destination
    return caller


def notice_of(hits: list[Hit], caller: str) -> list[Hit]:
    return [h for h in hits if json.loads(h.body)["notice"]["payload"].get("caller") == caller]


def mail_for(box: Mailbox, caller: str) -> list[EmailMessage]:
    with box.lock:
        return [m for m in box.messages if caller in str(m["Subject"])]


# ---------------------------------------------------------------------------- the test
async def test_missed_calls_reach_email_and_signed_webhooks_and_a_failing_one_is_retried(
    service: ServiceProcess,
    destination_carrier: SippUas,
    smtp: tuple[Mailbox, int],
    webhooks: Receivers,
    settings: Settings,
    stack: LocalStack,
) -> None:
    """The first missed call comes through Asterisk, the second through FreeSWITCH."""
    require_freeswitch(stack)
    engines = (engine_of(settings, "asterisk"), engine_of(settings, "freeswitch"))
    box, smtp_port = smtp
    env = {
        "SOFTSWITCH_NOTIFY__SMTP_HOST": HOST,
        "SOFTSWITCH_NOTIFY__SMTP_PORT": str(smtp_port),
        "SOFTSWITCH_NOTIFY__SMTP_FROM": "notices@softswitch.test",
        "SOFTSWITCH_NOTIFY__ALLOW_PRIVATE_WEBHOOKS": "true",  # the receivers are on loopback
        "SOFTSWITCH_NOTIFY__BACKOFF_INITIAL_S": str(BACKOFF_S),
        "SOFTSWITCH_NOTIFY__BACKOFF_MAX_S": str(2 * BACKOFF_S),
        "SOFTSWITCH_NOTIFY__MAX_ATTEMPTS": "30",
    }
    with restarted(service, **env) as svc:
        await asyncio.to_thread(_scenario, svc, box, webhooks, engines)


def _scenario(svc: ServiceProcess, box: Mailbox, hooks: Receivers, engines: tuple[Engine, Engine]) -> None:
    tenant, number_id, number = active_number(svc)
    changed(
        svc,
        "POST",
        f"/v1/tenants/{tenant}/bindings",
        json={"number_id": number_id, "destination": mobile("98"), **OWNER},
    )
    admin = tenant_token(svc, "tenant_admin", tenant)
    base = f"/v1/tenants/{tenant}"

    # who may: the tenant's admin adds them; its read-only user may not; another tenant's
    # admin does not see this tenant at all
    email = add_endpoint(
        svc, tenant, admin, channel="email", address="ops@example.com", kinds=["missed_call"], language="zh"
    )
    assert email["secret"] is None
    ok = add_endpoint(svc, tenant, admin, channel="webhook", address=hooks.url("/ok"))
    flaky = add_endpoint(
        svc, tenant, admin, channel="webhook", address=hooks.url("/flaky"), kinds=["missed_call"]
    )
    assert ok["secret"].startswith("whsec_") and ok["secret"] != flaky["secret"]
    readonly = tenant_token(svc, "tenant_readonly", tenant)
    assert svc.request("GET", f"{base}/notice-endpoints", headers=readonly).status_code == 403
    other_tenant, _other_number_id, _other_number = active_number(svc)
    stranger = tenant_token(svc, "tenant_admin", other_tenant)
    assert svc.request("GET", f"{base}/notice-endpoints", headers=stranger).status_code == 404
    bad = svc.request(
        "POST", f"{base}/notice-endpoints", headers=admin, json={"channel": "webhook", "address": "ftp://x"}
    )
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "address", bad.text
    listed = api_ok(svc.request("GET", f"{base}/notice-endpoints", headers=admin))["items"]
    assert {e["id"] for e in listed} == {email["id"], ok["id"], flaky["id"]}
    assert all("secret" not in e for e in listed)  # shown once, at creation

    # the first missed call
    first_caller = missed_call(number, engines[0])
    mail = wait_for("the e-mail", lambda: mail_for(box, first_caller), 10)[0]
    assert mail["Subject"] == f"【通知】未接来电：{first_caller} 呼叫 {number}"
    assert mail["To"] == "ops@example.com" and mail["From"] == "notices@softswitch.test"
    assert first_caller in mail.get_content()  # the tenant reads its caller in full
    hit = wait_for("the webhook", lambda: notice_of(hooks.of("/ok"), first_caller), 10)[0]
    assert verify(
        ok["secret"],
        hit.headers["X-Softswitch-Timestamp"],
        hit.body,
        hit.headers["X-Softswitch-Signature"],
        now=int(time.time()),
    )
    assert not verify(
        flaky["secret"],
        hit.headers["X-Softswitch-Timestamp"],
        hit.body,
        hit.headers["X-Softswitch-Signature"],
        now=int(time.time()),
    )
    doc = json.loads(hit.body)
    notice_a = doc["notice"]["id"]
    assert doc["notice"]["kind"] == hit.headers["X-Softswitch-Event"] == "missed_call"
    assert doc["notice"]["payload"]["called"] == number and doc["tenant_id"] == tenant
    assert hit.headers["X-Softswitch-Delivery"] == hit.headers["Idempotency-Key"] == doc["id"]
    assert mail["X-Softswitch-Delivery"] == f"{notice_a}-{email['id']}"

    # the failing webhook: retried with backoff, the same idempotency id every time
    failures = wait_for(
        "two failed attempts", lambda: (h := notice_of(hooks.of("/flaky"), first_caller))[1:] and h, 10
    )
    assert [h.answered for h in failures[:2]] == [500, 500]
    assert len({h.headers["X-Softswitch-Delivery"] for h in failures}) == 1
    assert failures[1].at - failures[0].at >= BACKOFF_S / 2 * 0.9  # never sooner than half the step

    # a slow endpoint from now on; the next notice still reaches the e-mail and the working
    # webhook at once, while the failing one still fails and the slow one holds its slot
    slow = add_endpoint(svc, tenant, admin, channel="webhook", address=hooks.url("/slow"), timeout_s=1)
    second_caller = missed_call(number, engines[1])
    called_at = time.monotonic()
    wait_for("the second e-mail", lambda: mail_for(box, second_caller), 10)
    second = wait_for("the second webhook", lambda: notice_of(hooks.of("/ok"), second_caller), 10)[0]
    assert second.at - called_at < 3.0, "the second notice waited for the failing or slow endpoint"
    assert not hooks.recovered.is_set()
    notice_b = json.loads(second.body)["notice"]["id"]

    # the delivery log while the webhook is down
    log_a = api_ok(svc.request("GET", f"{base}/notices/{notice_a}/deliveries", headers=admin))
    state = {d["endpoint_id"]: d for d in log_a["items"]}
    assert set(state) == {email["id"], ok["id"], flaky["id"]}  # the slow one came later
    assert (state[email["id"]]["state"], state[email["id"]]["attempts"]) == ("delivered", 1)
    assert state[ok["id"]]["state"] == "delivered" and state[ok["id"]]["last_status"] == 204
    assert state[flaky["id"]]["state"] in ("failed", "pending")  # pending: an attempt in flight
    assert state[flaky["id"]]["attempts"] >= 2 and state[flaky["id"]]["last_reason"] in ("HTTP_STATUS", "")
    assert log_a["delivered_at"] is None

    # the receiver recovers: both notices reach it, each once
    hooks.recovered.set()
    for caller in (first_caller, second_caller):
        wait_for(
            f"{caller[:3]}... at the recovered webhook",
            lambda c=caller: [h for h in notice_of(hooks.of("/flaky"), c) if h.answered == 204],
            10,
        )
    delivered = [h for h in hooks.of("/flaky") if h.answered == 204]
    assert len({h.headers["X-Softswitch-Delivery"] for h in delivered}) == len(delivered) == 2

    def settled() -> dict[str, Any] | None:
        out = api_ok(svc.request("GET", f"{base}/notices/{notice_a}/deliveries", headers=admin))
        return out if out["delivered_at"] is not None else None

    log_a = wait_for("notice A delivered everywhere", settled, 5)
    flaky_a = next(d for d in log_a["items"] if d["endpoint_id"] == flaky["id"])
    assert flaky_a["state"] == "delivered" and flaky_a["attempts"] >= 3 and flaky_a["last_status"] == 204

    # the slow endpoint: its attempts timed out, the notice is not delivered everywhere
    def timed_out() -> dict[str, Any] | None:
        out = api_ok(svc.request("GET", f"{base}/notices/{notice_b}/deliveries", headers=admin))
        d = next(d for d in out["items"] if d["endpoint_id"] == slow["id"])
        return out if d["last_reason"] == "TIMEOUT" else None

    log_b = wait_for("the slow endpoint's timeout", timed_out, 5)
    assert log_b["delivered_at"] is None
    # disabling it gives its open deliveries up
    api_ok(
        svc.request(
            "PATCH",
            f"{base}/notice-endpoints/{slow['id']}",
            json={"enabled": False},
            headers={**admin, "If-Match": f'"{slow["version"]}"'},
        )
    )
    dead = api_ok(
        svc.request("GET", f"{base}/notice-deliveries?state=dead&endpoint_id={slow['id']}", headers=admin)
    )
    assert [(d["notice_id"], d["last_reason"]) for d in dead["items"]] == [(notice_b, "ENDPOINT_DISABLED")]
    # the operator's view of every tenant's log; not a tenant's
    platform = api_ok(svc.request("GET", f"/v1/notice-deliveries?state=dead&tenant_id={tenant}"))
    assert [d["id"] for d in platform["items"]] == [d["id"] for d in dead["items"]]
    assert svc.request("GET", "/v1/notice-deliveries", headers=admin).status_code == 403
    assert svc.metric("softswitch_notice_deliveries_total", channel="email", outcome="delivered") >= 2
    assert svc.metric("softswitch_notice_deliveries_total", channel="webhook", outcome="failed") >= 2

    # removed, the endpoints leave the tenant's list; the log keeps what they were sent
    for e in api_ok(svc.request("GET", f"{base}/notice-endpoints", headers=admin))["items"]:
        gone = svc.request(
            "DELETE", f"{base}/notice-endpoints/{e['id']}", headers={**admin, "If-Match": f'"{e["version"]}"'}
        )
        assert gone.status_code == 204, gone.text
    assert api_ok(svc.request("GET", f"{base}/notice-endpoints", headers=admin))["items"] == []
    kept = api_ok(svc.request("GET", f"{base}/notices/{notice_a}/deliveries", headers=admin))
    assert {d["state"] for d in kept["items"]} == {"delivered"} and kept["delivered_at"] is not None
