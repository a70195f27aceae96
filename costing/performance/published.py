"""The published measurements (costing/data/published-benchmarks.csv, sources in
published-benchmarks.md, read by costing.performance.published_rows): predict each row with
costing.performance.scheduler's replay (bursts of prompts) or the projection's steady state (closed-loop
clients; Poisson arrivals at the requests in flight Little's law gives, which tests/test_scheduler.py checks
against the replay), fit the efficiency parameters (scipy, `make calibrate`) and report the errors
(`make accuracy`)."""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

from costing.performance import engines, scheduler
from costing.performance.calibration import FITTED, Params, load_params
from costing.performance.published_rows import (  # noqa: F401  (re-exported: the rows are read there)
    DEFAULT_CSV,
    GPU_NAMES,
    LONG_CONTEXT_SOURCE,
    SHAREGPT_IN,
    SHAREGPT_OUT,
    TRTLLM_MAX_BATCH,
    VLLM_054_BATCHED_TOKENS,
    VLLM_054_CHUNKED_TOKENS,
    VLLM_054_MAX_NUM_SEQS,
    Row,
    map_engine,
    map_model,
    map_precision,
    read_rows,
)
from costing.performance.scheduler import Replay

# llmperf (mid-2024) made its prompts and counted output tokens with the Llama 2 tokenizer
# (hf-internal-testing/llama-tokenizer), not the served model's: Meta's Llama 3 announcement gives its tokenizer
# "up to 15% fewer tokens" than Llama 2's for the same text. The A10G run's own results table shows it: requests
# for 150 tokens (max_tokens, counted by the server) come back as 177 client-counted tokens on average.
LLMPERF_TOKEN_RATIO = 1 / 0.85  # client-counted (Llama 2) tokens per Llama 3 token


def client_token_ratio(row: Row) -> float:
    """Client-counted tokens per served-model token: llmperf rows of Llama 3 models count with Llama 2's
    tokenizer; every other row counts with the served model's own."""
    return LLMPERF_TOKEN_RATIO if "llmperf" in row.source.lower() and row.model.startswith("llama-3") else 1.0


def long_context_chunked(row: Row) -> bool:
    """LambdaLabs summary rows served at a context above 32K: vLLM 0.5.4 chunks prefills (512 tokens a step)."""
    if LONG_CONTEXT_SOURCE not in row.source or not row.model.startswith("llama-3.1"):
        return False
    return not (row.model == "llama-3.1-70b" and row.gpus == 1)  # 70B on one 80 GB GPU serves 4k at most


def fit_for_row(row: Row):
    """The FitResult the projection runs on for a row (None when fit.py says it does not fit)."""
    from costing.data.catalog import get_gpu, get_model
    from costing.errors import UserError
    from costing.performance.fit import FitRequest, fit_check

    overrides = engines.fit_overrides(row.engine, row.max_model_len or get_model(row.model).max_context, row.precision)
    if row.max_model_len:
        overrides["max_model_len"] = row.max_model_len
    if row.engine in ("vllm-v0", "vllm-v0-multistep") and (row.burst or long_context_chunked(row)):
        # LambdaLabs' runs: chunked prefill above 32K context, else max_num_batched_tokens of a ~2k context
        chunked = long_context_chunked(row)
        overrides["max_num_batched_tokens"] = VLLM_054_CHUNKED_TOKENS if chunked else VLLM_054_BATCHED_TOKENS
    req = FitRequest(
        model=row.model,
        precision=row.precision,
        gpu=row.gpu,
        gpus=row.gpus,
        seq_len=row.input_tokens + row.output_tokens,
        **overrides,
    )
    try:
        fit = fit_check(req)
    except UserError:
        return None
    if row.gpu_override:
        base = get_gpu(row.gpu)
        fields = {k: v for k, v in row.gpu_override.items() if k not in ("source", "compute_share")}
        share = row.gpu_override.get("compute_share")
        if share is not None:  # the same datasheet peak, less sustained (published_rows.A100_PCIE_COMPUTE)
            fields["tflops"] = {c: None if t is None else t * share for c, t in base.tflops.items()}
        fit = replace(fit, gpu=replace(base, **fields, source=row.gpu_override["source"]))
    # trtllm-bench runs (the vendor tables, a user's rerun) size the engine from their dataset's lengths
    bench = row.engine == "trtllm" and "trtllm-bench" in row.engine_raw
    return engines.adjust_settings(fit, row.engine, (row.input_tokens, row.output_tokens) if bench else None)


