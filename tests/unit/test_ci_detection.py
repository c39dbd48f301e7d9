"""A real-stack test skips only outside CI; which CI values count as CI."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import is_ci

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("value", "in_ci"),
    [
        ("true", True),
        ("1", True),
        ("yes", True),
        ("True", True),
        (None, False),
        ("", False),
        ("0", False),
        ("false", False),
    ],
)
def test_any_truthy_ci_value_counts(value: str | None, in_ci: bool) -> None:
    assert is_ci(value) is in_ci


def test_ci_run_sets_ci_itself() -> None:
    # .ci/run exports CI before `make test`: run the script with `make test` replaced by a print.
    script = (ROOT / ".ci" / "run").read_text().replace("make test", 'echo "CI=$CI"')
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    out = subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "CI=true", out.stdout
