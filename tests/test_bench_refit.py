"""Refit from a bench run and the latency regression (costing/performance/bench_refit.py)."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from costing.data.catalog import catalog
from costing.errors import UserError
from costing.performance.bench_refit import (
    REFIT,
    BenchPoint,
    LatencyPoly,
    at_speed,
    bench_points,
    fit_latency_poly,
    least_squares,
    point_fits,
    probe_basis,
    refit_from_bench,
    simulate_bench_point,
    speed_factor,
)
from costing.performance.calibration import load_params
from costing.performance.fit import FitRequest, fit_check
from costing.performance.projection import project

DATA = Path(__file__).parent / "data"
BENCH = {
    "schema": "selfhost-bench/1",
    "model": "llama-3.1-8b",
    "input_tokens": 500,
    "output_tokens": 200,
    "points": [],
}


def _bench_from(fit, params, concs=(1, 4, 16, 32)):
    """A bench document whose points are the steady-state projection (no closed-loop replay)."""
    doc = json.loads(json.dumps(BENCH))
    for c in concs:
        pr = project(fit, 500, 200, c, params)
        doc["points"].append(
            {
                "concurrency": c,
                "completed": 50,
                "mean_input_tokens": 500,
                "mean_output_tokens": 200,
                "output_tokens_per_s": pr.output_tokens_per_s,
                "requests_per_s": pr.requests_per_s,
                "ttft_ms": {"mean": pr.ttft_ms, "median": pr.ttft_ms, "p90": pr.ttft_ms * 1.3},
                "tpot_ms": {"mean": pr.tpot_ms, "median": pr.tpot_ms},
                "e2el_ms": {"mean": pr.e2e_latency_s * 1e3, "p90": pr.e2e_latency_s * 1e3 * 1.08},
            }
        )
    return doc


def _sweep(fit, params, shapes, concs, requests=48):
    """A `selfhost bench --concurrency` document replayed through the closed-loop simulation: the
    synthetic ground truth of a sweep (a shape the steady state does not produce: lock-step cohorts)."""
    points = []
    for i, o in shapes:
        for c in concs:
            run = simulate_bench_point(fit, params, i, o, c, requests)
            points.append(
                {
                    "concurrency": c,
                    "completed": requests,
                    "mean_input_tokens": i,
                    "mean_output_tokens": o,
                    "output_tokens_per_s": run.output_tokens_per_s,
                    "ttft_ms": {"mean": run.ttft_ms},
                    "tpot_ms": {"mean": run.tpot_ms},
                    "itl_ms": {"p50": run.tpot_ms},
                    "e2el_ms": {"mean": run.e2e_latency_s * 1e3},
                }
            )
    return {"schema": "selfhost-bench/1", "mode": "concurrency", "model": "llama-3.1-8b", "points": points}


def _errors(bench, fit, params, metrics=("tok/s", "TPOT", "TTFT")):
    rows = point_fits(bench_points(bench), fit, params)
    return {m: [abs(e) for e in (r.error(m) for r in rows) if e is not None] for m in metrics}


def test_refit_from_bench_recovers_a_slower_endpoint():
    f = fit_check(FitRequest(model="llama-3.1-8b", gpu="A40"))
    base = load_params()
    slow = replace(base, bw_eff=0.6, v1_step_overhead_ms=base.v1_step_overhead_ms * 2)
    bench = _bench_from(f, slow)
    refit = refit_from_bench(bench, f)
    for pt in bench["points"]:
        mine = project(f, 500, 200, pt["concurrency"], refit)
        assert mine.output_tokens_per_s == pytest.approx(pt["output_tokens_per_s"], rel=0.05)
        assert mine.tpot_ms == pytest.approx(pt["tpot_ms"]["mean"], rel=0.05)
        assert mine.ttft_ms == pytest.approx(pt["ttft_ms"]["mean"], rel=0.05)
    assert "bench" in refit.source_of("v1_step_overhead_ms") and "bench" in refit.source
    assert "refit" not in refit.source_of("bw_eff")  # the same per-step constant: the bench moves one of the two


TRUTH: dict[
    str, Any
] = {  # an endpoint unlike the published fit: slower steps, dearer sequences, slow KV reads and prefill
    "v1_step_overhead_ms": 6.0,
    "seq_overhead_us": 400.0,
    "kv_bw_eff": 0.3,
    "mfu_prefill": 0.25,
    "request_overhead_ms": 40.0,
}


def test_a_sweep_of_known_parameters_is_recovered_within_5_percent():
    """Synthetic ground truth: a sweep simulated with known parameters (two prompt lengths, so the
    per-request time, the prefill rate and the KV reads are told apart); the refit, started from the
    shipped fit, finds each of them within 5% and every point within 1%."""
    f = fit_check(FitRequest(model="llama-3.1-8b", gpu="A40"))
    truth = replace(load_params(), **TRUTH)
    bench = _sweep(f, truth, shapes=((256, 128), (2048, 64)), concs=(1, 2, 4, 8, 16, 32))
    refit = refit_from_bench(bench, f)
    for name, value in TRUTH.items():
        assert getattr(refit, name) == pytest.approx(value, rel=0.05), name
    for metric, errs in _errors(bench, f, refit).items():
        assert max(errs) < 0.01, metric
    summary = refit.provenance["refit"]["errors"]
    assert summary["tok/s"]["points"] == 12 and summary["TTFT"]["max_abs_pct"] < 1


def test_steady_state_points_of_known_parameters_are_recovered_within_5_percent():
    """Another shape of bench: a bare list of points (no sweep, so compared with the steady state of
    costing.performance.projection) projected with known parameters at two prompt lengths."""
    f = fit_check(FitRequest(model="llama-3.1-8b", gpu="A40"))
    truth = replace(load_params(), **TRUTH)
    points = []
    for i, o in ((256, 128), (2048, 64)):
        for c in (1, 2, 4, 8, 16, 32):
            pr = project(f, i, o, c, truth)
            points.append(
                {
                    "concurrency": c,
                    "input_tokens": i,
                    "output_tokens": o,
                    "output_tokens_per_s": pr.output_tokens_per_s,
                    "tpot_ms": pr.tpot_ms,
                    "ttft_ms": pr.ttft_ms,
                    "e2e_latency_s": pr.e2e_latency_s,
                }
            )
    refit = refit_from_bench(points, f)
    for name, value in TRUTH.items():
        assert getattr(refit, name) == pytest.approx(value, rel=0.05), name
    assert refit.provenance["refit"]["summary"].startswith("the refit projection is within")


def test_a_refit_predicts_the_concurrencies_it_was_not_fitted_on():
    """Held out: fit on every other concurrency of a simulated sweep, check the others."""
    f = fit_check(FitRequest(model="llama-3.1-8b", gpu="A40"))
    truth = replace(load_params(), **TRUTH)
    bench = _sweep(f, truth, shapes=((512, 128),), concs=(1, 2, 4, 8, 16, 32, 64))
    fitted_on = {**bench, "points": bench["points"][::2]}  # 1, 4, 16, 64
    held_out = {**bench, "points": bench["points"][1::2]}  # 2, 8, 32
    refit = refit_from_bench(fitted_on, f)
    for metric, errs in _errors(held_out, f, refit).items():
        assert max(errs) < 0.05, (metric, errs)
    before = _errors(held_out, f, load_params())
    assert max(before["tok/s"]) > 0.3  # the shipped fit is far from this endpoint: the check could fail


def test_the_least_squares_reaches_scipys_optimum():
    """The pure-Python Levenberg-Marquardt and scipy.optimize.least_squares agree (Rosenbrock's valley
    and an exponential fit)."""
    from scipy.optimize import least_squares as scipy_ls

    def rosen(x):
        return [10 * (x[1] - x[0] ** 2), 1 - x[0]]

    xs = [0.5 * k for k in range(8)]
    ys = [2.0 * math.exp(-0.7 * x) + 0.1 * math.sin(3 * x) for x in xs]

    def expfit(p):
        return [p[0] * math.exp(-p[1] * x) - y for x, y in zip(xs, ys, strict=True)]

    for fun, x0 in ((rosen, [-1.2, 1.0]), (expfit, [1.0, 0.1])):
        mine, cost = least_squares(fun, x0)
        ref = scipy_ls(fun, x0, xtol=1e-12, ftol=1e-12, gtol=1e-12)
        assert cost == pytest.approx(2 * ref.cost, rel=1e-4, abs=1e-10)
        assert mine == pytest.approx(list(ref.x), rel=1e-3, abs=1e-6)


def test_bench_points_tolerate_other_shapes():
    pts = bench_points(
        {
            "input_tokens": 100,
            "output_tokens": 50,
            "points": [
                {
                    "concurrency": 2,
                    "output_tokens_per_s": 10,
                    "tpot_ms": 20.0,
                    "ttft_ms": 100,
                    "e2e_latency_s": {"mean": 1.2, "p90": 1.5},
                },
                {"concurrency": 3, "completed": 0},  # failed point
                {"no": "concurrency"},
                "junk",
            ],
        }
    )
    assert len(pts) == 1 and pts[0].input_tokens == 100 and pts[0].e2e_p90_s == 1.5 and pts[0].tpot_ms == 20
    assert pts[0].requests is None and not pts[0].merged  # no sweep mode, no ITL: the steady state, unmerged
    assert len(bench_points([{"concurrency": 1, "input_tokens": 5, "output_tokens": 5}])) == 1
    with pytest.raises(UserError):
        refit_from_bench({"points": []}, fit_check(FitRequest(model="llama-3.1-8b", gpu="A40")))
    with pytest.raises(UserError, match="measured no"):
        refit_from_bench(
            [{"concurrency": 1, "input_tokens": 5, "output_tokens": 5}],
            fit_check(FitRequest(model="llama-3.1-8b", gpu="A40")),
        )


def test_the_closed_loop_replay_is_the_steady_state_at_one_client_and_lock_step_beyond():
    """One client: the replay's TPOT and TTFT are the projection's. Many clients with fixed lengths
    start together and stay in cohorts: the mean TTFT grows with the cohort's prompt work."""
    f = fit_check(FitRequest(model="llama-3.1-8b", gpu="A40"))
    p = load_params()
    one = simulate_bench_point(f, p, 1000, 200, 1, 8)
    pr = project(f, 1000, 200, 1, p)
    assert one.tpot_ms == pytest.approx(pr.tpot_ms, rel=0.02)
    assert one.ttft_ms == pytest.approx(pr.ttft_ms, rel=0.25)  # the projection adds half a step's phase
    assert one.output_tokens_per_s == pytest.approx(pr.output_tokens_per_s, rel=0.03)
    many = simulate_bench_point(f, p, 1000, 200, 32, 64)
    assert many.ttft_ms > 3 * one.ttft_ms  # 32 prompts of 1000 tokens in 2048-token chunks: ~16 steps
    assert many.output_tokens_per_s > 5 * one.output_tokens_per_s


