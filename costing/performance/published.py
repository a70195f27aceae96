"""The published measurements (costing/data/published-benchmarks.csv, sources in
published-benchmarks.md): read each row onto
the catalog, predict it with the projection, fit the efficiency parameters (scipy, `make calibrate`)
and report the errors (`make accuracy`)."""

from __future__ import annotations

import csv
import math
import os
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

from costing.data import DATA_DIR
from costing.performance import engines
from costing.performance.calibration import FITTED, Params, load_params

# The project's own copy (package data), or $SELFHOST_CALIBRATION_CSV
DEFAULT_CSV = Path(os.environ.get("SELFHOST_CALIBRATION_CSV") or DATA_DIR / "published-benchmarks.csv")

SHAREGPT_IN, SHAREGPT_OUT = 205, 204  # LambdaLabs README: ShareGPT prompts ~205 in / ~204 out on average
VLLM_054_MAX_NUM_SEQS = 256  # vLLM 0.5.4 default max_num_seqs (LambdaLabs ran defaults)
VLLM_054_BATCHED_TOKENS = 2048  # vLLM 0.5.4 without chunked prefill: max(max_model_len ~2000, 2048)
# vLLM 0.4.3 (A10G rows) without chunked prefill: max_num_batched_tokens = max(max_model_len, 2048),
# max_model_len = the model's 8,192 (its profiling run reserves activations for that many tokens)
# LambdaLabs' summary table (benchmark_v0.md) is from runs at the longest context each setup serves (its "Max
# Context Length" table: 128k for Llama 3.1, except 70B on one GPU at 4k; the table's 1,517.54 tok/s for 8B FP8 on
# one A100 matches the 64k-context result JSON, 1,485, not the 2k one, 2,459). vLLM 0.5.4 turns chunked prefill on
# by default when max_model_len > 32K, with max_num_batched_tokens 512 (arg_utils.py / SchedulerConfig); the 64k
# JSON's inter-token gaps show it (about 55 ms with prefills interleaved, against a 4 s first gap at 2k).
LONG_CONTEXT_SOURCE = "benchmark_v0.md"
VLLM_054_CHUNKED_TOKENS = 512
# trtllm-bench max-throughput runs: batch limit 2048-4096 (assumption: 2048), max_num_tokens 8192; TensorRT-LLM
# gives 90% of the memory left after weights to the KV cache (costing.performance.engines, shared with
# `estimate --engine`)
TRTLLM_MAX_BATCH = engines.TRTLLM_MAX_BATCH

GPU_NAMES = {  # CSV name -> (catalog name, override or None)
    "A100-SXM-80GB": ("A100-80GB", None),
    "A100-SXM4-80GB": ("A100-80GB", None),
    "A100-PCIe-80GB": (
        "A100-80GB",
        {
            "bandwidth_gbs": 1935.0,
            "interconnect_gbs": 32.0,
            "source": "NVIDIA A100 PCIe 80GB datasheet: 1,935 GB/s; PCIe Gen4 x16 "
            "(no NVLink assumed) - calibration-side override",
        },
    ),
    "H100-SXM-80GB": ("H100", None),
    "H100-80GB": ("H100", None),
    "L40S-48GB": ("L40S", None),
    "A10G-24GB": ("A10G", None),
    # form factor not stated by the source (SXM assumed, the catalog's A100-80GB); see the row's notes
    "A100-80GB": ("A100-80GB", None),
    "A100-SXM4-40GB": ("A100", None),  # the catalog's A100 is the 40 GB card
    "L4-24GB": ("L4", None),
    "A40-48GB": ("A40", None),
}


