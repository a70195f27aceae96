"""The serving engine a projection models: vLLM V1 (what the kit deploys, at its pinned version), vLLM V0
(0.4-0.7), vLLM 0.6 with multi-step scheduling, or TensorRT-LLM; and the scheduler defaults each ran with,
so a public measurement can be reproduced through `selfhost estimate --engine ... --vllm-version ...`.

The calibration (costing/data/calibration.json) fits each engine's CPU time apart (costing.performance.calibration)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from costing.errors import UserError
from costing.performance.vllm_args import VLLM_VERSION

# CLI name -> the projection's engine name (costing.performance.projection.ENGINES)
CLI_ENGINES = {"vllm-v1": "vllm", "vllm-v0": "vllm-v0", "vllm-v0-multistep": "vllm-v0-multistep", "trtllm": "trtllm"}
V1_FROM = (0, 8)  # vLLM 0.8.0 made the V1 engine the default
OLDEST = (0, 4)  # the oldest vLLM the calibration has rows of
# vLLM 0.4-0.7 (V0) OpenAI-server defaults: max_num_seqs 256, no chunked prefill below 32K context, so
# max_num_batched_tokens = max(max_model_len, 2048) (vllm/config.py SchedulerConfig of those releases)
V0_MAX_NUM_SEQS = 256
V0_MIN_BATCHED_TOKENS = 2048
# trtllm-bench max-throughput runs (TensorRT-LLM's perf-overview): batch limit 2048, max_num_tokens 8192,
# 95% of the memory to weights and KV cache, FP8 KV cache with FP8 weights
TRTLLM_MAX_BATCH = 2048
TRTLLM_MEMORY_FRACTION = 0.95
TRTLLM_BATCHED_TOKENS = 8192
# trtllm-bench sizes the engine from the dataset when none is given (perf-overview v0.15: "`trtllm-bench build`
# uses high-level statistics of the dataset (average ISL/OSL, max sequence length) and tuning heuristics";
# tensorrt_llm/bench/build/tuning.py, finetune_setting, also behind the PyTorch backend's runs): the batch limit is
# the KV cache's requests at ISL + OSL (at most 4096), rounded up; max_num_tokens that batch x (1 + ISL/OSL) (at
# most 32768, at least 2048), rounded up. A prompt-heavy table (2048/128) thus runs ~28k tokens a step, not 8192.
TRTLLM_BENCH_MAX_BATCH = 4096
TRTLLM_BENCH_MAX_TOKENS = 32768
TRTLLM_BENCH_MIN_BATCH = 64
TRTLLM_BENCH_MIN_TOKENS = 2048


@dataclass(frozen=True)
class Engine:
    name: str  # costing.performance.projection's engine name
    version: str  # the vLLM version (or "TensorRT-LLM")

    @property
    def label(self) -> str:
        if self.name == "trtllm":
            return "TensorRT-LLM"
        kind = {"vllm": "V1", "vllm-v0": "V0", "vllm-v0-multistep": "V0, multi-step scheduling"}[self.name]
        return f"vLLM {self.version} ({kind})"

    @property
    def pinned(self) -> bool:
        return self.name == "vllm" and self.version == VLLM_VERSION


DEPLOYED = Engine("vllm", VLLM_VERSION)


def _version(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"v?(\d+)\.(\d+)(?:\.(\d+))?(?:\.?post\d+|rc\d+)?", text.strip())
    if not m:
        raise UserError(f"--vllm-version '{text}' is not a vLLM version", "give it as MAJOR.MINOR[.PATCH], e.g. 0.6.3")
    return int(m.group(1)), int(m.group(2))


def choose_engine(engine: str | None, vllm_version: str | None) -> Engine:
    """The engine from the CLI's --engine and --vllm-version (both optional: the deployed, pinned vLLM)."""
    if engine is not None and engine not in CLI_ENGINES:
        raise UserError(f"unknown engine '{engine}'", f"use --engine with one of: {', '.join(CLI_ENGINES)}")
    name = CLI_ENGINES[engine] if engine else None
    if name == "trtllm":
        if vllm_version:
            raise UserError("--vllm-version does not apply to --engine trtllm", "drop --vllm-version")
        return Engine("trtllm", "TensorRT-LLM")
    if vllm_version is None:
        if name in (None, "vllm"):
            return DEPLOYED
        raise UserError(
            f"--engine {engine} needs the vLLM version it ran", "add --vllm-version (e.g. --vllm-version 0.5.4)"
        )
    version = _version(vllm_version)
    pinned = _version(VLLM_VERSION)
    if not OLDEST <= version <= pinned:
        oldest = ".".join(map(str, OLDEST))
        raise UserError(
            f"vLLM {vllm_version} is outside what the projection models ({oldest} to {VLLM_VERSION})",
            f"give --vllm-version between {oldest} and {VLLM_VERSION}",
        )
    v1 = version >= V1_FROM
    if name is None:
        name = "vllm" if v1 else "vllm-v0"
    if (name == "vllm") != v1:
        which = "V1 (0.8 or later)" if name == "vllm" else "V0 (before 0.8)"
        raise UserError(
            f"--engine {engine} is vLLM {which}, not {vllm_version}", "drop --engine: --vllm-version picks the engine"
        )
    if name == "vllm-v0-multistep" and version < (0, 6):
        raise UserError(f"multi-step scheduling came with vLLM 0.6, not {vllm_version}", "use --engine vllm-v0")
    return Engine(name, vllm_version.strip().lstrip("v"))


