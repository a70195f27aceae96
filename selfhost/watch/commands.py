"""`selfhost watch`: the decisions a fresh price snapshot flips (costing engine only: no SDK, no HTTP client)."""

from __future__ import annotations

from pathlib import Path

import typer

from costing.errors import UserError

FLIPPED_EXIT = 2  # issue 28: a flipped decision fails the check, as an over-budget review does


def register(app: typer.Typer) -> None:
    @app.command()
    def watch(
        specs: list[Path] = typer.Argument(None, help="deployment spec files to re-review"),
        prices: Path = typer.Option(..., "--prices", help="the fresh snapshot (`selfhost prices refresh` JSON)"),
        baseline: Path | None = typer.Option(
            None, "--baseline", help="the snapshot the decisions were made with (default: the shipped one)"
        ),
        fmt: str = typer.Option("table", "--format", help="table | json | markdown"),
    ) -> None:
        """Re-review specs under fresh prices; name the decisions that flip (cheapest offer, self-host vs managed
        vs API, over budget). Exit 2 when one does."""
        from costing.money.watch import render_watch, watch

        if fmt not in ("table", "json", "markdown"):
            raise UserError(f"unknown format '{fmt}'", "use --format with one of: table, json, markdown")
        result = watch(list(specs or []), prices, baseline)
        typer.echo(render_watch(result, fmt, prices, baseline), nl=False)
        if result[2]:
            typer.echo(f"error: {len(result[2])} decision(s) flipped under {prices}.", err=True)
            raise typer.Exit(FLIPPED_EXIT)
