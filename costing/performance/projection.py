"""Performance projection: TTFT, TPOT, end-to-end latency and throughput of a vLLM deployment.

Physics first, then a few named efficiency parameters fitted on published measurements
(costing/data/calibration.json, written by `make calibrate`; each parameter carries its source):

- one engine step (one output token for every running sequence, plus chunked-prefill work): two kernel
  classes that run one after the other, each with its own roofline (longer + (1 - overlap) x shorter of
  its memory and compute time, `overlap` fitted): the GEMMs (the weights at `bw_eff` of the datasheet
  bandwidth; 2 x params FLOPs per token) and attention (the batch's KV cache at `kv_bw_eff`; its FLOPs),
  FLOPs at `mfu_decode` / `mfu_prefill` of the dense TFLOPS (weight-only kernels reach `weight_only_mfu`
  of that); plus tensor-parallel all-reduces (`allreduce_latency_us` and `allreduce_hop_us` per GPU beyond
  two; `allreduce_bw_eff` of the link on NVLink, NCCL's measured bus bandwidth on PCIe-only parts) and CPU
  time outside the GPU growing with the batch (`v1_step_overhead_ms` + `seq_overhead_us` per sequence:
  scheduler, sampling, detokenization); TensorRT-LLM: its kernels `trtllm_speedup` faster, its C++ executor's own
  `trtllm_step_overhead_ms` + `trtllm_seq_overhead_us` per sequence instead of vLLM's Python time;
- pipeline parallel: a token crosses every stage in turn (the sum of the stage times plus an
  inter-node hop, `internode_latency_us` / `internode_gbs`), while the stages work on different
  micro-batches: more nodes never shorten one stream's TPOT, they raise throughput;
- closed loop with C clients, continuous batching with chunked prefill: a share of the steps carry
  a prefill chunk (up to max_num_batched_tokens minus the decodes) and are slower for every running
  sequence (chunked-prefill interference); the running batch is bounded by max_num_seqs (vLLM 0.32's
  default for the GPU) and by the KV cache at the mean context; requests beyond the full-length
  capacity are preempted once and recompute their prefix;
- TTFT = the wait for the decode step under way + the prompt's chunks + an M/D/1 queue for the prompt
  steps where the engine does not chunk (vLLM V0, TensorRT-LLM) + the admission queue when clients exceed
  the running batch; p50/p90/p99 of TTFT, TPOT and e2e come from these terms (no fixed tail ratio).

Imports nothing heavy (no numpy/scipy): one call takes well under a millisecond.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

from costing.performance.calibration import Params, load_params
from costing.performance.fit import FitResult
from costing.performance.scheduler import (  # noqa: F401  (re-exported: the projection's public step model)
    CHUNKED_BY_DEFAULT,
    ENGINES,
    MULTISTEP_STEPS,
    PREEMPTING,
    Hardware,
    StepParts,
    admissible,
    chunk_budget,
    chunks_prompts,
    prompts_per_step,
    step_parts,
    step_time_s,
)

# The deployed engine's defaults (vLLM 0.32, vllm/engine/arg_utils.py, EngineArgs.get_batch_defaults, OpenAI
# server usage context): max_num_seqs 1024 and max_num_batched_tokens 8192 per replica on GPUs with >= 70 GiB
# that are not A100 (H100, H200), 1024 / 16384 at >= 160 GiB, else 256 / 2048; then
# max_num_seqs = min(max_num_seqs, max_num_batched_tokens). costing.performance.fit applies them.
MAX_NUM_SEQS_SOURCE = "vLLM 0.32 OpenAI-server default: 1024 on >=70 GiB non-A100 GPUs, else 256 (arg_utils.py)"


@dataclass(frozen=True)
class Projection:
    concurrency: int  # effective (after capping)
    requested_concurrency: int
    capped: bool  # True when KV capacity or max_num_seqs capped it
    cap_reason: str | None
    ttft_ms: float
    tpot_ms: float
    e2e_latency_s: float  # mean
    p90_e2e_latency_s: float
    output_tokens_per_s: float
    requests_per_s: float
    ttft_p50_ms: float = 0.0
    ttft_p90_ms: float = 0.0
    ttft_p99_ms: float = 0.0
    tpot_p50_ms: float = 0.0
    tpot_p90_ms: float = 0.0
    tpot_p99_ms: float = 0.0
    e2e_p50_s: float = 0.0
    e2e_p99_s: float = 0.0
    itl_p50_ms: float = 0.0  # median gap between two tokens: a decode-only step unless most steps carry prefill
    assumptions: dict[str, object] = field(default_factory=dict)
    bands: dict[str, Any] | None = None  # P10-P90 intervals and extrapolation flags (costing.performance.bands)

    def to_dict(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


RHO_MAX = 0.9  # highest load on the prefill budget the TTFT tail is taken at
Z = {50: 0.0, 90: 1.2816, 99: 2.3263}  # standard normal quantiles


def _cap_reason(fit: FitResult, input_tokens: int, output_tokens: int, cap: int) -> str:
    by_seqs = min(fit.settings.max_num_seqs, fit.settings.max_num_batched_tokens)
    if cap >= by_seqs:
        return f"max_num_seqs is {by_seqs:,}"
    mean_ctx = input_tokens + math.ceil(output_tokens / 2)
    return f"KV cache holds {cap:,} sequences at their mean context of {mean_ctx:,} tokens"


def _check(input_tokens: int, output_tokens: int, concurrency: int) -> None:
    for name, value in (("input tokens", input_tokens), ("output tokens", output_tokens), ("concurrency", concurrency)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 1 or value != value:
            from costing.errors import UserError

            raise UserError(f"{name} must be a positive number, got {value!r}", f"give {name} of at least 1")
        if value > 10_000_000:
            from costing.errors import UserError

            raise UserError(f"{name} of {value!r} is out of range", f"give {name} of at most 10,000,000")


def _wait_quantile(rho: float, mean_wait: float, q: float) -> float:
    """Quantile of an M/D/1-like queue's wait: zero with probability 1 - rho, otherwise exponential
    with mean mean_wait / rho (the usual heavy-traffic approximation)."""
    if rho <= 0 or mean_wait <= 0 or q <= 1 - rho:
        return 0.0
    return mean_wait / rho * math.log(rho / (1 - q))


def _prefill_load(clients: int, service: float, base: float) -> float:
    """Share of the time the engine is busy with prompts in a closed loop of `clients`: rho = clients x
    service / (base + W(rho)), W the M/D/1 mean wait rho / (2 (1 - rho)) x service; the root in [0, 1) of
    (service/2 - base) rho^2 + (base + clients x service) rho - clients x service = 0."""
    if clients <= 1 or service <= 0:
        return 0.0
    a, b, k = service / 2 - base, base + clients * service, clients * service
    if abs(a) < 1e-12 * b:
        rho = k / b
    else:
        disc = math.sqrt(max(0.0, b * b + 4 * a * k))
        rho = 2 * k / (b + disc)  # the root (-b + disc) / (2a), written without cancellation
    return min(1.0 - 1e-9, max(0.0, rho))


@dataclass(frozen=True)
class _Steady:
    c: int
    t_dec: float  # a step with decodes only
    t_mix: float  # a step that also carries a prefill chunk
    mixed: float  # share of steps that carry a prefill chunk
    tpot: float  # mean
    chunk: float  # prefill tokens a mixed step carries
    prefill_steps: int  # mixed steps one prompt needs
    preempted: float  # share of requests preempted once (recompute)
    chunk_budget: float  # prompt tokens a step can take beside the decodes
    demand: float  # prompt tokens per decode step (others' prompts and recomputed prefixes)
    t_own: float  # a step carrying this request's own prompt chunk
    # a step carrying only this request's chunk beside the decodes (the prompt an engine that does not chunk is
    # serving, first come first served; the engines that chunk share their steps: t_own)
    t_alone: float


def _steady(hw: Hardware, p: Params, fit: FitResult, i: int, o: int, c: int, engine: str, chunked: bool) -> _Steady:
    context = i + o / 2.0  # mean context a decoded token attends to
    full = fit.max_concurrent_seqs(i + o) if engine in PREEMPTING else c
    preempted = max(0.0, (c - full) / c) if full >= 1 else 0.0
    budget = chunk_budget(fit, c - 1)  # decodes are scheduled first
    own_steps = math.ceil(i / budget)  # steps that carry a chunk of this request's prompt
    # prompt work per step a request sees over its cycle (own_steps + o - 1 steps): the other requests'
    # prompts once each, plus the prefix a preempted request recomputes (its prompt and half its output)
    demand = ((c - 1) * i + c * preempted * (i + o / 2.0)) / (own_steps + o - 1)
    chunk = min(budget, max(float(i), demand))
    mixed = min(1.0, demand / chunk) if demand > 0 else 0.0
    decoding = c if o > 1 else 0  # a one-token request ends with its prefill step: nothing decodes
    t_dec = step_time_s(hw, p, decoding, context, 0.0, i, engine)
    t_mix = step_time_s(hw, p, decoding, context, chunk, i, engine)
    tpot = step_time_s(hw, p, c, context, demand, i, engine)  # the mean step: prefill work spread evenly
    # a step that carries a chunk of this request's own prompt, beside its share of the others' prompts
    t_own = step_time_s(hw, p, decoding, context, i / own_steps + demand, i, engine)
    t_alone = t_own if chunked else step_time_s(hw, p, decoding, context, i / own_steps, i, engine)
    return _Steady(c, t_dec, t_mix, mixed, tpot, chunk, own_steps, preempted, budget, demand, t_own, t_alone)


# engines that pause every decode while a waiting prompt is prefilled (vLLM V0's default scheduler): with fixed
# output lengths a closed loop's clients move in lockstep (see _cohort_first_tokens)
PAUSES_DECODES = ("vllm-v0", "vllm-v0-multistep")


def _cohort_first_tokens(hw: Hardware, p: Params, fit: FitResult, i: int, c: int, engine: str) -> list[float]:
    """When each of a cohort's c requests gets its first token, from the round's start (seconds). On an engine
    that pauses decodes for waiting prompts, with fixed output lengths, the clients move as one cohort: the c
    prompts are prefilled in steps of up to `prompts_per_step` whole prompts (no decodes), one step after
    another, then the c requests decode together and end together, and the clients send the next c at once.
    A request's first token comes with its step's end."""
    per_step = max(1, int(prompts_per_step(fit, i, engine)))
    ends, t = [], 0.0
    for k in range(0, c, per_step):
        m = min(per_step, c - k)
        t += step_time_s(hw, p, 0, i, m * i, i, engine)
        ends += [t] * m
    return ends


def _request_time(p: Params) -> float:
    """A request's own time outside the engine steps, in seconds: the serving process's (request_overhead_ms) and
    the wait that does not queue (request_latency_ms). At a steady state neither queues behind another request's
    (costing.performance.scheduler.replay times the first one request by request)."""
    return (p.request_overhead_ms + p.request_latency_ms) * 1e-3


def _first_token(
    fit: FitResult, p: Params, st: _Steady, i: int, o: int, c: int, engine: str, chunked: bool
) -> tuple[float, float, float, float, float]:
    """Mean TTFT of a request admitted at once, and its parts: (ttft, its steps, the mean wait for the step
    under way, the load rho and the mean wait of the queue the tails take). The prompt's own steps carry their
    share of the other clients' prompts (`t_own`, spread evenly as in the decode steps); before them it waits:
    - chunking engines (vLLM V1): for the decode step under way (uniform), as every prompt that fits the chunk
      budget joins the next step; the tails add an M/D/1 wait for room in the budget;
    - engines that do not chunk (vLLM V0's default, TensorRT-LLM's): a prompt gets a step of its own, shared
      only by whole prompts that fit beside it (`work` each), so prompts queue for those steps first come,
      first served. The engine is busy with prompts rho = arrivals x work of the time (the closed loop sets
      the arrivals, c / e2e with e2e including the wait: _prefill_load), and a prompt waits the
      Pollaczek-Khinchine mean wait of an M/D/1 queue, rho / (2 (1 - rho)) x work, at most the other
      clients' prompts, then its step alone; or its shared steps, when they are longer (the same prompt work
      seen without queueing: never their sum); plus the decode step under way (uniform)."""
    shared = st.prefill_steps * st.t_own
    phase = st.t_dec * (MULTISTEP_STEPS if engine == "vllm-v0-multistep" else 1)
    overhead = _request_time(p)
    if chunked:  # project() resolved it: the run's setting, else the engine's default (chunks_prompts)
        residual = 0.5 * st.t_dec
        # the tails: an M/D/1 wait for room in the budget, at its load (prompt tokens per step / budget)
        rho = min(RHO_MAX, (st.demand + i / (st.prefill_steps + o - 1)) / st.chunk_budget)
        tail_wait = rho / (2 * (1 - rho)) * i / st.chunk_budget * st.t_mix if c > 1 else 0.0
        return overhead + residual + shared, shared, residual, rho, tail_wait
    service = st.prefill_steps * st.t_alone
    work = st.t_alone / prompts_per_step(fit, i, engine, chunked)
    base = overhead + 0.5 * phase + service + (o - 1) * st.tpot  # e2e without the wait
    rho = _prefill_load(c, work, base)
    wait = min(rho / (2 * (1 - rho)) * work, (c - 1) * work) if c > 1 else 0.0
    queue_wait = max(0.0, service + wait - shared)  # beyond the shared steps
    return overhead + 0.5 * phase + shared + queue_wait, shared, 0.5 * phase, min(RHO_MAX, rho), queue_wait


@lru_cache(maxsize=1)
def _vendor_tables() -> dict[tuple, tuple[float, str]]:
    """TensorRT-LLM maximum-throughput tables in the published data (vendor docs, not user reports):
    (model, precision, gpu, gpus, input, output) -> (output tok/s, source)."""
    from costing.performance.published_rows import read_rows

    out: dict[tuple, tuple[float, str]] = {}
    for r in read_rows():
        if r.engine != "trtllm" or r.concurrency or r.burst or not r.output_tok_s or r.gpu_override:
            continue
        if "perf-overview" not in r.source:
            continue
        key = (r.model, r.precision, r.gpu, r.gpus, r.input_tokens, r.output_tokens)
        if key not in out or r.output_tok_s > out[key][0]:
            out[key] = (r.output_tok_s, r.source.split(" (")[0])
    return out


def vendor_ceiling(fit: FitResult, input_tokens: int, output_tokens: int) -> tuple[float, str] | None:
    """The vendor's maximum output tok/s for this exact configuration, if the published data has it."""
    if fit.nodes != 1:
        return None
    key = (fit.model.id, fit.precision.id, fit.gpu.name, fit.total_gpus, input_tokens, output_tokens)
    return _vendor_tables().get(key)