def test_merged_streams_are_fitted_on_their_latency_and_reported():
    """Points whose tokens arrived merged (ITL p50 of 0) keep tok/s and latency in the fit; their TTFT
    and TPOT, which measure the server's delivery, are reported, not fitted."""
    f = fit_check(FitRequest(model="llama-3.1-8b", gpu="A40"))
    truth = replace(load_params(), **TRUTH)
    bench = _sweep(f, truth, shapes=((256, 128),), concs=(1, 4, 16))
    for pt in bench["points"]:  # the API server fell behind: the first chunk carries most tokens
        pt["itl_ms"] = {"p50": 0.0}
        pt["ttft_ms"]["mean"] += 300
        pt["tpot_ms"]["mean"] = max(0.01, pt["tpot_ms"]["mean"] - 300 / 127)
    refit = refit_from_bench(bench, f)
    info = refit.provenance["refit"]
    assert info["merged_points"] == 3 and "merged" in info["summary"]
    errs = _errors(bench, f, refit, ("tok/s", "e2e"))
    assert max(errs["tok/s"]) < 0.01 and max(errs["e2e"]) < 0.01


LOCAL = DATA / "bench-local-cpu.json"


@pytest.mark.parametrize("name", ["bench-local-cpu.json", "bench-local.json"])
def test_a_recorded_bench_of_the_local_target_refits_onto_its_points(name):
    """Recorded `selfhost bench` runs of `selfhost up local` (vLLM 0.32 on this machine's CPU, the tiny
    random-weight Llama; bench-local-cpu.json: 256 in / 256 out at 1-8 clients, bench-local.json: 1000 in /
    250 out at 1 and 4). The CPU target has no catalog GPU; the refit runs on the fastest small
    configuration the catalog has (Llama 3.2 1B on an H100), whose physics leaves room for the CPU's times.
    Every point streamed merged tokens (the API server shares its core with the engine's busy scheduler:
    ITL p50 is 0), so tok/s and latency are what the bench measured of the engine."""
    bench = json.loads((DATA / name).read_text())
    f = fit_check(FitRequest(model="llama-3.2-1b", gpu="H100"))
    points = bench_points(bench)
    assert points and all(pt.merged and pt.requests for pt in points)
    shipped = _errors(bench, f, load_params(), ("tok/s", "e2e"))
    refit = refit_from_bench(bench, f)
    errs = _errors(bench, f, refit, ("tok/s", "e2e"))
    for metric, e in errs.items():
        assert statistics.median(e) <= 0.05 and max(e) <= 0.10, (metric, e)
        assert max(e) < max(shipped[metric])  # the refit moves the projection onto this endpoint
    assert f"on {len(points)} measured points" in refit.provenance["refit"]["summary"]


