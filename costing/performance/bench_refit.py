"""Refit the projection from a `selfhost bench` run of a real endpoint (`selfhost plan --calibration`),
and the degree-2 latency regression of the 002 source analysis.

The refit is a bounded least-squares fit (Levenberg-Marquardt, pure Python: `selfhost plan` loads no
numpy or scipy) of the parameters a single-endpoint sweep can identify, on the log errors of each
point's tok/s, TPOT and TTFT, each point compared with a replay of the bench's own closed loop through
vLLM's scheduler (simulate_bench_point). Parameters the sweep cannot tell apart (a per-step constant and
a per-request constant, at one prompt length) are held near the published-data fit by a weak prior, so
the refit moves only what the bench measures. Points whose streamed tokens arrived merged (vLLM's API
server fell behind the engine: most gaps between chunks are zero) have a TTFT and TPOT that measure the
delivery, not the engine; there the refit fits the end-to-end latency instead, and says so.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

from costing.performance.calibration import FITTED, Params, load_params


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
    itl_p50_ms: float | None = None  # median gap between streamed chunks (0: most tokens arrived merged)
    requests: int | None = None  # requests of a closed-loop sweep point (None: compare with the steady state)

    @property
    def merged(self) -> bool:
        """True when at least half the gaps between streamed chunks are zero: the server delivered
        tokens in bursts (its API process behind the engine), so TTFT and TPOT split the latency by
        delivery, not by engine work; the end-to-end latency and tok/s still measure the engine."""
        return self.itl_p50_ms is not None and self.itl_p50_ms <= 0 and self.output_tokens > 2


def bench_points(bench: dict[str, Any] | list[Any]) -> list[BenchPoint]:
    """Points of a bench JSON. Expected schema (extra keys ignored, each field optional unless noted):

        {"model": str, "input_tokens": int, "output_tokens": int,      # run-level defaults
         "mode": "concurrency",                                         # a closed-loop sweep: replayed
         "points": [{"concurrency": int,                                # required
                     "completed" | "num_requests": int,                 # requests of a sweep point
                     "input_tokens" | "mean_input_tokens": number,
                     "output_tokens" | "mean_output_tokens": number,
                     "output_tokens_per_s": number,
                     "ttft_ms": number | {"mean"|"median"|"p50"|"p90": number},
                     "tpot_ms": number | {"mean"|"median": number},
                     "itl_ms": {"p50"|"median": number},                # 0: merged stream
                     "merged_requests": int,                            # requests whose tokens arrived in
                     "streamed_ttft_ms", "streamed_tpot_ms": {"mean"},  # bursts; TTFT/TPOT of the others
                     "e2e_latency_s": number | {"mean", "p90"}  or  "e2el_ms": {"mean", "p90"},
                     "requests_per_s": number}]}

    A bare list of points is accepted too (compared with the steady state). Points without concurrency
    or tokens are skipped."""
    raw = bench.get("points", []) if isinstance(bench, dict) else bench
    top = bench if isinstance(bench, dict) else {}
    sweep = top.get("mode") == "concurrency"  # `selfhost bench --concurrency`: a closed loop of fixed lengths
    out = []
    for pt in raw or []:
        if not isinstance(pt, dict) or pt.get("completed") == 0:
            continue
        conc = _pick(pt.get("concurrency"))
        i = _pick(pt.get("input_tokens")) or _pick(pt.get("mean_input_tokens")) or _pick(top.get("input_tokens"))
        o = _pick(pt.get("output_tokens")) or _pick(pt.get("mean_output_tokens")) or _pick(top.get("output_tokens"))
        if not conc or not i or not o:
            continue
        requests = (_pick(pt.get("completed")) or _pick(pt.get("num_requests")) or 0.0) if sweep else 0.0
        for name, value in (("concurrency", conc), ("input_tokens", i), ("output_tokens", o), ("requests", requests)):
            if not math.isfinite(value) or value > MAX_POINT[name]:
                _refuse(name, value, conc)
        e2e = pt.get("e2e_latency_s")
        e2e_mean, e2e_p90 = _pick(e2e, "mean"), _pick(e2e, "p90") if isinstance(e2e, dict) else None
        if e2e_mean is None and isinstance(pt.get("e2el_ms"), dict):
            e2e_mean = (_pick(pt["e2el_ms"], "mean") or 0) / 1e3 or None
            e2e_p90 = (_pick(pt["e2el_ms"], "p90") or 0) / 1e3 or None
        ttft, tpot = engine_latencies(pt)
        itl = _pick(pt.get("itl_ms"), "p50", "median")
        if _pick(pt.get("merged_requests")):  # the streamed requests' figures are the engine's; none: all merged
            itl = 0.0 if ttft is None else None
        point = BenchPoint(
            round(conc),
            round(i),
            max(1, round(o)),
            _pick(pt.get("output_tokens_per_s")),
            _pick(tpot, "mean", "median", "p50"),
            _pick(ttft, "mean", "median", "p50"),
            e2e_mean,
            e2e_p90,
            itl,
            round(requests) or None,
        )
        _check_point(point)
        out.append(point)
    return out


def engine_latencies(pt: dict[str, Any]) -> tuple[Any, Any]:
    """A bench point's TTFT and TPOT summaries that time the engine: every request's, or when some streams
    arrived merged (`merged_requests`: tokens in one burst, the API server behind) the other requests'
    (`streamed_ttft_ms`, `streamed_tpot_ms`); (None, None) when every stream did."""
    merged = _pick(pt.get("merged_requests")) or 0.0
    if not merged:
        return pt.get("ttft_ms"), pt.get("tpot_ms")
    if merged >= (_pick(pt.get("completed")) or 0.0):
        return None, None
    return pt.get("streamed_ttft_ms"), pt.get("streamed_tpot_ms")


MAX_POINT = {"concurrency": 100_000, "input_tokens": 10_000_000, "output_tokens": 10_000_000, "requests": 20_000}


def _refuse(name: str, value: float, concurrency: float) -> None:
    from costing.errors import UserError

    limit = f", at most {MAX_POINT[name]:,}" if name in MAX_POINT else ""
    raise UserError(
        f"the bench point at concurrency {concurrency:g} has {name} {value!r}, out of range",
        f"pass the JSON written by `selfhost bench` (finite, non-negative numbers{limit})",
    )


def _check_point(pt: BenchPoint) -> None:
    """Numbers of a bench point are finite and bounded (the replay's work grows with them)."""
    for name, value in vars(pt).items():
        if value is not None and (not math.isfinite(value) or value < 0 or value > MAX_POINT.get(name, math.inf)):
            _refuse(name, value, pt.concurrency)


@dataclass(frozen=True)
class BenchRun:
    """What `selfhost bench` measures at one closed-loop point (means over its requests)."""

    ttft_ms: float
    tpot_ms: float
    e2e_latency_s: float
    output_tokens_per_s: float


def simulate_bench_point(
    fit, params: Params, input_tokens: int, output_tokens: int, concurrency: int, requests: int
) -> BenchRun:
    """Replay one point of a `selfhost bench` concurrency sweep through vLLM's scheduler, step by step.

    The bench starts `concurrency` requests at once and sends the next when one ends, every request with
    the same prompt and output length: the clients stay in lock-step cohorts, whose prompts are
    prefilled together (chunks of max_num_batched_tokens after the running decodes, FCFS admission up
    to max_num_seqs) while the steady state of costing.performance.projection assumes staggered arrivals. Each step
    takes costing.performance.projection.step_time_s for its decodes and prefill chunks (the same physics the cost
    review uses); runs of decode-only steps are summed in one go. `request_overhead_ms` is the serving
    process's own time per request (HTTP, parsing the prompt, handing it to the engine): one event loop
    does it for one request at a time, and streams nothing meanwhile, so a cohort's first tokens wait for
    the whole cohort to be taken in (with one client it is the plain delay costing.performance.projection adds).
    Returns the bench's means: TTFT, TPOT ((latency - TTFT) / (output - 1)), latency and output tok/s
    over the whole run (ramp and drain included, as the bench's duration includes them)."""
    from costing.performance import scheduler

    i, o, n = int(input_tokens), max(1, int(output_tokens)), max(1, int(requests))
    cap = scheduler.admissible(fit, i, o)
    run = scheduler.replay(fit, params, i, [o] * n, scheduler.Arrivals.closed(concurrency, n), max_running=cap)
    ttft, e2e = statistics.fmean(run.ttft_s()), statistics.fmean(run.e2e_s())
    tpot = statistics.fmean(run.tpot_s()) if o > 1 else 0.0
    return BenchRun(ttft * 1e3, tpot * 1e3, e2e, run.output_tokens_per_s)


# What one endpoint's sweep identifies, each a named parameter of costing/performance/projection.py's step. The
# efficiencies are relative to the spec's GPU datasheet; a bench may measure an endpoint far slower than
# that GPU (the local target is a CPU), so their lower bounds are wider than the published-data fit's:
# - v1_step_overhead_ms: the per-step constant beside the weight reads (bw_eff, the same constant per
#   step: a bench cannot tell them apart, so bw_eff stays at the published fit);
# - seq_overhead_us: per running sequence per step (sampling, detokenization; a CPU backend's decode
#   compute, like mfu_decode, which it cannot tell apart): TPOT's growth with concurrency;
# - kv_bw_eff: attention's KV-cache reads, growing with batch x context (TPOT across prompt lengths);
# - mfu_prefill: prompt work, in TTFT and in the chunks the steps carry at high concurrency;
# - request_overhead_ms: per request outside the engine steps (HTTP, tokenizing, hand-off to the engine).
REFIT = ("v1_step_overhead_ms", "seq_overhead_us", "kv_bw_eff", "mfu_prefill", "request_overhead_ms")
DEVICE_FLOOR = 1e-4  # an efficiency a bench may reach against the spec's GPU datasheet (a CPU: about 1e-3)
REFIT_BOUNDS = {
    **{k: (DEVICE_FLOOR, hi) for k, (lo, hi) in FITTED.items()},
    "v1_step_overhead_ms": (0.0, 1000.0),
    "request_overhead_ms": (0.0, 10_000.0),
    "seq_overhead_us": (0.0, 100_000.0),  # an endpoint's own CPU per sequence: CPU backends pay far more than GPUs
}
# Weight of the prior that holds each parameter at the published-data fit, per unit of its logit: it
# decides only what the bench cannot (a direction no measurement moves); a whole unit costs as much as
# a 1% error on a single measurement.
PRIOR_WEIGHT = 0.01
METRICS = ("tok/s", "TPOT", "TTFT", "e2e")


@dataclass(frozen=True)
class PointFit:
    """One bench point: measured and projected tok/s, TPOT (ms), TTFT (ms), mean e2e (s)."""

    concurrency: int
    input_tokens: int
    output_tokens: int
    merged: bool
    measured: dict[str, float | None]
    projected: dict[str, float]

    def error(self, metric: str) -> float | None:
        """projected / measured - 1, or None when the bench did not measure it."""
        meas = self.measured.get(metric)
        return self.projected[metric] / meas - 1 if meas and meas > 0 else None

    def fitted(self) -> tuple[str, ...]:
        """The metrics the refit fits on this point (TTFT and TPOT split a merged stream by delivery)."""
        return ("tok/s", "e2e") if self.merged else ("tok/s", "TPOT", "TTFT")


def modelled(fit, params: Params, pt: BenchPoint) -> dict[str, float]:
    """The model's tok/s, TPOT (ms), TTFT (ms) and mean latency (s) for a bench point: the bench's own
    closed loop replayed (simulate_bench_point) when the point says how many requests it ran, else
    the steady state of costing.performance.projection.project."""
    if pt.requests:
        run = simulate_bench_point(fit, params, pt.input_tokens, pt.output_tokens, pt.concurrency, pt.requests)
        return {"tok/s": run.output_tokens_per_s, "TPOT": run.tpot_ms, "TTFT": run.ttft_ms, "e2e": run.e2e_latency_s}
    from costing.performance.projection import project

    pr = project(fit, pt.input_tokens, pt.output_tokens, pt.concurrency, params)
    return {"tok/s": pr.output_tokens_per_s, "TPOT": pr.tpot_ms, "TTFT": pr.ttft_ms, "e2e": pr.e2e_latency_s}


def point_fits(points: Sequence[BenchPoint], fit, params: Params) -> list[PointFit]:
    return [
        PointFit(
            pt.concurrency,
            pt.input_tokens,
            pt.output_tokens,
            pt.merged,
            {"tok/s": pt.output_tokens_per_s, "TPOT": pt.tpot_ms, "TTFT": pt.ttft_ms, "e2e": pt.e2e_mean_s},
            modelled(fit, params, pt),
        )
        for pt in points
    ]


def error_summary(rows: Sequence[PointFit]) -> dict[str, dict[str, float | int]]:
    """Per metric: the points that measured it, the median and the largest |error| in percent."""
    out: dict[str, dict[str, float | int]] = {}
    for m in METRICS:
        errs = [abs(e) for e in (r.error(m) for r in rows) if e is not None]
        if errs:
            out[m] = {
                "points": len(errs),
                "median_abs_pct": round(100 * statistics.median(errs), 2),
                "max_abs_pct": round(100 * max(errs), 2),
            }
    return out


def describe_errors(
    summary: dict[str, Any], points: int, merged: int, at_bound: Sequence[str] = (), replayed: bool = True
) -> str:
    """One line for the review: how close the refit projection is to the bench's points."""
    parts = [
        f"{m} {s['median_abs_pct']:.1f}% (worst {s['max_abs_pct']:.1f}%)" for m, s in summary.items() if s.get("points")
    ]
    how = "replaying the bench's closed loop, the refit" if replayed else "the refit projection"
    line = f"{how} is within median |error| on {points} measured points: " + ", ".join(parts)
    if merged:
        line += (
            f"; {merged} of {points} points streamed merged tokens (the server's API process behind its engine): "
            "their TTFT and TPOT measure delivery, so the refit fits their end-to-end latency"
        )
    if at_bound:
        line += (
            f"; {', '.join(at_bound)} at the bound of its range: the measured endpoint is beyond what this "
            "model on this GPU can be (is the bench of this deployment?)"
        )
    return line


def _solve(a: list[list[float]], b: list[float]) -> list[float]:
    """Gaussian elimination with partial pivoting (the n x n normal equations, n <= 6)."""
    n = len(b)
    m = [[*row, b[i]] for i, row in enumerate(a)]
    for col in range(n):
        piv = max(range(col, n), key=lambda r: abs(m[r][col]))
        if abs(m[piv][col]) < 1e-300:
            continue
        m[col], m[piv] = m[piv], m[col]
        for r in range(col + 1, n):
            f = m[r][col] / m[col][col]
            for k in range(col, n + 1):
                m[r][k] -= f * m[col][k]
    x = [0.0] * n
    for r in range(n - 1, -1, -1):
        if abs(m[r][r]) < 1e-300:
            continue
        x[r] = (m[r][n] - sum(m[r][k] * x[k] for k in range(r + 1, n))) / m[r][r]
    return x


def least_squares(
    residuals: Callable[[list[float]], list[float]], x0: Sequence[float], max_iter: int = 200
) -> tuple[list[float], float]:
    """Levenberg-Marquardt (Marquardt's diagonal scaling, forward-difference Jacobian): the x that
    minimises sum(residuals(x)^2), and that sum. Unbounded: bounds come from the caller's transform."""
    x = list(x0)
    r = residuals(x)
    cost = sum(v * v for v in r)
    mu, h, stalls = 1e-3, 1e-6, 0
    for _ in range(max_iter):
        cols = []
        for j in range(len(x)):
            xj = x[:]
            xj[j] += h
            cols.append([(a - b) / h for a, b in zip(residuals(xj), r, strict=True)])
        jtj = [[sum(a * b for a, b in zip(ci, cj, strict=True)) for cj in cols] for ci in cols]
        grad = [sum(a * b for a, b in zip(ci, r, strict=True)) for ci in cols]
        if max(abs(g) for g in grad) < 1e-12:
            break
        while True:
            damped = [
                [v + (mu * max(row[i], 1e-12) if i == k else 0.0) for k, v in enumerate(row)]
                for i, row in enumerate(jtj)
            ]
            step = _solve(damped, [-g for g in grad])
            cand = [a + b for a, b in zip(x, step, strict=True)]
            rc = residuals(cand)
            cc = sum(v * v for v in rc)
            if cc < cost:
                stalls = stalls + 1 if cost - cc < 1e-10 * (1 + cost) else 0
                x, r, cost, mu = cand, rc, cc, max(mu / 3, 1e-12)
                break
            mu *= 4
            if mu > 1e12:  # no step lowers the cost: a minimum (to the finite-difference precision)
                return x, cost
        if stalls >= 3:
            break
    return x, cost


def _to_unit(value: float, lo: float, hi: float) -> float:
    """The logit of a bounded parameter (values at a bound are moved a thousandth of the range inside)."""
    span = hi - lo
    u = min(1 - 1e-3, max(1e-3, (value - lo) / span))
    return math.log(u / (1 - u))


def _from_unit(z: float, lo: float, hi: float) -> float:
    return lo + (hi - lo) / (1 + math.exp(-max(-60.0, min(60.0, z))))


SLOWER = ("bw_eff", "mfu_decode", "kv_bw_eff")  # efficiencies of a decode step: divided by its slowdown
LONGER = ("v1_step_overhead_ms", "seq_overhead_us")  # times of a decode step: multiplied by it


def _device_start(points: Sequence[BenchPoint], fit, base: Params, names: tuple[str, ...]) -> dict[str, float] | None:
    """A second starting point for the least squares: the published fit slowed (or sped up) uniformly to
    the bench's lightest-load point, decode step and prefill apart. A bench of a device far from the
    spec's GPU (a CPU) starts near its own scale instead of in the published fit's basin."""
    pt = min(points, key=lambda q: q.concurrency)
    pr = modelled(fit, base, pt)
    if pt.merged or not (pt.tpot_ms and pt.ttft_ms):
        if not pt.e2e_mean_s:
            return None
        k_step = k_pre = pt.e2e_mean_s / pr["e2e"]
    else:
        k_step, k_pre = pt.tpot_ms / pr["TPOT"], pt.ttft_ms / pr["TTFT"]
    out = {}
    for n in names:
        v = getattr(base, n)
        v = v / k_step if n in SLOWER else v * k_step if n in LONGER else v
        v = v / k_pre if n == "mfu_prefill" else v
        lo, hi = REFIT_BOUNDS[n]
        out[n] = min(hi, max(lo, v))
    return out


# Every time a step or a request takes is a time over a rate: at speed factor k (k x slower) the rates are
# divided by k and the times multiplied by it, so every projected time is k times the original (the shares
# between memory and compute, overlap, multi-step and TensorRT-LLM's speed-up, stay).
# (weight_only_mfu is a share of the 16-bit kernels' rate, which mfu_* already scale: it stays)
RATES = ("bw_eff", "kv_bw_eff", "mfu_prefill", "mfu_decode", "allreduce_bw_eff", "internode_gbs", "measured_bus_share")
TIMES = (
    "step_overhead_ms",
    "v1_step_overhead_ms",
    "seq_overhead_us",
    "v0_seq_overhead_us",
    "allreduce_latency_us",
    "allreduce_hop_us",
    "trtllm_step_overhead_ms",
    "trtllm_seq_overhead_us",
    "request_overhead_ms",
    "request_latency_ms",
    "internode_latency_us",
)
SPEED_RANGE = (0.05, 20.0)  # a probe outside it measured something else than this profile's device


def at_speed(params: Params, k: float, latency_ms: float = 0.0) -> Params:
    """The same device profile on a machine `k` times slower (k < 1: faster): every projected time x k; plus
    `latency_ms`, a wait per request that does not queue (request_latency_ms, see speed_factor)."""
    values = {n: getattr(params, n) / k for n in RATES}
    values |= {n: getattr(params, n) * k for n in TIMES}
    values["request_latency_ms"] += latency_ms
    return replace(params, **values)


def _check_factor(k: float, what: str) -> float:
    from costing.errors import UserError

    lo, hi = SPEED_RANGE
    if not (math.isfinite(k) and lo <= k <= hi):
        raise UserError(
            f"the speed probe's {what} ran {k:.3g}x the local profile's time, outside {lo:g}-{hi:g}x: "
            "the endpoint is not the local target the profile describes",
            "bench the local target (`selfhost up local`), or pass --no-probe",
        )
    return k


def probe_basis(probe: BenchPoint) -> str:
    """What a speed probe's factors come from: "tpot+ttft" when its requests streamed TTFT and TPOT apart, else
    "e2e" (its streams arrived merged, see BenchPoint.merged, or it timed no TPOT): the whole request's latency."""
    if probe.merged or not probe.ttft_ms or not probe.tpot_ms or probe.output_tokens < 2:
        return "e2e"
    return "tpot+ttft"


def speed_factor(fit, params: Params, probe: BenchPoint | None) -> tuple[float, float]:
    """How much slower (> 1) or faster (< 1) this machine runs now than the profile, and what its requests wait
    beyond that: (k, latency in ms), from a probe's figures over its closed-loop replay. Streamed, k is its mean
    TPOT over the replay's, and the latency its TTFT (the bench passes the median) beyond the replay's at speed k
    (none when below it): on a shared CPU a request's first token slows more than the steps do, by a wait of its
    own that does not grow with the clients (docs/concepts/projection-trust.md, "The local loop"). A probe whose
    streams arrived merged (TTFT and TPOT time the delivery, see BenchPoint.merged) gives k from its mean
    end-to-end latency over the replay's, the whole request, what it still measures, and no latency."""
    from costing.errors import UserError

    if probe is None or not probe.e2e_mean_s or not probe.requests:  # None: bench_points kept no point
        raise UserError(
            "the speed probe completed no request, so the local profile cannot be set to this machine",
            "check the server (selfhost smoke), or pass --no-probe to compare with the profile as recorded",
        )
    base = modelled(fit, params, probe)
    if probe_basis(probe) == "e2e":
        return _check_factor(probe.e2e_mean_s / base["e2e"], "end-to-end latency"), 0.0
    ttft, tpot = cast(float, probe.ttft_ms), cast(float, probe.tpot_ms)  # probe_basis: both timed
    k = _check_factor(tpot / base["TPOT"], "TPOT")
    _check_factor(ttft / base["TTFT"], "TTFT")
    # at speed k the replay's TTFT is k x base's (at_speed scales every time), and at one client the wait adds to
    # TTFT as it is (nothing queues behind it): the difference is the wait
    return k, max(0.0, ttft - k * base["TTFT"])


def refit_from_bench(
    bench: dict[str, Any] | list[Any], fit, params: Params | None = None, names: tuple[str, ...] = REFIT
) -> Params:
    """Refit `names` to the bench's points (see the module docstring): least squares on the log errors
    of tok/s, TPOT and TTFT (end-to-end latency on merged-stream points), each parameter inside its
    bound, plus the weak prior toward `params` (default: the shipped fit). The result's provenance
    holds the per-metric error on the bench's points."""
    from costing.errors import UserError

    base = params or load_params()
    points = bench_points(bench)
    if not points:
        raise UserError(
            "the bench JSON has no usable points (concurrency, input and output tokens)",
            "pass the JSON written by `selfhost bench`",
        )
    names = tuple(n for n in names if hasattr(base, n))
    bounds = [REFIT_BOUNDS[n] for n in names]
    z0 = [_to_unit(getattr(base, n), lo, hi) for n, (lo, hi) in zip(names, bounds, strict=True)]

    def at(z: Sequence[float]) -> Params:
        values = {n: _from_unit(v, lo, hi) for n, v, (lo, hi) in zip(names, z, bounds, strict=True)}
        return replace(base, **cast(dict[str, Any], values))

    measured = [
        [(m, v) for m, v in row.measured.items() if m in row.fitted() and v and v > 0]
        for row in point_fits(points, fit, base)
    ]
    if not any(measured):
        raise UserError(
            "the bench JSON's points measured no tok/s, TPOT, TTFT or latency",
            "pass the JSON written by `selfhost bench` (points with completed requests)",
        )

    def residuals(z: list[float]) -> list[float]:
        p = at(z)
        out = []
        for pt, meas in zip(points, measured, strict=True):
            proj = modelled(fit, p, pt)
            out += [math.log(max(proj[m], 1e-12) / v) for m, v in meas]
        return out + [PRIOR_WEIGHT * (a - b) for a, b in zip(z, z0, strict=True)]

    starts = [z0]
    scaled = _device_start(points, fit, base, names)
    if scaled is not None:
        starts.append([_to_unit(scaled[n], lo, hi) for n, (lo, hi) in zip(names, bounds, strict=True)])
    z, loss = min((least_squares(residuals, s) for s in starts), key=lambda zl: zl[1])
    fitted = at(z)
    values = {n: float(f"{getattr(fitted, n):.6g}") for n in names}
    out = base.with_values(source=f"refit from bench ({len(points)} points)", **values)
    rows = point_fits(points, fit, out)
    summary = error_summary(rows)
    merged = sum(r.merged for r in rows)
    # at the end of a range where that means "beyond this hardware": an efficiency or a time at its top,
    # or no step time left beside the weight reads (a per-request or per-sequence time of 0 is fine)
    at_bound = [
        n
        for n, (lo, hi) in zip(names, bounds, strict=True)
        if getattr(fitted, n) >= hi - 0.0025 * (hi - lo)
        or (n == "v1_step_overhead_ms" and fitted.v1_step_overhead_ms < 0.01)
    ]
    return replace(
        out,
        provenance={
            **base.provenance,
            "refit": {
                "points": len(points),
                "loss": loss,
                "model": bench.get("model") if isinstance(bench, dict) else None,
                "fitted": list(names),
                "merged_points": merged,
                "errors": summary,
                "at_bound": at_bound,
                "summary": describe_errors(summary, len(points), merged, at_bound, any(p.requests for p in points)),
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