def project(
    fit: FitResult,
    input_tokens: int,
    output_tokens: int,
    concurrency: int,
    params: Params | None = None,
    *,
    engine: str = "vllm",
    lockstep: bool = False,
    chunked: bool | None = None,
) -> Projection:
    """Steady state of `concurrency` clients each sending the next request when the last one ends. `lockstep`:
    every request has the same output length, so on an engine that pauses decodes for prompts (vLLM V0) the
    clients move as one cohort (their prompts queue behind each other each round); otherwise their phases
    spread (the M/D/1 wait). `chunked`: whether prompts are chunked beside the decodes when a run's settings
    say so (default: the engine's own default, scheduler.CHUNKED_BY_DEFAULT)."""
    _check(input_tokens, output_tokens, concurrency)
    p = params or load_params()
    hw = Hardware.of(fit)
    i, o, requested = int(input_tokens), int(output_tokens), int(concurrency)
    seq_len = i + o
    cap = admissible(fit, i, o, engine)
    if cap < 1:
        from costing.errors import DoesNotFit

        raise DoesNotFit(
            f"a request of {seq_len:,} tokens does not fit the KV cache ({fit.kv_capacity_tokens:,} tokens)",
            "shorten the request or use more GPUs",
        )
    c = min(requested, cap)
    capped = c < requested
    chunked = chunks_prompts(engine, chunked)
    st = _steady(hw, p, fit, i, o, c, engine, chunked)
    ceiling = vendor_ceiling(fit, i, o) if engine == "vllm" else None
    cohort = lockstep and engine in PAUSES_DECODES
    if cohort:
        # TTFT: the mean of the cohort's first tokens, its tails their spread (the first step's end to the last's);
        # the cohort ends together, so after its first token a request waits out the prompt steps behind its own
        # (the last end less its own), then decodes with the others (no prompt work spread over its steps)
        ends = _cohort_first_tokens(hw, p, fit, i, c, engine)
        service, mean = ends[0], sum(ends) / c
        ttft, ahead, rho, queue_wait = _request_time(p) + mean, mean - service, 0.0, 0.0
        if o > 1:
            st = replace(st, tpot=st.t_dec + (ends[-1] - mean) / (o - 1), mixed=0.0)
    else:
        ttft, service, ahead, rho, queue_wait = _first_token(fit, p, st, i, o, c, engine, chunked)
    for _ in range(8):  # never above the vendor's maximum table for this configuration: slow every step to it
        e2e = ttft + (o - 1) * st.tpot
        if not ceiling or c * o / e2e <= ceiling[0] * (1 + 1e-12):
            break
        k = c * o / e2e / ceiling[0] * (1 + 1e-9)
        st = replace(
            st,
            t_dec=st.t_dec * k,
            t_mix=st.t_mix * k,
            tpot=st.tpot * k,
            t_own=st.t_own * k,
            t_alone=st.t_alone * k,
        )
        ttft, service, ahead, rho, queue_wait = _first_token(fit, p, st, i, o, c, engine, chunked)
    e2e = ttft + (o - 1) * st.tpot
    rps = c / e2e
    admission_wait = requested / rps - e2e  # closed loop: clients beyond the cap queue (Little's law)

    def ttft_q(q: int) -> float:
        return (
            _request_time(p) + admission_wait + 2 * ahead * q / 100 + _wait_quantile(rho, queue_wait, q / 100) + service
        )

    def tpot_q(q: int) -> float:
        if o <= 1 or st.mixed >= 1:
            return st.tpot
        sd = math.sqrt(st.mixed * (1 - st.mixed) / (o - 1))
        share = min(1.0, max(0.0, st.mixed + Z[q] * sd))  # share of a request's steps that are mixed
        return max(st.t_dec, st.tpot + (share - st.mixed) * (st.t_mix - st.t_dec))

    quant = {q: (ttft_q(q), tpot_q(q)) for q in Z}
    e2e_q = {q: t + (o - 1) * tp for q, (t, tp) in quant.items()}
    client_e2e = e2e + admission_wait
    assumptions: dict[str, object] = {
        "engine": engine,
        "model": f"{fit.model.id} {fit.precision.id} on {fit.total_gpus}x {fit.gpu.name}",
        "tensor_parallel": hw.tp,
        "pipeline_parallel": hw.pp,
        "weight_gb_per_gpu": round(hw.weight_bytes_per_gpu / 1e9, 2),
        "kv_bytes_per_token_per_gpu": hw.kv_bytes_per_token_per_gpu,
        "bandwidth_gbs": fit.gpu.bandwidth_gbs,
        "dense_tflops": hw.flops / 1e12,
        "compute_type": hw.compute_type + (" (weight-only kernels)" if hw.weight_only else ""),
        "interconnect_gbs": fit.gpu.interconnect_gbs,
        "gpu_source": fit.gpu.source,
        "admissible_concurrency": cap,
        "max_num_seqs": f"{fit.settings.max_num_seqs} ({MAX_NUM_SEQS_SOURCE})",
        "max_num_batched_tokens": fit.settings.max_num_batched_tokens,
        "vendor_ceiling": f"{ceiling[0]:,.0f} output tok/s ({ceiling[1]})" if ceiling else None,
        "preempted_share": round(st.preempted, 4),
        "mixed_step_share": round(st.mixed, 4),
        "workload": "closed loop: each client sends its next request when the last one ends; "
        "fixed input/output lengths; continuous batching with chunked prefill",
        "tails": "TTFT: uniform phase in the step + prompt chunks (in steps carrying the others' prompts) + "
        + (
            "an M/D/1 wait on the budget (tails)"
            if chunked
            else "the cohort's prompt steps before its own (clients in lockstep: fixed output lengths)"
            if cohort
            else "an M/D/1 queue for the prompt steps (this engine does not chunk prompts)"
        )
        + " + admission queue; "
        "TPOT: binomial share of steps carrying a prefill chunk; e2e quantile = TTFT + (output-1) x TPOT "
        "quantiles (comonotone sum, an upper bound)",
        "params": p.to_assumptions(),
    }
    return Projection(
        concurrency=c,
        requested_concurrency=requested,
        capped=capped,
        cap_reason=_cap_reason(fit, i, o, cap) if capped else None,
        ttft_ms=(ttft + admission_wait) * 1e3,
        tpot_ms=st.tpot * 1e3,
        e2e_latency_s=client_e2e,
        p90_e2e_latency_s=max(client_e2e, e2e_q[90]),
        output_tokens_per_s=rps * o,
        requests_per_s=rps,
        ttft_p50_ms=quant[50][0] * 1e3,
        ttft_p90_ms=quant[90][0] * 1e3,
        ttft_p99_ms=quant[99][0] * 1e3,
        tpot_p50_ms=quant[50][1] * 1e3,
        tpot_p90_ms=quant[90][1] * 1e3,
        tpot_p99_ms=quant[99][1] * 1e3,
        e2e_p50_s=e2e_q[50],
        e2e_p99_s=max(client_e2e, e2e_q[99]),
        itl_p50_ms=(st.t_mix if st.mixed >= 0.5 else st.t_dec) * 1e3,
        assumptions=assumptions,
    )


