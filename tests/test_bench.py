"""The load generator against the local stand-in server: exact lengths, failures recorded, timeouts
respected, the JSON that `selfhost plan --calibration` reads, the chart, exit codes."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import time

import pytest
from fake_vllm_server import free_port

from costing.performance.bench_refit import bench_points
from selfhost.check.bench import BenchConfig, point_metrics, point_rng, prompt_ids, run_point, run_sweep
from selfhost.check.bench_math import Slo
from tests.conftest import ROOT, stand_in_server

KEY = "sk-bench"


@pytest.fixture(scope="module")
def url():
    with stand_in_server("--api-key", KEY, "--model", "tiny") as base_url:
        yield base_url


@pytest.fixture(scope="module")
def streaming_url():
    """A stand-in that streams as vLLM does when its API server keeps up: one write per token, 1 ms apart."""
    with stand_in_server("--api-key", KEY, "--model", "tiny", "--slice-events", "1", "--token-ms", "1") as base_url:
        yield base_url


def cfg(url: str, **kw) -> BenchConfig:
    base = {"url": url, "api_key": KEY, "model": "tiny", "input_tokens": 20, "output_tokens": 50, "num_prompts": 12}
    return BenchConfig(**{**base, **kw})


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_every_request_streams_the_exact_output_length(url, api):
    run = asyncio.run(run_point(cfg(url, api=api), concurrency=4))
    assert len(run.results) == 12
    for r in run.results:
        assert r.ok, r.error
        assert r.output_tokens == 50
        assert 0 < r.ttft <= r.latency
        # the chat stream opens with a role chunk: one more chunk than tokens, as vLLM sends it
        assert len(r.itl) == (50 if api == "chat" else 49)
    if api == "completions":
        assert {r.input_tokens for r in run.results} == {20}  # token-id prompts: exact length


def test_point_metrics_report_throughput_and_client_overhead(url):
    run = asyncio.run(run_point(cfg(url, num_prompts=40), concurrency=8))
    m = point_metrics(run, Slo(e2el_ms=60_000))
    assert m["completed"] == 40 and m["failed"] == 0
    assert m["output_tokens_per_s"] == pytest.approx(40 * 50 / run.duration_s)
    assert m["goodput_rps"] == pytest.approx(m["requests_per_s"])  # a generous SLO: every request is good
    assert 0 < m["client"]["cpu_percent"] <= 100 * 1.5
    assert m["client"]["cpu_us_per_output_token"] > 0


def test_request_rate_mode_uses_poisson_arrivals(url):
    t0 = time.monotonic()
    run = asyncio.run(run_point(cfg(url, num_prompts=20), request_rate=100.0))
    assert all(r.ok for r in run.results)
    starts = sorted(r.start for r in run.results)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len({round(g, 4) for g in gaps}) > 5  # random gaps, not a fixed interval
    assert time.monotonic() - t0 < 10
    assert point_metrics(run, Slo())["request_rate"] == 100.0


def test_wrong_key_and_wrong_model_are_recorded(url):
    bad_key = asyncio.run(run_point(cfg(url, api_key="nope"), concurrency=2))
    assert not any(r.ok for r in bad_key.results)
    assert bad_key.results[0].error.startswith("HTTP 401")
    bad_model = asyncio.run(run_point(cfg(url, model="other"), concurrency=2))
    assert all(r.error.startswith("HTTP 404") and "other" in r.error for r in bad_model.results)


def test_server_down_is_recorded_quickly():
    t0 = time.monotonic()
    run = asyncio.run(run_point(cfg(f"http://127.0.0.1:{free_port()}", timeout_s=5), concurrency=4))
    assert time.monotonic() - t0 < 5
    assert all(not r.ok and r.error.startswith("cannot connect") for r in run.results)


def test_stall_mid_stream_fails_each_request_by_its_read_timeout():
    with stand_in_server("--api-key", KEY, "--model", "tiny", "--stall-after", "5") as stalling:
        t0 = time.monotonic()
        run = asyncio.run(run_point(cfg(stalling, read_timeout_s=0.5, num_prompts=6), concurrency=3))
        elapsed = time.monotonic() - t0
    assert all(not r.ok and "read timeout" in r.error for r in run.results)
    assert elapsed < 0.5 * 2 + 3  # two waves of 3, each bounded by the read timeout


def test_total_timeout_bounds_a_request_when_shorter_than_the_read_timeout():
    with stand_in_server("--api-key", KEY, "--model", "tiny", "--stall-after", "5") as stalling:
        t0 = time.monotonic()
        run = asyncio.run(run_point(cfg(stalling, timeout_s=0.7, read_timeout_s=30, num_prompts=2), concurrency=2))
        elapsed = time.monotonic() - t0
    assert all(not r.ok and "timed out after 0.7s" in r.error for r in run.results)
    assert elapsed < 3


def test_sweep_returns_one_point_per_concurrency(url):
    seen = []
    points = run_sweep(
        cfg(url, num_prompts=8), [1, 2, 4], progress=lambda label, n: (seen.append((label, n)), lambda r: None)[1]
    )
    assert [p["concurrency"] for p in points] == [1, 2, 4]
    assert seen == [("concurrency 1", 8), ("concurrency 2", 8), ("concurrency 4", 8)]


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "selfhost.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def test_cli_json_output_chart_and_projection(streaming_url, tmp_path):
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    p = _cli(
        "bench",
        streaming_url,
        "--api-key",
        KEY,
        "--concurrency",
        "1,4",
        "--num-prompts",
        "8",
        "--input-tokens",
        "64",
        "--output-tokens",
        "32",
        "--format",
        "json",
        "--output",
        str(out),
        "--chart",
        str(png),
        "--model-id",
        "llama-3.1-8b",
        "--gpu",
        "A40",
        "--slo-ttft-ms",
        "10000",
    )
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert json.loads(out.read_text()) == doc
    assert doc["schema"] == "selfhost-bench/1" and doc["model"] == "tiny"  # discovered from /v1/models
    assert doc["failed_requests"] == 0 and doc["target"]["gpu"] == "A40"
    from costing.performance.bench_refit import simulate_bench_point
    from costing.performance.calibration import load_params
    from costing.performance.fit import FitRequest, fit_check
    from costing.performance.projection import project

    fit = fit_check(FitRequest(model="llama-3.1-8b", gpu="A40", seq_len=96))
    for pt in doc["points"]:
        # the steady state (with its bands) and the point's own closed loop replayed, which the errors use
        assert pt["projection"]["output_tokens_per_s"] == pytest.approx(
            project(fit, 64, 32, pt["concurrency"]).output_tokens_per_s
        )
        run = simulate_bench_point(fit, load_params(), 64, 32, pt["concurrency"], pt["num_requests"])
        replay = pt["replay"]
        assert (replay["requests"], replay["ttft_ms"], replay["tpot_ms"]) == (8, run.ttft_ms, run.tpot_ms)
        for key, measured, projected in (
            ("output_tokens_per_s", pt["output_tokens_per_s"], run.output_tokens_per_s),
            ("ttft_ms", pt["ttft_ms"]["mean"], run.ttft_ms),
            ("tpot_ms", pt["tpot_ms"]["mean"], run.tpot_ms),
            ("e2el_ms", pt["e2el_ms"]["mean"], run.e2e_latency_s * 1000),
        ):
            assert pt["error_pct"][key] == pytest.approx(100 * (measured - projected) / projected)
        assert pt["merged_requests"] == 0 and pt["goodput_rps"] is not None
    # at 4 clients starting together the first prompts queue: the replay's mean TTFT is above the steady state's
    four = doc["points"][1]
    assert four["replay"]["ttft_ms"] > four["projection"]["ttft_ms"]
    # the calibration reader understands it
    pts = bench_points(doc)
    assert [(b.concurrency, b.input_tokens, b.output_tokens) for b in pts] == [(1, 64, 32), (4, 64, 32)]
    assert all(b.e2e_mean_s and b.tpot_ms is not None for b in pts)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_table_shows_the_projection_beside_each_point(url):
    p = _cli(
        "bench",
        url,
        "--api-key",
        KEY,
        "--concurrency",
        "2",
        "--num-prompts",
        "4",
        "--input-tokens",
        "16",
        "--output-tokens",
        "8",
        "--model-id",
        "llama-3.1-8b",
        "--gpu",
        "A40",
    )
    assert p.returncode == 0, p.stderr
    assert "projected tok/s" in p.stdout and "llama-3.1-8b bf16 on 1x A40" in p.stdout


def test_cli_exits_non_zero_when_requests_fail(url):
    p = _cli(
        "bench",
        url,
        "--api-key",
        KEY,
        "--model",
        "missing",
        "--concurrency",
        "2",
        "--num-prompts",
        "4",
        "--input-tokens",
        "8",
        "--output-tokens",
        "8",
    )
    assert p.returncode == 1
    assert "4 failed: HTTP 404" in p.stdout and "4 requests failed" in p.stderr


@pytest.mark.parametrize(
    "args, words",
    [
        (["--concurrency", "0,4"], "positive integers"),
        (["--concurrency", "4", "--request-rate", "2"], "alternatives"),
        (["--request-rate", "-1"], "positive"),
        (["--model-id", "llama-3.1-8b"], "--gpu"),
        (["--model-id", "llama-3.1-405b", "--gpu", "A40"], "does not fit"),
        (["--format", "xml"], "--format"),
    ],
)
def test_cli_bad_flags_are_one_line_errors_before_any_request(url, args, words):
    p = _cli("bench", url, "--api-key", KEY, "--model", "tiny", "--input-tokens", "8", "--output-tokens", "8", *args)
    assert p.returncode == 2
    assert p.stderr.startswith("error:") and words in p.stderr and "Traceback" not in p.stderr


def test_no_two_points_of_a_sweep_send_the_same_prompts():
    """vLLM's prefix cache (on by default in the kit) would skip the prefill of a prompt an earlier point
    sent: each point (and each prompt length) draws its own prompts, reproducibly."""
    c = cfg("http://127.0.0.1:1")
    first = [prompt_ids(point_rng(c, conc, None), 20) for conc in (1, 2, 4)]
    assert len({tuple(p) for p in first}) == 3
    assert prompt_ids(point_rng(c, 2, None), 20) == first[1]  # the same point again: the same prompts
    longer = cfg("http://127.0.0.1:1", input_tokens=40)
    assert prompt_ids(point_rng(longer, 1, None), 40)[:20] != first[0]


# A server that stops mid-generation: what vLLM does without a drain (issue 25). Each ending once ok was counted.
ENDINGS = [
    ("cut", "cut: the stream ended without [DONE]"),
    ("abort", "aborted: finish_reason abort"),
    ("short", "short: fewer tokens than requested (ignore_eos)"),
]


@pytest.mark.parametrize(("end_as", "cause"), ENDINGS, ids=[e[0] for e in ENDINGS])
@pytest.mark.parametrize("api", ["completions", "chat"])
def test_a_stream_that_does_not_deliver_what_was_asked_is_a_failure_named_by_its_cause(end_as, cause, api):
    with stand_in_server("--api-key", KEY, "--model", "tiny", "--end-after", "7", "--end-as", end_as) as ending:
        run = asyncio.run(run_point(cfg(ending, api=api, num_prompts=6), concurrency=3))
        whole = asyncio.run(run_point(cfg(ending, api=api, output_tokens=7, num_prompts=2), concurrency=2))
    assert [r.error for r in run.results] == [cause] * 6 and not any(r.ok for r in run.results)
    m = point_metrics(run, Slo())
    assert (m["completed"], m["failed"], m["errors"]) == (0, 6, {cause: 6})
    assert (m["delivered_output_tokens"], m["requested_output_tokens"]) == (6 * 7, 6 * 50)
    assert m["total_output_tokens"] == 0 and m["output_tokens_per_s"] == 0  # no throughput from cut streams
    assert all(r.ok and r.output_tokens == 7 for r in whole.results)  # what the server does deliver still counts


def test_cli_names_cut_streams_in_the_table_and_json_and_exits_1(tmp_path):
    out = tmp_path / "bench.json"
    with stand_in_server("--api-key", KEY, "--model", "tiny", "--end-after", "30", "--end-as", "abort") as ending:
        args = ("bench", ending, "--api-key", KEY, "--model", "tiny", "--concurrency", "4", "--num-prompts", "8")
        p = _cli(*args, "--input-tokens", "8", "--output-tokens", "100", "--output", str(out))
    assert p.returncode == 1 and "8 requests failed" in p.stderr
    assert "8 failed: aborted: finish_reason abort" in p.stdout
    assert "240 of 800 requested output tokens delivered" in p.stdout
    doc = json.loads(out.read_text())
    assert doc["failed_requests"] == 8 and doc["points"][0]["completed"] == 0
    assert (doc["delivered_output_tokens"], doc["requested_output_tokens"]) == (240, 800)
    assert doc["points"][0]["errors"] == {"aborted: finish_reason abort": 8}


def test_cli_projects_with_a_device_profile_and_labels_it(url):
    """`make run`'s bench: the local target's own projection (its device profile) beside each point, labelled."""
    from costing.performance.calibration import load_params_file
    from costing.performance.fit import FitRequest, fit_check
    from costing.performance.projection import project

    profile = "costing/data/local-cpu-profile.json"
    label = "local tiny model (tiny) on this CPU"
    args = ("bench", url, "--api-key", KEY, "--concurrency", "2", "--num-prompts", "4", "--input-tokens", "64")
    args += ("--output-tokens", "32", "--model-id", "llama-3.2-1b", "--gpu", "H100", "--calibration", profile)
    p = _cli(*args, "--projection-label", label, "--format", "json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["target"]["label"] == label and doc["target"]["calibration"] == profile
    fit = fit_check(FitRequest(model="llama-3.2-1b", gpu="H100", seq_len=96))
    mine = project(fit, 64, 32, 2, load_params_file(profile))
    shipped = project(fit, 64, 32, 2)
    assert doc["points"][0]["projection"]["output_tokens_per_s"] == pytest.approx(mine.output_tokens_per_s)
    assert doc["points"][0]["projection"]["ttft_ms"] == pytest.approx(mine.ttft_ms)
    # the profile is not the shipped fit (this CPU's TPOT at 2 clients is an H100's with a 1B model, its TTFT not)
    assert mine.ttft_ms != pytest.approx(shipped.ttft_ms, rel=0.2)
    table = _cli(*args, "--projection-label", label).stdout
    assert f"projection: {label} ({profile}" in table


def test_streams_that_arrive_merged_are_not_compared_as_ttft_and_tpot(url, streaming_url):
    """A stream whose tokens arrive together (the stand-in's one write per stream, as vLLM's API server sends
    when it falls behind its engine) times the delivery: its TTFT and TPOT are left out of the comparison, tok/s
    and e2e are not, and the table says how many arrived so; a stream sent token by token is compared whole."""
    args = ("--api-key", KEY, "--concurrency", "2", "--num-prompts", "4", "--input-tokens", "64", "--output-tokens")
    args += ("32", "--model-id", "llama-3.1-8b", "--gpu", "A40")
    merged, streamed = _cli("bench", url, *args, "--format", "json"), _cli("bench", streaming_url, *args)
    assert merged.returncode == 0 and streamed.returncode == 0, merged.stderr + streamed.stderr
    [pt] = json.loads(merged.stdout)["points"]
    assert pt["merged_requests"] == 4 and pt["streamed_ttft_ms"]["mean"] == 0
    assert pt["error_pct"]["ttft_ms"] is None and pt["error_pct"]["tpot_ms"] is None
    assert pt["error_pct"]["output_tokens_per_s"] is not None and pt["error_pct"]["e2el_ms"] is not None
    table = _cli("bench", url, *args).stdout
    assert "arrived merged" in table and "4 of 4 at 2" in table
    assert "arrived merged" not in streamed.stdout


def test_a_stream_is_merged_when_most_of_its_tokens_arrive_together():
    from selfhost.check.bench_math import RequestResult, metrics

    flowing = RequestResult(ok=True, ttft=0.01, latency=0.05, itl=[0.01, 0.0, 0.01, 0.01], output_tokens=5)
    burst = RequestResult(ok=True, ttft=0.4, latency=0.41, itl=[0.0, 0.0, 0.01, 0.0], output_tokens=5)
    assert not flowing.merged and burst.merged
    assert not RequestResult(ok=True, itl=[0.0], output_tokens=2).merged  # one gap says nothing
    m = metrics([flowing, burst, flowing], 1.0)
    assert m["merged_requests"] == 1
    assert m["streamed_ttft_ms"]["mean"] == pytest.approx(10.0)
    assert m["ttft_ms"]["mean"] == pytest.approx(140.0)  # every request, as vLLM's bench reports it


def _profile_bench(url: str, *extra: str) -> dict:
    args = ("bench", url, "--api-key", KEY, "--concurrency", "1,4", "--num-prompts", "8", "--input-tokens", "64")
    p = _cli(*args, "--output-tokens", "32", "--format", "json", "--local-profile", *extra)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_the_local_profile_is_set_to_the_machines_speed_by_a_probe_before_the_sweep():
    """Two stand-ins 3 ms and 9 ms a token: the probe measures each, and every projected time follows (3x), the
    profile's shape kept; the probe's prompts are its own (8 requests at 1 client); --no-probe keeps the profile."""
    from costing.performance.bench_refit import at_speed, simulate_bench_point
    from costing.performance.calibration import params_from_dict
    from costing.performance.fit import FitRequest, fit_check

    docs = {}
    for ms in (3, 9):
        with stand_in_server("--api-key", KEY, "--model", "tiny", "--slice-events", "1", "--token-ms", str(ms)) as u:
            docs[ms] = _profile_bench(u)
            if ms == 3:
                docs["none"] = _profile_bench(u, "--no-probe")
    fast, slow, none = docs[3], docs[9], docs["none"]
    assert none["probe"] is None
    assert fast["probe"]["requests"] == 8 and fast["probe"]["concurrency"] == 1
    assert fast["probe"]["basis"] == "tpot+ttft"
    k_fast, k_slow = fast["probe"]["speed_factor"], slow["probe"]["speed_factor"]
    w_fast, w_slow = fast["probe"]["request_latency_ms"], slow["probe"]["request_latency_ms"]
    assert k_slow / k_fast == pytest.approx(3, rel=0.25)  # the probe times the machine, not the profile
    profile = json.loads((ROOT / "costing/data/local-cpu-profile.json").read_text())
    s = profile["provenance"]["local_profile"]["stand_in"]
    fit = fit_check(FitRequest(model=s["model"], precision=s["precision"], gpu=s["gpu"], gpus=s["gpus"], seq_len=96))
    for doc, k, wait in ((fast, k_fast, w_fast), (slow, k_slow, w_slow)):
        for pt in doc["points"]:
            run = simulate_bench_point(
                fit, at_speed(params_from_dict(profile), k, wait), 64, 32, pt["concurrency"], pt["num_requests"]
            )
            assert pt["replay"]["e2e_latency_s"] == pytest.approx(run.e2e_latency_s, rel=1e-3)  # k is rounded
    from selfhost.check.bench_report import render_table

    said = render_table(slow)  # the table says what the projection was set to
    assert f"every time x {k_slow:.2f} (its mean TPOT)" in said and f"waits {w_slow:.1f} ms more" in said
    one, one_none = fast["points"][0], none["points"][0]  # at one client a decode step carries no prompt: steps' k
    assert one["concurrency"] == 1
    assert one["replay"]["tpot_ms"] == pytest.approx(k_fast * one_none["replay"]["tpot_ms"], rel=1e-3)


def test_a_probe_far_from_the_profile_is_refused_not_scaled(url):
    """The stand-in answers 32 tokens in about a millisecond, hundreds of times the local CPU's speed: not the local
    target the profile describes. One line, exit 2, no sweep run."""
    args = ("bench", url, "--api-key", KEY, "--concurrency", "1", "--num-prompts", "4", "--input-tokens", "64")
    p = _cli(*args, "--output-tokens", "32", "--local-profile")
    assert p.returncode == 2 and "speed probe" in p.stderr and "--no-probe" in p.stderr
    assert "Traceback" not in p.stderr and "concurrency 1 " not in p.stderr


def test_local_profile_projects_with_the_shipped_device_profile_and_its_label(url):
    """`--local-profile` (what `make run` and the README pass): the profile's stand-in and parameters, the same
    projection as naming them by hand, and its own label; with --gpu or --calibration too it is refused."""
    profile = json.loads((ROOT / "costing/data/local-cpu-profile.json").read_text())["provenance"]["local_profile"]
    s = profile["stand_in"]
    base = ("bench", url, "--api-key", KEY, "--concurrency", "2", "--num-prompts", "4", "--input-tokens", "64")
    base += ("--output-tokens", "32", "--format", "json")
    short = _cli(*base, "--local-profile", "--no-probe")
    assert short.returncode == 0, short.stderr
    by_hand = _cli(*base, "--model-id", s["model"], "--gpu", s["gpu"], "--gpus", str(s["gpus"]),
                   "--precision", s["precision"], "--calibration", "costing/data/local-cpu-profile.json")  # fmt: skip
    doc, ref = json.loads(short.stdout), json.loads(by_hand.stdout)
    assert doc["target"]["label"] == profile["label"]
    assert doc["target"]["calibration"] == "costing/data/local-cpu-profile.json"
    assert doc["points"][0]["projection"]["output_tokens_per_s"] == pytest.approx(
        ref["points"][0]["projection"]["output_tokens_per_s"]
    )
    clash = _cli(*base, "--local-profile", "--gpu", "A40")
    assert clash.returncode == 2 and "--local-profile" in clash.stderr and "Traceback" not in clash.stderr


def test_chart_ticks_are_the_measured_concurrencies_and_the_title_names_the_target():
    import matplotlib.pyplot as plt

    from selfhost.check.bench_chart import chart_figure

    doc = json.loads((ROOT / "tests/data/bench-local-small-256.json").read_text())
    doc["target"] = {**(doc.get("target") or {}), "label": "local tiny model on this CPU"}
    fig = chart_figure(doc)
    try:
        measured = sorted(p["concurrency"] for p in doc["points"] if p["completed"])
        for ax in fig.axes:
            assert list(ax.get_xticks()) == measured
            assert [t.get_text() for t in ax.get_xticklabels()] == [f"{c:g}" for c in measured]
        assert fig._suptitle.get_text().startswith("local tiny model on this CPU")
    finally:
        plt.close(fig)


def test_the_sweep_runs_on_uvloop_and_falls_back_to_asyncio_without_it(monkeypatch):
    """uvloop is a dependency but on Windows (no build there): without it the same run is asyncio's."""
    from selfhost.check.bench import run_async

    async def loop_module() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert run_async(loop_module()).startswith("uvloop")
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now raises ImportError
    assert run_async(loop_module()).startswith("asyncio")


