"""The fenced blocks of README.md and docs/, and the runner of their ```console blocks (docs/contributing.md).

A ```console block is a session: `$ command` lines, each followed by what it prints (stdout and stderr as a
terminal shows them, interleaved). tests/test_docs.py runs every one and compares; `scripts/render_docs.py
--update-console` (in `make docs-refresh`) writes what they print now. Expected lines may hold explicit masks
for what differs from run to run: {{date}}, {{time}}, {{num}}, {{pid}}, {{path}}, {{word}}; a line that is
exactly {{skip}} stands for any number of lines (an excerpt).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OPEN = re.compile(r"^(?P<indent>[ ]*)```(?P<lang>[\w+-]*)[^\n`]*$")
RENDER_OPEN = re.compile(r"<!-- render: [^>]*-->")
RENDER_CLOSE = "<!-- /render -->"
MASKS = {
    "{{date}}": r"\d{4}-\d{2}-\d{2}",
    "{{time}}": r"[\d:.T+Z-]+",
    "{{num}}": r"-?[\d,]+(?:\.\d+)?",
    "{{pid}}": r"\d+",
    "{{path}}": r"\S+",
    "{{word}}": r"\S+",
}
SKIP = "{{skip}}"
# The fixed world every console block runs in: the shipped prices on a fixed day, a plain 132-column terminal.
ENV = {
    "SELFHOST_PRICES": "shipped",
    "SELFHOST_TODAY": "2026-11-30",
    "COLUMNS": "132",
    "NO_COLOR": "1",
    "TERM": "dumb",
    "LC_ALL": "C.UTF-8",
}
LINKED = ("examples", "templates", "stacks", "tests")  # what the blocks' relative paths name, read-only


@dataclass
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    indent: str
    body: list[str]  # the lines between the fences, indentation removed
    generated: bool  # inside a <!-- render: ... --> block
    span: tuple[int, int]  # 0-based line indexes of the opening and closing fences


def blocks(path: Path) -> list[Block]:
    lines = path.read_text().splitlines()
    out: list[Block] = []
    generated = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if RENDER_OPEN.search(line):
            generated = True
        if RENDER_CLOSE in line:
            generated = False
        m = OPEN.match(line)
        if m:
            indent = m.group("indent")
            j = i + 1
            while j < len(lines) and lines[j].rstrip() != f"{indent}```":
                j += 1
            body = [ln[len(indent) :] if ln.startswith(indent) else ln.lstrip() for ln in lines[i + 1 : j]]
            out.append(Block(path, i + 1, m.group("lang"), indent, body, generated, (i, j)))
            i = j + 1
            continue
        i += 1
    return out


def steps(block: Block) -> list[tuple[str, list[str]]]:
    """(command, expected lines) of each `$ ` line; a trailing `\\` continues the command on the next line."""
    out: list[tuple[str, list[str]]] = []
    lines = iter(block.body)
    for line in lines:
        if line.startswith("$ "):
            command = line[2:]
            while command.endswith("\\"):
                command += "\n" + next(lines, "")  # bash reads the backslash-newline as a continuation
            out.append((command, []))
        elif out:
            out[-1][1].append(line)
        else:
            raise ValueError(f"{block.path}:{block.line}: a console block starts with a `$ ` command")
    return out


def _line_regex(expected: str) -> re.Pattern[str]:
    parts = re.split("(" + "|".join(re.escape(m) for m in MASKS) + ")", expected)
    return re.compile("".join(MASKS.get(p, re.escape(p)) for p in parts))


def matches(expected: list[str], actual: list[str]) -> bool:
    """Each expected line equals its actual line (masks aside); {{skip}} absorbs any run of lines."""
    if not expected:
        return not actual
    head, rest = expected[0], expected[1:]
    if head == SKIP:
        return any(matches(rest, actual[k:]) for k in range(len(actual) + 1))
    return bool(actual) and bool(_line_regex(head).fullmatch(actual[0])) and matches(rest, actual[1:])


def _world(tmp: Path) -> dict[str, str]:
    """A fresh folder with the repository's examples linked in, and `selfhost` on PATH as this checkout."""
    bin_dir = tmp / ".bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "selfhost"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m selfhost "$@"\n')
    wrapper.chmod(0o755)
    for name in LINKED:
        (tmp / name).symlink_to(ROOT / name)
    (tmp / ".home").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SELFHOST_", "VLLM_", "HF_", "AWS_", "GOOGLE_"))}
    env.update(ENV)
    env["HOME"] = str(tmp / ".home")
    env["PATH"] = f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin"
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run(block: Block, timeout: float = 300) -> list[tuple[str, list[str], list[str]]]:
    """(command, expected, actual) of each step, run in order in one fresh folder."""
    results = []
    with tempfile.TemporaryDirectory(prefix="selfhost-doc-") as tmp:
        env = _world(Path(tmp))
        for command, expected in steps(block):
            out = subprocess.run(
                ["bash", "-c", command],
                cwd=tmp,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=timeout,
            )
            actual = [ln.rstrip() for ln in out.stdout.replace(tmp, "/tmp/doc").splitlines()]
            results.append((command, expected, actual))
    return results


def update_file(path: Path) -> bool:
    """Rewrite each console block's output with what it prints now (lines that still match keep their masks)."""
    lines = path.read_text().splitlines()
    changed = False
    for block in reversed([b for b in blocks(path) if b.lang == "console" and not b.generated]):
        body: list[str] = []
        for command, expected, actual in run(block):
            body += ("$ " + command).split("\n")
            body += expected if matches(expected, actual) else actual
        start, end = block.span
        new = [block.indent + ln if ln else ln for ln in body]
        if lines[start + 1 : end] != new:
            lines[start + 1 : end] = new
            changed = True
    if changed:
        path.write_text("\n".join(lines) + "\n")
    return changed
