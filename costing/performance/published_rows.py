"""The published measurements as read: costing/data/published-benchmarks.csv (sources in
published-benchmarks.md), each row mapped onto the catalog's names (model, precision, GPU, engine).

Apart from costing.performance.published (which predicts, fits and cross-validates them) so that the projection can read
the vendor tables it caps at without importing the replay that imports it.
"""

from __future__ import annotations

import csv
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from costing.data import DATA_DIR
from costing.performance import engines

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

# A100 PCIe 80GB (300 W) sustains less compute than the SXM4 module (400 W) with the same datasheet peak: MLPerf
# Inference v3.0 closed, NVIDIA, BERT-99 Offline on one GPU (TensorRT), 3,168.14 samples/s on A100-PCIe-80GBx1_TRT
# against 3,590.46 on DGX-A100_A100-SXM-80GBx1_TRT (mlcommons/inference_results_v3.0 @dad59af,
# closed/NVIDIA/results/*/bert-99/Offline/performance/run_1/mlperf_log_summary.txt; published 2023-04-05)
A100_PCIE_COMPUTE = 3168.14 / 3590.46

GPU_NAMES = {  # CSV name -> (catalog name, override or None)
    "A100-SXM-80GB": ("A100-80GB", None),
    "A100-SXM4-80GB": ("A100-80GB", None),
    "A100-PCIe-80GB": (
        "A100-80GB",
        {
            "bandwidth_gbs": 1935.0,
            "compute_share": A100_PCIE_COMPUTE,  # of the catalog part's dense TFLOPS, every precision
            "interconnect_gbs": 32.0,
            "allreduce": "pcie4",  # PCIe-only: gpus.yaml's measured all-reduce bus bandwidth at every GPU count
            "source": "NVIDIA A100 PCIe 80GB datasheet: 1,935 GB/s; PCIe Gen4 x16 "
            "(no NVLink assumed); dense TFLOPS x 0.882, the MLPerf v3.0 BERT-99 Offline PCIe/SXM ratio "
            "- calibration-side override",
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
    # a burst's output lengths: every request `output_tokens` long ("output N per request" in the notes), or
    # ShareGPT's exponential lengths clipped at max_tokens ("cap N"); neither: unclipped (LambdaLabs)
    fixed_output: bool = False
    output_cap: int | None = None
    max_model_len: int | None = (
        None  # the server's --max-model-len when the notes state it (V0 sizes its batches by it)
    )
    # which e2e_s the source states: "median" when the notes say "e2e median" (the median request's latency, which
    # with ShareGPT's long-tailed output lengths is well below the mean), else "mean"; None without an e2e_s
    e2e_kind: str | None = None
    # a max-load run over a fixed dataset ("dataset of N requests": trtllm-bench queues N requests of the row's
    # lengths at once and divides their output by the whole run's time, the last partial batch included)
    dataset_requests: int | None = None
    # the run chunked prompts beside the decodes although its engine does not by default ("chunked context":
    # trtllm-bench's TensorRT-engine runs); None: the engine's default
    chunked: bool | None = None

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
            e2e_kind = None
            if _num(r["e2e_s"]) is not None:
                e2e_kind = "median" if "e2e median" in r["notes"] else "mean"
            cap = re.search(r"\bcap (\d+)\b", r["notes"])
            max_len = re.search(r"\bmax_model_len (\d+)\b", r["notes"])
            dataset = re.search(r"\bdataset of (\d+) requests\b", r["notes"])
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
                    fixed_output=bool(re.search(r"\boutput \d+ per request\b", r["notes"])),
                    output_cap=int(cap.group(1)) if cap else None,
                    max_model_len=int(max_len.group(1)) if max_len else None,
                    fit_weight=weight,
                    note=note,
                    request_rate=rate,
                    e2e_kind=e2e_kind,
                    dataset_requests=int(dataset.group(1)) if dataset and conc is None and burst is None else None,
                    chunked=True if re.search(r"\bchunked context\b", r["notes"]) else None,
                )
            )
    return rows