def test_a_recorded_bench_refit_predicts_its_held_out_concurrencies():
    """Fit on 1 and 4 clients, predict 2 and 8 (an extrapolation from two noisy points: the 4-client
    point's tok/s is 6% below clients x output / latency, stragglers at the end of its 24 requests)."""
    bench = json.loads(LOCAL.read_text())
    f = fit_check(FitRequest(model="llama-3.2-1b", gpu="H100"))
    refit = refit_from_bench({**bench, "points": bench["points"][::2]}, f)  # 1 and 4 clients
    held_out = _errors({**bench, "points": bench["points"][1::2]}, f, refit, ("tok/s", "e2e"))  # 2 and 8
    shipped = _errors({**bench, "points": bench["points"][1::2]}, f, load_params(), ("tok/s", "e2e"))
    for metric, e in held_out.items():
        assert max(e) <= 0.15 and max(e) < max(shipped[metric]) / 2, (metric, e)


SMALL = [DATA / "bench-local-small-256.json", DATA / "bench-local-small-1024.json"]


def _small(points=slice(None)):
    """The two recorded sweeps of the local target serving a small random-weight Llama (8 layers, hidden
    512, 31M parameters: `selfhost up local --model-path`, vLLM 0.32 on one core of this machine; 256 in /
    128 out at 1-16 clients and 1024 in / 64 out at 1-8, 48 and 32 requests a point, 2026-11-30, recorded
    while the machine was otherwise quiet). Its streams are not merged (ITL p50 10-32 ms), so TTFT and
    TPOT measure the engine; each point sent fresh prompts."""
    docs = [json.loads(p.read_text()) for p in SMALL]
    return {**docs[0], "points": [pt for d in docs for pt in d["points"][points]]}


