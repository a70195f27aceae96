"""`selfhost gate` (issue 14): a real `selfhost bench` JSON (against the local stand-in) against a real review."""

from __future__ import annotations

import json

import pytest
from conftest import stand_in_server

EXAMPLE = "examples/llama-3.1-8b-runpod-a40.yaml"
KEY = "gate-test-key"


@pytest.fixture(scope="module")
def docs(tmp_path_factory):
    from conftest import run_selfhost

    tmp = tmp_path_factory.mktemp("gate")
    review = run_selfhost("plan", "--spec", EXAMPLE, "--format", "json")
    assert review.returncode == 0, review.stderr
    (tmp / "review.json").write_text(review.stdout)
    conc = json.loads(review.stdout)["max_concurrency"]
    with stand_in_server("--api-key", KEY, "--model", "tiny") as url:
        bench = run_selfhost(
            "bench", url, "--api-key", KEY, "--input-tokens", "16", "--output-tokens", "8",
            "--concurrency", f"2,{conc}", "--num-prompts", "8", "--output", str(tmp / "bench.json"), "--format", "json",
        )  # fmt: skip
    assert bench.returncode == 0, bench.stderr
    return tmp


def gate(selfhost, docs, *args):
    return selfhost("gate", "--bench", str(docs / "bench.json"), "--review", str(docs / "review.json"), *args)


def test_gate_compares_the_point_at_the_reviews_concurrency(selfhost, docs):
    p = gate(selfhost, docs, "--min-ratio", "0", "--format", "json")
    assert p.returncode == 0, p.stdout + p.stderr
    out = json.loads(p.stdout)
    review = json.loads((docs / "review.json").read_text())
    bench = json.loads((docs / "bench.json").read_text())
    point = next(pt for pt in bench["points"] if pt["concurrency"] == review["max_concurrency"])
    assert out["matched_review_concurrency"] and out["point_concurrency"] == review["max_concurrency"]
    assert out["measured_output_tokens_per_s"] == pytest.approx(point["output_tokens_per_s"], abs=0.01)
    assert out["ratio"] == pytest.approx(point["output_tokens_per_s"] / review["output_tokens_per_s"], rel=1e-3)
    assert any("differ from the review's workload" in n for n in out["notes"])


def test_an_impossible_floor_fails_with_exit_1_naming_it(selfhost, docs):
    measured = json.loads(gate(selfhost, docs, "--min-ratio", "0", "--format", "json").stdout)["ratio"]
    p = gate(selfhost, docs, "--min-ratio", f"{measured * 2 + 1:.3f}")
    assert p.returncode == 1 and "FAIL  output tok/s vs review" in p.stdout and "gate FAILED" in p.stdout
    p = gate(selfhost, docs, "--min-ratio", "0", "--min-output-tokens-per-s", "1e12")
    assert p.returncode == 1 and "FAIL  output tok/s floor" in p.stdout


@pytest.mark.parametrize(
    "swap,args,problem",
    [
        ("bench-as-review", [], "review is not a selfhost.review/v1 document"),
        (None, ["--min-ratio", "-1"], "--min-ratio must be"),
        (None, ["--min-ratio", "inf"], "--min-ratio must be"),
        ("missing", [], "not found"),
    ],
)
def test_bad_input_exit_2(selfhost, docs, swap, args, problem):
    review = {"bench-as-review": docs / "bench.json", "missing": docs / "nope.json"}.get(swap, docs / "review.json")
    p = selfhost("gate", "--bench", str(docs / "bench.json"), "--review", str(review), *args)
    assert p.returncode == 2 and problem in p.stderr and p.stderr.count("\n") == 1


def test_a_bench_that_counted_cut_streams_as_ok_fails_the_gate(selfhost, docs, tmp_path):
    """The bench before issue 25 counted a stream cut by a stopping server as ok (16 ok with 8,225 of the 30,400
    tokens asked): the gate holds the bench's rule and fails such a document, whatever its throughput."""
    p = gate(selfhost, docs, "--min-ratio", "0")
    assert (
        p.returncode == 0
        and "PASS  every completed request full length: each completed request delivered its 8" in p.stdout
    )
    fooled = json.loads((docs / "bench.json").read_text())
    point = fooled["points"][-1]
    point["total_output_tokens"] = point["completed"] * fooled["output_tokens"] - 3  # three tokens short, all "ok"
    (tmp_path / "fooled.json").write_text(json.dumps(fooled))
    p = selfhost(
        "gate", "--bench", str(tmp_path / "fooled.json"), "--review", str(docs / "review.json"), "--min-ratio", "0"
    )
    assert p.returncode == 1 and "FAIL  every completed request full length" in p.stdout
    assert f"{point['total_output_tokens']:,} of {point['total_output_tokens'] + 3:,}" in p.stdout


def test_a_bench_of_a_server_that_aborts_fails_the_gate(selfhost, docs, tmp_path):
    with stand_in_server("--api-key", KEY, "--model", "tiny", "--end-after", "5", "--end-as", "abort") as url:
        bench = selfhost(
            "bench", url, "--api-key", KEY, "--input-tokens", "16", "--output-tokens", "8",
            "--concurrency", "2", "--num-prompts", "4", "--output", str(tmp_path / "bench.json"),
        )  # fmt: skip
    assert bench.returncode == 1 and "4 failed: aborted: finish_reason abort" in bench.stdout
    p = selfhost("gate", "--bench", str(tmp_path / "bench.json"), "--review", str(docs / "review.json"))
    assert p.returncode == 2 and "no point with a completed request" in p.stderr
