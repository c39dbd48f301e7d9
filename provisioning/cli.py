"""Operator CLI commands over the provisioning service layer (filled in by the CLI work)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the operator's sub-commands to the `softswitch` command."""
    del app
