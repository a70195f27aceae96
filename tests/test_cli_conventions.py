"""The CLI follows click/typer conventions (issue 27): help without `<bool>` hints, env-backed options not shown
as required, one type per option name, errors ending in one period, formats listed only when supported, help on
stdout (exit 0) when asked and on stderr (exit 2) when a subcommand is missing, odd folder names refused, and
output that fits $COLUMNS."""

from __future__ import annotations

import json
import re

import pytest
import typer
from cli_inprocess import one_line_error, run_cli
from conftest import ROOT, run_selfhost


def _commands():
    """(path, click command) for every command and group of the real app."""
    from selfhost.cli import app

    root = typer.main.get_command(app)
    out = []

    def walk(cmd, path):
        out.append((path, cmd))
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):
            walk(sub, [*path, name])

    walk(root, [])
    return out


COMMANDS = _commands()


def test_the_walk_sees_every_command():
    paths = {" ".join(p) for p, _ in COMMANDS}
    assert {"plan", "estimate", "smoke", "bench", "init", "up local", "prices refresh", "render sky"} <= paths


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=lambda p: " ".join(p) or "selfhost")
def test_help_is_on_stdout_with_exit_0_and_flags_have_no_value_hint(path):
    out = run_cli(*path, "--help")
    assert out.code == 0 and out.stderr == "" and out.stdout.startswith("Usage: selfhost"), out
    assert "<bool>" not in out.stdout
    flags = [o for _, c in COMMANDS if c.name == (path[-1] if path else "selfhost") for o in c.params]
    for param in flags:
        if getattr(param, "is_flag", False):
            for opt in param.opts:
                assert not re.search(rf"{re.escape(opt)} <", out.stdout), f"{opt} shows a value hint"


@pytest.mark.parametrize("group", [[], ["prices"], ["render"], ["up"], ["local"]])
def test_a_group_without_its_command_prints_help_on_stderr_with_exit_2(group):
    out = run_selfhost(*group)
    assert out.returncode == 2 and out.stdout == "" and "Usage: selfhost" in out.stderr


def test_env_backed_options_are_not_shown_as_required_and_a_missing_key_is_one_line(monkeypatch):
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    for command in ("smoke", "bench"):
        help_text = " ".join(run_cli(command, "--help").stdout.split())
        key = help_text[help_text.index("--api-key") :]
        key = key[: key.index("--", 3)]
        assert "VLLM_API_KEY" in key and "required" not in key, key
    line = one_line_error(run_cli("smoke", "http://127.0.0.1:9"), "VLLM_API_KEY", "--api-key")
    assert line.endswith(".") and not line.endswith("..")
    one_line_error(run_cli("bench", "http://127.0.0.1:9", "--input-tokens", "8", "--output-tokens", "8"), "API key")


def test_one_option_name_has_one_type_everywhere():
    """`--spec` is a path in every command (`up local` was a string)."""
    hints = set()
    for path, cmd in COMMANDS:
        if any("--spec" in getattr(p, "opts", []) for p in cmd.params):
            hints |= set(re.findall(r"--spec (<\w+>)", run_cli(*path, "--help").stdout))
    assert hints == {"<path>"}, hints


@pytest.mark.parametrize(
    "args",
    [
        ("smoke",),  # click: missing argument
        ("plan", "--no-such-flag"),  # click: unknown option
        ("estimate", "--model", "llama-3.1-8b"),  # click: missing options
        ("plan", "--requests-per-day", "many"),  # click: bad value
    ],
)
def test_errors_end_in_one_period(args):
    line = one_line_error(run_cli(*args))
    assert line.endswith(".") and ".." not in line.replace("...", ""), line


def test_formats_listed_in_help_are_the_formats_accepted():
    base = ("--model", "llama-3.1-8b", "--gpu", "A10G", "--input-tokens", "100", "--output-tokens", "50")
    base += ("--concurrency", "4")
    help_text = " ".join(run_cli("estimate", "--help").stdout.split())
    listed = re.search(r"--format <\w+> ([a-z |]+?)\s+\[", help_text).group(1).split(" | ")
    assert listed == ["table", "json"], listed
    for fmt in listed:
        assert run_cli("estimate", *base, "--format", fmt).code == 0
    one_line_error(run_cli("estimate", *base, "--format", "markdown"), "markdown")


@pytest.mark.parametrize("name", ["", ".", "..", "a b", "x;rm", "é", ".hidden"])
def test_init_refuses_an_empty_or_odd_folder_name(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    out = run_cli("init", name, "--cloud", "aws")
    one_line_error(out, "Fix:")
    assert list(tmp_path.iterdir()) == []


def _widest(text: str) -> int:
    return max(len(line) for line in text.splitlines())


@pytest.mark.parametrize("columns", [80, 100, 132])
def test_plan_fits_the_terminal(columns):
    out = run_selfhost("plan", "--spec", "examples/llama-3.1-8b-runpod-a40.yaml", env={"COLUMNS": str(columns)})
    assert out.returncode == 0, out.stderr
    assert _widest(out.stdout) <= columns, _widest(out.stdout)
    # narrower than the full tables (132): the API table keeps 4 of its 7 columns (no Self-host $/mo column)
    assert ("Self-host" in out.stdout) == (columns >= 132), out.stdout


def test_the_default_plan_prints_at_most_one_price_age_line_naming_the_oldest():
    spec = ROOT / "examples" / "llama-3.1-8b-runpod-a40.yaml"
    out = run_selfhost("plan", "--spec", str(spec), env={"COLUMNS": "132", "SELFHOST_TODAY": "2026-12-06"})
    warned = [line for line in out.stdout.splitlines() if line.startswith("warning:")]
    assert len(warned) == 1, warned
    # the oldest price of that review (openai/gpt-4.1-mini, 2026-04-02) and where to check the API ones by hand
    block = out.stdout[out.stdout.index("warning:") :]
    assert "2026-04-02" in block and "by hand" in block


def test_the_price_age_line_names_the_refresh_command_for_a_cloud_price_and_by_hand_for_the_rest():
    """Months later every price is old: the offer's compute price has a command, the API/storage ones a place."""
    spec = ROOT / "examples" / "llama-3.1-8b-runpod-a40.yaml"
    out = run_selfhost("plan", "--spec", str(spec), "--format", "json", env={"SELFHOST_TODAY": "2027-06-01"})
    (line,) = json.loads(out.stdout)["prices"]["warnings"]
    assert "`selfhost prices refresh --cloud runpod` updates runpod-a40x1-secure on-demand (US)" in line
    assert "check the others by hand" in line and "2026-04-02" in line  # the oldest (openai/gpt-4.1-mini)
