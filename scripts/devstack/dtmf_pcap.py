"""RFC 2833/4733 telephone-event packets as pcap files for SIPp's play_pcap_audio.

SIPp's own captures (/usr/share/sip-tester/dtmf_2833_*.pcap) each carry fixed RTP
sequence numbers and timestamps, so a digit whose capture has lower numbers than the
previous one ("1" after "9") looks old to the receiver and is dropped. These are made for
one call: sequence numbers and timestamps keep increasing from one digit to the next."""

from __future__ import annotations

import struct
from pathlib import Path

EVENTS = {**{str(d): d for d in range(10)}, "*": 10, "#": 11}
PAYLOAD_TYPE = 101
PACKET_MS = 20
TONE_PACKETS = 6  # 120 ms of tone, then three end packets
SSRC = 0x5050F00D


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _frame(payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", 6000, 6000, 8 + len(payload), 0) + payload
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1])
    )
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return b"\0" * 12 + b"\x08\x00" + ip + udp


def digit_pcaps(digits: str, directory: Path, gap_ms: int) -> list[Path]:
    """One pcap per digit, numbered on from the previous one (each starts at time 0 of its
    own file, as SIPp plays each file from its start)."""
    seq, timestamp = 1000, 80000
    out = []
    for i, d in enumerate(digits):
        if d not in EVENTS:
            raise ValueError(f"not a DTMF digit: {d!r}")
        records = []
        for n in range(TONE_PACKETS + 3):
            end = n >= TONE_PACKETS
            duration = min(n + 1, TONE_PACKETS) * PACKET_MS * 8
            event = struct.pack("!BBH", EVENTS[d], (0x80 if end else 0) | 10, duration)
            marker = 0x80 if n == 0 else 0
            rtp = struct.pack("!BBHII", 0x80, marker | PAYLOAD_TYPE, seq, timestamp, SSRC) + event
            seq += 1
            at_ms = n * PACKET_MS if not end else TONE_PACKETS * PACKET_MS
            frame = _frame(rtp)
            records.append(
                struct.pack("<IIII", at_ms // 1000, (at_ms % 1000) * 1000, len(frame), len(frame)) + frame
            )
        timestamp += max(gap_ms, 200) * 8
        path = directory / f"dtmf-{i:02d}.pcap"
        path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + b"".join(records))
        out.append(path)
    return out
