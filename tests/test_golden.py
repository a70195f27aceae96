"""Golden files for what users read (Infracost's style): each case's output is compared with
tests/golden/<case>; `pytest tests/test_golden.py --update-golden` (or `make golden`) rewrites them, and
the change shows up as a reviewed diff."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT, run_selfhost

GOLDEN = ROOT / "tests" / "golden"
SPEC = "examples/llama-3.1-8b-runpod-a40.yaml"
WORKLOAD = ("--requests-per-day", "20000", "--input-tokens", "1000", "--output-tokens", "250")
# A fixed terminal: rich sizes tables to it; no colour codes.
ENV = {"COLUMNS": "132", "NO_COLOR": "1", "TERM": "dumb", "SELFHOST_TODAY": "2026-11-30", "SELFHOST_PRICES": "shipped"}

CASES: dict[str, tuple[str, ...]] = {
    "plan.txt": ("plan", "--spec", SPEC),
    "plan.md": ("plan", "--spec", SPEC, "--format", "markdown"),
    "plan.json": ("plan", "--spec", SPEC, "--format", "json"),
    "plan-70b-a40x4.md": (
        "plan",
        "--model",
        "llama-3.1-70b",
        "--precision",
        "bf16",
        "--gpu",
        "A40",
        "--gpus",
        "4",
        "--cloud",
        "runpod",
        *WORKLOAD,
        "--format",
        "markdown",
    ),
    "plan-no-workload.txt": (
        "plan",
        *("--model", "llama-3.1-8b", "--offer", "aws-g5.xlarge", "--pricing", "spot", "--region", "eu-west-1"),
    ),
    "compare.txt": ("compare", "--model", "llama-3.1-8b", *WORKLOAD, "--p90-latency-s", "20"),
    "compare.md": ("compare", "--model", "llama-3.1-70b", "--precision", "awq", *WORKLOAD, "--format", "markdown"),
    "estimate.txt": (
        "estimate",
        "--model",
        "llama-3.1-8b",
        "--gpu",
        "A10G",
        "--input-tokens",
        "550",
        "--output-tokens",
        "150",
        "--concurrency",
        "16",
    ),
    "estimate.json": (
        "estimate",
        "--model",
        "llama-3.1-70b",
        "--precision",
        "fp8",
        "--gpu",
        "H100",
        "--gpus",
        "4",
        "--input-tokens",
        "1000",
        "--output-tokens",
        "1000",
        "--concurrency",
        "64",
        "--format",
        "json",
    ),
    # Spot reviews: cold start, interruptions a month (a published band, or "no published rate"), fallback cost.
    "plan-spot-aws.md": (
        "plan",
        "--spec",
        "templates/specs/llama-3.1-8b-aws-a10g-spot-service.yaml",
        "--format",
        "markdown",
    ),
    "plan-spot-aws.json": (
        "plan",
        "--spec",
        "templates/specs/llama-3.1-8b-aws-a10g-spot-service.yaml",
        "--format",
        "json",
    ),
    "plan-spot-gcp.txt": ("plan", "--spec", "templates/specs/llama-3.1-8b-gcp-l4-spot-service.yaml"),
    "render-sky-gcp-l4.yaml": ("render", "sky", "--spec", "templates/specs/llama-3.1-8b-gcp-l4.yaml"),
    "render-sky-spot-service.yaml": (
        "render",
        "sky",
        "--spec",
        "templates/specs/llama-3.1-8b-aws-a10g-spot-service.yaml",
    ),
    # Kubernetes: the review of the nodes on a team's EKS cluster, and the manifests that deploy it.
    "plan-k8s-eks.txt": ("plan", "--spec", "examples/llama-3.1-8b-eks-g5-spot.yaml", "--kubernetes", "eks"),
    "render-k8s-eks.yaml": (
        "render",
        "k8s",
        "--spec",
        "examples/llama-3.1-8b-eks-g5-spot.yaml",
        *("--cluster-name", "team-cluster", "--allowed-cidrs", "10.0.0.0/16"),
    ),
}


def normalise(text: str) -> str:
    """Trailing blanks are not output users read; everything else is compared to the letter."""
    return "\n".join(line.rstrip() for line in text.splitlines()) + "\n"


def check_golden(name: str, actual: str, update: bool) -> None:
    path = GOLDEN / name
    actual = normalise(actual)
    if update:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual)
        return
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `make golden` and review the new file")
    expected = path.read_text()
    if actual != expected:
        import difflib

        diff = "".join(
            difflib.unified_diff(expected.splitlines(True), actual.splitlines(True), f"golden/{name}", "actual", n=2)
        )
        pytest.fail(f"output differs from tests/golden/{name} (run `make golden` if intended):\n{diff}")


@pytest.mark.parametrize("name", sorted(CASES))
def test_command_output_matches_golden(name: str, update_golden: bool) -> None:
    out = run_selfhost(*CASES[name], env=ENV)
    assert out.returncode == 0, out.stderr
    check_golden(name, out.stdout, update_golden)


def test_json_outputs_are_json_all_the_way_down(update_golden: bool) -> None:
    """The JSON goldens parse, and every value is a JSON type (no Python reprs hiding in strings)."""
    for name in ("plan.json", "estimate.json"):
        doc = json.loads((GOLDEN / name).read_text())

        def walk(value, where: str, name: str = name) -> None:
            if isinstance(value, dict):
                for k, v in value.items():
                    walk(v, f"{where}.{k}", name)
            elif isinstance(value, list):
                for i, v in enumerate(value):
                    walk(v, f"{where}[{i}]", name)
            elif isinstance(value, str):
                assert not (value.startswith(("{'", "[{", "Params(")) and value.endswith(("}", "]", ")"))), (
                    f"{name}{where} holds a Python repr: {value[:60]}"
                )

        walk(doc, "")


@pytest.mark.parametrize("fmt", ["table", "json"])
def test_bench_report_from_a_recorded_bench_matches_golden(fmt: str, update_golden: bool) -> None:
    """The bench report as users read it, rendered from a recorded `selfhost bench --output` JSON."""
    from selfhost.check.bench_report import render

    doc = json.loads((ROOT / "tests" / "data" / "bench-local.json").read_text())
    check_golden(f"bench-report.{'txt' if fmt == 'table' else 'json'}", render(doc, fmt), update_golden)


def test_golden_files_have_a_case() -> None:
    """No stale golden file: each one belongs to a case above."""
    known = set(CASES) | {"bench-report.txt", "bench-report.json"}
    stale = sorted(p.name for p in GOLDEN.iterdir() if p.name not in known and not p.name.startswith(("diff", "bill")))
    assert not stale, f"golden files with no case: {stale}"
