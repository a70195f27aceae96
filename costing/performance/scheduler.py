"""One model of vLLM's scheduler: the step, admission, chunked prefill, and a replay of requests through it.

Three things use it: the closed-loop steady state of costing.performance.projection (what `plan`/`estimate`/`compare`
project; analytic, so it takes the step time, the admission cap and the chunk budget from here), the replay
of the published measurements (costing.performance.published: bursts of prompts; Poisson arrivals check the projection's
queue in tests/test_scheduler.py) and the refit from
a bench run (costing.performance.bench_refit: the bench's closed loop of clients). The replays differ only in the
parameters of `replay`: the arrival process (a burst, closed-loop clients, Poisson arrivals), whether prompts
are chunked beside the decodes (vLLM V1, and V0 with chunked prefill) or prefilled in steps of their own (V0's
default), and the admission cap (the KV cache at each prompt's full length, or as blocks grow).

The step (step_parts): the GEMMs (the weights at `bw_eff` of the datasheet bandwidth, 2 x params FLOPs per
token) and the attention kernels (the batch's KV cache at `kv_bw_eff`, their FLOPs), FLOPs at `mfu_decode` /
`mfu_prefill` of the dense TFLOPS; each kernel class's memory and compute time overlap by `overlap`, the two
classes add (they run one after the other); plus tensor-parallel all-reduces (on PCIe-only parts at NCCL's measured bus
bandwidth, gpus.yaml `allreduce`), pipeline-parallel hops and the
engine's CPU time per step and per sequence (see costing.performance.calibration for every parameter).

Imports nothing heavy (no numpy/scipy), and nothing of costing.performance.projection or costing.performance.published.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from costing.data.catalog import AllReduceCurve, allreduce_curve
from costing.performance.calibration import Params
from costing.performance.fit import BLOCK_SIZE, FitResult, kv_bytes_per_token_per_gpu, weight_bytes

# vllm: the V1 engine the kit deploys; vllm-v0: 0.4-0.6; vllm-v0-multistep: 0.6 with --num-scheduler-steps
ENGINES = ("vllm", "vllm-v0", "vllm-v0-multistep", "trtllm")
# vLLM 0.6's multi-step scheduling launches N decode steps at once (the published rows use N = 10): a new
# request waits out the run under way, and V0's CPU time per step shrinks to `multistep_cpu_share` of it
MULTISTEP_STEPS = 10


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
    # PCIe-only parts: NCCL's measured all-reduce on their fabric (gpus.yaml `allreduce`; catalog.allreduce_curve),
    # whose bus bandwidth replaces interconnect x allreduce_bw_eff; None: that fitted term (NVLink parts)
    allreduce_curve: AllReduceCurve | None = None

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
            allreduce_curve=allreduce_curve(gpu, tp) if tp > 1 else None,
        )


def _roof(mem: float, compute: float, overlap: float) -> float:
    """One kernel class: the longer of its memory and compute time plus the unhidden part of the shorter."""
    return max(mem, compute) + (1.0 - overlap) * min(mem, compute)


@dataclass(frozen=True)
class StepParts:
    """One engine step, split by where its time goes (seconds)."""

    gpu: float  # every stage's memory and compute time, with `overlap` applied per stage
    comm: float  # tensor-parallel all-reduces of every stage plus the inter-node hops
    cpu: float  # scheduler, sampling and bookkeeping outside the GPU
    total: float


def step_parts(
    hw: Hardware,
    p: Params,
    batch: float,
    context: float,
    prefill_tokens: float,
    prefill_len: float,
    engine: str = "vllm",
) -> StepParts:
    """One engine step: `batch` sequences decode one token each at a mean context of `context`
    tokens, and `prefill_tokens` prompt tokens (of prompts `prefill_len` long) are prefilled.

    Pipeline parallel: the batch is split into micro-batches (at most one per stage, vLLM's virtual
    engines); a token crosses every stage in turn, so the step a sequence sees is the sum of its
    stages' times plus a hop between nodes per stage boundary, while the other stages work on the
    other micro-batches (throughput = batch / step)."""
    if engine not in ENGINES:  # an unknown name must not silently get another engine's overhead
        raise ValueError(f"unknown engine {engine!r}: one of {', '.join(ENGINES)}")
    pp, tp = hw.pp, hw.tp
    micro = float(min(pp, max(1.0, math.ceil(batch)))) if batch > 0 else 1.0
    b, pf = batch / micro, prefill_tokens / micro  # one micro-batch, as one stage sees it
    # Each kernel class has its own roofline: the GEMMs read the weights while they multiply (memory and math
    # of one kernel overlap by `overlap`), the attention kernels read the KV cache; the two run one after the
    # other, so their times add. Memory: this stage's share of the weights at bw_eff, the micro-batch's KV cache
    # at kv_bw_eff (kv_bytes_per_token_per_gpu already counts only this stage's layers).
    w_mem = hw.weight_bytes_per_gpu / (hw.bandwidth * p.bw_eff)
    kv_mem = b * context * hw.kv_bytes_per_token_per_gpu / (hw.bandwidth * p.kv_bw_eff)
    # FLOPs of this stage: 2 per parameter per token (GEMMs), plus attention (QK^T and AV: 4 x layers x hidden
    # x context per decoded token; a causal prefill attends to half its prompt on average)
    kernel = p.weight_only_mfu if hw.weight_only else 1.0
    peak = tp * hw.flops * kernel
    dec, pre = peak * p.mfu_decode, peak * p.mfu_prefill
    gemm = (b / dec + pf / pre) * 2 * hw.params / pp
    attn = (b * 4 * context / dec + pf * 2 * prefill_len / pre) * hw.layers * hw.hidden / pp
    stage_gpu = _roof(w_mem, gemm, p.overlap) + _roof(kv_mem, attn, p.overlap)
    stage_comm = 0.0
    if tp > 1:  # two all-reduces per layer of the activations of every token in the micro-batch
        ring = 2 * (tp - 1) / tp * (b + pf) * hw.hidden * 2
        # latency: a fixed part and one hop per GPU beyond the second (a ring or one-shot all-reduce reaches
        # every peer), so tensor parallel costs more per step the wider it is, whatever the model's size
        latency = (p.allreduce_latency_us + (tp - 2) * p.allreduce_hop_us) * 1e-6
        # the bus bandwidth: NCCL's measured one on PCIe-only parts (gpus.yaml `allreduce`), else a fitted share
        # of the link's datasheet rate
        if hw.allreduce_curve is not None:
            bus = hw.allreduce_curve.bus_bytes_per_s * p.measured_bus_share
        else:
            bus = hw.interconnect * p.allreduce_bw_eff
        per = latency + ring / bus
        stage_comm = 2 * (hw.layers / pp) * per
    hop = 0.0
    if pp > 1:  # the micro-batch's hidden states go to the next node
        hop = p.internode_latency_us * 1e-6 + (b + pf) * hw.hidden * 2 / (p.internode_gbs * 1e9)
    gpu = pp * stage_gpu
    comm = pp * stage_comm + (pp - 1) * hop
    seqs = batch + prefill_tokens / max(prefill_len, 1.0)
    if engine == "trtllm":  # its kernels are faster by trtllm_speedup; its C++ executor has its own overheads
        gpu, comm = gpu / p.trtllm_speedup, comm / p.trtllm_speedup
        cpu = p.trtllm_step_overhead_ms * 1e-3 + p.trtllm_seq_overhead_us * 1e-6 * seqs
    elif engine == "vllm":
        cpu = p.v1_step_overhead_ms * 1e-3 + p.seq_overhead_us * 1e-6 * seqs
    else:  # V0: scheduler, sampling, detokenizing and streaming in the API server's own Python process
        cpu = p.step_overhead_ms * 1e-3 + p.v0_seq_overhead_us * 1e-6 * seqs
        if engine == "vllm-v0-multistep":
            cpu *= p.multistep_cpu_share
    total = gpu + comm + cpu
    return StepParts(gpu, comm, cpu, total)


def step_time_s(
    hw: Hardware,
    p: Params,
    batch: float,
    context: float,
    prefill_tokens: float,
    prefill_len: float,
    engine: str = "vllm",
) -> float:
    """Seconds a sequence waits between two of its tokens (see step_parts)."""
    return step_parts(hw, p, batch, context, prefill_tokens, prefill_len, engine).total


# Engines that allocate KV blocks as sequences grow and preempt (recompute) when the cache is full;
# TensorRT-LLM's default scheduler (GUARANTEED_NO_EVICT) reserves a request's full length up front.
PREEMPTING = ("vllm", "vllm-v0", "vllm-v0-multistep")


def admissible(
    fit: FitResult, input_tokens: int, output_tokens: int, engine: str = "vllm", *, staggered: bool = True
) -> int:
    """Highest running batch: max_num_seqs (never above max_num_batched_tokens, as vLLM clamps it) and
    the KV cache. vLLM allocates blocks as sequences grow, so in steady state a batch of staggered
    requests holds its mean context (input + output/2 tokens) each; beyond the full-length capacity it
    preempts and recomputes (see costing.performance.projection). Requests that start together (`staggered=False`: a
    burst of prompts) grow together, so they fit only at their full length;
    TensorRT-LLM's default scheduler reserves the full length in any case."""
    seqs = min(fit.settings.max_num_seqs, max(1, fit.settings.max_num_batched_tokens))
    full = fit.max_concurrent_seqs(input_tokens + output_tokens)
    if not staggered or engine not in PREEMPTING or full < 1:
        return min(seqs, full)
    mean_ctx = input_tokens + math.ceil(output_tokens / 2)
    by_mean = (fit.kv_capacity_tokens // BLOCK_SIZE) // max(1, math.ceil(mean_ctx / BLOCK_SIZE))
    return int(max(full, min(seqs, by_mean)))


# Engines that chunk prompts beside the decodes by default: vLLM V1 in every step (its scheduler mixes prompt
# chunks and decodes within max_num_batched_tokens); vLLM 0.4-0.6 only above 32K context (costing.performance.published:
# long_context_chunked); TensorRT-LLM's LLM API leaves enable_chunked_prefill off by default
# (tensorrt_llm/llmapi/llm_args.py, `enable_chunked_prefill: bool = Field(default=False, ...)`).
CHUNKED_BY_DEFAULT = ("vllm",)


def chunks_prompts(engine: str, chunked: bool | None = None) -> bool:
    """Whether prompts are chunked beside the decodes: as stated (`chunked`: a run whose settings say, e.g.
    trtllm-bench's TensorRT-engine runs, which enable chunked context), else the engine's default."""
    return engine in CHUNKED_BY_DEFAULT if chunked is None else chunked


def prompts_per_step(fit: FitResult, input_tokens: int, engine: str, chunked: bool | None = None) -> float:
    """How many prompts of `input_tokens` one step's budget takes: a share of the budget each when the engine
    chunks them (fluid), else whole prompts only (at least one: a longer prompt gets a step of its own)."""
    budget = max(1, fit.settings.max_num_batched_tokens)
    if chunks_prompts(engine, chunked):
        return budget / max(1, input_tokens)
    return float(max(1, budget // max(1, input_tokens)))


def chunk_budget(fit: FitResult, decodes: float) -> float:
    """Prompt tokens a chunked-prefill step takes beside `decodes` running sequences: vLLM schedules the
    decodes first (one token each), then fills max_num_batched_tokens with prompt chunks."""
    return max(1.0, fit.settings.max_num_batched_tokens - decodes)


# ---------------------------------------------------------------------------------------------
# Replaying requests through the scheduler, step by step

BURST, CLOSED, POISSON = "burst", "closed", "poisson"


@dataclass(frozen=True)
class Arrivals:
    """How `requests` requests reach the server: all at once (a burst, as `benchmark_serving` at request
    rate inf), from `clients` closed-loop clients (each sends its next request when its last one ends, as
    `selfhost bench --concurrency` and `vllm bench serve --max-concurrency`), or as a Poisson process of
    `rate` requests/s (`benchmark_serving --request-rate`, seeded: the same times on every call)."""

    kind: str
    requests: int
    clients: int = 0
    rate: float = 0.0
    seed: int = 0

    @classmethod
    def burst(cls, requests: int) -> Arrivals:
        return cls(BURST, requests)

    @classmethod
    def closed(cls, clients: int, requests: int) -> Arrivals:
        return cls(CLOSED, requests, clients=clients)

    @classmethod
    def poisson(cls, rate: float, requests: int, seed: int = 0) -> Arrivals:
        return cls(POISSON, requests, rate=rate, seed=seed)

    def first_sends(self) -> list[float]:
        """Send times known up front (a closed loop sends the rest as requests end)."""
        if self.kind == BURST:
            return [0.0] * self.requests
        if self.kind == CLOSED:
            return [0.0] * min(max(1, self.clients), self.requests)
        if self.kind == POISSON:
            rng, t, out = random.Random(self.seed), 0.0, []
            for _ in range(self.requests):
                out.append(t)
                t += rng.expovariate(self.rate)
            return out
        raise ValueError(f"unknown arrival process {self.kind!r}: one of {BURST}, {CLOSED}, {POISSON}")


@dataclass(frozen=True)
class Replay:
    """Per request (in the order sent): when it was sent, when its first token and its last reached the
    client (seconds from the first send), and its output length."""

    sent: tuple[float, ...]
    first: tuple[float, ...]
    done: tuple[float, ...]
    outputs: tuple[int, ...]
    running_peak: int = 0  # most requests running at once (the admission cap when it was reached)
    steps: int = field(default=0, compare=False)

    def ttft_s(self) -> list[float]:
        return [f - s for f, s in zip(self.first, self.sent, strict=True)]

    def e2e_s(self) -> list[float]:
        return [d - s for d, s in zip(self.done, self.sent, strict=True)]

    def tpot_s(self) -> list[float]:
        """(last - first token) / (output - 1) of every request with more than one output token."""
        return [(d - f) / (o - 1) for f, d, o in zip(self.first, self.done, self.outputs, strict=True) if o > 1]

    @property
    def makespan_s(self) -> float:
        return max(max(self.done), 1e-12)

    @property
    def output_tokens_per_s(self) -> float:
        """Every output token over the run's duration (ramp and drain included, as a benchmark measures it)."""
        return sum(self.outputs) / self.makespan_s


class _Frontend:
    """The serving process takes requests in one at a time (HTTP, parsing, tokenizing: `request_overhead_ms`
    each) and streams nothing meanwhile: a token produced during one of its busy periods reaches the client
    at the period's end."""

    def __init__(self, overhead_s: float) -> None:
        self.overhead = overhead_s
        self.busy: list[list[float]] = []  # [start, end] of its busy periods, in time order

    def take_in(self, at: float) -> float:
        """When a request sent at `at` reaches the engine."""
        if self.overhead <= 0:
            return at
        busy = self.busy
        start = max(at, busy[-1][1]) if busy else at
        if busy and start <= busy[-1][1]:
            busy[-1][1] = start + self.overhead
        else:
            busy.append([start, start + self.overhead])
        return start + self.overhead

    def delivered(self, at: float) -> float:
        for start, end in reversed(self.busy):
            if start <= at < end:
                return end
            if end <= at:
                break
        return at


def replay(
    fit: FitResult,
    params: Params,
    input_tokens: int,
    outputs: Sequence[int],
    arrivals: Arrivals,
    *,
    max_running: int,
    engine: str = "vllm",
    chunked: bool = True,
) -> Replay:
    """Requests of `input_tokens` prompt tokens and outputs[k] output tokens, sent as `arrivals` says,
    through vLLM's scheduler, step by step:

    - admission: first come, first served, while fewer than `max_running` requests run (the caller's cap:
      max_num_seqs and the KV cache, see admissible);
    - chunked (vLLM V1, V0 with chunked prefill): every step decodes all running sequences first, then
      fills the rest of max_num_batched_tokens with prompt chunks, oldest first (a started prompt before a
      new one); a request samples its first token in the step that ends its prompt;
    - not chunked (V0's default): when a request waits and a slot is free, a step prefills whole prompts
      (as many as max_num_batched_tokens holds, at least one) and decodes nothing; otherwise a decode step;
      with multi-step scheduling (engine vllm-v0-multistep) decode steps come in runs of MULTISTEP_STEPS and
      prompts are taken only between runs;
    - every step takes step_time_s at the decoding requests' mean context; runs of decode-only steps (until
      the next request ends or one arrives that could be admitted) are summed in one go.
    """
    if not outputs:
        raise ValueError("replay needs at least one request")
    hw = Hardware.of(fit)
    i = max(1, int(input_tokens))
    outs = [max(1, int(o)) for o in outputs][: arrivals.requests] or [1]
    n = len(outs)
    budget = max(1, int(fit.settings.max_num_batched_tokens))
    slots = max(1, int(max_running))
    front = _Frontend(params.request_overhead_ms * 1e-3)
    latency = params.request_latency_ms * 1e-3  # each request's own wait: it does not queue behind the others'
    sent, first, done = [0.0] * n, [0.0] * n, [0.0] * n
    pending: list[tuple[float, int]] = []  # (reaches the engine, request)
    nxt = 0

    def send(at: float) -> None:
        nonlocal nxt
        sent[nxt] = at
        heapq.heappush(pending, (front.take_in(at) + latency, nxt))
        nxt += 1

    for at in arrivals.first_sends()[:n]:
        send(at)
    waiting: deque[int] = deque()
    prefilling: deque[list[int]] = deque()  # [request, prompt tokens left] (chunked: admitted, prompt under way)
    ending: list[tuple[int, int]] = []  # (decode steps done when it ends, request) of the decoding requests
    decoded = 0  # decode steps so far: every decoding request gains one token in each
    generated = 0  # tokens the decoding requests hold beyond their prompts (their mean context)
    t, finished, peak, steps_run = 0.0, 0, 0, 0
    # multi-step scheduling (vLLM 0.6 --num-scheduler-steps): decode steps run in runs of MULTISTEP_STEPS launched
    # at once; the scheduler takes new prompts only between runs
    run = MULTISTEP_STEPS if engine == "vllm-v0-multistep" else 1
    in_run = 0  # decode steps since the last scheduling point

    def finish_due() -> None:
        nonlocal generated, finished
        while ending and ending[0][0] <= decoded:
            _, r = heapq.heappop(ending)
            done[r] = front.delivered(t)
            generated -= outs[r]
            finished += 1
            if arrivals.kind == CLOSED and nxt < n:
                send(done[r])

    while finished < n:
        while pending and pending[0][0] <= t:
            waiting.append(heapq.heappop(pending)[1])
        n_dec = len(ending)
        running = n_dec + len(prefilling)
        if not waiting and not running:
            if not pending:
                raise RuntimeError("replay: requests left but none pending")  # unreachable: every request ends
            t = pending[0][0]
            continue
        chunks: list[tuple[int, int]] = []  # (request, prompt tokens this step)
        if chunked:
            room = budget - n_dec
            for item in prefilling:
                if room <= 0:
                    break
                take = min(item[1], room)
                chunks.append((item[0], take))
                room -= take
            while waiting and running < slots and room > 0:
                r = waiting.popleft()
                take = min(i, room)
                prefilling.append([r, i])
                chunks.append((r, take))
                room -= take
                running += 1
        elif waiting and running < slots and (in_run % run == 0 or not n_dec):
            in_run = 0
            k = min(max(1, budget // i), slots - running, len(waiting))
            for _ in range(k):
                r = waiting.popleft()
                prefilling.append([r, i])
                chunks.append((r, i))
            running += k
        peak = max(peak, running)
        ctx = i + generated / n_dec if n_dec else float(i)
        if chunks:
            decodes = n_dec if chunked else 0
            t += step_time_s(hw, params, decodes, ctx, float(sum(k for _, k in chunks)), i, engine)
            steps_run += 1
            if decodes:
                decoded += 1
                generated += decodes
            took = dict(chunks)
            for item in list(prefilling):
                r = item[0]
                item[1] -= took.get(r, 0)
                if item[1] > 0:
                    continue
                prefilling.remove(item)
                first[r] = front.delivered(t)
                if outs[r] <= 1:
                    done[r] = first[r]
                    finished += 1
                    if arrivals.kind == CLOSED and nxt < n:
                        send(done[r])
                else:
                    heapq.heappush(ending, (decoded + outs[r] - 1, r))
                    generated += 1
            finish_due()  # after the first tokens: a request sent now keeps the serving process busy after them
            continue
        # decode only, until the next request ends (or one arrives that could be admitted)
        steps = ending[0][0] - decoded
        if waiting and running < slots:  # mid-run: the prompts wait for the run to end
            steps = min(steps, run - in_run % run)
        dt = step_time_s(hw, params, n_dec, ctx + (steps - 1) / 2, 0.0, i, engine)
        arrival = pending[0][0] if pending and running < slots else math.inf
        if t + steps * dt > arrival:
            to_arrival = max(1, math.ceil((arrival - t) / dt))
            steps = min(steps, to_arrival + (-(in_run + to_arrival)) % run)  # to the end of that run
            dt = step_time_s(hw, params, n_dec, ctx + (steps - 1) / 2, 0.0, i, engine)
        t += steps * dt
        steps_run += steps
        in_run += steps
        decoded += steps
        generated += n_dec * steps
        finish_due()
    return Replay(tuple(sent), tuple(first), tuple(done), tuple(outs), peak, steps_run)
