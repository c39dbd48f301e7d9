"""Voicemail through the real engines (issue 17, item 6), each of Asterisk and FreeSWITCH: a
SIPp caller rings a 400 number whose only destination is busy and whose final action is
voicemail, or whose time policy sends every call to voicemail; the engine answers, plays
vm-intro; the caller waits for the end of it, speaks
for 3 s (PCMU RTP) and hangs up. Then, through the running service's API: the message is
listed for the tenant and for the number with the caller and the time of the call, its WAV
plays as audio/wav with 3 s of the caller's audio in it and the sha256 the list gives, the
call record says the call went to voicemail and links the message, the new_voicemail notice
reaches the tenant's webhook signed with its secret, and the tenant's admin marks it
listened and deletes it (file gone, 410 after). A caller who hangs up during the intro leaves
no message and no notice; the call record says `missing`."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import tempfile
import threading
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from scripts.devstack.process import ServiceProcess
from scripts.devstack.sipp import SCENARIOS, SippResult, SippUas, run_uac
from softswitch.notify.signing import verify
from tests.e2e.conftest import (
    OWNER,
    Engine,
    active_number,
    api_ok,
    changed,
    mobile,
    restarted,
    unique_caller,
    wait_for,
)
from tests.e2e.test_recording import _voice_pcap

pytestmark = pytest.mark.stack
HOST = "127.0.0.1"
INTRO_MS = 6500  # vm-intro lasts 5.7 s on both engines: the caller speaks after it
SPEECH_MS = 3000


@dataclass
class Webhook:
    port: int
    hits: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/voicemail"

    def received(self) -> list[tuple[dict[str, str], bytes]]:
        with self.lock:
            return list(self.hits)


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    with socket.socket() as s:
        s.bind((HOST, 0))
        hook = Webhook(int(s.getsockname()[1]))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with hook.lock:
                hook.hits.append((dict(self.headers), body))
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((HOST, hook.port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()


def leave_message(number: str, caller: str, target: str) -> SippResult:
    """Once answered the caller waits out the intro, speaks SPEECH_MS and hangs up."""
    with tempfile.TemporaryDirectory(prefix="sipp-vm-") as tmp:
        pcap = Path(tmp) / "voice.pcap"
        _voice_pcap(pcap, SPEECH_MS)
        text = (SCENARIOS / "uac_dtmf.xml").read_text()
        text = text.replace('<pause milliseconds="1200"/>', f'<pause milliseconds="{INTRO_MS}"/>', 1)
        text = text.replace("@@DTMF@@", f'  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>')
        scenario = Path(tmp) / "voicemail.xml"
        scenario.write_text(text.replace("@@HOLD_MS@@", str(SPEECH_MS + 200)))
        return run_uac(
            number, caller, scenario=str(scenario), hold_ms=SPEECH_MS + 200, timeout_s=40, target=target
        )


def audible_seconds(wav_bytes: bytes) -> tuple[float, float]:
    """(the file's length, how much of it is the caller's tone) in seconds: 20 ms windows
    whose mean amplitude is well above silence."""
    with wave.open(BytesIO(wav_bytes)) as w:
        rate, width, frames = w.getframerate(), w.getsampwidth(), w.readframes(w.getnframes())
    assert width == 2, width
    samples = memoryview(frames).cast("h")
    window = rate // 50
    loud = sum(
        1
        for i in range(0, len(samples) - window + 1, window)
        if sum(abs(s) for s in samples[i : i + window]) / window > 1000
    )
    return len(samples) / rate, loud / 50


@pytest.fixture(scope="module")
def svc(service: ServiceProcess) -> Iterator[ServiceProcess]:
    """The service allowing webhooks on loopback (the test's receiver), restarted once for
    this module's tests (each makes its own tenant and number; counters read as differences)."""
    with restarted(service, SOFTSWITCH_NOTIFY__ALLOW_PRIVATE_WEBHOOKS="true") as restarted_service:
        yield restarted_service


@pytest.mark.parametrize("routed", ["final_action", "time_policy"])
async def test_a_message_left_is_listed_played_notified_and_deleted(
    db: asyncpg.Connection,
    svc: ServiceProcess,
    destination_carrier: SippUas,
    engine: Engine,
    webhook: Webhook,
    routed: str,
) -> None:
    stored_before = svc.metric("softswitch_voicemail_messages_total", outcome="stored")
    tenant, number, caller, message, admin = await asyncio.to_thread(
        _leave_and_list, svc, engine, webhook, routed
    )
    call = await db.fetchrow("SELECT * FROM calls WHERE caller = $1 ORDER BY id DESC LIMIT 1", caller)
    assert call is not None
    # a routed call that fell back to voicemail, or voicemail as the decision
    decided = ("dial", "voicemail") if routed == "final_action" else ("voicemail", "")
    assert (call["action"], call["final_action"], call["voicemail_outcome"], call["voicemail_id"]) == (
        *decided,
        "stored",
        message["id"],
    ), dict(call)
    assert call["linkedid"] == message["call_id"] and call["answered_at"] is not None
    # the time of the call, as the record has it
    assert abs(datetime.fromisoformat(message["received_at"]) - call["decided_at"]) < timedelta(seconds=2)
    assert svc.metric("softswitch_voicemail_messages_total", outcome="stored") >= stored_before + 1
    await asyncio.to_thread(_listen_and_delete, svc, tenant, message, admin)


def _leave_and_list(
    svc: ServiceProcess, engine: Engine, hook: Webhook, routed: str
) -> tuple[int, str, str, dict[str, Any], dict[str, str]]:
    tenant, number_id, number = active_number(svc)
    base = f"/v1/tenants/{tenant}"
    changed(
        svc, "POST", f"{base}/bindings", json={"number_id": number_id, "destination": mobile("98"), **OWNER}
    )
    routing = api_ok(svc.request("GET", f"{base}/numbers/{number_id}"))
    changed(
        svc,
        "PATCH",
        f"{base}/numbers/{number_id}",
        json=(
            {"final_action": "voicemail"}
            if routed == "final_action"
            else {"time_policy_id": _always_voicemail(svc, base)}
        ),
        headers={"If-Match": f'"{routing["version"]}"'},
    )
    user = api_ok(
        svc.request(
            "POST",
            "/v1/users",
            json={"username": f"vm-admin-{tenant}", "role": "tenant_admin", "tenant_id": tenant},
        ),
        201,
    )
    token = api_ok(svc.request("POST", f"/v1/users/{user['id']}/tokens", json={"name": "vm"}), 201)["token"]
    admin = {"Authorization": f"Bearer {token}"}
    endpoint = api_ok(
        svc.request(
            "POST",
            f"{base}/notice-endpoints",
            json={"channel": "webhook", "address": hook.url, "kinds": ["new_voicemail"]},
            headers=admin,
        ),
        201,
    )

    caller = unique_caller()
    result = leave_message(number, caller, engine.carrier)
    assert result.final_status == 200, (engine.name, result.message_log[-2000:])

    page = wait_for(
        "the message in the list",
        lambda: api_ok(svc.request("GET", f"{base}/voicemail", headers=admin))["items"],
        15,
    )
    assert len(page) == 1, page
    message = page[0]
    assert (message["caller"], message["number"], message["listened"]) == (caller, number, False)
    by_number = api_ok(svc.request("GET", f"{base}/voicemail", params={"number": number}, headers=admin))
    assert [m["id"] for m in by_number["items"]] == [message["id"]]
    other = api_ok(svc.request("GET", f"{base}/voicemail", params={"number": "4000000000"}, headers=admin))
    assert other["items"] == []
    calls = api_ok(svc.request("GET", f"{base}/calls", headers=admin))["items"]
    mine = [c for c in calls if c["linkedid"] == message["call_id"]]
    assert [(c["voicemail_outcome"], c["voicemail_id"]) for c in mine] == [("stored", message["id"])], calls

    audio = svc.request("GET", f"{base}/voicemail/{message['id']}/audio", headers=admin)
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav", audio.text[:300]
    assert hashlib.sha256(audio.content).hexdigest() == message["sha256"]
    length, spoken = audible_seconds(audio.content)
    assert abs(spoken - SPEECH_MS / 1000) <= 0.5, (engine.name, length, spoken)
    assert SPEECH_MS / 1000 - 0.5 <= length <= SPEECH_MS / 1000 + 2.5, (engine.name, length, spoken)
    assert abs(message["duration_s"] - length) < 0.05

    def notice() -> tuple[dict[str, str], bytes] | None:
        for headers, body in hook.received():
            doc = json.loads(body)
            if doc["notice"]["kind"] == "new_voicemail" and doc["notice"]["payload"]["caller"] == caller:
                return headers, body
        return None

    headers, body = wait_for("the new_voicemail notice at the webhook", notice, 15)
    assert verify(
        endpoint["secret"],
        headers["X-Softswitch-Timestamp"],
        body,
        headers["X-Softswitch-Signature"],
        now=int(time.time()),
    )
    payload = json.loads(body)["notice"]["payload"]
    assert (payload["message_id"], payload["called"]) == (message["id"], number)
    return tenant, number, caller, message, admin


async def test_a_caller_who_leaves_during_the_intro_leaves_no_message(
    db: asyncpg.Connection, svc: ServiceProcess, engine: Engine
) -> None:
    """No file: no message, no notice; the call record says it went to voicemail and left
    nothing (missing), and the outcome is counted."""
    tenant, number_id, number = active_number(svc)
    base = f"/v1/tenants/{tenant}"
    routing = api_ok(svc.request("GET", f"{base}/numbers/{number_id}"))
    changed(
        svc,
        "PATCH",
        f"{base}/numbers/{number_id}",
        json={"time_policy_id": _always_voicemail(svc, base)},
        headers={"If-Match": f'"{routing["version"]}"'},
    )
    missing_before = svc.metric("softswitch_voicemail_messages_total", outcome="missing")
    caller = unique_caller()
    result = await asyncio.to_thread(
        run_uac, number, caller, hold_ms=2000, target=engine.carrier, timeout_s=20
    )
    assert result.final_status == 200, (engine.name, result.message_log[-2000:])

    async def outcome() -> asyncpg.Record | None:
        deadline = time.monotonic() + 10
        while True:
            row = await db.fetchrow(
                "SELECT * FROM calls WHERE caller = $1 AND voicemail_outcome IS NOT NULL", caller
            )
            if row is not None or time.monotonic() > deadline:
                return row
            await asyncio.sleep(0.02)

    call = await outcome()
    assert call is not None, "the call record never said what the voicemail left"
    assert (call["action"], call["voicemail_outcome"], call["voicemail_id"]) == ("voicemail", "missing", None)
    assert api_ok(svc.request("GET", f"{base}/voicemail"))["items"] == []
    assert (
        await db.fetchval(
            "SELECT count(*) FROM outbox WHERE tenant_id = $1 AND kind = 'new_voicemail'", tenant
        )
        == 0
    )
    assert svc.metric("softswitch_voicemail_messages_total", outcome="missing") == missing_before + 1


def _always_voicemail(svc: ServiceProcess, base: str) -> int:
    """A time policy with no hours: every call goes to its default target, voicemail."""
    policy = changed(
        svc,
        "POST",
        f"{base}/time-policies",
        json={"name": "voicemail only", "definition": {"default": {"kind": "voicemail"}}},
    )
    return int(policy["id"])


def _listen_and_delete(
    svc: ServiceProcess, tenant: int, message: dict[str, Any], admin: dict[str, str]
) -> None:
    base = f"/v1/tenants/{tenant}/voicemail/{message['id']}"
    heard = api_ok(svc.request("PUT", f"{base}/listened", headers=admin))
    assert heard["listened"] is True and heard["listened_by"] is not None
    path = (
        svc.settings.asterisk.chroot
        / f"{svc.settings.voicemail.spool}/{tenant}-{message['call_id']}.wav".lstrip("/")
    )
    assert path.is_file()
    assert svc.request("DELETE", base, headers=admin).status_code == 204
    assert not path.exists()
    assert svc.request("GET", base, headers=admin).status_code == 410
    assert svc.request("GET", f"/v1/tenants/{tenant}/voicemail", headers=admin).json()["items"] == []
