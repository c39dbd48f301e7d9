"""decide_recording: the tenant's policy, overridden per number or extension, by direction;
nothing new is recorded past the storage's high-water mark. Plus the WAV facts and the
path guard the purge and the API rely on."""

from __future__ import annotations

import wave
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dialplan.recording import decide_recording
from dialplan.snapshot import ConfigSnapshot, Extension, Tenant, UnifiedNumber
from softswitch.callpath.recorder import CALL_ID, host_path, wav_facts

NOW = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


def snap(tenant_policy: str, number_policy: str | None = None, ext_policy: str | None = None, announce=True):  # type: ignore[no-untyped-def]
    return ConfigSnapshot.build(
        [Tenant(1, "acme", "active", recording_policy=tenant_policy, recording_announce=announce)],
        [UnifiedNumber(10, "4001234567", "active", 1, recording_policy=number_policy)],
        NOW,
        1,
        extensions=[Extension(1, "801", "t1x801", recording_policy=ext_policy)],
    )


@pytest.mark.parametrize(
    ("policy", "direction", "mode"),
    [
        ("all", "inbound", "record"),
        ("all", "outbound", "record"),
        ("all", "internal", "record"),
        ("inbound", "inbound", "record"),
        ("inbound", "outbound", "off"),
        ("outbound", "outbound", "record"),
        ("outbound", "inbound", "off"),
        ("outbound", "internal", "off"),
        ("none", "inbound", "off"),
        ("on_demand", "inbound", "on_demand"),
        ("on_demand", "outbound", "on_demand"),
    ],
)
def test_tenant_policy_by_direction(policy: str, direction: str, mode: str) -> None:
    kw = {"number": "4001234567"} if direction == "inbound" else {"endpoint": "t1x801"}
    d = decide_recording(snap(policy), 1, direction, **kw)  # type: ignore[arg-type]
    assert d.mode == mode
    assert d.announce == (mode != "off")
    assert d.why == ("tenant" if mode != "off" else "tenant")


def test_number_and_extension_override_the_tenant() -> None:
    s = snap("none", number_policy="all", ext_policy="outbound")
    inbound = decide_recording(s, 1, "inbound", number="4001234567")
    assert (inbound.mode, inbound.why) == ("record", "number")
    outbound = decide_recording(s, 1, "outbound", endpoint="t1x801")
    assert (outbound.mode, outbound.why) == ("record", "extension")
    quiet = decide_recording(snap("all", number_policy="none"), 1, "inbound", number="4001234567")
    assert quiet.mode == "off" and quiet.policy == "none"


def test_no_announcement_when_the_tenant_says_so() -> None:
    d = decide_recording(snap("all", announce=False), 1, "inbound", number="4001234567")
    assert d.mode == "record" and not d.announce


def test_unknown_tenant_is_not_recorded() -> None:
    assert decide_recording(snap("all"), 99, "inbound").mode == "off"
    assert decide_recording(snap("all"), None, "inbound").mode == "off"


def test_high_water_stops_new_recordings() -> None:
    d = decide_recording(snap("all"), 1, "inbound", number="4001234567", storage_full=True)
    assert (d.mode, d.why, d.announce) == ("off", "stopped_high_water", False)
    # a call that would not be recorded anyway is not "stopped"
    assert decide_recording(snap("none"), 1, "inbound", storage_full=True).why == "tenant"


def test_wav_facts(tmp_path: Path) -> None:
    f = tmp_path / "a.wav"
    with wave.open(str(f), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x01" * 8000 * 3)
    facts = wav_facts(f)
    assert facts.status == "stored" and facts.duration_s == 3.0 and facts.size == f.stat().st_size
    assert facts.sha256 and len(facts.sha256) == 64
    empty = tmp_path / "b.wav"
    with wave.open(str(empty), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
    assert wav_facts(empty).status == "empty"
    assert wav_facts(tmp_path / "none.wav").status == "missing"


SPOOL = "/var/spool/asterisk/monitor/softswitch"


@pytest.mark.parametrize(
    "path",
    [
        "/etc/passwd",
        f"{SPOOL}/../../../../../etc/passwd",
        f"{SPOOL}/1/../../x.wav",
        "relative/1/x.wav",
        SPOOL,
    ],
)
def test_paths_outside_the_spool_are_refused(tmp_path: Path, path: str) -> None:
    assert host_path(tmp_path, SPOOL, path) is None


def test_a_path_inside_the_spool_maps_into_the_chroot(tmp_path: Path) -> None:
    inside = tmp_path / SPOOL.lstrip("/") / "7" / "1.2.wav"
    assert host_path(tmp_path, SPOOL, f"{SPOOL}/7/1.2.wav") == inside


@pytest.mark.parametrize(
    ("call_id", "ok"),
    [
        ("1700000000.12", True),
        ("softswitch-1795321713.3684", True),  # Asterisk's systemname prefix
        ("../1700000000.12", False),
        ("a/b-1.2", False),
        ("1700000000", False),
        ("", False),
        ("f091a583-c1f6-49cf-a67f-c305d8d7f588", True),  # FreeSWITCH's call UUID
        ("f091a583-c1f6-49cf-a67f-c305d8d7f588/..", False),
        ("F091A583-C1F6-49CF-A67F-C305D8D7F588", False),  # FreeSWITCH writes lower case
        ("f091a583-c1f6-49cf-a67f-c305d8d7f58", False),
    ],
)
def test_only_the_engines_call_ids_become_file_names(call_id: str, ok: bool) -> None:
    assert bool(CALL_ID.match(call_id)) is ok
