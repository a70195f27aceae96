"""Refit from a bench run and the latency regression (costing/bench_refit.py)."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from costing.bench_refit import LatencyPoly, bench_points, fit_latency_poly, refit_from_bench
from costing.calibration import load_params
from costing.errors import UserError
from costing.fit import FitRequest, fit_check
from costing.projection import project

BENCH = {
    "schema": "selfhost-bench/1",
    "model": "llama-3.1-8b",
    "input_tokens": 500,
    "output_tokens": 200,
    "points": [],
}


def _bench_from(fit, params, concs=(1, 4, 16, 32)):
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
    assert "bench" in refit.source_of("bw_eff") and "bench" in refit.source


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
    assert len(bench_points([{"concurrency": 1, "input_tokens": 5, "output_tokens": 5}])) == 1
    with pytest.raises(UserError):
        refit_from_bench({"points": []}, fit_check(FitRequest(model="llama-3.1-8b", gpu="A40")))


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
