"""Shared test policy: tests that need the real stack skip on a laptop without it, and
fail — never skip — when CI=true."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

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
    """Skip without the stack — unless CI=true, where a missing stack is a failure."""
    reason = stack_missing_reason(settings)
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"CI=true and the real stack is missing: {reason}")
    pytest.skip(reason)


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    # Playwright's sync API keeps an event loop running in this thread from the first
    # browser test to the end of the session, and asyncio.run / pytest-asyncio refuse to
    # start one then: the browser tests run last (the sort is stable: their order stays).
    items.sort(key=lambda item: item.nodeid.startswith("tests/e2e/portal/"))
