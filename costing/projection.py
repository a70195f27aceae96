"""Performance projection: TTFT, TPOT, end-to-end latency and throughput of a vLLM deployment.

Physics first, then a few named efficiency parameters fitted on published measurements
(costing/data/calibration.json, written by `make calibrate`):

- one engine step (one output token for every running sequence, plus chunked-prefill work) takes
  the smooth maximum of its memory time (weights per GPU + the KV cache of every sequence in the
  batch, read once, at `bw_eff` of the datasheet bandwidth) and its compute time (2 x params FLOPs
  per token + attention, at `mfu_decode` / `mfu_prefill` of the dense TFLOPS of the precision's
  compute type; weight-only kernels (FP8 on Ampere, AWQ) reach `weight_only_mfu` of that),
  plus tensor-parallel all-reduces (2 per layer: latency + ring traffic over the interconnect at
  `allreduce_bw_eff`) and the engine's per-step and per-sequence overhead;
- closed loop with C concurrent requests and continuous batching with chunked prefill: every step
  decodes C sequences and also carries C x input/output prefill tokens (each request's prompt,
  amortized over its output), so TPOT = the step time; TTFT = half a step of waiting plus the
  prefill of the prompt in chunks of max_num_batched_tokens; end-to-end = TTFT + (output - 1) x TPOT.

Imports nothing heavy (no numpy/scipy): one call takes well under a millisecond.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from costing.calibration import Params, load_params
from costing.fit import FitResult, kv_bytes_per_token_per_gpu, weight_bytes

ENGINES = ("vllm", "vllm-v0", "trtllm")  # vllm: the V1 engine the kit deploys; vllm-v0: 0.4/0.5


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
    assumptions: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class Hardware:
    """What one step's physics needs, derived once from a FitResult."""

    gpus: int  # tensor x pipeline parallel GPUs serving one replica
    tp: int
    pp: int
    layers: int
    hidden: int
    params: float  # parameters (all active: dense Llama)
    weight_bytes_per_gpu: float
    kv_bytes_per_token_per_gpu: float
    bandwidth: float  # bytes/s per GPU (datasheet)
    flops: float  # dense FLOP/s per GPU for the compute type used
    interconnect: float  # bytes/s per GPU, one direction
    weight_only: bool  # quantized weights computed in 16 bits (dequantizing kernels)
    compute_type: str

    @classmethod
    def of(cls, fit: FitResult) -> Hardware:
        tp, pp = fit.settings.tensor_parallel_size, fit.settings.pipeline_parallel_size
        prec, gpu = fit.precision, fit.gpu
        native = gpu.computes_natively(prec)
        compute = prec.compute if native else "bf16"
        weight_only = (not native) or (compute == "bf16" and prec.weight_bits < 16)
        return cls(
            gpus=tp * pp,
            tp=tp,
            pp=pp,
            layers=fit.model.layers,
            hidden=fit.model.hidden_size,
            params=fit.model.params_b * 1e9,
            weight_bytes_per_gpu=weight_bytes(fit.model, prec) / (tp * pp),
            kv_bytes_per_token_per_gpu=kv_bytes_per_token_per_gpu(fit.model, tp, pp, fit.settings.kv_cache_dtype),
            bandwidth=gpu.bandwidth_gbs * 1e9,
            flops=gpu.dense_tflops(compute) * 1e12,
            interconnect=gpu.interconnect_gbs * 1e9,
            weight_only=weight_only,
            compute_type=compute,
        )


def step_time_s(
    hw: Hardware,
    p: Params,
    batch: float,
    context: float,
    prefill_tokens: float,
    prefill_len: float,
    engine: str = "vllm",
) -> float:
    """Seconds for one engine step: `batch` sequences decode one token each at a mean context of
    `context` tokens, and `prefill_tokens` prompt tokens (of prompts `prefill_len` long) are prefilled."""
    mem = (hw.weight_bytes_per_gpu + batch * context * hw.kv_bytes_per_token_per_gpu) / (hw.bandwidth * p.bw_eff)
    # FLOPs: 2 per parameter per token, plus attention (QK^T and AV: 4 x layers x hidden x context per
    # decoded token; a causal prefill attends to half its prompt on average).
    decode_flops = batch * (2 * hw.params + 4 * hw.layers * hw.hidden * context)
    prefill_flops = prefill_tokens * (2 * hw.params + 2 * hw.layers * hw.hidden * prefill_len)
    kernel = p.weight_only_mfu if hw.weight_only else 1.0
    peak = hw.gpus * hw.flops * kernel
    compute = decode_flops / (peak * p.mfu_decode) + prefill_flops / (peak * p.mfu_prefill)
    gpu = (mem**p.overlap_power + compute**p.overlap_power) ** (1.0 / p.overlap_power)
    comm = 0.0
    if hw.tp > 1:  # two all-reduces per layer of the activations of every token in the step
        ring = 2 * (hw.tp - 1) / hw.tp * (batch + prefill_tokens) * hw.hidden * 2
        comm = 2 * hw.layers * (p.allreduce_latency_us * 1e-6 + ring / (hw.interconnect * p.allreduce_bw_eff))
    if hw.pp > 1:  # activations handed to the next node once per stage boundary
        hop = (batch + prefill_tokens) * hw.hidden * 2
        comm += (hw.pp - 1) * (p.allreduce_latency_us * 1e-6 + hop / (hw.interconnect * p.allreduce_bw_eff))
    step_ms = p.v1_step_overhead_ms if engine == "vllm" else p.step_overhead_ms
    overhead = step_ms * 1e-3 + p.seq_overhead_us * 1e-6 * (batch + prefill_tokens / max(prefill_len, 1.0))
    total = gpu + comm + overhead
    return total / p.trtllm_speedup if engine == "trtllm" else total


