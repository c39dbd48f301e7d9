"""Settings (TOML + env), phone-number masking and the injected clock."""

from __future__ import annotations

import os
import tomllib
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError

from softswitch.core.clock import FixedClock, PinnedClock, SystemClock, clock_from_setting
from softswitch.core.masking import mask_number
from softswitch.core.settings import Settings
from softswitch.core.stack_secrets import SECRET_FIELDS

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No SOFTSWITCH_* from the developer's shell, and no ./softswitch.toml picked up."""
    for key in list(os.environ):
        if key.startswith("SOFTSWITCH_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("SOFTSWITCH_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("SOFTSWITCH_SECRETS_FILE", str(tmp_path / "absent-secrets.json"))
    return tmp_path


def write_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text: str) -> Path:
    path = tmp_path / "softswitch.toml"
    path.write_text(text)
    monkeypatch.setenv("SOFTSWITCH_CONFIG", str(path))
    return path


# --- Settings ----------------------------------------------------------------------------


def test_defaults() -> None:
    s = Settings()
    assert (s.database.host, s.database.port, s.database.name) == ("127.0.0.1", 55432, "softswitch")
    # No fixed secrets: `stack up` generates them (tests/unit/test_stack_secrets.py).
    assert s.database.password.get_secret_value() == ""
    assert s.database.dsn() == "postgresql://softswitch:@127.0.0.1:55432/softswitch"
    assert (s.agi.host, s.agi.port) == ("127.0.0.1", 4573)
    assert (s.ami.port, s.ami.username) == (5038, "softswitch")
    assert s.ami.secret.get_secret_value() == ""
    assert s.http.port == 8080
    assert s.asterisk.chroot == Path("/opt/softswitch-stack/asterisk-root")
    assert s.stack.dir == Path("/opt/softswitch-stack")
    assert s.log_level == "INFO"
    assert s.fixed_now == ""


def test_toml_file_from_softswitch_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_config(
        monkeypatch,
        tmp_path,
        'log_level = "DEBUG"\n[agi]\nport = 4600\n[database]\nhost = "db.example"\npassword = "pw"\n',
    )
    s = Settings()
    assert s.log_level == "DEBUG"
    assert s.agi.port == 4600
    assert s.agi.host == "127.0.0.1"  # the rest of a section keeps its defaults
    assert s.database.host == "db.example"
    assert s.database.password.get_secret_value() == "pw"


