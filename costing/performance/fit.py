"""Fit check: does the model fit, with what tensor/pipeline parallelism, how long a context and how
many concurrent sequences. Its VllmSettings feed the one `vllm serve` builder (costing.performance.vllm_args)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from costing.data.catalog import Gpu, Model, Precision, catalog, get_gpu, get_model, get_precision
from costing.errors import DoesNotFit, UserError
from costing.performance.drain import DRAIN_MAX_S

GIB = 1024**3
BLOCK_SIZE = 16  # vLLM's KV cache block (tokens)
CUDA_CONTEXT_GIB = 0.75  # CUDA context + cuBLAS/NCCL workspaces outside torch's allocator
CUDA_GRAPHS_GIB = 0.35  # captured CUDA graphs (vLLM default, no --enforce-eager)
NCCL_GIB = 0.25
MULTI_NODE_CLOUDS = ("aws", "gcp")  # RunPod pods are single-node
# --max-model-len stays at most this share of the estimated KV capacity: vLLM refuses to start when the
# longest sequence does not fit its measured KV cache, so an estimate a few percent high must not stop it.
KV_MARGIN = 0.9


@dataclass(frozen=True)
class VllmSettings:
    """Everything the `vllm serve` command line needs, derived from the fit check."""

    model_repo: str
    served_model_name: str
    tensor_parallel_size: int
    pipeline_parallel_size: int
    max_model_len: int
    gpu_memory_utilization: float
    max_num_seqs: int
    max_num_batched_tokens: int
    quantization: str | None
    dtype: str
    kv_cache_dtype: str = "auto"
    enable_prefix_caching: bool = True
    port: int = 8000
    extra_args: tuple[str, ...] = ()
    checkpoint_quantization: str | None = None  # the quant_method the checkpoint's config.json declares
    # vLLM's --shutdown-timeout (costing.performance.drain): seconds a stopping server lets in-flight requests finish.
    # The cost review sizes it from its projection's p99 latency; until then, the bound (0 = abort them).
    shutdown_timeout_s: int = DRAIN_MAX_S


@dataclass(frozen=True)
class FitResult:
    model: Model
    precision: Precision
    gpu: Gpu
    gpus_per_node: int
    nodes: int
    weight_gib: float
    weight_gib_per_gpu: float
    overhead_gib_per_gpu: float
    kv_gib_per_gpu: float
    kv_bytes_per_token: float
    kv_capacity_tokens: int
    max_model_len: int
    settings: VllmSettings
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def total_gpus(self) -> int:
        return self.gpus_per_node * self.nodes

    def max_concurrent_seqs(self, seq_len: int) -> int:
        """Sequences of `seq_len` tokens the KV cache holds at once, capped by max_num_seqs."""
        blocks_per_seq = math.ceil(seq_len / BLOCK_SIZE)
        by_kv = (self.kv_capacity_tokens // BLOCK_SIZE) // max(1, blocks_per_seq)
        return int(max(0, min(self.settings.max_num_seqs, by_kv)))

    def describe(self) -> str:
        return (
            f"{self.model.id} {self.precision.id} on {self.total_gpus}x {self.gpu.name} "
            f"(TP {self.settings.tensor_parallel_size}, PP {self.settings.pipeline_parallel_size}): "
            f"weights {self.weight_gib:.1f} GiB, KV {self.kv_gib_per_gpu:.1f} GiB/GPU = "
            f"{self.kv_capacity_tokens:,} tokens, max_model_len {self.max_model_len:,}"
        )


def weight_bytes(model: Model, precision: Precision) -> float:
    """Bytes of weights: quantized linear layers plus 16-bit embeddings/lm_head."""
    embed = model.embedding_params
    linear = model.params_b * 1e9 - embed
    return linear * precision.bits_per_weight / 8 + embed * 2


def kv_bytes_per_token_per_gpu(model: Model, tp: int, pp: int, kv_cache_dtype: str) -> float:
    """KV bytes one GPU stores per token: heads split by TP (replicated past the KV-head count),
    layers split by PP."""
    element = 1 if kv_cache_dtype == "fp8" else 2
    kv_heads_per_gpu = max(1.0, model.kv_heads / tp)
    layers_per_gpu = math.ceil(model.layers / pp)
    return 2 * layers_per_gpu * kv_heads_per_gpu * model.head_dim * element


def default_max_num_seqs(gpu: Gpu) -> int:
    """vLLM V1 defaults for the OpenAI server: 1024 on >=70 GiB non-A100 GPUs, else 256."""
    return 1024 if gpu.usable_gib >= 70 and not gpu.name.startswith("A100") else 256


def default_max_num_batched_tokens(gpu: Gpu) -> int:
    """vLLM V1 defaults for the OpenAI server: 8192 on >=70 GiB non-A100 GPUs, else 2048."""
    return 8192 if gpu.usable_gib >= 70 and not gpu.name.startswith("A100") else 2048


def overhead_gib_per_gpu(model: Model, tp: int, pp: int, batched_tokens: int, max_seqs: int) -> float:
    """Memory vLLM's profiling run reserves besides weights and KV cache, per GPU."""
    act_per_token = (4 * model.hidden_size + 2 * model.intermediate_size / tp) * 2  # bf16 activations
    activations = batched_tokens * act_per_token
    logits = max_seqs * model.vocab_size * 4 / tp  # fp32 logits for sampling
    parallel = NCCL_GIB if tp * pp > 1 else 0.0
    return CUDA_CONTEXT_GIB + CUDA_GRAPHS_GIB + parallel + (activations + logits) / GIB