def admissible(fit: FitResult, input_tokens: int, output_tokens: int) -> int:
    """Highest concurrency the KV cache and max_num_seqs admit for this request length."""
    return fit.max_concurrent_seqs(input_tokens + output_tokens)


def _cap_reason(fit: FitResult, seq_len: int, cap: int) -> str:
    by_seqs = fit.settings.max_num_seqs
    if cap >= by_seqs:
        return f"max_num_seqs is {by_seqs:,}"
    return f"KV cache holds {cap:,} sequences of {seq_len:,} tokens"


def _check(input_tokens: int, output_tokens: int, concurrency: int) -> None:
    from costing.errors import UserError

    for name, value in (("input tokens", input_tokens), ("output tokens", output_tokens), ("concurrency", concurrency)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 1 or value != value:
            raise UserError(f"{name} must be a positive number, got {value!r}", f"give {name} of at least 1")


def project(
    fit: FitResult,
    input_tokens: int,
    output_tokens: int,
    concurrency: int,
    params: Params | None = None,
    *,
    engine: str = "vllm",
) -> Projection:
    """Steady state of `concurrency` clients each sending the next request when the last one ends."""
    _check(input_tokens, output_tokens, concurrency)
    p = params or load_params()
    hw = Hardware.of(fit)
    i, o, requested = int(input_tokens), int(output_tokens), int(concurrency)
    seq_len = i + o
    cap = admissible(fit, i, o)
    if cap < 1:
        from costing.errors import DoesNotFit

        raise DoesNotFit(
            f"a request of {seq_len:,} tokens does not fit the KV cache ({fit.kv_capacity_tokens:,} tokens)",
            "shorten the request or use more GPUs",
        )
    c = min(requested, cap)
    capped = c < requested
    context = i + o / 2.0  # mean context a decoded token attends to
    tpot = step_time_s(hw, p, c, context, c * i / o, i, engine)
    chunk = max(1, fit.settings.max_num_batched_tokens)
    chunks = math.ceil(i / chunk)
    prefill_steps = (
        sum(step_time_s(hw, p, c - 1, context, min(chunk, i - k * chunk), i, engine) for k in range(chunks))
        if chunks <= 64
        else chunks * step_time_s(hw, p, c - 1, context, chunk, i, engine)
    )
    ttft = 0.5 * tpot + prefill_steps
    e2e = ttft + (o - 1) * tpot
    rps = c / e2e
    client_e2e = requested / rps  # Little's law: requests beyond the cap queue
    client_ttft = ttft + (client_e2e - e2e)
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
        "max_num_batched_tokens": chunk,
        "workload": "closed loop: each client sends its next request when the last one ends; "
        "fixed input/output lengths; continuous batching with chunked prefill",
        "p90_tail": f"p90 e2e = {p.p90_over_mean:g} x mean ({p.source_of('p90_over_mean')})",
        "params": p.to_assumptions(),
    }
    return Projection(
        concurrency=c,
        requested_concurrency=requested,
        capped=capped,
        cap_reason=_cap_reason(fit, seq_len, cap) if capped else None,
        ttft_ms=client_ttft * 1e3,
        tpot_ms=tpot * 1e3,
        e2e_latency_s=client_e2e,
        p90_e2e_latency_s=client_e2e * p.p90_over_mean,
        output_tokens_per_s=rps * o,
        requests_per_s=rps,
        assumptions=assumptions,
    )


def slo_concurrency(
    fit: FitResult,
    input_tokens: int,
    output_tokens: int,
    p90_latency_s: float,
    params: Params | None = None,
    *,
    engine: str = "vllm",
) -> Projection:
    """The highest concurrency whose p90 end-to-end latency is within the SLO, bounded by what the
    KV cache and max_num_seqs admit. When even one request misses the SLO the concurrency-1
    projection is returned: the caller sees p90_e2e_latency_s > p90_latency_s."""
    p = params or load_params()
    cap = max(1, admissible(fit, int(input_tokens), int(output_tokens)))
    best = project(fit, input_tokens, output_tokens, 1, p, engine=engine)
    if best.p90_e2e_latency_s > p90_latency_s:
        return best
    top = project(fit, input_tokens, output_tokens, cap, p, engine=engine)
    if top.p90_e2e_latency_s <= p90_latency_s:
        return top
    lo, hi = 1, cap  # p90(lo) meets the SLO, p90(hi) does not; latency rises with concurrency
    while hi - lo > 1:
        mid = (lo + hi) // 2
        cand = project(fit, input_tokens, output_tokens, mid, p, engine=engine)
        if cand.p90_e2e_latency_s <= p90_latency_s:
            lo, best = mid, cand
        else:
            hi = mid
    return best


def max_throughput(
    fit: FitResult, input_tokens: int, output_tokens: int, params: Params | None = None, *, engine: str = "vllm"
) -> Projection:
    """The projection at the highest admissible concurrency (throughput rises with concurrency)."""
    cap = max(1, admissible(fit, int(input_tokens), int(output_tokens)))
    return project(fit, input_tokens, output_tokens, cap, params, engine=engine)