def test_a_recorded_sweep_of_the_local_target_refits_within_5_percent():
    """The issue's target on the 256-token sweep (recorded with the machine otherwise idle): median
    |error| <= 5% and every point within 10% for tok/s, TPOT and TTFT (and latency); the shipped fit, for an
    A40, is 40% to 20x off this CPU endpoint."""
    bench = json.loads(SMALL[0].read_text())
    f = fit_check(FitRequest(model="llama-3.2-1b", gpu="A40"))
    refit = refit_from_bench(bench, f)
    errs = _errors(bench, f, refit, ("tok/s", "TPOT", "TTFT", "e2e"))
    shipped = _errors(bench, f, load_params(), ("tok/s", "TPOT", "TTFT", "e2e"))
    for metric, e in errs.items():
        assert len(e) == 5 and statistics.median(e) <= 0.05 and max(e) <= 0.10, (metric, e)
        assert min(shipped[metric]) > 0.4, metric
    assert refit.provenance["refit"]["at_bound"] == []


def test_a_recorded_sweep_predicts_the_concurrencies_it_was_not_fitted_on():
    """Fit on 1, 4 and 16 clients of the 256-token sweep; 2 and 8 are within 5%."""
    bench = json.loads(SMALL[0].read_text())
    f = fit_check(FitRequest(model="llama-3.2-1b", gpu="A40"))
    refit = refit_from_bench({**bench, "points": bench["points"][::2]}, f)
    held_out = {**bench, "points": bench["points"][1::2]}
    for metric, e in _errors(held_out, f, refit, ("tok/s", "TPOT", "TTFT", "e2e")).items():
        assert len(e) == 2 and max(e) <= 0.05, (metric, e)


