"""Docs a newcomer can trust (issue 27): nothing printed in README.md or docs/ can drift.

Every output block is generated from a golden file / the CLI (scripts/render_docs.py) or is a ```console
session this test runs; a block that is neither fails here. Command blocks (```sh, ```bash) name real
`selfhost` commands and flags and real make targets. The site builds with `mkdocs build --strict` (broken
links fail). Conventions: docs/contributing.md.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import pytest
from conftest import ROOT
from docs_console import blocks, matches, run, steps

sys.path.insert(0, str(ROOT / "scripts"))
import render_docs

PAGES = render_docs.doc_files()
ALL_BLOCKS = [b for p in PAGES for b in blocks(p)]
CONSOLE = [b for b in ALL_BLOCKS if b.lang == "console" and not b.generated]
OUTPUT_LANGS = {"", "text", "output", "shell-session", "console"}
COMMAND_LANGS = {"sh", "bash", "shell"}
FILE_LANGS = {"yaml", "json", "python", "toml", "ini", "markdown", "dotenv"}
RECORDED = re.compile(r"<!-- recorded: (?P<how>[^>]*?\d{4}-\d{2}-\d{2}[^>]*?) -->")


def _where(block) -> str:
    return f"{block.path.relative_to(ROOT)}:{block.line}"


def test_the_pages_exist_and_the_readme_is_short():
    readme = (ROOT / "README.md").read_text().splitlines()
    assert len(readme) <= 200, f"README.md has {len(readme)} lines; move detail into docs/"
    assert len(PAGES) > 20 and CONSOLE, "the docs and their console sessions are found"


def test_generated_docs_are_current():
    """The golden-filled blocks and the reference pages are what scripts/render_docs.py writes now."""
    assert render_docs.main(["--check"]) == 0, "run `make docs-refresh` and review the diff"


def test_every_output_block_is_generated_or_run():
    """A block of output is a generated one, a ```console session (run below) or, under docs/evidence/ only,
    a measurement marked `<!-- recorded: COMMAND, DATE, MACHINE -->` on the line before it."""
    offenders = []
    for b in ALL_BLOCKS:
        lang = b.lang.lower()
        generated = b.generated or b.path in render_docs.GENERATED_PAGES
        if generated or lang == "console" or lang in COMMAND_LANGS or lang in FILE_LANGS:
            continue
        if lang in OUTPUT_LANGS:
            before = b.path.read_text().splitlines()[b.span[0] - 1] if b.span[0] else ""
            if "evidence" in b.path.parts and RECORDED.search(before):
                continue
        offenders.append(f"{_where(b)} ```{b.lang}")
    assert offenders == [], "output blocks neither generated nor run (docs/contributing.md): " + ", ".join(offenders)


def test_recorded_blocks_live_under_evidence_only():
    stray = [str(p.relative_to(ROOT)) for p in PAGES if "evidence" not in p.parts and RECORDED.search(p.read_text())]
    assert stray == []


@pytest.mark.parametrize("block", CONSOLE, ids=_where)
def test_console_session_prints_what_the_page_says(block):
    for command, expected, actual in run(block):
        assert matches(expected, actual), (
            f"{_where(block)}: `{command}` printed:\n" + "\n".join(actual) + "\n(run `make docs-refresh`)"
        )


def _click_tree():
    import typer

    from selfhost.cli import app

    return typer.main.get_command(app)


def _check_selfhost(words: list[str], root) -> str | None:
    """None when `selfhost WORDS` names a real command and only its own flags; else what is wrong."""
    cmd, path = root, ["selfhost"]
    rest = list(words)
    while rest and hasattr(cmd, "commands") and rest[0] in cmd.commands:
        cmd = cmd.commands[rest[0]]
        path.append(rest.pop(0))
    if hasattr(cmd, "commands") and rest and not rest[0].startswith("-"):
        return f"`{' '.join(path)}` has no command {rest[0]!r}"
    known = {o for p in cmd.params for o in (*getattr(p, "opts", ()), *getattr(p, "secondary_opts", ()))}
    known |= {"--help"}
    for w in rest:
        flag = w.split("=", 1)[0]
        if flag.startswith("-") and flag not in ("-", "--") and not flag[1:2].isdigit() and flag not in known:
            return f"`{' '.join(path)}` has no option {flag}"
    return None


