"""The projection's named efficiency parameters: their bounds, defaults, sources, load and save.

Loading is json only: `selfhost plan` reads costing/data/calibration.json through this module. The fit
on the published measurements is costing.performance.published; the refit from a bench run is
costing.performance.bench_refit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, cast

from costing.data import DATA_DIR

DATA_FILE = "calibration.json"

# Parameters the fit may move, with bounds; the rest are fixed, named assumptions.
FITTED = {
    "bw_eff": (0.3, 0.92),  # microbenchmarks reach ~90% of datasheet HBM/GDDR bandwidth
    "kv_bw_eff": (0.2, 0.92),  # paged-attention reads of the KV cache (scattered 16-token blocks)
    "overlap": (0.0, 1.0),  # within a kernel class: 0, memory and compute time add; 1, the shorter hides
    "mfu_prefill": (0.1, 1.0),  # a share of the datasheet's dense peak: at most all of it
    "mfu_decode": (0.05, 1.0),  # idem, decode GEMMs (the datasheet peak is the ceiling)
    "weight_only_mfu": (0.1, 1.0),  # dequantizing kernels never beat the 16-bit peak they run at
    "step_overhead_ms": (0.0, 40.0),  # vLLM 0.4-0.6 (V0) per-step Python time: ms, not tens of ms, on a server CPU
    "v1_step_overhead_ms": (0.0, 10.0),  # vLLM V1's engine-core loop: a few ms at most on a server CPU
    "seq_overhead_us": (0.0, 200.0),  # per sequence per step (sampling, detokenizing, streaming): 0.2 ms at most
    "v0_seq_overhead_us": (0.0, 300.0),  # V0 streams every token from the engine's own Python process
    # vLLM 0.6 multi-step scheduling (N = 10 steps a run): at best the whole CPU time is spread over the N steps
    # (1/N), at worst none of it (per-token detokenizing and streaming stay per step)
    "multistep_cpu_share": (0.1, 1.0),
    "allreduce_latency_us": (1.0, 200.0),  # one NCCL/custom all-reduce of a few KB: microseconds to ~0.1 ms
    "allreduce_bw_eff": (0.02, 1.0),  # a share of the link's datasheet bandwidth
    "trtllm_speedup": (0.5, 5.0),  # TensorRT-LLM vs vLLM kernels, one GPU: half to 5x (vendor rows pin it)
    # ring / one-shot all-reduce: one more peer per added GPU; NVLink/NVSwitch hops cost ~1-5 us, PCIe more
    "allreduce_hop_us": (0.0, 30.0),
    # TensorRT-LLM's C++ executor: its own time per step and per sequence (not vLLM's Python scheduler); the
    # vendor tables run batches of thousands, so tens of microseconds per sequence would already dominate
    "trtllm_step_overhead_ms": (0.0, 10.0),
    "trtllm_seq_overhead_us": (0.0, 50.0),
}


@dataclass(frozen=True)
class Params:
    """Named efficiency parameters of the projection (see costing/performance/projection.py for the physics)."""

    bw_eff: float = 0.80  # fraction of datasheet memory bandwidth a decode step reaches reading weights
    kv_bw_eff: float = 0.70  # fraction of datasheet bandwidth paged attention reaches reading the KV cache
    overlap: float = 0.5  # share of a kernel class's shorter memory / compute time hidden under the longer
    mfu_prefill: float = 0.55  # fraction of dense TFLOPS in prefill (large GEMMs)
    mfu_decode: float = 0.45  # fraction of dense TFLOPS in decode GEMMs at large batch
    # compute left to dequantizing kernels (FP8-on-Ampere Marlin, AWQ). Large-batch decodes are compute bound, where a
    # weight-only kernel dequantizes each weight tile once for the whole batch, hidden under the 16-bit tensor-core
    # math (Marlin's design: loads, dequantizing and tensor cores busy at once, IST-DASLab/marlin README): near a
    # 16-bit GEMM's efficiency, an assumption; only the A100 FP8 rows (one source) pin it, so the prior matters
    weight_only_mfu: float = 0.9
    step_overhead_ms: float = 3.0  # vLLM V0 (0.4/0.5, the calibration rows): time per step outside the GPU
    v1_step_overhead_ms: float = 1.6  # vLLM V1 (>= 0.8, what the kit deploys): fixed, see fit_calibration.py
    seq_overhead_us: float = 20.0  # vLLM V1: per sequence per step (sampling, detokenization, bookkeeping)
    allreduce_latency_us: float = 10.0  # per tensor-parallel all-reduce (2 per layer per step)
    allreduce_bw_eff: float = 0.7  # fraction of the interconnect bandwidth a ring all-reduce reaches
    trtllm_speedup: float = 1.3  # TensorRT-LLM step time = vLLM step time / this
    v0_seq_overhead_us: float = 20.0  # vLLM V0 (0.4-0.6): per sequence per step, API server in the same process
    multistep_cpu_share: float = 1.0  # share of V0's CPU time per step left with multi-step scheduling (vLLM 0.6)
    allreduce_hop_us: float = 0.0  # added to each all-reduce per GPU beyond the second (ring / one-shot peers)
    trtllm_step_overhead_ms: float = 1.0  # TensorRT-LLM executor time per step outside the GPU
    trtllm_seq_overhead_us: float = 5.0  # TensorRT-LLM executor time per sequence per step
    request_overhead_ms: float = 0.0  # per request outside the engine steps (HTTP, tokenizing); bench refit only
    # per request, a wait outside the engine steps that does not queue (each request's own, beside the others'):
    # what a local profile's speed probe measures beyond its steps' factor (bench_refit.speed_factor); else 0
    request_latency_ms: float = 0.0
    internode_latency_us: float = 50.0  # pipeline-parallel hop between nodes (one way); fixed assumption
    internode_gbs: float = 12.5  # bytes/s between nodes (100 Gbit/s); fixed assumption
    # share of a measured PCIe all-reduce bus bandwidth (gpus.yaml `allreduce`) reached: 1, as measured; fixed, only
    # a local profile's speed scales it (bench_refit.at_speed), as it scales allreduce_bw_eff
    measured_bus_share: float = 1.0
    sources: dict[str, str] = field(default_factory=dict, compare=False)
    provenance: dict[str, Any] = field(default_factory=dict, compare=False)

    def values(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in _value_names()}

    @property
    def source(self) -> str:
        """One line naming where these parameters came from."""
        refit = self.provenance.get("refit")
        if refit:
            return f"refit from {refit.get('points')} bench points on top of the published-data fit"
        if self.provenance.get("date"):
            return (
                f"fitted on {self.provenance.get('csv', 'the calibration CSV')} "
                f"({self.provenance.get('date', '')[:10]})"
            )
        return "built-in defaults"

    def source_of(self, name: str) -> str:
        return self.sources.get(name, "built-in default (not fitted)")

    def to_assumptions(self) -> dict[str, dict[str, object]]:
        sources = self.sources
        return {
            k: {"value": getattr(self, k), "source": sources.get(k, "built-in default (not fitted)")}
            for k in _value_names()
        }

    def with_values(self, source: str | None = None, **values: float) -> Params:
        sources = dict(self.sources)
        if source:
            sources.update(dict.fromkeys(values, source))
        return replace(self, sources=sources, **cast(dict[str, Any], values))


@lru_cache(maxsize=1)
def _value_names() -> tuple[str, ...]:
    """The numeric parameters of Params, in declaration order (every projection lists them)."""
    return tuple(f.name for f in fields(Params) if f.name not in ("sources", "provenance"))


def params_to_dict(p: Params) -> dict[str, Any]:
    return {"params": p.values(), "sources": p.sources, "provenance": p.provenance}


def params_from_dict(data: dict[str, Any]) -> Params:
    known = {f.name for f in fields(Params)} - {"sources", "provenance"}
    values = {k: float(v) for k, v in (data.get("params") or {}).items() if k in known}
    return Params(sources=dict(data.get("sources") or {}), provenance=dict(data.get("provenance") or {}), **values)


@lru_cache(maxsize=1)
def load_params() -> Params:
    """The fitted parameters shipped in costing/data/calibration.json (defaults if it is missing)."""
    try:
        text = resources.files("costing").joinpath("data", DATA_FILE).read_text()
    except FileNotFoundError:
        return Params()
    return params_from_dict(json.loads(text))


def load_params_file(path: str | Path) -> Params:
    return params_from_dict(json.loads(Path(path).read_text()))


def save_params(p: Params, path: str | Path | None = None) -> Path:
    target = Path(path) if path else DATA_DIR / DATA_FILE
    target.write_text(json.dumps(params_to_dict(p), indent=2, sort_keys=False) + "\n")
    load_params.cache_clear()
    return target