def test_both_recorded_sweeps_refit_together_within_5_percent():
    """Both prompt lengths at once (they tell the per-sequence time from the prefill chunks' interference).
    The CPU target is described by the smallest catalog model on an A40 with the efficiencies the bench
    measures (about 2% of the A40's prefill FLOPs)."""
    bench = _small()
    f = fit_check(FitRequest(model="llama-3.2-1b", gpu="A40"))
    points = bench_points(bench)
    assert len(points) == 9 and not any(pt.merged for pt in points) and len({pt.input_tokens for pt in points}) == 2
    refit = refit_from_bench(bench, f)
    errs = _errors(bench, f, refit, ("tok/s", "TPOT", "TTFT", "e2e"))
    shipped = _errors(bench, f, load_params(), ("tok/s", "TPOT", "TTFT", "e2e"))
    for metric, e in errs.items():
        assert statistics.median(e) <= 0.05 and max(e) <= 0.10, (metric, e)
        assert statistics.median(e) < statistics.median(shipped[metric]) / 10, metric
    assert refit.mfu_prefill < 0.1  # the bench measured a device far slower than the spec's GPU


def test_both_recorded_sweeps_predict_their_held_out_points():
    """Fit on every other concurrency of both sweeps (1, 4, 16 clients at 256 tokens; 1, 4 at 1024),
    predict the others (2 and 8 of each)."""
    f = fit_check(FitRequest(model="llama-3.2-1b", gpu="A40"))
    refit = refit_from_bench(_small(slice(None, None, 2)), f)
    for metric, e in _errors(_small(slice(1, None, 2)), f, refit, ("tok/s", "TPOT", "TTFT", "e2e")).items():
        assert len(e) == 4 and statistics.median(e) <= 0.10 and max(e) <= 0.20, (metric, e)


def test_refit_parameters_are_the_named_ones_with_their_source():
    bench = json.loads(LOCAL.read_text())
    refit = refit_from_bench(bench, fit_check(FitRequest(model="llama-3.2-1b", gpu="H100")))
    for name in REFIT:
        assert "bench" in refit.source_of(name)
        assert math.isfinite(getattr(refit, name)) and getattr(refit, name) >= 0
    assert refit.provenance["refit"]["fitted"] == list(REFIT)


def test_latency_poly_fits_a_quadratic_surface():
    def true(i, o, c):
        return 0.2 + 0.001 * i + 0.02 * o + 0.05 * c + 1e-6 * i * o + 2e-4 * o * c

    pts = [
        {"concurrency": c, "input_tokens": i, "output_tokens": o, "e2e_latency_s": true(i, o, c)}
        for i in (100, 500, 2000)
        for o in (50, 200, 600)
        for c in (1, 4, 16, 32)
    ]
    poly = fit_latency_poly({"points": pts})
    assert isinstance(poly, LatencyPoly) and poly.points == len(pts) and poly.rmse_s < 1e-6
    assert poly.predict(1000, 300, 8) == pytest.approx(true(1000, 300, 8), rel=1e-6)
    assert math.isfinite(poly.predict(1, 1, 1))


