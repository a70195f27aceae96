"""One model of vLLM's scheduler (costing/performance/scheduler.py): the replay of bursts, closed-loop clients and
Poisson arrivals, and the layering that keeps the projection and the published-data replay from importing each other."""

from __future__ import annotations

import ast
import statistics
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from costing.performance import scheduler
from costing.performance.calibration import load_params
from costing.performance.fit import FitRequest, fit_check
from costing.performance.projection import project
from costing.performance.scheduler import Arrivals, Hardware, admissible, replay, step_time_s

COSTING = Path(__file__).resolve().parent.parent / "costing" / "performance"
PERF = "costing.performance"


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


def test_the_projection_and_the_published_replay_do_not_import_each_other():
    """The published-data replay imports the projection (closed-loop rows are projected), never the reverse;
    the scheduler and the CSV reader import neither."""
    assert f"{PERF}.projection" in _imports(COSTING / "published.py")
    assert not {f"{PERF}.published", f"{PERF}.bench_refit"} & _imports(COSTING / "projection.py")
    for name in ("scheduler.py", "published_rows.py"):
        assert not {f"{PERF}.projection", f"{PERF}.published", f"{PERF}.bench_refit"} & _imports(COSTING / name)
    # and at run time: a projection that reads the vendor tables (its ceiling) loads no replay
    code = (
        "import sys; from costing.performance.projection import _vendor_tables, project\n"
        "from costing.performance.fit import FitRequest, fit_check\n"
        "m, prec, gpu, n, i, o = next(k for k in _vendor_tables() if k[2] == 'H100' and k[3] == 1)\n"
        "project(fit_check(FitRequest(model=m, precision=prec, gpu=gpu, gpus=n)), i, o, 64)\n"
        f"print(sorted(k for k in ('{PERF}.published', '{PERF}.bench_refit') if k in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _a40():
    return fit_check(FitRequest(model="llama-3.1-8b", gpu="A40"))


def test_one_client_waits_for_its_own_prompt_step_then_decodes_one_token_a_step():
    f, p = _a40(), replace(load_params(), request_overhead_ms=25.0)
    hw = Hardware.of(f)
    run = replay(f, p, 512, [65], Arrivals.closed(1, 1), max_running=8)
    prefill = step_time_s(hw, p, 0, 512, 512, 512)
    assert run.ttft_s()[0] == pytest.approx(0.025 + prefill, rel=1e-9)
    # 64 decode steps of one sequence whose context grows from 513 to 576 tokens
    decodes = sum(step_time_s(hw, p, 1, 512 + k, 0.0, 512) for k in range(1, 65))
    assert run.e2e_s()[0] - run.ttft_s()[0] == pytest.approx(decodes, rel=1e-3)


def test_admission_stops_at_the_cap_and_the_rest_wait_their_turn():
    f, p = _a40(), load_params()
    capped = replay(f, p, 256, [32] * 6, Arrivals.burst(6), max_running=2, chunked=False)
    free = replay(f, p, 256, [32] * 6, Arrivals.burst(6), max_running=64, chunked=False)
    assert capped.running_peak == 2 and free.running_peak == 6
    # two at a time: the last pair starts after the first two pairs have ended
    assert sorted(capped.ttft_s())[-1] > sorted(capped.e2e_s())[3]
    assert statistics.fmean(capped.ttft_s()) > 3 * statistics.fmean(free.ttft_s())
    assert capped.output_tokens_per_s < free.output_tokens_per_s


def test_poisson_arrivals_queue_more_the_faster_they_come_and_are_the_same_on_every_call():
    f, p = _a40(), load_params()
    cap = admissible(f, 512, 128)

    def ttft(rate: float) -> float:
        run = replay(f, p, 512, [128] * 300, Arrivals.poisson(rate, 300), max_running=cap)
        return statistics.fmean(run.ttft_s())

    alone = replay(f, p, 512, [128], Arrivals.burst(1), max_running=cap).ttft_s()[0]
    assert ttft(0.05) == pytest.approx(alone, rel=0.1)  # one request every 20 s: nobody is ahead
    # five a second: ~60 in flight, the prompts share steps with their decodes and wait for the steps under way
    assert ttft(5.0) > 1.5 * ttft(0.05)
    assert ttft(5.0) > ttft(2.0) > ttft(0.05)
    assert ttft(5.0) == ttft(5.0)
    assert Arrivals.poisson(2.0, 50, seed=1).first_sends() != Arrivals.poisson(2.0, 50, seed=2).first_sends()


def test_multi_step_runs_keep_new_prompts_waiting_for_the_run_under_way():
    """vLLM 0.6 with --num-scheduler-steps: the scheduler takes prompts only between runs of decode steps, so
    under light Poisson load a prompt waits about half a run more than with single steps."""
    f = fit_check(FitRequest(model="llama-3.1-8b", gpu="A100-80GB", max_num_seqs=256, max_num_batched_tokens=4096))
    p = replace(load_params(), multistep_cpu_share=1.0)  # the same step time either way
    cap = admissible(f, 205, 194, "vllm-v0")
    arrivals = Arrivals.poisson(4.0, 400)
    single, multi = (
        replay(f, p, 205, [194] * 400, arrivals, max_running=cap, engine=e, chunked=False)
        for e in ("vllm-v0", "vllm-v0-multistep")
    )
    decode_step = step_time_s(Hardware.of(f), p, 3, 300, 0.0, 205, "vllm-v0")
    extra = statistics.fmean(multi.ttft_s()) - statistics.fmean(single.ttft_s())
    assert 2 * decode_step < extra < scheduler.MULTISTEP_STEPS * decode_step


def test_the_projections_prompt_queue_agrees_with_the_replay_of_poisson_arrivals():
    """The projection is analytic (an M/D/1 queue for the prompt steps of an engine that does not chunk, at
    the requests in flight Little's law gives); the replay runs the same scheduler step by step. At moderate
    load on vLLM 0.6 with multi-step runs (the published SGLang comparison's setup) their TTFT agree."""
    from costing.performance.published import poisson_concurrency, sharegpt_output_lengths

    f = fit_check(FitRequest(model="llama-3.1-8b", gpu="A100-80GB", max_num_seqs=256, max_num_batched_tokens=4096))
    p, engine = load_params(), "vllm-v0-multistep"
    for rate in (4.0, 8.0):
        run = replay(
            f,
            p,
            205,
            sharegpt_output_lengths(1200, 194),
            Arrivals.poisson(rate, 1200),
            max_running=admissible(f, 205, 194, engine),
            engine=engine,
            chunked=False,
        )
        conc = poisson_concurrency(f, p, 205, 194, rate, engine)
        projected = project(f, 205, 194, conc, p, engine=engine).ttft_ms
        assert projected == pytest.approx(1e3 * statistics.median(run.ttft_s()), rel=0.15)


def test_engines_that_do_not_chunk_queue_long_prompts_and_vllm_v1_does_not():
    """5,000-token prompts on 70B FP8 over two H100s: TensorRT-LLM (no chunked context by default) prefills
    one prompt a step, so at 50 clients a prompt waits for those ahead; vLLM V1 chunks them beside the decodes
    and waits only for the step under way (the TensorRT-LLM user issue measured 407 ms at 1 client, 835 ms
    at 50; 40 stay within vLLM's KV cache)."""
    f = fit_check(FitRequest(model="llama-3.3-70b", precision="fp8", gpu="H100", gpus=2))
    p = load_params()
    trt = [project(f, 5000, 500, c, p, engine="trtllm") for c in (1, 40)]
    v1 = [project(f, 5000, 500, c, p, engine="vllm") for c in (1, 40)]
    assert not v1[1].capped and not trt[1].capped
    assert trt[1].ttft_ms > 1.4 * trt[0].ttft_ms
    assert v1[1].ttft_ms < 1.3 * v1[0].ttft_ms
    assert trt[1].ttft_p90_ms > trt[1].ttft_p50_ms  # the queue's tail


def test_a_replay_needs_requests_and_a_known_arrival_process():
    f, p = _a40(), load_params()
    with pytest.raises(ValueError):
        replay(f, p, 100, [], Arrivals.burst(1), max_running=4)
    with pytest.raises(ValueError):
        Arrivals("uniform", 3).first_sends()


def test_a_run_that_chunks_prompts_is_projected_as_chunking_whatever_its_engine_default():
    """`chunked=True` (a TensorRT-LLM run with chunked context, as trtllm-bench's TensorRT-engine runs have):
    5,000-token prompts no longer queue for steps of their own at 40 clients, as vLLM V1's do not; None keeps
    the engine's default (TensorRT-LLM: whole prompts)."""
    f = fit_check(FitRequest(model="llama-3.3-70b", precision="fp8", gpu="H100", gpus=2))
    p = load_params()
    default = project(f, 5000, 500, 40, p, engine="trtllm")
    assert project(f, 5000, 500, 40, p, engine="trtllm", chunked=False) == default
    chunked = project(f, 5000, 500, 40, p, engine="trtllm", chunked=True)
    assert chunked.ttft_ms < 0.8 * default.ttft_ms
    assert "M/D/1 wait on the budget" in str(chunked.assumptions["tails"])
    assert "M/D/1 queue for the prompt steps" in str(default.assumptions["tails"])
