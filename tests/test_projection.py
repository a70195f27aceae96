"""The performance projection: physics bounds, capping, SLO search, speed, and monotonic properties."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from dataclasses import replace

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from costing.data.catalog import catalog
from costing.errors import UserError
from costing.performance.calibration import Params, load_params
from costing.performance.fit import FitRequest, fit_check, weight_bytes
from costing.performance.projection import Hardware, admissible, max_throughput, project, slo_concurrency, step_time_s


def fit(model="llama-3.1-8b", precision="bf16", gpu="A40", gpus=1, **kw):
    return fit_check(FitRequest(model=model, precision=precision, gpu=gpu, gpus=gpus, **kw))


def test_single_stream_tpot_is_bounded_below_by_reading_the_weights_at_datasheet_bandwidth():
    for gpu in ("A40", "L4", "A10G", "A100-80GB", "H100"):
        f = fit(gpu=gpu)
        p = project(f, 500, 200, 1)
        floor_ms = weight_bytes(f.model, f.precision) / (f.gpu.bandwidth_gbs * 1e9) * 1e3
        assert floor_ms < p.tpot_ms < 2.5 * floor_ms, gpu


def test_faster_memory_decodes_faster_and_fp8_weights_read_faster_than_bf16():
    assert project(fit(gpu="H100"), 500, 200, 1).tpot_ms < project(fit(gpu="A40"), 500, 200, 1).tpot_ms
    assert (
        project(fit(gpu="L40S", precision="fp8"), 500, 200, 1).tpot_ms < project(fit(gpu="L40S"), 500, 200, 1).tpot_ms
    )


def test_fp8_on_ampere_runs_weight_only_kernels_and_says_so():
    p = project(fit(gpu="A100-80GB", precision="fp8"), 500, 200, 8)
    assert "weight-only" in p.assumptions["compute_type"]
    assert "weight-only" not in project(fit(gpu="H100", precision="fp8"), 500, 200, 8).assumptions["compute_type"]


def test_concurrency_above_the_kv_capacity_is_capped_with_the_reason():
    f = fit(gpu="A10G")
    cap = admissible(f, 2048, 130)
    # vLLM allocates blocks as sequences grow: the batch holds its mean context, more than full-length
    assert f.max_concurrent_seqs(2048 + 130) <= cap < f.settings.max_num_seqs
    assert admissible(f, 2048, 130, "trtllm") == f.max_concurrent_seqs(2048 + 130)
    p = project(f, 2048, 130, cap + 50)
    assert p.capped and p.concurrency == cap and p.requested_concurrency == cap + 50
    assert "KV cache holds" in p.cap_reason and f"{cap:,}" in p.cap_reason
    at_cap = project(f, 2048, 130, cap)
    assert not at_cap.capped and at_cap.cap_reason is None
    # the clients beyond the cap wait: same throughput, longer latency as they see it
    assert p.output_tokens_per_s == pytest.approx(at_cap.output_tokens_per_s)
    assert p.e2e_latency_s > at_cap.e2e_latency_s and p.ttft_ms > at_cap.ttft_ms


def test_max_num_seqs_cap_is_named():
    f = fit(gpu="H100", max_num_seqs=16)
    p = project(f, 100, 100, 64)
    assert p.capped and p.concurrency == 16 and "max_num_seqs" in p.cap_reason


def test_latency_adds_up_and_littles_law_holds():
    p = project(fit(), 1000, 300, 12)
    assert p.e2e_latency_s == pytest.approx(p.ttft_ms / 1e3 + 299 * p.tpot_ms / 1e3)
    assert p.requests_per_s == pytest.approx(p.concurrency / p.e2e_latency_s)
    assert p.output_tokens_per_s == pytest.approx(p.requests_per_s * 300)
    assert p.p90_e2e_latency_s > p.e2e_latency_s


def test_tensor_parallel_pays_for_all_reduces():
    f = fit(model="llama-3.1-70b", gpu="A40", gpus=4)
    hw, p = Hardware.of(f), load_params()
    without = step_time_s(replace(hw, tp=1), p, 8, 700, 0, 500)
    assert step_time_s(hw, p, 8, 700, 0, 500) > without


def test_seventy_b_on_four_a40s_reaches_140_tokens_per_second_with_enough_clients():
    """Source 004 asks whether 4x A40 can serve ~140 tok/s of Llama 3.1 70B."""
    f = fit(model="llama-3.1-70b", gpu="A40", gpus=4)
    single = project(f, 500, 250, 1)
    assert 8 < single.output_tokens_per_s < 25  # one stream is bound by reading 141 GB over 4 x 696 GB/s
    assert max_throughput(f, 500, 250).output_tokens_per_s > 140


def test_slo_concurrency_is_the_highest_that_meets_the_slo():
    f = fit(model="llama-3.1-8b", precision="int8", gpu="A10G")
    slo = 12.29
    best = slo_concurrency(f, 2048, 130, slo)
    assert best.p90_e2e_latency_s <= slo
    cap = f.max_concurrent_seqs(2048 + 130)
    if best.concurrency < cap:
        assert project(f, 2048, 130, best.concurrency + 1).p90_e2e_latency_s > slo


def test_slo_concurrency_returns_one_stream_when_even_that_misses():
    f = fit(model="llama-3.1-70b", gpu="A40", gpus=4)
    p = slo_concurrency(f, 2000, 2000, 1.0)
    assert p.concurrency == 1 and p.p90_e2e_latency_s > 1.0


def test_slo_concurrency_stops_at_the_kv_capacity():
    f = fit(gpu="A10G")
    p = slo_concurrency(f, 2048, 130, 3600.0)
    assert p.concurrency == admissible(f, 2048, 130) == max_throughput(f, 2048, 130).concurrency


@pytest.mark.parametrize("bad", [0, -5, float("nan"), "12"])
def test_bad_numbers_are_user_errors(bad):
    with pytest.raises(UserError):
        project(fit(), bad, 100, 1)
    with pytest.raises(UserError):
        project(fit(), 100, 100, bad)


def test_parameters_and_their_sources_are_in_the_assumptions():
    p = project(fit(), 500, 200, 4)
    params = p.assumptions["params"]
    assert set(Params().values()) <= set(params)
    assert all(v["source"] for v in params.values())
    assert "TTFT" in p.assumptions["tails"] and "vLLM 0.32" in p.assumptions["max_num_seqs"]


def test_tails_come_from_the_model_and_are_ordered():
    f = fit(gpu="H100")
    for c in (1, 16, 200):
        p = project(f, 2000, 300, c)
        assert p.ttft_p50_ms <= p.ttft_p90_ms <= p.ttft_p99_ms
        assert p.tpot_p50_ms <= p.tpot_p90_ms <= p.tpot_p99_ms
        assert p.e2e_p50_s <= p.p90_e2e_latency_s <= p.e2e_p99_s
    light, busy = project(f, 2000, 300, 1), project(f, 2000, 300, 200)
    # one stream: no prefill of others interleaves, so TPOT has no tail; many: chunks interleave
    assert light.tpot_p99_ms == pytest.approx(light.tpot_p50_ms)
    assert busy.tpot_p99_ms > busy.tpot_p50_ms * 1.01
    assert busy.ttft_p99_ms / busy.ttft_p50_ms > light.ttft_p99_ms / light.ttft_p50_ms


def test_a_call_is_fast():
    f = fit()
    project(f, 500, 200, 32)
    t0 = time.perf_counter()
    for c in range(1, 101):
        project(f, 500, 200, c)
    assert (time.perf_counter() - t0) / 100 < 0.01
    t0 = time.perf_counter()
    slo_concurrency(fit(gpu="H100"), 500, 200, 30.0)
    assert time.perf_counter() - t0 < 0.1


def test_importing_the_projection_loads_no_numpy_or_scipy():
    code = (
        "import sys, costing.performance.projection as p; from costing.performance.fit import FitRequest, fit_check;"
        "p.project(fit_check(FitRequest(model='llama-3.1-8b', gpu='A40')), 100, 100, 4);"
        "print(sorted(m for m in ('numpy', 'scipy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---- monotonic properties over random valid deployments (hypothesis) -------------------------

MODELS = sorted(catalog().models)
GPUS = sorted(catalog().gpus)


def _fit_or_none(model, precision, gpu, gpus):
    try:
        return fit(model=model, precision=precision, gpu=gpu, gpus=gpus)
    except UserError:
        return None


deployments = st.tuples(
    st.sampled_from(MODELS),
    st.sampled_from(["bf16", "fp8", "int8", "awq"]),
    st.sampled_from(GPUS),
    st.sampled_from([1, 2, 4, 8]),
)


@settings(max_examples=120, deadline=None)
@given(
    dep=deployments,
    tin=st.integers(1, 8000),
    tout=st.integers(16, 2000),
    extra=st.integers(1, 2000),
    conc=st.integers(1, 512),
)
@example(dep=("llama-3-70b", "awq", "H100", 1), tin=851, tout=120, extra=3, conc=110)  # a lowered KV cap
def test_a_longer_output_never_shortens_end_to_end_latency(dep, tin, tout, extra, conc):
    """The mean, from 16 output tokens on (with a handful of tokens a request is nearly all prefill:
    every client's prompt lands in the same few steps, a different regime). Not the p90: a longer
    output spreads the other clients' prompts over more steps, so the wait for the prefill budget
    (the TTFT tail) may shrink by more than the extra tokens take."""
    f = _fit_or_none(*dep)
    assume(f is not None and tin + tout + extra <= f.max_model_len)
    short, long = project(f, tin, tout, conc), project(f, tin, tout + extra, conc)
    # within 0.1%; within 0.5% where the longer request lowers the KV cap: one client then queues for a slot
    # (in its TTFT) while the others decode in a batch one smaller, e.g. 70B AWQ on one H100, 851 in,
    # 120 -> 123 out, 110 clients: 109 fit, mean e2e 30.016 -> 29.966 s
    lowered_cap = long.concurrency < short.concurrency
    assert long.e2e_latency_s >= short.e2e_latency_s * (1 - (5e-3 if lowered_cap else 1e-3))
    assert long.p90_e2e_latency_s >= long.e2e_latency_s and short.p90_e2e_latency_s >= short.e2e_latency_s


@settings(max_examples=120, deadline=None)
@given(
    dep=deployments,
    tin=st.integers(1, 8000),
    tout=st.integers(1, 2000),
    conc=st.integers(1, 512),
    more=st.integers(1, 512),
)
def test_more_concurrency_never_lowers_throughput_nor_latency(dep, tin, tout, conc, more):
    """Throughput up to the KV cache's full-length capacity (past it vLLM preempts and recomputes, which
    may cost throughput); latency everywhere."""
    f = _fit_or_none(*dep)
    assume(f is not None and tin + tout <= f.max_model_len)
    lo, hi = project(f, tin, tout, conc), project(f, tin, tout, conc + more)
    assert hi.e2e_latency_s >= lo.e2e_latency_s * (1 - 1e-9)
    assert hi.tpot_ms >= lo.tpot_ms * (1 - 1e-9)
    full = f.max_concurrent_seqs(tin + tout)
    lo, hi = project(f, tin, tout, min(conc, full)), project(f, tin, tout, min(conc + more, full))
    assert hi.output_tokens_per_s >= lo.output_tokens_per_s * (1 - 1e-4)  # flat at saturation
    assert hi.e2e_latency_s >= lo.e2e_latency_s * (1 - 1e-9)
    assert hi.tpot_ms >= lo.tpot_ms * (1 - 1e-9)


@settings(max_examples=80, deadline=None)
@given(
    model=st.sampled_from(MODELS),
    precision=st.sampled_from(["bf16", "fp8", "awq"]),
    gpu=st.sampled_from(GPUS),
    tin=st.integers(1, 8000),
    tout=st.integers(1, 2000),
)
def test_more_gpus_of_the_same_kind_never_hold_fewer_sequences(model, precision, gpu, tin, tout):
    held = []
    for n in (1, 2, 4, 8):
        f = _fit_or_none(model, precision, gpu, n)
        if f is not None and tin + tout <= f.max_model_len:
            held.append(max_throughput(f, tin, tout).concurrency)
        elif held:
            held.append(None)
    held = [h for h in held if h is not None]
    assert held == sorted(held)


@settings(max_examples=60, deadline=None)
@given(dep=deployments, tin=st.integers(1, 8000), tout=st.integers(1, 2000), slo=st.floats(0.5, 600))
def test_slo_concurrency_meets_the_slo_or_is_one(dep, tin, tout, slo):
    f = _fit_or_none(*dep)
    assume(f is not None and tin + tout <= f.max_model_len)
    p = slo_concurrency(f, tin, tout, slo)
    assert p.p90_e2e_latency_s <= slo or p.concurrency == 1
    assert p.concurrency <= max(1, admissible(f, tin, tout))
    assert not math.isnan(p.output_tokens_per_s)


def test_the_deployed_engine_is_vllm_v1_with_its_own_step_overhead():
    """The calibration rows are vLLM 0.4/0.5 (V0); deployments run V1, whose per-step overhead is apart."""
    from costing.performance.calibration import load_params

    f = fit_check(FitRequest(model="llama-3.1-8b", gpu="A100"))
    v1 = project(f, 1024, 128, 1)
    v0 = project(f, 1024, 128, 1, engine="vllm-v0")
    p = load_params()
    one_seq = (p.v0_seq_overhead_us - p.seq_overhead_us) / 1e3  # one sequence in the batch
    assert v0.tpot_ms - v1.tpot_ms == pytest.approx(p.step_overhead_ms - p.v1_step_overhead_ms + one_seq, rel=1e-6)
    assert v1.assumptions["engine"] == "vllm" and "V1" in p.source_of("v1_step_overhead_ms")


def test_each_engine_pays_its_own_cpu_time_and_tensor_parallel_costs_more_the_wider_it_is():
    """V0's per-sequence Python time is not V1's nor TensorRT-LLM's; multi-step scheduling shrinks V0's CPU
    time to its fitted share; each GPU beyond two adds an all-reduce hop."""
    from dataclasses import replace

    from costing.performance.calibration import load_params
    from costing.performance.projection import MULTISTEP_STEPS, Hardware, step_parts

    p = replace(
        load_params(),
        v0_seq_overhead_us=150.0,
        seq_overhead_us=10.0,
        trtllm_seq_overhead_us=5.0,
        allreduce_hop_us=0.0,
        multistep_cpu_share=0.4,
    )
    hw = Hardware.of(fit_check(FitRequest(model="llama-3.1-8b", gpu="H100", gpus=1)))
    v0, v1, trt = (step_parts(hw, p, 256, 1000, 0, 1000, e).cpu for e in ("vllm-v0", "vllm", "trtllm"))
    multi = step_parts(hw, p, 256, 1000, 0, 1000, "vllm-v0-multistep").cpu
    assert v0 == pytest.approx(p.step_overhead_ms * 1e-3 + 256 * 150e-6)
    assert v1 == pytest.approx(p.v1_step_overhead_ms * 1e-3 + 256 * 10e-6)
    assert trt == pytest.approx(p.trtllm_step_overhead_ms * 1e-3 + 256 * 5e-6)
    assert multi == pytest.approx(v0 * p.multistep_cpu_share) and MULTISTEP_STEPS == 10
    hop = replace(p, allreduce_hop_us=5.0)
    comm = {}
    for tp in (2, 4, 8):
        hw_tp = Hardware.of(fit_check(FitRequest(model="llama-3.1-8b", gpu="H100", gpus=tp)))
        comm[tp] = step_parts(hw_tp, hop, 1, 1000, 0, 1000).comm - step_parts(hw_tp, p, 1, 1000, 0, 1000).comm
    layers = 32  # two all-reduces per layer, one hop per GPU beyond two
    assert comm[2] == pytest.approx(0.0, abs=1e-12)
    assert comm[4] == pytest.approx(2 * layers * 2 * 5e-6) and comm[8] == pytest.approx(2 * layers * 6 * 5e-6)


def test_an_unknown_engine_is_refused_not_given_another_engines_overhead():
    fit = fit_check(FitRequest(model="llama-3.1-8b", precision="bf16", gpu="A40", gpus=1))
    for engine in ("vllm", "vllm-v0", "trtllm"):
        assert project(fit, 500, 250, 4, engine=engine).tpot_ms > 0
    with pytest.raises(ValueError, match="unknown engine 'vLLM'"):
        project(fit, 500, 250, 4, engine="vLLM")


def test_gemm_compute_does_not_hide_the_attention_kernels_kv_reads():
    """The GEMMs and the attention kernels run one after the other: at a batch where the GEMMs are compute
    bound, even full overlap hides only the weights' reads under their math, not the KV cache's reads (which
    the attention kernels do after them), so every added token of context costs its memory time."""
    from dataclasses import replace

    from costing.performance.calibration import load_params
    from costing.performance.projection import Hardware, step_parts

    p = replace(load_params(), overlap=1.0)
    hw = Hardware.of(fit_check(FitRequest(model="llama-3.1-8b", gpu="A100-80GB", gpus=1)))
    batch = 256  # 2 x 8B FLOPs x 256 tokens: the GEMMs take longer than reading the 16 GB of weights
    weights = hw.weight_bytes_per_gpu / (hw.bandwidth * p.bw_eff)
    gemm = batch * 2 * hw.params / (hw.flops * p.mfu_decode)
    assert gemm > weights
    short, long = (step_parts(hw, p, batch, ctx, 0, 1000).gpu for ctx in (500, 1500))
    kv_reads = batch * 1000 * hw.kv_bytes_per_token_per_gpu / (hw.bandwidth * p.kv_bw_eff)
    attn_flops = batch * 4 * hw.layers * hw.hidden * 1000 / (hw.flops * p.mfu_decode)
    assert long - short == pytest.approx(max(kv_reads, attn_flops), rel=1e-6)
    assert short == pytest.approx(
        gemm
        + max(
            batch * 500 * hw.kv_bytes_per_token_per_gpu / (hw.bandwidth * p.kv_bw_eff),
            batch * 4 * hw.layers * hw.hidden * 500 / (hw.flops * p.mfu_decode),
        ),
        rel=1e-6,
    )


def test_trtllm_bench_sizes_its_engine_from_the_dataset_lengths():
    """trtllm-bench's build heuristic (tensorrt_llm/bench/build/tuning.py): the batch limit is the KV cache's
    requests rounded up (at least 64, at most 4096), max_num_tokens that batch x (1 + ISL/OSL) rounded up (at
    least 2048, at most 32768): a prompt-heavy dataset gets far more tokens a step than a decode-heavy one."""
    from costing.performance import engines

    assert engines.trtllm_bench_settings(834, 128, 4096) == (896, 2048)  # 128 x 7 above 834; 834 x 1.03 < 2048
    assert engines.trtllm_bench_settings(1619, 2048, 128) == (1792, 27648)  # 1619 x 17 = 27,523 -> 27 x 1024
    assert engines.trtllm_bench_settings(26, 128, 2048) == (64, 2048)  # the floors
    assert engines.trtllm_bench_settings(9000, 2048, 128) == (4096, 32768)  # the caps
    assert engines.trtllm_bench_settings(300, 5000, 500) == (384, 3328)  # 300 x 11 = 3,300 -> 13 x 256


def test_trtllm_bench_rows_run_the_engine_the_heuristic_sizes():
    """A vendor-table row (trtllm-bench) gets the batch limit and max_num_tokens of its own lengths; a row from
    another TensorRT-LLM client keeps the fixed limits (batch 2048, 8192 tokens a step)."""
    from costing.performance import engines
    from costing.performance.published import fit_for_row, read_rows

    rows = read_rows()
    bench = next(r for r in rows if "trtllm-bench" in r.engine_raw and (r.input_tokens, r.output_tokens) == (2048, 128))
    fit = fit_for_row(bench)
    requests = fit.kv_capacity_tokens / (2048 + 128)
    assert (fit.settings.max_num_seqs, fit.settings.max_num_batched_tokens) == engines.trtllm_bench_settings(
        requests, 2048, 128
    )
    other = next(r for r in rows if r.engine == "trtllm" and "trtllm-bench" not in r.engine_raw and r.concurrency)
    fit = fit_for_row(other)
    assert fit.settings.max_num_seqs == engines.TRTLLM_MAX_BATCH
    assert fit.settings.max_num_batched_tokens == engines.TRTLLM_BATCHED_TOKENS
