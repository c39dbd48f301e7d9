"""The local stack's generated secrets: made once (mode 0600), kept by every later `stack up`,
found by the settings by default (the environment still overrides), and the ones the
engines' rendered configs carry — no fixed default secret left in them."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from scripts.devstack.stack import LocalStack, StackError
from softswitch.core.settings import Settings
from softswitch.core.stack_secrets import (
    FORMER_DEFAULTS,
    SECRET_FIELDS,
    ensure_secrets,
    read_secrets,
    with_generated,
)


@pytest.fixture
def stack_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Settings of a stack living in tmp_path (its chroot with an empty module dir)."""
    for key in list(os.environ):
        if key.startswith("SOFTSWITCH_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("SOFTSWITCH_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("SOFTSWITCH_STACK__DIR", str(tmp_path))
    monkeypatch.setenv("SOFTSWITCH_ASTERISK__CHROOT", str(tmp_path / "root"))
    (tmp_path / "root" / "usr" / "lib" / "x86_64-linux-gnu" / "asterisk" / "modules").mkdir(parents=True)
    return tmp_path


# A secret's value in Asterisk's ini files and FreeSWITCH's XML (params, the CDR's conninfo,
# the directory's basic auth).
SECRET_VALUE = re.compile(
    r'(?:^(?:secret|password|dbpass)\s*=\s*(\S+)$|name="password" value="([^"]*)"'
    r'|\bpassword=(\S+)|value="freeswitch:([^"]*)")',
    re.M,
)


def counter_tokens() -> object:
    n = iter(range(100))
    return lambda: f"tok{next(n)}"


def test_missing_and_former_default_secrets_are_generated_the_others_kept() -> None:
    kept = {"ami": {"secret": "mine"}, "database": {"password": "softswitch"}}
    out = with_generated(kept, counter_tokens())  # type: ignore[arg-type]
    assert out["ami"]["secret"] == "mine"
    assert out["database"]["password"] == "tok0"  # the old fixed default is replaced
    assert {(s, k) for s, keys in out.items() for k in keys} == set(SECRET_FIELDS)
    assert kept == {"ami": {"secret": "mine"}, "database": {"password": "softswitch"}}  # not mutated


def test_the_file_is_made_once_with_mode_0600_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    before, first = ensure_secrets(path)
    assert before == {} and first != before
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    values = [first[s][k] for s, k in SECRET_FIELDS]
    assert len(set(values)) == len(values) and all(len(v) >= 32 for v in values)
    assert not set(values) & FORMER_DEFAULTS
    again_before, again = ensure_secrets(path)
    assert again_before == again == first  # a second stack up keeps them
    assert read_secrets(path) == first
    path.chmod(0o644)  # loosened by hand: the next stack up tightens it
    ensure_secrets(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_broken_file_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="secrets.json"):
        read_secrets(path)


def test_settings_find_the_generated_secrets_and_the_environment_overrides(
    stack_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert Settings().ami.secret.get_secret_value() == ""  # none before the first stack up
    _before, now = ensure_secrets(stack_dir / "secrets.json")
    s = Settings()
    for section, key in SECRET_FIELDS:
        assert getattr(getattr(s, section), key).get_secret_value() == now[section][key]
    assert now["database"]["password"] in s.database.dsn()
    monkeypatch.setenv("SOFTSWITCH_AMI__SECRET", "from-env")
    assert Settings().ami.secret.get_secret_value() == "from-env"


def test_stack_up_twice_renders_the_same_generated_secrets(stack_dir: Path) -> None:
    first = LocalStack(Settings())  # settings loaded before the file existed: filled in
    assert first.ensure_secrets() is True
    kept = json.loads((stack_dir / "secrets.json").read_text())
    ast, fs = first.render_asterisk_config(), first.render_freeswitch_config()
    second = LocalStack(Settings())
    assert second.ensure_secrets() is False
    assert second.render_asterisk_config() == ast and second.render_freeswitch_config() == fs
    assert f"secret = {kept['ami']['secret']}\n" in ast["manager.conf"]
    assert f"password = {kept['asterisk']['db_password']}\n" in ast["cdr_pgsql.conf"]
    assert f'name="password" value="{kept["freeswitch"]["esl_password"]}"' in fs["event_socket.conf.xml"]
    assert f"password={kept['asterisk']['db_password']} " in fs["cdr_pg_csv.conf.xml"]
    # Every secret any rendered file carries is a generated one.
    rendered = "\n".join([*ast.values(), *fs.values()])
    found = {next(g for g in m.groups() if g is not None) for m in SECRET_VALUE.finditer(rendered)}
    assert len(found) >= 3, found
    assert found <= {kept[s][k] for s, k in SECRET_FIELDS}, found


def test_an_existing_stack_on_the_former_fixed_secrets_moves_to_generated_ones(stack_dir: Path) -> None:
    (stack_dir / "secrets.json").write_text(
        json.dumps({"ami": {"secret": "softswitch-ami"}, "database": {"password": "softswitch"}})
    )
    s = Settings()
    assert s.ami.secret.get_secret_value() == "softswitch-ami"
    LocalStack(s).ensure_secrets()
    assert s.ami.secret.get_secret_value() != "softswitch-ami"
    assert s.ami.secret.get_secret_value() in LocalStack(s).render_asterisk_config()["manager.conf"]
    assert Settings().ami.secret.get_secret_value() == s.ami.secret.get_secret_value()


def test_a_secret_from_the_environment_is_rendered_not_replaced(
    stack_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOFTSWITCH_FREESWITCH__ESL_PASSWORD", "operator-chosen")
    st = LocalStack(Settings())
    st.ensure_secrets()
    assert 'value="operator-chosen"' in st.render_freeswitch_config()["event_socket.conf.xml"]


def test_no_config_is_rendered_without_a_secret(stack_dir: Path) -> None:
    s = Settings()
    s.ami.secret = SecretStr("")
    with pytest.raises(StackError, match=r"ami\.secret"):
        LocalStack(s).render_asterisk_config()