def fit_overrides(engine: str, max_context: int, precision: str) -> dict[str, Any]:
    """FitRequest fields the engine's own defaults set (empty for vLLM V1: costing.performance.fit applies them)."""
    if engine == "trtllm":
        return {
            "gpu_memory_utilization": TRTLLM_MEMORY_FRACTION,
            "max_num_seqs": V0_MAX_NUM_SEQS,  # raised to TRTLLM_MAX_BATCH after the fit (adjust_settings)
            "max_num_batched_tokens": TRTLLM_BATCHED_TOKENS,
            "kv_cache_dtype": "fp8" if precision == "fp8" else "auto",
        }
    if engine in ("vllm-v0", "vllm-v0-multistep"):
        return {"max_num_seqs": V0_MAX_NUM_SEQS, "max_num_batched_tokens": max(V0_MIN_BATCHED_TOKENS, max_context)}
    return {}


def _round_up(value: float, steps: tuple[tuple[float, int], ...]) -> int:
    """`value` rounded up to the granularity of the first (limit, granularity) whose limit it is below (the last
    limit is math.inf)."""
    grain = next(g for limit, g in steps if value < limit)
    return grain * math.ceil(value / grain)


def trtllm_bench_settings(kv_requests: float, input_tokens: int, output_tokens: int, pp: int = 1) -> tuple[int, int]:
    """(max batch size, max_num_tokens) trtllm-bench picks for a dataset of fixed lengths when the KV cache holds
    `kv_requests` requests of input + output tokens (see TRTLLM_BENCH_MAX_BATCH: the heuristic, with its source)."""
    raw_bs = min(kv_requests, TRTLLM_BENCH_MAX_BATCH) / max(1, pp)
    raw_tokens = min(raw_bs * (1 + input_tokens / max(1, output_tokens)), TRTLLM_BENCH_MAX_TOKENS)
    batch = max(TRTLLM_BENCH_MIN_BATCH, _round_up(raw_bs, ((256, 32), (1024, 128), (math.inf, 256))))
    tokens = max(TRTLLM_BENCH_MIN_TOKENS, _round_up(raw_tokens, ((4096, 256), (8192, 512), (math.inf, 1024))))
    return batch, tokens


def adjust_settings(fit: Any, engine: str, lengths: tuple[int, int] | None = None) -> Any:
    """TensorRT-LLM's batch limit is above anything vLLM's fit check allows: set it after the fit. `lengths`
    (input, output tokens of a trtllm-bench dataset): the batch limit and max_num_tokens trtllm-bench sizes for
    them (trtllm_bench_settings), from the KV cache the fit leaves."""
    from dataclasses import replace

    if engine != "trtllm":
        return fit
    if lengths is None:
        return replace(fit, settings=replace(fit.settings, max_num_seqs=TRTLLM_MAX_BATCH))
    i, o = lengths
    batch, tokens = trtllm_bench_settings(fit.kv_capacity_tokens / max(1, i + o), i, o, fit.nodes)
    return replace(fit, settings=replace(fit.settings, max_num_seqs=batch, max_num_batched_tokens=tokens))


def fit_for_engine(spec: Any, fit: Any, engine: str) -> Any:
    """The fit under another engine's scheduler defaults (vLLM V0's, TensorRT-LLM's), on the same GPUs;
    scheduler settings the spec states win over the engine's defaults."""
    from dataclasses import replace

    from costing.data.resolve import fit_request
    from costing.performance.fit import fit_check

    overrides = fit_overrides(engine, fit.model.max_context, fit.precision.id)
    if not overrides:
        return fit
    for key in ("max_num_seqs", "max_num_batched_tokens"):
        if getattr(spec.vllm, key) is not None:
            overrides.pop(key, None)
    req = replace(fit_request(spec, fit.gpu.name, fit.gpus_per_node), **overrides)
    return adjust_settings(fit_check(req), engine)
