"""Fill the generated parts of README.md and docs/ (`make docs-refresh` runs it after the goldens).

Two kinds of generated text (docs/contributing.md has the conventions):
- a marked block, `<!-- render: golden NAME [markdown] -->` ... `<!-- /render -->`: the golden file
  tests/golden/NAME (with the `$ selfhost ...` command of its case in tests/test_golden.py), as a fenced
  block, or as markdown itself with `markdown` (a pull-request comment shown as GitHub renders it);
  `<!-- render: projections -->`: the model-to-GPU projection table of the shipped calibration;
- whole pages under docs/reference/: the CLI reference from every command's `--help`, the spec keys and
  the stack config keys from the one declared table (`costing.data.spec.SPEC_KEYS`, the stacks' `KEYS`).

`--check` writes nothing and exits 1 naming each file that differs (tests/test_docs.py runs it).
`--update-console` also re-runs every ```console block (tests/docs_console.py) and writes what it prints.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"
DOCS = ROOT / "docs"
REFERENCE = DOCS / "reference"
# Help is rendered for a fixed terminal so the pages do not depend on who ran the script.
HELP_ENV = {"COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"}

MARKED = re.compile(r"(<!-- render: (?P<args>[^>]*?) -->\n)(?P<body>.*?)(<!-- /render -->)", re.S)
FENCE = {".json": "json", ".yaml": "yaml", ".md": "markdown"}


def doc_files() -> list[Path]:
    """Every markdown page a reader sees: the README and docs/."""
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def golden_cases() -> dict[str, tuple[str, ...]]:
    """The command behind each golden file (tests/test_golden.py's CASES)."""
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        import test_golden
    finally:
        sys.path.pop(0)
    return dict(test_golden.CASES)


def _shell_word(word: str) -> str:
    return word if re.fullmatch(r"[\w@%+=:,./-]+", word) else "'" + word.replace("'", "'\\''") + "'"


def golden_block(args: list[str], cases: dict[str, tuple[str, ...]]) -> str:
    name, *how = args
    path = GOLDEN / name
    if not path.is_file():
        raise SystemExit(f"error: a render block names tests/golden/{name}, which does not exist")
    text = path.read_text()
    if how == ["markdown"]:
        return text if text.endswith("\n") else text + "\n"
    command = cases.get(name)
    if command is not None:
        lines = "$ selfhost " + " ".join(_shell_word(w) for w in command) + "\n" + text
        return f"```console\n{lines}```\n"
    return f"```{FENCE.get(path.suffix, 'text')}\n{text}```\n"


# docs/evidence/accuracy.md: one row per (model, precision, GPU, count), at PROJECTION_SHAPE and vLLM's defaults
PROJECTION_ROWS = (
    ("llama-3.1-8b", "bf16", "L4", 1),
    ("llama-3.1-8b", "awq", "L4", 1),
    ("llama-3.1-8b", "bf16", "A10G", 1),
    ("llama-3.1-8b", "bf16", "A40", 1),
    ("llama-3.1-8b", "bf16", "A100-80GB", 1),
    ("llama-3.1-8b", "fp8", "H100", 1),
    ("llama-3.1-70b", "bf16", "A40", 4),
    ("llama-3.1-70b", "awq", "A40", 1),
    ("llama-3.1-70b", "bf16", "A100-80GB", 4),
    ("llama-3.1-70b", "fp8", "H100", 2),
    ("llama-3.1-405b", "fp8", "H100", 8),
)
PROJECTION_SHAPE = (500, 250, 10.0)  # input tokens, output tokens, p90 end-to-end SLO (s)


def projection_table() -> str:
    """The model-to-GPU table of the shipped calibration: one stream, the most the KV cache and
    max_num_seqs admit, the best throughput, and the highest concurrency within the p90 SLO."""
    from costing.performance.fit import FitRequest, fit_check
    from costing.performance.projection import admissible, max_throughput, project, slo_concurrency

    i, o, slo = PROJECTION_SHAPE
    out = [
        "| model | precision | GPUs | 1 stream tok/s (TPOT) | max concurrency | max output tok/s "
        f"| concurrency for p90 <= {slo:g} s |",
        "|---|---|---|---|---|---|---|",
    ]
    for model, precision, gpu, gpus in PROJECTION_ROWS:
        fit = fit_check(FitRequest(model=model, precision=precision, gpu=gpu, gpus=gpus))
        one, best = project(fit, i, o, 1), max_throughput(fit, i, o)
        within = slo_concurrency(fit, i, o, slo)
        slo_cell = (
            f"{within.concurrency} ({within.output_tokens_per_s:,.0f} tok/s)"
            if within.p90_e2e_latency_s <= slo
            else "missed at 1"
        )
        out.append(
            f"| {model} | {precision} | {gpus}x {gpu} | {one.output_tokens_per_s:.1f} ({one.tpot_ms:.1f} ms) "
            f"| {admissible(fit, i, o)} | {best.output_tokens_per_s:,.0f} | {slo_cell} |"
        )
    return "\n".join(out) + "\n"


def render_marked(text: str, cases: dict[str, tuple[str, ...]]) -> str:
    def fill(m: re.Match[str]) -> str:
        args = m.group("args").split()
        if args == ["projections"]:
            return m.group(1) + projection_table() + m.group(4)
        if not args or args[0] != "golden" or len(args) < 2:
            raise SystemExit(f"error: unknown render block <!-- render: {m.group('args')} -->")
        return m.group(1) + golden_block(args[1:], cases) + m.group(4)

    return MARKED.sub(fill, text)


# ---- reference pages -----------------------------------------------------------------------------------


def _commands():
    import typer

    from selfhost.cli import app

    root = typer.main.get_command(app)
    out = []

    def walk(cmd, path: list[str]) -> None:
        out.append((path, cmd))
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):
            if not getattr(sub, "hidden", False):
                walk(sub, [*path, name])

    walk(root, [])
    return out