def test_a_probe_that_completes_nothing_is_refused_before_the_sweep():
    """Every probe request cut short (a server aborting its streams): one line naming the probe and --no-probe,
    exit 2, no sweep run."""
    with stand_in_server("--api-key", KEY, "--model", "tiny", "--end-after", "10", "--end-as", "abort") as ending:
        args = ("bench", ending, "--api-key", KEY, "--concurrency", "1", "--num-prompts", "4", "--input-tokens", "64")
        p = _cli(*args, "--output-tokens", "32", "--local-profile")
    assert p.returncode == 2 and "completed no request" in p.stderr and "--no-probe" in p.stderr
    assert "Traceback" not in p.stderr and "concurrency 1 " not in p.stderr


def test_a_probe_sets_its_wait_from_its_median_ttft_not_one_slow_request():
    """Eight streamed requests, one of them 60 ms slower to its first token (a stall, a new connection): the wait
    comes from the median, which that request does not move; the mean would put an eighth of its delay on every
    projected TTFT. The factor is the TPOT's either way."""
    from costing.performance.bench_refit import at_speed, simulate_bench_point
    from costing.performance.calibration import params_from_dict
    from costing.performance.fit import FitRequest, fit_check
    from selfhost.check.bench_report import ProjectionTarget, set_to_probe

    profile = params_from_dict(json.loads((ROOT / "costing/data/local-cpu-profile.json").read_text()))
    fit = fit_check(FitRequest(model="llama-3.2-1b", precision="bf16", gpu="H100", gpus=1, seq_len=1250))
    run = simulate_bench_point(fit, at_speed(profile, 1.2), 1000, 250, 1, 8)
    typical = run.ttft_ms + 3.0  # 3 ms more than the steps' factor gives
    point = {"concurrency": 1, "num_requests": 8, "completed": 8, "merged_requests": 0, "output_tokens_per_s": 400.0}
    point |= {"ttft_ms": {"mean": typical + 60 / 8, "median": typical}, "tpot_ms": {"mean": run.tpot_ms}}
    point |= {"itl_ms": {"p50": run.tpot_ms}, "e2el_ms": {"mean": 1e3 * run.e2e_latency_s + 3 + 60 / 8}}
    target = ProjectionTarget("llama-3.2-1b", "bf16", "H100", 1)
    params, record = set_to_probe(point, target, 1000, 250, profile)
    assert record["basis"] == "tpot+ttft" and record["speed_factor"] == pytest.approx(1.2, rel=1e-3)
    assert record["ttft_median_ms"] == pytest.approx(typical) and record["request_latency_ms"] == pytest.approx(
        3, rel=1e-3
    )
    assert params.request_latency_ms == pytest.approx(3, rel=1e-3)


