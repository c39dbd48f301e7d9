"""Personalised ringback tones through both engines (issue 17, item 1): a tenant uploads a
test tone (a 1200 Hz sine made with sox) and applies it to its number through the API; the
caller's SIPp names a UDP port of this test in its SDP, the destination rings 4 s (180)
before it answers, and the RTP that reaches the port during the ringing is decoded
(PCMU/PCMA) and measured: the tone's frequency (a Goertzel filter), its level (the file's
RMS) and its length (the ringing, longer than the file: it loops). A number without a tone,
and the tone's own number before its effective month (the application made in this month
plays from the next: the service's clock pinned there for the second call), ring the
default: no 1200 Hz, whatever the engine gives (Asterisk and FreeSWITCH pass the 180 on,
no audio)."""

from __future__ import annotations

import asyncio
import math
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from scripts.devstack.process import ServiceProcess
from scripts.devstack.sipp import SippResult, SippUas, render_dtmf, run_uac
from tests.e2e.conftest import Engine, active_number, api_ok, changed, mobile, restarted, unique_caller
from tests.e2e.test_engine_scenarios import MediaPort, RtpPacket, bind, received_at
from tests.e2e.test_routing import call_row

pytestmark = pytest.mark.stack

TONE_HZ = 1200
TONE_SECONDS = 2.0
TONE_VOLUME = 0.5  # of full scale: RMS 0.5 / sqrt(2) of 32767
RING_S = 4.0  # how long a destination ending in 97 rings (sipp-scenarios/uas_selective.xml)
BLOCK = 160  # 20 ms at 8 kHz: 1200 Hz is bin 24 of a block, exactly


# ---------------------------------------------------------------------------- G.711 and measures
def ulaw(byte: int) -> int:
    b = ~byte & 0xFF
    magnitude = (((b & 0x0F) << 3) + 0x84) << ((b & 0x70) >> 4)
    return (0x84 - magnitude) if b & 0x80 else (magnitude - 0x84)


def alaw(byte: int) -> int:
    b = byte ^ 0x55
    exponent = (b & 0x70) >> 4
    mantissa = (b & 0x0F) << 4
    value = mantissa + 8 if exponent == 0 else (mantissa + 0x108) << (exponent - 1)
    return value if b & 0x80 else -value


_ULAW = [ulaw(i) for i in range(256)]
_ALAW = [alaw(i) for i in range(256)]


def decoded(packets: list[RtpPacket]) -> list[int]:
    """The audio of the PCMU (0) and PCMA (8) packets, in arrival order, as 16-bit samples."""
    out: list[int] = []
    for p in packets:
        table = _ULAW if p.payload_type == 0 else _ALAW if p.payload_type == 8 else None
        if table is not None:
            out += [table[b] for b in p.payload]
    return out


def tone_share(samples: list[int], hz: float, rate: int = 8000) -> float:
    """The share of the signal's energy at ``hz`` (a Goertzel filter per 20 ms block; a pure
    sine there gives about 1, anything else about 0), over the blocks with any energy."""
    coeff = 2 * math.cos(2 * math.pi * hz / rate)
    at_hz = total = 0.0
    for i in range(0, len(samples) - BLOCK + 1, BLOCK):
        block = samples[i : i + BLOCK]
        s1 = s2 = 0.0
        for x in block:
            s1, s2 = x + coeff * s1 - s2, s1
        power = s1 * s1 + s2 * s2 - coeff * s1 * s2
        at_hz += power / (BLOCK / 2)
        total += sum(x * x for x in block)
    return at_hz / total if total else 0.0


def rms(samples: list[int]) -> float:
    return math.sqrt(sum(x * x for x in samples) / len(samples)) if samples else 0.0


@dataclass(frozen=True)
class Heard:
    """What reached the caller's RTP port while the destination rang (before its 200 OK)."""

    call: SippResult
    samples: list[int]

    @property
    def seconds(self) -> float:
        return len(self.samples) / 8000

    @property
    def share(self) -> float:
        return tone_share(self.samples, TONE_HZ)


_KEYS_PAUSE = '<pause milliseconds="1200"/>'  # uac_dtmf.xml's wait before keying