@dataclass(frozen=True)
class Row:
    """One published measurement, mapped onto the catalog."""

    index: int  # 1-based data row in the CSV
    source: str
    gpu_raw: str
    gpu: str
    gpus: int
    model: str
    precision: str
    engine: str  # vllm-v0 | trtllm (NIM runs TensorRT-LLM but is reported at vLLM's level; see notes)
    engine_raw: str
    input_tokens: int
    output_tokens: int
    concurrency: int | None  # closed-loop clients; None = max load (engine's admissible maximum)
    burst: int | None  # N prompts sent at once (LambdaLabs), None otherwise
    output_tok_s: float | None
    tpot_ms: float | None
    ttft_ms: float | None
    e2e_s: float | None
    tpot_kind: str | None
    gpu_override: dict[str, Any] | None = None
    fit_weight: float = 1.0  # 0 = shown in the accuracy report, left out of the fit
    note: str = ""
    request_rate: float | None = None  # open-loop Poisson arrivals (requests/s) when no concurrency is stated

    def label(self) -> str:
        return f"{self.gpus}x {self.gpu_raw} {self.model} {self.precision} {self.engine}"


def map_model(name: str) -> str:
    n = name.lower().replace("meta-llama-", "llama-").replace("hermes-3-", "")
    m = re.search(r"llama-(3(?:\.\d)?)-(\d+)b", n)
    if not m:
        raise ValueError(f"unknown model name in calibration CSV: {name}")
    return f"llama-{m.group(1)}-{m.group(2)}b"


def map_precision(name: str) -> str:
    return "fp8" if name.upper().startswith("FP8") else "bf16"


def map_engine(name: str) -> str:
    low = name.lower()
    if "tensorrt" in low:
        return "trtllm"  # NIM containers that name their TensorRT-LLM profile are TensorRT-LLM
    if low.startswith("nim"):
        return "vllm-v0"  # NIM rows: same source measured within 3% of vLLM 0.4.3 at concurrency 1-16
    if "num-scheduler-steps" in low:
        return "vllm-v0-multistep"  # vLLM 0.6 with multi-step scheduling (V0 engine, CPU time amortized)
    m = re.search(r"vllm\s*v?(\d+)\.(\d+)", low)
    if m and (int(m.group(1)), int(m.group(2))) >= (0, 8):
        return "vllm"  # vLLM 0.8 and later: the V1 engine (the default from 0.8.0)
    # every vLLM row in the CSV is vLLM 0.4/0.5 (the V0 engine): its per-step overhead is fitted apart
    # from the V1 engine's that the kit deploys (Params.v1_step_overhead_ms)
    return "trtllm" if "tensorrt" in low else "vllm-v0"


def _num(text: str) -> float | None:
    text = (text or "").strip()
    try:
        return float(text)
    except ValueError:
        return None


def read_rows(path: str | Path = DEFAULT_CSV) -> list[Row]:
    rows = []
    with open(path, newline="") as fh:
        for k, r in enumerate(csv.DictReader(fh), start=1):
            gpu, override = GPU_NAMES[r["gpu"].strip()]
            engine_raw = r["engine"].strip()
            conc_text = r["concurrency"].strip().lower()
            burst = None
            conc: int | None = None
            m = re.match(r"(\d+) prompts", conc_text)
            if m:
                burst = int(m.group(1))
            elif conc_text.isdigit():
                conc = int(conc_text)
            i, o = _num(r["input_tokens"]), _num(r["output_tokens"])
            rate = _num(r.get("request_rate") or "")
            rate = rate if rate is not None and 0 < rate < math.inf and not conc_text else None
            weight, note = 1.0, ""
            if burst:
                i, o = i or SHAREGPT_IN, o or SHAREGPT_OUT
            if not conc_text and rate is None:
                weight, note = 0.0, "batch size not stated (user report): projected at max load, left out of the fit"
            tpot_kind = None
            if _num(r["tpot_ms"]) is not None:
                notes = r["notes"]
                tpot_kind = (
                    "ITL"
                    if "column holds ITL" in notes
                    else "median TPOT"
                    if "TPOT median" in notes
                    else "per-output-token latency"
                )
            rows.append(
                Row(
                    index=k,
                    source=r["source"],
                    gpu_raw=r["gpu"].strip(),
                    gpu=gpu,
                    gpus=int(r["gpu_count"]),
                    model=map_model(r["model"]),
                    precision=map_precision(r["precision"]),
                    engine=map_engine(engine_raw),
                    engine_raw=engine_raw,
                    input_tokens=int(i or 0),
                    output_tokens=int(o or 0),
                    concurrency=conc,
                    burst=burst,
                    output_tok_s=_num(r["output_tok_s"]),
                    tpot_ms=_num(r["tpot_ms"]),
                    ttft_ms=_num(r["ttft_ms"]),
                    e2e_s=_num(r["e2e_s"]),
                    tpot_kind=tpot_kind,
                    gpu_override=override,
                    fit_weight=weight,
                    note=note,
                    request_rate=rate,
                )
            )
    return rows


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

    overrides = engines.fit_overrides(row.engine, get_model(row.model).max_context, row.precision)
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
        gpu = replace(
            get_gpu(row.gpu),
            **{k: v for k, v in row.gpu_override.items() if k != "source"},
            source=row.gpu_override["source"],
        )
        fit = replace(fit, gpu=gpu)
    return engines.adjust_settings(fit, row.engine)


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


