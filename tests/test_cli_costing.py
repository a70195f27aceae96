"""The costing commands as a user runs them: real process, real exit codes, one-line errors."""

from __future__ import annotations

import json

import pytest

PLAN = [
    "plan",
    "--model",
    "llama-3.1-8b",
    "--gpu",
    "A10G",
    "--cloud",
    "aws",
    "--requests-per-day",
    "20000",
    "--input-tokens",
    "1000",
    "--output-tokens",
    "200",
]


def _one_line_error(result, *needles):
    assert result.returncode == 2, result
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


@pytest.mark.parametrize(
    "args, needles",
    [
        (
            [
                "plan",
                "--model",
                "llama-9",
                "--gpu",
                "A40",
                "--requests-per-day",
                "1",
                "--input-tokens",
                "1",
                "--output-tokens",
                "1",
            ],
            ["unknown model", "--model"],
        ),
        (
            [
                "plan",
                "--model",
                "llama-3.1-8b",
                "--gpu",
                "B300",
                "--requests-per-day",
                "1",
                "--input-tokens",
                "1",
                "--output-tokens",
                "1",
            ],
            ["unknown GPU", "--gpu"],
        ),
        (
            [
                "plan",
                "--model",
                "llama-3.1-8b",
                "--offer",
                "aws-g9",
                "--requests-per-day",
                "1",
                "--input-tokens",
                "1",
                "--output-tokens",
                "1",
            ],
            ["unknown offer"],
        ),
        (
            [
                "plan",
                "--model",
                "llama-3.1-8b",
                "--gpu",
                "A40",
                "--requests-per-day",
                "-5",
                "--input-tokens",
                "1",
                "--output-tokens",
                "1",
            ],
            ["requests_per_day"],
        ),
        (
            [
                "plan",
                "--model",
                "llama-3.1-8b",
                "--gpu",
                "A40",
                "--requests-per-day",
                "lots",
                "--input-tokens",
                "1",
                "--output-tokens",
                "1",
            ],
            ["--requests-per-day", "valid number"],
        ),
        (["plan", "--model", "llama-3.1-8b", "--gpu", "A40", "--chart", "cost.png"], ["no workload", "--chart"]),
        (
            [
                "plan",
                "--model",
                "llama-3.1-70b",
                "--gpu",
                "A40",
                "--gpus",
                "1",
                "--requests-per-day",
                "100",
                "--input-tokens",
                "500",
                "--output-tokens",
                "100",
            ],
            ["does not fit", "4x A40"],
        ),
        (
            [
                "plan",
                "--model",
                "llama-3.1-8b",
                "--offer",
                "runpod-a40x1-secure",
                "--pricing",
                "spot",
                "--requests-per-day",
                "100",
                "--input-tokens",
                "500",
                "--output-tokens",
                "100",
            ],
            ["no spot pricing"],
        ),
        (
            [
                "estimate",
                "--model",
                "llama-3.1-8b",
                "--gpu",
                "A40",
                "--input-tokens",
                "100",
                "--output-tokens",
                "0",
                "--concurrency",
                "4",
            ],
            ["--output-tokens"],
        ),
        (
            ["estimate", "--model", "llama-3.1-8b", "--gpu", "A40", "--input-tokens", "100", "--output-tokens", "10"],
            ["--concurrency"],
        ),
        (["plan", "--spec", "nope.yaml"], ["not found"]),
        (
            ["compare", "--model", "llama-9", "--requests-per-day", "1", "--input-tokens", "1", "--output-tokens", "1"],
            ["unknown model"],
        ),
        (["compare", "--model", "llama-3.1-8b"], ["no workload"]),
        (["plan", *PLAN[1:], "--format", "html"], ["unknown format"]),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_exit_2(selfhost, args, needles):
    _one_line_error(selfhost(*args), *needles)


def test_over_budget_exits_2_after_printing_the_review(selfhost):
    result = selfhost(*PLAN, "--max-monthly-usd", "50")
    assert result.returncode == 2
    assert "selfhost cost review" in result.stdout  # the review is still shown, for the PR log
    assert result.stderr.count("\n") == 1 and "exceeds the budget of $50.00" in result.stderr


def test_plan_json_has_the_documented_fields(selfhost):
    result = selfhost(*PLAN, "--format", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    for key in (
        "output_tokens_per_s",
        "ttft_ms",
        "tpot_ms",
        "e2e_latency_s",
        "max_concurrency",
        "monthly_usd",
        "usd_per_million_output_tokens",
        "breakeven",
        "replicas",
        "vllm",
        "fit",
        "target",
    ):
        assert key in data, key
    assert data["target"]["offer"] == "aws-g5.xlarge"  # cheapest A10G offer that fits on AWS
    apis = {b["api"] for b in data["breakeven"]}
    assert {"groq/llama-3.1-8b-instant", "bedrock/meta.llama3-1-8b-instruct-v1:0", "openai/gpt-4o"} <= apis
    assert all(b["source"] and b["as_of"] for b in data["breakeven"])
    assert data["vllm"]["max_model_len"] == data["fit"]["max_model_len"]
    assert f"--max-model-len {data['fit']['max_model_len']}" in data["vllm"]["command"]


def test_plan_markdown_is_a_pull_request_comment(selfhost):
    result = selfhost(*PLAN, "--format", "markdown")
    assert result.returncode == 0
    assert result.stdout.startswith("### selfhost cost review")
    assert "| API |" in result.stdout and "Break-even" in result.stdout


def test_plan_chart_is_written(selfhost, tmp_path):
    out = tmp_path / "cost.png"
    result = selfhost(*PLAN, "--chart", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def test_estimate_reports_capping(selfhost):
    result = selfhost(
        "estimate",
        "--model",
        "llama-3.1-8b",
        "--gpu",
        "A10G",
        "--input-tokens",
        "4000",
        "--output-tokens",
        "1000",
        "--concurrency",
        "500",
        "--format",
        "json",
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["capped"] is True and data["concurrency"] == data["max_concurrency"] < 500
    assert data["cap_reason"]


def test_compare_ranks_offers_by_monthly_cost(selfhost):
    result = selfhost(
        "compare",
        "--model",
        "llama-3.1-8b",
        "--requests-per-day",
        "5000",
        "--input-tokens",
        "800",
        "--output-tokens",
        "200",
        "--format",
        "json",
    )
    assert result.returncode == 0, result.stderr
    offers = json.loads(result.stdout)["offers"]
    costs = [o["monthly_usd"] for o in offers if o["meets_slo"] is not False]
    assert costs == sorted(costs) and len(offers) >= 10
    assert {o["cloud"] for o in offers} == {"runpod", "aws", "gcp"}


def test_plan_does_not_import_the_heavy_sdks(selfhost):
    import subprocess
    import sys

    code = (
        "import sys; from selfhost.cli import main\n"
        "try:\n    main(" + repr([*PLAN, "--format", "json"]) + ")\nexcept SystemExit: pass\n"
        "heavy = [m for m in ('sky', 'pulumi', 'boto3', 'httpx', 'aiohttp', 'matplotlib', 'scipy', 'numpy') "
        "if m in sys.modules]\nprint('HEAVY', heavy, file=sys.stderr)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "HEAVY []" in result.stderr, result.stderr