def test_plan_with_calibration_reports_the_refits_error_on_the_bench_points(tmp_path):
    """`selfhost plan --calibration BENCH.json` says in the review how close the refit projection is
    to the bench's measured points."""
    from tests.cli_inprocess import run_cli

    spec = DATA.parent.parent / "examples" / "llama-3.1-8b-runpod-a40.yaml"
    f = fit_check(FitRequest(model="llama-3.1-8b", gpu="A40"))
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps(_sweep(f, replace(load_params(), **TRUTH), ((1000, 250),), (1, 4, 16), 32)))
    res = run_cli("plan", "--spec", str(spec), "--calibration", str(bench), "--format", "json")
    assert res.code in (0, 2), res.stderr  # 2: over the example's budget, which the slower endpoint may be
    line = json.loads(res.stdout)["calibration"]
    assert "refit from measured bench bench.json" in line and "median |error| on 3 measured points" in line
    assert "replaying the bench's closed loop" in line
    for metric in ("tok/s", "TPOT", "TTFT"):
        assert f"{metric} 0." in line  # within 1%: the bench is the model's own replay
    shipped = run_cli("plan", "--spec", str(spec), "--format", "json")
    assert "bench" not in json.loads(shipped.stdout)["calibration"]


def test_a_bench_of_a_faster_endpoint_than_the_spec_is_flagged():
    """The tiny CPU model is faster than Llama 3.2 1B's weight reads on an A40 allow: the refit runs out
    of per-step time and says so in the review's line instead of claiming a fit."""
    bench = json.loads(LOCAL.read_text())
    refit = refit_from_bench(bench, fit_check(FitRequest(model="llama-3.2-1b", gpu="A40")))
    info = refit.provenance["refit"]
    assert info["at_bound"] == ["v1_step_overhead_ms"] and "is the bench of this deployment?" in info["summary"]
    assert info["errors"]["e2e"]["max_abs_pct"] > 20  # and the errors show it
    fine = refit_from_bench(bench, fit_check(FitRequest(model="llama-3.2-1b", gpu="H100")))
    assert fine.provenance["refit"]["at_bound"] == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("output_tokens_per_s", float("inf")),
        ("output_tokens_per_s", float("nan")),
        ("tpot_ms", -3.0),
        ("concurrency", 1e9),
        ("concurrency", float("inf")),
        ("completed", 1e7),
        ("mean_input_tokens", float("nan")),
    ],
)
def test_a_bench_point_out_of_range_is_refused(field, value):
    """Numbers of a bench are finite and bounded (the replay's work grows with concurrency and requests)."""
    doc = json.loads(SMALL[0].read_text())
    doc["points"][1][field] = value
    with pytest.raises(UserError, match="out of range"):
        bench_points(doc)


def test_plan_refuses_a_bench_with_a_non_finite_number(tmp_path):
    from tests.cli_inprocess import one_line_error, run_cli

    doc = json.loads(SMALL[0].read_text())
    doc["points"][0]["output_tokens_per_s"] = float("inf")
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps(doc))  # Python's json writes Infinity, and reads it back
    spec = DATA.parent.parent / "examples" / "llama-3.1-8b-runpod-a40.yaml"
    one_line_error(run_cli("plan", "--spec", str(spec), "--calibration", str(bench)), "out of range", "selfhost bench")