def cli_reference() -> str:
    """Every command's --help, as the CLI prints it on a 100-column terminal."""
    import contextlib
    import io

    from selfhost.cli import main

    saved = {k: os.environ.get(k) for k in HELP_ENV}
    os.environ.update(HELP_ENV)
    parts = [
        "# CLI reference\n",
        "Generated from each command's `--help` by `scripts/render_docs.py` (`make docs-refresh`); a test fails",
        "when it is stale. Every command takes `--help`; bad input is one `error: ... Fix: ...` line on stderr",
        "and exit code 2.\n",
    ]
    try:
        for path, _cmd in _commands():
            out = io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
                main([*path, "--help"])
            title = " ".join(["selfhost", *path])
            parts.append(f"## `{title}`\n\n```text\n{out.getvalue().rstrip()}\n```\n")
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return "\n".join(parts)


def _type_name(ann: object) -> str:
    """`int`, `str | None`, `on-demand | spot` (a Literal's values) for a field annotation."""
    import typing

    args = typing.get_args(ann)
    if typing.get_origin(ann) is typing.Literal:
        return " \\| ".join(str(a) for a in args)
    if args and type(None) in args:
        inner = [a for a in args if a is not type(None)]
        return " \\| ".join([*(_type_name(a) for a in inner), "None"])
    return getattr(ann, "__name__", None) or str(ann).replace("typing.", "")