def test_env_overrides_toml_with_nested_delimiter(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_config(monkeypatch, tmp_path, "[agi]\nport = 4600\n")
    monkeypatch.setenv("SOFTSWITCH_AGI__PORT", "4700")
    monkeypatch.setenv("SOFTSWITCH_AMI__SECRET", "from-env")
    monkeypatch.setenv("SOFTSWITCH_LOG_LEVEL", "WARNING")
    s = Settings()
    assert s.agi.port == 4700
    assert s.ami.secret.get_secret_value() == "from-env"
    assert s.log_level == "WARNING"


def test_env_without_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOFTSWITCH_HTTP__PORT", "8081")
    assert Settings().http.port == 8081


def test_env_value_of_the_wrong_type_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOFTSWITCH_AGI__PORT", "not-a-port")
    with pytest.raises(ValidationError):
        Settings()


@pytest.mark.parametrize(
    "text",
    ["bogus = 1\n", "[bogus]\nx = 1\n", 'log_levle = "DEBUG"\n'],
    ids=["top-level-key", "unknown-section", "typo-top-level"],
)
def test_unknown_top_level_key_in_toml_is_rejected(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text: str
) -> None:
    write_config(monkeypatch, tmp_path, text)
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        Settings()


def test_unknown_key_inside_a_section_is_rejected(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_config(monkeypatch, tmp_path, "[agi]\nprot = 4600\n")  # typo of port
    with pytest.raises(ValidationError):
        Settings()


def test_secrets_are_not_in_repr(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    kept = tmp_path / "secrets.json"
    kept.write_text(
        '{"ami": {"secret": "gen-ami"}, "database": {"password": "gen-db"}, '
        '"asterisk": {"db_password": "gen-ast"}}'
    )
    monkeypatch.setenv("SOFTSWITCH_SECRETS_FILE", str(kept))
    s = Settings()
    assert s.ami.secret.get_secret_value() == "gen-ami"
    for text in (repr(s), str(s), repr(s.ami), repr(s.database), repr(s.asterisk)):
        assert "gen-" not in text
        assert "**********" in text


def test_custom_secrets_are_not_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOFTSWITCH_AMI__SECRET", "s3cr3t-ami-value")
    monkeypatch.setenv("SOFTSWITCH_DATABASE__PASSWORD", "s3cr3t-db-value")
    monkeypatch.setenv("SOFTSWITCH_ASTERISK__DB_PASSWORD", "s3cr3t-ast-value")
    s = Settings()
    for text in (repr(s), str(s), s.model_dump_json()):
        assert "s3cr3t" not in text
    assert s.ami.secret.get_secret_value() == "s3cr3t-ami-value"


def test_example_toml_loads_and_equals_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = Settings()
    monkeypatch.setenv("SOFTSWITCH_CONFIG", str(REPO_ROOT / "softswitch.example.toml"))
    loaded = Settings()
    assert loaded == defaults
    # SecretStr compares by value, but be explicit about the secrets too.
    assert loaded.ami.secret.get_secret_value() == defaults.ami.secret.get_secret_value()
    assert loaded.database.password.get_secret_value() == defaults.database.password.get_secret_value()
    assert loaded.asterisk.db_password.get_secret_value() == defaults.asterisk.db_password.get_secret_value()


def test_example_toml_mentions_every_setting() -> None:
    data = tomllib.loads((REPO_ROOT / "softswitch.example.toml").read_text())
    defaults = Settings()
    for name in Settings.model_fields:
        value = getattr(defaults, name)
        if hasattr(type(value), "model_fields"):
            # The generated secrets are there as comments (a value would override the file).
            generated = {key for section, key in SECRET_FIELDS if section == name}
            assert set(data[name]) | generated == set(type(value).model_fields), name
        elif name != "fixed_now":  # documented as a comment: empty means real time
            assert name in data, name


# --- masking -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("13800138000", "138****8000"),  # 11-digit mobile
        ("02112345678", "021****5678"),  # fixed line with area code
        ("021-12345678", "021-****5678"),  # separators kept
        ("+8613800138000", "+861******8000"),
        ("4001234567", "400***4567"),  # unified number
        ("12345678", "123*5678"),  # 8 digits: the shortest that is masked
        ("1234567", "1234567"),  # 7 digits: a short number stays readable
        ("8001", "8001"),  # extension
        ("95123", "95123"),
        ("anonymous", "anonymous"),
        ("", ""),
        (None, ""),
    ],
)
def test_mask_number(value: str | None, masked: str) -> None:
    assert mask_number(value) == masked


@pytest.mark.parametrize("value", ["13800138000", "02112345678", "+8613800138000", "4001234567"])
def test_masked_number_keeps_length_and_never_contains_the_whole(value: str) -> None:
    masked = mask_number(value)
    assert len(masked) == len(value)
    assert value not in masked
    assert "*" in masked


# --- clock -------------------------------------------------------------------------------


def test_fixed_clock_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="aware"):
        FixedClock(datetime(2026, 11, 23, 22, 30))


def test_fixed_clock_returns_its_instant() -> None:
    at = datetime(2026, 11, 23, 22, 30, tzinfo=timezone(timedelta(hours=8)))
    assert FixedClock(at).now() == at


def test_clock_from_empty_setting_is_a_system_clock_in_utc() -> None:
    clock = clock_from_setting("")
    assert isinstance(clock, SystemClock)
    before = datetime.now(UTC)
    now = clock.now()
    after = datetime.now(UTC)
    assert now.tzinfo is not None and now.utcoffset() == timedelta(0)
    assert before <= now <= after


def test_clock_from_iso_setting_starts_there_and_runs_on() -> None:
    clock = clock_from_setting("2026-11-23T22:30:00+08:00")
    assert isinstance(clock, PinnedClock)
    start = datetime(2026, 11, 23, 14, 30, tzinfo=UTC)
    assert start <= clock.now() < start + timedelta(seconds=5)


def test_a_pinned_clock_advances_with_elapsed_time() -> None:
    ticks = iter([100.0, 100.0, 103.5])  # started, then two reads
    clock = PinnedClock(datetime(2026, 11, 23, 14, 30, tzinfo=UTC), monotonic=lambda: next(ticks))
    assert clock.now() == datetime(2026, 11, 23, 14, 30, tzinfo=UTC)
    assert clock.now() == datetime(2026, 11, 23, 14, 30, 3, 500000, tzinfo=UTC)


def test_clock_from_naive_iso_setting_is_refused() -> None:
    with pytest.raises(ValueError):
        clock_from_setting("2026-11-23T22:30:00")
