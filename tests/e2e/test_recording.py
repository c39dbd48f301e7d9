"""Call recording through the real stack: a tenant whose policy is 'all' gets a WAV of the
bridged call, its metadata stored at hang-up and linked to the call record, its duration
within a second of what Asterisk billed; the file downloads through the API (audio/wav)
by id, never by path."""

from __future__ import annotations

import asyncio
import struct
import tempfile
import time
import wave
from io import BytesIO
from pathlib import Path

import asyncpg
import pytest

from scripts.devstack.dtmf_pcap import _frame
from scripts.devstack.sipp import SCENARIOS, SippUas, run_uac
from tests.e2e.conftest import Engine, active_number, api_ok, changed, mobile, unique_caller

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
        await asyncio.sleep(0.2)


async def test_a_recorded_call_leaves_a_wav_as_long_as_the_call(
    db: asyncpg.Connection, service, destination_carrier: SippUas, engine: Engine
) -> None:  # type: ignore[no-untyped-def]
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
    # the tenant records all calls, and says so
    changed(
        service,
        "PATCH",
        base,
        json={"recording_policy": "all"},
        headers={"If-Match": f'"{t["version"]}"'},
    )
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