async def call_and_listen(number: str, caller: str, engine: Engine) -> Heard:
    scenario = Path(tempfile.mkdtemp(prefix="ringback-caller-")) / "caller.xml"
    with MediaPort("127.0.0.2") as media:
        text = render_dtmf("", hold_ms=500)
        assert "m=audio [media_port] " in text and _KEYS_PAUSE in text
        # nothing to key once answered (what is measured is heard before the answer)
        text = text.replace(_KEYS_PAUSE, "")
        scenario.write_text(text.replace("m=audio [media_port] ", f"m=audio {media.port} "))
        result = await asyncio.to_thread(
            run_uac, number, caller, scenario=str(scenario), hold_ms=500, timeout_s=30, target=engine.carrier
        )
    assert result.final_status == 200, result.message_log[-1500:]
    (answered_at,) = received_at(result.message_log, "SIP/2.0 200")[:1]
    return Heard(result, decoded([p for p in media.packets if p.at < answered_at - 0.02]))


def the_tone(path: Path) -> float:
    """sox's test tone; returns its RMS (16-bit full scale)."""
    cmd = ["sox", "-n", "-r", "8000", "-c", "1", "-b", "16", str(path), "synth", str(TONE_SECONDS)]
    subprocess.run([*cmd, "sine", str(TONE_HZ), "vol", str(TONE_VOLUME)], check=True)
    with wave.open(str(path)) as w:
        frames = w.readframes(w.getnframes())
    samples = [int.from_bytes(frames[i : i + 2], "little", signed=True) for i in range(0, len(frames), 2)]
    return rms(samples)


def next_month(today: date) -> date:
    return date(today.year + today.month // 12, today.month % 12 + 1, 1)


# ---------------------------------------------------------------------------- the test
async def test_callers_hear_the_numbers_tone_while_it_rings_and_others_the_default(
    db: asyncpg.Connection,
    service: ServiceProcess,
    destination_carrier: SippUas,
    engine: Engine,
    tmp_path: Path,
) -> None:
    tenant, number_id, number = active_number(service)
    bind(service, tenant, number_id, mobile("97"))
    plain_tenant, plain_id, plain = active_number(service)
    bind(service, plain_tenant, plain_id, mobile("97"))

    file_rms = the_tone(tmp_path / "tone.wav")
    made = api_ok(
        service.request(
            "PUT",
            f"/v1/tenants/{tenant}/ringback-tones/test-{TONE_HZ}/audio",
            content=(tmp_path / "tone.wav").read_bytes(),
        ),
        201,
    )
    assert made["seconds"] == f"{TONE_SECONDS:.2f}", made
    applied = changed(
        service, "PUT", f"/v1/tenants/{tenant}/numbers/{number_id}/ringback", 201, json={"tone": made["name"]}
    )
    # the service runs on real time: applied today, it plays from the first of next month
    starts = next_month(datetime.now(ZoneInfo("Asia/Shanghai")).date())
    assert applied["playing"] is None and applied["applications"][0]["effective_on"] == str(starts), applied

    # this month: applied, not in effect yet -> the default ring
    pending = await call_and_listen(number, unique_caller(), engine)
    assert pending.share < 0.2, (pending.share, pending.seconds)

    # from its month on (the clock pinned two days in): the tone, for as long as it rings
    when = datetime.combine(starts + timedelta(days=2), datetime.min.time(), ZoneInfo("Asia/Shanghai"))
    with restarted(service, SOFTSWITCH_FIXED_NOW=when.replace(hour=10).isoformat()) as pinned:
        now_playing = api_ok(pinned.request("GET", f"/v1/tenants/{tenant}/numbers/{number_id}/ringback"))
        assert now_playing["playing"] == made["name"], now_playing
        caller = unique_caller()
        # both numbers called at once, each caller listening on its own port
        heard, other = await asyncio.gather(
            call_and_listen(number, caller, engine), call_and_listen(plain, unique_caller(), engine)
        )
        row = await call_row(db, caller)

    for what, h in (("pending", pending), ("tone", heard), ("no tone", other)):
        print(
            f"{engine.name} {what}: {h.seconds:.2f} s of audio while ringing, "
            f"{TONE_HZ} Hz share {h.share:.3f}, RMS {rms(h.samples):.0f} (file {file_rms:.0f})"
        )
    assert row["reason"] == "ROUTED" and row["tenant_id"] == tenant, dict(row)
    # the tone: its frequency carries the audio, at the file's level, looping past its 2 s
    assert heard.share > 0.8, (heard.share, heard.seconds)
    assert heard.seconds >= TONE_SECONDS + 0.5, heard.seconds
    assert heard.seconds <= RING_S + 0.5, heard.seconds
    assert 0.6 * file_rms <= rms(heard.samples) <= 1.4 * file_rms, (rms(heard.samples), file_rms)
    # a number without a tone rings the default: not the tone's frequency (or nothing at all)
    assert other.share < 0.2, (other.share, other.seconds)
