"""Call recording through the real stack: a tenant whose policy is 'all' gets a WAV of the
bridged call, its metadata stored at hang-up and linked to the call record, its duration
within a second of what Asterisk billed; the file downloads through the API (audio/wav)
by id, never by path — path traversals sent raw to the running service serve nothing."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import struct
import subprocess
import sys
import tempfile
import time
import wave
from datetime import timedelta
from io import BytesIO
from pathlib import Path

import asyncpg
import pytest

from scripts.devstack.dtmf_pcap import _frame
from scripts.devstack.process import ServiceProcess
from scripts.devstack.sipp import SCENARIOS, SippUas, run_uac
from softswitch.core.settings import Settings
from tests.e2e.conftest import Engine, active_number, api_ok, changed, engine_of, mobile, unique_caller

pytestmark = pytest.mark.stack


def _voice_pcap(path: Path, ms: int) -> None:
    """PCMU RTP (a soft 500 Hz square wave), 20 ms a packet: the caller speaks, so
    MixMonitor has audio to write (SIPp's stock scenarios send no media)."""
    records = []
    for n in range(ms // 20):
        payload = bytes((0x30 if (i // 8) % 2 else 0xB0) for i in range(160))
        rtp = struct.pack("!BBHII", 0x80, 0x80 if n == 0 else 0, 2000 + n, 160 * n, 0x5EC0DE) + payload
        frame = _frame(rtp)
        at = n * 20
        records.append(struct.pack("<IIII", at // 1000, (at % 1000) * 1000, len(frame), len(frame)) + frame)
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + b"".join(records))


def _speaking_call(number: str, caller: str, hold_ms: int, target: str) -> object:
    """uac_dtmf.xml with speech instead of digits: once answered the caller talks, and
    hangs up `hold_ms` later."""
    with tempfile.TemporaryDirectory(prefix="sipp-voice-") as tmp:
        pcap = Path(tmp) / "voice.pcap"
        _voice_pcap(pcap, hold_ms + 1000)
        # speech from the answer on (MixMonitor writes from the first frame it gets)
        text = (SCENARIOS / "uac_dtmf.xml").read_text().replace('<pause milliseconds="1200"/>', "", 1)
        text = text.replace("@@DTMF@@", f'  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>')
        scenario = Path(tmp) / "voice.xml"
        scenario.write_text(text.replace("@@HOLD_MS@@", str(hold_ms)))
        return run_uac(number, caller, scenario=str(scenario), hold_ms=hold_ms, timeout_s=40, target=target)


async def _eventually(fetch, timeout: float = 8.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = await fetch()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.05)


def recording_tenant(service: ServiceProcess) -> tuple[int, str, str]:
    """A tenant with an active number bound to a destination, recording all its calls (and
    saying so): (tenant, number, its API base path)."""
    tenant, number_id, number = active_number(service)
    base = f"/v1/tenants/{tenant}"
    changed(
        service,
        "POST",
        f"{base}/bindings",
        json={
            "number_id": number_id,
            "destination": mobile(),
            "owner_name": "Zhang San",
            "owner_id_number": "310101199001011234",
        },
    )
    t = api_ok(service.request("GET", base))
    changed(
        service,
        "PATCH",
        base,
        json={"recording_policy": "all"},
        headers={"If-Match": f'"{t["version"]}"'},
    )
    return tenant, number, base


async def test_a_recorded_call_leaves_a_wav_as_long_as_the_call(
    db: asyncpg.Connection, service, destination_carrier: SippUas, engine: Engine
) -> None:  # type: ignore[no-untyped-def]
    tenant, number, base = recording_tenant(service)
    caller = unique_caller()
    result = await asyncio.to_thread(_speaking_call, number, caller, 3000, engine.carrier)
    assert result.final_status == 200, result.message_log[-2000:]  # type: ignore[attr-defined]

    call = await _eventually(
        lambda: db.fetchrow(
            "SELECT * FROM calls WHERE caller = $1 AND recording_id IS NOT NULL ORDER BY id DESC LIMIT 1",
            caller,
        )
    )
    assert call is not None, "no recording linked to the call record"
    rec = await db.fetchrow("SELECT * FROM recordings WHERE id = $1", call["recording_id"])
    assert (rec["tenant_id"], rec["call_linkedid"], rec["status"]) == (tenant, call["linkedid"], "stored")
    assert rec["path"] == f"/var/spool/asterisk/monitor/softswitch/{tenant}/{call['linkedid']}.wav"
    assert rec["size_bytes"] > 44 and len(rec["sha256"]) == 64
    cdr = await _eventually(
        lambda: db.fetchrow(
            "SELECT billsec FROM engine_cdr WHERE linkedid = $1 AND disposition = 'ANSWERED' "
            "ORDER BY billsec DESC LIMIT 1",
            call["linkedid"],
        )
    )
    assert cdr is not None
    answered_s = (call["ended_at"] - call["answered_at"]).total_seconds()
    assert abs(rec["duration_s"] - cdr["billsec"]) <= 1.0, (rec["duration_s"], cdr["billsec"], answered_s)
    assert abs(rec["duration_s"] - 3.0) <= 1.0

    # the API lists it and serves the very file, as audio/wav
    page = api_ok(service.request("GET", f"{base}/recordings", params={"call_id": call["linkedid"]}))
    assert [r["id"] for r in page["items"]] == [rec["id"]]
    audio = service.request("GET", f"{base}/recordings/{rec['id']}/audio")
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
    with wave.open(BytesIO(audio.content)) as w:
        assert abs(w.getnframes() / w.getframerate() - rec["duration_s"]) < 0.01
    assert service.metric("softswitch_recordings_total", result="stored") >= 1


def raw_get(service: ServiceProcess, raw_path: str) -> tuple[int, bytes]:
    """GET exactly `raw_path` from the running service over a plain socket — no client in
    between to resolve dot segments or decode it — as (status, body)."""
    host, port = service.settings.http.host, service.settings.http.port
    request = (
        f"GET {raw_path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {service.token}\r\n"
        "Connection: close\r\n\r\n"
    )
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(request.encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def test_traversals_sent_raw_to_the_running_service_serve_no_file(service: ServiceProcess) -> None:
    """Recordings are found by id and the portal's static files inside their folder, however
    the path is written: dot segments and encoded slashes reach the real server as sent."""
    tenant = api_ok(
        service.request("POST", "/v1/tenants", json={"name": f"e2e raw {secrets.token_hex(4)}"}), 201
    )
    base = f"/v1/tenants/{tenant['id']}/recordings"
    # The socket reaches the routes at all: the list answers, a static file is served.
    assert raw_get(service, base)[0] == 200
    status, body = raw_get(service, "/portal/static/portal.css")
    assert status == 200 and body
    # A ".." that a client would have resolved away arrives and is the recording id the
    # handler's validation refuses (a resolved path would be /v1/tenants/N/audio: no route).
    for one_segment in (f"{base}/../audio", f"{base}/%2e%2e/audio", f"{base}/.."):
        status, body = raw_get(service, one_segment)
        assert status == 422 and b'"recording_id"' in body, (one_segment, status, body[:300])
    for traversal in (
        f"{base}/../../../../../../../etc/passwd",
        f"{base}/..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd/audio",
        f"{base}/1/../../../../../../../etc/passwd",
        "/portal/static/../../../../../../../../etc/passwd",
        "/portal/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/portal/static/..%2F..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    ):
        status, body = raw_get(service, traversal)
        assert status == 404 and b"root:" not in body, (traversal, status, body[:300])


def purge_at(tenant: int, at: str) -> dict[str, object]:
    """`softswitch recordings purge --at T --tenant N`, as an operator (or the scheduler's
    recording_purge job, which calls the same function) runs it."""
    out = subprocess.run(
        [sys.executable, "-m", "softswitch.cli", "recordings", "purge", "--at", at, "--tenant", str(tenant)],
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "SOFTSWITCH_SCHEDULER__ENABLED": "false"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(out.stdout)


async def test_a_recording_is_kept_30_days_and_purged_the_minute_after(
    db: asyncpg.Connection, service: ServiceProcess, destination_carrier: SippUas, settings: Settings
) -> None:
    """A real recorded call, then the purge as of its start + 30 days - 1 minute (the file
    and the row stay) and + 30 days + 1 minute (the file is gone, the row says purged, the
    API no longer serves the audio). Through Asterisk only: the retention is the control
    plane's, and FreeSWITCH's recordings land in the same spool (the test above)."""
    engine = engine_of(settings, "asterisk")
    tenant, number, base = recording_tenant(service)
    assert api_ok(service.request("GET", base))["recording_retention_days"] == 30  # the contracts' default
    caller = unique_caller()
    result = await asyncio.to_thread(_speaking_call, number, caller, 1500, engine.carrier)
    assert result.final_status == 200, result.message_log[-2000:]  # type: ignore[attr-defined]
    rec_id = await _eventually(
        lambda: db.fetchval(
            "SELECT recording_id FROM calls WHERE caller = $1 AND recording_id IS NOT NULL", caller
        )
    )
    assert rec_id is not None, "no recording linked to the call record"
    rec = await db.fetchrow("SELECT * FROM recordings WHERE id = $1", rec_id)
    file = service.settings.asterisk.chroot / rec["path"].lstrip("/")
    assert file.is_file()
    started = rec["started_at"]

    kept = await asyncio.to_thread(purge_at, tenant, (started + timedelta(days=30, minutes=-1)).isoformat())
    assert kept["purged"] == 0, kept
    assert (
        file.is_file()
        and (await db.fetchval("SELECT purged_at FROM recordings WHERE id = $1", rec_id)) is None
    )
    assert service.request("GET", f"{base}/recordings/{rec_id}/audio").status_code == 200

    gone = await asyncio.to_thread(purge_at, tenant, (started + timedelta(days=30, minutes=1)).isoformat())
    assert gone["purged"] == 1 and gone["ids"] == [rec_id], gone
    assert not file.exists()
    assert (await db.fetchval("SELECT purged_at FROM recordings WHERE id = $1", rec_id)) is not None
    assert service.request("GET", f"{base}/recordings/{rec_id}/audio").status_code in (404, 410)