def dataset_run(
    fit: FitResult,
    input_tokens: int,
    output_tokens: int,
    requests: int,
    full: Projection,
    params: Params | None = None,
    *,
    engine: str = "trtllm",
    chunked: bool | None = None,
) -> tuple[float, float]:
    """(output tok/s, seconds) of a max-load run over a fixed dataset: `requests` requests of these lengths queued
    at once, as trtllm-bench runs its dataset, which divides their output by the whole run's time. An engine that
    reserves each request's full length (TensorRT-LLM's GUARANTEED_NO_EVICT) runs them in batches of `full`'s
    concurrency (the projection at the admissible maximum), all of one length ending together: q full batches
    and one of the r left over, q x e2e(full) + e2e(r). tests/test_published.py checks it against the
    step-by-step replay of the same run (costing.performance.scheduler.replay)."""
    q, r = divmod(int(requests), max(1, full.concurrency))
    # a batch's time is its requests' time in the engine (c / requests per second): the clients beyond the
    # admissible maximum that `full` may have been asked for wait in the queue, which this run's batches replace
    seconds = q * full.concurrency / full.requests_per_s
    if r:
        last = project(fit, input_tokens, output_tokens, r, params, engine=engine, chunked=chunked)
        seconds += last.concurrency / last.requests_per_s
    return requests * output_tokens / seconds, seconds