def test_a_probe_whose_streams_arrived_merged_sets_one_factor_from_its_latency():
    """Every stream of the probe arrived in one burst (the API server behind the engine): its TTFT and TPOT time the
    delivery, so the record says so and the profile takes one factor, its end-to-end latency over the replay's."""
    from costing.performance.bench_refit import at_speed, simulate_bench_point
    from costing.performance.calibration import params_from_dict
    from costing.performance.fit import FitRequest, fit_check
    from selfhost.check.bench_report import ProjectionTarget, set_to_probe

    profile = params_from_dict(json.loads((ROOT / "costing/data/local-cpu-profile.json").read_text()))
    fit = fit_check(FitRequest(model="llama-3.2-1b", precision="bf16", gpu="H100", gpus=1, seq_len=1250))
    e2e = 1.4 * simulate_bench_point(fit, profile, 1000, 250, 1, 8).e2e_latency_s
    point = {"concurrency": 1, "num_requests": 8, "completed": 8, "merged_requests": 8, "output_tokens_per_s": 300.0}
    point |= {"ttft_ms": {"mean": 1e3 * e2e - 1}, "tpot_ms": {"mean": 0.004}, "e2el_ms": {"mean": 1e3 * e2e}}
    target = ProjectionTarget("llama-3.2-1b", "bf16", "H100", 1)
    params, record = set_to_probe(point, target, 1000, 250, profile)
    assert record["basis"] == "e2e" and record["request_latency_ms"] == 0
    assert record["speed_factor"] == pytest.approx(1.4, rel=1e-3)
    one = at_speed(profile, record["speed_factor"])
    names = ("request_overhead_ms", "request_latency_ms", "mfu_prefill", "v1_step_overhead_ms", "kv_bw_eff")
    for name in names:  # prompt and steps alike
        assert getattr(params, name) == pytest.approx(getattr(one, name), rel=1e-3)
