"""`selfhost render sky` and `selfhost launch sky` (issue 3)."""

from __future__ import annotations

import typer


def register(render_app: typer.Typer, launch_app: typer.Typer) -> None:
    """Add the SkyPilot commands to the render and launch groups."""
