"""The log audit of a whole e2e session (issue 19, item 5). Runs last (its name, and the
sort in tests/e2e/conftest.py puts it after the browser tests) and reads every line the
session wrote:

  * the service's own logs: every `softswitch serve` the session started
    (/tmp/softswitch-e2e-*.log, emptied at the session's start; a test that empties a
    second instance's log for itself leaves only its last use to read);
  * the third parties' logs under <stack dir>/logs (Asterisk, FreeSWITCH, PostgreSQL),
    from the size they had at the session's start.

Everywhere: no secret, as an exact substring — the stack's generated secrets
(secrets.json: database, Asterisk's database login, AMI, Event Socket), the admin API
token of the harness, every password and token the session sent the service or got from
it (tests/e2e/conftest.py's SessionLogs) and every test module's PASSWORD constant.
Secrets of digits only and shorter than 12 (IVR self-service PINs like 246810) are left
out: a linkedid or a timestamp holds such runs of digits by chance; so are values shorter
than 6 characters (a validation test's deliberately short password).

In the service's lines only: no unmasked phone number (a Chinese mobile, a 400/800
number); numbers are logged as softswitch.core.masking.mask_number makes them
(138****8000). The engines log the numbers they switch whole, as they always do: their
logs are checked for secrets only."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

from scripts.devstack.process import ServiceProcess
from softswitch.core.settings import Settings
from softswitch.core.stack_secrets import read_secrets, secrets_path
from tests.e2e.conftest import SERVICE_LOGS, SessionLogs, engine_logs

pytestmark = pytest.mark.stack

# A number stands alone: digits inside an identifier (a call's UUID such as
# ...-15095358325d) are not a phone number.
UNMASKED = re.compile(r"(?<![0-9A-Za-z])(?:1[3-9]\d{9}|[48]00\d{7})(?![0-9A-Za-z])")
SHOWN = 20


def session_secrets(settings: Settings, service: ServiceProcess, logs: SessionLogs) -> set[str]:
    kept = read_secrets(secrets_path(settings.stack.dir))
    found = {v for section in kept.values() for v in section.values()}
    found |= {
        settings.database.password.get_secret_value(),
        settings.asterisk.db_password.get_secret_value(),
        settings.ami.secret.get_secret_value(),
        settings.freeswitch.esl_password.get_secret_value(),
        service.token,
    }
    found |= logs.sent_secrets
    for name, module in list(sys.modules.items()):
        if name.startswith("tests.e2e"):
            found |= {v for k, v in vars(module).items() if k.endswith("PASSWORD") and isinstance(v, str)}
    return {s for s in found if len(s) >= 6 and not (s.isdigit() and len(s) < 12)}


def lines_since(path: Path, offset: int) -> Iterable[tuple[str, str]]:
    """(where, line) of the lines past `offset` (from the start if the file shrank)."""
    with open(path, "rb") as f:
        f.seek(0, 2)
        f.seek(offset if f.tell() >= offset else 0)
        for n, raw in enumerate(f, 1):
            yield f"{path.name}+{n}", raw.decode("utf-8", "replace").rstrip("\n")


def report(what: str, hits: list[str]) -> str:
    shown = "\n".join(hits[:SHOWN])
    return f"{len(hits)} log line(s) with {what} (first {min(len(hits), SHOWN)}):\n{shown}"


def test_no_secret_and_no_unmasked_number_in_any_log_line_of_the_session(
    settings: Settings, service: ServiceProcess, session_logs: SessionLogs
) -> None:
    secrets = session_secrets(settings, service, session_logs)
    assert service.token in secrets and settings.ami.secret.get_secret_value() in secrets

    service_logs = sorted(Path("/tmp").glob(SERVICE_LOGS))
    assert service.log_path in service_logs
    service_lines = [line for path in service_logs for line in lines_since(path, 0)]
    assert any("softswitch serving" in text for _w, text in service_lines), "the service's log is empty"
    offsets = session_logs.offsets
    engine_lines = [ln for path in engine_logs(settings) for ln in lines_since(path, offsets.get(path, 0))]

    leaked = [
        f"{where}: {text.replace(secret, _label(secret))[:400]}"
        for where, text in service_lines + engine_lines
        for secret in secrets
        if secret in text
    ]
    unmasked = [f"{where}: {text[:400]}" for where, text in service_lines if UNMASKED.search(text)]
    assert not leaked, report("a secret", leaked)
    assert not unmasked, report("an unmasked phone number", unmasked)


def _label(secret: str) -> str:
    """How a leaked secret is shown in the failure: never the secret itself."""
    return f"<a secret of {len(secret)} characters starting {secret[:2]!r}>"