@dataclass(frozen=True)
class FitRequest:
    model: str
    precision: str = "bf16"
    gpu: str = "A40"
    gpus: int = 1
    nodes: int = 1
    gpu_memory_utilization: float = 0.90
    max_model_len: int | None = None
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    kv_cache_dtype: str = "auto"
    seq_len: int | None = None  # input + output tokens of the workload, when known
    model_repo: str | None = None
    served_model_name: str | None = None
    enable_prefix_caching: bool = True
    port: int = 8000
    extra_args: tuple[str, ...] = ()


class _NoFit(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _fit(req: FitRequest) -> FitResult:
    model, precision, gpu = get_model(req.model), get_precision(req.precision), get_gpu(req.gpu)
    tp, pp = req.gpus, req.nodes
    if tp not in (1, 2, 4, 8):
        raise UserError(f"{tp} GPUs per node is not a tensor-parallel size vLLM supports", "use --gpus 1, 2, 4 or 8")
    if model.attention_heads % tp:
        raise UserError(
            f"{model.id} has {model.attention_heads} attention heads, not divisible by {tp} GPUs",
            "use a GPU count that divides the head count",
        )
    repo = req.model_repo or model.repo_for(precision.id)
    if repo is None:
        raise UserError(
            f"no known {precision.id} checkpoint of {model.id}",
            "set vllm.model_repo in the spec to a quantized repo, or pick another --precision",
        )
    notes = []
    if not gpu.computes_natively(precision):
        notes.append(
            f"{gpu.name} ({gpu.arch}) has no native {precision.compute} compute: "
            f"vLLM runs {precision.id} as {precision.fallback or 'a fallback kernel'}"
        )
    max_seqs = req.max_num_seqs or default_max_num_seqs(gpu)
    batched = req.max_num_batched_tokens or default_max_num_batched_tokens(gpu)
    weights = weight_bytes(model, precision) / GIB
    weights_per_gpu = weights / (tp * pp)
    overhead = overhead_gib_per_gpu(model, tp, pp, batched, max_seqs)
    usable = gpu.usable_gib * req.gpu_memory_utilization
    kv_gib = usable - weights_per_gpu - overhead
    need = f"{weights_per_gpu:.1f} GiB weights + {overhead:.1f} GiB runtime per GPU"
    have = f"{usable:.1f} GiB usable ({req.gpu_memory_utilization:.2f} x {gpu.usable_gib:.1f} GiB)"
    if kv_gib <= 0:
        raise _NoFit(f"{need} exceed {have}")
    per_token = kv_bytes_per_token_per_gpu(model, tp, pp, req.kv_cache_dtype)
    capacity = int(kv_gib * GIB // (per_token * BLOCK_SIZE)) * BLOCK_SIZE
    wanted_len = req.max_model_len or model.max_context
    if req.max_model_len and req.max_model_len > model.max_context:
        raise UserError(
            f"max_model_len {req.max_model_len:,} exceeds {model.id}'s context of {model.max_context:,}",
            f"use at most {model.max_context}",
        )
    longest = int(capacity * KV_MARGIN) // BLOCK_SIZE * BLOCK_SIZE  # the margin under the KV estimate
    if req.max_model_len and req.max_model_len > longest:
        raise _NoFit(
            f"max_model_len {req.max_model_len:,} is more than {KV_MARGIN:.0%} of the {capacity:,} tokens the KV "
            f"cache holds ({kv_gib:.1f} GiB/GPU after {need}; the margin keeps an estimate a few percent high "
            "from stopping vLLM)"
        )
    max_len = min(wanted_len, longest)
    if max_len < wanted_len and not req.max_model_len:
        notes.append(
            f"max_model_len capped at {max_len:,}: {KV_MARGIN:.0%} of the {capacity:,} tokens the KV cache holds "
            f"(margin for the estimate; the model allows {model.max_context:,})"
        )
    if req.seq_len and req.seq_len > max_len:
        raise _NoFit(
            f"a request of {req.seq_len:,} tokens (input + output) is longer than the "
            f"{max_len:,} tokens that fit in the KV cache"
        )
    if max_len < 256:
        raise _NoFit(f"only {capacity:,} tokens of KV cache are left after {need}")
    settings = VllmSettings(
        model_repo=repo,
        served_model_name=req.served_model_name or model.id,
        tensor_parallel_size=tp,
        pipeline_parallel_size=pp,
        max_model_len=max_len,
        gpu_memory_utilization=req.gpu_memory_utilization,
        max_num_seqs=max_seqs,
        max_num_batched_tokens=batched,
        # A pre-quantized checkpoint declares its method (vLLM reads it); only dynamic FP8 of a 16-bit repo
        # needs the flag, and a flag that differs from the checkpoint's method stops vLLM.
        quantization=None if model.quant_method_of(repo) else precision.vllm_quantization,
        dtype=precision.vllm_dtype,
        kv_cache_dtype=req.kv_cache_dtype,
        enable_prefix_caching=req.enable_prefix_caching,
        port=req.port,
        extra_args=tuple(req.extra_args),
        checkpoint_quantization=model.quant_method_of(repo),
    )
    return FitResult(
        model,
        precision,
        gpu,
        tp,
        pp,
        weights,
        weights_per_gpu,
        overhead,
        kv_gib,
        model.kv_bytes_per_token(1 if req.kv_cache_dtype == "fp8" else 2),
        capacity,
        max_len,
        settings,
        tuple(notes),
    )


def alternatives(req: FitRequest, limit: int = 3) -> list[str]:
    """The nearest configurations that fit: more GPUs of the same kind, a smaller precision, a bigger offer."""
    from costing.data.catalog import offers_for

    found: list[tuple[float, str]] = []
    seen = set()

    def consider(precision: str, gpu: str, gpus: int, nodes: int = 1) -> None:
        key = (precision, gpu, gpus, nodes)
        if key in seen:
            return
        seen.add(key)
        try:
            fit = _fit(
                replace(req, precision=precision, gpu=gpu, gpus=gpus, nodes=nodes, max_model_len=req.max_model_len)
            )
        except (_NoFit, UserError):
            return
        offers = offers_for(gpu=gpu, gpus=gpus)
        price = offers[0].on_demand * nodes if offers else math.inf
        where = f"{offers[0].id}, ${price:.2f}/h" if offers else "no offer in the catalog"
        label = f"{nodes} nodes of " if nodes > 1 else ""
        found.append((price, f"{label}{gpus}x {gpu} {precision} ({where}, max_model_len {fit.max_model_len:,})"))

    for gpus in (2, 4, 8):
        if gpus > req.gpus:
            consider(req.precision, req.gpu, gpus)
    for precision in ("fp8", "int8", "awq"):
        if precision != req.precision:
            consider(precision, req.gpu, req.gpus)
    for offer in catalog().offers.values():
        consider(req.precision, offer.gpu, offer.gpus)
    for nodes in (2, 3, 4):
        for offer in catalog().offers.values():
            if offer.gpus == 8 and offer.cloud in MULTI_NODE_CLOUDS:
                consider(req.precision, offer.gpu, 8, nodes)
    found.sort()
    return [text for _, text in found[:limit]]


def fit_check(req: FitRequest) -> FitResult:
    """Fit the model or raise DoesNotFit naming why and the nearest configurations that fit."""
    try:
        return _fit(req)
    except _NoFit as no:
        options = alternatives(req)
        where = f"{req.nodes} nodes of " if req.nodes > 1 else ""
        fix = ("try " + "; or ".join(options)) if options else "no catalog configuration fits; use a smaller model"
        raise DoesNotFit(
            f"{req.model} {req.precision} does not fit on {where}{req.gpus}x {req.gpu}: {no.reason}", fix
        ) from None


def smallest_fit(req: FitRequest, counts: tuple[int, ...] = (1, 2, 4, 8)) -> FitResult:
    """The fit with the fewest GPUs of `req.gpu` (used when --gpus is not given)."""
    for n in counts:
        try:
            return _fit(replace(req, gpus=n))
        except (_NoFit, UserError):
            continue
    return fit_check(replace(req, gpus=max(counts)))  # raises the largest count's reason, with alternatives