# ---------------------------------------------------------------------------------------------
# Predicting a row


@dataclass(frozen=True)
class Predicted:
    output_tok_s: float
    tpot_ms: float
    ttft_ms: float
    e2e_s: float
    concurrency: float


def sharegpt_output_lengths(n: int, mean: float = SHAREGPT_OUT, longest: int = 1843) -> list[int]:
    """Deterministic stand-in for ShareGPT output lengths: quantiles of an exponential distribution
    with the published mean (heavy right tail), in a fixed shuffled order."""
    lens = [max(2, min(longest, round(-mean * math.log(1 - (k + 0.5) / n)))) for k in range(n)]
    random.Random(0).shuffle(lens)
    return lens


def clipped_output_lengths(n: int, mean: float, cap: int) -> list[int]:
    """ShareGPT-like lengths under a max_tokens cap: an exponential clipped at `cap` whose clipped mean is the
    published mean (E[min(X, cap)] = theta (1 - exp(-cap / theta))), so the longest request is the cap, not
    the exponential's tail."""
    if mean >= cap:
        return [cap] * n
    lo, hi = mean, mean * 1e3
    for _ in range(100):  # the clipped mean rises with theta: bisect
        theta = (lo + hi) / 2
        lo, hi = (theta, hi) if theta * (1 - math.exp(-cap / theta)) < mean else (lo, theta)
    return sharegpt_output_lengths(n, (lo + hi) / 2, longest=cap)


def burst_output_lengths(row: Row) -> list[int]:
    """The output lengths a burst row's prompts generate (see Row.fixed_output, Row.output_cap)."""
    n, o = row.burst or 0, row.output_tokens
    if row.fixed_output:
        return [o] * n
    return clipped_output_lengths(n, o, row.output_cap) if row.output_cap else sharegpt_output_lengths(n, o)


