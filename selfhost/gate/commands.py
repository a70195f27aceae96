"""`selfhost gate`: after a deploy, does the endpoint deliver what its cost review projected? (issue 14)

Exit 0 when every check passes, 1 when one fails (the pipeline then rolls back or tears down), 2 on bad input.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from costing.errors import UserError


def _read_json(path: Path, what: str, produced_by: str):
    if not path.is_file():
        raise UserError(f"{what} file '{path}' not found", f"pass the JSON written by `{produced_by}`")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{what} file '{path}' is not JSON ({err.msg})", f"pass the JSON of `{produced_by}`") from None


def register(app: typer.Typer) -> None:
    @app.command()
    def gate(
        bench: Path = typer.Option(..., "--bench", help="`selfhost bench --output` JSON of the new endpoint"),
        review: Path = typer.Option(..., "--review", help="`selfhost plan --format json` of the deployed spec"),
        min_ratio: float | None = typer.Option(0.8, "--min-ratio", help="measured/projected output tok/s floor"),
        min_output_tokens_per_s: float | None = typer.Option(
            None, "--min-output-tokens-per-s", help="absolute output tok/s floor"
        ),
        max_failed_requests: int = typer.Option(0, "--max-failed-requests", help="failed bench requests allowed"),
        fmt: str = typer.Option("table", "--format", help="table or json"),
    ) -> None:
        """Post-deploy gate: measured output tok/s against the review's projection; exit 1 when it falls short."""
        from costing.money.measured_gate import GateRules, evaluate, render_text

        if fmt not in ("table", "json"):
            raise UserError(f"unknown --format {fmt}", "use table or json")
        rules = GateRules(min_ratio, min_output_tokens_per_s, max_failed_requests)
        result = evaluate(
            _read_json(bench, "bench", "selfhost bench --output FILE"),
            _read_json(review, "review", "selfhost plan --format json"),
            rules,
        )
        typer.echo(json.dumps(result.to_dict(), indent=2) if fmt == "json" else render_text(result), nl=fmt == "json")
        if not result.passed:
            raise typer.Exit(1)
