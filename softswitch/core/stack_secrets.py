"""The local stack's generated secrets (AMI, Event Socket, the two PostgreSQL logins): made
at random by the first `stack up`, kept in <stack dir>/secrets.json (mode 0600) and read by
the settings as their defaults, so every process of this machine (service, CLI, tests,
benchmarks) uses the secrets the engines were rendered with. Environment variables and the
TOML file still override them."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path

# (settings section, key) of every generated secret.
SECRET_FIELDS: tuple[tuple[str, str], ...] = (
    ("database", "password"),
    ("asterisk", "db_password"),
    ("ami", "secret"),
    ("freeswitch", "esl_password"),
)
FILE_NAME = "secrets.json"
# SOFTSWITCH_SECRETS_FILE points elsewhere (tests; a stack dir given in softswitch.toml).
PATH_ENV = "SOFTSWITCH_SECRETS_FILE"

# The fixed secrets of earlier versions (and FreeSWITCH's stock one): a kept file holding one
# (an existing stack migrated to this file) has it replaced by the next `stack up`.
FORMER_DEFAULTS = frozenset({"softswitch", "softswitch-ami", "asterisk", "softswitch-esl", "ClueCon"})

Secrets = dict[str, dict[str, str]]


def secrets_path(stack_dir: Path, env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env[PATH_ENV]) if env.get(PATH_ENV) else stack_dir / FILE_NAME


def read_secrets(path: Path) -> Secrets:
    """The secrets kept in `path`, by section; {} when there is no file yet. Only the keys of
    SECRET_FIELDS are taken (a hand-edited file cannot set anything else)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable secrets file ({exc})") from None
    out: Secrets = {}
    for section, key in SECRET_FIELDS:
        value = data.get(section, {}).get(key) if isinstance(data.get(section), dict) else None
        if isinstance(value, str) and value:
            out.setdefault(section, {})[key] = value
    return out


def with_generated(existing: Secrets, token: Callable[[], str] | None = None) -> Secrets:
    """`existing` with every missing secret (or a former fixed default) generated, pure
    given `token`; the others stay."""
    make = token or (lambda: secrets.token_urlsafe(24))
    out = {section: dict(keys) for section, keys in existing.items()}
    for section, key in SECRET_FIELDS:
        if out.get(section, {}).get(key, "") in FORMER_DEFAULTS | {""}:
            out.setdefault(section, {})[key] = make()
    return out


def ensure_secrets(path: Path) -> tuple[Secrets, Secrets]:
    """(the secrets kept before, the stack's secrets now): generated and written (0600,
    atomically) the first time. Idempotent: a later call finds both the same."""
    kept = read_secrets(path)
    full = with_generated(kept)
    if full == kept:
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        return kept, kept
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    part.unlink(missing_ok=True)
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(full, fh, indent=2, sort_keys=True)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    part.replace(path)
    return kept, full
