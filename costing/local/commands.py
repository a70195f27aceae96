"""`selfhost up local` and `selfhost down local` (issue 5)."""

from __future__ import annotations

import typer


def register(up_app: typer.Typer, down_app: typer.Typer) -> None:
    """Add the local target to the up and down groups."""
