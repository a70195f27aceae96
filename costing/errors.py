"""User-facing errors: one line on stderr naming the problem and the fix, exit code 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or a refused deployment. Nothing has been created when this is raised."""

    exit_code = 2

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem.rstrip(".")
        self.fix = fix.rstrip(".") if fix else None
        super().__init__(self.line())

    def line(self) -> str:
        """The single stderr line: `error: <problem>. <fix>.`"""
        text = f"error: {self.problem}."
        if self.fix:
            text += f" Fix: {self.fix}."
        return " ".join(text.split())  # never more than one line


class DoesNotFit(UserError):
    """The model, at that precision, does not fit the GPUs asked for."""


class OverBudget(UserError):
    """The projected monthly spend exceeds the budget given."""
