"""`selfhost estimate`, `selfhost plan`, `selfhost compare` (issue 2)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the costing commands."""
