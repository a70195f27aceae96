"""`selfhost smoke` and `selfhost bench` (issue 5)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the check commands to the top-level app."""
