"""The spec flags of plan, compare, render sky and launch sky come from the one declared table."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.main import get_command
from typer.testing import CliRunner

from costing.data.spec import BY_PARAM
from selfhost.cli import app
from selfhost.skypilot.commands import SKY_FLAGS
from selfhost.spec_options import spec_options


def _options(path: list[str]) -> dict[str, Any]:
    cmd: Any = get_command(app)
    for name in path:
        cmd = cmd.commands[name]
    return {p.name: p for p in cmd.params if p.param_type_name == "option"}


@pytest.mark.parametrize("path", [["plan"], ["compare"], ["render", "sky"], ["launch", "sky"]])
def test_commands_take_spec_flags_as_declared(path: list[str]) -> None:
    options = _options(path)
    spec_flags = [name for name in options if name in BY_PARAM and BY_PARAM[name].help]
    assert len(spec_flags) >= 10
    for name in spec_flags:
        key = BY_PARAM[name]
        assert options[name].opts == [key.flag]
        assert options[name].help  # the table's text, or the command's own
    numeric = [n for n in spec_flags if BY_PARAM[n].kind in (int, float)]
    assert numeric
    bad = CliRunner().invoke(app, [*path, f"--{numeric[0].replace('_', '-')}", "many"])
    assert bad.exit_code == 2  # typed as the table declares: not a number is refused by the parser


def test_sky_commands_share_one_flag_list() -> None:
    render, launch = _options(["render", "sky"]), _options(["launch", "sky"])
    for name in SKY_FLAGS:
        assert name in render and name in launch
        assert render[name].help == launch[name].help


def test_flags_reach_the_command_as_one_dict() -> None:
    seen: dict[str, Any] = {}
    demo = typer.Typer()

    @demo.command()
    @spec_options("requests_per_day", "region", help={"region": "only here"})
    def run(flags: dict[str, Any], spec_file: str = typer.Option("x", "--spec"), other: int = 1) -> None:
        seen.update(flags=flags, spec_file=spec_file, other=other)

    result = CliRunner().invoke(demo, ["--requests-per-day", "2.5e4", "--other", "3"])
    assert result.exit_code == 0, result.output
    assert seen == {"flags": {"requests_per_day": 25000.0, "region": None}, "spec_file": "x", "other": 3}
    bad = CliRunner().invoke(demo, ["--requests-per-day", "many"])
    assert bad.exit_code == 2
    assert "only here" in CliRunner().invoke(demo, ["--help"]).output


def test_unknown_or_doubly_declared_flags_are_programming_errors() -> None:
    with pytest.raises(TypeError, match="not spec flags"):
        spec_options("no_such_flag")
    with pytest.raises(TypeError, match="declares spec flags itself"):

        @spec_options("region")
        def cmd(flags: dict[str, Any], region: str | None = None) -> None: ...
