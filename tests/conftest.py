"""Shared test policy: tests that need the real stack skip on a laptop without it, and
fail — never skip — when CI=true; and hold it (the stack lock) while they use it."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import pytest

from scripts.devstack.stack import shared_use
from softswitch.core.settings import Settings


def is_ci(value: str | None) -> bool:
    """Any truthy CI value counts (GitHub sets "true", others "1" or "yes"); .ci/run sets
    it itself."""
    return (value or "").strip().lower() not in ("", "0", "false", "no", "off")


IN_CI = is_ci(os.environ.get("CI"))


def stack_missing_reason(settings: Settings) -> str | None:
    if not shutil.which("sipp"):
        return "sipp is not installed (scripts/bootstrap.sh installs it)"
    if not (Path(settings.asterisk.chroot) / "usr/sbin/asterisk").exists():
        return f"no Asterisk chroot at {settings.asterisk.chroot} (scripts/bootstrap.sh)"
    if not Path("/usr/lib/postgresql/15/bin/initdb").exists():
        return "PostgreSQL 15 is not installed (scripts/bootstrap.sh)"
    return None


def require_stack(settings: Settings) -> None:
    """Skip without the stack — unless CI=true, where a missing stack is a failure. With
    it, the session holds the stack shared from here to its end (see _SESSION_HOLD)."""
    reason = stack_missing_reason(settings)
    if reason is None:
        _hold_shared(settings)
        return
    if IN_CI:
        pytest.fail(f"CI=true and the real stack is missing: {reason}")
    pytest.skip(reason)


# The stack lock held shared by this test session once a test needs the stack (tests/api,
# tests/db, the CLI tests on the database): another process's e2e session, benchmark or
# `stack up/down` (exclusive) waits until this session ends, and this session waits for
# theirs — no one restarts PostgreSQL under the other. The lock is reentrant within the
# process, so tests/e2e's exclusive hold (its `stack` fixture) joins this one.
_SESSION_HOLD = contextlib.ExitStack()
_HELD_DIRS: set[Path] = set()


def _hold_shared(settings: Settings) -> None:
    if settings.stack.dir not in _HELD_DIRS:
        _SESSION_HOLD.enter_context(shared_use(settings))
        _HELD_DIRS.add(settings.stack.dir)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _SESSION_HOLD.close()
    _HELD_DIRS.clear()


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    # Playwright's sync API keeps an event loop running in this thread from the first
    # browser test to the end of the session, and asyncio.run / pytest-asyncio refuse to
    # start one then: the browser tests run last (the sort is stable: their order stays).
    items.sort(key=lambda item: item.nodeid.startswith("tests/e2e/portal/"))