def slo_concurrency(
    fit: FitResult,
    input_tokens: int,
    output_tokens: int,
    p90_latency_s: float,
    params: Params | None = None,
    *,
    engine: str = "vllm",
    latency_of: Callable[[Projection], float] | None = None,
) -> Projection:
    """The highest concurrency whose p90 end-to-end latency is within the SLO, bounded by what the
    KV cache and max_num_seqs admit. When even one request misses the SLO the concurrency-1
    projection is returned: the caller sees p90_e2e_latency_s > p90_latency_s. `latency_of`: the
    latency to hold to the SLO (default the projection's p90; e.g. the conservative end of its band)."""
    p = params or load_params()
    lat = latency_of or (lambda q: q.p90_e2e_latency_s)
    cap = max(1, admissible(fit, int(input_tokens), int(output_tokens), engine))
    best = project(fit, input_tokens, output_tokens, 1, p, engine=engine)
    if lat(best) > p90_latency_s:
        return best
    top = project(fit, input_tokens, output_tokens, cap, p, engine=engine)
    if lat(top) <= p90_latency_s:
        return top
    lo, hi = 1, cap  # p90(lo) meets the SLO, p90(hi) does not; latency rises with concurrency
    while hi - lo > 1:
        mid = (lo + hi) // 2
        cand = project(fit, input_tokens, output_tokens, mid, p, engine=engine)
        if lat(cand) <= p90_latency_s:
            lo, best = mid, cand
        else:
            hi = mid
    return best