def _shell_commands(block) -> list[list[str]]:
    """The simple commands of a shell block, or of a console block's `$` lines, one list of words each."""
    text = "\n".join(c for c, _ in steps(block)) if block.lang == "console" else "\n".join(block.body)
    text = text.replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.split(" #", 1)[0]
        if line.strip().startswith("#"):
            continue
        for part in re.split(r"&&|\|\||;|\|", line):
            try:
                parts = shlex.split(part)
            except ValueError:
                continue
            while parts and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", parts[0]):
                parts.pop(0)  # VAR=value prefixes
            if parts:
                out.append(parts)
    return out


def _make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([\w.-]+):", text, re.M))


def test_command_blocks_name_real_commands_flags_and_make_targets():
    root, targets = _click_tree(), _make_targets()
    problems = []
    for b in ALL_BLOCKS:
        if b.lang.lower() not in COMMAND_LANGS and not (b.lang == "console" and not b.generated):
            continue
        for words in _shell_commands(b):
            name = words[0].rsplit("/", 1)[-1]
            if name == "selfhost" or words[:3] == [words[0], "-m", "selfhost"]:
                args = words[1:] if name == "selfhost" else words[3:]
                why = _check_selfhost(args, root)
                if why:
                    problems.append(f"{_where(b)}: {why}")
            elif name == "make":
                for t in (w for w in words[1:] if not w.startswith("-") and "=" not in w):
                    if t not in targets:
                        problems.append(f"{_where(b)}: no make target {t!r}")
    assert problems == []


def test_the_lint_catches_a_wrong_flag_and_a_wrong_command():
    root = _click_tree()
    assert _check_selfhost(["plan", "--spec", "x.yaml", "--requests-per-day", "5"], root) is None
    assert "no option --no-such" in _check_selfhost(["plan", "--no-such"], root)
    assert "no command 'nope'" in _check_selfhost(["prices", "nope"], root)
    assert not matches(["a {{num}} b"], ["a x b"]) and matches(["a {{num}} b", "{{skip}}"], ["a 1,234.5 b", "c"])


def test_readme_links_into_docs_resolve():
    text = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(((?:docs|templates|examples|stacks)/[^)#\s]+)", text)
    assert links and [link for link in links if not (ROOT / link).exists()] == []


def test_the_site_builds_with_no_broken_link(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "site" / "index.html").is_file()


def test_the_spec_pages_yaml_is_a_spec_the_kit_accepts():
    """docs/reference/spec.md's example holds every field: it must parse as it is written, and a field the page
    shows under a wrong name or with a value out of bounds fails here."""
    import yaml

    from costing.data.spec import spec_from_dict

    text = (ROOT / "docs" / "reference" / "spec.md").read_text()
    block = re.search(r"```yaml\n(.*?)```", text, re.S)
    if block is None:
        pytest.fail("docs/reference/spec.md has no yaml block")
    shown = yaml.safe_load(block.group(1))
    spec = spec_from_dict(shown)
    assert spec.name == shown["name"] and spec.workload is not None
    commented = re.search(r"^  # (kubernetes: \{.*\})$", block.group(1), re.M)
    if commented is None:
        pytest.fail("the page no longer shows a kubernetes: example")
    stated = yaml.safe_load(commented.group(1))["kubernetes"]
    target = {"gpus": 1, "pricing": "on-demand", "kubernetes": stated}
    assert spec_from_dict({**shown, "target": target}).target.kubernetes.context == stated["context"]
