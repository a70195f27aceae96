"""Refit the projection from a `selfhost bench` run of a real endpoint (`selfhost plan --calibration`),
and the degree-2 latency regression of the 002 source analysis."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, cast

from costing.calibration import FITTED, Params, load_params


def _pick(value: Any, *keys: str) -> float | None:
    """A number, or the first of `keys` present in a dict of summary statistics."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, dict):
        for k in keys:
            if isinstance(value.get(k), (int, float)):
                return float(value[k])
    return None


@dataclass(frozen=True)
class BenchPoint:
    concurrency: int
    input_tokens: int
    output_tokens: int
    output_tokens_per_s: float | None
    tpot_ms: float | None
    ttft_ms: float | None
    e2e_mean_s: float | None
    e2e_p90_s: float | None


def bench_points(bench: dict[str, Any]) -> list[BenchPoint]:
    """Points of a bench JSON. Expected schema (extra keys ignored, each field optional unless noted):

        {"model": str, "input_tokens": int, "output_tokens": int,      # run-level defaults
         "points": [{"concurrency": int,                                # required
                     "input_tokens" | "mean_input_tokens": number,
                     "output_tokens" | "mean_output_tokens": number,
                     "output_tokens_per_s": number,
                     "ttft_ms": number | {"mean"|"median"|"p50"|"p90": number},
                     "tpot_ms": number | {"mean"|"median": number},
                     "e2e_latency_s": number | {"mean", "p90"}  or  "e2el_ms": {"mean", "p90"},
                     "requests_per_s": number}]}

    A bare list of points is accepted too. Points without concurrency or tokens are skipped."""
    raw = bench.get("points", []) if isinstance(bench, dict) else bench
    top = bench if isinstance(bench, dict) else {}
    out = []
    for pt in raw or []:
        if not isinstance(pt, dict) or pt.get("completed") == 0:
            continue
        conc = _pick(pt.get("concurrency"))
        i = _pick(pt.get("input_tokens")) or _pick(pt.get("mean_input_tokens")) or _pick(top.get("input_tokens"))
        o = _pick(pt.get("output_tokens")) or _pick(pt.get("mean_output_tokens")) or _pick(top.get("output_tokens"))
        if not conc or not i or not o:
            continue
        e2e = pt.get("e2e_latency_s")
        e2e_mean, e2e_p90 = _pick(e2e, "mean"), _pick(e2e, "p90") if isinstance(e2e, dict) else None
        if e2e_mean is None and isinstance(pt.get("e2el_ms"), dict):
            e2e_mean = (_pick(pt["e2el_ms"], "mean") or 0) / 1e3 or None
            e2e_p90 = (_pick(pt["e2el_ms"], "p90") or 0) / 1e3 or None
        out.append(
            BenchPoint(
                round(conc),
                round(i),
                max(1, round(o)),
                _pick(pt.get("output_tokens_per_s")),
                _pick(pt.get("tpot_ms"), "mean", "median", "p50"),
                _pick(pt.get("ttft_ms"), "mean", "median", "p50"),
                e2e_mean,
                e2e_p90,
            )
        )
    return out


# a bench measures the V1 engine, and the time each request spends outside it
REFIT = ("bw_eff", "v1_step_overhead_ms", "seq_overhead_us", "mfu_prefill", "request_overhead_ms")
REFIT_BOUNDS = {
    **FITTED,
    "v1_step_overhead_ms": FITTED["step_overhead_ms"],
    "request_overhead_ms": (0.0, 1000.0),
    "seq_overhead_us": (0.0, 2000.0),  # an endpoint's own CPU per sequence: CPU backends pay far more than GPUs
}


def refit_from_bench(
    bench: dict[str, Any], fit, params: Params | None = None, names: tuple[str, ...] = REFIT
) -> Params:
    """Refit the parameters a single-endpoint sweep can identify (memory efficiency, per-step and
    per-sequence overhead from TPOT and tok/s; prefill MFU from TTFT; tails come from the model)
    by a bounded coordinate search on log errors. Pure Python: runs without scipy."""
    from costing.projection import project

    base = params or load_params()
    points = bench_points(bench)
    if not points:
        from costing.errors import UserError

        raise UserError(
            "the bench JSON has no usable points (concurrency, input and output tokens)",
            "pass the JSON written by `selfhost bench`",
        )

    def loss(p: Params) -> float:
        total = 0.0
        for pt in points:
            pr = project(fit, pt.input_tokens, pt.output_tokens, pt.concurrency, p)
            for meas, proj in (
                (pt.output_tokens_per_s, pr.output_tokens_per_s),
                (pt.tpot_ms, pr.tpot_ms),
                (pt.ttft_ms, pr.ttft_ms),
            ):
                if meas and meas > 0:
                    total += math.log(proj / meas) ** 2
        return total

    cur, best = base, loss(base)
    step = 0.5
    for _ in range(40):
        improved = False
        for n in names:
            lo, hi = REFIT_BOUNDS[n]
            for factor in (1 + step, 1 / (1 + step)):
                v = getattr(cur, n) * factor if getattr(cur, n) > 0 else (hi - lo) * 0.01 * factor
                cand = replace(cur, **cast(dict[str, Any], {n: min(hi, max(lo, v))}))
                val = loss(cand)
                if val < best - 1e-12:
                    cur, best, improved = cand, val, True
        if not improved:
            step /= 2
            if step < 0.01:
                break
    source = f"refit from bench ({len(points)} points)"
    values = {n: round(getattr(cur, n), 5) for n in names}
    out = base.with_values(source=source, **values)
    return replace(
        out,
        provenance={
            **base.provenance,
            "refit": {
                "points": len(points),
                "loss": best,
                "model": bench.get("model") if isinstance(bench, dict) else None,
            },
        },
    )


@dataclass(frozen=True)
class LatencyPoly:
    """Degree-2 polynomial regression of mean end-to-end latency over (input tokens, output tokens,
    concurrency): the empirical model of the 002 source analysis (10 coefficients)."""

    coef: tuple[float, ...]
    rmse_s: float
    points: int

    @staticmethod
    def features(i: float, o: float, c: float) -> list[float]:
        return [1.0, i, o, c, i * i, o * o, c * c, i * o, i * c, o * c]

    def predict(self, input_tokens: float, output_tokens: float, concurrency: float) -> float:
        return sum(
            a * b for a, b in zip(self.coef, self.features(input_tokens, output_tokens, concurrency), strict=False)
        )


def fit_latency_poly(bench: dict[str, Any]) -> LatencyPoly:
    """Least squares (numpy) of the 10 degree-2 terms; rank-deficient sweeps (one input/output
    length) get numpy's minimum-norm solution, so use it inside the measured range only."""
    import numpy as np

    pts = [p for p in bench_points(bench) if p.e2e_mean_s]
    if not pts:
        from costing.errors import UserError

        raise UserError(
            "the bench JSON has no points with end-to-end latency", "pass the JSON written by `selfhost bench`"
        )
    x = np.array([LatencyPoly.features(p.input_tokens, p.output_tokens, p.concurrency) for p in pts])
    y = np.array([p.e2e_mean_s for p in pts])
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    rmse = float(np.sqrt(np.mean((x @ coef - y) ** 2)))
    return LatencyPoly(tuple(float(c) for c in coef), rmse, len(pts))