@settings(max_examples=40, deadline=None)
@given(
    model=st.sampled_from(sorted(catalog().models)),
    precision=st.sampled_from(["bf16", "fp8", "awq"]),
    gpu=st.sampled_from(sorted(catalog().gpus)),
    gpus=st.sampled_from([1, 2, 4, 8]),
    k=st.floats(0.05, 20),
    conc=st.integers(1, 64),
)
def test_a_profile_at_speed_k_takes_k_times_every_time(model, precision, gpu, gpus, k, conc):
    """at_speed (the local probe's scaling): TTFT, TPOT and latency x k, tok/s / k, in the replay and in the
    steady state, whatever the deployment (weight-only kernels, tensor parallel): the profile's shape kept."""
    try:
        fit = fit_check(FitRequest(model=model, precision=precision, gpu=gpu, gpus=gpus))
    except UserError:
        assume(False)
    base = load_params()
    a, b = (simulate_bench_point(fit, p, 500, 100, conc, 2 * conc) for p in (base, at_speed(base, k)))
    for x, y in ((a.ttft_ms, b.ttft_ms), (a.tpot_ms, b.tpot_ms), (a.e2e_latency_s, b.e2e_latency_s)):
        assert y == pytest.approx(k * x, rel=1e-6)
    assert b.output_tokens_per_s == pytest.approx(a.output_tokens_per_s / k, rel=1e-6)
    pa, pb = project(fit, 500, 100, conc, base), project(fit, 500, 100, conc, at_speed(base, k))
    assert pb.tpot_ms == pytest.approx(k * pa.tpot_ms, rel=1e-6)
    assert pb.ttft_ms == pytest.approx(k * pa.ttft_ms, rel=1e-6)


def test_a_probe_sets_the_speed_from_its_tpot_and_a_wait_from_the_rest_of_its_ttft():
    """A streamed probe at one client: its TPOT over the replay's is the speed factor, and the TTFT beyond the replay's
    at that speed is a wait each request adds; the TPOT stays the steps'. A probe no slower to its first token than
    its steps (or faster) adds no wait: none is negative."""
    fit = fit_check(FitRequest(model="llama-3.2-1b", gpu="H100"))
    base = load_params()
    run = simulate_bench_point(fit, base, 1000, 250, 1, 8)
    probe = BenchPoint(1, 1000, 250, None, 1.3 * run.tpot_ms, 2.0 * run.ttft_ms, 0.7, None, itl_p50_ms=2.0, requests=8)
    k, wait = speed_factor(fit, base, probe)
    assert k == pytest.approx(1.3) and wait == pytest.approx(0.7 * run.ttft_ms, rel=1e-6)
    scaled = simulate_bench_point(fit, at_speed(base, k, wait), 1000, 250, 1, 8)
    assert scaled.ttft_ms == pytest.approx(2.0 * run.ttft_ms, rel=1e-6)
    assert scaled.tpot_ms == pytest.approx(1.3 * run.tpot_ms, rel=1e-9)
    for ttft in (1.3, 1.1):  # as slow as the steps, or less: one factor, no wait
        same = replace(probe, ttft_ms=ttft * run.ttft_ms)
        assert speed_factor(fit, base, same) == pytest.approx((1.3, 0.0), abs=1e-6)


def test_the_probes_wait_does_not_queue():
    """request_latency_ms is each request's own wait, beside the others' (the serving process's intake,
    request_overhead_ms, takes one request at a time): a lone client's TTFT and latency grow by exactly the wait;
    with 16 clients on the local profile, less than the same time added to the intake, which queues; the steady
    state adds it to TTFT and latency as it is."""
    from costing.performance.calibration import load_params_file

    fit = fit_check(FitRequest(model="llama-3.2-1b", gpu="H100"))
    local = load_params_file(Path(__file__).resolve().parents[1] / "costing/data/local-cpu-profile.json")
    wait = 5.0
    for c in (1, 16):
        a, b = (simulate_bench_point(fit, p, 1000, 250, c, 4 * c) for p in (local, at_speed(local, 1.0, wait)))
        intake = replace(local, request_overhead_ms=local.request_overhead_ms + wait)
        serial = simulate_bench_point(fit, intake, 1000, 250, c, 4 * c)
        if c == 1:
            assert b.ttft_ms - a.ttft_ms == pytest.approx(wait, rel=1e-6)
            assert b.e2e_latency_s - a.e2e_latency_s == pytest.approx(wait / 1e3, rel=1e-6)
        else:
            assert 0 < b.ttft_ms - a.ttft_ms < serial.ttft_ms - a.ttft_ms
    for base in (load_params(), local):
        for c in (1, 4, 64):
            pa, pb = project(fit, 1000, 250, c, base), project(fit, 1000, 250, c, at_speed(base, 1.0, wait))
            assert pb.ttft_ms - pa.ttft_ms == pytest.approx(wait, rel=1e-6)
            assert pb.e2e_latency_s - pa.e2e_latency_s == pytest.approx(wait / 1e3, rel=1e-6)