def _burst_result(run: Replay, cap: int, e2e_median: bool = False) -> Predicted:
    """A burst's figures as benchmark_serving reports them: tokens over the makespan, mean TTFT, median
    TPOT, mean latency (the median request's with `e2e_median`); its concurrency is the admission cap."""
    tpots = sorted(run.tpot_s())
    e2es = run.e2e_s()
    return Predicted(
        output_tok_s=run.output_tokens_per_s,
        tpot_ms=1e3 * tpots[len(tpots) // 2],
        ttft_ms=1e3 * statistics.fmean(run.ttft_s()),
        e2e_s=statistics.median(e2es) if e2e_median else statistics.fmean(e2es),
        concurrency=float(cap),
    )


def replay_burst(
    fit,
    params,
    n: int,
    i: int,
    mean_output: int,
    engine: str,
    *,
    chunked: bool,
    outs: list[int] | None = None,
    e2e_median: bool = False,
) -> Predicted:
    """`n` prompts sent at once (a benchmark at request rate inf), replayed through costing.performance.scheduler.
    `chunked`: a chunked-prefill scheduler (vLLM V1; 0.5.4 above 32K context): every step decodes all running
    sequences first, then fills the rest of max_num_batched_tokens with prompt chunks; else V0's default:
    prefill-only steps of whole prompts whenever a slot is free, otherwise decode steps. Throughput = tokens /
    makespan. `outs`: the output lengths (default: ShareGPT's); `e2e_median`: the median request's latency rather
    than the mean, for a source that states the median."""
    outs = outs or sharegpt_output_lengths(n, mean_output)
    cap = scheduler.admissible(fit, i, mean_output, engine, staggered=False)
    run = scheduler.replay(
        fit, params, i, outs, scheduler.Arrivals.burst(n), max_running=cap, engine=engine, chunked=chunked
    )
    return _burst_result(run, cap, e2e_median)


def median_output_length(row: Row) -> float:
    """The median request's output length: the row's own when every request has it ("output N per request"),
    else the median of the ShareGPT stand-in the bursts are replayed with (burst_output_lengths: exponential at
    the row's mean, clipped at its cap), i.e. about ln 2 x the mean."""
    if row.fixed_output:
        return float(row.output_tokens)
    n, o = 1001, row.output_tokens
    lens = clipped_output_lengths(n, o, row.output_cap) if row.output_cap else sharegpt_output_lengths(n, o)
    return float(statistics.median(lens))


def _e2e_of(row: Row, ttft_ms: float, tpot_ms: float, mean_e2e_s: float) -> float:
    """The e2e latency the row states: the projection's (a request of the mean length) unless the source gives
    the median request's, which, with output lengths that vary, is the median-length request's:
    TTFT + (median output - 1) x TPOT (TTFT and TPOT as projected at the row's load)."""
    if row.e2e_kind != "median" or row.fixed_output:
        return mean_e2e_s
    return 1e-3 * (ttft_ms + (median_output_length(row) - 1) * tpot_ms)


def poisson_concurrency(fit, params: Params, i: int, o: int, rate: float, engine: str) -> int:
    """Requests in flight under open-loop arrivals at `rate` requests/s (Little's law): the smallest
    concurrency c whose projected end-to-end latency W(c) satisfies rate x W(c) <= c, at most the
    admissible maximum (past it the queue grows without bound and the engine runs full)."""
    from costing.performance.projection import project

    cap = max(1, scheduler.admissible(fit, i, o, engine))
    lo, hi = 1, cap
    if rate * project(fit, i, o, hi, params, engine=engine).e2e_latency_s > hi:
        return cap
    while lo < hi:  # rate x W(c) - c falls as c rises (W grows slower than c below the cap)
        mid = (lo + hi) // 2
        if rate * project(fit, i, o, mid, params, engine=engine).e2e_latency_s <= mid:
            hi = mid
        else:
            lo = mid + 1
    return lo


def predict(row: Row, fit, params: Params) -> Predicted:
    from costing.performance.projection import dataset_run, project

    if row.burst:
        outs, args = burst_output_lengths(row), (row.burst, row.input_tokens, row.output_tokens, row.engine)
        chunked = long_context_chunked(row) or row.engine == "vllm"  # V1 always chunks prefills
        return replay_burst(fit, params, *args, chunked=chunked, outs=outs, e2e_median=row.e2e_kind == "median")
    if row.request_rate and not row.concurrency:
        i, o = row.input_tokens, row.output_tokens
        conc = poisson_concurrency(fit, params, i, o, row.request_rate, row.engine)
        pr = project(fit, i, o, conc, params, engine=row.engine)
        tok_s = min(pr.output_tokens_per_s, row.request_rate * o)  # open loop: throughput = arrivals
        e2e = _e2e_of(row, pr.ttft_ms, pr.tpot_ms, pr.e2e_latency_s)
        return Predicted(tok_s, pr.tpot_ms, pr.ttft_ms, e2e, float(conc))
    # llmperf counts tokens with its own tokenizer: the server sees `ratio` times fewer prompt tokens than the
    # row states, and llmperf's tok/s and ITL are per client-counted token (see client_token_ratio)
    ratio = client_token_ratio(row)
    i, o = max(1, round(row.input_tokens / ratio)), row.output_tokens
    conc = row.concurrency or max(1, scheduler.admissible(fit, i, o, row.engine))
    # every request the same length (the notes say "output N per request"): V0's clients move in lockstep
    pr = project(fit, i, o, conc, params, engine=row.engine, lockstep=row.fixed_output, chunked=row.chunked)
    tok_s = pr.output_tokens_per_s
    if row.dataset_requests:
        tok_s = dataset_run(fit, i, o, row.dataset_requests, pr, params, engine=row.engine, chunked=row.chunked)[0]
    # llmperf's per-request ITL is the sum of the gaps after the first token over all output tokens
    tpot = pr.tpot_ms * (o - 1) / o / ratio if row.tpot_kind == "ITL" else pr.tpot_ms
    e2e = _e2e_of(row, pr.ttft_ms, pr.tpot_ms, pr.e2e_latency_s)
    return Predicted(tok_s * ratio, tpot, pr.ttft_ms, e2e, pr.concurrency)


def prepared_rows(path: str | Path = DEFAULT_CSV) -> list[tuple[Row, Any]]:
    return [(row, fit_for_row(row)) for row in read_rows(path)]


# ---------------------------------------------------------------------------------------------
# Fitting (scipy, only under `make calibrate`)


PRIOR = Params()
PRIOR_WEIGHT = 0.3
TTFT_WEIGHT = 0.5


def _residuals(items, params: Params, names: list[str], x) -> list[float]:
    p = replace(params, **cast(dict[str, Any], dict(zip(names, (float(v) for v in x), strict=False))))
    out = []
    for row, fit, w_tok, w_tpot in items:
        pred = predict(row, fit, p)
        if row.output_tok_s and w_tok:
            out.append(w_tok * math.log(pred.output_tok_s / row.output_tok_s))
        if row.tpot_ms and w_tpot:
            out.append(w_tpot * math.log(pred.tpot_ms / row.tpot_ms))
        if row.ttft_ms and w_tpot:  # TTFT pins the prefill terms; its target is twice as loose (30%)
            out.append(TTFT_WEIGHT * w_tpot * math.log(pred.ttft_ms / row.ttft_ms))
    # a weak prior toward the defaults (Params()), as a share of each parameter's range: a parameter the
    # rows do not pin down (e.g. weight_only_mfu when no row runs weight-only kernels) stays near its default
    for n, v in zip(names, x, strict=True):
        lo, hi = FITTED[n]
        out.append(PRIOR_WEIGHT * (float(v) - getattr(PRIOR, n)) / (hi - lo))
    return out


def group_weights(rows: Iterable[Row]) -> dict[str, float]:
    """Per-row weight so vLLM-family rows (the engine the kit deploys) and TensorRT-LLM vendor tables
    count equally in the fit, however many rows each has."""
    rows = list(rows)
    counts = {e: sum(1 for r in rows if r.engine == e and r.fit_weight) for e in ("vllm-v0", "trtllm", "vllm")}
    counts["vllm-v0"] += sum(1 for r in rows if r.engine == "vllm-v0-multistep" and r.fit_weight)
    top = max(counts.values()) or 1
    out = {e: math.sqrt(top / c) if c else 0.0 for e, c in counts.items()}
    out["vllm-v0-multistep"] = out["vllm-v0"]  # the V0 engine with multi-step scheduling: one group
    return out


def fit_params(
    path: str | Path = DEFAULT_CSV, start: Params | None = None, names: list[str] | None = None
) -> tuple[Params, dict[str, Any]]:
    """Least squares on log errors (soft-L1, so a few outliers do not drag the fit) of output tok/s
    and TPOT over every usable row."""
    return fit_params_on(prepared_rows(path), start, names)


def fit_params_on(
    prepared: list[tuple[Row, Any]], start: Params | None = None, names: list[str] | None = None
) -> tuple[Params, dict[str, Any]]:
    """fit_params on rows already read and mapped (cross-validation fits on subsets)."""
    import numpy as np
    from scipy.optimize import least_squares

    start = start or Params()
    names = names or list(FITTED)
    usable = [(r, f) for r, f in prepared if f is not None and r.fit_weight > 0]
    gw = group_weights(r for r, _ in usable)
    items = [(r, f, gw[r.engine], gw[r.engine]) for r, f in usable]
    lo = np.array([FITTED[n][0] for n in names])
    hi = np.array([FITTED[n][1] for n in names])
    x0 = np.clip(np.array([getattr(start, n) for n in names], dtype=float), lo, hi)
    res = least_squares(
        lambda x: np.array(_residuals(items, start, names, x)),
        x0,
        bounds=(lo, hi),
        loss="soft_l1",
        f_scale=0.15,
        x_scale="jac",
        diff_step=1e-3,
        max_nfev=400,
    )
    fitted = replace(start, **cast(dict[str, Any], {n: float(round(v, 5)) for n, v in zip(names, res.x, strict=False)}))
    info = {
        "rows_in_csv": len(prepared),
        "rows_fitted": len(usable),
        "rows_skipped_no_fit": [r.index for r, f in prepared if f is None],
        "rows_left_out": [r.index for r, f in prepared if f is not None and not r.fit_weight],
        "group_weights": gw,
        "cost": float(res.cost),
        "nfev": int(res.nfev),
        "status": int(res.status),
    }
    return fitted, info


def errors(path: str | Path = DEFAULT_CSV, params: Params | None = None) -> list[dict[str, Any]]:
    """Every row: measured, projected and relative error of output tok/s and TPOT."""
    p = params or load_params()
    out = []
    for row, fit in prepared_rows(path):
        rec: dict[str, Any] = {"row": row, "fit": fit, "pred": None, "tok_err": None, "tpot_err": None}
        if fit is not None:
            pred = predict(row, fit, p)
            rec["pred"] = pred
            if row.output_tok_s:
                rec["tok_err"] = pred.output_tok_s / row.output_tok_s - 1
            if row.tpot_ms:
                rec["tpot_err"] = pred.tpot_ms / row.tpot_ms - 1
        out.append(rec)
    return out


def median_abs(values: Iterable[float | None]) -> float | None:
    xs = sorted(abs(v) for v in values if v is not None)
    if not xs:
        return None
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


# ---------------------------------------------------------------------------------------------
# Leave-one-source-out cross-validation (`make accuracy`)

SOURCE_GROUPS = (  # (substring of the CSV source, the source it belongs to)
    ("perf-overview.md (v0.15", "TensorRT-LLM perf-overview v0.15"),
    ("perf-overview.md @", "TensorRT-LLM perf-overview v1.0"),
    ("TensorRT-LLM issue", "TensorRT-LLM user issues"),
    ("LambdaLabsML", "LambdaLabs vllm-benchmark"),
    ("NVIDIA A10G", "A10G llmperf README"),
    ("NVIDIA NIM benchmarking", "NIM benchmarking docs"),
    ("sgl-project/sglang benchmark/benchmark_vllm_060", "SGLang vs vLLM 0.6.0 README"),
    ("_posts/2026-04-22-fp8-kvcache", "vLLM blog FP8 KV cache (0.19.1)"),
    ("johnmusgrave.com/p/vllm-throughput-latency-sweep", "A100-40GB sweep blog (0.23.0)"),
    ("arc53/llm-price-compass", "llm-price-compass L4 (community)"),
)
METRICS = ("output_tok_s", "tpot_ms", "ttft_ms", "e2e_s")


def source_group(row: Row) -> str:
    """The publication a row comes from: rows of one source share a setup, so they are held out together."""
    for needle, name in SOURCE_GROUPS:
        if needle in row.source:
            return name
    return row.source.split(" (")[0][:60]


def regime(row: Row, fit, in_flight: float | None = None) -> str:
    """light: a few requests in flight; saturated: the engine's admissible maximum (or a burst or client
    count at or above it); moderate: in between. Open-loop rows (a request rate) are classed by the
    requests in flight the projection finds for them (`in_flight`, Little's law)."""
    if row.request_rate and not row.concurrency and not row.burst and in_flight:
        n = max(1, round(in_flight))
        cap = fit.max_concurrent_seqs(row.input_tokens + row.output_tokens) if fit is not None else 256
        return "light" if n <= 4 else "saturated" if n >= min(cap, 64) else "moderate"
    if row.concurrency is None and not row.burst:
        return "saturated"
    n = row.burst or row.concurrency or 1
    cap = fit.max_concurrent_seqs(row.input_tokens + row.output_tokens) if fit is not None else 256
    if n <= 4 or (row.burst and n <= 16):
        return "light"
    return "saturated" if n >= min(cap, 64) else "moderate"


def _errors_of(row: Row, pred: Predicted) -> dict[str, float]:
    out = {}
    for m in METRICS:
        meas = getattr(row, m)
        if meas:
            out[m] = getattr(pred, m) / meas - 1
    return out


def cross_validate(path: str | Path = DEFAULT_CSV, start: Params | None = None) -> list[dict[str, Any]]:
    """Fit on every source but one, predict that one; every row once, with its held-out errors."""
    prepared = prepared_rows(path)
    groups = sorted({source_group(r) for r, _ in prepared})
    out = []
    for held in groups:
        train = [(r, f) for r, f in prepared if source_group(r) != held]
        params, _ = fit_params_on(train, start or Params())
        for row, fit in prepared:
            if source_group(row) != held:
                continue
            rec: dict[str, Any] = {"row": row, "fit": fit, "source": held, "regime": regime(row, fit), "errors": {}}
            if fit is not None:
                rec["pred"] = predict(row, fit, params)
                rec["errors"] = _errors_of(row, rec["pred"])
                rec["regime"] = regime(row, fit, rec["pred"].concurrency)
            out.append(rec)
    return out