def _burst_result(outs: list[int], ttft: list[float], finish: list[float], t: float, slots: int) -> Predicted:
    n = len(outs)
    tpots = sorted((finish[r] - ttft[r]) / (outs[r] - 1) for r in range(n) if outs[r] > 1)
    return Predicted(
        output_tok_s=sum(outs) / t,
        tpot_ms=1e3 * tpots[len(tpots) // 2],
        ttft_ms=1e3 * sum(ttft) / n,
        e2e_s=sum(finish) / n,
        concurrency=float(slots),
    )


def simulate_burst_chunked(fit, params, n: int, input_tokens: int, mean_output: int, engine: str) -> Predicted:
    """The burst under vLLM 0.5.4's chunked-prefill scheduler: every step decodes all running sequences
    first, then fills the rest of max_num_batched_tokens with prompt chunks (oldest first); a request
    decodes from the step after its last chunk."""
    from costing.performance.projection import Hardware, step_time_s

    hw = Hardware.of(fit)
    outs = sharegpt_output_lengths(n, mean_output)
    slots = max(1, fit.max_concurrent_seqs(input_tokens + mean_output))
    budget = fit.settings.max_num_batched_tokens
    ctx = input_tokens + mean_output / 2
    t, step = 0.0, 0
    ends: dict[int, list[int]] = {}  # step at which requests finish -> requests
    decoding = 0
    prefilling: list[list[int]] = []  # [request, prompt tokens left]
    nxt = 0
    ttft, finish = [0.0] * n, [0.0] * n
    memo: dict[tuple[int, int], float] = {}
    while nxt < n or prefilling or decoding:
        step += 1
        room = max(0, budget - decoding)
        while nxt < n and decoding + len(prefilling) < slots and sum(left for _, left in prefilling) < room:
            prefilling.append([nxt, input_tokens])
            nxt += 1
        chunk, done = 0, []
        for item in prefilling:
            take = min(item[1], room - chunk)
            if take <= 0:
                break
            item[1] -= take
            chunk += take
            if item[1] == 0:
                done.append(item[0])
        if (decoding, chunk) not in memo:
            memo[decoding, chunk] = step_time_s(hw, params, decoding, ctx, chunk, input_tokens, engine)
        t += memo[decoding, chunk]
        for r in ends.pop(step, []):
            finish[r] = t
            decoding -= 1
        prefilling = [item for item in prefilling if item[1] > 0]
        for r in done:
            ttft[r] = t
            if outs[r] <= 1:
                finish[r] = t
            else:
                ends.setdefault(step + outs[r] - 1, []).append(r)
                decoding += 1
    return _burst_result(outs, ttft, finish, t, slots)


def simulate_burst(fit, params, n: int, input_tokens: int, mean_output: int, engine: str = "vllm-v0") -> Predicted:
    """vLLM 0.5.4's benchmark_serving with `n` prompts sent at once (request rate inf): the scheduler
    admits up to the admissible concurrency, runs prefill-only steps (max_num_batched_tokens of
    prompts) whenever a slot is free, otherwise decode steps; throughput = tokens / makespan."""
    import heapq

    from costing.performance.projection import Hardware, step_time_s

    hw = Hardware.of(fit)
    outs = sharegpt_output_lengths(n, mean_output)
    slots = max(1, fit.max_concurrent_seqs(input_tokens + mean_output))
    per_step = max(1, fit.settings.max_num_batched_tokens // input_tokens)
    ctx = input_tokens + mean_output / 2
    t, decoded = 0.0, 0  # decoded: decode steps so far (each running request advances one token)
    heap: list[tuple[int, int]] = []  # (decode-step count at which the request finishes, request)
    waiting = list(range(n))[::-1]
    ttft, finish = [0.0] * n, [0.0] * n
    prefill_s: dict[int, float] = {}  # step times by prompts in the step / by running batch: a burst of
    decode_s: dict[int, float] = {}  # thousands of prompts repeats the same few step shapes
    while waiting or heap:
        if waiting and len(heap) < slots:
            k = min(per_step, slots - len(heap), len(waiting))
            if k not in prefill_s:
                prefill_s[k] = step_time_s(hw, params, 0, ctx, k * input_tokens, input_tokens, engine)
            t += prefill_s[k]
            for _ in range(k):
                r = waiting.pop()
                ttft[r] = t
                if outs[r] <= 1:
                    finish[r] = t
                else:
                    heapq.heappush(heap, (decoded + outs[r] - 1, r))
            continue
        steps = heap[0][0] - decoded
        b = len(heap)
        if b not in decode_s:
            decode_s[b] = step_time_s(hw, params, b, ctx, 0, input_tokens, engine)
        t += steps * decode_s[b]
        decoded += steps
        while heap and heap[0][0] == decoded:
            _, r = heapq.heappop(heap)
            finish[r] = t
    return _burst_result(outs, ttft, finish, t, slots)


def poisson_concurrency(fit, params: Params, i: int, o: int, rate: float, engine: str) -> int:
    """Requests in flight under open-loop arrivals at `rate` requests/s (Little's law): the smallest
    concurrency c whose projected end-to-end latency W(c) satisfies rate x W(c) <= c, at most the
    admissible maximum (past it the queue grows without bound and the engine runs full)."""
    from costing.performance.projection import admissible, project

    cap = max(1, admissible(fit, i, o, engine))
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
    from costing.performance.projection import admissible, project

    if row.burst and long_context_chunked(row):
        return simulate_burst_chunked(fit, params, row.burst, row.input_tokens, row.output_tokens, row.engine)
    if row.burst:
        return simulate_burst(fit, params, row.burst, row.input_tokens, row.output_tokens, row.engine)
    if row.request_rate and not row.concurrency:
        i, o = row.input_tokens, row.output_tokens
        conc = poisson_concurrency(fit, params, i, o, row.request_rate, row.engine)
        pr = project(fit, i, o, conc, params, engine=row.engine)
        tok_s = min(pr.output_tokens_per_s, row.request_rate * o)  # open loop: throughput = arrivals
        return Predicted(tok_s, pr.tpot_ms, pr.ttft_ms, pr.e2e_latency_s, float(conc))
    # llmperf counts tokens with its own tokenizer: the server sees `ratio` times fewer prompt tokens than the
    # row states, and llmperf's tok/s and ITL are per client-counted token (see client_token_ratio)
    ratio = client_token_ratio(row)
    i, o = max(1, round(row.input_tokens / ratio)), row.output_tokens
    conc = row.concurrency or max(1, admissible(fit, i, o, row.engine))
    pr = project(fit, i, o, conc, params, engine=row.engine)
    # llmperf's per-request ITL is the sum of the gaps after the first token over all output tokens
    tpot = pr.tpot_ms * (o - 1) / o / ratio if row.tpot_kind == "ITL" else pr.tpot_ms
    return Predicted(pr.output_tokens_per_s * ratio, tpot, pr.ttft_ms, pr.e2e_latency_s, pr.concurrency)


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
