"""`make calibrate`: fit the projection's efficiency parameters on costing/data/published-benchmarks.csv and write
costing/data/calibration.json with provenance (rows, date, fit error)."""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
from pathlib import Path

from costing.performance.calibration import FITTED, Params, save_params
from costing.performance.published import DEFAULT_CSV, errors, fit_params, median_abs

SOURCES = {
    "request_overhead_ms": "fixed at 0: the published rows do not separate a per-request time (HTTP, tokenizing) "
    "from the engine steps; `selfhost plan --calibration bench.json` refits it",
    "request_latency_ms": "fixed at 0: a wait per request that does not queue; only the local target's speed probe "
    "sets it (`selfhost bench --local-profile`)",
    "internode_latency_us": "fixed assumption: one-way latency of a pipeline-parallel hop between nodes over the "
    "cloud network (NCCL send/recv; tens of microseconds with RDMA, more over TCP); no multi-node row to fit it",
    "internode_gbs": "fixed assumption: 12.5 GB/s (100 Gbit/s) between nodes; no multi-node row to fit it",
    "measured_bus_share": "fixed at 1: PCIe-only parts take NCCL's measured all-reduce bus bandwidth as measured "
    "(gpus.yaml `allreduce`); only a local profile's speed scales it",
}


# What each fitted parameter stands for and which rows pin it (appended to "fitted on ...")
NOTES = {
    "overlap": "share of the shorter of memory and compute time hidden within one kernel class (the GEMMs with the "
    "weights' reads, attention with the KV cache's); the two classes run one after the other and add",
    "weight_only_mfu": "dequantizing (weight-only) kernels' share of the 16-bit peak; only the A100 FP8 rows "
    "(Marlin W8A16, LambdaLabs) pin it; prior 0.9: at a compute-bound batch the dequantizing is shared by the "
    "whole batch and hidden under the tensor-core math (Marlin's design, IST-DASLab README)",
    "v1_step_overhead_ms": "vLLM V1 (>= 0.8, what the kit deploys) per-step engine-core time; pinned by the V1 rows "
    "(single-stream TPOT of 8B on H100 and A100 minus the bandwidth-bound step)",
    "seq_overhead_us": "vLLM V1 per sequence per step; few V1 rows at batch > 1, so it stays near its prior "
    "(20 us) until a bench refit (`--calibration`) measures it",
    "step_overhead_ms": "vLLM V0 (0.4-0.6) per-step Python time",
    "v0_seq_overhead_us": "vLLM V0 (0.4-0.6) per sequence per step: sampling, detokenizing and streaming each token "
    "from the API server's own Python process",
    "multistep_cpu_share": "share of V0's CPU time per step left under vLLM 0.6's multi-step scheduling (10 steps a "
    "run); pinned by the vLLM 0.6.0 rows only, prior 1 (no saving assumed)",
    "allreduce_hop_us": "all-reduce latency added per GPU beyond two (ring / one-shot peers)",
    "trtllm_step_overhead_ms": "TensorRT-LLM C++ executor time per step (vendor tables and NIM rows)",
    "trtllm_seq_overhead_us": "TensorRT-LLM C++ executor time per sequence per step",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--csv", default=str(DEFAULT_CSV))
    ap.add_argument("--out", default=None, help="default: costing/data/calibration.json")
    args = ap.parse_args()
    csv_path = Path(args.csv)
    params, info = fit_params(csv_path, Params())
    recs = errors(csv_path, params)
    tok = median_abs(r["tok_err"] for r in recs)
    tpot = median_abs(r["tpot_err"] for r in recs)
    source = f"fitted on {csv_path.name} ({info['rows_fitted']} rows), {dt.date.today().isoformat()}"
    sources = {k: f"{source}; {NOTES[k]}" if k in NOTES else source for k in FITTED} | SOURCES
    provenance = {
        "csv": str(csv_path.name),
        "csv_sha256": hashlib.sha256(csv_path.read_bytes()).hexdigest(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "method": "scipy.optimize.least_squares, soft-L1 loss on log(projected/measured) of output tok/s, "
        "TPOT and (at half weight) TTFT; vLLM-family and TensorRT-LLM rows weighted to equal total weight",
        "rows": {k: v for k, v in info.items() if k.startswith("rows")},
        "group_weights": info["group_weights"],
        "median_abs_error": {"output_tokens_per_s": round(tok, 4), "tpot_ms": round(tpot, 4)},
        "row_assumptions": {
            "lambdalabs": "vLLM 0.5.4, 320 ShareGPT prompts at once (~205 in / 204 out, output lengths "
            "exponential): simulated burst, max_num_seqs 256, gpu_memory_utilization 0.90, multi-GPU = "
            "tensor parallel; the result JSONs at 2k context: no chunked prefill (max_num_batched_tokens 2048); "
            "the summary table (benchmark_v0.md), run at each setup's longest context (128k; 70B on one GPU 4k): "
            "vLLM 0.5.4 turns chunked prefill on above 32K context with max_num_batched_tokens 512",
            "a10g_llmperf": "closed loop at the stated concurrency, 550 in / 150 out; tpot column is ITL; "
            "NIM rows projected as vLLM; llmperf counted tokens with Llama 2's tokenizer (1/0.85 client tokens "
            "per Llama 3 token): the server sees 550/1.18 prompt tokens, tok/s and ITL are per client token",
            "trtllm_max_load": "steady state at the admissible maximum: KV cache at 0.95 of memory, FP8 KV "
            "cache on FP8 rows; trtllm-bench rows: the batch limit and max_num_tokens trtllm-bench's build "
            "heuristic sizes from the lengths (tensorrt_llm/bench/build/tuning.py: the KV cache's requests rounded "
            "up, at most 4096; that batch x (1 + ISL/OSL) tokens, 2048-32768), other rows batch <= 2048 and 8192 "
            "tokens; A100-PCIe = A100-80GB with 1,935 GB/s, PCIe Gen4 interconnect (measured all-reduce at 8 GPUs) "
            "and 0.882 of its dense TFLOPS (MLPerf v3.0 BERT-99 Offline PCIe/SXM)",
        },
    }
    out = save_params(Params(**params.values(), sources=sources, provenance=provenance), args.out)
    print(f"wrote {out}")
    for k, v in params.values().items():
        print(f"  {k:22s} {v:10.4f}   {sources.get(k, '')[:60]}")
    print(f"median absolute error: output tok/s {tok:.1%}, TPOT {tpot:.1%}")


if __name__ == "__main__":
    main()