def _field_info(path: str) -> tuple[str, str]:
    """(type and bounds, description) of a spec field from the pydantic model the spec is validated with."""
    from costing.data.spec import DeploymentSpec

    model = DeploymentSpec
    *parents, leaf = path.split(".")
    for p in parents:
        ann = model.model_fields[p].annotation
        model = next(a for a in (ann, *getattr(ann, "__args__", ())) if hasattr(a, "model_fields"))
    field = model.model_fields.get(leaf)
    if field is None:
        return "", ""
    bounds = []
    for m in field.metadata:
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            v = getattr(m, attr, None)
            if v is not None:
                bounds.append(f"{sign} {v:g}" if isinstance(v, float) else f"{sign} {v}")
    kind = _type_name(field.annotation)
    default = "" if field.is_required() else f", default {field.default!r}"
    return f"{kind}{(' ' + ', '.join(bounds)) if bounds else ''}{default}", field.description or ""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def spec_reference() -> str:
    """The spec keys: one row per entry of costing.data.spec.SPEC_KEYS, with the field's type, bounds and default."""
    from costing.data.spec import SPEC_KEYS

    lines = [
        "# Spec keys\n",
        "Generated from `costing.data.spec.SPEC_KEYS` (the one table mapping a spec field to its `selfhost` flag and",
        "its Pulumi stack config key) and from the spec's own validation model (types, bounds, defaults) by",
        "`scripts/render_docs.py`; a test fails when it is stale. The spec itself: [the deployment spec](spec.md).\n",
        "| spec field | flag | stack config key | type, bounds, default | meaning |",
        "|---|---|---|---|---|",
    ]
    for k in SPEC_KEYS:
        kind, description = _field_info(k.path)
        meaning = "; ".join(t for t in (k.help, description) if t)
        flag = f"`{k.flag}`" if k.flag else ""
        key = f"`{k.config_key}`" if k.config_key else ""
        lines.append(f"| `{k.path}` | {flag} | {key} | {kind} | {_cell(meaning)} |")
    return "\n".join(lines) + "\n"


def stack_config_reference() -> str:
    """Every key each stack reads: the spec keys it shares (SPEC_KEYS) and its own (the config module's KEYS)."""
    from costing.data.spec import SPEC_KEYS
    from selfhost.k8s import stack_config as kubernetes_config
    from selfhost.stack import aws_config, gcp_config, runpod_config

    shared = [k for k in SPEC_KEYS if k.config_key]
    lines = [
        "# Stack config keys\n",
        "Generated by `scripts/render_docs.py` from `costing.data.spec.SPEC_KEYS` (the keys every stack shares with",
        "the spec) and each stack's own key list (`selfhost/stack/<cloud>_config.py` and, for kubernetes,",
        "`selfhost/k8s/stack_config.py`: `KEYS`); a test fails when it is stale. What each cloud-specific key does:",
        "[the Pulumi guide](../guides/pulumi.md#config-keys), [the Kubernetes guide](../guides/kubernetes.md).\n",
        "## Every stack (a spec field each)\n",
        "| key | spec field | flag |",
        "|---|---|---|",
    ]
    lines += [f"| `{k.config_key}` | `{k.path}` | `{k.flag}` |" for k in shared]
    stacks = (("aws", aws_config), ("gcp", gcp_config), ("runpod", runpod_config), ("kubernetes", kubernetes_config))
    for cloud, module in stacks:
        keys = [k for k in getattr(module, "KEYS", ()) if k not in {s.config_key for s in shared}]
        lines += ["", f"## {cloud} only\n", ", ".join(f"`{k}`" for k in keys) or "(none)"]
    return "\n".join(lines) + "\n"


GENERATED_PAGES = {
    REFERENCE / "cli.md": cli_reference,
    REFERENCE / "spec-keys.md": spec_reference,
    REFERENCE / "stack-config.md": stack_config_reference,
}


def generated_pages() -> dict[Path, str]:
    return {path: make() for path, make in GENERATED_PAGES.items()}


def rendered() -> dict[Path, str]:
    """Every generated file and its content now."""
    cases = golden_cases()
    out = generated_pages()
    for path in doc_files():
        if path in out:
            continue
        text = path.read_text()
        new = render_marked(text, cases)
        if new != text:
            out[path] = new
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 naming stale files")
    parser.add_argument("--update-console", action="store_true", help="re-run ```console blocks, write output")
    args = parser.parse_args(argv)
    os.environ.setdefault("SELFHOST_PRICES", "shipped")
    stale = []
    for path, text in rendered().items():
        if path.is_file() and path.read_text() == text:
            continue
        stale.append(path.relative_to(ROOT))
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if args.update_console and not args.check:
        sys.path.insert(0, str(ROOT / "tests"))
        import docs_console

        for path in doc_files():
            if docs_console.update_file(path):
                stale.append(path.relative_to(ROOT))
    if args.check and stale:
        print("stale generated docs (run `make docs-refresh`): " + ", ".join(map(str, stale)), file=sys.stderr)
        return 1
    for p in stale:
        print(f"rewrote {p}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