def test_a_merged_probe_sets_one_speed_from_its_end_to_end_latency_and_a_far_one_is_refused():
    """Streams that arrived merged time the delivery, not the engine: the whole request's latency gives one factor."""
    fit = fit_check(FitRequest(model="llama-3.2-1b", gpu="H100"))
    base = load_params()
    run = simulate_bench_point(fit, base, 1000, 250, 1, 8)
    probe = BenchPoint(1, 1000, 250, None, 0.1, 400.0, 1.3 * run.e2e_latency_s, None, itl_p50_ms=0.0, requests=8)
    assert probe.merged and speed_factor(fit, base, probe) == pytest.approx((1.3, 0.0))
    assert probe_basis(probe) == "e2e" and probe_basis(replace(probe, itl_p50_ms=2.0)) == "tpot+ttft"
    # streamed, but without a TPOT to time (one output token): the same one factor, and the basis says so
    single = replace(probe, itl_p50_ms=2.0, tpot_ms=None)
    assert probe_basis(single) == "e2e" and speed_factor(fit, base, single) == pytest.approx((1.3, 0.0))
    for e2e in (0.01 * run.e2e_latency_s, 30 * run.e2e_latency_s, None):
        with pytest.raises(UserError, match="probe"):
            speed_factor(fit, base, replace(probe, e2e_mean_s=e2e))
    streamed = replace(probe, itl_p50_ms=2.0, tpot_ms=run.tpot_ms, ttft_ms=run.ttft_ms)
    for field, value in (("tpot_ms", 30 * run.tpot_ms), ("ttft_ms", 0.01 * run.ttft_ms)):
        with pytest.raises(UserError, match="speed probe"):
            speed_factor(fit, base, replace(streamed, **{field: value}))
    with pytest.raises(UserError, match="completed no request"):  # bench_points kept no point of it
        speed_factor(fit, base, None)


def test_a_point_with_merged_streams_gives_the_refit_the_streamed_requests_figures():
    """`selfhost bench` counts the requests whose tokens arrived in bursts: the refit reads TTFT and TPOT of the
    others; a point where all did is a merged point (its end-to-end latency fitted instead)."""
    pt = {
        "concurrency": 4,
        "completed": 8,
        "num_requests": 8,
        "output_tokens_per_s": 900.0,
        "ttft_ms": {"mean": 300.0},
        "tpot_ms": {"mean": 1.0},
        "itl_ms": {"p50": 0.0},
        "e2el_ms": {"mean": 600.0, "p90": 700.0},
        "merged_requests": 3,
        "streamed_ttft_ms": {"mean": 40.0},
        "streamed_tpot_ms": {"mean": 2.2},
    }
    doc = {"mode": "concurrency", "input_tokens": 1000, "output_tokens": 250}
    [some] = bench_points({**doc, "points": [pt]})
    assert (some.ttft_ms, some.tpot_ms, some.merged) == (40.0, 2.2, False)
    [every] = bench_points({**doc, "points": [{**pt, "merged_requests": 8}]})
    assert every.merged and every.ttft_ms is None and every.tpot_ms is None and every.e2e_mean_s == 0.6
    [old] = bench_points({**doc, "points": [{k: v for k, v in pt.items() if k != "merged_requests"}]})
    assert (old.ttft_ms, old.merged) == (300.0, True)  # a bench from before the count: its pooled gaps decide