def max_throughput(
    fit: FitResult, input_tokens: int, output_tokens: int, params: Params | None = None, *, engine: str = "vllm"
) -> Projection:
    """The projection at the admissible concurrency with the highest throughput. Throughput rises with
    concurrency up to the KV cache's full-length capacity; past it vLLM preempts and recomputes, which
    may cost more than the larger batch gains, so the best point can lie below the cap: a coarse grid
    over 1..cap, then every concurrency between the best grid point's neighbours."""
    cap = max(1, admissible(fit, int(input_tokens), int(output_tokens), engine))
    memo: dict[int, Projection] = {}

    def at(c: int) -> Projection:
        if c not in memo:
            memo[c] = project(fit, input_tokens, output_tokens, c, params, engine=engine)
        return memo[c]

    full = fit.max_concurrent_seqs(int(input_tokens) + int(output_tokens))
    grid = sorted({cap, *(max(1, round(cap * k / 16)) for k in range(1, 16)), *([full] if 1 <= full < cap else [])})
    best = max(grid, key=lambda c: (at(c).output_tokens_per_s, c))
    k = grid.index(best)
    lo, hi = grid[max(0, k - 1)], grid[min(len(grid) - 1, k + 1)]
    step = max(1, (hi - lo) // 32)  # at most ~64 more projections, each well under a millisecond
    best = max((best, *range(lo, hi + 1, step)), key=lambda c: (at(c).output_tokens_per_s, c))
    return at(best)
